//! Relay throughput against its baselines, measured in the same run on the real PostgreSQL and
//! Pulsar: a bare pipelined Pulsar producer sending the same messages, and raw PostgreSQL inserts
//! beside the outbox appends the services make.
//!
//! Then the relay's drain again with tracing on (spans exported over OTLP to an in-process trace
//! viewer; one row in ten carries a sampled trace context, as the default sampler leaves them, and
//! gets a publish span as that context's child) against the first drain, whose rows carry none;
//! both with the metrics recorder and the exporter installed, as in the relay.
//!
//! `cargo bench -p e2e --bench relay_throughput` (infrastructure up: `deploy/local/infra.sh up`).
//! `BENCH_MESSAGES` (default 20000) and `BENCH_PAYLOAD` bytes (default 300) size the run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use futures::future::try_join_all;
use pulsar::ProducerOptions;
use service_runtime::config::PulsarArgs;
use service_runtime::db::PLATFORM_MIGRATOR;
use service_runtime::outbox::{OutboxMessage, append};
use uuid::Uuid;

use e2e::{fresh_database, pulsar, pulsar_namespace, pulsar_tenant, pulsar_url, topic};
use relay::batch::{OutboxRow, Outcome, publish_batch};
use relay::publisher::{Publisher, message};

const WRITERS: usize = 8;
const BATCH: i64 = 500;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn outbox_message(short_topic: &str, payload_len: usize, i: usize) -> OutboxMessage {
    OutboxMessage {
        message_id: Uuid::now_v7(),
        topic: short_topic.to_owned(),
        message_type: "bench.happened.v1".into(),
        aggregate_type: "bench".into(),
        aggregate_id: Uuid::from_u128(i as u128 % 1000),
        aggregate_version: i as i64,
        correlation_id: "bench".into(),
        causation_id: None,
        traceparent: None,
        tracestate: None,
        payload: vec![7u8; payload_len],
    }
}

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

/// `n` single-row transactions spread over `WRITERS` concurrent connections.
async fn insert_per_transaction<F, Fut>(n: usize, work: F) -> Duration
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let work = work.clone();
            tokio::spawn(async move {
                for i in (w..n).step_by(WRITERS) {
                    work(i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let n = env("BENCH_MESSAGES", 20_000);
    let payload_len = env("BENCH_PAYLOAD", 300);
    let db = fresh_database("relay_bench").await;
    PLATFORM_MIGRATOR.run(&db.pool).await.unwrap();
    sqlx::query("create table raw_inserts (id bigint generated always as identity primary key, payload bytea not null)")
        .execute(&db.pool)
        .await
        .unwrap();
    let run = Uuid::new_v4().simple().to_string();
    let client = pulsar().await;

    // Baseline: raw PostgreSQL inserts, one row per transaction.
    let pool = db.pool.clone();
    let raw = insert_per_transaction(n, move |_| {
        let pool = pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("insert into raw_inserts (payload) values ($1)")
                .bind(vec![7u8; payload_len])
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    })
    .await;

    // The services' write path: one outbox row per transaction through the outbox writer.
    let relay_topic = format!("bench-{run}-relay");
    let pool = db.pool.clone();
    let t = relay_topic.clone();
    let outbox = insert_per_transaction(n, move |i| {
        let pool = pool.clone();
        let t = t.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            append(&mut tx, &[outbox_message(&t, payload_len, i)])
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    })
    .await;

    // Baseline: a bare producer sending the very same messages (key, properties), pipelined.
    let bare_topic = topic(&format!("bench-{run}-bare"));
    let mut producer = client
        .producer()
        .with_topic(&bare_topic)
        .with_options(ProducerOptions {
            block_queue_if_full: true,
            ..ProducerOptions::default()
        })
        .build()
        .await
        .unwrap();
    let rows: Vec<OutboxRow> = sqlx::query_as("select * from outbox order by id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    // The first batch of each path is a warm-up (producer and topic creation), not timed.
    let mut started = Instant::now();
    for (i, chunk) in rows.chunks(BATCH as usize).enumerate() {
        if i == 1 {
            started = Instant::now();
        }
        let mut receipts = Vec::with_capacity(chunk.len());
        for row in chunk {
            receipts.push(producer.send_non_blocking(message(row)).await.unwrap());
        }
        try_join_all(receipts).await.unwrap();
    }
    let bare = started.elapsed();

    // Both relay drains run as the relay does: the metrics recorder installed and spans exported
    // over OTLP to a real trace viewer. The first drains rows with no trace context (tracing off
    // for them: no span per message), the second rows that carry one, one in ten sampled, as the
    // default sampler (one new trace in ten) leaves them.
    let viewer = trace_viewer::Application::build(
        <trace_viewer::Config as clap::Parser>::try_parse_from([
            "trace-viewer",
            "--otlp-listen",
            "127.0.0.1:0",
            "--ui-listen",
            "127.0.0.1:0",
        ])
        .unwrap(),
    )
    .await
    .unwrap();
    let otlp = format!("http://{}", viewer.otlp_addr());
    let ui = format!("http://{}", viewer.ui_addr());
    tokio::spawn(viewer.run_until_stopped(tokio_util::sync::CancellationToken::new()));
    service_runtime::telemetry::init(&service_runtime::config::LogArgs {
        filter: "warn,relay=info".into(),
        format: "json".into(),
        otlp_endpoint: Some(otlp),
        service_name: Some("relay-bench".into()),
        metrics_listen: None,
    })
    .unwrap();
    // The relay's step function draining the outbox: claim, publish, await receipts, delete, commit.
    let args = PulsarArgs {
        url: pulsar_url(),
        tenant: pulsar_tenant(),
        namespace: pulsar_namespace(),
        connect_timeout: Duration::from_secs(20),
        tls_ca_file: None,
        token: None,
        token_file: None,
        oauth2: Default::default(),
    };
    let mut publisher = Publisher::new(client.clone(), args);
    let mut conn = db.pool.acquire().await.unwrap();
    let mut published =
        match publish_batch(&mut conn, &mut publisher, BATCH, Duration::from_secs(60))
            .await
            .unwrap()
        {
            Outcome::Published(k) => k,
            Outcome::Empty => 0,
        };
    let started = Instant::now();
    while let Outcome::Published(k) =
        publish_batch(&mut conn, &mut publisher, BATCH, Duration::from_secs(60))
            .await
            .unwrap()
    {
        published += k;
    }
    let relay = started.elapsed();
    assert_eq!(published, n);

    // The same drain again, its rows carrying trace contexts, one in ten sampled.
    let traced_rows: Vec<OutboxMessage> = (0..n)
        .map(|i| {
            let mut m = outbox_message(&relay_topic, payload_len, i);
            let sampled = if (i + 1) % 10 == 0 { "01" } else { "00" };
            m.traceparent = Some(format!(
                "00-{:032x}-{:016x}-{sampled}",
                i as u128 + 1,
                i as u64 + 1
            ));
            m
        })
        .collect();
    let mut tx = db.pool.begin().await.unwrap();
    for chunk in traced_rows.chunks(1000) {
        append(&mut tx, chunk).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut traced_published = 0;
    let mut started = Instant::now();
    let mut first = true;
    while let Outcome::Published(k) =
        publish_batch(&mut conn, &mut publisher, BATCH, Duration::from_secs(60))
            .await
            .unwrap()
    {
        if first {
            started = Instant::now(); // the first batch is untimed here too
            first = false;
        } else {
            traced_published += k;
        }
    }
    let traced = started.elapsed();
    assert_eq!(traced_published, n - BATCH as usize);
    service_runtime::telemetry::shutdown();
    let exported: serde_json::Value = reqwest::get(format!("{ui}/api/traces/{:032x}", n as u128))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let exported_spans = exported["data"][0]["spans"].as_array().map_or(0, Vec::len);

    let timed = n - BATCH as usize;
    println!(
        "relay throughput: {n} messages of {payload_len} B payload, batches of {BATCH} (first batch untimed), {WRITERS} writers"
    );
    println!(
        "  bare Pulsar producer, pipelined per {BATCH}   {:>9.0} msg/s  ({:.2} s)",
        rate(timed, bare),
        bare.as_secs_f64()
    );
    println!(
        "  relay publish_batch (claim+send+delete)   {:>9.0} msg/s  ({:.2} s, {:.0} % of bare)",
        rate(timed, relay),
        relay.as_secs_f64(),
        100.0 * bare.as_secs_f64() / relay.as_secs_f64()
    );
    println!(
        "  relay publish_batch, tracing on, 1 in 10 sampled (OTLP) {:>9.0} msg/s  ({:.2} s, {:.0} % of tracing off; last message's trace in the viewer: {exported_spans} span)",
        rate(timed, traced),
        traced.as_secs_f64(),
        100.0 * relay.as_secs_f64() / traced.as_secs_f64()
    );
    println!(
        "  raw PostgreSQL insert, 1 row per tx       {:>9.0} rows/s ({:.2} s)",
        rate(n, raw),
        raw.as_secs_f64()
    );
    println!(
        "  outbox append, 1 row per tx               {:>9.0} rows/s ({:.2} s, {:.0} % of raw)",
        rate(n, outbox),
        outbox.as_secs_f64(),
        100.0 * raw.as_secs_f64() / outbox.as_secs_f64()
    );
}
