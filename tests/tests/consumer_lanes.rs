//! The consumer's lanes against the real broker and database: a key whose message keeps failing
//! waits alone while 1,000 messages of other keys are applied, in batches, within a bound that
//! does not depend on the failing message's back-off; the failing key's later messages are
//! applied after it, in order, once it succeeds, or once it is dead-lettered. A message whose
//! handler breaks the shared transaction (a failed statement outside its savepoint) fails alone:
//! the batch is applied again message by message, and no other key is retried with it.
//!
//! And the silent stall of issue 23, reproduced: a consumer that holds its maximum while its
//! transactions wait on a lock for longer than its quiet check used to end its subscription and
//! wait forever to close it (pulsar-rs's engine, blocked handing the loop a message, never
//! answered); now it reports the stall (its state and its door's health), and carries on once
//! the lock is released, with no resubscription.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures::TryStreamExt as _;
use prost::Message as _;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use affiliate_proto::common::MessageMetadata;
use e2e::{eventually, fresh_database, fresh_namespace, pulsar, pulsar_tenant};
use messaging::{Delivery, Failure, Handler, Subscription};

/// Any envelope of the platform: `MessageMetadata metadata = 1`.
#[derive(Clone, PartialEq, prost::Message)]
struct Envelope {
    #[prost(message, optional, tag = "1")]
    metadata: Option<MessageMetadata>,
}

/// Records each message in `applied` (once: the message id is unique), inside the transaction
/// the consumer gives it. Messages of `failing_key` fail while `failures_left` lasts (or always).
struct Recorder {
    pool: PgPool,
    failing_key: String,
    failures_left: AtomicU32,
    always: bool,
    /// The failing key's messages also break the transaction they are given.
    breaks_transaction: bool,
}

impl Handler for Recorder {
    fn batch_pool(&self) -> Option<&PgPool> {
        Some(&self.pool)
    }

    async fn handle_in(&self, conn: &mut PgConnection, delivery: &Delivery) -> Result<(), Failure> {
        let key = delivery.key.clone().unwrap_or_default();
        if key.starts_with(&self.failing_key)
            && (self.always
                || self
                    .failures_left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok())
        {
            if self.breaks_transaction {
                // Outside any savepoint: the whole transaction is aborted.
                let broken = sqlx::query("select 1 / 0").execute(&mut *conn).await;
                assert!(broken.is_err());
            }
            return Err(Failure::Transient(anyhow::anyhow!(
                "{key} fails on purpose"
            )));
        }
        sqlx::query(
            "insert into applied (message_id, key) values ($1, $2) on conflict (message_id) do nothing",
        )
        .bind(&delivery.message_id)
        .bind(&key)
        .execute(conn)
        .await
        .map_err(|e| Failure::Transient(e.into()))?;
        Ok(())
    }
}

struct Run {
    pool: PgPool,
    /// The subscription's counters (applied, retried, dead-lettered).
    board: service_runtime::status::StatusBoard,
    topic: String,
    dead_letter_topic: String,
    shutdown: CancellationToken,
    consumer: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// Deleted when the run ends.
    _db: e2e::TestDatabase,
    _namespace: e2e::TestNamespace,
}

/// Starts a consumer (batches of 64, 4 at once) with the given handler behaviour and back-off.
async fn start(
    always: bool,
    failures: u32,
    max_redeliveries: usize,
    backoff: (u64, u64),
    breaks_transaction: bool,
) -> Run {
    start_with(
        |pool| Recorder {
            pool,
            failing_key: "bad".into(),
            failures_left: AtomicU32::new(failures),
            always,
            breaks_transaction,
        },
        |subscription| {
            subscription.max_redeliveries = max_redeliveries;
            subscription.min_backoff = Duration::from_secs(backoff.0);
            subscription.max_backoff = Duration::from_secs(backoff.1);
        },
    )
    .await
}

/// Starts a consumer with the handler `make` builds on the test's database, its subscription
/// configured by `configure`.
async fn start_with<H: Handler>(
    make: impl FnOnce(PgPool) -> H,
    configure: impl FnOnce(&mut Subscription),
) -> Run {
    let db = fresh_database("lanes").await;
    sqlx::query(
        "create table applied (seq bigserial primary key, message_id text unique not null, key text not null)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let namespace = fresh_namespace().await;
    let topic = format!(
        "persistent://{}/{namespace}/lanes-commands",
        pulsar_tenant()
    );
    let mut subscription = Subscription::new(vec![topic.clone()], "lanes", 10);
    configure(&mut subscription);
    let dead_letter_topic = subscription.dead_letter_topic.clone();
    let board = service_runtime::status::StatusBoard::new("lanes", "events");
    board.set_pulsar(Ok(Duration::ZERO));
    subscription.status = Some(board.subscription("lanes", &subscription.topics));
    let handler = make(db.pool.clone());
    let shutdown = CancellationToken::new();
    let client = pulsar().await;
    let consumer = tokio::spawn(messaging::run_consumer(
        client,
        subscription,
        Arc::new(handler),
        shutdown.clone(),
    ));
    Run {
        pool: db.pool.clone(),
        _db: db,
        _namespace: namespace,
        board,
        topic,
        dead_letter_topic,
        shutdown,
        consumer,
    }
}

/// Waits, in every message's transaction, for a share of the `gate` row before recording the
/// message: while the test holds the row for update, every transaction waits.
struct Gated {
    pool: PgPool,
}

impl Handler for Gated {
    fn batch_pool(&self) -> Option<&PgPool> {
        Some(&self.pool)
    }

    async fn handle_in(&self, conn: &mut PgConnection, delivery: &Delivery) -> Result<(), Failure> {
        let transient = |e: sqlx::Error| Failure::Transient(e.into());
        sqlx::query("select 1 from gate where id = 1 for share")
            .execute(&mut *conn)
            .await
            .map_err(transient)?;
        sqlx::query("insert into applied (message_id, key) values ($1, $2) on conflict do nothing")
            .bind(&delivery.message_id)
            .bind(delivery.key.clone().unwrap_or_default())
            .execute(conn)
            .await
            .map_err(transient)?;
        Ok(())
    }
}

/// Publishes (key, message id) pairs in this order, 50 sends at a time before their receipts.
async fn publish_all(topic: &str, messages: &[(String, String)]) {
    let client = pulsar().await;
    for chunk in messages.chunks(50) {
        publish_chunk(&client, topic, chunk).await;
    }
}

async fn publish_chunk(
    client: &pulsar::Pulsar<pulsar::TokioExecutor>,
    topic: &str,
    messages: &[(String, String)],
) {
    let mut receipts = Vec::new();
    for (key, id) in messages {
        let payload = Envelope {
            metadata: Some(MessageMetadata {
                message_id: id.clone(),
                message_type: "lanes.test.v1".into(),
                ..Default::default()
            }),
        }
        .encode_to_vec();
        let message = pulsar::producer::Message {
            payload,
            properties: HashMap::from([("message-id".to_owned(), id.clone())]),
            partition_key: Some(key.clone()),
            ..Default::default()
        };
        receipts.push(client.send(topic, message).await.expect("send"));
    }
    for receipt in receipts {
        receipt.await.expect("receipt");
    }
}

/// The bad key's first message, its later two, and 1,000 messages of 1,000 other keys between.
fn messages() -> Vec<(String, String)> {
    let mut all = vec![("bad".to_owned(), "bad-0".to_owned())];
    for i in 0..1000 {
        all.push((format!("good-{i}"), format!("good-{i}")));
        if i == 10 {
            all.push(("bad".into(), "bad-1".into()));
        }
        if i == 500 {
            all.push(("bad".into(), "bad-2".into()));
        }
    }
    all
}

async fn count(pool: &PgPool, key_like: &str) -> i64 {
    sqlx::query_scalar("select count(*) from applied where key like $1")
        .bind(key_like)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn bad_in_order(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("select message_id from applied where key = 'bad' order by seq")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_failing_key_waits_alone_and_keeps_its_order_until_it_succeeds() {
    // bad-0 fails 3 times: 4 s + 8 s + 8 s of back-off before it succeeds.
    let run = start(false, 3, 10, (4, 8), false).await;
    let started = Instant::now();
    publish_all(&run.topic, &messages()).await;
    eventually(
        Duration::from_secs(60),
        "the 1,000 other keys applied",
        || async { (count(&run.pool, "good-%").await == 1000).then_some(()) },
    )
    .await;
    let others = started.elapsed();
    // bad-0's back-off alone is 20 s: the others did not wait for it, and the bad key's later
    // messages did not overtake it.
    assert_eq!(
        count(&run.pool, "bad").await,
        0,
        "the failing key is held back while it fails (its later messages too)"
    );
    println!("1,000 other keys applied in {others:?} while the failing key waited");
    eventually(
        Duration::from_secs(60),
        "the failing key applied",
        || async { (count(&run.pool, "bad").await == 3).then_some(()) },
    )
    .await;
    assert_eq!(bad_in_order(&run.pool).await, ["bad-0", "bad-1", "bad-2"]);
    println!(
        "the failing key's three messages applied in order after {:?}",
        started.elapsed()
    );
    run.shutdown.cancel();
    run.consumer.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_key_whose_message_never_succeeds_moves_on_once_it_is_dead_lettered() {
    // Each bad message: 3 attempts (1 s, 2 s of back-off), then the dead-letter topic.
    dead_letters_only_the_bad_key().await;
}

#[tokio::test]
async fn a_message_that_breaks_its_batch_fails_alone() {
    // Ten bad keys among 1,000 good ones, each bad message aborting the shared transaction it
    // lands in: the batch is applied again one by one, so no good message is retried, let alone
    // dead-lettered, with it.
    let run = start(true, 0, 2, (1, 2), true).await;
    let client = pulsar().await;
    let mut dead_letters = e2e::consumer(&client, &run.dead_letter_topic).await;
    let mut all = Vec::new();
    for i in 0..1000 {
        all.push((format!("good-{i}"), format!("good-{i}")));
        if i % 100 == 50 {
            all.push((format!("bad-{i}"), format!("bad-{i}")));
        }
    }
    publish_all(&run.topic, &all).await;
    eventually(
        Duration::from_secs(60),
        "the 1,000 good keys applied",
        || async { (count(&run.pool, "good-%").await == 1000).then_some(()) },
    )
    .await;
    let mut dead = Vec::new();
    while dead.len() < 10 {
        let message = tokio::time::timeout(Duration::from_secs(60), dead_letters.try_next())
            .await
            .expect("a dead letter within 60 s")
            .unwrap()
            .unwrap();
        dead.push(e2e::property(&message, "message-id").unwrap());
    }
    assert!(dead.iter().all(|id| id.starts_with("bad-")), "{dead:?}");
    let more = tokio::time::timeout(Duration::from_secs(2), dead_letters.try_next()).await;
    assert!(
        more.is_err(),
        "only the bad keys were dead-lettered: {more:?}"
    );
    let status = run.board.snapshot().subscriptions.remove(0);
    println!("a batch breaker among 1,000 good keys: {status:?}");
    assert_eq!(
        (status.retried, status.dead_lettered, status.applied),
        (20, 10, 1000),
        "only the bad keys were retried (10 messages x 2 retries): {status:?}"
    );
    run.shutdown.cancel();
    run.consumer.await.unwrap().unwrap();
}

/// Applies a whole set in one statement (`Handler::apply_set`), recording every application in
/// `applications` (no unique key: a message applied twice would show twice) and the size of
/// every set it was given. A `poison` key makes the statement fail (a division by zero), so the
/// set it is in fails as a whole; the first set holding `warmup` waits 2 s, so that everything
/// published meanwhile is ready for the next one.
struct SetRecorder {
    pool: PgPool,
    sets: Arc<std::sync::Mutex<Vec<usize>>>,
}

impl Handler for SetRecorder {
    fn batch_pool(&self) -> Option<&PgPool> {
        Some(&self.pool)
    }

    fn applies_sets(&self) -> bool {
        true
    }

    async fn apply_set(
        &self,
        conn: &mut PgConnection,
        deliveries: &[&Delivery],
    ) -> Result<Vec<Result<(), Failure>>, Failure> {
        self.sets.lock().unwrap().push(deliveries.len());
        let keys: Vec<String> = deliveries
            .iter()
            .map(|d| d.key.clone().unwrap_or_default())
            .collect();
        if keys.iter().any(|key| key == "warmup") {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let ids: Vec<&str> = deliveries.iter().map(|d| d.message_id.as_str()).collect();
        sqlx::query(
            "insert into applications (message_id, key, ok)
             select id, key, 1 / (case when key like 'poison%' then 0 else 1 end)
             from unnest($1::text[], $2::text[]) as m(id, key)",
        )
        .bind(&ids)
        .bind(&keys)
        .execute(conn)
        .await
        .map_err(|e| Failure::Transient(e.into()))?;
        Ok(deliveries.iter().map(|_| Ok(())).collect())
    }
}

#[tokio::test]
async fn a_poison_message_in_a_set_of_64_is_isolated_by_halving_and_the_other_63_apply_once() {
    let sets = Arc::new(std::sync::Mutex::new(Vec::new()));
    let given = sets.clone();
    let run = start_with(
        |pool| SetRecorder { pool, sets: given },
        |subscription| {
            subscription.concurrency = 1;
            subscription.batch_size = 64;
            subscription.max_redeliveries = 1;
            subscription.min_backoff = Duration::from_secs(1);
            subscription.max_backoff = Duration::from_secs(1);
        },
    )
    .await;
    sqlx::query("create table applications (message_id text not null, key text not null, ok int)")
        .execute(&run.pool)
        .await
        .unwrap();
    let client = pulsar().await;
    let mut dead_letters = e2e::consumer(&client, &run.dead_letter_topic).await;
    publish_all(&run.topic, &[("warmup".into(), "warmup".into())]).await;
    eventually(
        Duration::from_secs(30),
        "the warm-up given to the handler",
        || async { (!sets.lock().unwrap().is_empty()).then_some(()) },
    )
    .await;
    let mut set = Vec::new();
    for i in 0..64 {
        if i == 40 {
            set.push(("poison".to_owned(), "poison".to_owned()));
        } else {
            set.push((format!("good-{i}"), format!("good-{i}")));
        }
    }
    publish_all(&run.topic, &set).await;
    let dead = tokio::time::timeout(Duration::from_secs(60), dead_letters.try_next())
        .await
        .expect("the poison message dead-lettered within 60 s")
        .unwrap()
        .unwrap();
    assert_eq!(
        e2e::property(&dead, "message-id").as_deref(),
        Some("poison")
    );
    let applied: Vec<(String, i64)> = sqlx::query_as(
        "select message_id, count(*) from applications group by message_id order by message_id",
    )
    .fetch_all(&run.pool)
    .await
    .unwrap();
    assert_eq!(
        applied.len(),
        64,
        "the warm-up and the 63 good: {applied:?}"
    );
    assert!(
        applied
            .iter()
            .all(|(id, n)| *n == 1 && (id.starts_with("good-") || id == "warmup")),
        "each applied once, the poison never: {applied:?}"
    );
    let sets = sets.lock().unwrap().clone();
    println!("sets given to the handler: {sets:?}");
    // The set of 64 failed, then its half with the poison, down to the poison alone (64, 32,
    // 16, 8, 4, 2, 1), each good half applied once beside it, and the poison retried alone.
    assert_eq!(sets.first(), Some(&1), "the warm-up alone first: {sets:?}");
    assert_eq!(sets.get(1), Some(&64), "then all 64 in one set: {sets:?}");
    assert_eq!(
        sets.iter().filter(|&&n| n == 1).count(),
        1 + 2 + 1,
        "the warm-up, the poison alone and its retry, and one good message whose half was 2: {sets:?}"
    );
    assert_eq!(sets.len(), 2 + 12 + 1, "{sets:?}");
    let status = run.board.snapshot().subscriptions.remove(0);
    assert_eq!(
        (status.retried, status.dead_lettered, status.applied),
        (1, 1, 64),
        "{status:?}"
    );
    run.shutdown.cancel();
    run.consumer.await.unwrap().unwrap();
}

async fn dead_letters_only_the_bad_key() {
    let run = start(true, 0, 2, (1, 2), false).await;
    let client = pulsar().await;
    let mut dead_letters = e2e::consumer(&client, &run.dead_letter_topic).await;
    let started = Instant::now();
    publish_all(&run.topic, &messages()).await;
    eventually(
        Duration::from_secs(60),
        "the 1,000 other keys applied",
        || async { (count(&run.pool, "good-%").await == 1000).then_some(()) },
    )
    .await;
    println!("1,000 other keys applied in {:?}", started.elapsed());
    // Every message of the bad key fails for good: each is dead-lettered, in order, and nothing
    // else is.
    let mut dead = Vec::new();
    while dead.len() < 3 {
        let message = tokio::time::timeout(Duration::from_secs(60), dead_letters.try_next())
            .await
            .expect("a dead letter within 60 s")
            .unwrap()
            .unwrap();
        assert_eq!(
            e2e::property(&message, "REAL_TOPIC").as_deref(),
            Some(run.topic.as_str()),
            "a dead letter says where it came from"
        );
        dead.push(e2e::property(&message, "message-id").unwrap());
    }
    assert_eq!(dead, ["bad-0", "bad-1", "bad-2"]);
    assert_eq!(
        count(&run.pool, "bad").await,
        0,
        "nothing of the bad key applied"
    );
    println!(
        "the failing key's messages dead-lettered in order after {:?}",
        started.elapsed()
    );
    let more = tokio::time::timeout(Duration::from_secs(2), dead_letters.try_next()).await;
    assert!(
        more.is_err(),
        "only the bad key was dead-lettered: {more:?}"
    );
    // Only the bad key's messages were retried: 3 messages x 2 retries.
    let status = run.board.snapshot().subscriptions.remove(0);
    assert_eq!(
        (status.retried, status.dead_lettered, status.applied),
        (6, 3, 1000),
        "{status:?}"
    );
    run.shutdown.cancel();
    run.consumer.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_consumer_full_of_messages_waiting_on_a_lock_reports_the_stall_and_carries_on() {
    // At most 40 messages held: the loop stops reading long before the 1,300 messages are in, and
    // its transactions all wait on the gate the test holds. pulsar-rs's consumer keeps asking the
    // broker for more and hands them on through a queue of 1,000: with 1,300 published, that queue
    // is full and the consumer's engine waits for the loop to read.
    let run = start_with(
        |pool| Gated { pool },
        |subscription| {
            subscription.max_held = 40;
            subscription.concurrency = 2;
            subscription.batch_size = 8;
            subscription.stall_after = Duration::from_secs(3);
        },
    )
    .await;
    sqlx::query("create table gate (id int primary key)")
        .execute(&run.pool)
        .await
        .unwrap();
    sqlx::query("insert into gate values (1)")
        .execute(&run.pool)
        .await
        .unwrap();
    let mut gate = run.pool.begin().await.unwrap();
    sqlx::query("select 1 from gate where id = 1 for update")
        .execute(&mut *gate)
        .await
        .unwrap();
    let all: Vec<(String, String)> = (0..1300)
        .map(|i| (format!("key-{i}"), format!("message-{i}")))
        .collect();
    publish_all(&run.topic, &all).await;
    let door = service_runtime::status::COMMAND_DOOR_HEALTH;

    // Held for longer than the old quiet check (5 s) and its time-out (5 s) together: the loop
    // used to end its subscription here and then wait forever to close it. What the board says
    // meanwhile is sampled.
    let held_since = Instant::now();
    let mut stalled = run.board.snapshot().subscriptions.remove(0);
    let mut door_serving_while_held = true;
    while held_since.elapsed() < Duration::from_secs(12) {
        let now = run.board.snapshot().subscriptions.remove(0);
        if now.stalled_for_ms >= stalled.stalled_for_ms {
            stalled = now;
        }
        door_serving_while_held &= !run.board.components().contains(&(door.into(), false));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gate.commit().await.unwrap();
    eventually(
        Duration::from_secs(60),
        "all 1,300 messages applied after the gate opened",
        || async { (count(&run.pool, "key-%").await == 1300).then_some(()) },
    )
    .await;

    println!("while the gate was held: {stalled:?}");
    assert!(
        stalled.state.starts_with("stalled: no progress for")
            && stalled.state.ends_with("with 40 waiting"),
        "{}",
        stalled.state
    );
    assert!(stalled.stalled_for_ms >= 8_000, "{stalled:?}");
    assert_eq!(stalled.waiting, 40, "it held its maximum");
    assert!(stalled.oldest_waiting_age_ms >= 8_000, "{stalled:?}");
    assert!(
        !door_serving_while_held,
        "the command door was NOT_SERVING while it was stalled"
    );
    let status = eventually(Duration::from_secs(10), "the stall is over", || async {
        let status = run.board.snapshot().subscriptions.remove(0);
        (status.state == "consuming" && status.waiting == 0).then_some(status)
    })
    .await;
    println!("after the gate opened: {status:?}");
    assert!(run.board.components().contains(&(door.into(), true)));
    assert_eq!(
        (status.reconnects, status.stall_recoveries, status.applied),
        (0, 0, 1300),
        "slow work is waited for, not resubscribed: {status:?}"
    );
    run.shutdown.cancel();
    run.consumer.await.unwrap().unwrap();
}
