//! Webhook deliveries at a steady rate: the release `webhook-service` process follows a test
//! namespace's `commission-events`, where this bench publishes `BENCH_EVENTS_PER_SECOND`
//! (default 150) `commission.approved.v1` events a second for `BENCH_SECONDS` (default 20), each
//! about a creator with `BENCH_ENDPOINTS` (default 4) endpoints: 600 deliveries a second by
//! default, to a local receiver (an HTTP server in this process answering 200 at once). It
//! prints deliveries a second, published → delivered latency (the body's timestamp is the
//! event's time), and the service's CPU-ms per delivery; beside a baseline from the same run:
//! this process POSTing the same bodies to the same receiver at the same rate (the HTTP leg
//! alone).
//!
//! `cargo build --release -p webhook-service && cargo bench -p e2e --bench webhook_dispatch`
//! (PostgreSQL and Pulsar up: `deploy/local/infra.sh up`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message as _;
use uuid::Uuid;

use affiliate_proto::campaign::{Campaign, CampaignCreated, campaign_event};
use affiliate_proto::commission::{
    Commission, CommissionApproved, CommissionEvent, commission_event,
};
use affiliate_proto::common::MessageMetadata;
use affiliate_proto::webhook::CreateEndpointRequest;
use affiliate_proto::webhook::webhook_service_client::WebhookServiceClient;
use e2e::platform::WEBHOOK_SECRET_KEYS;
use e2e::process::{Process, binary};
use e2e::{
    broker_env, fresh_database, fresh_namespace, log_dir, publish, publish_campaign_event,
    pulsar_tenant,
};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the receiver saw: each request's latency since the event's time, and its arrival.
#[derive(Default)]
struct Seen {
    latencies_ms: Vec<f64>,
    last: Option<Instant>,
}

/// An HTTP receiver answering 200 at once; it reads each body's `timestamp` (RFC 3339).
async fn receiver() -> (SocketAddr, Arc<Mutex<Seen>>) {
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let state = seen.clone();
    let app = axum::Router::new().route(
        "/{path}",
        axum::routing::post(move |body: String| {
            let state = state.clone();
            async move {
                let now = chrono::Utc::now();
                let latency = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["timestamp"].as_str().map(str::to_owned))
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                    .map_or(f64::NAN, |t| {
                        (now - t.with_timezone(&chrono::Utc))
                            .num_microseconds()
                            .unwrap_or(0) as f64
                            / 1000.0
                    });
                let mut seen = state.lock().unwrap();
                seen.latencies_ms.push(latency);
                seen.last = Some(Instant::now());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// CPU ticks (user + system) of a process.
fn ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // after the command: state is field 0, utime 11, stime 12
    field(11) + field(12)
}

fn body(at: chrono::DateTime<chrono::Utc>) -> String {
    serde_json::json!({
        "type": "commission.approved.v1",
        "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": {"commission": {"id": Uuid::now_v7().to_string(), "amount": {"amountMinor": "200", "currency": "EUR"}}},
    })
    .to_string()
}

/// Waits until the receiver has seen `n` requests (at most `within`); returns the latencies.
async fn until_seen(
    seen: &Arc<Mutex<Seen>>,
    n: usize,
    within: Duration,
) -> (Vec<f64>, Option<Instant>) {
    let deadline = Instant::now() + within;
    loop {
        {
            let s = seen.lock().unwrap();
            if s.latencies_ms.len() >= n || Instant::now() > deadline {
                let mut l = s.latencies_ms.clone();
                l.sort_by(|a, b| a.partial_cmp(b).unwrap());
                return (l, s.last);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn report(
    name: &str,
    latencies: &[f64],
    expected: usize,
    started: Instant,
    last: Option<Instant>,
) -> f64 {
    let elapsed = last.map_or(f64::NAN, |l| (l - started).as_secs_f64());
    let rate = latencies.len() as f64 / elapsed;
    println!(
        "{name:<9} {:>6} of {expected} delivered, {rate:>7.1}/s over {elapsed:.1} s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        percentile(latencies, 50.0),
        percentile(latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN),
    );
    rate
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let per_second = env("BENCH_EVENTS_PER_SECOND", 150);
    let endpoints = env("BENCH_ENDPOINTS", 4);
    let seconds = env("BENCH_SECONDS", 20);
    let events = per_second * seconds;
    let deliveries = usize::try_from(events * endpoints).unwrap();
    println!(
        "webhook_dispatch: {per_second} events/s for {seconds} s, {endpoints} endpoints each: {} deliveries/s offered",
        per_second * endpoints
    );

    // ---- baseline: the same bodies POSTed straight to the receiver at the same rate ------------
    let (addr, seen) = receiver().await;
    let http = reqwest::Client::new();
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / (per_second * endpoints) as f64);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(256));
    for i in 0..deliveries {
        tick.tick().await;
        let permit = in_flight.clone().acquire_owned().await.unwrap();
        let (http, url) = (
            http.clone(),
            format!("http://{addr}/e{}", i % endpoints as usize),
        );
        let body = body(chrono::Utc::now());
        tokio::spawn(async move {
            let _ = http.post(url).body(body).send().await;
            drop(permit);
        });
    }
    let (latencies, last) = until_seen(&seen, deliveries, Duration::from_secs(60)).await;
    let baseline = report("baseline", &latencies, deliveries, started, last);

    // ---- the webhook service -------------------------------------------------------------------
    let (addr, seen) = receiver().await;
    let database = fresh_database("bench_webhook").await;
    let namespace = fresh_namespace().await;
    let mut env_vars: Vec<(&str, String)> = broker_env();
    env_vars.extend([
        ("DATABASE_URL", database.url.clone()),
        ("GRPC_LISTEN", "127.0.0.1:0".into()),
        ("PULSAR_TENANT", pulsar_tenant()),
        ("PULSAR_NAMESPACE", namespace.to_string()),
        ("WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8".into()),
        ("WEBHOOK_ALLOW_HTTP", "true".into()),
        ("WEBHOOK_SECRET_KEYS", WEBHOOK_SECRET_KEYS.into()),
    ]);
    let mut process = Process::start(
        "webhook-service",
        &binary("webhook-service"),
        &[],
        &env_vars,
        &log_dir("bench_webhook_dispatch"),
    );
    let grpc = process.wait_for_grpc_addr(Duration::from_secs(60));
    let mut hooks = WebhookServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let creator = Uuid::now_v7();
    for e in 0..endpoints {
        hooks
            .create_endpoint(CreateEndpointRequest {
                owner_id: creator.to_string(),
                url: format!("http://{addr}/e{e}"),
                description: "bench".into(),
                event_types: vec![],
                rate_limit_per_second: 0,
            })
            .await
            .unwrap();
    }
    let pulsar = e2e::pulsar().await;
    let campaign = Uuid::now_v7();
    publish_campaign_event(
        &pulsar,
        &namespace.topic("campaign-events"),
        &Uuid::now_v7().to_string(),
        campaign,
        1,
        campaign_event::Event::CampaignCreated(CampaignCreated {
            campaign: Some(Campaign {
                id: campaign.to_string(),
                advertiser_id: Uuid::now_v7().to_string(),
                ..Default::default()
            }),
        }),
    )
    .await;
    let topic = namespace.topic("commission-events");
    let event = |n: u64| {
        let id = Uuid::now_v7();
        let message_id = Uuid::now_v7().to_string();
        let envelope = CommissionEvent {
            metadata: Some(MessageMetadata {
                message_id: message_id.clone(),
                message_type: "commission.approved.v1".into(),
                occurred_at: Some(service_runtime::time::timestamp(chrono::Utc::now())),
                aggregate_type: "commission".into(),
                aggregate_id: id.to_string(),
                aggregate_version: 2,
                correlation_id: format!("bench-{n}"),
                causation_id: String::new(),
            }),
            event: Some(commission_event::Event::CommissionApproved(
                CommissionApproved {
                    commission: Some(Commission {
                        id: id.to_string(),
                        campaign_id: campaign.to_string(),
                        creator_id: creator.to_string(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )),
        };
        (id, message_id, envelope.encode_to_vec())
    };
    // warm up: the consumer subscribed, the campaign known, the connections open
    let (id, message_id, payload) = event(0);
    publish(
        &pulsar,
        &topic,
        &id.to_string(),
        &message_id,
        "commission.approved.v1",
        "warm",
        payload,
    )
    .await;
    let (warm, _) = until_seen(
        &seen,
        usize::try_from(endpoints).unwrap(),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        warm.len(),
        usize::try_from(endpoints).unwrap(),
        "the warm-up event was not delivered; see the log under target/test-logs/bench_webhook_dispatch"
    );
    seen.lock().unwrap().latencies_ms.clear();

    let cpu_before = ticks(process.pid());
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut receipts = Vec::new();
    for n in 1..=events {
        tick.tick().await;
        let (id, message_id, payload) = event(n);
        let properties = std::collections::HashMap::from([
            ("message-id".to_owned(), message_id),
            (
                "message-type".to_owned(),
                "commission.approved.v1".to_owned(),
            ),
            ("correlation-id".to_owned(), format!("bench-{n}")),
        ]);
        let message = pulsar::producer::Message {
            payload,
            properties,
            partition_key: Some(id.to_string()),
            ..Default::default()
        };
        receipts.push(pulsar.send(topic.clone(), message).await.unwrap());
    }
    for receipt in receipts {
        receipt.await.unwrap();
    }
    let (latencies, last) = until_seen(&seen, deliveries, Duration::from_secs(120)).await;
    let cpu = ticks(process.pid()) - cpu_before;
    let rate = report("webhooks", &latencies, deliveries, started, last);
    // clock ticks are 1/100 s on Linux
    let cpu_ms = cpu as f64 * 10.0 / latencies.len().max(1) as f64;
    println!(
        "webhooks  CPU {cpu_ms:.3} ms per delivery (webhook-service only; PostgreSQL and Pulsar not counted); rate {:.2} of the baseline",
        rate / baseline
    );
    process.kill();
}
