//! What every request goes through at the edge: request and correlation ids, the caller's
//! identity and rate limit, extractors whose rejections are problem+json, and a last pass that
//! turns any other error response into problem+json too.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Principal, Role};
use crate::problem::{PROBLEM_JSON, Problem};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// The longest id or key accepted in a header (the services' limit too).
const MAX_ID_LEN: usize = service_runtime::context::MAX_KEY_LEN;

/// The ids of one request, accepted from the client or generated, echoed in the response.
#[derive(Debug, Clone)]
pub struct RequestIds {
    pub request_id: String,
    pub correlation_id: String,
}

fn valid_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?.trim();
    (!text.is_empty() && text.len() <= MAX_ID_LEN && text.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| text.to_owned())
}

fn id_or_new(headers: &HeaderMap, name: &HeaderName) -> String {
    headers
        .get(name)
        .and_then(valid_id)
        .unwrap_or_else(|| Uuid::new_v4().to_string())
}

/// Middleware: assigns the request's ids, and makes every error response problem+json.
pub async fn ids_and_problems(mut request: Request, next: Next) -> Response {
    let request_id = id_or_new(request.headers(), &REQUEST_ID);
    let correlation_id = id_or_new(request.headers(), &CORRELATION_ID);
    let ids = RequestIds {
        request_id,
        correlation_id,
    };
    // The route's template (`/api/v1/campaigns/{campaignId}`), not the path: one span name and
    // one metric series per route.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let span = tracing::info_span!(
        "http.server",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        url.path = %request.uri().path(),
        http.response.status_code = tracing::field::Empty,
        request_id = %ids.request_id,
        correlation_id = %ids.correlation_id,
        user_id = tracing::field::Empty,
    );
    let _ = span.set_parent(service_runtime::telemetry::extract_headers(
        request.headers(),
    ));
    request.extensions_mut().insert(ids.clone());
    let started = std::time::Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let mut response = problem_for_plain_errors(response);
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    span.in_scope(|| {
        tracing::info!(
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request handled"
        );
        // Clients look their request's trace up by this header.
        if let Some((traceparent, _)) = service_runtime::telemetry::current_trace_headers()
            && let Ok(value) = HeaderValue::from_str(&traceparent)
        {
            response.headers_mut().insert("traceparent", value);
        }
    });
    let labels = [
        ("method", method.to_string()),
        ("route", route),
        ("status", status.to_string()),
    ];
    metrics::counter!("http_server_requests_total", &labels).increment(1);
    metrics::histogram!("http_server_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    let headers = response.headers_mut();
    for (name, value) in [
        (REQUEST_ID, ids.request_id),
        (CORRELATION_ID, ids.correlation_id),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

/// Error responses not made by the BFF's handlers (unknown route, wrong method, timeout, body
/// limit) get a problem+json body too; response headers such as `Allow` are kept.
fn problem_for_plain_errors(response: Response) -> Response {
    let status = response.status();
    // Handlers answer errors in JSON (problem+json, or a health report); what the framework
    // makes is plain text or empty.
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON) || v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let detail = match status.as_u16() {
        404 => "no such resource".to_owned(),
        405 => "method not allowed on this resource".to_owned(),
        408 | 504 => "the request took too long".to_owned(),
        413 => "the request body is too large".to_owned(),
        s if s >= 500 => "the request could not be completed; retry later".to_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let kept: Vec<(HeaderName, HeaderValue)> = response
        .headers()
        .iter()
        .filter(|(name, _)| *name == header::ALLOW || *name == header::RETRY_AFTER)
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let mut replaced = Problem::new(status, detail).into_response();
    replaced.headers_mut().extend(kept);
    replaced
}

/// Rate limiting with a token bucket per key: per user id for authenticated callers, per client
/// IP address for requests whose token is refused (token guessing).
#[derive(Clone)]
pub struct RateLimiter<K: Clone + Eq + std::hash::Hash = Uuid> {
    limiter: Arc<DefaultKeyedRateLimiter<K>>,
}

impl<K: Clone + Eq + std::hash::Hash> RateLimiter<K> {
    pub fn new(per_second: u32, burst: u32) -> Self {
        let per_second =
            std::num::NonZeroU32::new(per_second.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        let burst = std::num::NonZeroU32::new(burst.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Self {
            limiter: Arc::new(DefaultKeyedRateLimiter::keyed(quota)),
        }
    }

    /// `Err(seconds to wait)` when `key` is over its limit.
    pub fn check(&self, key: K) -> Result<(), u64> {
        self.limiter.check_key(&key).map_err(|not_until| {
            let wait: Duration = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }

    /// Forgets users idle long enough to have a full bucket again (bounds memory).
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// An authenticated, rate-limited caller, with what its request carries for the services.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub ids: RequestIds,
    pub idempotency_key: Option<String>,
    deadline: Duration,
}

impl Caller {
    /// A caller authenticated otherwise than by a bearer token (a postback key's advertiser).
    pub fn authenticated(principal: Principal, ids: RequestIds, deadline: Duration) -> Self {
        Self {
            principal,
            ids,
            idempotency_key: None,
            deadline,
        }
    }

    pub fn id(&self) -> Uuid {
        self.principal.id
    }

    pub fn role(&self) -> Role {
        self.principal.role
    }

    pub fn is_admin(&self) -> bool {
        self.principal.is_admin()
    }

    /// Refuses the call unless the caller has one of `roles` (admins always may).
    pub fn require(&self, roles: &[Role]) -> Result<(), Problem> {
        if self.is_admin() || roles.contains(&self.role()) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "the {} role may not do this",
                self.role().as_str()
            )))
        }
    }

    /// Refuses the call unless the caller is `user` (or an admin).
    pub fn require_self(&self, user: Uuid) -> Result<(), Problem> {
        if self.is_admin() || self.id() == user {
            Ok(())
        } else {
            Err(Problem::forbidden("you may act only on your own resources"))
        }
    }

    /// A gRPC request carrying the caller's context: user id and role, request and correlation
    /// ids, the idempotency key, and the deadline.
    pub fn grpc<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = self.grpc_streaming(message);
        request.set_timeout(self.deadline);
        request
    }

    /// Like [`Caller::grpc`] without a deadline, for streams that last as long as the client.
    pub fn grpc_streaming<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        let mut put = |key: &'static str, value: &str| {
            if let Ok(value) = value.parse() {
                metadata.insert(key, value);
            }
        };
        put("x-user-id", &self.principal.id.to_string());
        put("x-user-role", self.principal.role.as_str());
        put("x-request-id", &self.ids.request_id);
        put(
            service_runtime::context::CORRELATION_ID,
            &self.ids.correlation_id,
        );
        if let Some(key) = &self.idempotency_key {
            put(service_runtime::context::IDEMPOTENCY_KEY, key);
        }
        request
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let verified = match bearer(&parts.headers) {
            Some(token) => state.verifier.verify(token).await,
            None => Err(crate::auth::AuthError::Missing),
        };
        let principal = match verified {
            Ok(principal) => principal,
            Err(error) => {
                // Refused tokens count against the client's address: guessing is rate limited.
                let ip = parts
                    .extensions
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                    .map(|c| c.0.ip());
                if let Some(ip) = ip {
                    state
                        .refused
                        .check(ip)
                        .map_err(Problem::too_many_requests)?;
                }
                return Err(error.into());
            }
        };
        tracing::Span::current().record("user_id", tracing::field::display(principal.id));
        state
            .limiter
            .check(principal.id)
            .map_err(Problem::too_many_requests)?;
        let idempotency_key = match parts.headers.get(&IDEMPOTENCY_KEY) {
            None => None,
            Some(value) => Some(valid_id(value).ok_or_else(|| {
                Problem::invalid_field(
                    "Idempotency-Key",
                    format!("must be 1 to {MAX_ID_LEN} printable ASCII characters without spaces"),
                )
            })?),
        };
        let ids = parts
            .extensions
            .get::<RequestIds>()
            .cloned()
            .unwrap_or_else(|| RequestIds {
                request_id: Uuid::new_v4().to_string(),
                correlation_id: Uuid::new_v4().to_string(),
            });
        Ok(Self {
            principal,
            ids,
            idempotency_key,
            deadline: state.deadline,
        })
    }
}

/// A JSON body; rejections are problem+json (415 without a JSON content type, 413 when too
/// large, 400 when malformed or with unknown or mistyped fields).
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(Problem))]
pub struct ApiJson<T>(pub T);

/// Query parameters; a malformed query is a 400 problem.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Problem))]
pub struct ApiQuery<T>(pub T);

/// Path parameters; a malformed path is a 400 problem.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Problem))]
pub struct ApiPath<T>(pub T);

impl From<JsonRejection> for Problem {
    fn from(rejection: JsonRejection) -> Self {
        let status = match &rejection {
            JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => {
                axum::http::StatusCode::BAD_REQUEST
            }
            other => other.status(),
        };
        if status == axum::http::StatusCode::BAD_REQUEST {
            Problem::bad_request(rejection.body_text())
        } else {
            Problem::new(status, rejection.body_text())
        }
    }
}

impl From<QueryRejection> for Problem {
    fn from(rejection: QueryRejection) -> Self {
        Problem::bad_request(rejection.body_text())
    }
}

impl From<PathRejection> for Problem {
    fn from(rejection: PathRejection) -> Self {
        Problem::bad_request(rejection.body_text())
    }
}

/// Parses a UUID the client sent; a 400 naming the field otherwise.
pub fn uuid_field(field: &str, value: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(value).map_err(|_| Problem::invalid_field(field, "must be a UUID"))
}

/// The response of a gRPC call, or its problem.
/// The resource a service's answer must carry, in its REST shape; an answer without it is the
/// service's fault (500), never the client's.
pub fn carried<T: From<P>, P>(resource: Option<P>) -> Result<T, Problem> {
    resource.map(T::from).ok_or_else(Problem::internal)
}

pub trait Answer<T> {
    fn or_problem(self, service: &str) -> Result<T, Problem>;
}

impl<T> Answer<T> for Result<tonic::Response<T>, tonic::Status> {
    fn or_problem(self, service: &str) -> Result<T, Problem> {
        self.map(tonic::Response::into_inner)
            .map_err(|status| Problem::from_status(&status, service))
    }
}
