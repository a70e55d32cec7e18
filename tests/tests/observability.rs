//! One workflow, one trace: a purchase and a payout driven through the BFF are each ONE trace in
//! the running trace viewer, holding spans of the BFF, the services, the relay and every
//! consumer, linked parent to child across the Pulsar hops. Each process's `/metrics` moves as
//! the workflow runs (published equals consumed, nothing left pending), and a consumer's log
//! line carries the trace id of the BFF request that caused it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bff::auth::Role;
use e2e::eventually;
use e2e::platform::Platform;
use e2e::process::{Process, addr_field, binary};
use e2e::rest::Edge;
use serde_json::{Value, json};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(90);

/// The trace viewer as a process: (process, OTLP endpoint URL, UI/API base URL).
fn trace_viewer(test: &str) -> (Process, String, String) {
    let env = [
        ("OTLP_LISTEN", "127.0.0.1:0".to_owned()),
        ("TRACE_UI_LISTEN", "127.0.0.1:0".to_owned()),
    ];
    let mut process = Process::start(
        "trace-viewer",
        &binary("trace-viewer"),
        &[],
        &env,
        &e2e::log_dir(test),
    );
    let line = process.wait_for_line("trace viewer started", Duration::from_secs(30));
    let otlp = format!("http://{}", addr_field(&line, "otlp_addr"));
    let ui = format!("http://{}", addr_field(&line, "ui_addr"));
    (process, otlp, ui)
}

/// The trace id in a `traceparent` header: `00-<trace id>-<span id>-<flags>`.
fn trace_id(reply: &e2e::rest::Reply) -> String {
    let traceparent = reply
        .header("traceparent")
        .expect("the BFF returns traceparent");
    traceparent.split('-').nth(1).unwrap().to_owned()
}

/// A trace as the viewer's Jaeger API returns it: its spans and each span's service.
struct Trace {
    spans: Vec<Value>,
    services: HashMap<String, String>,
}

impl Trace {
    fn service_of(&self, span: &Value) -> &str {
        &self.services[span["processID"].as_str().unwrap()]
    }

    fn services(&self) -> BTreeSet<&str> {
        self.spans.iter().map(|s| self.service_of(s)).collect()
    }

    /// Spans whose parent is not in the trace (a complete trace has one: the BFF request).
    fn roots(&self) -> Vec<&Value> {
        let ids: BTreeSet<&str> = self
            .spans
            .iter()
            .map(|s| s["spanID"].as_str().unwrap())
            .collect();
        self.spans
            .iter()
            .filter(|s| {
                let parents: Vec<&str> = s["references"]
                    .as_array()
                    .map(|r| r.iter().filter_map(|r| r["spanID"].as_str()).collect())
                    .unwrap_or_default();
                !parents.iter().any(|p| ids.contains(p))
            })
            .collect()
    }

    fn parent(&self, span: &Value) -> Option<&Value> {
        let parent = span["references"][0]["spanID"].as_str()?;
        self.spans.iter().find(|s| s["spanID"] == parent)
    }

    fn named(&self, name: &str) -> Vec<&Value> {
        self.spans
            .iter()
            .filter(|s| {
                s["operationName"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(name)
            })
            .collect()
    }
}

async fn fetch_trace(ui: &str, id: &str) -> Option<Trace> {
    let body: Value = reqwest::get(format!("{ui}/api/traces/{id}"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let data = body["data"].as_array()?.first()?.clone();
    let services = data["processes"]
        .as_object()?
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v["serviceName"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    Some(Trace {
        spans: data["spans"].as_array()?.clone(),
        services,
    })
}

/// Waits until the trace holds spans of every one of `services`, a consumer span for each of
/// `consumed` topics (as many as the topic is named), and a single root.
async fn complete_trace(ui: &str, id: &str, services: &[&str], consumed: &[&str]) -> Trace {
    eventually(
        WAIT,
        &format!("trace {id} to hold {services:?} and consumers of {consumed:?}"),
        || async {
            let trace = fetch_trace(ui, id).await?;
            let have = trace.services();
            let all_services = services.iter().all(|s| have.contains(s));
            // A topic named n times needs n consumer spans (spans reach the viewer in batches,
            // so a late one may not be there yet when the others are).
            let all_consumers = consumed.iter().all(|t| {
                trace.named(&format!("{t} process")).len()
                    >= consumed.iter().filter(|c| *c == t).count()
            });
            (all_services && all_consumers && trace.roots().len() == 1).then_some(trace)
        },
    )
    .await
}

/// Checks the links of a trace: one root (the BFF's request), each consumer span the child of a
/// relay publish span, each publish span the child of an outbox append in a service.
fn assert_linked(trace: &Trace) {
    let roots = trace.roots();
    assert_eq!(roots.len(), 1, "one root span");
    assert_eq!(trace.service_of(roots[0]), "bff");
    let consumers = trace.named(" process");
    assert!(!consumers.is_empty());
    for consumer in consumers {
        let parent = trace
            .parent(consumer)
            .expect("a consumer span has its parent in the trace");
        assert_eq!(
            trace.service_of(parent),
            "relay",
            "{} ← {}",
            consumer["operationName"],
            parent["operationName"]
        );
        assert!(
            parent["operationName"]
                .as_str()
                .unwrap()
                .ends_with(" publish")
        );
    }
    for publish in trace.named(" publish") {
        let parent = trace
            .parent(publish)
            .expect("a publish span has its parent in the trace");
        assert_eq!(
            parent["operationName"], "outbox.append",
            "{}",
            publish["operationName"]
        );
    }
}

/// Parses a Prometheus text exposition into (name{labels}) → value.
async fn scrape(addr: &str) -> HashMap<String, f64> {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            l.rsplit_once(' ')
                .map(|(k, v)| (k.to_owned(), v.parse().unwrap_or(0.0)))
        })
        .collect()
}

/// The label `name` of a series key like `metric{a="x",b="y"}`.
fn label<'a>(series: &'a str, name: &str) -> Option<&'a str> {
    let start = series.find(&format!("{name}=\""))? + name.len() + 2;
    let end = series[start..].find('"')? + start;
    Some(&series[start..end])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_and_a_payout_are_each_one_trace_across_services_and_pulsar() {
    let test = "observability";
    let (_viewer, otlp, ui) = trace_viewer(test);
    let telemetry = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.clone()),
        // Every trace recorded (the default records one new trace in ten).
        ("OTEL_TRACES_SAMPLER", "always_on".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
        ("METRICS_LISTEN", "127.0.0.1:0".to_owned()),
        (
            "RUST_LOG",
            "info,messaging=debug,sqlx=warn,pulsar=warn,h2=warn".to_owned(),
        ),
    ];
    let platform = Platform::start_with(test, "hybrid", telemetry.clone()).await;
    let edge = Edge::start(&platform, test, &telemetry);
    let (advertiser, creator) = (Uuid::new_v4(), Uuid::new_v4());
    let (a, c) = (
        Edge::token(advertiser, Role::Advertiser),
        Edge::token(creator, Role::Creator),
    );
    let relay_metrics = platform.metrics["relay"].to_string();
    let before = scrape(&relay_metrics).await;

    let campaign = edge
        .post("/api/v1/campaigns", &a, &json!({"name": "Traced", "commissionRateBps": 1000, "budget": {"amountMinor": "100000", "currency": "USD"}, "holdPeriodSeconds": 0}))
        .await;
    let campaign = campaign.expect(201)["id"].as_str().unwrap().to_owned();
    edge.post(
        &format!("/api/v1/creators/{creator}/acceptances"),
        &c,
        &json!({"campaignId": campaign, "acceptedTerms": true}),
    )
    .await
    .expect(201);
    let purchase = edge
        .post(
            "/api/v1/tracking-events",
            &a,
            &json!({"campaignId": campaign, "creatorId": creator, "kind": "TRACKING_EVENT_KIND_PURCHASE", "amount": {"amountMinor": "20000", "currency": "USD"}}),
        )
        .await;
    purchase.expect(201);
    let purchase_trace = trace_id(&purchase);
    let balance = format!("/api/v1/creators/{creator}/balance?currency=USD");
    eventually(WAIT, "the commission", || async {
        (edge.get(&balance, &c).await.body["availableMinor"] == "2000").then_some(())
    })
    .await;
    let payout = edge
        .post(
            &format!("/api/v1/creators/{creator}/payouts"),
            &c,
            &json!({"amount": {"amountMinor": "1500", "currency": "USD"}, "method": "PAYOUT_METHOD_PAYPAL", "accountDetails": "traced@example.com"}),
        )
        .await;
    let payout_id = payout.expect(202)["id"].as_str().unwrap().to_owned();
    let payout_trace = trace_id(&payout);
    eventually(WAIT, "the payout completes", || async {
        let p = edge
            .get(
                &format!("/api/v1/creators/{creator}/payouts/{payout_id}"),
                &c,
            )
            .await;
        (p.body["status"] == "PAYOUT_STATUS_COMPLETED").then_some(())
    })
    .await;

    // The purchase: BFF → tracking → relay → commission (calculate command) → relay → payment's
    // saga feed and the notification service (commission events).
    let trace = complete_trace(
        &ui,
        &purchase_trace,
        &[
            "bff",
            "tracking-service",
            "relay",
            "commission-service",
            "payment-service",
            "notification-service",
        ],
        &[
            "commission-commands",
            "tracking-events",
            "commission-events",
        ],
    )
    .await;
    assert_linked(&trace);
    let spans = trace.spans.len();
    println!(
        "purchase trace {purchase_trace}: {spans} spans from {:?}",
        trace.services()
    );
    let on = |service: &str, name: &str| {
        trace
            .spans
            .iter()
            .any(|s| trace.service_of(s) == service && s["operationName"] == name)
    };
    assert!(
        on("bff", "POST /api/v1/tracking-events"),
        "the BFF's request span"
    );
    let create = "affiliate.tracking.v1.TrackingService/CreateEvent";
    assert!(
        on("bff", create) && on("tracking-service", create),
        "client and server spans of the call"
    );
    assert!(
        on("tracking-service", "db.transaction") && on("tracking-service", "outbox.append"),
        "tracking-service: transaction and outbox spans"
    );
    // The commission consumer applies a set of messages in one transaction that serves many
    // traces: each message has its processing span and, under it, the append of what it caused.
    assert!(
        on("commission-service", "commission-commands process")
            && on("commission-service", "outbox.append"),
        "commission-service: processing and outbox spans"
    );

    // The payout saga: BFF → payment → relay → commission (reserve) → relay → payment (pay,
    // settle) → relay → commission (settle) → relay → payment (completed), one trace throughout.
    let trace = complete_trace(
        &ui,
        &payout_trace,
        &[
            "bff",
            "payment-service",
            "relay",
            "commission-service",
            "notification-service",
        ],
        // Reserve and settle: two commands on commission-commands.
        &[
            "commission-commands",
            "commission-commands",
            "commission-events",
            "payment-events",
        ],
    )
    .await;
    assert_linked(&trace);
    assert!(
        trace.named("commission-commands process").len() >= 2,
        "reserve and settle, in the same trace"
    );
    println!(
        "payout trace {payout_trace}: {} spans from {:?}",
        trace.spans.len(),
        trace.services()
    );

    // Metrics: everything published was consumed by every subscription, nothing is pending.
    eventually(WAIT, "the platform drains", || async {
        platform.drained().await.then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // one metering interval of the relay
    let after = scrape(&relay_metrics).await;
    let published: HashMap<String, f64> = after
        .iter()
        .filter(|(k, _)| k.starts_with("relay_messages_published_total"))
        .map(|(k, v)| (label(k, "topic").unwrap().to_owned(), *v))
        .collect();
    let published_before: f64 = before
        .iter()
        .filter(|(k, _)| k.starts_with("relay_messages_published_total"))
        .map(|(_, v)| v)
        .sum();
    assert!(
        published.values().sum::<f64>() > published_before,
        "the relay's counter moved"
    );
    for (series, value) in &after {
        if series.starts_with("outbox_pending_rows") {
            assert_eq!(*value, 0.0, "{series}");
        }
    }
    let mut consumed: HashMap<(String, String), f64> = HashMap::new();
    for (name, addr) in &platform.metrics {
        if name == "relay" {
            continue;
        }
        for (series, value) in scrape(&addr.to_string()).await {
            if series.starts_with("consumer_messages_total")
                && matches!(label(&series, "outcome"), Some("applied" | "rejected"))
            {
                let key = (
                    label(&series, "topic").unwrap().to_owned(),
                    label(&series, "subscription").unwrap().to_owned(),
                );
                *consumed.entry(key).or_default() += value;
            }
        }
    }
    assert!(!consumed.is_empty());
    for ((topic, subscription), count) in &consumed {
        assert_eq!(
            Some(count),
            published.get(topic),
            "{topic} consumed by {subscription} vs published"
        );
    }
    let bff_metrics = reqwest::get(format!("http://{}/metrics", edge.metrics.as_ref().unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        bff_metrics.contains("http_server_requests_total{method=\"POST\",route=\"/api/v1/tracking-events\",status=\"201\"}"),
        "{}",
        bff_metrics.lines().filter(|l| l.starts_with("http_server_requests_total")).collect::<Vec<_>>().join("\n")
    );
    assert!(bff_metrics.contains("grpc_client_requests_total"));
    // The saga-state gauge is refreshed every 2 s.
    let payment = platform.metrics["payment-service"].to_string();
    eventually(WAIT, "payouts{status=completed} = 1", || async {
        (scrape(&payment).await.get("payouts{status=\"completed\"}") == Some(&1.0)).then_some(())
    })
    .await;

    // Logs: the commission service processed the calculate command in the purchase's trace.
    let log = std::fs::read_to_string(platform.logs.join("commission-service.log")).unwrap();
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "message processed" && l["trace_id"] == purchase_trace.as_str())
        .unwrap_or_else(|| panic!("no commission-service log line in trace {purchase_trace}"));
    assert!(line["span_id"].as_str().is_some_and(|s| s.len() == 16));
    assert!(
        line["correlation_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    let bff_log = std::fs::read_to_string(edge.process.log.clone()).unwrap();
    assert!(
        bff_log
            .lines()
            .any(|l| l.contains("request handled") && l.contains(&purchase_trace)),
        "the BFF's request line carries the same trace id"
    );
    assert!(!bff_log.contains("eyJ"), "no token in the BFF's log");
}
