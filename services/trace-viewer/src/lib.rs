//! The local platform's trace viewer: an in-memory OTLP gRPC trace receiver plus the Jaeger UI
//! and its HTTP API (`/api/traces/{hex id}`, `/api/services`, `/api/traces?service=…`), both
//! from `otlp-embedded`, which bundles the UI so it works offline. Traces live in memory only;
//! the oldest go first when the trace count or the estimated memory limit is reached.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use axum::ServiceExt as _;
use axum::extract::Request;
use axum::http::Uri;
use otlp_embedded::proto::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use otlp_embedded::proto::common::v1::{AnyValue, KeyValue, any_value};
use otlp_embedded::proto::resource::v1::Resource;
use otlp_embedded::{StateRef, TraceService, TraceServiceImpl, TraceServiceServer};
use service_runtime::app::Parts;
use service_runtime::config::{LogArgs, parse_duration};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tower::Layer as _;
use tower::util::MapRequestLayer;

/// The trace viewer's configuration; every flag also reads an environment variable.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "trace-viewer",
    version,
    about = "Collect OTLP traces in memory and browse them in the Jaeger UI"
)]
pub struct Config {
    /// Address of the OTLP gRPC trace receiver (what OTEL_EXPORTER_OTLP_ENDPOINT points at);
    /// port 0 picks a free port (the bound address is logged).
    #[arg(long, env = "OTLP_LISTEN", default_value = "127.0.0.1:4317")]
    pub otlp_listen: SocketAddr,
    /// Address of the Jaeger UI and its HTTP API; port 0 picks a free port (the bound address is
    /// logged).
    #[arg(
        long = "ui-listen",
        env = "TRACE_UI_LISTEN",
        default_value = "127.0.0.1:16686"
    )]
    pub ui_listen: SocketAddr,
    /// Traces kept in memory; the least recently updated or viewed go first.
    #[arg(
        long,
        env = "TRACE_VIEWER_MAX_TRACES",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_traces: u32,
    /// Estimated memory the kept traces may use, in MiB; the least recently used go first.
    #[arg(
        long = "max-memory-mib",
        env = "TRACE_VIEWER_MAX_MEMORY_MIB",
        default_value_t = 256,
        value_parser = clap::value_parser!(u64).range(1..=1 << 20)
    )]
    pub max_memory_mib: u64,
    /// How long open requests and connections may take to finish after shutdown is requested.
    #[arg(long = "shutdown-grace", env = "SHUTDOWN_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    #[command(flatten)]
    pub log: LogArgs,
}

/// The viewer with both listeners bound, ready to serve.
pub struct Application {
    state: StateRef,
    otlp: TcpListener,
    otlp_addr: SocketAddr,
    ui: TcpListener,
    ui_addr: SocketAddr,
    grace: Duration,
}

impl Application {
    /// Creates the trace store and binds both listeners (so port 0 is resolved here).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let max_memory_usage = usize::try_from(config.max_memory_mib)
            .ok()
            .and_then(|mib| mib.checked_mul(1024 * 1024))
            .with_context(|| {
                format!(
                    "--max-memory-mib {} does not fit this machine's address space",
                    config.max_memory_mib
                )
            })?;
        let state = otlp_embedded::State::new(otlp_embedded::Config {
            max_length: config.max_traces,
            max_memory_usage,
        });
        let otlp = TcpListener::bind(config.otlp_listen)
            .await
            .with_context(|| format!("bind the OTLP listener on {}", config.otlp_listen))?;
        let otlp_addr = otlp.local_addr().context("read the bound OTLP address")?;
        let ui = TcpListener::bind(config.ui_listen)
            .await
            .with_context(|| format!("bind the UI listener on {}", config.ui_listen))?;
        let ui_addr = ui.local_addr().context("read the bound UI address")?;
        Ok(Self {
            state,
            otlp,
            otlp_addr,
            ui,
            ui_addr,
            grace: config.shutdown_grace,
        })
    }

    /// The bound OTLP gRPC address.
    pub fn otlp_addr(&self) -> SocketAddr {
        self.otlp_addr
    }

    /// The bound address of the UI and the HTTP API.
    pub fn ui_addr(&self) -> SocketAddr {
        self.ui_addr
    }

    /// Serves OTLP and the UI until `shutdown` is cancelled (or one of them fails, which stops
    /// the other), then lets each drain for at most the grace period.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(
            otlp_addr = %self.otlp_addr,
            ui_addr = %self.ui_addr,
            "trace viewer started"
        );
        // Each part drains within the grace on its own (`drain`); the parts' bound is the backstop.
        let mut parts = Parts::new(shutdown, self.grace + Duration::from_secs(1));

        let token = parts.token();
        let receiver = TraceServiceServer::new(Receiver(TraceServiceImpl::new(self.state.clone())))
            .accept_compressed(CompressionEncoding::Gzip);
        let otlp = tonic::transport::Server::builder()
            .add_service(receiver)
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(self.otlp),
                token.clone().cancelled_owned(),
            );
        parts.spawn(
            "otlp receiver",
            drain("otlp receiver", otlp, token, self.grace),
        );

        let token = parts.token();
        let ui = MapRequestLayer::new(spa_index).layer(otlp_embedded::ui_app(self.state, "/"));
        let ui = axum::serve(self.ui, ui.into_make_service())
            .with_graceful_shutdown(token.clone().cancelled_owned());
        let ui = async move { ui.await.context("serve the UI") };
        parts.spawn("ui", drain("ui", ui, token, self.grace));

        parts.supervise().await
    }
}

/// The OTLP receiver: `otlp-embedded`'s store, with each batch made safe to show first.
struct Receiver(TraceServiceImpl);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        mut request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for batch in &mut request.get_mut().resource_spans {
            name_instance(batch.resource.get_or_insert_default());
            for span in batch
                .scope_spans
                .iter_mut()
                .flat_map(|s| s.spans.iter_mut())
            {
                // the Jaeger view computes `end - start` unchecked
                span.end_time_unix_nano = span.end_time_unix_nano.max(span.start_time_unix_nano);
            }
        }
        self.0.export(request).await
    }
}

const SERVICE_NAME: &str = "service.name";
const SERVICE_INSTANCE_ID: &str = "service.instance.id";

/// The Jaeger view keys a span's process by `service.instance.id`, which OpenTelemetry SDKs do
/// not set by default: without one, every service of a trace would share the process `unknown`
/// and show under one name. A resource without it gets its service name as instance id.
fn name_instance(resource: &mut Resource) {
    if resource
        .attributes
        .iter()
        .any(|kv| kv.key == SERVICE_INSTANCE_ID)
    {
        return;
    }
    let service = resource
        .attributes
        .iter()
        .find(|kv| kv.key == SERVICE_NAME)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(name)) => Some(name.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "unknown".to_owned());
    resource.attributes.push(KeyValue {
        key: SERVICE_INSTANCE_ID.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(service)),
        }),
    });
}

/// Runs `serve` until it ends; once `shutdown` is cancelled, gives it at most `grace` to finish
/// and logs whether it stopped gracefully or was cut off.
async fn drain<F, E>(
    part: &'static str,
    serve: F,
    shutdown: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()>
where
    F: Future<Output = Result<(), E>>,
    E: Into<anyhow::Error>,
{
    tokio::pin!(serve);
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = &mut serve => {
            result.map_err(Into::into).with_context(|| format!("{part} failed"))?;
            tracing::info!(part, "stopped gracefully");
        }
        () = deadline => {
            tracing::warn!(part, grace_secs = grace.as_secs_f64(), "stopped forcibly: connections still open after the grace period");
        }
    }
    Ok(())
}

/// The Jaeger UI is a single-page app: every path that is neither the API nor a static asset
/// gets `index.html` (the app routes on the browser's URL), with status 200 where `otlp-embedded`
/// alone answers such paths, `/` included, with a 307 that has no `Location`.
fn spa_index(mut request: Request) -> Request {
    let path = request.uri().path();
    if !path.starts_with("/api/") && !path.starts_with("/static/") {
        *request.uri_mut() = Uri::from_static("/index.html");
    }
    request
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Config::command().debug_assert();
    }

    #[test]
    fn ui_paths_are_served_the_app_and_the_api_is_left_alone() {
        let path = |p: &'static str| {
            let request = Request::builder()
                .uri(p)
                .body(axum::body::Body::empty())
                .map(spa_index);
            request.map(|r| r.uri().to_string()).unwrap_or_default()
        };
        assert_eq!(path("/"), "/index.html");
        assert_eq!(path("/search?service=bff"), "/index.html");
        assert_eq!(
            path("/trace/0af7651916cd43dd8448eb211c80319c"),
            "/index.html"
        );
        assert_eq!(path("/api/services"), "/api/services");
        assert_eq!(
            path("/static/favicon-BxcVf0am.ico"),
            "/static/favicon-BxcVf0am.ico"
        );
    }
}
