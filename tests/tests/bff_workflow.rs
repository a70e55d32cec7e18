//! The complete business workflow over REST only, through the real BFF in front of the real
//! services, relay and Pulsar: campaign creation to a completed payout and a failed one, every
//! response body checked, final balances checked; meanwhile the creator's notification stream
//! (Server-Sent Events) delivers each notification in order, and reconnecting with
//! `Last-Event-ID` loses nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bff::auth::Role;
use e2e::eventually;
use e2e::platform::Platform;
use e2e::rest::{Edge, SseEvent, SseReader};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

fn is_rfc3339_utc(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

/// Streams `token`'s notifications into a channel until the returned sender side is dropped.
async fn watch(
    edge: &Edge,
    token: &str,
    last_event_id: Option<&str>,
) -> mpsc::UnboundedReceiver<SseEvent> {
    let response = edge
        .stream("/api/v1/notifications/stream", token, last_event_id)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut reader = SseReader::new(response);
        while let Some(event) = reader.next(Duration::from_secs(600)).await {
            if tx.send(event).is_err() {
                break; // the test dropped the receiver: disconnect
            }
        }
    });
    rx
}

/// The next notifications of a stream: asserts their kinds, in order, and that their sequences
/// continue from `*last` without a gap. Returns their bodies.
async fn expect_notifications(
    stream: &mut mpsc::UnboundedReceiver<SseEvent>,
    last: &mut i64,
    kinds: &[&str],
) -> Vec<Value> {
    let mut bodies = Vec::new();
    for kind in kinds {
        let event = tokio::time::timeout(WAIT, stream.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("no `{kind}` notification within {WAIT:?} (after sequence {last})")
            })
            .expect("the stream is open");
        assert_eq!(event.event, "notification", "{event:?}");
        let body: Value = serde_json::from_str(&event.data).expect("data is JSON");
        assert_eq!(body["kind"], format!("NOTIFICATION_KIND_{kind}"), "{body}");
        let sequence: i64 = event.id.parse().expect("the id is the sequence");
        assert_eq!(
            sequence,
            *last + 1,
            "sequences continue without a gap: {body}"
        );
        assert_eq!(body["sequence"], sequence.to_string());
        assert!(is_rfc3339_utc(&body["createdAt"]), "{body}");
        *last = sequence;
        bodies.push(body);
    }
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_journey_runs_over_rest_and_notifications_arrive_live_in_order() {
    let platform = Platform::start_with_analytics("bff_workflow", "hybrid").await;
    // A short request timeout: the notification stream must outlive it (it bounds the time to the
    // response's head, not a stream's life).
    let edge = Edge::start(
        &platform,
        "bff_workflow",
        &[("REQUEST_TIMEOUT", "5s".into())],
    );
    let opened = std::time::Instant::now();
    let advertiser = Uuid::new_v4();
    let creator = Uuid::new_v4();
    let a = Edge::token(advertiser, Role::Advertiser);
    let c = Edge::token(creator, Role::Creator);
    let mut stream = watch(&edge, &c, None).await;
    let mut last = 0;

    // The advertiser creates a campaign; a retry with the same Idempotency-Key gives the same one.
    let create = json!({
        "name": "Winter launch",
        "description": "Ski gear",
        "commissionRateBps": 1000,
        "budget": {"amountMinor": "1000000", "currency": "EUR"},
        // no hold: the commission is available for the payout below at once
        "holdPeriodSeconds": 0
    });
    let key = [("idempotency-key", "create-winter-1")];
    let created = edge
        .send(
            reqwest::Method::POST,
            "/api/v1/campaigns",
            Some(&a),
            Some(&create),
            &key,
        )
        .await;
    let campaign = created.expect(201).clone();
    let campaign_id = campaign["id"].as_str().unwrap().to_owned();
    assert!(Uuid::parse_str(&campaign_id).is_ok());
    assert_eq!(campaign["advertiserId"], advertiser.to_string());
    assert_eq!(campaign["name"], "Winter launch");
    assert_eq!(campaign["description"], "Ski gear");
    assert_eq!(campaign["commissionRateBps"], 1000);
    assert_eq!(
        campaign["budget"],
        json!({"amountMinor": "1000000", "currency": "EUR"})
    );
    assert_eq!(campaign["status"], "CAMPAIGN_STATUS_ACTIVE");
    assert_eq!(campaign["holdPeriodSeconds"], 0);
    assert_eq!(campaign["version"], "1");
    assert!(is_rfc3339_utc(&campaign["createdAt"]) && is_rfc3339_utc(&campaign["updatedAt"]));
    assert!(
        created.header("x-request-id").is_some() && created.header("x-correlation-id").is_some()
    );
    let retried = edge
        .send(
            reqwest::Method::POST,
            "/api/v1/campaigns",
            Some(&a),
            Some(&create),
            &key,
        )
        .await;
    assert_eq!(
        retried.expect(201)["id"],
        campaign_id,
        "the retry returns the first result"
    );

    let video = edge
        .post(
            &format!("/api/v1/campaigns/{campaign_id}/videos"),
            &a,
            &json!({"url": "https://cdn.example.com/winter.mp4", "title": "Teaser"}),
        )
        .await;
    let video = video.expect(201);
    assert_eq!(video["campaignId"], campaign_id);
    assert_eq!(video["title"], "Teaser");
    assert!(is_rfc3339_utc(&video["addedAt"]));
    let detail = edge
        .get(&format!("/api/v1/campaigns/{campaign_id}"), &a)
        .await;
    assert_eq!(detail.expect(200)["videos"].as_array().unwrap().len(), 1);
    assert_eq!(detail.body["campaign"]["version"], "2");

    // The creator finds it among the active campaigns, and accepts it (terms must be accepted).
    let listed = edge.get("/api/v1/campaigns?pageSize=100", &c).await;
    let listed = listed.expect(200)["campaigns"].as_array().unwrap().clone();
    assert!(listed.iter().any(|x| x["id"] == campaign_id));
    assert!(
        listed
            .iter()
            .all(|x| x["status"] == "CAMPAIGN_STATUS_ACTIVE")
    );
    let acceptances = format!("/api/v1/creators/{creator}/acceptances");
    let refused = edge
        .post(
            &acceptances,
            &c,
            &json!({"campaignId": campaign_id, "acceptedTerms": false}),
        )
        .await;
    refused.expect(400);
    assert_eq!(
        refused.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(
        refused.body["errors"][0]["field"], "acceptedTerms",
        "{}",
        refused.text
    );
    let accepted = edge
        .post(
            &acceptances,
            &c,
            &json!({"campaignId": campaign_id, "acceptedTerms": true}),
        )
        .await;
    let accepted = accepted.expect(201);
    assert_eq!(accepted["campaignId"], campaign_id);
    assert_eq!(accepted["creatorId"], creator.to_string());
    assert!(is_rfc3339_utc(&accepted["acceptedAt"]));
    let again = edge
        .post(
            &acceptances,
            &c,
            &json!({"campaignId": campaign_id, "acceptedTerms": true}),
        )
        .await;
    assert_eq!(again.status, 409, "accepting twice: {}", again.text);
    let accepted_note = expect_notifications(&mut stream, &mut last, &["CAMPAIGN_ACCEPTED"]).await;
    assert_eq!(accepted_note[0]["subjectId"], campaign_id);
    assert_eq!(accepted_note[0]["userId"], creator.to_string());

    let evidence = edge
        .post(
            &format!("/api/v1/creators/{creator}/evidence"),
            &c,
            &json!({"campaignId": campaign_id, "kind": "EVIDENCE_KIND_LINK", "url": "https://social.example.com/p/1", "note": "posted"}),
        )
        .await;
    let evidence = evidence.expect(201);
    assert_eq!(evidence["kind"], "EVIDENCE_KIND_LINK");
    assert!(is_rfc3339_utc(&evidence["submittedAt"]));

    // The advertiser's shop reports a view, a click and two purchases; purchases become commissions.
    let track = |kind: &str, amount: Option<i64>| {
        let mut body = json!({"campaignId": campaign_id, "creatorId": creator, "kind": kind});
        if let Some(amount) = amount {
            body["amount"] = json!({"amountMinor": amount.to_string(), "currency": "EUR"});
            body["productId"] = json!("sku-1");
        }
        body
    };
    for (kind, amount) in [
        ("TRACKING_EVENT_KIND_VIEW", None),
        ("TRACKING_EVENT_KIND_CLICK", None),
        ("TRACKING_EVENT_KIND_PURCHASE", Some(10_000)),
    ] {
        let recorded = edge
            .post("/api/v1/tracking-events", &a, &track(kind, amount))
            .await;
        let recorded = recorded.expect(201);
        assert_eq!(recorded["kind"], kind);
        assert!(is_rfc3339_utc(&recorded["recordedAt"]));
    }
    expect_notifications(&mut stream, &mut last, &["COMMISSION_EARNED"]).await;
    edge.post(
        "/api/v1/tracking-events",
        &a,
        &track("TRACKING_EVENT_KIND_PURCHASE", Some(2_550)),
    )
    .await
    .expect(201);
    expect_notifications(&mut stream, &mut last, &["COMMISSION_EARNED"]).await;

    let commissions = edge
        .get(&format!("/api/v1/creators/{creator}/commissions"), &c)
        .await;
    let commissions = commissions.expect(200)["commissions"]
        .as_array()
        .unwrap()
        .clone();
    let mut amounts: Vec<&str> = commissions
        .iter()
        .map(|x| x["amount"]["amountMinor"].as_str().unwrap())
        .collect();
    amounts.sort_unstable();
    assert_eq!(
        amounts,
        ["1000", "255"],
        "10 % of 100.00 and of 25.50 (rounded half away from zero)"
    );
    for commission in &commissions {
        assert_eq!(commission["status"], "COMMISSION_STATUS_AVAILABLE");
        assert_eq!(commission["commissionRateBps"], 1000);
        assert_eq!(commission["campaignId"], campaign_id);
        assert_eq!(commission["reservedMinor"], "0");
    }
    let balance_path = format!("/api/v1/creators/{creator}/balance?currency=EUR");
    let balance = edge.get(&balance_path, &c).await;
    assert_eq!(
        balance.expect(200),
        &json!({"creatorId": creator, "currency": "EUR", "availableMinor": "1255", "reservedMinor": "0", "paidMinor": "0", "pendingMinor": "0"})
    );

    // Past the request timeout: what the stream delivers from here on proves it outlives it.
    tokio::time::sleep_until((opened + Duration::from_millis(5500)).into()).await;

    // A payout that completes: the saga reserves, pays and settles.
    let payouts = format!("/api/v1/creators/{creator}/payouts");
    let requested = edge
        .post(
            &payouts,
            &c,
            &json!({"amount": {"amountMinor": "1000", "currency": "EUR"}, "method": "PAYOUT_METHOD_BANK_TRANSFER", "accountDetails": "DE89370400440532013000"}),
        )
        .await;
    let requested = requested.expect(202).clone();
    assert_eq!(requested["status"], "PAYOUT_STATUS_REQUESTED");
    assert_eq!(requested["accountMasked"], "****3000");
    assert!(
        !requested.to_string().contains("DE8937"),
        "account details never come back"
    );
    let paid_id = requested["id"].as_str().unwrap().to_owned();
    let completed = eventually(WAIT, "the payout completes", || async {
        let payout = edge.get(&format!("{payouts}/{paid_id}"), &c).await;
        (payout.body["status"] == "PAYOUT_STATUS_COMPLETED").then_some(payout.body)
    })
    .await;
    let reference = format!("sbx_{}", Uuid::parse_str(&paid_id).unwrap().simple());
    assert_eq!(completed["providerReference"], reference);
    assert_eq!(
        completed["amount"],
        json!({"amountMinor": "1000", "currency": "EUR"})
    );
    let notes = expect_notifications(
        &mut stream,
        &mut last,
        &["PAYOUT_REQUESTED", "PAYOUT_COMPLETED"],
    )
    .await;
    assert!(notes.iter().all(|n| n["subjectId"] == paid_id));

    // The client disconnects; meanwhile a payout fails (the provider declines the account).
    drop(stream);
    let disconnected_at = last;
    let requested = edge
        .post(
            &payouts,
            &c,
            &json!({"amount": {"amountMinor": "200", "currency": "EUR"}, "method": "PAYOUT_METHOD_PAYPAL", "accountDetails": "invalid@example.com"}),
        )
        .await;
    let failed_id = requested.expect(202)["id"].as_str().unwrap().to_owned();
    let failed = eventually(WAIT, "the payout fails and is compensated", || async {
        let payout = edge.get(&format!("{payouts}/{failed_id}"), &c).await;
        (payout.body["status"] == "PAYOUT_STATUS_FAILED").then_some(payout.body)
    })
    .await;
    assert_eq!(failed["failureReason"], "the provider rejected the account");
    assert_eq!(failed["method"], "PAYOUT_METHOD_PAYPAL");

    // Reconnecting with Last-Event-ID resumes exactly after it: nothing lost, nothing repeated.
    let mut resumed = watch(&edge, &c, Some(&disconnected_at.to_string())).await;
    let notes = expect_notifications(
        &mut resumed,
        &mut last,
        &["PAYOUT_REQUESTED", "PAYOUT_FAILED"],
    )
    .await;
    assert!(notes.iter().all(|n| n["subjectId"] == failed_id));
    // And from the start, the whole history in order.
    let mut replay = watch(&edge, &c, Some("0")).await;
    let mut from_start = 0;
    expect_notifications(
        &mut replay,
        &mut from_start,
        &[
            "CAMPAIGN_ACCEPTED",
            "COMMISSION_EARNED",
            "COMMISSION_EARNED",
            "PAYOUT_REQUESTED",
            "PAYOUT_COMPLETED",
            "PAYOUT_REQUESTED",
            "PAYOUT_FAILED",
        ],
    )
    .await;

    // Final balance: 12.55 earned, 10.00 paid, the failed 2.00 released back.
    let balance = edge.get(&balance_path, &c).await;
    assert_eq!(
        balance.expect(200),
        &json!({"creatorId": creator, "currency": "EUR", "availableMinor": "255", "reservedMinor": "0", "paidMinor": "1000", "pendingMinor": "0"})
    );
    let listed = edge.get(&payouts, &c).await;
    let statuses: Vec<&str> = listed.expect(200)["payouts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["PAYOUT_STATUS_FAILED", "PAYOUT_STATUS_COMPLETED"],
        "newest first"
    );

    // Notifications listed, and marked read.
    let page = edge.get("/api/v1/notifications?pageSize=100", &c).await;
    let page = page.expect(200).clone();
    assert_eq!(page["notifications"].as_array().unwrap().len(), 7);
    assert_eq!(page["unreadCount"], "7");
    let newest = page["notifications"][0].clone();
    assert_eq!(newest["kind"], "NOTIFICATION_KIND_PAYOUT_FAILED");
    let read = edge
        .call(
            reqwest::Method::POST,
            &format!(
                "/api/v1/notifications/{}/read",
                newest["id"].as_str().unwrap()
            ),
            Some(&c),
            None,
        )
        .await;
    assert!(is_rfc3339_utc(&read.expect(200)["readAt"]));
    let unread = edge.get("/api/v1/notifications?unreadOnly=true", &c).await;
    assert_eq!(unread.expect(200)["unreadCount"], "6");
    assert_eq!(unread.body["notifications"].as_array().unwrap().len(), 6);

    // The read side: the campaign's statistics for its advertiser, the creator's for the
    // creator, and the payout's workflow and history for admins; nobody else sees them.
    let stats_path = format!("/api/v1/campaigns/{campaign_id}/stats");
    let stats = eventually(WAIT, "the campaign's statistics", || async {
        let stats = edge.get(&stats_path, &a).await;
        (stats.status == 200 && stats.body["totals"]["counts"]["commissions"] == "2")
            .then_some(stats.body)
    })
    .await;
    assert_eq!(
        stats["totals"]["counts"],
        json!({"views": "1", "clicks": "1", "purchases": "2", "commissions": "2", "commissionsRefused": "0", "uniqueClicks": "0", "botClicks": "0", "conversions": "0", "clickThroughRate": 1.0, "conversionRate": 2.0}),
        "{stats}"
    );
    assert_eq!(stats["totals"]["amounts"][0]["revenueMinor"], "12550");
    assert_eq!(stats["totals"]["amounts"][0]["earnedMinor"], "1255");
    assert_eq!(
        stats["budget"],
        json!({"currency": "EUR", "budgetMinor": "1000000", "leftMinor": "998745"})
    );
    let stranger = Edge::token(Uuid::new_v4(), Role::Advertiser);
    assert_eq!(edge.get(&stats_path, &stranger).await.status, 403);
    assert_eq!(edge.get(&stats_path, &c).await.status, 403);
    let creator_stats = format!("/api/v1/creators/{creator}/stats?from=2000-01-01");
    let mine = eventually(WAIT, "the creator's payout in their statistics", || async {
        let mine = edge.get(&creator_stats, &c).await;
        (mine.body["totals"]["amounts"][0]["paidMinor"] == "1000").then_some(mine.body)
    })
    .await;
    assert_eq!(mine["totals"]["counts"]["purchases"], "2", "{mine}");
    assert_eq!(edge.get(&creator_stats, &a).await.status, 403);
    let bad = edge
        .get(&format!("{creator_stats}&to=1999-12-31"), &c)
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    let admin = Edge::token(Uuid::new_v4(), Role::Admin);
    let history_path = format!("/api/v1/admin/aggregates/payout/{paid_id}/history");
    assert_eq!(edge.get(&history_path, &c).await.status, 403);
    let history = edge.get(&history_path, &admin).await;
    let history = history.expect(200).clone();
    assert_eq!(
        history["entries"][0]["messageType"], "payout.requested.v1",
        "{history}"
    );
    assert_eq!(
        history["entries"][0]["payload"]["payoutRequested"]["payout"]["id"],
        paid_id
    );
    let correlation = history["entries"][0]["correlationId"]
        .as_str()
        .unwrap()
        .to_owned();
    let workflow = edge
        .get(&format!("/api/v1/admin/workflows/{correlation}"), &admin)
        .await;
    let types: Vec<&str> = workflow.expect(200)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["messageType"].as_str().unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"payout.requested.v1"), "{types:?}");
    assert!(types.contains(&"commission.settled.v1"), "{types:?}");
    let unknown = edge
        .get("/api/v1/admin/workflows/no-such-workflow", &admin)
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);

    // The advertiser pauses, resumes and closes the campaign, and was told what happened.
    for (action, status, version) in [
        ("pause", "CAMPAIGN_STATUS_PAUSED", "4"),
        ("resume", "CAMPAIGN_STATUS_ACTIVE", "5"),
        ("close", "CAMPAIGN_STATUS_CLOSED", "6"),
    ] {
        let changed = edge
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/campaigns/{campaign_id}/{action}"),
                Some(&a),
                None,
            )
            .await;
        assert_eq!(changed.expect(200)["status"], status);
        assert_eq!(changed.body["version"], version, "{action}");
    }
    let closed_again = edge
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/campaigns/{campaign_id}/pause"),
            Some(&a),
            None,
        )
        .await;
    assert_eq!(
        closed_again.status, 409,
        "a closed campaign cannot be paused: {}",
        closed_again.text
    );
    let kinds = eventually(WAIT, "the advertiser's notifications", || async {
        let page = edge.get("/api/v1/notifications?pageSize=100", &a).await;
        let kinds: Vec<String> = page.body["notifications"]
            .as_array()?
            .iter()
            .rev()
            .map(|n| {
                n["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .trim_start_matches("NOTIFICATION_KIND_")
                    .to_owned()
            })
            .collect();
        (kinds.len() >= 6).then_some(kinds)
    })
    .await;
    assert_eq!(
        kinds,
        [
            "CAMPAIGN_CREATED",
            "CAMPAIGN_ACCEPTED",
            "EVIDENCE_SUBMITTED",
            "CAMPAIGN_STATUS_CHANGED",
            "CAMPAIGN_STATUS_CHANGED",
            "CAMPAIGN_STATUS_CHANGED"
        ]
    );
    platform.assert_books_balance();
}
