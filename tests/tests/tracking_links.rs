//! Tracking links, the redirect edge and its clicks, on the real platform (PostgreSQL, Pulsar,
//! the services, the relay and the `redirect` binary, over gRPC and HTTP on loopback):
//!
//! - a creator's link for a campaign with a landing page and deep-link domains; deep links off
//!   those domains refused at creation;
//! - `GET /c/{code}` answers 302 to the destination with a fresh click id in the campaign's
//!   parameter, and the click it names is stored before the answer; a repeat by the same visitor
//!   is a duplicate; `HEAD`, a crawler's user agent or no user agent is a bot;
//! - unknown and malformed codes answer 404 and write nothing; an over-long target 414; a client
//!   over its rate 429 while another client is served;
//! - no request makes the edge redirect off the campaign's hosts (open-redirect attempts);
//! - a disabled link and a paused campaign send visitors to the fallback and record nothing;
//! - every click reaches `tracking-events` as `click.recorded.v1`, its correlation id the click
//!   id.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use pbjson_types::Duration as PbDuration;
use reqwest::StatusCode;
use sqlx::PgPool;
use tonic::Code;

use affiliate_proto::campaign::campaign_service_client::CampaignServiceClient;
use affiliate_proto::campaign::{self as campaign_pb, TrackingSettings};
use affiliate_proto::common::Money;
use affiliate_proto::tracking::tracking_service_client::TrackingServiceClient;
use affiliate_proto::tracking::{self as pb, SubIds};
use e2e::platform::Platform;
use e2e::workflow::collect_events;
use e2e::{eventually, violated_fields};

const ADVERTISER: &str = "0193a9e0-0000-7000-8000-0000000000ad";
const CREATOR: &str = "0193a9e0-0000-7000-8000-00000000c001";
const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";
const WAIT: Duration = Duration::from_secs(30);

fn settings() -> TrackingSettings {
    TrackingSettings {
        landing_url: "https://shop.example.com/welcome?utm_source=aff".into(),
        landing_domains: vec!["*.example.org".into()],
        click_id_param: "cid".into(),
        attribution_window: Some(PbDuration {
            seconds: 7 * 86_400,
            nanos: 0,
        }),
        min_click_to_conversion: None,
        fallback_url: "https://shop.example.com/ended".into(),
    }
}

async fn campaign(
    campaigns: &mut CampaignServiceClient<tonic::transport::Channel>,
    name: &str,
) -> String {
    let created = campaigns
        .create_campaign(campaign_pb::CreateCampaignRequest {
            advertiser_id: ADVERTISER.into(),
            name: name.into(),
            description: String::new(),
            commission_rate_bps: 1_000,
            budget: Some(Money {
                amount_minor: 1_000_000,
                currency: "EUR".into(),
            }),
            tracking: Some(settings()),
        })
        .await
        .unwrap()
        .into_inner()
        .campaign
        .unwrap();
    assert_eq!(
        created.tracking.as_ref().map(|t| t.click_id_param.as_str()),
        Some("cid")
    );
    campaigns
        .accept_campaign(campaign_pb::AcceptCampaignRequest {
            campaign_id: created.id.clone(),
            creator_id: CREATOR.into(),
            accepted_terms: true,
        })
        .await
        .unwrap();
    created.id
}

async fn link(
    tracking: &mut TrackingServiceClient<tonic::transport::Channel>,
    campaign_id: &str,
    deep_link: &str,
) -> pb::TrackingLink {
    tracking
        .create_link(pb::CreateLinkRequest {
            campaign_id: campaign_id.into(),
            creator_id: CREATOR.into(),
            sub_ids: Some(SubIds {
                sub1: "video-42".into(),
                sub5: "pinned comment".into(),
                ..Default::default()
            }),
            deep_link: deep_link.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .link
        .unwrap()
}

/// A visitor: the edge believes the loopback proxy's X-Forwarded-For, so each test visitor has
/// an address of its own.
struct Visit<'a> {
    http: &'a reqwest::Client,
    edge: SocketAddr,
}

impl Visit<'_> {
    async fn go(
        &self,
        method: reqwest::Method,
        target: &str,
        ip: &str,
        agent: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .request(method, format!("http://{}{target}", self.edge))
            .header("x-forwarded-for", ip);
        if let Some(agent) = agent {
            request = request.header("user-agent", agent);
        }
        request.send().await.unwrap()
    }

    async fn get(&self, target: &str, ip: &str) -> reqwest::Response {
        self.go(reqwest::Method::GET, target, ip, Some(BROWSER))
            .await
    }
}

fn location(response: &reqwest::Response) -> url::Url {
    let text = response
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("a 302 has a Location: {response:?}"))
        .to_str()
        .unwrap();
    url::Url::parse(text).unwrap()
}

fn click_id(url: &url::Url) -> String {
    url.query_pairs()
        .find(|(k, _)| k == "cid")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no cid in {url}"))
}

async fn clicks(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from clicks")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn verdict(pool: &PgPool, click_id: &str) -> (String, Option<String>, String) {
    sqlx::query_as(
        "select verdict, bot_reason, link_id::text from clicks where id = $1::text::uuid",
    )
    .bind(click_id)
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("click {click_id} is stored: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn links_redirect_with_a_stored_click_and_refuse_what_they_must() {
    let mut platform = Platform::start("tracking_links", "grpc").await;
    let pulsar = e2e::pulsar().await;
    let events = collect_events(&platform, &pulsar).await;
    let mut campaigns = CampaignServiceClient::connect(platform.url("campaign"))
        .await
        .unwrap();
    let mut tracking = TrackingServiceClient::connect(platform.url("tracking"))
        .await
        .unwrap();
    let db = platform.databases["tracking"].pool.clone();

    // ---- links ---------------------------------------------------------------------------
    let campaign_id = campaign(&mut campaigns, "links").await;
    let deep = link(
        &mut tracking,
        &campaign_id,
        "https://blog.example.org/review?ref=yt",
    )
    .await;
    assert_eq!(deep.code.len(), 10);
    assert_eq!(deep.sub_ids.as_ref().unwrap().sub1, "video-42");
    let landing = link(&mut tracking, &campaign_id, "").await;
    for off_domain in [
        "https://evil.com/",
        "https://shop.example.com.evil.com/",
        "https://example.org/",
        "https://shop.example.com@evil.com/",
        "javascript:alert(1)",
    ] {
        let refused = tracking
            .create_link(pb::CreateLinkRequest {
                campaign_id: campaign_id.clone(),
                creator_id: CREATOR.into(),
                sub_ids: None,
                deep_link: off_domain.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{off_domain}");
        assert_eq!(violated_fields(&refused), ["deep_link"], "{off_domain}");
    }
    let listed = tracking
        .list_links(pb::ListLinksRequest {
            creator_id: CREATOR.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .links;
    assert_eq!(
        listed.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
        [landing.id.as_str(), deep.id.as_str()],
        "newest first"
    );

    // ---- the edge ------------------------------------------------------------------------
    let edge = platform.start_redirect(&[
        ("TRUSTED_PROXIES", "127.0.0.0/8".into()),
        ("REDIRECT_RATE_LIMIT", "5".into()),
        ("BOT_NETWORKS", "192.0.2.0/24".into()),
    ]);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let visit = Visit { http: &http, edge };

    // a person: 302 to the deep link, the click id in `cid`, the click stored before the answer
    let first = visit.get(&format!("/c/{}", deep.code), "203.0.113.1").await;
    assert_eq!(first.status(), StatusCode::FOUND);
    assert_eq!(first.headers()["cache-control"], "no-store");
    let to = location(&first);
    assert_eq!(to.host_str(), Some("blog.example.org"));
    assert_eq!(to.path(), "/review");
    assert!(to.query_pairs().any(|(k, v)| k == "ref" && v == "yt"));
    let first_click = click_id(&to);
    assert_eq!(
        verdict(&db, &first_click).await,
        ("unique".into(), None, deep.id.clone())
    );
    // the same visitor again: a duplicate; another visitor: unique
    let again = visit.get(&format!("/c/{}", deep.code), "203.0.113.1").await;
    let again_click = click_id(&location(&again));
    assert_ne!(again_click, first_click, "every click has its own id");
    assert_eq!(verdict(&db, &again_click).await.0, "duplicate");
    let other = visit.get(&format!("/c/{}", deep.code), "203.0.113.2").await;
    assert_eq!(verdict(&db, &click_id(&location(&other))).await.0, "unique");
    // the landing URL keeps its own query and gets the click id
    let plain = visit
        .get(&format!("/c/{}", landing.code), "203.0.113.3")
        .await;
    let to = location(&plain);
    assert_eq!(to.host_str(), Some("shop.example.com"));
    assert!(
        to.query_pairs()
            .any(|(k, v)| k == "utm_source" && v == "aff")
    );
    click_id(&to);

    // bots: redirected, recorded as bots, with the reason
    let bots = [
        (
            reqwest::Method::HEAD,
            "203.0.113.4",
            Some(BROWSER),
            "head request",
        ),
        (reqwest::Method::GET, "203.0.113.5", None, "no user agent"),
        (
            reqwest::Method::GET,
            "203.0.113.6",
            Some("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
            "user agent",
        ),
        (reqwest::Method::GET, "192.0.2.77", Some(BROWSER), "network"),
    ];
    for (method, ip, agent, reason) in bots {
        let response = visit
            .go(method.clone(), &format!("/c/{}", deep.code), ip, agent)
            .await;
        assert_eq!(response.status(), StatusCode::FOUND, "{method} {ip}");
        let (v, why, _) = verdict(&db, &click_id(&location(&response))).await;
        assert_eq!((v.as_str(), why.as_deref()), ("bot", Some(reason)));
    }

    // ---- bad input: nothing written -------------------------------------------------------
    let before = clicks(&db).await;
    for target in [
        "/c/ZZZZZZZZZZ".to_owned(),
        "/c/short".to_owned(),
        "/c/..%2F..%2Fetc".to_owned(),
        format!("/c/{}/extra", deep.code),
        "/c/".to_owned(),
        "/".to_owned(),
    ] {
        let response = visit.get(&target, "203.0.113.10").await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{target}");
    }
    let long = visit
        .get(
            &format!("/c/{}?q={}", deep.code, "a".repeat(3000)),
            "203.0.113.11",
        )
        .await;
    assert_eq!(long.status(), StatusCode::URI_TOO_LONG);
    assert_eq!(clicks(&db).await, before, "refused requests write nothing");

    // ---- open-redirect attempts: the Location stays on the campaign's hosts -------------------
    let allowed: HashSet<&str> = ["blog.example.org", "shop.example.com"].into();
    for (n, target) in [
        format!("/c/{}?url=https://evil.com/", deep.code),
        format!("/c/{}?cid=forged&next=//evil.com", deep.code),
        format!("/c/{}?redirect=%2F%2Fevil.com", landing.code),
        format!("/c/{}#https://evil.com", landing.code),
    ]
    .iter()
    .enumerate()
    {
        let response = visit.get(target, &format!("203.0.113.{}", 20 + n)).await;
        assert_eq!(response.status(), StatusCode::FOUND, "{target}");
        let to = location(&response);
        assert!(allowed.contains(to.host_str().unwrap()), "{target} -> {to}");
        assert_ne!(click_id(&to), "forged");
    }

    // ---- rate limit: one client over its rate is refused, another is served ---------------------
    let mut limited = 0;
    for _ in 0..30 {
        let response = visit
            .get(&format!("/c/{}", landing.code), "198.51.100.99")
            .await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    assert!(
        limited >= 10,
        "30 quick requests at 5/s (burst 10): {limited} refused"
    );
    let served = visit
        .get(&format!("/c/{}", landing.code), "198.51.100.100")
        .await;
    assert_eq!(served.status(), StatusCode::FOUND);

    // ---- a link made after the edge started is served at once ------------------------------
    let fresh = link(&mut tracking, &campaign_id, "https://www.example.org/new").await;
    let response = visit
        .get(&format!("/c/{}", fresh.code), "203.0.113.30")
        .await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(location(&response).host_str(), Some("www.example.org"));

    // ---- disabled link, paused campaign: the fallback, and no click ----------------------------
    let disabled = tracking
        .disable_link(pb::DisableLinkRequest {
            link_id: fresh.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .link
        .unwrap();
    assert!(disabled.disabled);
    assert_eq!(disabled.version, 2);
    let fallback = async |code: &str, ip: &str| {
        let response = visit.get(&format!("/c/{code}"), ip).await;
        response.status() == StatusCode::FOUND
            && location(&response).as_str() == "https://shop.example.com/ended"
    };
    eventually(
        WAIT,
        "the disabled link sends visitors to the fallback",
        || async { fallback(&fresh.code, "203.0.113.31").await.then_some(()) },
    )
    .await;
    campaigns
        .pause_campaign(campaign_pb::PauseCampaignRequest {
            campaign_id: campaign_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    eventually(
        WAIT,
        "the paused campaign's links send visitors to the fallback",
        || async { fallback(&landing.code, "203.0.113.32").await.then_some(()) },
    )
    .await;
    let before = clicks(&db).await;
    for (n, code) in [&fresh.code, &landing.code, &deep.code].iter().enumerate() {
        assert!(
            fallback(code, &format!("203.0.113.{}", 40 + n)).await,
            "{code}"
        );
    }
    assert_eq!(
        clicks(&db).await,
        before,
        "no click through an inactive link"
    );

    // ---- every click published, its correlation id its click id ---------------------------------
    let stored: Vec<(String,)> = sqlx::query_as("select replace(id::text, '-', '') from clicks")
        .fetch_all(&db)
        .await
        .unwrap();
    let stored: HashSet<String> = stored.into_iter().map(|(id,)| id).collect();
    eventually(WAIT, "every click's click.recorded.v1", || async {
        let published: HashSet<String> = events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.metadata.message_type == "click.recorded.v1")
            .map(|e| {
                let id = e.json["clickRecorded"]["click"]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                assert_eq!(e.metadata.correlation_id, id);
                id
            })
            .collect();
        (published == stored).then_some(())
    })
    .await;
    let kinds: HashSet<String> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.metadata.message_type.clone())
        .collect();
    assert!(kinds.contains("link.created.v1") && kinds.contains("link.disabled.v1"));
    platform.assert_all_running();
    println!(
        "tracking_links: {} clicks stored and published",
        stored.len()
    );
}
