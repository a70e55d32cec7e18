//! The platform on the secured broker (`PULSAR_SECURE=1 deploy/local/pulsar.sh up`: TLS only,
//! token authentication and authorization; `tests/run.sh` starts it beside the plain one): every
//! process connects over `pulsar+ssl://` with the broker's CA and the platform role's token file,
//! each test namespace is created with the superuser token and granted to that role only.
//!
//! - The business workflow runs to its end: commissions, a paid, a failed and a rejected payout.
//! - A service started with a missing, expired or wrongly signed token stays up: it says why in
//!   its log and in `GetStatus`, its gRPC health is NOT_SERVING, it tries again with back-off
//!   (no crash loop), and once the right token is in its token file it connects and serves.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Duration;

use affiliate_proto::common::GetStatusRequest;
use affiliate_proto::common::status_service_client::StatusServiceClient;
use e2e::platform::Platform;
use e2e::process::{Process, binary};
use e2e::workflow::{Door, Driver, business_workflow};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const START_HINT: &str = "start the secured broker with `PULSAR_SECURE=1 deploy/local/pulsar.sh up` \
     and set TEST_SECURE_PULSAR_URL, TEST_SECURE_PULSAR_ADMIN_URL and TEST_SECURE_PULSAR_TLS_DIR \
     (tests/run.sh does)";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: {START_HINT}"))
}

fn tls_dir() -> PathBuf {
    let dir = PathBuf::from(env("TEST_SECURE_PULSAR_TLS_DIR"));
    assert!(
        dir.join("ca.crt").exists(),
        "no ca.crt in {}: {START_HINT}",
        dir.display()
    );
    dir
}

/// Every helper of this test process on the secured broker, as the role `platform`.
fn secured() {
    let dir = tls_dir();
    e2e::use_broker(e2e::Broker {
        url: env("TEST_SECURE_PULSAR_URL"),
        admin_url: env("TEST_SECURE_PULSAR_ADMIN_URL"),
        tls_ca_file: Some(dir.join("ca.crt")),
        token_file: Some(dir.join("platform.token")),
        admin_token_file: Some(dir.join("admin.token")),
        app_role: Some("platform".into()),
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_business_workflow_runs_on_the_secured_broker() {
    secured();
    let mut platform = Platform::start("secure_workflow", "hybrid").await;
    let mut driver = Driver::new(&platform, Door::Grpc).await;
    let outcome = business_workflow(&mut driver).await;
    assert_eq!(outcome.statuses, ["completed", "failed", "rejected"]);
    println!(
        "secure workflow: campaign {}, {} purchases, payouts {:?}",
        outcome.campaign,
        outcome.purchases.len(),
        outcome.statuses
    );
    platform.assert_all_running();
}

async fn health(addr: std::net::SocketAddr) -> ServingStatus {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let status = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    ServingStatus::try_from(status).unwrap()
}

async fn pulsar_detail(addr: std::net::SocketAddr) -> String {
    let mut client = StatusServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let status = client
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    status.pulsar.map(|p| p.detail).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_leaves_a_service_up_and_not_serving_until_the_token_is_right() {
    secured();
    let dir = tls_dir();
    let logs = e2e::log_dir("secure_refused_token");
    let namespace = e2e::fresh_namespace().await;
    let work = std::env::temp_dir().join(format!("refused-token-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&work).unwrap();
    let cases = [
        ("missing", None),
        ("expired", Some("expired.token")),
        ("forged", Some("forged.token")),
    ];
    let mut running = Vec::new();
    for (case, source) in cases {
        let token_file = work.join(format!("{case}.token"));
        if let Some(source) = source {
            std::fs::copy(dir.join(source), &token_file).unwrap();
        }
        let database = e2e::fresh_database(&format!("secure_refused_{case}")).await;
        let env = [
            ("MODE", "hybrid".to_owned()),
            ("DATABASE_URL", database.url.clone()),
            ("GRPC_LISTEN", "127.0.0.1:0".to_owned()),
            ("HEALTH_CHECK_INTERVAL", "500ms".to_owned()),
            ("PULSAR_URL", env("TEST_SECURE_PULSAR_URL")),
            ("PULSAR_TENANT", e2e::pulsar_tenant()),
            ("PULSAR_NAMESPACE", namespace.to_string()),
            (
                "PULSAR_TLS_CA_FILE",
                dir.join("ca.crt").display().to_string(),
            ),
            ("PULSAR_TOKEN_FILE", token_file.display().to_string()),
            ("PULSAR_CONNECT_TIMEOUT", "5s".to_owned()),
        ];
        let name = format!("campaign-service-{case}");
        let mut process = Process::start(&name, &binary("campaign-service"), &[], &env, &logs);
        let addr = process.wait_for_grpc_addr(Duration::from_secs(60));
        running.push((case, token_file, database, process, addr));
    }

    for (case, _, _, process, addr) in &mut running {
        // The reason, in the log and in the status, and tried again: not once and exit.
        let line = process.wait_for_line("cannot connect to Pulsar", Duration::from_secs(60));
        let again = process.wait_for_line("cannot connect to Pulsar", Duration::from_secs(60));
        let expected = if *case == "missing" {
            "read the Pulsar token file"
        } else {
            "authentication failure"
        };
        assert!(
            line.contains(expected),
            "{case}: the log says why ({expected}): {line}"
        );
        let attempt = |line: &str| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["attempt"]
                .as_u64()
                .unwrap()
        };
        assert!(
            attempt(&again) > attempt(&line),
            "{case}: tried again: {again}"
        );
        assert!(process.is_running(), "{case}: the service is still up");
        assert_eq!(
            health(*addr).await,
            ServingStatus::NotServing,
            "{case}: health is NOT_SERVING while the broker refuses it"
        );
        let detail = pulsar_detail(*addr).await;
        assert!(
            detail.contains(expected),
            "{case}: GetStatus says why: {detail}"
        );
        let token = std::fs::read_to_string(tls_dir().join("platform.token")).unwrap();
        assert!(
            !line.contains(token.trim()) && !detail.contains(token.trim()),
            "{case}: no token in the log or the status"
        );
        println!("{case} token: refused, still up, NOT_SERVING: {detail}");
    }

    // The right token into each file: the next attempt connects (the file is read again).
    for (_, token_file, _, _, _) in &running {
        std::fs::copy(dir.join("platform.token"), token_file).unwrap();
    }
    for (case, _, _, process, addr) in &mut running {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while health(*addr).await != ServingStatus::Serving {
            assert!(
                std::time::Instant::now() < deadline,
                "{case}: serving within 60 s of the right token (log {})",
                process.log.display()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(process.is_running());
        println!("{case} token replaced by the right one: SERVING");
    }
    std::fs::remove_dir_all(&work).unwrap();
}
