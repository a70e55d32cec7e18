//! Who may do what at the BFF: every route × {no token, bad signature, expired, wrong audience,
//! `alg: none`, wrong role, another user's resource, valid}, where only `valid` succeeds (the
//! webhook routes too: their owner is the caller, admins have none). Then
//! the production key mode (JWKS with ES256 and RS256 keys, algorithm confusion refused), the
//! per-user rate limit, and the edge's behaviour on bad requests, ids and CORS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bff::auth::{Claims, Role, mint_hs256};
use e2e::platform::Platform;
use e2e::rest::{AUDIENCE, Edge, ISSUER};
use e2e::{eventually, publish, pulsar};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/jwt");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(sub: Uuid, role: Role) -> Claims {
    Claims::new(sub, role, ISSUER, AUDIENCE, Duration::from_secs(600))
}

fn hs256(claims: &Claims, secret: &str) -> String {
    mint_hs256(claims, &SecretString::from(secret)).unwrap()
}

/// The token variants that must all be refused with 401, for the user of a valid token.
fn broken_tokens(sub: Uuid, role: Role) -> Vec<(&'static str, String)> {
    let mut expired = claims(sub, role);
    (expired.iat, expired.nbf, expired.exp) = (now() - 7200, now() - 7200, now() - 3600);
    let mut audience = claims(sub, role);
    audience.aud = "some-other-api".into();
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&serde_json::to_value(claims(sub, role)).unwrap())
    );
    vec![
        (
            "bad signature",
            hs256(
                &claims(sub, role),
                "another-secret-0123456789abcdef0123456789",
            ),
        ),
        ("expired", hs256(&expired, e2e::rest::SECRET)),
        ("wrong audience", hs256(&audience, e2e::rest::SECRET)),
        ("alg none", none),
    ]
}

/// One request, as the right user and as the wrong ones.
struct Route {
    method: Method,
    path: String,
    body: Option<Value>,
    valid: (Uuid, Role),
    wrong_role: Option<String>,
    /// Another user's resource: (token, path, body) of the same operation.
    other_user: Option<(String, String, Option<Value>)>,
}

fn route(
    method: Method,
    path: impl Into<String>,
    body: Option<Value>,
    valid: (Uuid, Role),
) -> Route {
    Route {
        method,
        path: path.into(),
        body,
        valid,
        wrong_role: None,
        other_user: None,
    }
}

impl Route {
    fn wrong_role(mut self, token: &str) -> Self {
        self.wrong_role = Some(token.to_owned());
        self
    }

    fn other(mut self, token: &str, path: impl Into<String>, body: Option<Value>) -> Self {
        self.other_user = Some((token.to_owned(), path.into(), body));
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_valid_tokens_of_the_right_user_and_role_succeed_on_every_route() {
    // Every service the BFF calls, the webhook and analytics services too.
    let mut platform = Platform::start_all("bff_auth", "hybrid", Vec::new()).await;
    let edge = Edge::start(
        &platform,
        "bff_auth",
        &[("CORS_ALLOWED_ORIGINS", "https://app.example.com".into())],
    );
    let (a_id, b_id, c1_id, c2_id, admin_id) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let a = Edge::token(a_id, Role::Advertiser);
    let b = Edge::token(b_id, Role::Advertiser);
    let c1 = Edge::token(c1_id, Role::Creator);
    let c2 = Edge::token(c2_id, Role::Creator);
    let admin = Edge::token(admin_id, Role::Admin);

    // Data to act on: A's campaigns, C1's acceptance, commission, payout and notification, and a
    // dead letter. No hold: the commission is available (and paid out) at once.
    let campaign = |name: &str| json!({"name": name, "commissionRateBps": 1000, "budget": {"amountMinor": "100000", "currency": "USD"}, "holdPeriodSeconds": 0});
    let mut campaigns = Vec::new();
    for name in ["Main", "Lifecycle", "To accept"] {
        let created = edge.post("/api/v1/campaigns", &a, &campaign(name)).await;
        campaigns.push(created.expect(201)["id"].as_str().unwrap().to_owned());
    }
    let (ca, cb, cc) = (&campaigns[0], &campaigns[1], &campaigns[2]);
    edge.post(
        &format!("/api/v1/creators/{c1_id}/acceptances"),
        &c1,
        &json!({"campaignId": ca, "acceptedTerms": true}),
    )
    .await
    .expect(201);
    edge.post(
        "/api/v1/tracking-events",
        &a,
        &json!({"campaignId": ca, "creatorId": c1_id, "kind": "TRACKING_EVENT_KIND_PURCHASE", "amount": {"amountMinor": "10000", "currency": "USD"}}),
    )
    .await
    .expect(201);
    let balance_path = format!("/api/v1/creators/{c1_id}/balance?currency=USD");
    eventually(WAIT, "the commission is earned", || async {
        (edge.get(&balance_path, &c1).await.body["availableMinor"] == "1000").then_some(())
    })
    .await;
    let payout = json!({"amount": {"amountMinor": "100", "currency": "USD"}, "method": "PAYOUT_METHOD_PAYPAL", "accountDetails": "c1@example.com"});
    let requested = edge
        .post(&format!("/api/v1/creators/{c1_id}/payouts"), &c1, &payout)
        .await;
    let p1 = requested.expect(202)["id"].as_str().unwrap().to_owned();
    let n1 = eventually(WAIT, "C1 has a notification", || async {
        let page = edge.get("/api/v1/notifications", &c1).await;
        page.body["notifications"][0]["id"]
            .as_str()
            .map(str::to_owned)
    })
    .await;
    let dlq = "campaign-commands-campaign-DLQ";
    publish(
        &pulsar().await,
        &platform.topic(dlq),
        "k",
        "m-1",
        "campaign.create.command.v1",
        "corr-1",
        b"poison".to_vec(),
    )
    .await;

    // C1's tracking links on A's campaign (with tracking settings: a 10 s click-to-conversion
    // minimum by default), a click through the redirect edge, A's postback key and a conversion
    // held as too quick.
    edge.send(
        Method::PUT,
        &format!("/api/v1/campaigns/{ca}/tracking"),
        Some(&a),
        Some(&json!({"tracking": {"landingUrl": "https://shop.example.com/"}})),
        &[],
    )
    .await
    .expect(200);
    let mut link_ids = Vec::new();
    let mut link_urls = Vec::new();
    for _ in 0..2 {
        // tracking learns the landing URL from the campaign's events
        let made = eventually(WAIT, "tracking knows the landing URL", || async {
            let made = edge
                .post(
                    &format!("/api/v1/creators/{c1_id}/links"),
                    &c1,
                    &json!({"campaignId": ca}),
                )
                .await;
            (made.status == 201).then_some(made.body)
        })
        .await;
        link_ids.push(made["id"].as_str().unwrap().to_owned());
        link_urls.push(made["code"].as_str().unwrap().to_owned());
    }
    let (l1, l2) = (&link_ids[0], &link_ids[1]);
    let redirect = platform.start_redirect(&[]);
    let clicked = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://{redirect}/c/{}", link_urls[0]))
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        )
        .send()
        .await
        .unwrap();
    let location = url::Url::parse(clicked.headers()["location"].to_str().unwrap()).unwrap();
    let click = location
        .query_pairs()
        .find(|(k, _)| k == "click_id")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let keys_path = format!("/api/v1/advertisers/{a_id}/postback-keys");
    let key = edge.post(&keys_path, &a, &json!({})).await;
    let (k1, postback_secret) = (
        key.expect(201)["key"]["id"].as_str().unwrap().to_owned(),
        key.body["secret"].as_str().unwrap().to_owned(),
    );
    let sale = json!({"clickId": click, "orderId": "order-1", "amount": {"amountMinor": "5000", "currency": "USD"}});
    let recorded = edge
        .send(
            Method::POST,
            "/api/v1/conversions",
            None,
            Some(&sale),
            &[("x-postback-key", &postback_secret)],
        )
        .await;
    assert_eq!(
        recorded.expect(201)["conversion"]["status"],
        "CONVERSION_STATUS_HELD"
    );
    let conversion = recorded.body["conversion"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The server-to-server doors take a postback key, never a bearer token: without the key
    // (with or without a token) 401, with it the conversion.
    for token in [None, Some(a.as_str())] {
        let status = edge
            .status(Method::POST, "/api/v1/conversions", token, Some(&sale))
            .await;
        assert_eq!(status, 401, "POST /api/v1/conversions without a key");
        let status = edge
            .status(
                Method::GET,
                &format!("/postback?click_id={click}&order_id=order-1&amount=50.00&currency=USD"),
                token,
                None,
            )
            .await;
        assert_eq!(status, 401, "GET /postback without a key");
    }
    let repeated = edge
        .send(
            Method::POST,
            "/api/v1/conversions",
            None,
            Some(&sale),
            &[("x-postback-key", &postback_secret)],
        )
        .await;
    assert_eq!(repeated.expect(200)["duplicate"], true);
    let by_url = edge
        .call(
            Method::GET,
            &format!("/postback?click_id={click}&order_id=order-1&amount=50.00&currency=USD&key={postback_secret}"),
            None,
            None,
        )
        .await;
    assert_eq!(by_url.expect(200)["duplicate"], true);

    // Webhook endpoints: C1's (with a test message sent to it), one of C1's to delete, and A's.
    // Their URL is a closed loopback port: deliveries fail, which changes nothing here.
    let hooks = "/api/v1/webhooks/endpoints";
    let hook = json!({"url": "http://127.0.0.1:9/hook"});
    let mut endpoints = Vec::new();
    for token in [&c1, &c1, &a] {
        let created = edge.post(hooks, token, &hook).await;
        endpoints.push(
            created.expect(201)["endpoint"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let (e1, e_del, ea) = (
        format!("{hooks}/{}", endpoints[0]),
        format!("{hooks}/{}", endpoints[1]),
        format!("{hooks}/{}", endpoints[2]),
    );
    let tested = edge.post(&format!("{e1}/test"), &c1, &json!({})).await;
    let m1 = tested.expect(202)["delivery"]["messageId"]
        .as_str()
        .unwrap()
        .to_owned();
    let since = json!({"since": "2025-01-01T00:00:00Z"});

    let c1p = |rest: &str| format!("/api/v1/creators/{c1_id}{rest}");
    let (adv, cre, adm) = (
        (a_id, Role::Advertiser),
        (c1_id, Role::Creator),
        (admin_id, Role::Admin),
    );
    let evidence = json!({"campaignId": ca, "kind": "EVIDENCE_KIND_PHOTO", "url": "https://img.example.com/1.jpg"});
    let view = json!({"campaignId": ca, "creatorId": c1_id, "kind": "TRACKING_EVENT_KIND_VIEW"});
    let routes = vec![
        route(
            Method::POST,
            "/api/v1/campaigns",
            Some(campaign("New")),
            adv,
        )
        .wrong_role(&c1)
        .other(
            &a,
            "/api/v1/campaigns",
            Some({
                let mut body = campaign("For B");
                body["advertiserId"] = json!(b_id);
                body
            }),
        ),
        route(Method::GET, "/api/v1/campaigns", None, adv).other(
            &a,
            format!("/api/v1/campaigns?advertiserId={b_id}"),
            None,
        ),
        route(Method::GET, format!("/api/v1/campaigns/{ca}"), None, adv).other(
            &b,
            format!("/api/v1/campaigns/{ca}"),
            None,
        ),
        route(
            Method::POST,
            format!("/api/v1/campaigns/{ca}/videos"),
            Some(json!({"url": "https://v.example.com/1", "title": "T"})),
            adv,
        )
        .wrong_role(&c1)
        .other(
            &b,
            format!("/api/v1/campaigns/{ca}/videos"),
            Some(json!({"url": "https://v.example.com/2", "title": "T"})),
        ),
        route(
            Method::POST,
            format!("/api/v1/campaigns/{cb}/pause"),
            None,
            adv,
        )
        .wrong_role(&c1)
        .other(&b, format!("/api/v1/campaigns/{cb}/pause"), None),
        route(
            Method::POST,
            format!("/api/v1/campaigns/{cb}/resume"),
            None,
            adv,
        )
        .wrong_role(&c1)
        .other(&b, format!("/api/v1/campaigns/{cb}/resume"), None),
        route(
            Method::POST,
            format!("/api/v1/campaigns/{cb}/close"),
            None,
            adv,
        )
        .wrong_role(&c1)
        .other(&b, format!("/api/v1/campaigns/{cb}/close"), None),
        route(
            Method::PUT,
            format!("/api/v1/campaigns/{ca}/tracking"),
            Some(json!({"tracking": {"landingUrl": "https://shop.example.com/"}})),
            adv,
        )
        .wrong_role(&c1)
        .other(
            &b,
            format!("/api/v1/campaigns/{ca}/tracking"),
            Some(json!({"tracking": {"landingUrl": "https://evil.example.com/"}})),
        ),
        route(
            Method::POST,
            c1p("/links"),
            Some(json!({"campaignId": ca})),
            cre,
        )
        .wrong_role(&a)
        .other(&c2, c1p("/links"), Some(json!({"campaignId": ca}))),
        route(Method::GET, c1p("/links"), None, cre)
            .wrong_role(&a)
            .other(&c2, c1p("/links"), None),
        route(Method::GET, c1p(&format!("/links/{l1}")), None, cre)
            .wrong_role(&a)
            .other(&c2, format!("/api/v1/creators/{c2_id}/links/{l1}"), None),
        route(
            Method::POST,
            c1p(&format!("/links/{l2}/disable")),
            None,
            cre,
        )
        .wrong_role(&a)
        .other(
            &c2,
            format!("/api/v1/creators/{c2_id}/links/{l2}/disable"),
            None,
        ),
        route(
            Method::GET,
            format!("/api/v1/campaigns/{ca}/links"),
            None,
            adv,
        )
        .wrong_role(&c1)
        .other(&b, format!("/api/v1/campaigns/{ca}/links"), None),
        route(Method::POST, keys_path.clone(), Some(json!({})), adv)
            .wrong_role(&c1)
            .other(&b, keys_path.clone(), Some(json!({}))),
        route(Method::GET, keys_path.clone(), None, adv)
            .wrong_role(&c1)
            .other(&b, keys_path.clone(), None),
        route(Method::DELETE, format!("{keys_path}/{k1}"), None, adv)
            .wrong_role(&c1)
            .other(&b, format!("{keys_path}/{k1}"), None),
        route(
            Method::GET,
            format!("/api/v1/conversions/{conversion}"),
            None,
            adv,
        )
        .other(&c2, format!("/api/v1/conversions/{conversion}"), None),
        route(
            Method::POST,
            format!("/api/v1/conversions/{conversion}/review"),
            Some(json!({"approve": true})),
            adv,
        )
        .wrong_role(&c1)
        .other(
            &b,
            format!("/api/v1/conversions/{conversion}/review"),
            Some(json!({"approve": true})),
        ),
        route(
            Method::POST,
            c1p("/acceptances"),
            Some(json!({"campaignId": cc, "acceptedTerms": true})),
            cre,
        )
        .wrong_role(&a)
        .other(
            &c2,
            c1p("/acceptances"),
            Some(json!({"campaignId": cc, "acceptedTerms": true})),
        ),
        route(Method::POST, c1p("/evidence"), Some(evidence.clone()), cre)
            .wrong_role(&a)
            .other(&c2, c1p("/evidence"), Some(evidence)),
        route(Method::GET, c1p("/commissions"), None, cre)
            .wrong_role(&a)
            .other(&c2, c1p("/commissions"), None),
        route(Method::GET, c1p("/balance?currency=USD"), None, cre)
            .wrong_role(&a)
            .other(&c2, c1p("/balance?currency=USD"), None),
        route(Method::POST, c1p("/payouts"), Some(payout.clone()), cre)
            .wrong_role(&a)
            .other(&c2, c1p("/payouts"), Some(payout)),
        route(Method::GET, c1p("/payouts"), None, cre)
            .wrong_role(&a)
            .other(&c2, c1p("/payouts"), None),
        route(Method::GET, c1p(&format!("/payouts/{p1}")), None, cre)
            .wrong_role(&a)
            .other(&c2, format!("/api/v1/creators/{c2_id}/payouts/{p1}"), None),
        route(
            Method::POST,
            "/api/v1/tracking-events",
            Some(view.clone()),
            adv,
        )
        .wrong_role(&c1)
        .other(&b, "/api/v1/tracking-events", Some(view)),
        route(
            Method::GET,
            format!("/api/v1/tracking-events?campaignId={ca}"),
            None,
            adv,
        )
        .other(&b, format!("/api/v1/tracking-events?campaignId={ca}"), None),
        route(Method::GET, "/api/v1/notifications", None, cre).other(
            &c1,
            format!("/api/v1/notifications?userId={c2_id}"),
            None,
        ),
        route(
            Method::POST,
            format!("/api/v1/notifications/{n1}/read"),
            None,
            cre,
        )
        .other(&c2, format!("/api/v1/notifications/{n1}/read"), None),
        route(Method::GET, "/api/v1/notifications/stream", None, cre),
        route(Method::POST, hooks, Some(hook.clone()), cre).wrong_role(&admin),
        route(Method::GET, hooks, None, adv).wrong_role(&admin),
        route(Method::GET, e1.clone(), None, cre)
            .wrong_role(&admin)
            .other(&c2, e1.clone(), None),
        route(
            Method::PATCH,
            e1.clone(),
            Some(json!({"description": "orders"})),
            cre,
        )
        .wrong_role(&admin)
        .other(&c2, e1.clone(), Some(json!({"description": "mine"}))),
        route(Method::POST, format!("{e1}/rotate-secret"), None, cre)
            .wrong_role(&admin)
            .other(&c2, format!("{e1}/rotate-secret"), None),
        route(Method::GET, format!("{e1}/deliveries"), None, cre)
            .wrong_role(&admin)
            .other(&a, format!("{e1}/deliveries"), None),
        route(
            Method::GET,
            format!("{e1}/attempts?messageId={m1}"),
            None,
            cre,
        )
        .wrong_role(&admin)
        .other(&c2, format!("{e1}/attempts?messageId={m1}"), None),
        route(
            Method::POST,
            format!("{e1}/messages/{m1}/resend"),
            None,
            cre,
        )
        .wrong_role(&admin)
        .other(&c2, format!("{e1}/messages/{m1}/resend"), None),
        route(
            Method::POST,
            format!("{e1}/recover"),
            Some(since.clone()),
            cre,
        )
        .wrong_role(&admin)
        .other(&c2, format!("{e1}/recover"), Some(since)),
        route(Method::POST, format!("{ea}/test"), None, adv)
            .wrong_role(&admin)
            .other(&b, format!("{ea}/test"), None),
        route(Method::DELETE, e_del.clone(), None, cre)
            .wrong_role(&admin)
            .other(&c2, e_del.clone(), None),
        route(Method::GET, "/api/v1/admin/dead-letters", None, adm).wrong_role(&a),
        route(
            Method::GET,
            format!("/api/v1/admin/dead-letters/{dlq}"),
            None,
            adm,
        )
        .wrong_role(&a),
    ];

    let mut requests = 0;
    for r in &routes {
        let label = format!("{} {}", r.method, r.path);
        let mut expect = |case: &str, status: u16, allowed: &[u16]| {
            requests += 1;
            assert!(
                allowed.contains(&status),
                "{label} with {case}: {status}, expected one of {allowed:?}"
            );
        };
        let status = edge
            .status(r.method.clone(), &r.path, None, r.body.as_ref())
            .await;
        expect("no token", status, &[401]);
        for (case, token) in broken_tokens(r.valid.0, r.valid.1) {
            let status = edge
                .status(r.method.clone(), &r.path, Some(&token), r.body.as_ref())
                .await;
            expect(case, status, &[401]);
        }
        if let Some(token) = &r.wrong_role {
            let status = edge
                .status(r.method.clone(), &r.path, Some(token), r.body.as_ref())
                .await;
            expect("wrong role", status, &[403]);
        }
        if let Some((token, path, body)) = &r.other_user {
            let status = edge
                .status(r.method.clone(), path, Some(token), body.as_ref())
                .await;
            expect("another user's resource", status, &[403, 404]);
        }
        let token = Edge::token(r.valid.0, r.valid.1);
        let status = edge
            .status(r.method.clone(), &r.path, Some(&token), r.body.as_ref())
            .await;
        expect("valid", status, &[200, 201, 202, 204]);
    }
    println!(
        "auth matrix: {} routes, {requests} requests, every one answered as expected",
        routes.len()
    );

    // Admins act across users.
    let mut for_a = campaign("Made by an admin");
    for_a["advertiserId"] = json!(a_id);
    assert_eq!(
        edge.post("/api/v1/campaigns", &admin, &for_a)
            .await
            .expect(201)["advertiserId"],
        a_id.to_string()
    );
    let missing_owner = edge
        .post("/api/v1/campaigns", &admin, &campaign("No owner"))
        .await;
    assert_eq!(
        missing_owner.expect(400)["errors"][0]["field"],
        "advertiserId"
    );
    edge.get(&balance_path, &admin).await.expect(200);
    edge.get(&format!("/api/v1/campaigns?advertiserId={a_id}"), &admin)
        .await
        .expect(200);
    let letters = edge
        .get(&format!("/api/v1/admin/dead-letters/{dlq}"), &admin)
        .await;
    let letters = letters.expect(200).as_array().unwrap().clone();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        letters[0]["properties"]["message-type"],
        "campaign.create.command.v1"
    );
    assert_eq!(
        letters[0]["payloadBase64"],
        base64::engine::general_purpose::STANDARD.encode("poison")
    );
    let topics = edge.get("/api/v1/admin/dead-letters", &admin).await;
    assert_eq!(
        topics.expect(200),
        &json!([{"topic": dlq, "messages": "1"}])
    );

    edge_behaviour(&edge, &a).await;
    production_keys(&platform).await;
    rate_limit(&platform).await;

    // A service that is down: its routes answer 503 problem+json with nothing internal in it, the
    // others keep working, and the services' health says which one is down.
    platform.kill("campaign-service");
    let down = edge.get("/api/v1/campaigns", &a).await;
    assert_eq!(down.status, 503, "{}", down.text);
    assert_eq!(
        down.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(down.body["code"], "UNAVAILABLE");
    assert_eq!(
        down.body["detail"],
        "the campaign service is unavailable; retry later"
    );
    edge.get(&balance_path, &c1).await.expect(200);
    let health = edge.call(Method::GET, "/health/services", None, None).await;
    assert_eq!(health.status, 503, "{}", health.text);
    assert_eq!(health.body["status"], "DEGRADED");
    let campaign_health = health.body["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "campaign")
        .unwrap()
        .clone();
    assert_eq!(
        campaign_health["status"], "UNREACHABLE",
        "{campaign_health}"
    );
}

/// Bad requests get 4xx problem+json; ids are echoed; CORS follows its configuration.
async fn edge_behaviour(edge: &Edge, token: &str) {
    let problem = |reply: &e2e::rest::Reply, status: u16| {
        assert_eq!(reply.status, status, "{}", reply.text);
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json"),
            "{}",
            reply.text
        );
        assert_eq!(reply.body["status"], status);
    };
    let big = json!({"name": "x".repeat(70_000), "commissionRateBps": 1, "budget": {"amountMinor": "1", "currency": "USD"}});
    problem(&edge.post("/api/v1/campaigns", token, &big).await, 413);
    let client = reqwest::Client::new();
    for (content_type, body, status) in [
        ("text/plain", "{}", 415),
        ("application/json", "{not json", 400),
        ("application/json", r#"{"name": 5}"#, 400),
        (
            "application/json",
            r#"{"name":"n","commissionRateBps":-1,"budget":{"amountMinor":"1","currency":"USD"}}"#,
            400,
        ),
    ] {
        let response = client
            .post(format!("{}/api/v1/campaigns", edge.url))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{content_type} {body}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    // Field violations from the service come back under the JSON names the client used.
    let invalid = edge
        .post("/api/v1/campaigns", token, &json!({"name": "", "commissionRateBps": 20000, "budget": {"amountMinor": "-5", "currency": "usd"}, "holdPeriodSeconds": -1}))
        .await;
    problem(&invalid, 400);
    let mut fields: Vec<&str> = invalid.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "budget.amountMinor",
            "budget.currency",
            "commissionRateBps",
            "holdPeriodSeconds",
            "name"
        ],
        "{}",
        invalid.text
    );
    // Tracking settings: set at creation or replaced whole, returned normalized with every
    // default spelled out; bad ones come back as field errors under the body's names, the
    // durations in seconds included.
    let mut with_tracking = json!({"name": "Links", "commissionRateBps": 100, "budget": {"amountMinor": "100", "currency": "USD"}});
    with_tracking["tracking"] =
        json!({"landingUrl": "https://shop.example.com/", "landingDomains": ["Shop.Example.com"]});
    let created = edge.post("/api/v1/campaigns", token, &with_tracking).await;
    let created = created.expect(201).clone();
    assert_eq!(
        created["tracking"],
        json!({
            "landingUrl": "https://shop.example.com/",
            "landingDomains": ["shop.example.com"],
            "clickIdParam": "click_id",
            "attributionWindowSeconds": 2_592_000,
            "minClickToConversionSeconds": 10,
            "fallbackUrl": "",
        })
    );
    assert_eq!(
        created["holdPeriodSeconds"], 2_592_000,
        "without one, a campaign holds its commissions 30 days"
    );
    let tracking_path = format!(
        "/api/v1/campaigns/{}/tracking",
        created["id"].as_str().unwrap()
    );
    let bad = json!({"tracking": {
        "landingUrl": "https://user@shop.example.com/",
        "landingDomains": ["shop.example.com/path"],
        "clickIdParam": "a b",
        "attributionWindowSeconds": 0,
        "minClickToConversionSeconds": -1,
    }});
    let invalid = edge
        .call(Method::PUT, &tracking_path, Some(token), Some(&bad))
        .await;
    problem(&invalid, 400);
    let fields: Vec<&str> = invalid.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "tracking.landingUrl",
            "tracking.landingDomains[0]",
            "tracking.clickIdParam",
            "tracking.attributionWindowSeconds",
            "tracking.minClickToConversionSeconds"
        ],
        "{}",
        invalid.text
    );
    let updated = edge
        .call(
            Method::PUT,
            &tracking_path,
            Some(token),
            Some(&json!({"tracking": {"landingUrl": "https://shop.example.com/b", "attributionWindowSeconds": 3600}})),
        )
        .await;
    let updated = updated.expect(200);
    assert_eq!(updated["tracking"]["attributionWindowSeconds"], 3600);
    assert_eq!(updated["tracking"]["landingDomains"], json!([]));
    assert_eq!(updated["version"], "2");
    problem(&edge.get("/api/v1/no-such-route", token).await, 404);
    problem(
        &edge
            .get(&format!("/api/v1/campaigns/{}", Uuid::new_v4()), token)
            .await,
        404,
    );
    problem(&edge.get("/api/v1/campaigns/not-a-uuid", token).await, 400);
    problem(
        &edge.get("/api/v1/campaigns?pageSize=1000", token).await,
        400,
    );
    problem(
        &edge.get("/api/v1/campaigns?pageToken=garbage", token).await,
        400,
    );

    let ids = [
        ("x-request-id", "req-123"),
        ("x-correlation-id", "workflow-9"),
    ];
    let echoed = edge
        .send(Method::GET, "/api/v1/campaigns", Some(token), None, &ids)
        .await;
    assert_eq!(echoed.header("x-request-id"), Some("req-123"));
    assert_eq!(echoed.header("x-correlation-id"), Some("workflow-9"));
    let generated = edge.get("/api/v1/campaigns", token).await;
    assert!(Uuid::parse_str(generated.header("x-request-id").unwrap()).is_ok());

    let preflight = |origin: &'static str| {
        client
            .request(Method::OPTIONS, format!("{}/api/v1/campaigns", edge.url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,idempotency-key",
            )
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let refused = preflight("https://evil.example.com").await.unwrap();
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin")
    );

    let health = edge.call(Method::GET, "/health/services", None, None).await;
    let health = health.expect(200);
    assert_eq!(health["status"], "SERVING", "{health}");
    assert_eq!(health["services"].as_array().unwrap().len(), 7);
    edge.call(Method::GET, "/health", None, None)
        .await
        .expect(200);
    let docs = edge.call(Method::GET, "/docs/", None, None).await;
    assert!(
        docs.text.contains("swagger"),
        "the docs page is served offline"
    );
    let document = edge.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(document.expect(200)["openapi"], "3.1.0");
}

/// JWKS mode: ES256 and RS256 tokens verify against their public keys; an HS256 token signed
/// with a public key (algorithm confusion), `alg: none`, a foreign key or an unknown key id do not.
async fn production_keys(platform: &Platform) {
    let edge = Edge::start(
        platform,
        "bff_auth",
        &[("JWT_JWKS_FILE", format!("{FIXTURES}/jwks.json"))],
    );
    let user = Uuid::new_v4();
    let pem = |name: &str| std::fs::read(format!("{FIXTURES}/{name}")).unwrap();
    let sign = |alg: Algorithm, kid: Option<&str>, key: &EncodingKey| {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, &claims(user, Role::Advertiser), key).unwrap()
    };
    let es = EncodingKey::from_ec_pem(&pem("es256-test-only.key.pem")).unwrap();
    let rs = EncodingKey::from_rsa_pem(&pem("rs256-test-only.key.pem")).unwrap();
    let ok = |token: String| {
        let edge = &edge;
        async move {
            edge.status(Method::GET, "/api/v1/campaigns", Some(&token), None)
                .await
        }
    };
    assert_eq!(
        ok(sign(Algorithm::ES256, Some("test-es256"), &es)).await,
        200
    );
    assert_eq!(
        ok(sign(Algorithm::RS256, Some("test-rs256"), &rs)).await,
        200
    );
    assert_eq!(
        ok(sign(Algorithm::ES256, None, &es)).await,
        200,
        "without kid, the key of the algorithm"
    );
    let jwks = std::fs::read_to_string(format!("{FIXTURES}/jwks.json")).unwrap();
    let confusion = EncodingKey::from_secret(jwks.as_bytes()).unwrap();
    assert_eq!(
        ok(sign(Algorithm::HS256, Some("test-rs256"), &confusion)).await,
        401,
        "HS256 with the public key"
    );
    assert_eq!(
        ok(hs256(&claims(user, Role::Advertiser), e2e::rest::SECRET)).await,
        401,
        "HS256 is off in JWKS mode"
    );
    assert_eq!(
        ok(sign(Algorithm::RS256, Some("test-es256"), &rs)).await,
        401,
        "key id of another algorithm"
    );
    assert_eq!(ok(sign(Algorithm::ES256, Some("unknown"), &es)).await, 401);
    for (case, token) in broken_tokens(user, Role::Advertiser) {
        assert_eq!(ok(token).await, 401, "{case}");
    }

    // Keys fetched from a JWKS URL, and rotated: at first only the ES256 key is published; a
    // token signed with the RS256 key is refused until the set holds it, then accepted (the BFF
    // fetches the set again when a token names a key id it does not know).
    let mut only_es: Value = serde_json::from_str(&jwks).unwrap();
    only_es["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| k["kid"] == "test-es256");
    let served = Arc::new(Mutex::new(only_es.to_string()));
    let url = serve_json(served.clone()).await;
    let by_url = Edge::start(
        platform,
        "bff_auth",
        &[
            ("JWT_JWKS_URL", url),
            ("JWT_JWKS_REFRESH_INTERVAL", "0s".into()),
        ],
    );
    let status = |token: String| {
        let by_url = &by_url;
        async move {
            by_url
                .status(Method::GET, "/api/v1/campaigns", Some(&token), None)
                .await
        }
    };
    assert_eq!(
        status(sign(Algorithm::ES256, Some("test-es256"), &es)).await,
        200
    );
    assert_eq!(
        status(sign(Algorithm::HS256, Some("test-rs256"), &confusion)).await,
        401
    );
    assert_eq!(
        status(sign(Algorithm::RS256, Some("test-rs256"), &rs)).await,
        401,
        "not published yet"
    );
    *served.lock().unwrap() = jwks;
    assert_eq!(
        status(sign(Algorithm::RS256, Some("test-rs256"), &rs)).await,
        200,
        "rotated in"
    );
}

/// A minimal HTTP server on a free loopback port answering every request with the JSON in `body`
/// (which the test may change).
async fn serve_json(body: Arc<Mutex<String>>) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = body.lock().unwrap().clone();
            tokio::spawn(async move {
                let mut request = vec![0_u8; 4096];
                let _ = socket.read(&mut request).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/.well-known/jwks.json")
}

/// Each user has their own bucket; over it, 429 with Retry-After; others are unaffected.
async fn rate_limit(platform: &Platform) {
    let edge = Edge::start(
        platform,
        "bff_auth",
        &[
            ("RATE_LIMIT_PER_SECOND", "1".into()),
            ("RATE_LIMIT_BURST", "3".into()),
        ],
    );
    let busy = Edge::token(Uuid::new_v4(), Role::Creator);
    // A burst of 3, then 1 per second: the 4th quick request is over the limit, unless the machine
    // is so slow that requests take a second each; 20 attempts leave room for that.
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let reply = edge.get("/api/v1/campaigns", &busy).await;
        let limited = reply.status == 429;
        statuses.push(reply);
        if limited {
            break;
        }
    }
    let limited = statuses
        .last()
        .filter(|r| r.status == 429)
        .expect("the burst is exceeded");
    assert!(statuses[..3].iter().all(|r| r.status == 200));
    assert!(
        limited
            .header("retry-after")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(
        limited.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(limited.body["code"], "RESOURCE_EXHAUSTED");
    let other = Edge::token(Uuid::new_v4(), Role::Creator);
    edge.get("/api/v1/campaigns", &other).await.expect(200);

    // Refused tokens are limited per client address: guessing soon gets 429, not 401.
    let guarded = Edge::start(
        platform,
        "bff_auth",
        &[
            ("RATE_LIMIT_REFUSED_PER_SECOND", "1".into()),
            ("RATE_LIMIT_REFUSED_BURST", "5".into()),
        ],
    );
    let mut refused = Vec::new();
    for _ in 0..30 {
        let status = guarded
            .status(Method::GET, "/api/v1/campaigns", Some("not-a-token"), None)
            .await;
        refused.push(status);
        if status == 429 {
            break;
        }
    }
    assert!(refused[..5].iter().all(|s| *s == 401), "{refused:?}");
    assert_eq!(refused.last(), Some(&429), "{refused:?}");
    let valid = Edge::token(Uuid::new_v4(), Role::Creator);
    guarded.get("/api/v1/campaigns", &valid).await.expect(200);
}
