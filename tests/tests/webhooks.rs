//! Partners' webhooks end to end: the whole platform with the webhook service, and a partner's
//! receiver (tests/python/webhook_receiver.py) that verifies every delivery with the official
//! Standard Webhooks library from PyPI and deduplicates on `webhook-id`.
//!
//! - every event a partner owns reaches each of their endpoints once, signed, in order per
//!   aggregate, through a receiver that fails a third of its requests (500, 503 and 429 with
//!   Retry-After), and nobody hears another's events; every attempt is in the delivery log;
//! - a rotated secret: both signatures verify during the overlap; resend repeats one message
//!   with the same id; a redirect is not followed; 410 disables an endpoint, N failed messages
//!   in a row too, the owner is told (a notification), and recover sends the failed ones again;
//! - the dispatcher SIGKILLed under load and the receiver down for a while: nothing is lost,
//!   each id accepted once, in order per aggregate;
//! - secrets sealed at rest: no stored row holds one, one in the clear is sealed at start, a new
//!   key reseals them all and deliveries still verify, a start without the sealing key fails;
//! - an endpoint's rate limit spaces its messages;
//! - request forgery: private, loopback and link-local destinations are refused when registered
//!   (also through a DNS name) and again when the dispatcher connects.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tonic::transport::Channel;

use affiliate_proto::campaign::{
    self as campaign_pb, campaign_service_client::CampaignServiceClient,
};
use affiliate_proto::notification::notification_service_client::NotificationServiceClient;
use affiliate_proto::notification::{ListNotificationsRequest, NotificationKind};
use affiliate_proto::tracking::{
    self as tracking_pb, tracking_service_client::TrackingServiceClient,
};
use affiliate_proto::webhook::webhook_service_client::WebhookServiceClient;
use affiliate_proto::webhook::{self as pb, DeliveryStatus};
use e2e::platform::{Platform, WEBHOOK_SECRET_KEYS};
use e2e::webhooks::{Receiver, Seen};
use e2e::workflow::{
    ADVERTISER, CREATOR_1, CREATOR_2, Collected, Door, Driver, business_workflow, collect_events,
};
use e2e::{eventually, fresh_database, fresh_namespace, serve_service};
use webhook_service::domain::event::TYPES;

/// Retries come fast in tests: ten retries within about 6 s.
const SCHEDULE: &str = "50ms,100ms,200ms,300ms,500ms,1s,1s,1s,1s,1s";
/// Patient enough for a receiver down a minute: 15 retries over about 81 s.
const PATIENT: &str = "100ms,200ms,500ms,1s,2s,3s,5s,5s,5s,10s,10s,10s,10s,10s,10s";

/// The webhook service's settings: loopback receivers allowed, retries on `schedule`,
/// endpoints disabled after `disable_after` failed messages in a row.
fn env(schedule: &str, disable_after: u32) -> Vec<(&'static str, String)> {
    vec![
        ("WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8".into()),
        ("WEBHOOK_ALLOW_HTTP", "true".into()),
        ("WEBHOOK_RETRY_SCHEDULE", schedule.into()),
        ("WEBHOOK_MAX_RETRY_AFTER", "2s".into()),
        ("WEBHOOK_REQUEST_TIMEOUT", "3s".into()),
        ("WEBHOOK_DISABLE_AFTER", disable_after.to_string()),
        ("WEBHOOK_SECRET_OVERLAP", "1h".into()),
        ("WEBHOOK_DISPATCH_POLL_INTERVAL", "200ms".into()),
    ]
}

async fn hooks(platform: &Platform) -> WebhookServiceClient<Channel> {
    WebhookServiceClient::connect(platform.url("webhook"))
        .await
        .unwrap()
}

async fn register(
    hooks: &mut WebhookServiceClient<Channel>,
    owner: &str,
    url: String,
    types: &[&str],
) -> (String, String) {
    let created = hooks
        .create_endpoint(pb::CreateEndpointRequest {
            owner_id: owner.into(),
            url,
            description: "test endpoint".into(),
            event_types: types.iter().map(|t| (*t).to_owned()).collect(),
            rate_limit_per_second: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let endpoint = created.endpoint.unwrap();
    assert!(created.secret.starts_with("whsec_"), "{}", created.secret);
    assert!(endpoint.enabled);
    (endpoint.id, created.secret)
}

/// The `webhook-id` of a platform event: `msg_` and its message id without dashes.
fn webhook_id(event: &Collected) -> String {
    format!("msg_{}", event.metadata.message_id.replace('-', ""))
}

/// Whether `value` holds the string `needle` anywhere.
fn mentions(value: &Value, needle: &str) -> bool {
    match value {
        Value::String(s) => s == needle,
        Value::Array(items) => items.iter().any(|v| mentions(v, needle)),
        Value::Object(map) => map.values().any(|v| mentions(v, needle)),
        _ => false,
    }
}

/// The ids of the events an owner's endpoint with `filter` (empty: all) should hear: partner
/// event types that mention the owner, or (for an advertiser) one of their campaigns.
fn expected(
    events: &[Collected],
    owner: &str,
    campaigns: &[String],
    filter: &[&str],
) -> HashSet<String> {
    events
        .iter()
        .filter(|e| TYPES.contains(&e.metadata.message_type.as_str()))
        .filter(|e| filter.is_empty() || filter.contains(&e.metadata.message_type.as_str()))
        .filter(|e| mentions(&e.json, owner) || campaigns.iter().any(|c| mentions(&e.json, c)))
        .map(webhook_id)
        .collect()
}

/// Waits until `path` has accepted exactly `ids` (and nothing else), then returns what it saw.
async fn accepted_all(
    receiver: &Receiver,
    path: &str,
    ids: &HashSet<String>,
    within: Duration,
) -> Seen {
    let deadline = Instant::now() + within;
    loop {
        let seen = receiver.seen(path).await;
        let accepted: HashSet<String> = seen.accepted.iter().cloned().collect();
        assert!(
            accepted.is_subset(ids),
            "{path} accepted messages it should not hear: {:?}",
            accepted.difference(ids).collect::<Vec<_>>()
        );
        if accepted == *ids {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: {} of {} messages accepted within {within:?}; missing {:?}",
            accepted.len(),
            ids.len(),
            ids.difference(&accepted).take(10).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every request verified with the path's secret, none refused for its signature.
fn all_verified(seen: &Seen, path: &str) {
    for request in &seen.requests {
        assert_eq!(request["verified"], json!([true]), "{path}: {request}");
    }
}

/// Per aggregate, the order in which messages were first accepted follows the aggregate's
/// versions; and no message of an aggregate was even tried before the one before it succeeded.
fn in_order(seen: &Seen, events: &[Collected], path: &str) {
    let by_id: HashMap<String, &Collected> = events.iter().map(|e| (webhook_id(e), e)).collect();
    let mut lanes: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for id in &seen.accepted {
        let e = by_id[id];
        let aggregate = format!("{}/{}", e.metadata.aggregate_type, e.metadata.aggregate_id);
        lanes
            .entry(aggregate)
            .or_default()
            .push(e.metadata.aggregate_version);
    }
    for (aggregate, versions) in &lanes {
        let mut sorted = versions.clone();
        sorted.sort_unstable();
        assert_eq!(
            versions, &sorted,
            "{path}: {aggregate} delivered out of order"
        );
    }
    // a later message's first request comes after the earlier one's successful request
    let mut succeeded_at: HashMap<&str, f64> = HashMap::new();
    for r in &seen.requests {
        let status = r["answered"].as_i64().unwrap();
        if (200..300).contains(&status) {
            succeeded_at
                .entry(r["id"].as_str().unwrap())
                .or_insert(r["at"].as_f64().unwrap());
        }
    }
    let mut first_try: HashMap<&str, f64> = HashMap::new();
    for r in &seen.requests {
        first_try
            .entry(r["id"].as_str().unwrap())
            .or_insert(r["at"].as_f64().unwrap());
    }
    let mut by_aggregate: BTreeMap<String, Vec<(i64, &str)>> = BTreeMap::new();
    for id in &seen.accepted {
        let e = by_id[id];
        by_aggregate
            .entry(format!(
                "{}/{}",
                e.metadata.aggregate_type, e.metadata.aggregate_id
            ))
            .or_default()
            .push((e.metadata.aggregate_version, id.as_str()));
    }
    for (aggregate, mut messages) in by_aggregate {
        messages.sort_unstable();
        for pair in messages.windows(2) {
            let (earlier, later) = (pair[0].1, pair[1].1);
            assert!(
                first_try[later] >= succeeded_at[earlier],
                "{path}: {aggregate}: {later} was tried before {earlier} succeeded"
            );
        }
    }
}

async fn endpoint(
    hooks: &mut WebhookServiceClient<Channel>,
    owner: &str,
    id: &str,
) -> pb::Endpoint {
    hooks
        .get_endpoint(pb::GetEndpointRequest {
            owner_id: owner.into(),
            endpoint_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .endpoint
        .unwrap()
}

async fn send_test(hooks: &mut WebhookServiceClient<Channel>, owner: &str, id: &str) -> String {
    hooks
        .send_test_event(pb::SendTestEventRequest {
            owner_id: owner.into(),
            endpoint_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .delivery
        .unwrap()
        .message_id
}

/// Waits until the endpoint is disabled; returns its reason.
async fn disabled(hooks: &WebhookServiceClient<Channel>, owner: &str, id: &str) -> String {
    eventually(Duration::from_secs(30), "the endpoint is disabled", || {
        let mut hooks = hooks.clone();
        let (owner, id) = (owner.to_owned(), id.to_owned());
        async move {
            let e = endpoint(&mut hooks, &owner, &id).await;
            (!e.enabled).then_some(e.disabled_reason)
        }
    })
    .await
}

/// Waits until the owner has a notification that `endpoint` was disabled.
async fn told(platform: &Platform, owner: &str, endpoint: &str) {
    let url = platform.url("notification");
    eventually(Duration::from_secs(30), "the owner is told", || {
        let (url, owner, endpoint) = (url.clone(), owner.to_owned(), endpoint.to_owned());
        async move {
            let mut client = NotificationServiceClient::connect(url).await.ok()?;
            let list = client
                .list_notifications(ListNotificationsRequest {
                    user_id: owner,
                    page_size: 100,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner();
            list.notifications
                .iter()
                .any(|n| {
                    n.kind == NotificationKind::WebhookEndpointDisabled as i32
                        && n.subject_id == endpoint
                })
                .then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partners_hear_their_own_events_signed_once_in_order_through_failures() {
    let test = "webhooks_workflow";
    let receiver = Receiver::start(test);
    let platform = Platform::start_with_webhooks(test, "hybrid", env(SCHEDULE, 2)).await;
    platform.consuming(Duration::from_secs(60)).await;
    let mut hooks = hooks(&platform).await;

    let creator_types = [
        "commission.calculated.v1",
        "commission.approved.v1",
        "payout.requested.v1",
        "payout.completed.v1",
        "payout.failed.v1",
        "payout.rejected.v1",
    ];
    let (advertiser, advertiser_secret) =
        register(&mut hooks, ADVERTISER, receiver.url("/advertiser"), &[]).await;
    let (creator, creator_secret) = register(
        &mut hooks,
        CREATOR_1,
        receiver.url("/creator"),
        &creator_types,
    )
    .await;
    let (_, other_secret) = register(&mut hooks, CREATOR_2, receiver.url("/other"), &[]).await;
    // A third of the advertiser's requests fail: 500, or 503 and 429 asking to wait a second.
    receiver
        .configure(
            "/advertiser",
            json!({"secrets": [advertiser_secret], "fail_ratio": 0.33,
                   "fail_status": [500, 503, 429], "retry_after": "1", "seed": 7}),
        )
        .await;
    receiver
        .configure("/creator", json!({"secrets": [creator_secret]}))
        .await;
    receiver
        .configure("/other", json!({"secrets": [other_secret]}))
        .await;

    let mut driver = Driver::new(&platform, Door::Grpc).await;
    let outcome = business_workflow(&mut driver).await;
    let campaigns = vec![outcome.campaign.clone(), outcome.closed_campaign.clone()];
    // every event has been published and consumed once the platform drains
    eventually(Duration::from_secs(120), "the platform drains", || {
        let platform = &platform;
        async move { platform.drained().await.then_some(()) }
    })
    .await;
    let events = driver.events.lock().unwrap().clone();

    let for_advertiser = expected(&events, ADVERTISER, &campaigns, &[]);
    let for_creator = expected(&events, CREATOR_1, &[], &creator_types);
    let for_other = expected(&events, CREATOR_2, &[], &[]);
    assert!(
        for_advertiser.len() >= 12,
        "{} events for the advertiser",
        for_advertiser.len()
    );
    assert!(
        for_creator.len() >= 5,
        "{} events for creator 1",
        for_creator.len()
    );
    assert!(!for_other.is_empty());
    let within = Duration::from_secs(90);
    let seen_advertiser = accepted_all(&receiver, "/advertiser", &for_advertiser, within).await;
    let seen_creator = accepted_all(&receiver, "/creator", &for_creator, within).await;
    let seen_other = accepted_all(&receiver, "/other", &for_other, within).await;
    for (seen, path) in [
        (&seen_advertiser, "/advertiser"),
        (&seen_creator, "/creator"),
        (&seen_other, "/other"),
    ] {
        all_verified(seen, path);
        in_order(seen, &events, path);
    }
    // the same message is the same body on every attempt
    for id in &seen_advertiser.accepted {
        let bodies: HashSet<&str> = seen_advertiser
            .of(id)
            .iter()
            .map(|r| r["body"].as_str().unwrap())
            .collect();
        assert_eq!(bodies.len(), 1, "{id} changed between attempts");
    }
    // failures were retried; a Retry-After of 1 s was waited for
    let failed: Vec<&Value> = seen_advertiser
        .requests
        .iter()
        .filter(|r| r["answered"].as_i64() != Some(200))
        .collect();
    assert!(failed.len() >= 5, "only {} failed requests", failed.len());
    let mut waited = 0;
    for r in failed
        .iter()
        .filter(|r| matches!(r["answered"].as_i64(), Some(429 | 503)))
    {
        let id = r["id"].as_str().unwrap();
        let at = r["at"].as_f64().unwrap();
        if let Some(next) = seen_advertiser
            .of(id)
            .iter()
            .map(|n| n["at"].as_f64().unwrap())
            .find(|t| *t > at)
        {
            assert!(
                next - at >= 0.9,
                "{id}: retried {:.3} s after a Retry-After of 1 s",
                next - at
            );
            waited += 1;
        }
    }
    assert!(waited > 0, "no 429 or 503 was retried");
    // the body is the Standard Webhooks envelope with the event as proto3 JSON
    let any: Value =
        serde_json::from_str(seen_creator.requests[0]["body"].as_str().unwrap()).unwrap();
    assert!(
        creator_types.contains(&any["type"].as_str().unwrap()),
        "{any}"
    );
    assert!(
        any["timestamp"].as_str().is_some() && any["data"].is_object(),
        "{any}"
    );

    // the delivery log: every attempt, the failures with their status and answer
    let attempts = hooks
        .list_attempts(pb::ListAttemptsRequest {
            owner_id: ADVERTISER.into(),
            endpoint_id: advertiser.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(attempts.attempts.len(), seen_advertiser.requests.len());
    let failure = attempts
        .attempts
        .iter()
        .find(|a| !a.success)
        .expect("a failed attempt");
    assert!(
        matches!(failure.status_code, 500 | 503 | 429),
        "{failure:?}"
    );
    assert!(failure.response.contains("status"), "{failure:?}");
    let deliveries = hooks
        .list_deliveries(pb::ListDeliveriesRequest {
            owner_id: CREATOR_1.into(),
            endpoint_id: creator.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deliveries.deliveries.len(), for_creator.len());
    assert!(
        deliveries
            .deliveries
            .iter()
            .all(|d| d.status == DeliveryStatus::Succeeded as i32)
    );
    // another owner sees nothing of it
    let foreign = hooks
        .get_endpoint(pb::GetEndpointRequest {
            owner_id: CREATOR_2.into(),
            endpoint_id: creator.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), tonic::Code::NotFound);

    // ---- resend: the same id again, the receiver deduplicates it --------------------------------
    let resent = seen_creator.accepted[0].clone();
    hooks
        .resend_message(pb::ResendMessageRequest {
            owner_id: CREATOR_1.into(),
            endpoint_id: creator.clone(),
            message_id: resent.clone(),
        })
        .await
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "the resent message arrives",
        || {
            let receiver = &receiver;
            let resent = resent.clone();
            async move { (receiver.seen("/creator").await.of(&resent).len() == 2).then_some(()) }
        },
    )
    .await;

    // ---- rotation: during the overlap both secrets sign ---------------------------------------
    let rotated = hooks
        .rotate_secret(pb::RotateSecretRequest {
            owner_id: CREATOR_1.into(),
            endpoint_id: creator.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(rotated.secret, creator_secret);
    assert!(
        rotated
            .endpoint
            .unwrap()
            .previous_secret_expires_at
            .is_some()
    );
    receiver
        .configure(
            "/creator",
            json!({"secrets": [creator_secret, rotated.secret]}),
        )
        .await;
    let test_id = send_test(&mut hooks, CREATOR_1, &creator).await;
    let request = eventually(Duration::from_secs(20), "the test event arrives", || {
        let receiver = &receiver;
        let test_id = test_id.clone();
        async move {
            receiver
                .seen("/creator")
                .await
                .of(&test_id)
                .first()
                .map(|r| (*r).clone())
        }
    })
    .await;
    assert_eq!(request["verified"], json!([true, true]), "{request}");
    assert_eq!(request["signatures"], 2);
    assert_eq!(request["type"], "webhook.test.v1");

    // ---- a redirect is an answer, not followed ---------------------------------------------------
    let (redirecting, secret) = register(&mut hooks, CREATOR_2, receiver.url("/moved"), &[]).await;
    receiver
        .configure(
            "/moved",
            json!({"secrets": [secret], "status": 302, "location": receiver.url("/elsewhere")}),
        )
        .await;
    let moved = send_test(&mut hooks, CREATOR_2, &redirecting).await;
    eventually(Duration::from_secs(20), "the redirect is answered", || {
        let receiver = &receiver;
        let moved = moved.clone();
        async move { (!receiver.seen("/moved").await.of(&moved).is_empty()).then_some(()) }
    })
    .await;

    // ---- 410 Gone disables at once, and the owner is told --------------------------------------
    let (gone, secret) = register(&mut hooks, CREATOR_1, receiver.url("/gone"), &[]).await;
    receiver
        .configure("/gone", json!({"secrets": [secret], "status": 410}))
        .await;
    send_test(&mut hooks, CREATOR_1, &gone).await;
    let reason = disabled(&hooks, CREATOR_1, &gone).await;
    assert!(reason.contains("410"), "{reason}");
    assert_eq!(
        receiver.seen("/gone").await.requests.len(),
        1,
        "a 410 is not retried"
    );
    told(&platform, CREATOR_1, &gone).await;

    // ---- two messages failing every retry disable it; recover sends them again ---------------
    let started = chrono::Utc::now();
    let (failing, secret) = register(&mut hooks, CREATOR_2, receiver.url("/failing"), &[]).await;
    receiver
        .configure(
            "/failing",
            json!({"secrets": [secret.clone()], "status": 500}),
        )
        .await;
    let first = send_test(&mut hooks, CREATOR_2, &failing).await;
    let second = send_test(&mut hooks, CREATOR_2, &failing).await;
    let reason = disabled(&hooks, CREATOR_2, &failing).await;
    assert!(reason.contains("2 messages in a row"), "{reason}");
    let tries = receiver.seen("/failing").await;
    assert_eq!(
        tries.of(&first).len(),
        SCHEDULE.split(',').count() + 1,
        "every retry was made"
    );
    told(&platform, CREATOR_2, &failing).await;
    receiver
        .configure("/failing", json!({"secrets": [secret]}))
        .await;
    hooks
        .update_endpoint(pb::UpdateEndpointRequest {
            owner_id: CREATOR_2.into(),
            endpoint_id: failing.clone(),
            enabled: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    let recovered = hooks
        .recover_endpoint(pb::RecoverEndpointRequest {
            owner_id: CREATOR_2.into(),
            endpoint_id: failing.clone(),
            since: Some(service_runtime::time::timestamp(started)),
        })
        .await
        .unwrap()
        .into_inner()
        .recovered;
    assert_eq!(recovered, 2);
    let both: HashSet<String> = [first, second].into_iter().collect();
    accepted_all(&receiver, "/failing", &both, Duration::from_secs(20)).await;

    // ---- a slow endpoint holds only its own requests ------------------------------------------
    // 40 messages to an endpoint answering after 2 s (at most 16 in flight to it), then one to
    // another endpoint: that one is delivered while the slow endpoint's backlog is still waiting.
    let (slow, secret) = register(&mut hooks, CREATOR_2, receiver.url("/slow"), &[]).await;
    receiver
        .configure("/slow", json!({"secrets": [secret], "delay_ms": 2000}))
        .await;
    for _ in 0..40 {
        send_test(&mut hooks, CREATOR_2, &slow).await;
    }
    let (fast, secret) = register(&mut hooks, CREATOR_2, receiver.url("/fast"), &[]).await;
    receiver
        .configure("/fast", json!({"secrets": [secret]}))
        .await;
    let quick = send_test(&mut hooks, CREATOR_2, &fast).await;
    accepted_all(
        &receiver,
        "/fast",
        &[quick].into_iter().collect(),
        Duration::from_secs(20),
    )
    .await;
    let slow_done = receiver.seen("/slow").await.accepted.len();
    assert!(
        slow_done < 40,
        "the fast endpoint waited for the slow one's 40 messages ({slow_done} done)"
    );
    // the redirect target was never asked (checked last: the dispatcher had all this time)
    assert!(receiver.seen("/elsewhere").await.requests.is_empty());
    let moved_attempt = hooks
        .list_attempts(pb::ListAttemptsRequest {
            owner_id: CREATOR_2.into(),
            endpoint_id: redirecting,
            message_id: moved,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved_attempt.attempts[0].status_code, 302);
    assert!(!moved_attempt.attempts[0].success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_crash_and_a_receiver_outage_lose_nothing() {
    let test = "webhooks_crash";
    let mut receiver = Receiver::start(test);
    let mut platform = Platform::start_with_webhooks(test, "hybrid", env(PATIENT, 1000)).await;
    platform.consuming(Duration::from_secs(60)).await;
    let mut hooks = hooks(&platform).await;
    let types = ["commission.calculated.v1", "commission.approved.v1"];
    let (_, secret) = register(&mut hooks, CREATOR_1, receiver.url("/creator"), &types).await;
    receiver
        .configure("/creator", json!({"secrets": [secret.clone()]}))
        .await;

    let pulsar = e2e::pulsar().await;
    let collected = collect_events(&platform, &pulsar).await;
    let mut campaigns = CampaignServiceClient::connect(platform.url("campaign"))
        .await
        .unwrap();
    let campaign = campaigns
        .create_campaign(campaign_pb::CreateCampaignRequest {
            advertiser_id: ADVERTISER.into(),
            name: "webhook load".into(),
            description: "webhooks under faults".into(),
            commission_rate_bps: 1000,
            budget: Some(affiliate_proto::common::Money {
                amount_minor: 100_000_000,
                currency: "EUR".into(),
            }),
            tracking: None,
            // held a second: each commission is calculated, then approved when the hold ends
            hold_period: Some(pbjson_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .campaign
        .unwrap()
        .id;
    campaigns
        .accept_campaign(campaign_pb::AcceptCampaignRequest {
            campaign_id: campaign.clone(),
            creator_id: CREATOR_1.into(),
            accepted_terms: true,
        })
        .await
        .unwrap();
    let mut tracking = TrackingServiceClient::connect(platform.url("tracking"))
        .await
        .unwrap();
    let purchase = |n: i64| tracking_pb::CreateEventRequest {
        campaign_id: campaign.clone(),
        creator_id: CREATOR_1.into(),
        kind: tracking_pb::TrackingEventKind::Purchase.into(),
        amount: Some(affiliate_proto::common::Money {
            amount_minor: 1_000 + n,
            currency: "EUR".into(),
        }),
        product_id: String::new(),
        occurred_at: None,
    };
    const PURCHASES: i64 = 300;
    for n in 0..PURCHASES {
        if n == PURCHASES / 3 {
            platform.kill("webhook-service");
        }
        if n == PURCHASES / 2 {
            platform.start_service("webhook");
            receiver.kill();
        }
        tracking.create_event(purchase(n)).await.unwrap();
    }
    // the receiver stays down a few seconds more (WEBHOOKS_OUTAGE_SECONDS, 3 by default), then
    // comes back remembering what it accepted
    let outage = std::env::var("WEBHOOKS_OUTAGE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(outage)).await;
    receiver.restart();
    println!(
        "webhooks: the receiver was down {:.1} s after the purchases",
        down.elapsed().as_secs_f64()
    );
    eventually(Duration::from_secs(120), "the platform drains", || {
        let platform = &platform;
        async move { platform.drained().await.then_some(()) }
    })
    .await;
    let events = collected.lock().unwrap().clone();
    let ids = expected(&events, CREATOR_1, &[], &types);
    assert_eq!(
        ids.len(),
        usize::try_from(2 * PURCHASES).unwrap(),
        "calculated and approved each"
    );
    let seen = accepted_all(&receiver, "/creator", &ids, Duration::from_secs(120)).await;
    all_verified(&seen, "/creator");
    // the requests since the restart are in order per commission (those before are journaled)
    let after_restart: HashSet<&str> = seen
        .requests
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let partial = Seen {
        requests: seen.requests.clone(),
        accepted: seen
            .accepted
            .iter()
            .filter(|id| after_restart.contains(id.as_str()))
            .cloned()
            .collect(),
    };
    in_order(&partial, &events, "/creator");
    platform.assert_all_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_and_finished_deliveries_are_deleted_after_the_retention() {
    let database = fresh_database("webhooks_retention").await;
    let namespace = fresh_namespace().await;
    let served = serve_service::<webhook_service::Webhook>(
        &database.url,
        Some(&namespace.to_string()),
        &[
            "--allow-http",
            "true",
            "--allow-networks",
            "127.0.0.0/8",
            "--retention",
            "5s",
            "--secret-keys",
            WEBHOOK_SECRET_KEYS,
        ],
    )
    .await;
    let mut hooks = WebhookServiceClient::connect(served.url()).await.unwrap();
    let receiver = Receiver::start("webhooks_retention");
    let owner = uuid::Uuid::now_v7().to_string();
    let (id, secret) = register(&mut hooks, &owner, receiver.url("/kept"), &[]).await;
    receiver
        .configure("/kept", json!({"secrets": [secret]}))
        .await;
    let message = send_test(&mut hooks, &owner, &id).await;
    accepted_all(
        &receiver,
        "/kept",
        &[message].into_iter().collect(),
        Duration::from_secs(20),
    )
    .await;
    let log = |hooks: WebhookServiceClient<Channel>| {
        let (owner, id) = (owner.clone(), id.clone());
        async move {
            let mut hooks = hooks;
            let deliveries = hooks
                .list_deliveries(pb::ListDeliveriesRequest {
                    owner_id: owner.clone(),
                    endpoint_id: id.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .deliveries
                .len();
            let attempts = hooks
                .list_attempts(pb::ListAttemptsRequest {
                    owner_id: owner,
                    endpoint_id: id,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .attempts
                .len();
            (deliveries, attempts)
        }
    };
    // recorded a moment after the receiver answered, and kept while young
    eventually(Duration::from_secs(5), "the attempt is logged", || {
        let hooks = hooks.clone();
        let log = &log;
        async move { (log(hooks).await == (1, 1)).then_some(()) }
    })
    .await;
    eventually(Duration::from_secs(30), "the log expires", || {
        let hooks = hooks.clone();
        let log = &log;
        async move { (log(hooks).await == (0, 0)).then_some(()) }
    })
    .await;
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_forgery_is_refused_when_registered_and_when_connecting() {
    let database = fresh_database("webhooks_ssrf").await;
    let namespace = fresh_namespace().await;
    // the default policy, with plain http allowed so that the address checks are what refuses
    let served = serve_service::<webhook_service::Webhook>(
        &database.url,
        Some(&namespace.to_string()),
        &[
            "--allow-http",
            "true",
            "--retry-schedule",
            "",
            "--secret-keys",
            WEBHOOK_SECRET_KEYS,
        ],
    )
    .await;
    let mut hooks = WebhookServiceClient::connect(served.url()).await.unwrap();
    let receiver = Receiver::start("webhooks_ssrf");
    let port = receiver.addr.port();
    let owner = uuid::Uuid::now_v7().to_string();
    for url in [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://localhost:{port}/hook"),
        "https://10.1.2.3/hook".to_owned(),
        "https://192.168.0.10/hook".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "https://[::1]/hook".to_owned(),
        "https://[fd00:ec2::254]/hook".to_owned(),
        "https://0x7f000001/hook".to_owned(),
        "https://user:secret@hooks.example.com/hook".to_owned(),
        "ftp://hooks.example.com/hook".to_owned(),
    ] {
        let refused = hooks
            .create_endpoint(pb::CreateEndpointRequest {
                owner_id: owner.clone(),
                url: url.clone(),
                ..Default::default()
            })
            .await
            .expect_err(&url);
        assert_eq!(
            refused.code(),
            tonic::Code::InvalidArgument,
            "{url}: {refused:?}"
        );
        assert_eq!(e2e::violated_fields(&refused), ["url"], "{url}");
    }
    // A name that resolved to a public address when registered and to loopback now (DNS
    // rebinding): the dispatcher checks again when it connects.
    let (id, _) = register(&mut hooks, &owner, "https://93.184.216.34/hook".into(), &[]).await;
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    sqlx::query("update endpoints set url = $1 where id = $2::uuid")
        .bind(format!("http://localhost:{port}/hook"))
        .bind(&id)
        .execute(&pool)
        .await
        .unwrap();
    let message = send_test(&mut hooks, &owner, &id).await;
    let attempt = eventually(Duration::from_secs(20), "the attempt is logged", || {
        let mut hooks = hooks.clone();
        let (owner, id, message) = (owner.clone(), id.clone(), message.clone());
        async move {
            hooks
                .list_attempts(pb::ListAttemptsRequest {
                    owner_id: owner,
                    endpoint_id: id,
                    message_id: message,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner()
                .attempts
                .into_iter()
                .next()
        }
    })
    .await;
    assert!(!attempt.success);
    assert_eq!(attempt.status_code, 0);
    assert!(attempt.error.contains("loopback"), "{attempt:?}");
    assert!(
        receiver.seen("/hook").await.requests.is_empty(),
        "the receiver was reached"
    );
    served.stop().await;
}

/// Every stored secret, oldest first.
async fn stored_secrets(database: &e2e::TestDatabase) -> Vec<String> {
    sqlx::query_scalar("select secret from endpoint_secrets order by created_at")
        .fetch_all(&database.pool)
        .await
        .unwrap()
}

/// The key id a sealed secret names (`v1:<key id>:…`).
fn key_id(stored: &str) -> String {
    let mut parts = stored.split(':');
    assert_eq!(parts.next(), Some("v1"), "not sealed: {stored}");
    parts.next().unwrap().to_owned()
}

/// The webhook service on `database`, partners on loopback allowed, sealing with `keys`.
async fn serve_sealing(database: &e2e::TestDatabase, namespace: &str, keys: &str) -> e2e::Served {
    serve_service::<webhook_service::Webhook>(
        &database.url,
        Some(namespace),
        &[
            "--allow-http",
            "true",
            "--allow-networks",
            "127.0.0.0/8",
            "--secret-keys",
            keys,
        ],
    )
    .await
}

/// Partners' signing secrets are sealed at rest: no stored row holds one; a secret stored in the
/// clear (before sealing existed) is sealed when the service starts; a new key put first reseals
/// every secret and deliveries still verify with the partner's secret; a start without the key
/// that sealed them fails, naming that key, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_at_rest_and_their_keys_rotate() {
    const OLD: &str = "old-webhook-sealing-key-0123456789abcdef";
    const NEW: &str = "new-webhook-sealing-key-0123456789abcdef";
    let database = fresh_database("webhooks_sealed").await;
    let namespace = fresh_namespace().await.to_string();
    let receiver = Receiver::start("webhooks_sealed");
    let owner = uuid::Uuid::now_v7().to_string();

    let served = serve_sealing(&database, &namespace, OLD).await;
    let mut hooks = WebhookServiceClient::connect(served.url()).await.unwrap();
    let (id, secret) = register(&mut hooks, &owner, receiver.url("/sealed"), &[]).await;
    receiver
        .configure("/sealed", json!({"secrets": [secret]}))
        .await;
    let stored = stored_secrets(&database).await;
    assert_eq!(stored.len(), 1);
    let key_material = secret.strip_prefix("whsec_").unwrap();
    assert!(
        !stored[0].contains(key_material),
        "stored in the clear: {}",
        stored[0]
    );
    let old_id = key_id(&stored[0]);
    let mut sent = HashSet::new();
    sent.insert(send_test(&mut hooks, &owner, &id).await);
    accepted_all(&receiver, "/sealed", &sent, Duration::from_secs(20)).await;
    served.stop().await;

    // a secret from before sealing: in the clear; sealed when the service starts
    sqlx::query("update endpoint_secrets set secret = $1")
        .bind(&secret)
        .execute(&database.pool)
        .await
        .unwrap();
    let served = serve_sealing(&database, &namespace, OLD).await;
    eventually(
        Duration::from_secs(20),
        "the clear secret is sealed",
        || async {
            let stored = stored_secrets(&database).await;
            stored[0]
                .starts_with(&format!("v1:{old_id}:"))
                .then_some(())
        },
    )
    .await;
    served.stop().await;

    // a new key first: every secret resealed with it; the partner's secret still signs
    let served = serve_sealing(&database, &namespace, &format!("{NEW},{OLD}")).await;
    let new_id = eventually(
        Duration::from_secs(20),
        "the secret is resealed",
        || async {
            let id = key_id(&stored_secrets(&database).await[0]);
            (id != old_id).then_some(id)
        },
    )
    .await;
    let mut hooks = WebhookServiceClient::connect(served.url()).await.unwrap();
    sent.insert(send_test(&mut hooks, &owner, &id).await);
    accepted_all(&receiver, "/sealed", &sent, Duration::from_secs(20)).await;
    served.stop().await;
    let resealed = stored_secrets(&database).await;

    // without the key that sealed them: the service stops, naming the key it needs
    let served = serve_sealing(&database, &namespace, OLD).await;
    let failure = served.failure(Duration::from_secs(30)).await;
    assert!(
        failure.contains(&format!(
            "sealed with key {new_id}, which is not among WEBHOOK_SECRET_KEYS"
        )),
        "{failure}"
    );
    assert!(
        !failure.contains(OLD) && !failure.contains(NEW),
        "a key in an error: {failure}"
    );
    assert_eq!(stored_secrets(&database).await, resealed);

    // the new key alone opens them
    let served = serve_sealing(&database, &namespace, NEW).await;
    let mut hooks = WebhookServiceClient::connect(served.url()).await.unwrap();
    sent.insert(send_test(&mut hooks, &owner, &id).await);
    let seen = accepted_all(&receiver, "/sealed", &sent, Duration::from_secs(20)).await;
    all_verified(&seen, "/sealed");
    served.stop().await;
}

/// An endpoint's rate limit holds: 16 messages to an endpoint limited to 4 a second take at least
/// three seconds (a burst of 4, then 4 a second), and all arrive; the limit is refused above
/// 10 000, shown on the endpoint, and lifted with 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoints_rate_limit_spaces_its_messages() {
    let database = fresh_database("webhooks_rate").await;
    let namespace = fresh_namespace().await.to_string();
    let served = serve_sealing(&database, &namespace, WEBHOOK_SECRET_KEYS).await;
    let mut hooks = WebhookServiceClient::connect(served.url()).await.unwrap();
    let receiver = Receiver::start("webhooks_rate");
    let owner = uuid::Uuid::now_v7().to_string();
    let too_fast = hooks
        .create_endpoint(pb::CreateEndpointRequest {
            owner_id: owner.clone(),
            url: receiver.url("/limited"),
            rate_limit_per_second: 10_001,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(too_fast.code(), tonic::Code::InvalidArgument);
    assert!(
        String::from_utf8_lossy(too_fast.details()).contains("rate_limit_per_second"),
        "the field violation names the field: {too_fast:?}"
    );
    let created = hooks
        .create_endpoint(pb::CreateEndpointRequest {
            owner_id: owner.clone(),
            url: receiver.url("/limited"),
            rate_limit_per_second: 4,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let id = created.endpoint.unwrap().id;
    receiver
        .configure("/limited", json!({"secrets": [created.secret]}))
        .await;
    assert_eq!(
        endpoint(&mut hooks, &owner, &id)
            .await
            .rate_limit_per_second,
        4
    );
    let mut sent = HashSet::new();
    for _ in 0..16 {
        sent.insert(send_test(&mut hooks, &owner, &id).await);
    }
    let seen = accepted_all(&receiver, "/limited", &sent, Duration::from_secs(30)).await;
    all_verified(&seen, "/limited");
    let at: Vec<f64> = seen
        .requests
        .iter()
        .map(|r| r["at"].as_f64().unwrap())
        .collect();
    let first = at.iter().copied().fold(f64::INFINITY, f64::min);
    let last = at.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert!(
        last - first >= 2.5,
        "16 messages at 4 a second arrived within {:.2} s",
        last - first
    );
    // 0 lifts it
    let lifted = hooks
        .update_endpoint(pb::UpdateEndpointRequest {
            owner_id: owner.clone(),
            endpoint_id: id.clone(),
            rate_limit_per_second: Some(0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .endpoint
        .unwrap();
    assert_eq!(lifted.rate_limit_per_second, 0);
    served.stop().await;
}
