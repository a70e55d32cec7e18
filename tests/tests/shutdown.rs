//! A service asked to stop exits within its shutdown grace even when PostgreSQL and the broker
//! are already gone, as when an orchestrator stops everything at once (podman-compose did, and
//! Kubernetes orders no pod stops): the broker SIGKILLed (`deploy/local/pulsar.sh kill`),
//! PostgreSQL stopped (`deploy/local/postgres.sh down`), with messages in flight that wait on the
//! database, then SIGTERM. Every process must be gone within [`GRACE`] plus [`MARGIN`]; what it
//! had not acknowledged is redelivered later.
//!
//! The test stops the shared broker and PostgreSQL that `deploy/local` runs and starts them again
//! at the end, passed or failed ([`Outage`]), so it is the only test of its binary: nothing else
//! may use them meanwhile (`cargo test -p e2e --test shutdown`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use prost::Message as _;
use uuid::Uuid;

use affiliate_proto::common::status_service_client::StatusServiceClient;
use affiliate_proto::common::{GetStatusRequest, MessageMetadata};
use e2e::faults::script;
use e2e::process::{Process, binary};
use e2e::{TestDatabase, eventually};

/// The processes' `SHUTDOWN_GRACE`.
const GRACE: Duration = Duration::from_secs(3);
/// What exiting may take beyond the grace (abandoning the parts still running, flushing logs).
const MARGIN: Duration = Duration::from_millis(1500);
/// The services that consume (tracking and payment open their command doors in hybrid mode).
const SERVICES: [&str; 5] = [
    "tracking",
    "commission",
    "payment",
    "notification",
    "analytics",
];
/// Messages published to each followed topic while the database is away: they wait in the
/// consumers' transactions when SIGTERM comes.
const IN_FLIGHT: usize = 4;
const STARTUP: Duration = Duration::from_secs(60);

/// Brings the broker and PostgreSQL back when dropped, whatever the test's outcome. Declared
/// after the databases and the namespace, so it is dropped before them (their clean-up needs
/// both servers).
struct Outage;

impl Drop for Outage {
    fn drop(&mut self) {
        script("postgres.sh", &["up"]);
        script("pulsar.sh", &["up"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_exit_within_their_grace_when_the_broker_and_database_are_gone() {
    let logs = e2e::fresh_log_dir("shutdown");
    let namespace = e2e::fresh_namespace().await;
    let mut databases: Vec<(&str, TestDatabase)> = Vec::new();
    for service in SERVICES {
        let db = e2e::fresh_database(&format!("shutdown_{service}")).await;
        databases.push((service, db));
    }
    let mut processes: Vec<Process> = Vec::new();
    for (service, db) in &databases {
        let mut env = e2e::broker_env();
        env.extend([
            ("PULSAR_TENANT", e2e::pulsar_tenant()),
            ("PULSAR_NAMESPACE", namespace.to_string()),
            ("PULSAR_ADMIN_URL", e2e::broker().admin_url),
            ("DATABASE_URL", db.url.clone()),
            ("GRPC_LISTEN", "127.0.0.1:0".into()),
            ("MODE", "hybrid".into()),
            ("SHUTDOWN_GRACE", format!("{}ms", GRACE.as_millis())),
        ]);
        let name = format!("{service}-service");
        let process = Process::start(&name, &binary(&name), &[], &env, &logs);
        processes.push(process);
    }
    for process in &mut processes {
        let addr = process.wait_for_grpc_addr(STARTUP);
        consuming(&process.name, &format!("http://{addr}")).await;
    }

    // Arrange: the database gone, messages in the consumers' hands waiting on it, then the
    // broker gone.
    let outage = Outage;
    script("postgres.sh", &["down"]);
    let client = e2e::pulsar().await;
    let followed = [
        (
            "campaign-events",
            "campaign.created.v1",
            vec!["tracking", "commission", "notification", "analytics"],
        ),
        (
            "commission-events",
            "commission.calculated.v1",
            vec!["payment", "notification", "analytics"],
        ),
    ];
    for (topic, message_type, _) in &followed {
        for _ in 0..IN_FLIGHT {
            let (message_id, key) = (Uuid::now_v7().to_string(), Uuid::new_v4().to_string());
            // Every envelope of the platform starts with its metadata (field 1).
            let envelope = MessageMetadata {
                message_id: message_id.clone(),
                message_type: (*message_type).to_owned(),
                aggregate_id: key.clone(),
                aggregate_version: 1,
                ..Default::default()
            };
            let payload = Envelope {
                metadata: Some(envelope),
            }
            .encode_to_vec();
            e2e::publish(
                &client,
                &namespace.topic(topic),
                &key,
                &message_id,
                message_type,
                "shutdown",
                payload,
            )
            .await;
        }
    }
    for (topic, _, subscriptions) in &followed {
        for subscription in subscriptions {
            delivered(&namespace, topic, subscription).await;
        }
    }
    drop(client);
    script("pulsar.sh", &["kill"]);

    // Act: SIGTERM to every process at once.
    let asked = Instant::now();
    for process in &mut processes {
        process.signal("TERM");
    }
    let bound = GRACE + MARGIN;
    let mut exits: Vec<(String, Option<Duration>, String)> = Vec::new();
    let deadline = asked + bound + Duration::from_secs(5);
    let mut running: Vec<&mut Process> = processes.iter_mut().collect();
    while !running.is_empty() && Instant::now() < deadline {
        running.retain_mut(|process| match process.exit_status() {
            Some(status) => {
                let log = process.log.display().to_string();
                exits.push((
                    process.name.clone(),
                    Some(asked.elapsed()),
                    format!("{status}; see {log}"),
                ));
                false
            }
            None => true,
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for process in running {
        let log = process.log.display().to_string();
        exits.push((
            process.name.clone(),
            None,
            format!("still running; see {log}"),
        ));
        process.kill();
    }
    for (name, took, how) in &exits {
        println!("{name}: exited after {took:?} ({how})");
    }

    // Assert (the servers come back whatever the outcome: `outage` is dropped on a panic too).
    let late: Vec<String> = exits
        .iter()
        .filter(|(_, took, _)| took.is_none_or(|took| took > bound))
        .map(|(name, took, how)| format!("{name} after {took:?} ({how})"))
        .collect();
    drop(outage);
    assert!(
        late.is_empty(),
        "every service exits within its shutdown grace of {GRACE:?} (+{MARGIN:?}) after SIGTERM \
         with the broker and PostgreSQL gone; these did not: {late:#?}"
    );
}

/// The head every envelope of the platform shares: `MessageMetadata metadata = 1`.
#[derive(Clone, PartialEq, prost::Message)]
struct Envelope {
    #[prost(message, optional, tag = "1")]
    metadata: Option<MessageMetadata>,
}

/// Waits until every subscription of the service at `url` is consuming, as its `GetStatus` says.
async fn consuming(name: &str, url: &str) {
    eventually(
        STARTUP,
        &format!("{name}: every subscription consuming"),
        || async {
            let mut client = StatusServiceClient::connect(url.to_owned()).await.ok()?;
            let status = client
                .get_status(GetStatusRequest {})
                .await
                .ok()?
                .into_inner();
            let ready = status.pulsar.as_ref().is_some_and(|p| p.reachable)
                && !status.subscriptions.is_empty()
                && status.subscriptions.iter().all(|s| s.state == "consuming");
            ready.then_some(())
        },
    )
    .await;
}

/// Waits until the broker has handed the messages published to `topic` to `subscription`'s
/// consumer (those it cannot apply without the database are in flight).
async fn delivered(namespace: &str, topic: &str, subscription: &str) {
    let path = format!(
        "/admin/v2/persistent/{}/{namespace}/{topic}/stats",
        e2e::pulsar_tenant()
    );
    eventually(
        Duration::from_secs(20),
        &format!("{topic} delivered to {subscription}"),
        || async {
            let (status, body) = e2e::http_request("GET", &path, "").await;
            let stats: serde_json::Value = serde_json::from_str(&body).ok()?;
            let out = stats["subscriptions"][subscription]["msgOutCounter"].as_u64();
            (status == 200 && out.is_some_and(|n| n >= IN_FLIGHT as u64)).then_some(())
        },
    )
    .await;
}
