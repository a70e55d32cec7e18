//! `platform load --mode clicks`: visitors through the redirect edge. It makes campaigns with a
//! landing page, creators who accept them and a link each, then sends `GET /c/{code}` on the
//! timetable with realistic browsers' user agents, a share of crawlers and a share of returning
//! visitors (each visitor its own address, told by `X-Forwarded-For`: the edge must trust the
//! generator's address, `TRUSTED_PROXIES`). First the same timetable runs against a bare `302`
//! handler in this process (an axum route that answers the same redirect and stores nothing):
//! the edge's latencies are printed beside it, with their ratio.
//!
//! Every `302` names a click id; the run watches `tracking-events` and counts every click id it
//! received that was published as `click.recorded.v1` (the click and its event commit together,
//! so published means stored). A share of the persons' clicks converts after a delay
//! (RecordConversion, as a shop's postback would); the run watches `commission-events` for their
//! commissions and reports conversion → commission latency. It exits non-zero when a `302` names
//! a click that never came, or an accepted conversion has no commission.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures::TryStreamExt as _;
use prost::Message as _;
use rand::Rng as _;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use affiliate_proto::campaign::{CreateCampaignRequest, TrackingSettings};
use affiliate_proto::commission::CommissionEvent;
use affiliate_proto::commission::commission_event::Event::CommissionCalculated;
use affiliate_proto::common::Money;
use affiliate_proto::tracking::{
    CreateLinkRequest, RecordConversionRequest, TrackingEventEnvelope,
    tracking_event_envelope::Event as TrackingEvent,
};
use service_runtime::config::PulsarArgs;
use service_runtime::errors::code_name;

use super::args::LoadArgs;
use super::cost;
use super::histogram::{Latency, Summary, summary_line};
use super::retry::RetryPolicy;
use super::schedule::Schedule;
use super::setup::{self, Clients, Run, call_failed};

/// Browsers' user agents (a person's click).
const BROWSERS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
];
/// Crawlers and link previewers (a bot's click).
const CRAWLERS: &[&str] = &[
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Twitterbot/1.0",
    "curl/8.5.0",
];
const LANDING: &str = "https://shop.example.com/landing";
const BUDGET_MINOR: i64 = 1_000_000_000_000;
/// The timetable starts this long after the clients are spawned.
const LEAD: Duration = Duration::from_millis(20);

/// One link of the run, and its creator.
#[derive(Debug, Clone)]
struct Link {
    code: String,
    /// The advertiser of the link's campaign: who reports its conversions.
    advertiser: String,
}

/// What one phase (the bare handler or the edge) measured.
#[derive(Debug, Default)]
struct Phase {
    latency: Option<Latency>,
    sent: u64,
    found: u64,
    other: HashMap<u16, u64>,
    errors: u64,
    late: u64,
    /// Click ids the edge answered with (empty for the bare handler).
    click_ids: Vec<(String, bool)>,
    first: Option<Instant>,
    last: Option<Instant>,
}

/// What the run's watchers saw.
#[derive(Debug, Default)]
struct Seen {
    clicks: HashMap<String, u32>,
    /// Commission per tracking event id, with when it was seen.
    commissions: HashMap<String, Instant>,
}

/// Conversions sent during the edge phase.
#[derive(Debug, Default)]
struct Conversions {
    latency: Option<Latency>,
    sent: u64,
    accepted: u64,
    held: u64,
    failed: HashMap<String, u64>,
    /// Tracking event id → when its conversion was acknowledged.
    purchases: HashMap<String, Instant>,
}

#[derive(Debug, Serialize)]
pub struct PhaseReport {
    pub target: String,
    pub sent: u64,
    pub achieved_rate: f64,
    pub found_302: u64,
    pub other_statuses: HashMap<u16, u64>,
    pub transport_errors: u64,
    pub late_sends: u64,
    pub latency: Summary,
}

#[derive(Debug, Serialize)]
pub struct ClickReport {
    pub schedule: String,
    pub links: usize,
    pub baseline: Option<PhaseReport>,
    pub edge: PhaseReport,
    /// Edge latency over the bare handler's, at p50 and p99.
    pub ratio_p50: Option<f64>,
    pub ratio_p99: Option<f64>,
    pub clicks_302: u64,
    pub clicks_published: u64,
    pub clicks_missing: u64,
    pub clicks_published_twice: u64,
    pub person_clicks: u64,
    pub conversions_sent: u64,
    pub conversions_accepted: u64,
    pub conversions_held: u64,
    pub conversions_failed: HashMap<String, u64>,
    pub conversion_latency: Option<Summary>,
    pub commissions_missing: u64,
    pub conversion_to_commission: Option<Summary>,
    pub cost: cost::Cost,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs the click load.
pub async fn run(args: LoadArgs, stop: CancellationToken) -> anyhow::Result<()> {
    args.check()?;
    let schedule = args.schedule()?;
    let retry = args.retry();
    let run = Run::new();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let changed = Arc::new(Notify::new());
    let watchers = watch(&args.pulsar, seen.clone(), changed.clone()).await?;
    let clients = setup::connect(&args.services, false).await?;
    let links = make_links(&clients, &args, &run, retry).await?;
    eprintln!(
        "{} links on {} campaigns; sending {} ({} clicks) through {}",
        links.len(),
        args.campaigns,
        schedule.describe(),
        schedule.planned(),
        args.clicks.redirect_url
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(args.concurrency)
        .tcp_nodelay(true)
        .timeout(args.call_timeout)
        .build()
        .context("build the HTTP client")?;
    let links = Arc::new(links);

    let baseline = if args.clicks.baseline_duration.is_zero() {
        None
    } else {
        let (addr, server) = bare_handler().await?;
        let plan = Schedule::fixed(args.rate, Some(args.clicks.baseline_duration), None);
        eprintln!(
            "baseline: the bare 302 handler at http://{addr} for {}",
            plan.describe()
        );
        let phase = send(
            &http,
            &format!("http://{addr}"),
            &links,
            plan,
            &args,
            None,
            false,
            stop.clone(),
        )
        .await?;
        server.abort();
        Some((addr, phase))
    };

    let conversions = Arc::new(Mutex::new(Conversions {
        latency: Some(Latency::new()?),
        ..Conversions::default()
    }));
    let converter = (args.clicks.convert_share > 0.0).then(|| Converter {
        clients: clients.clone(),
        run: run.clone(),
        retry,
        after: args.clicks.convert_after,
        amount: Money {
            amount_minor: args.amount_minor,
            currency: args.currency.clone(),
        },
        share: args.clicks.convert_share,
        conversions: conversions.clone(),
        tasks: Arc::new(Mutex::new(JoinSet::new())),
        next: Arc::new(AtomicU64::new(0)),
    });
    let cost_before = cost::Snapshot::take();
    let edge = send(
        &http,
        args.clicks.redirect_url.trim_end_matches('/'),
        &links,
        schedule,
        &args,
        converter.clone(),
        true,
        stop.clone(),
    )
    .await?;
    if let Some(converter) = &converter {
        let mut tasks = std::mem::take(&mut *lock(&converter.tasks));
        while tasks.join_next().await.is_some() {}
    }
    let cost = cost::between(&cost_before, &cost::Snapshot::take(), edge.sent);

    // ---- wait for every click's event and every conversion's commission --------------------
    let expected: HashSet<String> = edge.click_ids.iter().map(|(id, _)| id.clone()).collect();
    let purchases: HashMap<String, Instant> = lock(&conversions).purchases.clone();
    let deadline = Instant::now() + args.drain_timeout;
    loop {
        let (clicks_left, commissions_left) = {
            let s = lock(&seen);
            (
                expected
                    .iter()
                    .filter(|id| !s.clicks.contains_key(*id))
                    .count(),
                purchases
                    .keys()
                    .filter(|id| !s.commissions.contains_key(*id))
                    .count(),
            )
        };
        if clicks_left == 0 && commissions_left == 0 {
            break;
        }
        tokio::select! {
            () = changed.notified() => {}
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            () = tokio::time::sleep_until(deadline) => break,
            () = stop.cancelled() => break,
        }
    }
    watchers.abort();

    let report = report(
        &schedule,
        links.len(),
        baseline,
        edge,
        &args,
        &seen,
        &conversions,
        cost,
    );
    let text = if args.json {
        serde_json::to_string(&report)? + "\n"
    } else {
        text(&report)
    };
    {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .context("write the report to stdout")?;
    }
    let mut problems = Vec::new();
    if report.clicks_missing > 0 {
        problems.push(format!(
            "{} of {} 302s name a click that was never published",
            report.clicks_missing, report.clicks_302
        ));
    }
    if report.commissions_missing > 0 {
        problems.push(format!(
            "{} accepted conversions have no commission",
            report.commissions_missing
        ));
    }
    anyhow::ensure!(problems.is_empty(), "{}", problems.join("; "));
    Ok(())
}

/// Campaigns with a landing page (conversions credited at once), creators who accept them, and
/// one link per creator and campaign. Returns the links.
async fn make_links(
    clients: &Clients,
    args: &LoadArgs,
    run: &Run,
    retry: RetryPolicy,
) -> anyhow::Result<Vec<Link>> {
    let mut campaigns = Vec::new();
    let mut advertisers = HashMap::new();
    for n in 0..args.campaigns {
        let advertiser = uuid::Uuid::now_v7().to_string();
        let message = CreateCampaignRequest {
            advertiser_id: advertiser.clone(),
            name: format!("click load {} #{n}", run.id),
            description: "created by `platform load --mode clicks`".into(),
            commission_rate_bps: args.commission_rate_bps,
            budget: Some(Money {
                amount_minor: BUDGET_MINOR,
                currency: args.currency.clone(),
            }),
            tracking: Some(TrackingSettings {
                landing_url: LANDING.into(),
                min_click_to_conversion: Some(pbjson_types::Duration {
                    seconds: 0,
                    nanos: 0,
                }),
                ..TrackingSettings::default()
            }),
            // no hold, as the purchase load's campaigns: commissions approved at once
            hold_period: Some(pbjson_types::Duration {
                seconds: 0,
                nanos: 0,
            }),
        };
        let step = format!("click-campaign-{n}");
        let attempts = retry
            .call(|| {
                let mut client = clients.campaign.clone();
                let request = run.request(message.clone(), &step);
                async move { client.create_campaign(request?).await }
            })
            .await;
        let id = attempts
            .result
            .map_err(|s| call_failed("CreateCampaign", &s))?
            .into_inner()
            .campaign
            .map(|c| c.id)
            .context("CreateCampaign answered without a campaign")?;
        advertisers.insert(id.clone(), advertiser);
        campaigns.push(id);
    }
    let creators = setup::accept(
        clients,
        &campaigns,
        args.creators,
        run,
        retry,
        args.concurrency,
    )
    .await?;
    let mut links = Vec::new();
    for campaign in &campaigns {
        for (i, creator) in creators.iter().enumerate() {
            let message = CreateLinkRequest {
                campaign_id: campaign.clone(),
                creator_id: creator.clone(),
                sub_ids: None,
                deep_link: String::new(),
            };
            let step = format!("link-{campaign}-{i}");
            let attempts = retry
                .call(|| {
                    let mut client = clients.tracking.clone();
                    let request = run.request(message.clone(), &step);
                    async move { client.create_link(request?).await }
                })
                .await;
            let link = attempts
                .result
                .map_err(|s| call_failed("CreateLink", &s))?
                .into_inner()
                .link
                .context("CreateLink answered without a link")?;
            links.push(Link {
                code: link.code,
                advertiser: advertisers[campaign].clone(),
            });
        }
    }
    Ok(links)
}

/// A bare 302 handler: the same redirect, with a fresh id, and nothing stored.
async fn bare_handler() -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse as _;
    let app = axum::Router::new().route(
        "/c/{code}",
        axum::routing::get(|| async {
            let id = uuid::Uuid::now_v7().simple().to_string();
            let location = format!("{LANDING}?click_id={id}");
            (
                StatusCode::FOUND,
                [
                    (
                        header::LOCATION,
                        HeaderValue::from_str(&location)
                            .unwrap_or(HeaderValue::from_static(LANDING)),
                    ),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
            )
                .into_response()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, server))
}

/// Conversions for a share of the persons' clicks.
#[derive(Clone)]
struct Converter {
    clients: Clients,
    run: Run,
    retry: RetryPolicy,
    after: Duration,
    amount: Money,
    share: f64,
    conversions: Arc<Mutex<Conversions>>,
    tasks: Arc<Mutex<JoinSet<()>>>,
    next: Arc<AtomicU64>,
}

impl Converter {
    /// Maybe converts the click `click_id` of `advertiser`'s campaign, `after` from now.
    fn maybe(&self, click_id: String, advertiser: String) {
        if !rand::rng().random_bool(self.share.clamp(0.0, 1.0)) {
            return;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let this = self.clone();
        lock(&self.tasks).spawn(async move {
            tokio::time::sleep(this.after).await;
            let message = RecordConversionRequest {
                advertiser_id: advertiser,
                click_id,
                order_id: format!("load-{}-{n}", this.run.id),
                amount: Some(this.amount.clone()),
                converted_at: None,
            };
            let step = format!("conversion-{n}");
            let started = Instant::now();
            let attempts = this
                .retry
                .call(|| {
                    let mut client = this.clients.tracking.clone();
                    let request = this.run.request(message.clone(), &step);
                    async move { client.record_conversion(request?).await }
                })
                .await;
            let now = Instant::now();
            let mut c = lock(&this.conversions);
            c.sent += 1;
            match attempts.result {
                Ok(response) => {
                    if let Some(l) = c.latency.as_mut() {
                        l.record(now - started);
                    }
                    let conversion = response.into_inner().conversion.unwrap_or_default();
                    if conversion.tracking_event_id.is_empty() {
                        c.held += 1;
                    } else {
                        c.accepted += 1;
                        c.purchases.insert(conversion.tracking_event_id, now);
                    }
                }
                Err(status) => {
                    *c.failed
                        .entry(code_name(status.code()).to_owned())
                        .or_default() += 1;
                }
            }
        });
    }
}

/// Sends `plan` against `base` from `args.concurrency` clients; returns what it measured (with
/// the click ids of the 302s when `collect`).
#[allow(clippy::too_many_arguments)] // one call per phase; a struct of them would only rename them
async fn send(
    http: &reqwest::Client,
    base: &str,
    links: &Arc<Vec<Link>>,
    plan: Schedule,
    args: &LoadArgs,
    converter: Option<Converter>,
    collect: bool,
    stop: CancellationToken,
) -> anyhow::Result<Phase> {
    let phase = Arc::new(Mutex::new(Phase {
        latency: Some(Latency::new()?),
        ..Phase::default()
    }));
    let next = Arc::new(AtomicU64::new(0));
    // Visitors who may come back: (address, link) of earlier person clicks.
    let returning: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    let start = Instant::now() + LEAD;
    let mut clients = JoinSet::new();
    for _ in 0..args.concurrency {
        let (http, base, links, phase, next, returning, stop, converter) = (
            http.clone(),
            base.to_owned(),
            links.clone(),
            phase.clone(),
            next.clone(),
            returning.clone(),
            stop.clone(),
            converter.clone(),
        );
        let (bot_share, repeat_share) = (args.clicks.bot_share, args.clicks.repeat_share);
        clients.spawn(async move {
            while !stop.is_cancelled() {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(offset) = plan.send_at(i) else { break };
                let due = start + offset;
                let late = Instant::now().saturating_duration_since(due) > Duration::from_millis(2);
                tokio::select! {
                    () = tokio::time::sleep_until(due) => {}
                    () = stop.cancelled() => break,
                }
                let (ip, link, agent, bot) = {
                    let mut rng = rand::rng();
                    let bot = rng.random_bool(bot_share.clamp(0.0, 1.0));
                    let again = !bot && rng.random_bool(repeat_share.clamp(0.0, 1.0));
                    let earlier = if again {
                        let r = lock(&returning);
                        (!r.is_empty()).then(|| r[rng.random_range(0..r.len())].clone())
                    } else {
                        None
                    };
                    let (ip, link) = earlier.unwrap_or_else(|| {
                        (
                            format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
                            rng.random_range(0..links.len()),
                        )
                    });
                    let agent = if bot {
                        CRAWLERS[rng.random_range(0..CRAWLERS.len())]
                    } else {
                        BROWSERS[rng.random_range(0..BROWSERS.len())]
                    };
                    (ip, link, agent, bot)
                };
                let started = if late { due } else { Instant::now() };
                let result = http
                    .get(format!("{base}/c/{}", links[link].code))
                    .header("user-agent", agent)
                    .header("x-forwarded-for", &ip)
                    .send()
                    .await;
                let now = Instant::now();
                let click = {
                    let mut p = lock(&phase);
                    p.sent += 1;
                    p.first.get_or_insert(started);
                    p.last = Some(now);
                    if late {
                        p.late += 1;
                    }
                    match result {
                        Ok(response) if response.status() == reqwest::StatusCode::FOUND => {
                            p.found += 1;
                            if let Some(l) = p.latency.as_mut() {
                                l.record(now - started);
                            }
                            let id = response
                                .headers()
                                .get("location")
                                .and_then(|v| v.to_str().ok())
                                .and_then(url_click_id);
                            if let (Some(id), true) = (&id, collect) {
                                p.click_ids.push((id.clone(), bot));
                            }
                            id
                        }
                        Ok(response) => {
                            *p.other.entry(response.status().as_u16()).or_default() += 1;
                            None
                        }
                        Err(_) => {
                            p.errors += 1;
                            None
                        }
                    }
                };
                if let (Some(id), false) = (click, bot) {
                    let mut r = lock(&returning);
                    if r.len() < 10_000 {
                        r.push((ip, link));
                    }
                    drop(r);
                    if let Some(c) = &converter {
                        c.maybe(id, links[link].advertiser.clone());
                    }
                }
            }
        });
    }
    while clients.join_next().await.is_some() {}
    let mut p = lock(&phase);
    Ok(std::mem::take(&mut *p))
}

/// The click id in a Location's `click_id` parameter.
fn url_click_id(location: &str) -> Option<String> {
    let (_, query) = location.split_once('?')?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("click_id=").map(str::to_owned))
}

/// Watches `tracking-events` (clicks) and `commission-events` (commissions) from now on.
async fn watch(
    pulsar: &PulsarArgs,
    seen: Arc<Mutex<Seen>>,
    changed: Arc<Notify>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let client = messaging::connect(pulsar).await?;
    let mut consumers = Vec::new();
    for topic in ["tracking-events", "commission-events"] {
        let full = pulsar.topic(topic);
        let consumer = messaging::watch(
            &client,
            &full,
            "platform-load-clicks",
            pulsar::consumer::InitialPosition::Latest,
        )
        .await
        .with_context(|| format!("subscribe to {full}"))?;
        consumers.push((topic, consumer));
    }
    Ok(tokio::spawn(async move {
        let _client = client;
        let mut tasks = JoinSet::new();
        for (topic, mut consumer) in consumers {
            let (seen, changed) = (seen.clone(), changed.clone());
            tasks.spawn(async move {
                while let Ok(Some(message)) = consumer.try_next().await {
                    let _ = consumer.ack(&message).await;
                    let payload = &message.payload.data;
                    let mut s = lock(&seen);
                    if topic == "tracking-events" {
                        if let Ok(TrackingEventEnvelope {
                            event: Some(TrackingEvent::ClickRecorded(r)),
                            ..
                        }) = TrackingEventEnvelope::decode(payload.as_slice())
                            && let Some(click) = r.click
                        {
                            *s.clicks.entry(click.id).or_default() += 1;
                        }
                    } else if let Ok(CommissionEvent {
                        event: Some(CommissionCalculated(c)),
                        ..
                    }) = CommissionEvent::decode(payload.as_slice())
                        && let Some(c) = c.commission
                    {
                        s.commissions
                            .entry(c.tracking_event_id)
                            .or_insert_with(Instant::now);
                    }
                    drop(s);
                    changed.notify_waiters();
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }))
}

fn phase_report(target: String, p: &Phase) -> PhaseReport {
    let seconds = match (p.first, p.last) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => 0.0,
    };
    PhaseReport {
        target,
        sent: p.sent,
        achieved_rate: if seconds > 0.0 {
            p.sent as f64 / seconds
        } else {
            0.0
        },
        found_302: p.found,
        other_statuses: p.other.clone(),
        transport_errors: p.errors,
        late_sends: p.late,
        latency: p.latency.as_ref().map(Latency::summary).unwrap_or_else(|| {
            Latency::new().map(|l| l.summary()).unwrap_or(Summary {
                count: 0,
                p50_ms: 0.0,
                p90_ms: 0.0,
                p99_ms: 0.0,
                max_ms: 0.0,
                mean_ms: 0.0,
            })
        }),
    }
}

#[allow(clippy::too_many_arguments)]
fn report(
    schedule: &Schedule,
    links: usize,
    baseline: Option<(SocketAddr, Phase)>,
    edge: Phase,
    args: &LoadArgs,
    seen: &Mutex<Seen>,
    conversions: &Mutex<Conversions>,
    cost: cost::Cost,
) -> ClickReport {
    let baseline =
        baseline.map(|(addr, p)| phase_report(format!("bare 302 handler http://{addr}"), &p));
    let edge_report = phase_report(args.clicks.redirect_url.clone(), &edge);
    let ratio = |f: fn(&Summary) -> f64| {
        baseline.as_ref().and_then(|b| {
            let base = f(&b.latency);
            (base > 0.0).then(|| f(&edge_report.latency) / base)
        })
    };
    let s = lock(seen);
    let c = lock(conversions);
    let ids: HashSet<&String> = edge.click_ids.iter().map(|(id, _)| id).collect();
    let published = ids.iter().filter(|id| s.clicks.contains_key(**id)).count() as u64;
    let twice = ids
        .iter()
        .filter(|id| s.clicks.get(**id).is_some_and(|n| *n > 1))
        .count() as u64;
    let mut commission_latency = Latency::new().ok();
    let mut commissions_missing = 0;
    for (event, acknowledged) in &c.purchases {
        match s.commissions.get(event) {
            Some(at) => {
                if let Some(l) = commission_latency.as_mut() {
                    l.record(at.saturating_duration_since(*acknowledged));
                }
            }
            None => commissions_missing += 1,
        }
    }
    ClickReport {
        schedule: schedule.describe(),
        links,
        ratio_p50: ratio(|s| s.p50_ms),
        ratio_p99: ratio(|s| s.p99_ms),
        baseline,
        edge: edge_report,
        clicks_302: ids.len() as u64,
        clicks_published: published,
        clicks_missing: ids.len() as u64 - published,
        clicks_published_twice: twice,
        person_clicks: edge.click_ids.iter().filter(|(_, bot)| !bot).count() as u64,
        conversions_sent: c.sent,
        conversions_accepted: c.accepted,
        conversions_held: c.held,
        conversions_failed: c.failed.clone(),
        conversion_latency: (c.sent > 0)
            .then(|| c.latency.as_ref().map(Latency::summary))
            .flatten(),
        commissions_missing,
        conversion_to_commission: (!c.purchases.is_empty())
            .then(|| commission_latency.as_ref().map(Latency::summary))
            .flatten(),
        cost,
    }
}

fn text(r: &ClickReport) -> String {
    let mut out = String::new();
    let phase = |out: &mut String, name: &str, p: &PhaseReport| {
        out.push_str(&format!(
            "{name:<9} {}: {} sent ({:.0}/s), {} 302s, other {:?}, errors {}, late {}\n          latency {}\n",
            p.target,
            p.sent,
            p.achieved_rate,
            p.found_302,
            p.other_statuses,
            p.transport_errors,
            p.late_sends,
            summary_line(&p.latency)
        ));
    };
    out.push_str(&format!(
        "clicks    {} over {} links\n",
        r.schedule, r.links
    ));
    if let Some(b) = &r.baseline {
        phase(&mut out, "baseline", b);
    }
    phase(&mut out, "edge", &r.edge);
    if let (Some(p50), Some(p99)) = (r.ratio_p50, r.ratio_p99) {
        out.push_str(&format!(
            "ratio     edge / bare handler: p50 {p50:.2}x, p99 {p99:.2}x\n"
        ));
    }
    if r.clicks_302 > 0 {
        out.push_str(&format!(
            "stored    {} of {} click ids in 302s published as click.recorded.v1 (missing {}, published twice {})\n",
            r.clicks_published, r.clicks_302, r.clicks_missing, r.clicks_published_twice
        ));
    }
    if r.conversions_sent > 0 {
        out.push_str(&format!(
            "convert   {} sent, {} accepted, {} held, failed {:?}; latency {}\n",
            r.conversions_sent,
            r.conversions_accepted,
            r.conversions_held,
            r.conversions_failed,
            r.conversion_latency
                .as_ref()
                .map(summary_line)
                .unwrap_or_default()
        ));
        out.push_str(&format!(
            "commission {} missing; conversion → commission {}\n",
            r.commissions_missing,
            r.conversion_to_commission
                .as_ref()
                .map(summary_line)
                .unwrap_or_default()
        ));
    }
    if !r.cost.per_process.is_empty() {
        let each: Vec<String> = r
            .cost
            .per_process
            .iter()
            .map(|(name, c)| format!("{name} {:.3}", c.cpu_ms_per_purchase))
            .collect();
        out.push_str(&format!(
            "cost      {:.3} CPU-ms per click ({:.0} CPU-ms in all): {}\n",
            r.cost.total_cpu_ms_per_purchase,
            r.cost.total_cpu_ms,
            each.join(", ")
        ));
    }
    out
}
