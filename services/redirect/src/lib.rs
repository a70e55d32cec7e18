//! The redirect edge: the one part of the platform that answers the whole internet. `GET
//! /c/{code}` (and `HEAD`) answers `302` to the link's destination with a fresh click id in the
//! campaign's query parameter, after the click is stored (so every `302` that left names a
//! stored click; the rest of the platform hears of it through tracking's outbox). Links come
//! from an in-memory copy ([`links`]); clicks are written in sets ([`clicks`]); who clicked is
//! judged in [`visitor`].
//!
//! What it answers: `302` for an active link; for a disabled link or a campaign that is not
//! active, `302` to the campaign's fallback URL or a plain page of ours (`200`), and no click;
//! `404` for an unknown or malformed code (nothing written); `414` for an over-long request
//! target; `429` for a client over its rate; `503` when the click could not be stored (nothing
//! was promised).

pub mod clicks;
pub mod links;
pub mod visitor;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;
use secrecy::{ExposeSecret as _, SecretString};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use service_runtime::config::{DatabaseArgs, LogArgs, parse_duration};
use service_runtime::group_commit::{GroupCommit, Tuning};
use tracking_service::domain::CampaignStatus;
use tracking_service::domain::links::{click_destination, is_code, web_url};

use crate::clicks::{ClickWriter, NewClick};
use crate::links::Links;

/// Longest request target (path and query) answered, in bytes.
pub const MAX_TARGET: usize = 2048;

/// The redirect edge's settings.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "redirect",
    about = "The redirect edge: tracking links' GET /c/{code}"
)]
pub struct Config {
    /// Where to listen for HTTP, e.g. 127.0.0.1:8090.
    #[arg(long, env = "REDIRECT_LISTEN", default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// tracking's database (the edge reads its links and writes its clicks there).
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub log: LogArgs,
    /// The secret salt of the visitors' IP hashes (at least 16 bytes). Keep it stable: a new salt
    /// makes every returning visitor a new one for the duplicate rule.
    #[arg(long = "ip-hash-salt", env = "CLICK_IP_SALT", hide_env_values = true)]
    pub ip_hash_salt: SecretString,
    /// A visitor's second click on a link within this is a duplicate, e.g. 1h.
    #[arg(long = "duplicate-window", env = "DUPLICATE_WINDOW", default_value = "1h", value_parser = parse_duration)]
    pub duplicate_window: Duration,
    /// Networks whose clicks are bots' (CIDR, comma-separated), e.g. a crawler's ranges.
    #[arg(long = "bot-networks", env = "BOT_NETWORKS", value_delimiter = ',')]
    pub bot_networks: Vec<IpNet>,
    /// Proxies (CIDR, comma-separated) whose X-Forwarded-For is believed; nobody's by default.
    #[arg(
        long = "trusted-proxies",
        env = "TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<IpNet>,
    /// Requests per second one client address may make (bursts of twice that); 0 turns it off.
    #[arg(long = "rate-limit", env = "REDIRECT_RATE_LIMIT", default_value_t = 20)]
    pub rate_limit: u32,
    /// How many click writers run at once, and the most clicks one set takes.
    #[arg(long = "click-writers", env = "CLICK_WRITERS", default_value_t = 2)]
    pub click_writers: usize,
    #[arg(long = "click-set", env = "CLICK_SET", default_value_t = 256)]
    pub click_set: usize,
    /// How long a stop waits for the requests in flight, e.g. 10s.
    #[arg(long = "shutdown-grace", env = "SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

struct Shared {
    links: Links,
    clicks: GroupCommit<ClickWriter>,
    salt: Vec<u8>,
    bot_networks: Vec<IpNet>,
    trusted_proxies: Vec<IpNet>,
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

/// A built edge: bound, links loaded.
pub struct Edge {
    listener: TcpListener,
    shared: Arc<Shared>,
    grace: Duration,
}

impl Edge {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let salt = config.ip_hash_salt.expose_secret().as_bytes().to_vec();
        anyhow::ensure!(salt.len() >= 16, "CLICK_IP_SALT must be at least 16 bytes");
        let pool = service_runtime::db::connect(&config.database).await?;
        let links = Links::load(pool.clone()).await.context(
            "load the links from tracking's database (has tracking-service run its migrations?)",
        )?;
        let clicks = GroupCommit::start(
            ClickWriter {
                duplicate_window: config.duplicate_window,
            },
            pool,
            Tuning {
                writers: config.click_writers,
                max_set: config.click_set,
            },
        );
        let limiter = NonZeroU32::new(config.rate_limit).map(|rate| {
            let burst = rate.saturating_mul(NonZeroU32::MIN.saturating_add(1));
            DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listen on {}", config.listen))?;
        Ok(Self {
            listener,
            shared: Arc::new(Shared {
                links,
                clicks,
                salt,
                bot_networks: config.bot_networks,
                trusted_proxies: config.trusted_proxies,
                limiter,
            }),
            grace: config.shutdown_grace,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves until `shutdown`; the requests in flight get the grace to finish.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut parts = service_runtime::app::Parts::new(shutdown.clone(), self.grace);
        parts.spawn(
            "link changes",
            self.shared.links.clone().follow(shutdown.clone()),
        );
        let limiter_shared = self.shared.clone();
        let cleaner = shutdown.clone();
        parts.spawn("rate limiter upkeep", async move {
            loop {
                tokio::select! {
                    () = cleaner.cancelled() => return Ok(()),
                    () = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
                if let Some(l) = &limiter_shared.limiter {
                    l.retain_recent();
                }
            }
        });
        let app = router(self.shared.clone());
        let listener = self.listener;
        let stop = shutdown.clone();
        parts.spawn("http", async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
            .context("serve HTTP")
        });
        parts.supervise().await
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/c/{code}", get(redirect))
        .route("/healthz", get(health))
        .fallback(not_found)
        .with_state(shared)
}

async fn health(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        StatusCode::OK,
        format!("ok: {} links\n", shared.links.len()),
    )
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        text,
    )
        .into_response()
}

async fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "no such link\n")
}

/// What a visitor of a link that does not send visitors on sees: the campaign's fallback, or a
/// plain page.
fn inactive(fallback: Option<&str>) -> Response {
    if let Some(url) = fallback.and_then(web_url) {
        return found(url.as_str());
    }
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        "<!doctype html><title>Link inactive</title><p>This offer is no longer available.</p>\n",
    )
        .into_response()
}

fn found(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => (
            StatusCode::FOUND,
            [
                (header::LOCATION, value),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer-when-downgrade"),
                ),
                (
                    header::HeaderName::from_static("x-robots-tag"),
                    HeaderValue::from_static("noindex"),
                ),
            ],
        )
            .into_response(),
        Err(_) => plain(StatusCode::NOT_FOUND, "no such link\n"),
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

async fn redirect(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> Response {
    if uri.path_and_query().map_or(0, |p| p.as_str().len()) > MAX_TARGET {
        return plain(StatusCode::URI_TOO_LONG, "request target too long\n");
    }
    if !is_code(&code) {
        return not_found().await;
    }
    let ip = visitor::client_ip(
        peer.ip(),
        headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()),
        &shared.trusted_proxies,
    );
    if let Some(limiter) = &shared.limiter
        && limiter.check_key(&ip).is_err()
    {
        return plain(StatusCode::TOO_MANY_REQUESTS, "too many requests\n");
    }
    let found_link = match shared.links.get(&code) {
        Some(found) => Some(found),
        // Perhaps created a moment ago, its notification still on its way.
        None => match shared.links.lookup_missing(&code).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "reading a link failed");
                return plain(StatusCode::SERVICE_UNAVAILABLE, "try again shortly\n");
            }
        },
    };
    let Some((link, campaign)) = found_link else {
        return not_found().await;
    };
    let Some(campaign) = campaign else {
        return inactive(None);
    };
    let fallback = campaign
        .settings
        .as_ref()
        .and_then(|s| s.fallback_url.as_deref());
    if link.disabled || campaign.status != CampaignStatus::Active {
        return inactive(fallback);
    }
    let Some(settings) = &campaign.settings else {
        return inactive(None);
    };
    let click_id = Uuid::now_v7();
    let Some(destination) = click_destination(
        link.deep_link.as_deref(),
        settings,
        &click_id.simple().to_string(),
    ) else {
        return inactive(fallback);
    };
    let user_agent = header_text(&headers, header::USER_AGENT);
    let bot = visitor::bot(method == Method::HEAD, user_agent, ip, &shared.bot_networks);
    let click = NewClick {
        id: click_id,
        link_id: link.id,
        campaign_id: link.campaign_id,
        creator_id: link.creator_id,
        sub_ids: link.sub_ids.clone(),
        clicked_at: chrono::Utc::now(),
        ip_hash: visitor::ip_hash(&shared.salt, ip),
        user_agent: visitor::truncate(user_agent, visitor::MAX_USER_AGENT),
        referrer: visitor::truncate(
            header_text(&headers, header::REFERER),
            visitor::MAX_REFERRER,
        ),
        bot_reason: bot.map(visitor::Bot::as_str),
        traceparent: None,
    };
    match shared.clicks.submit(click, None).await {
        Ok(verdict) => {
            metrics::counter!("redirect_clicks_total", "verdict" => verdict.as_str_name())
                .increment(1);
            found(destination.as_str())
        }
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "storing a click failed: answered 503"
            );
            plain(StatusCode::SERVICE_UNAVAILABLE, "try again shortly\n")
        }
    }
}
