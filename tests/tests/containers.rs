//! The platform in containers, for real: the image (the binaries this build made, packed onto the
//! Dockerfile's own runtime stage by `deploy/containers/image.sh packed`), Docker Compose v2
//! running `deploy/compose/compose.yaml` as written against podman's Docker API, the README's
//! workflow through the published ports (gRPC and REST) to a completed payout, the redirect edge
//! (`GET /healthz`, and `404` for an unknown link), the trace viewer, the operator CLI inside the
//! project's network, then `stop` (every process exits 0 on SIGTERM) and `down -v`.
//!
//! The compose file is used unchanged but for one override: every published port moves (`!override`,
//! see `moved`), because the tests' own PostgreSQL and Pulsar hold the file's ports. Podman
//! has no systemd here to schedule health checks: `deploy/containers/engine.sh` runs them (its
//! health ticker) while Compose waits.
//!
//! Needs the container world of `deploy/containers/setup.sh` (podman, the stand-in base images,
//! Docker Compose) and the workspace's debug binaries (`cargo build --workspace --bins`); fails
//! with what to run when either is missing. Logs: `target/containers-test/`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use tonic::Request;
use uuid::Uuid;

use affiliate_proto::campaign::{
    self as campaign_pb, campaign_service_client::CampaignServiceClient,
};
use affiliate_proto::commission::{
    self as commission_pb, commission_service_client::CommissionServiceClient,
};
use affiliate_proto::common::Money;
use affiliate_proto::payment::{self as payment_pb, payment_service_client::PaymentServiceClient};
use affiliate_proto::tracking::{
    self as tracking_pb, tracking_service_client::TrackingServiceClient,
};
use e2e::containers::{
    assert_confined, logs_dir, must, podman, prepare_image, repo, run, script, text,
};
use e2e::eventually;

const PROJECT: &str = "affiliate-platform-test";
/// Where the override moves a published port: up by 10000, or down by 30000 where that would land
/// in Linux's ephemeral range (32768..=60999: 50051 + 10000 was once taken by a test's outgoing
/// connection, and `up` failed with "address already in use").
fn moved(published: u64) -> u64 {
    let up = published + 10_000;
    if (32_768..=60_999).contains(&up) {
        published
            .checked_sub(30_000)
            .unwrap_or_else(|| panic!("no port outside the ephemeral range for {published}"))
    } else {
        up
    }
}
const ADVERTISER: &str = "0193a9e0-0000-7000-8000-0000000000ad";
/// The processes of the platform's image (the others are PostgreSQL, Pulsar and its init job).
const OURS: [&str; 11] = [
    "campaign",
    "tracking",
    "commission",
    "payment",
    "notification",
    "analytics",
    "webhook",
    "relay",
    "bff",
    "redirect",
    "trace-viewer",
];
/// A well-formed link code no link has: the edge looks it up in tracking's database, then 404.
const UNKNOWN_CODE: &str = "ZZZZZZZZZZ";
const HEALTH_CHECKED: [&str; 9] = [
    "postgres",
    "pulsar",
    "campaign",
    "tracking",
    "commission",
    "payment",
    "notification",
    "analytics",
    "webhook",
];

/// `docker compose -p PROJECT -f compose.yaml [-f override] ARGS` against podman.
fn compose(override_file: Option<&Path>, args: &[&str], timeout: Duration) -> Output {
    let mut command = script("engine.sh", &["compose", "-p", PROJECT, "-f"]);
    command.arg(repo().join("deploy/compose/compose.yaml"));
    if let Some(file) = override_file {
        command.arg("-f").arg(file);
    }
    command.args(args);
    run(command, timeout)
}

/// The compose file's published ports, service by service: (host ip, published, target).
fn published_ports() -> BTreeMap<String, Vec<(String, u64, u64)>> {
    let config = must(
        "docker compose config",
        compose(
            None,
            &["config", "--format", "json"],
            Duration::from_secs(60),
        ),
    );
    let config: Value = serde_json::from_str(&config).unwrap();
    let mut ports = BTreeMap::new();
    for (name, service) in config["services"].as_object().unwrap() {
        let list = service["ports"].as_array().cloned().unwrap_or_default();
        let list: Vec<_> = list
            .iter()
            .map(|p| {
                let published = p["published"].as_str().unwrap().parse().unwrap();
                let host_ip = p["host_ip"].as_str().unwrap_or_default().to_owned();
                assert_eq!(host_ip, "127.0.0.1", "{name} publishes {p} beyond loopback");
                (host_ip, published, p["target"].as_u64().unwrap())
            })
            .collect();
        if !list.is_empty() {
            ports.insert(name.clone(), list);
        }
    }
    ports
}

/// Guard: whatever happens, the test's project and the engine it started are removed.
struct Project {
    override_file: PathBuf,
}

impl Drop for Project {
    fn drop(&mut self) {
        // A failure anywhere (a wait that timed out, say) keeps the project's logs first.
        if std::thread::panicking() {
            save_logs(&self.override_file);
        }
        let down = compose(
            Some(&self.override_file),
            &["down", "-v", "--timeout", "20"],
            Duration::from_secs(120),
        );
        if !down.status.success() {
            eprintln!("compose down -v failed:\n{}", text(&down));
        }
        let _ = run(script("engine.sh", &["down"]), Duration::from_secs(30));
    }
}

fn save_logs(override_file: &Path) {
    let logs = compose(
        Some(override_file),
        &["logs", "--no-color", "--timestamps"],
        Duration::from_secs(60),
    );
    let path = logs_dir("compose").join("compose.log");
    // never a panic here: this also runs while a failure unwinds (`Project`'s drop)
    match std::fs::write(&path, text(&logs)) {
        Ok(()) => println!("containers: the project's logs are in {}", path.display()),
        Err(e) => eprintln!(
            "containers: keeping the logs in {} failed: {e}",
            path.display()
        ),
    }
}

fn money(amount_minor: i64) -> Option<Money> {
    Some(Money {
        amount_minor,
        currency: "EUR".into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_runs_in_containers() {
    let started = Instant::now();
    // ---- the container world and the image -------------------------------------------------
    prepare_image();
    let image_secs = started.elapsed().as_secs_f64();

    // ---- the compose project, its ports moved out of the tests' way ------------------------
    let ports = published_ports();
    let mut yaml = String::from("# written by tests/tests/containers.rs\nservices:\n");
    for (service, list) in &ports {
        let moved: Vec<String> = list
            .iter()
            .map(|(ip, published, target)| format!("\"{ip}:{}:{target}\"", moved(*published)))
            .collect();
        yaml.push_str(&format!(
            "  {service}:\n    ports: !override [{}]\n",
            moved.join(", ")
        ));
    }
    let override_file = logs_dir("compose").join("ports.override.yaml");
    std::fs::write(&override_file, yaml).unwrap();
    let port = |service: &str, target: u64| -> u64 {
        ports[service]
            .iter()
            .find(|(_, _, t)| *t == target)
            .map(|(_, p, _)| moved(*p))
            .unwrap_or_else(|| panic!("{service} publishes no port for {target}"))
    };
    let project = Project {
        override_file: override_file.clone(),
    };
    // what an earlier, interrupted run of this test may have left
    let _ = compose(
        Some(&override_file),
        &["down", "-v", "--timeout", "5"],
        Duration::from_secs(120),
    );

    let t = Instant::now();
    let up = compose(
        Some(&override_file),
        &["up", "-d", "--no-build", "--wait", "--wait-timeout", "240"],
        Duration::from_secs(300),
    );
    if !up.status.success() {
        save_logs(&override_file);
        let ps = compose(Some(&override_file), &["ps", "-a"], Duration::from_secs(30));
        panic!("compose up --wait failed:\n{}\n{}", text(&up), text(&ps));
    }
    let up_secs = t.elapsed().as_secs_f64();

    // ---- every container as the files say: healthy, non-root, read-only ----------------------
    let names = must(
        "podman ps",
        podman(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=com.docker.compose.project={PROJECT}"),
            "--format",
            "{{.Names}}",
        ]),
    );
    let names: Vec<&str> = names.lines().collect();
    let inspected: Vec<Value> = {
        let mut args = vec!["inspect"];
        args.extend(&names);
        serde_json::from_str(&must("podman inspect", podman(&args))).unwrap()
    };
    let mut seen = Vec::new();
    for container in &inspected {
        let labels = &container["Config"]["Labels"];
        let service = labels["com.docker.compose.service"].as_str().unwrap();
        seen.push(service.to_owned());
        let state = &container["State"];
        if service == "pulsar-init" {
            assert_eq!(
                state["ExitCode"], 0,
                "pulsar-init exited with {}",
                state["ExitCode"]
            );
            continue;
        }
        assert_eq!(
            state["Status"], "running",
            "{service} is not running: {state}"
        );
        if HEALTH_CHECKED.contains(&service) {
            assert_eq!(
                state["Health"]["Status"], "healthy",
                "{service}: {}",
                state["Health"]
            );
        }
        if OURS.contains(&service) {
            assert_eq!(
                container["Config"]["User"], "65532:65532",
                "{service} runs as {}",
                container["Config"]["User"]
            );
            assert_confined(service, container);
        }
    }
    seen.sort();
    let mut expected: Vec<String> = OURS
        .iter()
        .chain(&["postgres", "pulsar", "pulsar-init"])
        .map(|s| s.to_string())
        .collect();
    expected.sort();
    assert_eq!(seen, expected, "the project's containers");
    println!(
        "containers: {} containers up, healthy where checked, ours as 65532 with a read-only root and no capabilities",
        seen.len()
    );

    // ---- the redirect edge through its published port ----------------------------------------
    // It has no container check (plain HTTP: the image has no curl, and grpc-health-probe speaks
    // only gRPC), so its health is asked here, from the host, as the README says.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let edge = format!("http://127.0.0.1:{}", port("redirect", 8090));
    let health = eventually(
        Duration::from_secs(60),
        "the redirect edge answers GET /healthz",
        || {
            let (http, url) = (http.clone(), format!("{edge}/healthz"));
            async move {
                let response = http.get(url).send().await.ok()?;
                (response.status() == 200).then_some(response.text().await.ok()?)
            }
        },
    )
    .await;
    assert!(health.starts_with("ok"), "GET /healthz: {health}");
    let unknown = http
        .get(format!("{edge}/c/{UNKNOWN_CODE}"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404, "GET /c/{UNKNOWN_CODE}");
    println!(
        "containers: the redirect edge is healthy (GET /healthz: {}) and answers 404 for an unknown link",
        health.trim()
    );

    // ---- the README's workflow through the published ports ----------------------------------
    let t = Instant::now();
    let url = |service: &str, target: u64| format!("http://127.0.0.1:{}", port(service, target));
    let creator = Uuid::new_v4().to_string();
    let mut campaigns = CampaignServiceClient::connect(url("campaign", 50051))
        .await
        .unwrap();
    let mut create = Request::new(campaign_pb::CreateCampaignRequest {
        advertiser_id: ADVERTISER.into(),
        name: "Summer launch".into(),
        description: "in containers".into(),
        commission_rate_bps: 1250,
        budget: Some(Money {
            amount_minor: 500_000,
            currency: "EUR".into(),
        }),
        tracking: None,
        // a payout follows
        hold_period: e2e::NO_HOLD,
    });
    create.metadata_mut().insert(
        "idempotency-key",
        format!("create-{creator}").parse().unwrap(),
    );
    let campaign = campaigns
        .create_campaign(create)
        .await
        .unwrap()
        .into_inner()
        .campaign
        .unwrap()
        .id;
    campaigns
        .accept_campaign(campaign_pb::AcceptCampaignRequest {
            campaign_id: campaign.clone(),
            creator_id: creator.clone(),
            accepted_terms: true,
        })
        .await
        .unwrap();
    let tracking = TrackingServiceClient::connect(url("tracking", 50052))
        .await
        .unwrap();
    // the acceptance reaches tracking through the broker: a purchase before it is refused
    let purchase = tracking_pb::CreateEventRequest {
        campaign_id: campaign.clone(),
        creator_id: creator.clone(),
        kind: tracking_pb::TrackingEventKind::Purchase.into(),
        amount: money(20_000),
        product_id: String::new(),
        occurred_at: None,
    };
    eventually(
        Duration::from_secs(60),
        "tracking takes the purchase",
        || {
            let (mut tracking, purchase) = (tracking.clone(), purchase.clone());
            async move { tracking.create_event(purchase).await.ok() }
        },
    )
    .await;
    let commission = CommissionServiceClient::connect(url("commission", 50053))
        .await
        .unwrap();
    let balance = eventually(
        Duration::from_secs(60),
        "the commission (tracking → relay → Pulsar → commission)",
        || {
            let mut commission = commission.clone();
            let request = commission_pb::GetBalanceRequest {
                creator_id: creator.clone(),
                currency: "EUR".into(),
            };
            async move {
                let balance = commission
                    .get_balance(request)
                    .await
                    .ok()?
                    .into_inner()
                    .balance?;
                (balance.available_minor > 0).then_some(balance.available_minor)
            }
        },
    )
    .await;
    assert_eq!(balance, 2_500, "12.5 % of 200.00 EUR");
    let mut payments = PaymentServiceClient::connect(url("payment", 50054))
        .await
        .unwrap();
    let payout = payments
        .request_payout(payment_pb::RequestPayoutRequest {
            creator_id: creator.clone(),
            amount: money(2_000),
            method: payment_pb::PayoutMethod::BankTransfer.into(),
            account_details: "DE89370400440532013000".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .payout
        .unwrap()
        .id;
    eventually(Duration::from_secs(60), "the payout completes", || {
        let mut payments = payments.clone();
        let request = payment_pb::GetPayoutRequest {
            payout_id: payout.clone(),
        };
        async move {
            let status = payments
                .get_payout(request)
                .await
                .ok()?
                .into_inner()
                .payout?
                .status;
            (status == payment_pb::PayoutStatus::Completed as i32).then_some(())
        }
    })
    .await;

    // REST, with a token minted inside the BFF's container as the README shows
    let token = must(
        "compose exec bff bff token",
        compose(
            Some(&override_file),
            &[
                "exec",
                "-T",
                "bff",
                "bff",
                "token",
                "--sub",
                ADVERTISER,
                "--role",
                "advertiser",
            ],
            Duration::from_secs(60),
        ),
    );
    let bff = url("bff", 8088);
    let got = http
        .get(format!("{bff}/api/v1/campaigns/{campaign}"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200, "GET /api/v1/campaigns/{campaign}");
    let body: Value = got.json().await.unwrap();
    assert_eq!(body["campaign"]["id"], campaign.as_str(), "{body}");
    let services: Value = http
        .get(format!("{bff}/health/services"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(services["status"], "SERVING", "{services}");
    let viewer = http.get(url("trace-viewer", 16686)).send().await.unwrap();
    assert_eq!(viewer.status(), 200, "the trace viewer's UI");
    let dlq = compose(
        Some(&override_file),
        &["run", "--rm", "platform", "dlq", "topics"],
        Duration::from_secs(120),
    );
    must("compose run --rm platform dlq topics", dlq);
    let workflow_secs = t.elapsed().as_secs_f64();

    // ---- stop: dependents first, every process of ours exits 0 on SIGTERM ---------------------
    let t = Instant::now();
    let stop = compose(Some(&override_file), &["stop"], Duration::from_secs(120));
    save_logs(&override_file);
    must("compose stop", stop);
    let stop_secs = t.elapsed().as_secs_f64();
    for service in OURS {
        let name = format!("{PROJECT}-{service}-1");
        let code = must(
            "podman inspect",
            podman(&["inspect", "--format", "{{.State.ExitCode}}", &name]),
        );
        assert_eq!(code.trim(), "0", "{service} exited with {code} on SIGTERM");
    }
    drop(project);
    println!(
        "containers: image packed in {image_secs:.1} s, up --wait {up_secs:.1} s, workflow to a completed payout + REST + trace viewer + dlq in {workflow_secs:.1} s, stop {stop_secs:.1} s, all with down -v {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
