//! Telemetry of every process: JSON log lines (or text for humans) filtered by `RUST_LOG`,
//! OpenTelemetry spans exported over OTLP when an endpoint is configured, W3C trace-context and
//! baggage propagation helpers, and the Prometheus `/metrics` endpoint.
//!
//! Inside a span, every JSON log line carries `trace_id` and `span_id` (when tracing is on) and
//! the fields of the spans around it, such as `correlation_id`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::OnceLock;

use anyhow::Context as _;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator as _};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tonic::codegen::http;
use tracing::Subscriber;
use tracing_log::NormalizeEvent as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::LogArgs;

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets (seconds) of every histogram.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn propagator() -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ])
}

/// The service name spans carry: configured, or the binary's file name.
fn service_name(args: &LogArgs) -> String {
    args.service_name.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "unknown".to_owned())
    })
}

/// Installs logging, tracing and metrics. Call once, from `main`, inside the tokio runtime (the
/// OTLP exporter and the metrics endpoint run on it).
pub fn init(args: &LogArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&args.filter)
        .map_err(|e| anyhow::anyhow!("invalid log filter `{}`: {e}", args.filter))?;
    opentelemetry::global::set_text_map_propagator(propagator());
    let otel = match &args.otlp_endpoint {
        Some(endpoint) if !endpoint.trim().is_empty() => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.trim())
                .build()
                .with_context(|| format!("build the OTLP exporter for {endpoint}"))?;
            let resource = Resource::builder()
                .with_service_name(service_name(args))
                .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                .build();
            let mut provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource);
            if std::env::var_os("OTEL_TRACES_SAMPLER").is_none() {
                provider = provider.with_sampler(default_sampler());
            }
            let provider = provider.build();
            let tracer = provider.tracer("affiliate-platform");
            opentelemetry::global::set_tracer_provider(provider.clone());
            let _ = PROVIDER.set(provider);
            Some(tracing_opentelemetry::layer().with_tracer(tracer))
        }
        _ => None,
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if args.format == "json" {
        fmt.fmt_fields(JsonFields::new())
            .event_format(JsonWithTrace)
            .boxed()
    } else {
        fmt.boxed()
    };
    tracing_subscriber::registry()
        .with(otel)
        .with(fmt)
        .with(filter)
        .try_init()
        .map_err(|e| anyhow::anyhow!("install log subscriber: {e}"))?;
    install_metrics(args.metrics_listen)?;
    Ok(())
}

/// The share of new traces recorded when `OTEL_TRACES_SAMPLER` is unset.
pub const DEFAULT_SAMPLE_RATIO: f64 = 0.1;

/// Parent-based, with [`DEFAULT_SAMPLE_RATIO`] at the roots: the process where a workflow begins
/// (the BFF, or a service called without a trace) records one trace in ten, and every other
/// process follows the decision carried in `traceparent`, so a trace is whole or absent. One in
/// ten still shows every kind of workflow many times a second under load, while spans (made,
/// exported and stored for every message of every hop) stop being a cost per purchase.
/// `OTEL_TRACES_SAMPLER=always_on` records everything (the tests that follow a workflow).
fn default_sampler() -> opentelemetry_sdk::trace::Sampler {
    use opentelemetry_sdk::trace::Sampler;
    Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(DEFAULT_SAMPLE_RATIO)))
}

/// Exports the spans still buffered. Call once, at the end of `main`.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(e) = provider.shutdown()
    {
        tracing::warn!(error = %e, "flushing spans failed");
    }
}

/// The W3C `traceparent` and `tracestate` of the current span, if it has a valid context.
pub fn current_trace_headers() -> Option<(String, Option<String>)> {
    trace_headers_of(&tracing::Span::current())
}

/// The W3C `traceparent` and `tracestate` of `span`, if it has a valid context (written directly:
/// this runs once per message on the relay's hot path).
pub fn trace_headers_of(span: &tracing::Span) -> Option<(String, Option<String>)> {
    let cx = span.context();
    let otel_span = cx.span();
    let sc = otel_span.span_context();
    if !sc.is_valid() {
        return None;
    }
    let traceparent = format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    );
    let state = sc.trace_state().header();
    Some((traceparent, (!state.is_empty()).then_some(state)))
}

/// Whether a W3C `traceparent` says its trace is sampled (flags bit 0): a consumer makes no span
/// for a message whose writer's trace is not recorded (parent-based sampling would drop it).
pub fn is_sampled(traceparent: &str) -> bool {
    let mut parts = traceparent.trim().split('-');
    let (Some(_version), Some(trace), Some(span), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    trace.len() == 32
        && span.len() == 16
        && u8::from_str_radix(flags, 16).is_ok_and(|flags| flags & 1 == 1)
}

/// Makes `span` a child of the remote context in `traceparent` / `tracestate`.
pub fn set_remote_parent(
    span: &tracing::Span,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let mut carrier = HashMap::with_capacity(2);
    carrier.insert("traceparent".to_owned(), traceparent.to_owned());
    if let Some(state) = tracestate {
        carrier.insert("tracestate".to_owned(), state.to_owned());
    }
    // Messages carry trace context only (the correlation id travels as a property).
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// The remote context (trace context and baggage) carried by HTTP/gRPC headers (the carriers
/// are opentelemetry-http's).
pub fn extract_headers(headers: &http::HeaderMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)))
}

/// Writes the current span's context (and `baggage`) into HTTP/gRPC headers.
pub fn inject_headers(headers: &mut http::HeaderMap, baggage: &[(&str, &str)]) {
    let mut cx = tracing::Span::current().context();
    if !baggage.is_empty() {
        use opentelemetry::baggage::BaggageExt as _;
        cx = cx.with_baggage(
            baggage
                .iter()
                .map(|(k, v)| KeyValue::new(k.to_string(), v.to_string())),
        );
    }
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeaderInjector(headers));
    });
}

fn install_metrics(listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&BUCKETS)
        .context("configure histogram buckets")?
        .install_recorder()
        .context("install the metrics recorder")?;
    let _ = METRICS.set(handle.clone());
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    if let Some(addr) = listen {
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("bind the metrics endpoint {addr}"))?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tracing::info!(addr = %listener.local_addr()?, "metrics endpoint listening");
        let app = axum::Router::new().route("/metrics", axum::routing::get(render_metrics));
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "metrics endpoint stopped");
            }
        });
    }
    Ok(())
}

/// The Prometheus text exposition of this process's metrics.
async fn render_metrics() -> ([(axum::http::header::HeaderName, &'static str); 1], String) {
    let body = METRICS
        .get()
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

/// JSON lines: timestamp, level, target, the event's fields, the fields of the spans around it
/// (innermost wins), and `trace_id` / `span_id` of the current span when tracing is on.
struct JsonWithTrace;

impl<S, N> FormatEvent<S, N> for JsonWithTrace
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use serde_json::{Map, Value};
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        // A `log` record (pulsar-rs logs through the `log` crate, bridged by tracing-log) comes
        // as an event of target `log`; its own target, module and level are in its fields.
        let normalized = event.normalized_metadata();
        let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
        line.insert("level".into(), metadata.level().as_str().into());
        line.insert("target".into(), metadata.target().into());
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(fields)
                {
                    line.extend(map);
                }
            }
            if let Some(span) = ctx.lookup_current() {
                line.insert("span".into(), span.name().into());
            }
        }
        let mut visitor = JsonVisitor(Map::new());
        event.record(&mut visitor);
        line.extend(visitor.0);
        let cx = tracing::Span::current().context();
        let otel_span = cx.span();
        let sc = otel_span.span_context();
        if sc.is_valid() {
            line.insert("trace_id".into(), sc.trace_id().to_string().into());
            line.insert("span_id".into(), sc.span_id().to_string().into());
        }
        let text = serde_json::to_string(&line).map_err(|_| std::fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

struct JsonVisitor(serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonVisitor {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        // A bridged `log` record's metadata (`log.target`, `log.file`, …) is in the line already.
        if field.name().starts_with("log.") {
            return;
        }
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_tells_whether_its_trace_is_sampled() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7";
        assert!(is_sampled(&format!("00-{id}-01")));
        assert!(is_sampled(&format!("00-{id}-03")));
        assert!(!is_sampled(&format!("00-{id}-00")));
        assert!(!is_sampled(&format!("00-{id}-zz")));
        assert!(!is_sampled("00-short-00f067aa0ba902b7-01"));
        assert!(!is_sampled(""));
    }

    /// What a subscriber with the JSON format writes, one line per event.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_log_crate_record_keeps_its_own_target_and_level_in_json() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let captured = Captured::default();
        let writer = captured.clone();
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .fmt_fields(JsonFields::new())
            .event_format(JsonWithTrace);
        let subscriber = tracing_subscriber::registry().with(fmt);
        tracing::subscriber::with_default(subscriber, || {
            tracing_log::format_trace(
                &log::Record::builder()
                    .args(format_args!("connection error, retrying"))
                    .level(log::Level::Warn)
                    .target("pulsar::connection_manager")
                    .module_path_static(Some("pulsar::connection_manager"))
                    .file_static(Some("src/connection_manager.rs"))
                    .line(Some(42))
                    .build(),
            )
            .unwrap();
            tracing::info!(answer = 42, "native");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["target"], "pulsar::connection_manager", "{text}");
        assert_eq!(lines[0]["level"], "WARN");
        assert_eq!(lines[0]["message"], "connection error, retrying");
        assert!(lines[0].get("log.target").is_none(), "{text}");
        assert_eq!(lines[1]["target"], module_path!());
        assert_eq!(lines[1]["answer"], 42);
    }

    #[test]
    fn trace_headers_are_w3c_and_a_remote_parent_is_continued() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("child");
            set_remote_parent(
                &span,
                Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                Some("vendor=value"),
            );
            let (traceparent, tracestate) = trace_headers_of(&span).unwrap();
            let parts: Vec<&str> = traceparent.split('-').collect();
            assert_eq!(parts[0], "00");
            assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
            assert_ne!(parts[2], "00f067aa0ba902b7", "its own span id");
            assert_eq!(parts[3], "01", "sampled, as the parent");
            assert_eq!(tracestate.as_deref(), Some("vendor=value"));
            let orphan = tracing::info_span!("root");
            assert!(
                trace_headers_of(&orphan).is_some(),
                "a root gets a fresh trace"
            );
        });
        assert_eq!(trace_headers_of(&tracing::Span::none()), None);
    }
}
