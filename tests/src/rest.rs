//! The BFF as a real process in front of a test's [`Platform`], and a small REST client for it:
//! tokens minted with the test secret, JSON in and out, status and headers kept for checks.

#![allow(clippy::expect_used)]

use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;
use secrecy::SecretString;
use serde_json::Value;
use uuid::Uuid;

use bff::auth::{Claims, Role, mint_hs256};

use crate::platform::Platform;
use crate::process::{Process, binary};
use crate::{log_dir, pulsar_admin_url, pulsar_tenant};

/// The HS256 secret test BFFs verify with (test-only).
pub const SECRET: &str = "test-only-hs256-secret-0123456789abcdef";
pub const ISSUER: &str = "affiliate-platform";
pub const AUDIENCE: &str = "affiliate-bff";

/// A running BFF process.
pub struct Edge {
    pub url: String,
    /// The `/metrics` address, when started with `METRICS_LISTEN`.
    pub metrics: Option<String>,
    pub process: Process,
    client: reqwest::Client,
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body as JSON (`Null` if empty or not JSON).
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status, showing the body otherwise; returns the body.
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        &self.body
    }
}

impl Edge {
    /// Starts `bff serve` against the platform's services, with the test secret and `extra` env
    /// (which overrides the defaults, e.g. rate limits).
    pub fn start(platform: &Platform, test: &str, extra: &[(&str, String)]) -> Self {
        let service = |name: &str| {
            platform.grpc.get(name).map_or_else(
                || "http://127.0.0.1:1".to_owned(),
                |a| format!("http://{a}"),
            )
        };
        let mut env: Vec<(&str, String)> = vec![
            ("BFF_LISTEN", "127.0.0.1:0".into()),
            ("CAMPAIGN_GRPC_URL", service("campaign")),
            ("TRACKING_GRPC_URL", service("tracking")),
            ("COMMISSION_GRPC_URL", service("commission")),
            ("PAYMENT_GRPC_URL", service("payment")),
            ("NOTIFICATION_GRPC_URL", service("notification")),
            ("ANALYTICS_GRPC_URL", service("analytics")),
            ("WEBHOOK_GRPC_URL", service("webhook")),
            ("JWT_HS256_SECRET", SECRET.into()),
            ("PULSAR_ADMIN_URL", pulsar_admin_url()),
            ("PULSAR_TENANT", pulsar_tenant()),
            ("PULSAR_NAMESPACE", platform.namespace.to_string()),
            ("RATE_LIMIT_PER_SECOND", "1000".into()),
            ("RATE_LIMIT_BURST", "1000".into()),
            ("RATE_LIMIT_REFUSED_PER_SECOND", "1000".into()),
            ("RATE_LIMIT_REFUSED_BURST", "1000".into()),
            ("SSE_KEEP_ALIVE", "1s".into()),
        ];
        for (key, value) in extra {
            env.retain(|(k, _)| k != key);
            env.push((key, value.clone()));
        }
        if extra.iter().any(|(k, _)| k.starts_with("JWT_JWKS")) {
            env.retain(|(k, _)| *k != "JWT_HS256_SECRET");
        }
        let name = format!("bff-{}", Uuid::new_v4().simple());
        let mut process = Process::start(
            &name,
            &binary("bff"),
            &["serve".to_owned()],
            &env,
            &log_dir(test),
        );
        let startup = Duration::from_secs(30);
        let metrics = env.iter().any(|(k, _)| *k == "METRICS_LISTEN").then(|| {
            process
                .wait_for_addr("metrics endpoint listening", "addr", startup)
                .to_string()
        });
        let addr = process.wait_for_addr("bff started", "http", startup);
        Self {
            url: format!("http://{addr}"),
            metrics,
            process,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
        }
    }

    /// A valid token for `sub` in `role`, signed with the test secret.
    pub fn token(sub: Uuid, role: Role) -> String {
        let claims = Claims::new(sub, role, ISSUER, AUDIENCE, Duration::from_secs(3600));
        mint_hs256(&claims, &SecretString::from(SECRET)).expect("sign")
    }

    /// Sends a request; `body`, if any, as JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        self.send(method, path, token, body, &[]).await
    }

    /// Sends a request with extra headers.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("the BFF answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        Reply {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }

    /// Only the status of a request (the body is not read: for streams).
    pub async fn status(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> u16 {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request
            .send()
            .await
            .expect("the BFF answers")
            .status()
            .as_u16()
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// Opens a Server-Sent-Events stream; the response's body is read with [`SseReader`].
    pub async fn stream(
        &self,
        path: &str,
        token: &str,
        last_event_id: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .get(format!("{}{path}", self.url))
            .bearer_auth(token)
            .header("accept", "text/event-stream")
            .timeout(Duration::from_secs(600));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        request.send().await.expect("the BFF answers")
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    pub event: String,
    pub id: String,
    pub data: String,
}

/// Reads events off an SSE response body.
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments and keep-alives skipped), or `None` after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent::default();
                for line in block.lines() {
                    if let Some((field, value)) = line.split_once(':') {
                        let value = value.strip_prefix(' ').unwrap_or(value);
                        match field {
                            "event" => event.event = value.to_owned(),
                            "id" => event.id = value.to_owned(),
                            "data" => event.data.push_str(value),
                            _ => {}
                        }
                    }
                }
                if !event.event.is_empty() || !event.data.is_empty() {
                    return Some(event);
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?;
            match chunk {
                Ok(Some(bytes)) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }
}
