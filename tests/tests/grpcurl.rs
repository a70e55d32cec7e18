//! The campaign service as people call it: grpcurl with no proto files at hand (server
//! reflection), the standard health check, and a CreateCampaign call in proto3 JSON.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use e2e::fresh_database;
use e2e::process::{Process, binary};

fn grpcurl() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("grpcurl"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let go_bin = std::env::var_os("HOME").map(|h| PathBuf::from(h).join("go/bin/grpcurl"));
    on_path
        .into_iter()
        .chain(go_bin)
        .find(|p| p.is_file())
        .expect("grpcurl is not installed: run `deploy/local/install.sh` (go install github.com/fullstorydev/grpcurl/cmd/grpcurl@latest)")
}

/// Runs grpcurl; returns (success, stdout + stderr).
fn run(args: &[&str]) -> (bool, String) {
    let output = Command::new(grpcurl())
        .args(args)
        .output()
        .expect("run grpcurl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn ok(args: &[&str]) -> String {
    let (success, text) = run(args);
    assert!(success, "grpcurl {args:?} failed:\n{text}");
    text
}

#[tokio::test]
async fn grpcurl_lists_describes_checks_health_and_creates_a_campaign() {
    let logs = e2e::log_dir("grpcurl");
    let db = fresh_database("grpcurl").await;
    let mut service = Process::start(
        "campaign-service",
        &binary("campaign-service"),
        &[],
        &[
            ("DATABASE_URL", db.url.clone()),
            ("GRPC_LISTEN", "127.0.0.1:0".into()),
        ],
        &logs,
    );
    let addr = service
        .wait_for_grpc_addr(Duration::from_secs(30))
        .to_string();

    let services = ok(&["-plaintext", &addr, "list"]);
    for expected in [
        "affiliate.campaign.v1.CampaignService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            services.contains(expected),
            "`list` lacks {expected}:\n{services}"
        );
    }
    // Reflection lists what this process serves, not every service of the platform.
    let listed: Vec<&str> = services.lines().map(str::trim).collect();
    assert_eq!(
        listed,
        [
            "affiliate.campaign.v1.CampaignService",
            "affiliate.common.v1.StatusService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ],
        "`list` names exactly the services this process serves"
    );

    let description = ok(&[
        "-plaintext",
        &addr,
        "describe",
        "affiliate.campaign.v1.CampaignService",
    ]);
    for rpc in [
        "rpc CreateCampaign",
        "rpc GetCampaign",
        "rpc ListCampaigns",
        "rpc AddVideo",
        "rpc AcceptCampaign",
    ] {
        assert!(
            description.contains(rpc),
            "`describe` lacks {rpc}:\n{description}"
        );
    }
    let message = ok(&[
        "-plaintext",
        &addr,
        "describe",
        "affiliate.campaign.v1.CreateCampaignRequest",
    ]);
    assert!(message.contains("commission_rate_bps"), "{message}");

    let status = ok(&[
        "-plaintext",
        &addr,
        "affiliate.common.v1.StatusService/GetStatus",
    ]);
    let status: serde_json::Value =
        serde_json::from_str(&status).unwrap_or_else(|e| panic!("{e}: {status}"));
    assert_eq!(status["service"], "campaign-service");
    assert_eq!(status["mode"], "grpc");
    assert_eq!(status["database"]["reachable"], true, "{status}");

    let health = ok(&["-plaintext", &addr, "grpc.health.v1.Health/Check"]);
    assert!(health.contains("SERVING"), "{health}");
    let health = ok(&[
        "-plaintext",
        "-d",
        r#"{"service":"affiliate.campaign.v1.CampaignService"}"#,
        &addr,
        "grpc.health.v1.Health/Check",
    ]);
    assert!(health.contains("SERVING"), "{health}");

    let body = r#"{"advertiserId":"0193a9e0-0000-7000-8000-0000000000aa","name":"Via grpcurl","commissionRateBps":800,"budget":{"amountMinor":"250000","currency":"EUR"}}"#;
    let created = ok(&[
        "-plaintext",
        "-H",
        "idempotency-key: grpcurl-1",
        "-d",
        body,
        &addr,
        "affiliate.campaign.v1.CampaignService/CreateCampaign",
    ]);
    let json: serde_json::Value =
        serde_json::from_str(&created).unwrap_or_else(|e| panic!("{e}: {created}"));
    assert_eq!(json["campaign"]["name"], "Via grpcurl");
    assert_eq!(json["campaign"]["status"], "CAMPAIGN_STATUS_ACTIVE");
    assert_eq!(json["campaign"]["budget"]["amountMinor"], "250000");
    let id = json["campaign"]["id"].as_str().unwrap().to_owned();

    let fetched = ok(&[
        "-plaintext",
        "-d",
        &format!(r#"{{"campaignId":"{id}"}}"#),
        &addr,
        "affiliate.campaign.v1.CampaignService/GetCampaign",
    ]);
    assert!(fetched.contains(&id), "{fetched}");

    let (success, error) = run(&[
        "-plaintext",
        "-format-error",
        "-d",
        r#"{"advertiserId":"x","name":"","budget":{"amountMinor":"1","currency":"eur"}}"#,
        &addr,
        "affiliate.campaign.v1.CampaignService/CreateCampaign",
    ]);
    assert!(!success, "an invalid create succeeded: {error}");
    assert!(
        error.contains(r#""code": 3"#),
        "not INVALID_ARGUMENT: {error}"
    );
    assert!(error.contains("google.rpc.BadRequest"), "{error}");
    for field in ["advertiser_id", "name", "budget.currency"] {
        assert!(error.contains(field), "error details lack {field}: {error}");
    }
    service.terminate(Duration::from_secs(15)).await;
}
