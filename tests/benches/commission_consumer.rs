//! One commission-service process applying a backlog of `commission.calculate.command.v1`
//! messages from the real broker, against a baseline that does the same SQL work directly on the
//! same PostgreSQL server (idempotency claim, campaign terms read, commission insert, balance
//! upsert, ledger transfer, outbox append, response stored), batched the same way (the consumer's batch size
//! and concurrency), measured in the same run.
//!
//! `cargo bench -p e2e --bench commission_consumer` (infrastructure up: `deploy/local/infra.sh up`).
//! `BENCH_MESSAGES` (default 20000) and `BENCH_CREATORS` (default 1000) size the run;
//! `CONSUMER_BATCH_SIZE` / `CONSUMER_CONCURRENCY` (defaults 64 / 4) apply to both sides.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use prost::Message as _;
use sqlx::PgPool;
use uuid::Uuid;

use affiliate_proto::commission::{
    CalculateCommissionRequest, CommissionCommand, commission_command::Command,
};
use affiliate_proto::common::{MessageMetadata, Money};
use commission_service::{Application, Commission};
use e2e::{fresh_database, fresh_namespace, pulsar, pulsar_tenant};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the baseline writes for one command: message id, tracking event, creator, request bytes.
type Work = (Uuid, Uuid, Uuid, Vec<u8>);

/// One purchase's calculate command: (message id, tracking event, creator).
struct Purchase {
    message_id: Uuid,
    tracking_event_id: Uuid,
    creator_id: Uuid,
}

const PURCHASE_MINOR: i64 = 2000;
const RATE_BPS: i64 = 1250;

fn purchases(n: usize, creators: usize) -> Vec<Purchase> {
    (0..n)
        .map(|i| Purchase {
            message_id: Uuid::now_v7(),
            tracking_event_id: Uuid::now_v7(),
            creator_id: Uuid::from_u128(1 + (i % creators) as u128),
        })
        .collect()
}

fn request(p: &Purchase, campaign: Uuid) -> CalculateCommissionRequest {
    CalculateCommissionRequest {
        tracking_event_id: p.tracking_event_id.to_string(),
        campaign_id: campaign.to_string(),
        creator_id: p.creator_id.to_string(),
        purchase_amount: Some(Money {
            amount_minor: PURCHASE_MINOR,
            currency: "EUR".into(),
        }),
    }
}

async fn add_campaign(pool: &PgPool, campaign: Uuid) {
    sqlx::query(
        "insert into campaign_terms (campaign_id, commission_rate_bps, currency, status, version) values ($1, $2, 'EUR', 'active', 1)",
    )
    .bind(campaign)
    .bind(RATE_BPS as i32)
    .execute(pool)
    .await
    .unwrap();
}

async fn commissions(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from commissions")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Pre-fills `commission-commands` of `namespace` with one calculate command per purchase.
async fn fill(namespace: &str, campaign: Uuid, all: &[Purchase]) {
    let topic = format!(
        "persistent://{}/{namespace}/commission-commands",
        pulsar_tenant()
    );
    let client = pulsar().await;
    for chunk in all.chunks(50) {
        let mut receipts = Vec::with_capacity(chunk.len());
        for p in chunk {
            let command = Command::Calculate(request(p, campaign));
            let envelope = CommissionCommand {
                metadata: Some(MessageMetadata {
                    message_id: p.message_id.to_string(),
                    message_type: command.message_type().to_owned(),
                    correlation_id: "bench".into(),
                    aggregate_id: p.tracking_event_id.to_string(),
                    aggregate_version: 1,
                    ..Default::default()
                }),
                command: Some(command),
            };
            let message = pulsar::producer::Message {
                payload: envelope.encode_to_vec(),
                partition_key: Some(p.tracking_event_id.to_string()),
                ..Default::default()
            };
            receipts.push(client.send(topic.as_str(), message).await.unwrap());
        }
        for r in receipts {
            r.await.unwrap();
        }
    }
}

/// The commission service consuming the backlog; returns the time until every commission is in.
async fn consumer_run(n: usize, all: &[Purchase]) -> Duration {
    let db = fresh_database("bench_consumer").await;
    let namespace = fresh_namespace().await;
    let campaign = Uuid::now_v7();
    fill(&namespace, campaign, all).await;
    let config = service_host::kit::parse_from::<Commission, _, _>(e2e::service_args(
        "commission-service",
        &db.url,
        &namespace,
        &["--mode", "events", "--database-max-connections", "20"],
    ))
    .unwrap();
    let app = Application::build(config).await.unwrap();
    add_campaign(&db.pool, campaign).await;
    println!("backlog of {n} on the broker; the commission service starts consuming");
    let started = Instant::now();
    let served = e2e::serve(app);
    while (commissions(&db.pool).await as usize) < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the backlog did not drain in 10 min"
        );
    }
    let elapsed = started.elapsed();
    served.stop().await;
    elapsed
}

/// The same SQL work straight from this process: batches of `batch` messages in one
/// transaction, `concurrency` transactions at once.
async fn baseline_run(all: &[Purchase], batch: usize, concurrency: usize) -> Duration {
    let db = fresh_database("bench_baseline").await;
    service_runtime::db::migrate(
        &db.pool,
        <Commission as service_host::kit::Declaration>::MIGRATOR,
    )
    .await
    .unwrap();
    let campaign = Uuid::now_v7();
    add_campaign(&db.pool, campaign).await;
    let work: Vec<Work> = all
        .iter()
        .map(|p| {
            (
                p.message_id,
                p.tracking_event_id,
                p.creator_id,
                request(p, campaign).encode_to_vec(),
            )
        })
        .collect();
    let chunks: Vec<Vec<Work>> = work.chunks(batch).map(<[_]>::to_vec).collect();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(chunks));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (pool, queue) = (db.pool.clone(), queue.clone());
            tokio::spawn(async move {
                loop {
                    let Some(mut chunk) = queue.lock().unwrap().pop() else {
                        break;
                    };
                    chunk.sort_by_key(|(_, _, creator, _)| *creator);
                    apply_directly(&pool, campaign, &chunk).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    assert_eq!(commissions(&db.pool).await as usize, all.len());
    elapsed
}

async fn apply_directly(pool: &PgPool, campaign: Uuid, chunk: &[Work]) {
    let mut tx = pool.begin().await.unwrap();
    for (message_id, tracking_event_id, creator, request) in chunk {
        let key = message_id.to_string();
        sqlx::query("insert into idempotency_keys (idempotency_key, operation, request) values ($1, 'commission.calculate', $2) on conflict (idempotency_key) do nothing")
            .bind(&key).bind(request).execute(&mut *tx).await.unwrap();
        let (rate, _currency, _status): (i32, String, String) = sqlx::query_as(
            "select commission_rate_bps, currency, status from campaign_terms where campaign_id = $1",
        )
        .bind(campaign)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        let amount = PURCHASE_MINOR * i64::from(rate) / 10_000;
        let id = Uuid::now_v7();
        sqlx::query("insert into commissions (id, tracking_event_id, campaign_id, creator_id, purchase_minor, currency, commission_rate_bps, amount_minor, created_at) values ($1, $2, $3, $4, $5, 'EUR', $6, $7, now())")
            .bind(id).bind(tracking_event_id).bind(campaign).bind(creator).bind(PURCHASE_MINOR).bind(rate).bind(amount)
            .execute(&mut *tx).await.unwrap();
        sqlx::query("insert into balances (creator_id, currency, available_minor) values ($1, 'EUR', $2) on conflict (creator_id, currency) do update set available_minor = balances.available_minor + excluded.available_minor returning *")
            .bind(creator).bind(amount).execute(&mut *tx).await.unwrap();
        sqlx::query("insert into ledger_transfers (entry_id, kind, currency, debit_account, credit_account, amount_minor, commission_id, created_at) values ($1, 'commission', 'EUR', 'budget/' || $2::text, 'available/' || $3::text, $4, $5, now())")
            .bind(Uuid::now_v7()).bind(campaign).bind(creator).bind(amount).bind(id)
            .execute(&mut *tx).await.unwrap();
        sqlx::query("insert into outbox (message_id, topic, message_type, aggregate_type, aggregate_id, aggregate_version, correlation_id, payload) values ($1, 'commission-events', 'commission.calculated.v1', 'commission', $2, 1, 'bench', $3)")
            .bind(Uuid::now_v7()).bind(id).bind(vec![7u8; 200]).execute(&mut *tx).await.unwrap();
        sqlx::query("update idempotency_keys set response = $2 where idempotency_key = $1")
            .bind(&key)
            .bind(vec![7u8; 100])
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

/// Counts what it is handed and does nothing else: the consumer loop's own ceiling.
struct Noop(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl messaging::Handler for Noop {
    async fn handle(&self, _: &messaging::Delivery) -> Result<(), messaging::Failure> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// The same backlog through the consumer loop with a handler that does nothing.
async fn loop_only_run(n: usize, all: &[Purchase], concurrency: usize) -> Duration {
    let namespace = fresh_namespace().await;
    fill(&namespace, Uuid::now_v7(), all).await;
    let topic = format!(
        "persistent://{}/{namespace}/commission-commands",
        pulsar_tenant()
    );
    let mut subscription = messaging::Subscription::new(vec![topic], "bench", 5);
    subscription.concurrency = concurrency * env("CONSUMER_BATCH_SIZE", 64);
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(messaging::run_consumer(
        pulsar().await,
        subscription,
        std::sync::Arc::new(Noop(seen.clone())),
        shutdown.clone(),
    ));
    while seen.load(std::sync::atomic::Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    task.await.unwrap().unwrap();
    elapsed
}

#[tokio::main]
async fn main() {
    let n = env("BENCH_MESSAGES", 20_000);
    let creators = env("BENCH_CREATORS", 1000);
    let batch = env("CONSUMER_BATCH_SIZE", 64);
    let concurrency = env("CONSUMER_CONCURRENCY", 4);
    let all = purchases(n, creators);
    println!(
        "commission consumer: {n} calculate commands, {creators} creators, batches of {batch}, {concurrency} at once"
    );
    let baseline = baseline_run(&all, batch, concurrency).await;
    let consumer = consumer_run(n, &all).await;
    let looped = loop_only_run(n, &all, concurrency).await;
    let (b, c) = (
        n as f64 / baseline.as_secs_f64(),
        n as f64 / consumer.as_secs_f64(),
    );
    println!("raw SQL baseline:          {b:>8.0} commands/s ({baseline:.2?})");
    println!(
        "commission-service:        {c:>8.0} commands/s ({consumer:.2?}) from the broker's backlog"
    );
    println!("ratio consumer / baseline: {:.2}", c / b);
    println!(
        "the consumer loop alone (a handler that does nothing, as many keys at once): {:>8.0} messages/s",
        n as f64 / looped.as_secs_f64()
    );
}
