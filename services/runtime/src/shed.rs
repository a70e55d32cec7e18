//! Load shedding at the gRPC edge: at most `limit` API calls in flight; one more is answered
//! UNAVAILABLE at once, before it touches the database. And a time limit: a call that has not
//! been answered after `call_timeout` is answered UNAVAILABLE (its work is dropped: a transaction
//! rolls back with its connection), so a database that stops answering (frozen, not down: its
//! connections stay open) turns into UNAVAILABLE the client retries with its idempotency key,
//! not into calls hanging until the client's own deadline.
//!
//! Without a bound, an outage turns into a queue: every call waits for a pooled connection for
//! the whole acquire timeout, clients retry, and the waiters pile up by thousands. When the
//! database comes back, the call at the head of the queue gets its turn with almost none of its
//! acquire timeout left, so the connection it opens is cancelled before it is established (sqlx
//! connects inside the acquirer's deadline), and the pool stays nearly empty while the database
//! is up. Measured with `tests/tests/faults.rs` (PostgreSQL crashed for 3 s under 200 purchases/s,
//! clients with no bound on their calls in flight, debug build): without this layer the tracking
//! service answered UNAVAILABLE for 150 s after PostgreSQL was back, with 2 of its 10 connections
//! open (pg_stat_activity); with it, the 4,000 purchases were all acknowledged 35-73 s after the
//! first one instead of 175 s.
//!
//! Health, status and reflection are never shed: they must answer most when the server is busy.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Semaphore;
use tonic::codegen::http;
use tower::{Layer, Service};

/// Paths that are never shed.
const EXEMPT: [&str; 4] = [
    "/grpc.health.v1.Health/",
    "/affiliate.common.v1.StatusService/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Bounds the API calls in flight of one server.
#[derive(Debug, Clone)]
pub struct ShedLayer {
    permits: Arc<Semaphore>,
    limit: usize,
    call_timeout: Duration,
}

impl ShedLayer {
    pub fn new(limit: usize, call_timeout: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            call_timeout,
        }
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Shed {
            inner,
            permits: self.permits.clone(),
            limit: self.limit,
            call_timeout: self.call_timeout,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Shed<S> {
    inner: S,
    permits: Arc<Semaphore>,
    limit: usize,
    call_timeout: Duration,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, R> Service<http::Request<B>> for Shed<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The clone that was made ready serves this call; the fresh clone waits for the next.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let path = request.uri().path();
        if EXEMPT.iter().any(|prefix| path.starts_with(prefix)) {
            return Box::pin(inner.call(request));
        }
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let limit = self.call_timeout;
                Box::pin(async move {
                    let response = tokio::time::timeout(limit, inner.call(request)).await;
                    drop(permit);
                    match response {
                        Ok(response) => response,
                        Err(_) => {
                            metrics::counter!("grpc_server_call_timeouts_total").increment(1);
                            let status = tonic::Status::unavailable(format!(
                                "no answer within {limit:?} (a dependency is slow or not \
                                 answering); retry with the same idempotency key"
                            ));
                            Ok(status.into_http())
                        }
                    }
                })
            }
            Err(_) => {
                metrics::counter!("grpc_server_shed_total").increment(1);
                let status = tonic::Status::unavailable(format!(
                    "server busy: {} calls in flight; retry with backoff",
                    self.limit
                ));
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}
