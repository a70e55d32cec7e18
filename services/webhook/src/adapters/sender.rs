//! The HTTP side of a delivery: one POST of a signed message, under the time-out, redirects not
//! followed, no proxy, and every address the destination resolves to checked against the
//! destination policy at connect time (an IP literal before sending). The answer is reduced to
//! what the delivery log keeps: status, latency, the first KiB of the body, `Retry-After`, or why
//! there was no answer. URLs are never logged or recorded (a partner's URL may carry a token).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use crate::Settings;
use crate::domain::destination::{Host, Policy};
use crate::domain::schedule;

/// The first bytes of an answer the delivery log keeps.
pub const RESPONSE_KEPT: usize = 1024;

/// One message to one endpoint.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub url: &'a str,
    pub webhook_id: &'a str,
    pub timestamp: i64,
    pub signature: &'a str,
    pub body: &'a str,
}

/// What came back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status; 0 without an answer.
    pub status: u16,
    pub latency: Duration,
    pub response: String,
    /// Why there was no answer.
    pub error: String,
    pub retry_after: Option<Duration>,
}

impl Answer {
    pub fn success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Resolves with the system resolver, then refuses the host if any address is not allowed.
#[derive(Debug)]
struct Guarded(Policy);

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ips: Vec<_> = addrs.iter().map(SocketAddr::ip).collect();
            policy.check_addresses(&host, &ips)?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The dispatcher's HTTP client.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    policy: Policy,
}

impl Sender {
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        service_runtime::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(settings.endpoint_concurrency)
            .user_agent(concat!(
                "affiliate-platform-webhooks/",
                env!("CARGO_PKG_VERSION")
            ))
            .dns_resolver(Arc::new(Guarded(settings.policy.clone())))
            .build()?;
        Ok(Self {
            client,
            policy: settings.policy.clone(),
        })
    }

    /// Checks a URL's form and, for an IP literal, its address.
    pub fn check(&self, url: &str) -> Result<(), String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        self.policy
            .check_url(&parsed)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Resolves a registered URL's host now and checks every address (registration).
    pub async fn check_resolved(&self, url: &str) -> Result<(), String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        let (host, port) = self.policy.check_url(&parsed).map_err(|e| e.to_string())?;
        if let Host::Name(name) = host {
            let addrs: Vec<_> = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::net::lookup_host((name.as_str(), port)),
            )
            .await
            .map_err(|_| format!("the host {name} did not resolve within 5 s"))?
            .map_err(|e| format!("the host {name} does not resolve: {e}"))?
            .map(|a| a.ip())
            .collect();
            self.policy
                .check_addresses(&name, &addrs)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Sends one message; never fails, the answer says what happened.
    pub async fn send(&self, out: &Outgoing<'_>) -> Answer {
        let started = Instant::now();
        if let Err(e) = self.check(out.url) {
            return Answer {
                error: format!("destination refused: {e}"),
                latency: started.elapsed(),
                ..Answer::default()
            };
        }
        let request = self
            .client
            .post(out.url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header("webhook-id", out.webhook_id)
            .header("webhook-timestamp", out.timestamp.to_string())
            .header("webhook-signature", out.signature)
            .body(out.body.to_owned());
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                return Answer {
                    error: describe(&e),
                    latency: started.elapsed(),
                    ..Answer::default()
                };
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| schedule::retry_after(v, SystemTime::now()));
        let mut kept = Vec::new();
        let mut error = String::new();
        while kept.len() < RESPONSE_KEPT {
            match response.chunk().await {
                Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    error = describe(&e);
                    break;
                }
            }
        }
        kept.truncate(RESPONSE_KEPT);
        Answer {
            status,
            latency: started.elapsed(),
            response: String::from_utf8_lossy(&kept).into_owned(),
            error,
            retry_after,
        }
    }
}

/// An error and its causes, without the URL.
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "the answer broke off"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
