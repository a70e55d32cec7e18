//! Tracing and metrics of gRPC calls, as tower middleware: every server call gets a span that is
//! the child of the caller's W3C trace context; every client call gets a span whose context (and
//! the correlation id, as baggage) goes out in the request's metadata. Both count calls and time
//! them by method and status.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::codegen::http;
use tonic::transport::Channel;
use tower::{Layer, Service};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::context::CORRELATION_ID;
use crate::telemetry::{extract_headers, inject_headers};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// `service` and `method` of a gRPC path `/pkg.Service/Method`.
fn rpc_parts(path: &str) -> (String, String) {
    let path = path.trim_start_matches('/');
    match path.split_once('/') {
        Some((service, method)) => (service.to_owned(), method.to_owned()),
        None => (path.to_owned(), String::new()),
    }
}

/// The gRPC status of a response whose status came in its headers (errors, trailers-only);
/// OK otherwise (tonic sends the OK status in the trailers).
fn status_of<B>(response: &http::Response<B>) -> &'static str {
    let code = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32);
    crate::errors::code_name(code)
}

fn header<'a, B>(request: &'a http::Request<B>, name: &str) -> &'a str {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy)]
enum Side {
    Server,
    Client,
}

/// Ends a call: its status on the span, one count and one duration by method and status.
fn finish(side: Side, span: &tracing::Span, method: String, code: &str, started: Instant) {
    span.record("rpc.grpc.status_code", code);
    let labels = [("method", method), ("code", code.to_owned())];
    let seconds = started.elapsed().as_secs_f64();
    match side {
        Side::Server => {
            metrics::counter!("grpc_server_requests_total", &labels).increment(1);
            metrics::histogram!("grpc_server_request_duration_seconds", &labels).record(seconds);
        }
        Side::Client => {
            metrics::counter!("grpc_client_requests_total", &labels).increment(1);
            metrics::histogram!("grpc_client_request_duration_seconds", &labels).record(seconds);
        }
    }
}

/// Server middleware: one span and one measurement per call.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerTraceLayer;

impl<S> Layer<S> for ServerTraceLayer {
    type Service = ServerTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTrace { inner }
    }
}

#[derive(Debug, Clone)]
pub struct ServerTrace<S> {
    inner: S,
}

impl<S, B, R> Service<http::Request<B>> for ServerTrace<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let (service, method) = rpc_parts(&path);
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            correlation_id = %header(&request, CORRELATION_ID),
            rpc.grpc.status_code = tracing::field::Empty,
        );
        let _ = span.set_parent(extract_headers(request.headers()));
        // The clone that was made ready serves this call; the fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let started = Instant::now();
        Box::pin(async move {
            let result = inner.call(request).instrument(span.clone()).await;
            let code = result.as_ref().map_or("UNKNOWN", status_of);
            finish(Side::Server, &span, path, code, started);
            result
        })
    }
}

/// A gRPC channel whose calls are traced (a client span, its context and the correlation id
/// sent as metadata) and measured. Reuse one per service: it multiplexes every call.
#[derive(Debug, Clone)]
pub struct TracedChannel {
    inner: Channel,
}

impl TracedChannel {
    pub fn new(inner: Channel) -> Self {
        Self { inner }
    }
}

impl Service<http::Request<tonic::body::Body>> for TracedChannel {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let (service, method) = rpc_parts(&path);
        let span = tracing::info_span!(
            "grpc.client",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        {
            let _entered = span.enter();
            let correlation_id = header(&request, CORRELATION_ID).to_owned();
            let baggage: Vec<(&str, &str)> = if correlation_id.is_empty() {
                Vec::new()
            } else {
                vec![("correlation_id", correlation_id.as_str())]
            };
            inject_headers(request.headers_mut(), &baggage);
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let started = Instant::now();
        Box::pin(async move {
            let result = inner.call(request).instrument(span.clone()).await;
            let code = result.as_ref().map_or("UNAVAILABLE", status_of);
            finish(Side::Client, &span, path, code, started);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            rpc_parts("/affiliate.campaign.v1.CampaignService/CreateCampaign"),
            (
                "affiliate.campaign.v1.CampaignService".to_owned(),
                "CreateCampaign".to_owned()
            )
        );
        assert_eq!(rpc_parts("/odd"), ("odd".to_owned(), String::new()));
    }
}
