//! `--webhooks N`: partners' servers in the load. N endpoints per creator on a receiver in this
//! process (commission.calculated.v1 only), registered before the first purchase; the receiver
//! answers 204 at once, counts each `webhook-id` once per endpoint, and measures each delivery
//! from the event's time (the body's `timestamp`) to its arrival. After the drain it waits for
//! every commission's messages, then deletes the endpoints.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use anyhow::Context as _;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use affiliate_proto::webhook::webhook_service_client::WebhookServiceClient;
use affiliate_proto::webhook::{CreateEndpointRequest, DeleteEndpointRequest};
use tonic::transport::Channel;

use super::histogram::Latency;
use super::report::LatencyReport;

/// The event type the load's endpoints receive: one per commission.
const EVENT_TYPE: &str = "commission.calculated.v1";

struct Seen {
    /// (endpoint path, webhook-id) pairs received.
    unique: HashSet<(String, String)>,
    requests: u64,
    latency: Latency,
    last: Option<Instant>,
}

/// The load's endpoints and their receiver.
pub struct Hooks {
    client: WebhookServiceClient<Channel>,
    /// (owner, endpoint id)
    endpoints: Vec<(String, String)>,
    seen: Arc<Mutex<Seen>>,
    server: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
}

/// What the endpoints received.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookReport {
    pub endpoints: usize,
    /// Commissions calculated × endpoints per creator.
    pub expected: u64,
    /// Distinct (endpoint, message) pairs received.
    pub delivered: u64,
    /// Requests beyond the first of a message to an endpoint (a retry after a crash, say).
    pub repeated: u64,
    /// From the event's time to the delivery's arrival.
    pub latency: LatencyReport,
    /// Seconds from the last commission to the last delivery.
    pub lag_seconds: f64,
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hooks {
    /// Starts the receiver and registers `per_creator` endpoints for each creator.
    pub async fn start(url: &str, creators: &[String], per_creator: u32) -> anyhow::Result<Self> {
        let seen = Arc::new(Mutex::new(Seen {
            unique: HashSet::new(),
            requests: 0,
            latency: Latency::new()?,
            last: None,
        }));
        let state = seen.clone();
        let app = axum::Router::new().route(
            "/{creator}/{n}",
            axum::routing::post(
                move |axum::extract::Path((creator, n)): axum::extract::Path<(String, u32)>,
                      headers: axum::http::HeaderMap,
                      body: String| {
                    let state = state.clone();
                    async move {
                        let at = chrono::Utc::now();
                        let id = headers
                            .get("webhook-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let sent = serde_json::from_str::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|v| v["timestamp"].as_str().map(str::to_owned))
                            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok());
                        let mut seen = lock(&state);
                        seen.requests += 1;
                        seen.last = Some(Instant::now());
                        if seen.unique.insert((format!("{creator}/{n}"), id))
                            && let Some(sent) = sent
                        {
                            let took = (at - sent.with_timezone(&chrono::Utc))
                                .to_std()
                                .unwrap_or_default();
                            seen.latency.record(took);
                        }
                        axum::http::StatusCode::NO_CONTENT
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the webhook receiver")?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let token = stop.clone();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        });
        let mut client =
            WebhookServiceClient::new(super::setup::channel("webhook", url, true).await?);
        let mut endpoints = Vec::new();
        for creator in creators {
            for n in 0..per_creator {
                let created = client
                    .create_endpoint(CreateEndpointRequest {
                        owner_id: creator.clone(),
                        url: format!("http://{addr}/{creator}/{n}"),
                        description: "platform load".into(),
                        event_types: vec![EVENT_TYPE.into()],
                        rate_limit_per_second: 0,
                    })
                    .await
                    .map_err(|s| {
                        anyhow::anyhow!(
                            "register a webhook endpoint: {} {} (does the webhook service allow {addr}? WEBHOOK_ALLOW_NETWORKS, WEBHOOK_ALLOW_HTTP)",
                            s.code(),
                            s.message()
                        )
                    })?
                    .into_inner();
                if let Some(e) = created.endpoint {
                    endpoints.push((creator.clone(), e.id));
                }
            }
        }
        Ok(Self {
            client,
            endpoints,
            seen,
            server,
            stop,
        })
    }

    /// Waits (at most `timeout`) until `commissions` × endpoints per creator messages arrived,
    /// then deletes the endpoints and reports.
    pub async fn finish(
        mut self,
        commissions: u64,
        last_commission: Option<Instant>,
        per_creator: u32,
        timeout: Duration,
        stop: &CancellationToken,
    ) -> WebhookReport {
        let expected = commissions * u64::from(per_creator);
        let deadline = Instant::now() + timeout;
        while (lock(&self.seen).unique.len() as u64) < expected
            && Instant::now() < deadline
            && !stop.is_cancelled()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for (owner, id) in &self.endpoints {
            let _ = self
                .client
                .delete_endpoint(DeleteEndpointRequest {
                    owner_id: owner.clone(),
                    endpoint_id: id.clone(),
                })
                .await;
        }
        self.stop.cancel();
        let _ = (&mut self.server).await;
        let seen = lock(&self.seen);
        let delivered = seen.unique.len() as u64;
        let lag_seconds = match (seen.last, last_commission) {
            (Some(last), Some(commission)) => {
                last.saturating_duration_since(commission).as_secs_f64()
            }
            _ => 0.0,
        };
        WebhookReport {
            endpoints: self.endpoints.len(),
            expected,
            delivered,
            repeated: seen.requests.saturating_sub(delivered),
            latency: LatencyReport::from(&seen.latency),
            lag_seconds,
        }
    }
}
