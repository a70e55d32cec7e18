//! The BFF: the REST/JSON edge web and mobile clients speak, over the gRPC services.
//!
//! `auth` verifies bearer tokens, `edge` gives every request its ids, caller and limits,
//! `problem` maps errors to problem+json, `dto` holds the REST bodies, `routes` the handlers,
//! `openapi` the document generated from them.

pub mod auth;
pub mod clients;
pub mod config;
pub mod dto;
pub mod edge;
pub mod openapi;
pub mod problem;
pub mod proto_enum;
pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Method, StatusCode, header};
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;

use crate::auth::Verifier;
use crate::clients::Clients;
use crate::config::Config;
use crate::edge::RateLimiter;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub clients: Clients,
    pub verifier: Verifier,
    pub limiter: RateLimiter,
    /// Buckets per client address for requests whose token is refused.
    pub refused: RateLimiter<std::net::IpAddr>,
    /// Buckets per client address for server-to-server postbacks (no token to key them by).
    pub postbacks: RateLimiter<std::net::IpAddr>,
    /// Deadline of each unary gRPC call.
    pub deadline: Duration,
    pub config: Arc<Config>,
    /// The broker's admin API (dead-letter reads).
    pub admin: messaging::admin::Admin,
}

/// The BFF, bound and ready to serve.
pub struct Bff {
    listener: tokio::net::TcpListener,
    router: Router,
    limiter: RateLimiter,
    refused: RateLimiter<std::net::IpAddr>,
    postbacks: RateLimiter<std::net::IpAddr>,
}

impl Bff {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let verifier = Verifier::from_args(&config.auth).await?;
        let clients = Clients::connect_lazy(&config.services)?;
        let limiter = RateLimiter::new(config.edge.rate_per_second, config.edge.rate_burst);
        let refused = RateLimiter::new(config.edge.refused_per_second, config.edge.refused_burst);
        let postbacks =
            RateLimiter::new(config.edge.postback_per_second, config.edge.postback_burst);
        let admin = {
            let a = &config.pulsar_admin;
            messaging::admin::Admin::new(
                &a.pulsar_admin_url,
                a.pulsar_tls_ca_file.as_deref(),
                messaging::admin::Token::from_parts(None, a.pulsar_token_file.as_deref()),
            )?
            .with_timeout(config.services.deadline)
        };
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("bind {}", config.listen))?;
        let state = AppState {
            clients,
            verifier,
            limiter: limiter.clone(),
            refused: refused.clone(),
            postbacks: postbacks.clone(),
            deadline: config.services.deadline,
            config: Arc::new(config),
            admin,
        };
        Ok(Self {
            router: router(state)?,
            listener,
            limiter,
            refused,
            postbacks,
        })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listener.local_addr().context("read the bound address")
    }

    /// Serves until `shutdown`; in-flight requests finish (streams are cut).
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let (limiter, refused, postbacks) = (
            self.limiter.clone(),
            self.refused.clone(),
            self.postbacks.clone(),
        );
        let sweeper_stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        limiter.forget_idle();
                        refused.forget_idle();
                        postbacks.forget_idle();
                    }
                    () = sweeper_stop.cancelled() => break,
                }
            }
        });
        axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("serve HTTP")
    }
}

/// The whole HTTP surface: the API, health, the OpenAPI document and the docs page, behind the
/// edge layers (ids and problem+json outermost, then CORS, timeout and body limit).
pub fn router(state: AppState) -> anyhow::Result<Router> {
    let edge = &state.config.edge;
    let cors = cors(&edge.cors_origins)?;
    let timeout = TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, edge.request_timeout);
    let body_limit = DefaultBodyLimit::max(edge.max_body_bytes);
    let (api, document) = openapi::api();
    let mut app = api
        .merge(openapi::docs(document))
        .with_state(state)
        .layer(body_limit)
        .layer(timeout);
    if let Some(cors) = cors {
        app = app.layer(cors);
    }
    Ok(app.layer(axum::middleware::from_fn(edge::ids_and_problems)))
}

fn cors(origins: &[String]) -> anyhow::Result<Option<CorsLayer>> {
    let origins: Vec<&str> = origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .collect();
    if origins.is_empty() {
        return Ok(None);
    }
    let allow_origin = if origins.contains(&"*") {
        AllowOrigin::any()
    } else {
        let values = origins
            .iter()
            .map(|o| {
                o.parse()
                    .with_context(|| format!("CORS origin `{o}` is not a valid header value"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        AllowOrigin::list(values)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("last-event-id"),
                edge::REQUEST_ID,
                edge::CORRELATION_ID,
            ])
            .expose_headers([edge::REQUEST_ID, edge::CORRELATION_ID, header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    ))
}
