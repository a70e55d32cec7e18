//! The gRPC server every service runs: binds first (so the caller knows the address, and tests
//! can use port 0), always serves `grpc.health.v1` and server reflection (v1 and v1alpha, so old
//! and new grpcurl work; error detail types included so grpcurl can print field violations), and shuts down within a bounded grace period.

use std::net::SocketAddr;
use std::time::Duration;

use affiliate_proto::common::status_service_server::{self, StatusService, StatusServiceServer};
use affiliate_proto::common::{GetStatusRequest, GetStatusResponse};
use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::status::StatusBoard;

/// How often health follows the status board.
const HEALTH_REFRESH: Duration = Duration::from_millis(500);

/// `affiliate.common.v1.StatusService`, served from the status board.
struct StatusApi(StatusBoard);

#[tonic::async_trait]
impl StatusService for StatusApi {
    async fn get_status(
        &self,
        _request: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        Ok(Response::new(self.0.snapshot()))
    }
}

/// Sets each name SERVING or NOT_SERVING.
async fn report(reporter: &HealthReporter, statuses: &[(String, bool)]) {
    for (name, serving) in statuses {
        let status = if *serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        reporter.set_service_status(name, status).await;
    }
}

/// Every health name with its status now: the whole server (`""`) and the API's names follow
/// what the API needs (the database); the board's components (the broker, the command door)
/// follow their own state.
fn statuses(board: &StatusBoard, api: &[String]) -> Vec<(String, bool)> {
    let serving = board.healthy();
    api.iter()
        .cloned()
        .chain([String::new()])
        .map(|name| (name, serving))
        .chain(board.components())
        .collect()
}

/// The gRPC door of a command: reads the command's context (idempotency key, correlation id,
/// trace context) from the request's metadata, runs the handler on it and the message, and
/// answers; a handler's error becomes its status through the one mapping
/// (`crate::errors`). The command-topic door runs the same handler (`messaging::door`).
pub async fn command<Req, Resp, E>(
    request: Request<Req>,
    handler: impl AsyncFnOnce(&crate::context::CommandContext, Req) -> Result<Resp, E>,
) -> Result<Response<Resp>, Status>
where
    Status: From<E>,
{
    let ctx = crate::context::CommandContext::from_grpc(&request)?;
    Ok(Response::new(handler(&ctx, request.into_inner()).await?))
}

/// Server reflection that lists what this process serves, and nothing else: the API's
/// `services` (none in `events` mode), health, status and reflection itself (both versions, each
/// resolvable from either). Every message type of the platform stays resolvable, so a listed
/// method's types always are.
fn reflection(services: &[&str]) -> tonic_reflection::server::Builder<'static> {
    use tonic_reflection::pb::{v1, v1alpha};
    let builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(affiliate_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .include_reflection_service(false)
        .with_service_name(tonic_health::pb::health_server::SERVICE_NAME)
        .with_service_name(status_service_server::SERVICE_NAME)
        .with_service_name(v1::server_reflection_server::SERVICE_NAME)
        .with_service_name(v1alpha::server_reflection_server::SERVICE_NAME);
    services
        .iter()
        .fold(builder, |builder, name| builder.with_service_name(*name))
}

/// A bound, not yet serving, gRPC listener.
pub struct GrpcServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    max_in_flight: usize,
    call_timeout: Duration,
}

impl GrpcServer {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind gRPC listener on {addr}"))?;
        let local_addr = listener.local_addr().context("read bound gRPC address")?;
        Ok(Self {
            listener,
            local_addr,
            max_in_flight: 128,
            call_timeout: Duration::from_secs(8),
        })
    }

    /// API calls in flight at most (see [`crate::shed`]); 128 unless set.
    #[must_use]
    pub fn with_max_in_flight(mut self, limit: u32) -> Self {
        self.max_in_flight = limit.max(1) as usize;
        self
    }

    /// How long an API call may take before it is answered UNAVAILABLE (see [`crate::shed`]);
    /// 8 s unless set.
    #[must_use]
    pub fn with_call_timeout(mut self, limit: Duration) -> Self {
        self.call_timeout = limit;
        self
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves `routes` plus health, status and reflection until `shutdown` is cancelled, then
    /// lets in-flight calls finish for at most `grace`. `services` are the API's fully qualified
    /// names, which the health service reports with the empty name (the whole server): SERVING
    /// while what the API needs answers (the database), NOT_SERVING otherwise and at shutdown.
    /// The board's components (the broker, the command door) are reported under their own names.
    pub async fn serve(
        self,
        routes: Routes,
        services: &[&str],
        board: StatusBoard,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let (reporter, health) = tonic_health::server::health_reporter();
        let names: Vec<String> = services.iter().map(|s| (*s).to_owned()).collect();
        let mut current = statuses(&board, &names);
        report(&reporter, &current).await;
        {
            let (reporter, names, board, shutdown) = (
                reporter.clone(),
                names.clone(),
                board.clone(),
                shutdown.clone(),
            );
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(HEALTH_REFRESH) => {}
                    }
                    let now = statuses(&board, &names);
                    let changed: Vec<(String, bool)> = now
                        .iter()
                        .filter(|s| !current.contains(s))
                        .cloned()
                        .collect();
                    for (name, serving) in &changed {
                        tracing::warn!(name = %name, serving, "health changed");
                    }
                    report(&reporter, &changed).await;
                    current = now;
                }
            });
        }
        let reflection_v1 = reflection(services)
            .build_v1()
            .context("build reflection v1 service")?;
        let reflection_v1alpha = reflection(services)
            .build_v1alpha()
            .context("build reflection v1alpha service")?;
        let board_for_signal = board.clone();
        let routes = routes
            .add_service(health)
            .add_service(StatusServiceServer::new(StatusApi(board.clone())))
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);

        let signal = {
            let shutdown = shutdown.clone();
            let board_at_shutdown = board_for_signal;
            async move {
                shutdown.cancelled().await;
                // Tell load balancers and health probes first, then stop accepting.
                let down: Vec<(String, bool)> = statuses(&board_at_shutdown, &names)
                    .into_iter()
                    .map(|(name, _)| (name, false))
                    .collect();
                report(&reporter, &down).await;
            }
        };
        let incoming = TcpIncoming::from(self.listener).with_nodelay(Some(true));
        tracing::info!(addr = %self.local_addr, "gRPC server listening");
        let server = Server::builder()
            .layer(crate::grpc_trace::ServerTraceLayer)
            .layer(crate::shed::ShedLayer::new(
                self.max_in_flight,
                self.call_timeout,
            ))
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, signal);
        tokio::pin!(server);
        let deadline = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = &mut server => {
                result.context("gRPC server failed")?;
                tracing::info!("gRPC server stopped gracefully");
            }
            () = deadline => {
                tracing::warn!(grace_secs = grace.as_secs_f64(), "gRPC server stopped forcibly: calls still running after the grace period");
            }
        }
        Ok(())
    }
}
