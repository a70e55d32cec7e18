//! Webhook endpoints through the BFF's REST routes, end to end: a creator registers an endpoint
//! (the secret shown once), lists, changes and rotates it, sends a test event that a local
//! receiver gets signed with the secret the BFF showed, follows it in the deliveries and
//! attempts, resends and recovers; another creator finds nothing of it, an admin is refused, bad
//! input is a 400 problem naming its field, and a deleted endpoint is gone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bff::auth::Role;
use e2e::eventually;
use e2e::platform::Platform;
use e2e::rest::{Edge, Reply};
use hmac::{Hmac, Mac as _};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);
const ENDPOINTS: &str = "/api/v1/webhooks/endpoints";

/// What a receiver got: each request's headers and body.
type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A partner's server on a free loopback port: records every request and answers 204.
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let received = received.clone();
            move |headers: HeaderMap, body: Bytes| async move {
                received.lock().unwrap().push((headers, body));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), received)
}

/// Asserts a problem+json answer of `status`; returns its fields' names.
fn problem(reply: &Reply, status: u16) -> Vec<String> {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json"),
        "{}",
        reply.text
    );
    assert_eq!(reply.body["status"], status, "{}", reply.text);
    reply.body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether one of the space-separated `v1,` signatures is the message's with `secret`.
fn signed_with(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers[name].to_str().unwrap().to_owned();
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(header("webhook-id").as_bytes());
    mac.update(b".");
    mac.update(header("webhook-timestamp").as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creator_manages_an_endpoint_and_follows_its_deliveries_through_rest() {
    let platform = Platform::start_with_webhooks(
        "bff_webhooks",
        "hybrid",
        vec![
            // the local receiver is on loopback, over plain http
            ("WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8".into()),
            ("WEBHOOK_ALLOW_HTTP", "true".into()),
        ],
    )
    .await;
    let edge = Edge::start(&platform, "bff_webhooks", &[]);
    let (url, received) = receiver().await;
    let (c1_id, c2_id) = (Uuid::new_v4(), Uuid::new_v4());
    let c1 = Edge::token(c1_id, Role::Creator);
    let c2 = Edge::token(c2_id, Role::Creator);
    let admin = Edge::token(Uuid::new_v4(), Role::Admin);

    // ---- register: the secret is in this answer only ------------------------------------------
    let created = edge
        .post(
            ENDPOINTS,
            &c1,
            &json!({"url": url, "description": "orders", "eventTypes": ["commission.approved.v1"]}),
        )
        .await;
    let created = created.expect(201).clone();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let endpoint = created["endpoint"].clone();
    let id = endpoint["id"].as_str().unwrap().to_owned();
    assert_eq!(
        endpoint["ownerId"],
        c1_id.to_string(),
        "the owner is the caller"
    );
    assert_eq!(endpoint["url"], url.as_str());
    assert_eq!(endpoint["eventTypes"], json!(["commission.approved.v1"]));
    assert_eq!(endpoint["enabled"], true);
    assert_eq!(endpoint["consecutiveFailures"], 0);
    assert!(endpoint["createdAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(endpoint["previousSecretExpiresAt"], Value::Null);
    let path = format!("{ENDPOINTS}/{id}");
    let got = edge.get(&path, &c1).await;
    for field in [
        "id",
        "ownerId",
        "url",
        "description",
        "eventTypes",
        "enabled",
    ] {
        assert_eq!(got.expect(200)[field], endpoint[field], "{field}");
    }
    assert!(!got.text.contains(&secret), "GET never shows the secret");
    assert!(got.body.get("secret").is_none());
    let listed = edge.get(ENDPOINTS, &c1).await;
    assert_eq!(listed.expect(200)["endpoints"], json!([got.body]));
    assert_eq!(listed.body["nextPageToken"], "");
    assert!(!listed.text.contains(&secret), "a list never shows secrets");

    // ---- change: present fields are set, an empty filter included ------------------------------
    let patched = edge
        .call(
            Method::PATCH,
            &path,
            Some(&c1),
            Some(&json!({"eventTypes": [], "description": "everything"})),
        )
        .await;
    let patched = patched.expect(200).clone();
    assert_eq!(patched["eventTypes"], json!([]));
    assert_eq!(patched["description"], "everything");
    assert_eq!(patched["url"], url.as_str(), "absent fields stay");
    let disabled = edge
        .call(
            Method::PATCH,
            &path,
            Some(&c1),
            Some(&json!({"enabled": false})),
        )
        .await;
    assert_eq!(disabled.expect(200)["enabled"], false);
    assert_eq!(disabled.body["eventTypes"], json!([]), "absent fields stay");
    let enabled = edge
        .call(
            Method::PATCH,
            &path,
            Some(&c1),
            Some(&json!({"enabled": true})),
        )
        .await;
    assert_eq!(enabled.expect(200)["enabled"], true);
    let bad_filter = edge
        .call(
            Method::PATCH,
            &path,
            Some(&c1),
            Some(&json!({"eventTypes": ["commission.approved.v1", "no.such.v1"]})),
        )
        .await;
    assert_eq!(
        problem(&bad_filter, 400),
        ["eventTypes[1]"],
        "{}",
        bad_filter.text
    );
    let limited = edge
        .call(
            Method::PATCH,
            &path,
            Some(&c1),
            Some(&json!({"rateLimitPerSecond": 50})),
        )
        .await;
    assert_eq!(limited.expect(200)["rateLimitPerSecond"], 50);
    let too_fast = edge
        .call(
            Method::PATCH,
            &path,
            Some(&c1),
            Some(&json!({"rateLimitPerSecond": 10001})),
        )
        .await;
    assert_eq!(
        problem(&too_fast, 400),
        ["rateLimitPerSecond"],
        "{}",
        too_fast.text
    );

    // ---- rotate: a new secret, shown once; the old one still signs for a while ----------------
    let rotated = edge
        .post(&format!("{path}/rotate-secret"), &c1, &json!({}))
        .await;
    let rotated = rotated.expect(200).clone();
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert!(new_secret.starts_with("whsec_"));
    assert_ne!(new_secret, secret);
    assert!(
        rotated["endpoint"]["previousSecretExpiresAt"].is_string(),
        "{rotated}"
    );
    let got = edge.get(&path, &c1).await;
    assert!(!got.text.contains(&new_secret));

    // ---- a test event: queued, delivered signed with both secrets, logged ---------------------
    let queued = edge.post(&format!("{path}/test"), &c1, &json!({})).await;
    let delivery = queued.expect(202)["delivery"].clone();
    assert_eq!(delivery["eventType"], "webhook.test.v1");
    assert_eq!(delivery["endpointId"], id.as_str());
    let message = delivery["messageId"].as_str().unwrap().to_owned();
    let deliveries = format!("{path}/deliveries");
    let succeeded = eventually(WAIT, "the test event is delivered", || async {
        let page = edge
            .get(&format!("{deliveries}?status=succeeded"), &c1)
            .await;
        page.expect(200)["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["messageId"] == message.as_str())
            .cloned()
    })
    .await;
    assert_eq!(succeeded["status"], "DELIVERY_STATUS_SUCCEEDED");
    assert_eq!(succeeded["attempts"], 1);
    assert_eq!(succeeded["nextAttemptAt"], Value::Null);
    let payload: Value = serde_json::from_str(succeeded["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["type"], "webhook.test.v1");
    let all = edge.get(&deliveries, &c1).await;
    assert_eq!(
        all.expect(200)["deliveries"][0]["messageId"],
        message.as_str()
    );
    let failed = edge.get(&format!("{deliveries}?status=failed"), &c1).await;
    assert_eq!(failed.expect(200)["deliveries"], json!([]));
    problem(
        &edge.get(&format!("{deliveries}?status=lost"), &c1).await,
        400,
    );
    let (headers, body) = {
        let received = received.lock().unwrap();
        assert_eq!(received.len(), 1, "one request");
        received[0].clone()
    };
    assert_eq!(headers["webhook-id"], message.as_str());
    assert_eq!(
        body.as_ref(),
        succeeded["payload"].as_str().unwrap().as_bytes()
    );
    assert!(
        signed_with(&new_secret, &headers, &body),
        "signed with the secret the rotation showed"
    );
    assert!(
        signed_with(&secret, &headers, &body),
        "and with the previous one during the overlap"
    );
    let attempts = edge
        .get(&format!("{path}/attempts?messageId={message}"), &c1)
        .await;
    let attempts = attempts.expect(200)["attempts"].as_array().unwrap().clone();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0]["statusCode"], 204);
    assert_eq!(attempts[0]["success"], true);
    assert!(attempts[0]["latencyMs"].is_string(), "int64 as a string");
    let none = edge
        .get(&format!("{path}/attempts?messageId=msg_unknown"), &c1)
        .await;
    assert_eq!(none.expect(200)["attempts"], json!([]));

    // ---- replays: the same message again; nothing failed to recover ---------------------------
    let resent = edge
        .post(
            &format!("{path}/messages/{message}/resend"),
            &c1,
            &json!({}),
        )
        .await;
    assert_eq!(
        resent.expect(202)["delivery"]["messageId"],
        message.as_str()
    );
    eventually(WAIT, "the resend is delivered", || async {
        (received.lock().unwrap().len() == 2).then_some(())
    })
    .await;
    assert_eq!(
        received.lock().unwrap()[1].0["webhook-id"],
        message.as_str()
    );
    problem(
        &edge
            .post(
                &format!("{path}/messages/msg_never_sent/resend"),
                &c1,
                &json!({}),
            )
            .await,
        404,
    );
    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let recovered = edge
        .post(&format!("{path}/recover"), &c1, &json!({"since": since}))
        .await;
    assert_eq!(recovered.expect(202)["recovered"], "0");
    problem(
        &edge
            .post(
                &format!("{path}/recover"),
                &c1,
                &json!({"since": "yesterday"}),
            )
            .await,
        400,
    );

    // ---- another creator finds nothing of it; an admin owns no endpoints ---------------------
    for (method, route, body) in [
        (Method::GET, path.clone(), None),
        (
            Method::PATCH,
            path.clone(),
            Some(json!({"description": "mine now"})),
        ),
        (Method::POST, format!("{path}/rotate-secret"), None),
        (Method::GET, deliveries.clone(), None),
        (Method::GET, format!("{path}/attempts"), None),
        (Method::POST, format!("{path}/test"), None),
        (
            Method::POST,
            format!("{path}/messages/{message}/resend"),
            None,
        ),
        (
            Method::POST,
            format!("{path}/recover"),
            Some(json!({"since": since})),
        ),
        (Method::DELETE, path.clone(), None),
    ] {
        let reply = edge
            .call(method.clone(), &route, Some(&c2), body.as_ref())
            .await;
        problem(&reply, 404);
        assert_eq!(reply.body["code"], "NOT_FOUND", "{method} {route}");
        let reply = edge
            .call(method.clone(), &route, Some(&admin), body.as_ref())
            .await;
        problem(&reply, 403);
    }
    assert_eq!(
        edge.get(ENDPOINTS, &c2).await.expect(200)["endpoints"],
        json!([])
    );
    assert_eq!(
        edge.get(&path, &c1).await.expect(200)["description"],
        "everything",
        "untouched by the other creator"
    );

    // ---- bad input: 400 problem+json naming the field ----------------------------------------
    for refused in [
        "ftp://hooks.example.com/in",
        "http://10.0.0.1/hook",
        "not a url",
    ] {
        let reply = edge.post(ENDPOINTS, &c1, &json!({"url": refused})).await;
        assert_eq!(problem(&reply, 400), ["url"], "{refused}: {}", reply.text);
    }
    let reply = edge
        .post(
            ENDPOINTS,
            &c1,
            &json!({"url": url, "eventTypes": ["webhook.test.v1"]}),
        )
        .await;
    assert_eq!(problem(&reply, 400), ["eventTypes[0]"], "{}", reply.text);
    let reply = edge
        .post(ENDPOINTS, &c1, &json!({"url": url, "ownerId": c2_id}))
        .await;
    problem(&reply, 400);
    assert!(
        reply.body["detail"].as_str().unwrap().contains("ownerId"),
        "the owner is never a body field: {}",
        reply.text
    );
    let reply = edge.get(&format!("{ENDPOINTS}/not-a-uuid"), &c1).await;
    assert_eq!(problem(&reply, 400), ["endpointId"]);
    problem(
        &edge.get(&format!("{ENDPOINTS}?pageSize=1000"), &c1).await,
        400,
    );
    let malformed = reqwest::Client::new()
        .post(format!("{}{ENDPOINTS}", edge.url))
        .bearer_auth(&c1)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(
        malformed.headers()["content-type"],
        "application/problem+json"
    );
    let listed = edge.get(ENDPOINTS, &c1).await;
    assert_eq!(
        listed.expect(200)["endpoints"].as_array().unwrap().len(),
        1,
        "nothing refused was registered"
    );

    // ---- delete: 204, then gone -------------------------------------------------------------
    let deleted = edge.call(Method::DELETE, &path, Some(&c1), None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    assert!(deleted.text.is_empty());
    problem(&edge.get(&path, &c1).await, 404);
    problem(
        &edge.call(Method::DELETE, &path, Some(&c1), None).await,
        404,
    );
    problem(&edge.get(&deliveries, &c1).await, 404);
    assert_eq!(
        edge.get(ENDPOINTS, &c1).await.expect(200)["endpoints"],
        json!([])
    );
}
