//! The relay's correctness under concurrency and crashes, against the real PostgreSQL and Pulsar.
//!
//! Many writers commit (and sometimes roll back) outbox rows with random delays inside their
//! transactions, several per aggregate, each holding the aggregate's row lock as the services do.
//! Two relay processes run (one leads, one stands by) and are SIGKILLed and restarted at random
//! moments. Then: every committed message arrived at least once, no rolled-back message arrived,
//! and per aggregate the first arrivals come in increasing version order.
//!
//! Reproduce a run with `CHAOS_SEED=<seed printed below>`; logs are in target/test-logs/relay_chaos/.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt as _;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use e2e::process::{Process, binary};
use e2e::{consumer, fresh_database, log_dir, property, pulsar, pulsar_url, topic};
use relay::publisher::properties;
use service_runtime::db::PLATFORM_MIGRATOR;
use service_runtime::outbox::{OutboxMessage, append};

const WRITERS: u64 = 12;
const TRANSACTIONS_PER_WRITER: usize = 400;
const AGGREGATES: usize = 20;
const ROLLBACK_PROBABILITY: f64 = 0.15;

#[derive(Default)]
struct Ledger {
    committed: HashMap<Uuid, (Uuid, i64)>,
    rolled_back: HashSet<Uuid>,
}

fn start_relay(name: &str, database_url: &str, logs: &std::path::Path) -> Process {
    Process::start(
        name,
        &binary("relay"),
        &[],
        &[
            ("RELAY_OUTBOXES", format!("chaos={database_url}")),
            ("PULSAR_URL", pulsar_url()),
            ("RELAY_BATCH_SIZE", "50".into()),
            ("RELAY_POLL_INTERVAL", "100ms".into()),
            ("RELAY_STANDBY_INTERVAL", "100ms".into()),
            ("RELAY_MAX_BACKOFF", "1s".into()),
        ],
        logs,
    )
}

async fn writer(
    pool: sqlx::PgPool,
    aggregates: Arc<Vec<Uuid>>,
    short_topic: String,
    seed: u64,
    ledger: Arc<Mutex<Ledger>>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..TRANSACTIONS_PER_WRITER {
        let aggregate = aggregates[rng.random_range(0..aggregates.len())];
        let before_lock = Duration::from_micros(rng.random_range(0..2000));
        let inside = Duration::from_micros(rng.random_range(0..4000));
        let roll_back = rng.random_bool(ROLLBACK_PROBABILITY);
        let message_id = Uuid::now_v7();

        let mut tx = pool.begin().await.unwrap();
        tokio::time::sleep(before_lock).await;
        let version: i64 =
            sqlx::query_scalar("select version from chaos_aggregates where id = $1 for update")
                .bind(aggregate)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        let version = version + 1;
        sqlx::query("update chaos_aggregates set version = $2 where id = $1")
            .bind(aggregate)
            .bind(version)
            .execute(&mut *tx)
            .await
            .unwrap();
        let message = OutboxMessage {
            message_id,
            topic: short_topic.clone(),
            message_type: "chaos.happened.v1".into(),
            aggregate_type: "chaos".into(),
            aggregate_id: aggregate,
            aggregate_version: version,
            correlation_id: format!("writer-{seed}"),
            causation_id: None,
            traceparent: None,
            tracestate: None,
            payload: message_id.as_bytes().to_vec(),
        };
        append(&mut tx, &[message]).await.unwrap();
        tokio::time::sleep(inside).await;
        if roll_back {
            tx.rollback().await.unwrap();
            ledger.lock().unwrap().rolled_back.insert(message_id);
        } else {
            tx.commit().await.unwrap();
            ledger
                .lock()
                .unwrap()
                .committed
                .insert(message_id, (aggregate, version));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committed_events_arrive_in_order_despite_relay_crashes() {
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("relay chaos seed: {seed} (rerun with CHAOS_SEED={seed})");
    let logs = log_dir("relay_chaos");
    let db = fresh_database("relay_chaos").await;
    PLATFORM_MIGRATOR.run(&db.pool).await.unwrap();
    sqlx::query("create table chaos_aggregates (id uuid primary key, version bigint not null)")
        .execute(&db.pool)
        .await
        .unwrap();
    let aggregates: Arc<Vec<Uuid>> = Arc::new((0..AGGREGATES).map(|_| Uuid::now_v7()).collect());
    for id in aggregates.iter() {
        sqlx::query("insert into chaos_aggregates (id, version) values ($1, 0)")
            .bind(id)
            .execute(&db.pool)
            .await
            .unwrap();
    }

    // Subscribe before anything is published.
    let short_topic = format!("chaos-{}-events", Uuid::new_v4().simple());
    let client = pulsar().await;
    let mut events = consumer(&client, &topic(&short_topic)).await;
    let received: Arc<Mutex<Vec<(Uuid, String, i64)>>> = Arc::default();
    let collector = {
        let received = received.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = events.try_next().await {
                let id = property(&message, properties::MESSAGE_ID)
                    .and_then(|s| s.parse().ok())
                    .unwrap();
                let version = property(&message, properties::AGGREGATE_VERSION)
                    .and_then(|s| s.parse().ok())
                    .unwrap();
                let key = message.key().unwrap_or_default();
                received.lock().unwrap().push((id, key, version));
                events.ack(&message).await.unwrap();
            }
        })
    };

    // Two relays: whichever gets the lock leads, the other stands by.
    let relays = Arc::new(Mutex::new(vec![
        start_relay("relay-a", &db.url, &logs),
        start_relay("relay-b", &db.url, &logs),
    ]));
    let stop_chaos = CancellationToken::new();
    let kills = {
        let relays = relays.clone();
        let stop = stop_chaos.clone();
        let db_url = db.url.clone();
        let logs = logs.clone();
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
            let mut kills = 0u32;
            loop {
                let pause = Duration::from_millis(rng.random_range(50..400));
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(pause) => {}
                }
                let victim = rng.random_range(0..2);
                let name = if victim == 0 { "relay-a" } else { "relay-b" };
                let mut relays = relays.lock().unwrap();
                relays[victim].kill();
                kills += 1;
                relays[victim] = start_relay(name, &db_url, &logs);
            }
            kills
        })
    };

    let ledger: Arc<Mutex<Ledger>> = Arc::default();
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| {
            tokio::spawn(writer(
                db.pool.clone(),
                aggregates.clone(),
                short_topic.clone(),
                seed.wrapping_add(i),
                ledger.clone(),
            ))
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    stop_chaos.cancel();
    let kills = kills.await.unwrap();

    // Wait for the surviving relays to drain the outbox and the consumer to see every commit.
    let committed: HashSet<Uuid> = ledger.lock().unwrap().committed.keys().copied().collect();
    e2e::eventually(
        Duration::from_secs(90),
        "every committed message received and the outbox empty",
        || {
            let received = received.clone();
            let committed = committed.clone();
            let pool = db.pool.clone();
            async move {
                let pending: i64 = sqlx::query_scalar("select count(*) from outbox")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                let seen: HashSet<Uuid> = received
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(id, _, _)| *id)
                    .collect();
                (pending == 0 && committed.is_subset(&seen)).then_some(())
            }
        },
    )
    .await;
    for relay in relays.lock().unwrap().iter_mut() {
        assert!(
            relay.is_running(),
            "{} died on its own; see {}",
            relay.name,
            relay.log.display()
        );
    }
    collector.abort();

    let ledger = ledger.lock().unwrap();
    let received = received.lock().unwrap();
    let mut first_seen: HashSet<Uuid> = HashSet::new();
    let mut last_version: HashMap<String, i64> = HashMap::new();
    let mut duplicates = 0usize;
    for (id, key, version) in received.iter() {
        assert!(
            !ledger.rolled_back.contains(id),
            "rolled-back message {id} was published"
        );
        let (aggregate, committed_version) = ledger
            .committed
            .get(id)
            .unwrap_or_else(|| panic!("unknown message {id} published"));
        assert_eq!(
            key,
            &aggregate.to_string(),
            "message {id} keyed by the wrong aggregate"
        );
        assert_eq!(
            version, committed_version,
            "message {id} carries the wrong version"
        );
        if !first_seen.insert(*id) {
            duplicates += 1;
            continue;
        }
        let last = last_version.entry(key.clone()).or_insert(0);
        assert!(
            *version > *last,
            "aggregate {key}: version {version} first arrived after version {last} (seed {seed})"
        );
        *last = *version;
    }
    assert_eq!(first_seen.len(), ledger.committed.len());
    println!(
        "relay chaos: {} committed, {} rolled back, {} received ({} duplicates), {} relay kills, {} aggregates, seed {}",
        ledger.committed.len(),
        ledger.rolled_back.len(),
        received.len(),
        duplicates,
        kills,
        AGGREGATES,
        seed
    );
    assert!(kills > 0, "the run ended before any relay was killed");
}
