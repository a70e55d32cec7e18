//! The viewer run in-process on port 0: spans exported over OTLP gRPC the way the services'
//! exporters send them come back through the Jaeger HTTP API, and the UI is the real Jaeger UI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser as _;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use trace_viewer::{Application, Config};

const TRACE_ID: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
const TRACE_HEX: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
const PARENT_HEX: &str = "00f067aa0ba902b7";
const CHILD_ID: [u8; 8] = [0x53, 0x99, 0x5c, 0x3f, 0x42, 0xcd, 0x8a, 0xd8];
const CHILD_HEX: &str = "53995c3f42cd8ad8";

/// A viewer serving on free ports, stopped (and awaited) by `stop`.
struct TestViewer {
    otlp_addr: SocketAddr,
    ui_addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    http: reqwest::Client,
}

impl TestViewer {
    async fn spawn() -> Self {
        let config = Config::try_parse_from([
            "trace-viewer",
            "--otlp-listen",
            "127.0.0.1:0",
            "--ui-listen",
            "127.0.0.1:0",
        ])
        .unwrap();
        let app = Application::build(config).await.unwrap();
        let (otlp_addr, ui_addr) = (app.otlp_addr(), app.ui_addr());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Self {
            otlp_addr,
            ui_addr,
            shutdown,
            task,
            http: reqwest::Client::new(),
        }
    }

    async fn export(&self, batches: Vec<ResourceSpans>) {
        let mut client = TraceServiceClient::connect(format!("http://{}", self.otlp_addr))
            .await
            .unwrap();
        let response = client
            .export(ExportTraceServiceRequest {
                resource_spans: batches,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.partial_success, None);
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("http://{}{path}", self.ui_addr))
            .send()
            .await
            .unwrap()
    }

    async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// One service's spans, as an OTLP exporter batches them.
fn batch(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![string("service.name", service)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "affiliate-platform".to_owned(),
                ..Default::default()
            }),
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn span(id: [u8; 8], parent: Option<[u8; 8]>, name: &str, kind: SpanKind, start: u64) -> Span {
    Span {
        trace_id: TRACE_ID.to_vec(),
        span_id: id.to_vec(),
        parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: name.to_owned(),
        kind: kind as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 5_000_000,
        attributes: vec![string("rpc.system", "grpc")],
        ..Default::default()
    }
}

/// A request through the BFF into the campaign service: a server span and its child.
fn request_trace() -> Vec<ResourceSpans> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    vec![
        batch(
            "bff",
            vec![span(
                PARENT_ID,
                None,
                "POST /api/v1/campaigns",
                SpanKind::Server,
                now,
            )],
        ),
        batch(
            "campaign-service",
            vec![span(
                CHILD_ID,
                Some(PARENT_ID),
                "affiliate.campaign.v1.CampaignService/CreateCampaign",
                SpanKind::Server,
                now + 1_000_000,
            )],
        ),
    ]
}

#[tokio::test]
async fn an_exported_trace_comes_back_with_both_spans_their_parent_and_services() {
    let viewer = TestViewer::spawn().await;

    viewer.export(request_trace()).await;

    let body = viewer.get_json(&format!("/api/traces/{TRACE_HEX}")).await;
    let trace = &body["data"][0];
    assert_eq!(trace["traceID"], TRACE_HEX);
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2, "{trace:#}");
    let by_id = |id: &str| {
        spans
            .iter()
            .find(|s| s["spanID"] == id)
            .unwrap_or_else(|| panic!("span {id} missing: {trace:#}"))
    };
    let (parent, child) = (by_id(PARENT_HEX), by_id(CHILD_HEX));
    assert_eq!(parent["operationName"], "POST /api/v1/campaigns");
    assert_eq!(parent["references"], Value::Null);
    assert_eq!(
        child["operationName"],
        "affiliate.campaign.v1.CampaignService/CreateCampaign"
    );
    assert_eq!(
        child["references"],
        serde_json::json!([{ "refType": "CHILD_OF", "traceID": TRACE_HEX, "spanID": PARENT_HEX }])
    );
    assert_eq!(child["duration"], 5_000);
    // each span under its own service, not both under one process
    let service_of = |span: &Value| {
        let process = span["processID"].as_str().unwrap();
        trace["processes"][process]["serviceName"].clone()
    };
    assert_eq!(service_of(parent), "bff");
    assert_eq!(service_of(child), "campaign-service");

    let services = viewer.get_json("/api/services").await;
    assert_eq!(services["data"], serde_json::json!(["bff"]));
    let listed = viewer.get_json("/api/traces?service=bff&limit=20").await;
    assert_eq!(listed["data"][0]["traceID"], TRACE_HEX);

    viewer.stop().await;
}

#[tokio::test]
async fn the_ui_is_the_jaeger_ui_on_every_app_path() {
    let viewer = TestViewer::spawn().await;

    for path in ["/", "/search", &format!("/trace/{TRACE_HEX}")] {
        let response = viewer.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        let html = response.text().await.unwrap();
        assert!(
            html.contains("<title>Jaeger UI</title>"),
            "GET {path}: {html}"
        );
        assert!(html.contains(r#"<base href="/""#), "GET {path}: {html}");
    }
    // the assets index.html links to are bundled
    let favicon = viewer.get("/static/favicon-BxcVf0am.ico").await;
    assert_eq!(favicon.status(), 200);

    viewer.stop().await;
}

#[tokio::test]
async fn an_unknown_trace_is_not_found() {
    let viewer = TestViewer::spawn().await;

    let response = viewer.get(&format!("/api/traces/{TRACE_HEX}")).await;

    assert_eq!(response.status(), 404);
    viewer.stop().await;
}
