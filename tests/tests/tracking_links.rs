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
//!   id;
//! - the edge SIGKILLed under load (`platform load --mode clicks`) loses no click it answered
//!   for: every click id in a 302 the load received was stored and published, none twice; the
//!   load's conversions of a tenth of the clicks all become commissions;
//! - refunds through the BFF: a paid commission (approved early, paid out) refunded in full by
//!   `GET /postback?status=refunded` is clawed back and the creator's balance goes into debt; a
//!   pending one refunded in part is reversed in proportion; a refund of more than is left is
//!   400 and changes nothing; the month's statement (JSON and CSV) reconciles with the balance,
//!   and `platform verify ledger` finds the books balanced.

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

fn secs(seconds: i64) -> Option<PbDuration> {
    Some(PbDuration { seconds, nanos: 0 })
}

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
    campaign_with(campaigns, name, settings()).await
}

async fn campaign_with(
    campaigns: &mut CampaignServiceClient<tonic::transport::Channel>,
    name: &str,
    tracking: TrackingSettings,
) -> String {
    let param = tracking.click_id_param.clone();
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
            tracking: Some(tracking),
            hold_period: None,
        })
        .await
        .unwrap()
        .into_inner()
        .campaign
        .unwrap();
    assert_eq!(
        created.tracking.as_ref().map(|t| t.click_id_param.as_str()),
        Some(param.as_str())
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

/// The reason a refused conversion carries (`google.rpc.ErrorInfo`).
fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_else(|| panic!("{status:?} carries a reason"))
}

fn conversion(click_id: &str, order_id: &str, amount_minor: i64) -> pb::RecordConversionRequest {
    pb::RecordConversionRequest {
        advertiser_id: ADVERTISER.into(),
        click_id: click_id.into(),
        order_id: order_id.into(),
        amount: Some(Money {
            amount_minor,
            currency: "EUR".into(),
        }),
        converted_at: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conversions_are_attributed_once_held_when_too_quick_and_refused_with_a_reason() {
    let mut platform = Platform::start("tracking_conversions", "grpc").await;
    let pulsar = e2e::pulsar().await;
    let events = collect_events(&platform, &pulsar).await;
    let mut campaigns = CampaignServiceClient::connect(platform.url("campaign"))
        .await
        .unwrap();
    let mut tracking = TrackingServiceClient::connect(platform.url("tracking"))
        .await
        .unwrap();
    let edge = platform.start_redirect(&[("TRUSTED_PROXIES", "127.0.0.0/8".into())]);
    let driver = e2e::workflow::Driver::new(&platform, e2e::workflow::Door::Grpc).await;
    // credited at once (no minimum), held under 60 s, a one-second window
    let quick = campaign_with(
        &mut campaigns,
        "quick",
        TrackingSettings {
            min_click_to_conversion: secs(0),
            ..settings()
        },
    )
    .await;
    let careful = campaign_with(
        &mut campaigns,
        "careful",
        TrackingSettings {
            min_click_to_conversion: secs(60),
            ..settings()
        },
    )
    .await;
    let brief = campaign_with(
        &mut campaigns,
        "brief",
        TrackingSettings {
            attribution_window: secs(1),
            min_click_to_conversion: secs(0),
            ..settings()
        },
    )
    .await;
    let quick_link = link(&mut tracking, &quick, "").await;
    let careful_link = link(&mut tracking, &careful, "").await;
    let brief_link = link(&mut tracking, &brief, "").await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let visit = Visit { http: &http, edge };
    let mut n = 0;
    let mut click = async |code: &str, agent: Option<&str>| {
        n += 1;
        let response = visit
            .go(
                reqwest::Method::GET,
                &format!("/c/{code}"),
                &format!("203.0.113.{n}"),
                agent,
            )
            .await;
        click_id(&location(&response))
    };

    // ---- attributed: a purchase, then its commission, all under the click's correlation id --
    let clicked = click(&quick_link.code, Some(BROWSER)).await;
    let recorded = tracking
        .record_conversion(conversion(&clicked, "order-1", 10_000))
        .await
        .unwrap()
        .into_inner();
    assert!(!recorded.duplicate);
    let first = recorded.conversion.unwrap();
    assert_eq!(first.status(), pb::ConversionStatus::Accepted);
    assert_eq!(
        (
            first.campaign_id.as_str(),
            first.creator_id.as_str(),
            first.link_id.as_str()
        ),
        (quick.as_str(), CREATOR, quick_link.id.as_str())
    );
    assert_eq!(first.sub_ids.as_ref().unwrap().sub1, "video-42");
    assert_eq!(
        driver.commission_of(&first.tracking_event_id).await,
        1_000,
        "10 % of 100.00"
    );

    // ---- idempotent on the order id: the first conversion, nothing written -----------------
    let again = tracking
        .record_conversion(conversion(&clicked, "order-1", 99_999))
        .await
        .unwrap()
        .into_inner();
    assert!(again.duplicate);
    assert_eq!(again.conversion.unwrap(), first);
    let purchases: i64 = sqlx::query_scalar("select count(*) from tracking_events")
        .fetch_one(&platform.databases["tracking"].pool)
        .await
        .unwrap();
    assert_eq!(purchases, 1);

    // ---- refused, with a reason, writing nothing ----------------------------------------------
    let client = tracking.clone();
    let refused = |request| {
        let mut tracking = client.clone();
        async move { tracking.record_conversion(request).await.unwrap_err() }
    };
    let unknown = refused(conversion(
        "0193a9e0000070008000000000000000",
        "order-2",
        100,
    ))
    .await;
    assert_eq!(
        (unknown.code(), reason(&unknown).as_str()),
        (Code::FailedPrecondition, "UNKNOWN_CLICK")
    );
    let other_advertiser = refused(pb::RecordConversionRequest {
        advertiser_id: "0193a9e0-0000-7000-8000-0000000000bd".into(),
        ..conversion(&clicked, "order-3", 100)
    })
    .await;
    assert_eq!(reason(&other_advertiser), "UNKNOWN_CLICK");
    let bot = click(&quick_link.code, Some("curl/8.5.0")).await;
    assert_eq!(
        reason(&refused(conversion(&bot, "order-4", 100)).await),
        "BOT_CLICK"
    );
    let wrong_currency = refused(pb::RecordConversionRequest {
        amount: Some(Money {
            amount_minor: 100,
            currency: "USD".into(),
        }),
        ..conversion(&clicked, "order-5", 100)
    })
    .await;
    assert_eq!(wrong_currency.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&wrong_currency), ["amount.currency"]);
    let bad = refused(pb::RecordConversionRequest {
        advertiser_id: String::new(),
        click_id: "nope".into(),
        order_id: String::new(),
        amount: Some(Money {
            amount_minor: -1,
            currency: "EUR".into(),
        }),
        converted_at: None,
    })
    .await;
    assert_eq!(
        violated_fields(&bad),
        [
            "advertiser_id",
            "click_id",
            "order_id",
            "amount.amount_minor"
        ]
    );
    let late = click(&brief_link.code, Some(BROWSER)).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        reason(&refused(conversion(&late, "order-6", 100)).await),
        "OUTSIDE_WINDOW"
    );

    // ---- too quick: held; approved it is a purchase, declined it is not ----------------------
    let hasty = click(&careful_link.code, Some(BROWSER)).await;
    let held = tracking
        .record_conversion(conversion(&hasty, "order-7", 5_000))
        .await
        .unwrap()
        .into_inner()
        .conversion
        .unwrap();
    assert_eq!(held.status(), pb::ConversionStatus::Held);
    assert!(held.tracking_event_id.is_empty());
    assert!(held.reason.contains("suspected fraud"), "{}", held.reason);
    let approved = tracking
        .review_conversion(pb::ReviewConversionRequest {
            conversion_id: held.id.clone(),
            advertiser_id: ADVERTISER.into(),
            approve: true,
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .conversion
        .unwrap();
    assert_eq!(approved.status(), pb::ConversionStatus::Accepted);
    assert_eq!(driver.commission_of(&approved.tracking_event_id).await, 500);
    let reviewed_twice = tracking
        .review_conversion(pb::ReviewConversionRequest {
            conversion_id: held.id.clone(),
            advertiser_id: ADVERTISER.into(),
            approve: false,
            reason: "changed my mind".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reviewed_twice.code(), Code::FailedPrecondition);
    let hasty = click(&careful_link.code, Some(BROWSER)).await;
    let held = tracking
        .record_conversion(conversion(&hasty, "order-8", 5_000))
        .await
        .unwrap()
        .into_inner()
        .conversion
        .unwrap();
    let declined = tracking
        .review_conversion(pb::ReviewConversionRequest {
            conversion_id: held.id.clone(),
            advertiser_id: ADVERTISER.into(),
            approve: false,
            reason: "the order was cancelled".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .conversion
        .unwrap();
    assert_eq!(declined.status(), pb::ConversionStatus::Declined);
    assert_eq!(declined.reason, "the order was cancelled");

    // ---- a paused campaign takes no conversions ------------------------------------------------
    let paused_click = click(&quick_link.code, Some(BROWSER)).await;
    campaigns
        .pause_campaign(campaign_pb::PauseCampaignRequest {
            campaign_id: quick.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let copy = platform.databases["tracking"].pool.clone();
    eventually(
        WAIT,
        "tracking's copy of the campaign is paused",
        || async {
            let status: String = sqlx::query_scalar(
                "select status from campaigns where campaign_id = $1::text::uuid",
            )
            .bind(&quick)
            .fetch_one(&copy)
            .await
            .unwrap();
            (status == "paused").then_some(())
        },
    )
    .await;
    let paused = refused(conversion(&paused_click, "order-9", 100)).await;
    assert_eq!(reason(&paused), "CAMPAIGN_NOT_ACTIVE");

    // ---- the workflow of a click, under one correlation id ------------------------------------
    eventually(
        WAIT,
        "click, conversion, purchase and commission under the click id",
        || async {
            let types: HashSet<String> = events
                .lock()
                .unwrap()
                .iter()
                .filter(|e| e.metadata.correlation_id == clicked)
                .map(|e| e.metadata.message_type.clone())
                .collect();
            ([
                "click.recorded.v1",
                "conversion.recorded.v1",
                "tracking_event.created.v1",
                "commission.calculated.v1",
            ]
            .iter()
            .all(|t| types.contains(*t)))
            .then_some(())
        },
    )
    .await;

    // ---- postback keys: two at most, found by secret or signature, revoked for good -----------
    let key = |n: u8| {
        let mut tracking = client.clone();
        async move {
            tracking
                .create_postback_key(pb::CreatePostbackKeyRequest {
                    advertiser_id: ADVERTISER.into(),
                })
                .await
                .map(|r| r.into_inner())
                .map_err(|e| (n, e))
        }
    };
    let old = key(1).await.unwrap();
    let new = key(2).await.unwrap();
    assert!(
        old.secret.starts_with("pbk_") && old.secret.len() == 47,
        "{}",
        old.secret
    );
    assert_eq!(key(3).await.unwrap_err().1.code(), Code::FailedPrecondition);
    let who = |credential| {
        let mut tracking = client.clone();
        async move {
            tracking
                .authenticate_postback(pb::AuthenticatePostbackRequest {
                    credential: Some(credential),
                })
                .await
        }
    };
    use pb::authenticate_postback_request::Credential;
    let found = who(Credential::Secret(old.secret.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.advertiser_id, ADVERTISER);
    assert_eq!(
        who(Credential::Secret("pbk_wrong".into()))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let ts = chrono::Utc::now().timestamp();
    let new_id = new.key.as_ref().unwrap().id.clone();
    let signed =
        format!("click_id={clicked}&order_id=o&amount=1.00&currency=EUR&key_id={new_id}&ts={ts}");
    let signature = |secret: &str, text: &str| {
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(text.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let signed_by = |secret: &str, text: &str, ts: i64| {
        Credential::Signature(pb::PostbackSignature {
            key_id: new_id.clone(),
            timestamp: ts,
            signature: signature(secret, text),
            signed: text.to_owned(),
        })
    };
    assert!(who(signed_by(&new.secret, &signed, ts)).await.is_ok());
    assert_eq!(
        who(signed_by(&old.secret, &signed, ts))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated,
        "signed with another key's secret"
    );
    let stale = signed.replace(&format!("ts={ts}"), &format!("ts={}", ts - 600));
    assert_eq!(
        who(signed_by(&new.secret, &stale, ts - 600))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated,
        "a signature ten minutes old"
    );
    tracking
        .revoke_postback_key(pb::RevokePostbackKeyRequest {
            advertiser_id: ADVERTISER.into(),
            key_id: old.key.as_ref().unwrap().id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        who(Credential::Secret(old.secret.clone()))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    assert!(
        key(4).await.is_ok(),
        "a revoked key makes room for a new one"
    );
    drop(driver);
    platform.assert_all_running();
}

/// Every line of this test's process logs (services, relay, redirect edge and BFF) that holds
/// `needle`.
fn logged(logs: &std::path::Path, needle: &str) -> Vec<String> {
    std::fs::read_dir(logs)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .flat_map(|path| {
            std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .filter(|line| line.contains(needle))
                .map(|line| format!("{}: {line}", path.display()))
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn conversions_stored(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from conversions")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Hex HMAC-SHA256 of `text` under `secret`, as a shop signs a postback URL.
fn hmac_hex(secret: &str, text: &str) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(text.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A campaign made and accepted through the BFF, its tracking settings with `cid` as the click
/// id parameter and `min_seconds` as the click-to-conversion minimum; its commissions held for
/// `hold_seconds` (the default, 30 days, when `None`).
async fn bff_campaign(
    bff: &e2e::rest::Edge,
    advertiser: &str,
    creator: &str,
    name: &str,
    min_seconds: i64,
    hold_seconds: Option<i64>,
) -> String {
    use serde_json::json;
    let mut campaign = json!({
        "name": name,
        "commissionRateBps": 1000,
        "budget": {"amountMinor": "1000000", "currency": "EUR"},
        "tracking": {
            "landingUrl": "https://shop.example.com/welcome",
            "landingDomains": ["*.example.org"],
            "clickIdParam": "cid",
            "minClickToConversionSeconds": min_seconds,
        },
    });
    if let Some(seconds) = hold_seconds {
        campaign["holdPeriodSeconds"] = json!(seconds);
    }
    let created = bff.post("/api/v1/campaigns", advertiser, &campaign).await;
    let id = created.expect(201)["id"].as_str().unwrap().to_owned();
    bff.post(
        &format!("/api/v1/creators/{CREATOR}/acceptances"),
        creator,
        &json!({"campaignId": id, "acceptedTerms": true}),
    )
    .await
    .expect(201);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_bff_serves_links_postback_keys_and_conversions_and_never_logs_a_secret() {
    use bff::auth::Role;
    use e2e::rest::Edge;
    use reqwest::Method;
    use serde_json::json;

    const TEST: &str = "tracking_postbacks";
    // with the analytics service: the creator's list shows each link's figures
    let mut platform = Platform::start_with_analytics(TEST, "grpc").await;
    let redirect = platform.start_redirect(&[("TRUSTED_PROXIES", "127.0.0.0/8".into())]);
    let bff = Edge::start(
        &platform,
        TEST,
        &[
            ("REDIRECT_PUBLIC_URL", format!("http://{redirect}/")),
            // the BFF's own debug lines too: none may carry a secret
            ("RUST_LOG", "info,bff=debug,service_runtime=debug".into()),
        ],
    );
    let db = platform.databases["tracking"].pool.clone();
    let advertiser = Edge::token(ADVERTISER.parse().unwrap(), Role::Advertiser);
    let creator = Edge::token(CREATOR.parse().unwrap(), Role::Creator);
    let campaign_id = bff_campaign(&bff, &advertiser, &creator, "postbacks", 0, None).await;

    // ---- links through the BFF ---------------------------------------------------------------
    let links = format!("/api/v1/creators/{CREATOR}/links");
    let created = bff
        .post(
            &links,
            &creator,
            &json!({"campaignId": campaign_id, "subIds": {"sub1": "video-42"}, "deepLink": "https://blog.example.org/review"}),
        )
        .await;
    let link = created.expect(201).clone();
    let code = link["code"].as_str().unwrap();
    assert_eq!(link["url"], format!("http://{redirect}/c/{code}"));
    assert_eq!(link["subIds"]["sub1"], "video-42");
    assert_eq!(link["deepLink"], "https://blog.example.org/review");
    let off_domain = bff
        .post(
            &links,
            &creator,
            &json!({"campaignId": campaign_id, "deepLink": "https://evil.com/"}),
        )
        .await;
    assert_eq!(
        off_domain.expect(400)["errors"][0]["field"],
        "deepLink",
        "{}",
        off_domain.text
    );
    let link_id = link["id"].as_str().unwrap();
    let listed = bff
        .get(&format!("{links}?campaignId={campaign_id}"), &creator)
        .await;
    assert_eq!(listed.expect(200)["links"][0]["id"], link_id);
    bff.get(&format!("{links}/{link_id}"), &creator)
        .await
        .expect(200);
    let of_campaign = bff
        .get(
            &format!("/api/v1/campaigns/{campaign_id}/links"),
            &advertiser,
        )
        .await;
    assert_eq!(of_campaign.expect(200)["links"][0]["url"], link["url"]);

    // ---- a click through the redirect edge -----------------------------------------------------
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let visit = Visit {
        http: &http,
        edge: redirect,
    };
    let clicked = visit.get(&format!("/c/{code}"), "203.0.113.1").await;
    assert_eq!(clicked.status(), StatusCode::FOUND);
    let click = click_id(&location(&clicked));

    // ---- postback keys: two at most -------------------------------------------------------------
    let keys = format!("/api/v1/advertisers/{ADVERTISER}/postback-keys");
    let mut made = Vec::new();
    for _ in 0..2 {
        let reply = bff.post(&keys, &advertiser, &json!({})).await;
        let body = reply.expect(201);
        let secret = body["secret"].as_str().unwrap().to_owned();
        assert!(secret.starts_with("pbk_"), "{secret}");
        made.push((body["key"]["id"].as_str().unwrap().to_owned(), secret));
    }
    let third = bff.post(&keys, &advertiser, &json!({})).await;
    assert_eq!(third.status, 409, "{}", third.text);
    let listed = bff.get(&keys, &advertiser).await;
    assert_eq!(listed.expect(200)["keys"].as_array().unwrap().len(), 2);
    let [(old_id, old), (new_id, new)] = [made[0].clone(), made[1].clone()];
    assert!(!listed.text.contains(&old) && !listed.text.contains(&new));

    // ---- conversions: by URL with the key, by POST, a repeat, signed -------------------------------
    let by_url = bff
        .call(
            Method::GET,
            &format!(
                "/postback?click_id={click}&order_id=order-url&amount=49.99&currency=EUR&key={old}"
            ),
            None,
            None,
        )
        .await;
    let body = by_url.expect(201);
    assert_eq!(body["duplicate"], false);
    assert_eq!(body["conversion"]["amount"]["amountMinor"], "4999");
    assert_eq!(body["conversion"]["status"], "CONVERSION_STATUS_ACCEPTED");
    assert_eq!(body["conversion"]["linkId"], link_id);
    let post = async |key: &str, click: &str, order: &str| {
        bff.send(
            Method::POST,
            "/api/v1/conversions",
            None,
            Some(&json!({"clickId": click, "orderId": order, "amount": {"amountMinor": "1000", "currency": "EUR"}})),
            &[("x-postback-key", key)],
        )
        .await
    };
    let first = post(&old, &click, "order-post").await;
    let first_id = first.expect(201)["conversion"]["id"].clone();
    assert_eq!(first.body["duplicate"], false);
    let again = post(&old, &click, "order-post").await;
    assert_eq!(again.expect(200)["duplicate"], true);
    assert_eq!(again.body["conversion"]["id"], first_id);
    let ts = chrono::Utc::now().timestamp();
    let query = format!(
        "click_id={click}&order_id=order-signed&amount=10.00&currency=EUR&key_id={new_id}&ts={ts}"
    );
    let sig = hmac_hex(&new, &query);
    let signed = bff
        .call(
            Method::GET,
            &format!("/postback?{query}&sig={sig}"),
            None,
            None,
        )
        .await;
    assert_eq!(
        signed.expect(201)["conversion"]["amount"]["amountMinor"],
        "1000"
    );

    // ---- refused: nothing written ------------------------------------------------------------------
    let stored = conversions_stored(&db).await;
    assert_eq!(stored, 3);
    eventually(
        WAIT,
        "the link's clicks and conversions in the creator's list",
        || async {
            let listed = bff
                .get(&format!("{links}?campaignId={campaign_id}"), &creator)
                .await;
            let body = listed.expect(200);
            let counts = body["links"]
                .as_array()?
                .iter()
                .find(|l| l["id"] == link_id)?["figures"]["counts"]
                .clone();
            let n = |key: &str| counts[key].as_str().and_then(|v| v.parse::<i64>().ok());
            (n("clicks")? >= 1 && n("uniqueClicks")? >= 1 && n("conversions")? == 3).then_some(())
        },
    )
    .await;
    let unauthenticated = |reply: &e2e::rest::Reply, what: &str| {
        assert_eq!(reply.status, 401, "{what}: {}", reply.text);
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json"),
            "{what}"
        );
    };
    unauthenticated(
        &post("pbk_wrong", &click, "order-wrong").await,
        "a wrong key",
    );
    unauthenticated(
        &bff.call(
            Method::POST,
            "/api/v1/conversions",
            None,
            Some(&json!({"clickId": click, "orderId": "o", "amount": {"amountMinor": "1", "currency": "EUR"}})),
        )
        .await,
        "no key",
    );
    let forged = hmac_hex(&old, &query);
    unauthenticated(
        &bff.call(
            Method::GET,
            &format!("/postback?{query}&sig={forged}"),
            None,
            None,
        )
        .await,
        "signed with another key's secret",
    );
    let unknown = post(&new, "0193a9e0000070008000000000000000", "order-unknown").await;
    let problem = unknown.expect(422);
    assert_eq!(
        (problem["reason"].as_str(), problem["code"].as_str()),
        (Some("UNKNOWN_CLICK"), Some("FAILED_PRECONDITION")),
        "{}",
        unknown.text
    );
    for (amount, what) in [
        ("49.999", "too many decimals"),
        ("-1", "negative"),
        ("abc", "not a number"),
    ] {
        let bad = bff
            .call(
                Method::GET,
                &format!("/postback?click_id={click}&order_id=order-bad&amount={amount}&currency=EUR&key={new}"),
                None,
                None,
            )
            .await;
        assert_eq!(bad.expect(400)["errors"][0]["field"], "amount", "{what}");
    }
    let revoked = bff
        .call(
            Method::DELETE,
            &format!("{keys}/{old_id}"),
            Some(&advertiser),
            None,
        )
        .await;
    assert!(revoked.expect(200)["revokedAt"].is_string());
    unauthenticated(
        &bff.call(
            Method::GET,
            &format!(
                "/postback?click_id={click}&order_id=order-revoked&amount=1&currency=EUR&key={old}"
            ),
            None,
            None,
        )
        .await,
        "a revoked key",
    );
    assert_eq!(
        conversions_stored(&db).await,
        stored,
        "refusals write nothing"
    );

    // ---- a held conversion: read by its creator, not another's; approved by its advertiser ----------
    let careful = bff_campaign(&bff, &advertiser, &creator, "careful", 60, None).await;
    let careful_link = bff
        .post(&links, &creator, &json!({"campaignId": careful}))
        .await;
    let careful_code = careful_link.expect(201)["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let hasty = click_id(&location(
        &visit
            .get(&format!("/c/{careful_code}"), "203.0.113.2")
            .await,
    ));
    let held = post(&new, &hasty, "order-held").await;
    let held = held.expect(201)["conversion"].clone();
    assert_eq!(held["status"], "CONVERSION_STATUS_HELD");
    let path = format!("/api/v1/conversions/{}", held["id"].as_str().unwrap());
    bff.get(&path, &creator).await.expect(200);
    bff.get(&path, &advertiser).await.expect(200);
    let stranger = Edge::token(uuid::Uuid::new_v4(), Role::Creator);
    bff.get(&path, &stranger).await.expect(404);
    let approved = bff
        .post(
            &format!("{path}/review"),
            &advertiser,
            &json!({"approve": true}),
        )
        .await;
    assert_eq!(approved.expect(200)["status"], "CONVERSION_STATUS_ACCEPTED");

    // ---- no secret in any process's log ---------------------------------------------------------------
    for secret in [old.as_str(), new.as_str(), sig.as_str()] {
        let lines = logged(&platform.logs, secret);
        assert!(lines.is_empty(), "a secret in the logs: {lines:#?}");
    }
    assert!(
        !logged(&platform.logs, r#""http.route":"/postback""#).is_empty(),
        "the postbacks were logged (their path, not their query)"
    );
    platform.assert_all_running();
}

/// An int64 the BFF writes as a string (`"amountMinor": "-1000"`).
fn minor(value: &serde_json::Value) -> i64 {
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("an int64 as a string: {value}"))
}

/// An amount in major units as the statement's CSV writes a EUR amount (`-10.00`), in minor
/// units.
fn eur_minor(decimal: &str) -> i64 {
    let (units, cents) = decimal
        .split_once('.')
        .unwrap_or_else(|| panic!("EUR has two decimals: {decimal:?}"));
    assert_eq!(cents.len(), 2, "EUR has two decimals: {decimal:?}");
    let magnitude =
        units.trim_start_matches('-').parse::<i64>().unwrap() * 100 + cents.parse::<i64>().unwrap();
    if units.starts_with('-') {
        -magnitude
    } else {
        magnitude
    }
}

/// The records of a CSV text as RFC 4180 writes them (no CSV crate in the workspace): fields
/// split on commas, a quoted field taken whole (commas, line ends and doubled quotes inside),
/// records ended by CRLF (or LF).
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            '"' if quoted => quoted = false,
            _ if quoted => field.push(c),
            '"' if field.is_empty() => quoted = true,
            ',' => record.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            _ => field.push(c),
        }
    }
    assert!(!quoted, "a quoted field runs to the end: {text:?}");
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refunds_reverse_commissions_claw_back_paid_ones_and_the_statement_and_books_reconcile() {
    use bff::auth::Role;
    use e2e::rest::Edge;
    use reqwest::Method;
    use serde_json::{Value, json};

    const TEST: &str = "tracking_refunds";
    let mut platform = Platform::start(TEST, "grpc").await;
    let redirect = platform.start_redirect(&[("TRUSTED_PROXIES", "127.0.0.0/8".into())]);
    let bff = Edge::start(
        &platform,
        TEST,
        &[("REDIRECT_PUBLIC_URL", format!("http://{redirect}/"))],
    );
    let advertiser = Edge::token(ADVERTISER.parse().unwrap(), Role::Advertiser);
    let creator = Edge::token(CREATOR.parse().unwrap(), Role::Creator);
    // commissions held for a day: the advertiser approves the first early to pay it out
    let campaign_id = bff_campaign(&bff, &advertiser, &creator, "refunds", 0, Some(86_400)).await;
    let link = bff
        .post(
            &format!("/api/v1/creators/{CREATOR}/links"),
            &creator,
            &json!({"campaignId": campaign_id}),
        )
        .await;
    let code = link.expect(201)["code"].as_str().unwrap().to_owned();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let visit = Visit {
        http: &http,
        edge: redirect,
    };
    let click = click_id(&location(
        &visit.get(&format!("/c/{code}"), "203.0.113.1").await,
    ));
    let key = bff
        .post(
            &format!("/api/v1/advertisers/{ADVERTISER}/postback-keys"),
            &advertiser,
            &json!({}),
        )
        .await;
    let key = key.expect(201)["secret"].as_str().unwrap().to_owned();

    let sale = async |order: &str, amount_minor: &str| {
        let reply = bff
            .send(
                Method::POST,
                "/api/v1/conversions",
                None,
                Some(&json!({"clickId": click, "orderId": order, "amount": {"amountMinor": amount_minor, "currency": "EUR"}})),
                &[("x-postback-key", key.as_str())],
            )
            .await;
        let conversion = reply.expect(201)["conversion"].clone();
        assert_eq!(conversion["status"], "CONVERSION_STATUS_ACCEPTED");
        conversion
    };
    let refund = async |order: &str, body: Value| {
        bff.send(
            Method::POST,
            &format!("/api/v1/conversions/{order}/refund"),
            None,
            Some(&body),
            &[("x-postback-key", key.as_str())],
        )
        .await
    };
    // the commission of a purchase, as its creator lists it, once `ready` holds
    let commission = async |purchase: &Value, what: &str, ready: &dyn Fn(&Value) -> bool| {
        eventually(WAIT, what, || async {
            let page = bff
                .get(&format!("/api/v1/creators/{CREATOR}/commissions"), &creator)
                .await;
            page.expect(200)["commissions"]
                .as_array()?
                .iter()
                .find(|c| &c["trackingEventId"] == purchase)
                .filter(|c| ready(c))
                .cloned()
        })
        .await
    };
    let balance_path = format!("/api/v1/creators/{CREATOR}/balance?currency=EUR");
    // (pending, available, reserved, paid)
    let balance = async || {
        let reply = bff.get(&balance_path, &creator).await;
        let b = reply.expect(200);
        (
            minor(&b["pendingMinor"]),
            minor(&b["availableMinor"]),
            minor(&b["reservedMinor"]),
            minor(&b["paidMinor"]),
        )
    };

    // ---- a sale: its commission pending for the hold, approved early, paid out ---------------
    let paid_sale = sale("order-paid", "10000").await;
    let first = commission(
        &paid_sale["trackingEventId"],
        "the first sale's commission",
        &|_| true,
    )
    .await;
    assert_eq!(first["status"], "COMMISSION_STATUS_PENDING", "{first}");
    assert_eq!(first["amount"]["amountMinor"], "1000", "10 % of 100.00");
    assert!(first["holdUntil"].is_string(), "{first}");
    assert_eq!(balance().await, (1_000, 0, 0, 0));
    let approved = bff
        .post(
            "/api/v1/commissions/approve",
            &advertiser,
            &json!({"commissionIds": [first["id"]]}),
        )
        .await;
    let approved = approved.expect(200)["commissions"][0].clone();
    assert_eq!(
        approved["status"], "COMMISSION_STATUS_AVAILABLE",
        "{approved}"
    );
    assert_eq!(balance().await, (0, 1_000, 0, 0));
    let payouts = format!("/api/v1/creators/{CREATOR}/payouts");
    let requested = bff
        .post(
            &payouts,
            &creator,
            &json!({"amount": {"amountMinor": "1000", "currency": "EUR"}, "method": "PAYOUT_METHOD_BANK_TRANSFER", "accountDetails": "DE89370400440532013000"}),
        )
        .await;
    let payout_id = requested.expect(202)["id"].as_str().unwrap().to_owned();
    eventually(WAIT, "the payout completes", || async {
        let payout = bff.get(&format!("{payouts}/{payout_id}"), &creator).await;
        (payout.expect(200)["status"] == "PAYOUT_STATUS_COMPLETED").then_some(())
    })
    .await;
    commission(
        &paid_sale["trackingEventId"],
        "the first commission paid",
        &|c| c["status"] == "COMMISSION_STATUS_PAID",
    )
    .await;
    assert_eq!(balance().await, (0, 0, 0, 1_000));

    // ---- the paid sale refunded in full by URL: clawed back, the balance in debt --------------
    let by_url = bff
        .call(
            Method::GET,
            &format!("/postback?status=refunded&order_id=order-paid&key={key}"),
            None,
            None,
        )
        .await;
    let body = by_url.expect(201);
    assert_eq!(body["duplicate"], false, "{body}");
    assert_eq!(body["refund"]["refundId"], "full", "{body}");
    assert_eq!(body["refund"]["amount"]["amountMinor"], "10000", "{body}");
    assert_eq!(body["conversion"]["refundedMinor"], "10000", "{body}");
    let clawed = commission(
        &paid_sale["trackingEventId"],
        "the paid commission reversed",
        &|c| c["status"] == "COMMISSION_STATUS_REVERSED",
    )
    .await;
    assert_eq!(
        (
            &clawed["clawedBackMinor"],
            &clawed["reversedMinor"],
            &clawed["paidMinor"],
            &clawed["refundedMinor"]
        ),
        (&json!("1000"), &json!("0"), &json!("1000"), &json!("10000")),
        "the paid amount is clawed back, never edited: {clawed}"
    );
    let (_, available, _, paid) = balance().await;
    assert_eq!(
        (available, paid),
        (-1_000, 1_000),
        "a debt for the next payout"
    );

    // ---- a second sale refunded in part: its pending commission reversed in proportion ---------
    let partial_sale = sale("order-partial", "20000").await;
    let purchase = &partial_sale["trackingEventId"];
    commission(purchase, "the second sale's commission", &|c| {
        c["status"] == "COMMISSION_STATUS_PENDING"
    })
    .await;
    let part = json!({"refundId": "refund-1", "amount": {"amountMinor": "5000", "currency": "EUR"}, "reason": "one of four items returned"});
    let refunded = refund("order-partial", part.clone()).await;
    let body = refunded.expect(201);
    assert_eq!(body["conversion"]["refundedMinor"], "5000", "{body}");
    assert_eq!(body["refund"]["kind"], "refund", "{body}");
    let reversed = commission(purchase, "a quarter of the commission reversed", &|c| {
        c["reversedMinor"] == "500"
    })
    .await;
    assert_eq!(
        reversed["status"], "COMMISSION_STATUS_PENDING",
        "{reversed}"
    );
    assert_eq!(
        (
            &reversed["amount"]["amountMinor"],
            &reversed["clawedBackMinor"]
        ),
        (&json!("2000"), &json!("0"))
    );
    assert_eq!(balance().await, (1_500, -1_000, 0, 1_000));

    // ---- more than what is left: 400 naming the field, nothing changed ---------------------------
    let tracking_db = platform.databases["tracking"].pool.clone();
    let commission_db = platform.databases["commission"].pool.clone();
    let count = async |pool: &PgPool, sql: &'static str| -> i64 {
        sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
    };
    let refunds_before = count(&tracking_db, "select count(*) from refunds").await;
    let transfers_before = count(&commission_db, "select count(*) from ledger_transfers").await;
    let too_much = refund(
        "order-partial",
        json!({"refundId": "refund-2", "amount": {"amountMinor": "15001", "currency": "EUR"}}),
    )
    .await;
    assert_eq!(too_much.status, 400, "{}", too_much.text);
    assert_eq!(
        too_much.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(
        too_much.body["errors"][0]["field"], "amount.amountMinor",
        "{}",
        too_much.text
    );
    // the first partial refund again: answered as it was, taken once
    let again = refund("order-partial", part).await;
    assert_eq!(again.expect(200)["duplicate"], true, "{}", again.text);
    let conversion = bff
        .get(
            &format!(
                "/api/v1/conversions/{}",
                partial_sale["id"].as_str().unwrap()
            ),
            &advertiser,
        )
        .await;
    assert_eq!(conversion.expect(200)["refundedMinor"], "5000");
    let unchanged = commission(purchase, "the second commission", &|_| true).await;
    assert_eq!(unchanged, reversed, "the refused refund reversed nothing");
    assert_eq!(balance().await, (1_500, -1_000, 0, 1_000));
    assert_eq!(
        count(&tracking_db, "select count(*) from refunds").await,
        refunds_before
    );
    assert_eq!(
        count(&commission_db, "select count(*) from ledger_transfers").await,
        transfers_before
    );

    // ---- the month's statement: JSON reconciles with the balance, CSV with the JSON ------------
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let statement_path = format!("/api/v1/creators/{CREATOR}/statements?month={month}");
    let statement = bff.get(&statement_path, &creator).await;
    let statement = statement.expect(200).clone();
    assert_eq!(statement["month"], month.as_str());
    let currencies = statement["currencies"].as_array().unwrap();
    assert_eq!(currencies.len(), 1, "{statement}");
    let eur = &currencies[0];
    assert_eq!(eur["currency"], "EUR");
    let lines = eur["lines"].as_array().unwrap();
    let movements: Vec<(&str, i64)> = lines
        .iter()
        .map(|l| (l["kind"].as_str().unwrap(), minor(&l["amountMinor"])))
        .collect();
    assert_eq!(
        movements,
        [
            ("commission", 1_000),
            ("payout", -1_000),
            ("clawback", -1_000),
            ("commission", 2_000),
            ("reversal", -500),
        ],
        "{statement}"
    );
    let (opening, closing) = (minor(&eur["openingMinor"]), minor(&eur["closingMinor"]));
    assert_eq!(
        opening + movements.iter().map(|(_, amount)| amount).sum::<i64>(),
        closing
    );
    let (pending, available, reserved, _) = balance().await;
    assert_eq!(closing, pending + available + reserved, "{statement}");
    assert_eq!(closing, 500);
    assert_eq!(minor(&lines.last().unwrap()["balanceMinor"]), closing);
    assert!(
        lines
            .iter()
            .any(|l| l["kind"] == "payout" && l["payoutId"] == payout_id.as_str())
    );
    let csv = bff
        .send(
            Method::GET,
            &statement_path,
            Some(&creator),
            None,
            &[("accept", "text/csv")],
        )
        .await;
    assert_eq!(csv.status, 200, "{}", csv.text);
    assert!(
        csv.header("content-type")
            .is_some_and(|t| t.starts_with("text/csv")),
        "{:?}",
        csv.headers
    );
    let records = csv_records(&csv.text);
    assert_eq!(
        records[0],
        [
            "currency",
            "at",
            "kind",
            "amount",
            "balance_after",
            "commission_id",
            "campaign_id",
            "payout_id",
            "reference"
        ]
    );
    let rows = &records[1..];
    assert!(
        rows.iter().all(|r| r.len() == 9 && r[0] == "EUR"),
        "{records:?}"
    );
    assert_eq!(rows.len(), lines.len() + 2, "opening, lines, closing");
    assert_eq!(rows[0][2], "opening");
    assert_eq!(eur_minor(&rows[0][4]), opening);
    let closing_row = rows.last().unwrap();
    assert_eq!(closing_row[2], "closing");
    assert_eq!(eur_minor(&closing_row[4]), closing, "{closing_row:?}");
    for (row, line) in rows[1..rows.len() - 1].iter().zip(lines) {
        assert_eq!(
            (row[2].as_str(), eur_minor(&row[3]), eur_minor(&row[4])),
            (
                line["kind"].as_str().unwrap(),
                minor(&line["amountMinor"]),
                minor(&line["balanceMinor"])
            ),
            "{row:?}"
        );
    }

    // ---- the books balance, as `platform verify ledger` says -------------------------------------
    let verify = tokio::process::Command::new(e2e::process::binary("platform"))
        .args([
            "verify",
            "ledger",
            "--commission-url",
            &platform.url("commission"),
        ])
        .env_remove("COMMISSION_GRPC_URL")
        .kill_on_drop(true)
        .output();
    let verified = tokio::time::timeout(WAIT, verify)
        .await
        .expect("platform verify ledger ends within 30 s")
        .expect("run platform verify ledger");
    let report = String::from_utf8_lossy(&verified.stdout);
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{report}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let report: Vec<&str> = report.lines().collect();
    assert_eq!(report.len(), 2, "{report:?}");
    assert!(
        report[0].starts_with("checked ") && report[0].ends_with(" in 1 currency (EUR)"),
        "{report:?}"
    );
    assert_eq!(report[1], "the books balance");
    println!("tracking_refunds: platform verify ledger: {}", report[0]);
    platform.assert_all_running();
}

/// The command line of `platform load --mode clicks` against the platform's edge.
fn click_load_command(
    platform: &Platform,
    edge: SocketAddr,
    args: &[&str],
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(e2e::process::binary("platform"));
    command
        .args([
            "load",
            "--mode",
            "clicks",
            "--json",
            "--drain-timeout",
            "60s",
        ])
        .args(args)
        .args(["--redirect-url", &format!("http://{edge}")])
        .args(["--campaign-url", &platform.url("campaign")])
        .args(["--tracking-url", &platform.url("tracking")])
        .args(["--commission-url", &platform.url("commission")])
        .args(["--payment-url", &platform.url("payment")])
        .args([
            "--pulsar-url",
            &e2e::pulsar_url(),
            "--pulsar-tenant",
            &e2e::pulsar_tenant(),
        ])
        .args(["--pulsar-namespace", &platform.namespace])
        .env_remove("RUST_BACKTRACE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Waits for a `platform load` run; returns its JSON report and whether it exited 0.
async fn click_load_report(mut command: tokio::process::Command) -> (serde_json::Value, bool) {
    let child = command.spawn().expect("run platform load");
    let output = tokio::time::timeout(Duration::from_secs(240), child.wait_with_output())
        .await
        .expect("platform load --mode clicks ends within 240 s")
        .expect("platform load's output");
    eprintln!(
        "platform load --mode clicks:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("the report is not JSON ({e}): {stdout}"));
    (report, output.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_edge_killed_under_load_loses_no_click_it_answered_for() {
    let mut platform = Platform::start("tracking_edge_killed", "grpc").await;
    let env = [("TRUSTED_PROXIES", "127.0.0.0/8".to_owned())];
    let edge = platform.start_redirect(&env);
    let db = platform.databases["tracking"].pool.clone();
    // 300 clicks a second for 8 s; the edge SIGKILLed once the clicks flow, started again on its
    // port a second later; the load runs on. Every click id the load got in a 302 must be
    // published (so stored: a click and its event commit together), and none twice.
    let command = click_load_command(
        &platform,
        edge,
        &[
            "--rate",
            "300",
            "--duration",
            "8s",
            "--baseline-duration",
            "0s",
            "--campaigns",
            "2",
            "--creators",
            "4",
            "--concurrency",
            "32",
            "--convert-share",
            "0.1",
            "--convert-after",
            "200ms",
        ],
    );
    let load = tokio::spawn(click_load_report(command));
    eventually(WAIT, "clicks flowing before the kill", || async {
        (clicks(&db).await >= 300).then_some(())
    })
    .await;
    platform.kill("redirect");
    let at_kill = clicks(&db).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    platform.start_redirect(&env);
    let (report, ok) = load.await.unwrap();
    println!("tracking_edge_killed: {report}");
    let count = |key: &str| {
        report[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {report}"))
    };
    assert!(ok, "every 302 names a published click: {report}");
    assert_eq!(count("clicks_missing"), 0);
    assert_eq!(count("clicks_published"), count("clicks_302"));
    assert_eq!(
        count("clicks_published_twice"),
        0,
        "the relay publishes each outbox row once"
    );
    // a tenth of the persons' clicks converted, each reported by its campaign's advertiser
    assert!(count("conversions_accepted") > 0, "{report}");
    assert_eq!(
        count("conversions_accepted"),
        count("conversions_sent"),
        "{report}"
    );
    assert_eq!(count("commissions_missing"), 0);
    assert!(
        report["edge"]["transport_errors"].as_u64().unwrap_or(0) > 0,
        "the kill was felt: {report}"
    );
    let stored: i64 = clicks(&db).await;
    assert!(
        stored as u64 >= count("clicks_302"),
        "stored {stored} ≥ 302s {}",
        count("clicks_302")
    );
    assert!(stored > at_kill, "the restarted edge took clicks again");
    println!(
        "tracking_edge_killed: {} 302s, all stored and published; {} clicks stored in all ({} stored whose 302 never arrived: the process died after the commit)",
        count("clicks_302"),
        stored,
        stored as u64 - count("clicks_302")
    );
    platform.assert_all_running();
}
