//! The whole platform as real processes for one test: campaign, tracking, commission, payment
//! and notification services (each with a fresh database), the analytics service when asked for
//! ([`Platform::start_with_analytics`]), and one relay for the four outboxes that publish, all
//! in a Pulsar namespace of the test's own. Processes are killed when the `Platform` is dropped; their logs
//! are kept under `target/test-logs/<test>/`.

#![allow(clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::process::{Process, binary};
use crate::{
    TestDatabase, TestNamespace, broker_env, fresh_database, fresh_log_dir, fresh_namespace,
    pulsar_tenant,
};

/// The services that publish (an outbox, a command and an events topic each), in start order.
pub const SERVICES: [&str; 4] = ["campaign", "tracking", "commission", "payment"];

/// The notification service: it follows the others' events and publishes nothing (its outbox
/// stays empty, so the relay does not serve it). Started after [`SERVICES`].
pub const NOTIFICATION: &str = "notification";

/// The analytics service: it follows every topic and publishes nothing. Started last, by
/// [`Platform::start_with_analytics`] and [`Platform::start_whole`] (the fault runs, whose
/// statistics must equal the services' own numbers after the fault).
pub const ANALYTICS: &str = "analytics";

/// The webhook service: it follows the four services' events, delivers them to partners'
/// endpoints, and publishes `webhook-events` (the relay serves its outbox too when it runs).
/// Started by [`Platform::start_with_webhooks`].
pub const WEBHOOK: &str = "webhook";

/// The tests' key sealing webhook secrets at rest (`WEBHOOK_SECRET_KEYS`), unless a test gives
/// its own.
pub const WEBHOOK_SECRET_KEYS: &str = "tests-webhook-secret-key-0123456789abcdef";

const STARTUP: Duration = Duration::from_secs(60);

/// Dropped in field order: the processes are killed first, then the namespace and the
/// databases are deleted.
pub struct Platform {
    processes: HashMap<String, Process>,
    pub namespace: TestNamespace,
    pub databases: HashMap<&'static str, TestDatabase>,
    pub grpc: HashMap<&'static str, SocketAddr>,
    /// Prometheus endpoints by process name, when started with metrics on.
    pub metrics: HashMap<String, SocketAddr>,
    pub logs: PathBuf,
    mode: String,
    /// Added to every process's environment (e.g. tracing and metrics settings).
    extra_env: Vec<(&'static str, String)>,
    /// The services that consume but publish nothing: notification, and analytics if started.
    followers: Vec<&'static str>,
    /// The redirect edge's HTTP address, once started ([`Platform::start_redirect`]).
    pub redirect: Option<SocketAddr>,
}

impl Platform {
    /// Starts everything in `mode` (`grpc`, `events` or `hybrid`) and waits until each service
    /// serves gRPC and the relay leads every outbox.
    pub async fn start(test: &str, mode: &str) -> Self {
        Self::start_with(test, mode, Vec::new()).await
    }

    /// Like [`Platform::start`], with the analytics service too.
    pub async fn start_with_analytics(test: &str, mode: &str) -> Self {
        Self::start_followed(test, mode, Vec::new(), &[NOTIFICATION, ANALYTICS]).await
    }

    /// Like [`Platform::start`], with `extra_env` for every process. With `METRICS_LISTEN`
    /// among them, each process's metrics address lands in [`Platform::metrics`].
    pub async fn start_with(
        test: &str,
        mode: &str,
        extra_env: Vec<(&'static str, String)>,
    ) -> Self {
        Self::start_followed(test, mode, extra_env, &[NOTIFICATION]).await
    }

    /// Like [`Platform::start_with`], with the analytics service too: the whole platform.
    pub async fn start_whole(
        test: &str,
        mode: &str,
        extra_env: Vec<(&'static str, String)>,
    ) -> Self {
        Self::start_followed(test, mode, extra_env, &[NOTIFICATION, ANALYTICS]).await
    }

    /// Like [`Platform::start_with`], with the webhook service too (`extra_env` also reaches it,
    /// e.g. `WEBHOOK_RETRY_SCHEDULE`).
    pub async fn start_with_webhooks(
        test: &str,
        mode: &str,
        extra_env: Vec<(&'static str, String)>,
    ) -> Self {
        Self::start_followed(test, mode, extra_env, &[NOTIFICATION, WEBHOOK]).await
    }

    /// Every service the BFF calls: the four, notification, analytics and the webhook service
    /// (partners' receivers on loopback over plain http allowed), with `extra_env`.
    pub async fn start_all(test: &str, mode: &str, extra_env: Vec<(&'static str, String)>) -> Self {
        let mut env = vec![
            ("WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8".to_owned()),
            ("WEBHOOK_ALLOW_HTTP", "true".to_owned()),
        ];
        env.extend(extra_env);
        Self::start_followed(test, mode, env, &[NOTIFICATION, ANALYTICS, WEBHOOK]).await
    }

    async fn start_followed(
        test: &str,
        mode: &str,
        extra_env: Vec<(&'static str, String)>,
        followers: &[&'static str],
    ) -> Self {
        let logs = fresh_log_dir(test);
        let namespace = fresh_namespace().await;
        let mut databases = HashMap::new();
        for service in SERVICES.iter().chain(followers).copied() {
            databases.insert(service, fresh_database(&format!("{test}_{service}")).await);
        }
        let mut platform = Self {
            processes: HashMap::new(),
            namespace,
            databases,
            grpc: HashMap::new(),
            metrics: HashMap::new(),
            logs,
            mode: mode.to_owned(),
            extra_env,
            followers: followers.to_vec(),
            redirect: None,
        };
        for service in SERVICES.iter().chain(followers).copied() {
            platform.start_service(service);
        }
        platform.start_relay("relay");
        platform
    }

    fn common_env(&self) -> Vec<(&'static str, String)> {
        // First, so that a test's own `extra_env` wins.
        let mut env = vec![("WEBHOOK_SECRET_KEYS", WEBHOOK_SECRET_KEYS.to_owned())];
        env.extend(self.extra_env.iter().cloned());
        env.extend(broker_env());
        env.extend([
            ("PULSAR_TENANT", pulsar_tenant()),
            ("PULSAR_NAMESPACE", self.namespace.to_string()),
            ("RETRY_MIN_BACKOFF", "50ms".into()),
            ("RETRY_MAX_BACKOFF", "500ms".into()),
            ("MAX_REDELIVERIES", "50".into()),
            ("SHUTDOWN_GRACE", "5s".into()),
        ]);
        env
    }

    /// Reads the metrics address a process logs first, if metrics are on.
    fn note_metrics(&mut self, name: &str, process: &mut Process) {
        if self.extra_env.iter().any(|(k, _)| *k == "METRICS_LISTEN") {
            let addr = process.wait_for_addr("metrics endpoint listening", "addr", STARTUP);
            self.metrics.insert(name.to_owned(), addr);
        }
    }

    /// Starts (or restarts) one service process and waits for its gRPC address.
    pub fn start_service(&mut self, service: &'static str) -> SocketAddr {
        let mut env = self.common_env();
        env.push(("MODE", self.mode.clone()));
        env.push(("DATABASE_URL", self.databases[service].url.clone()));
        // A restart keeps the port, so clients keep working.
        let listen = self
            .grpc
            .get(service)
            .map_or_else(|| "127.0.0.1:0".to_owned(), ToString::to_string);
        env.push(("GRPC_LISTEN", listen));
        env.push(("SAGA_RESUME_INTERVAL", "1s".into()));
        env.push(("SANDBOX_SLOW_DELAY", "3s".into()));
        env.push(("PULSAR_ADMIN_URL", crate::broker().admin_url));
        env.push(("LAG_INTERVAL", "1s".into()));
        let name = format!("{service}-service");
        let mut process = Process::start(&name, &binary(&name), &[], &env, &self.logs);
        self.note_metrics(&name, &mut process);
        let addr = process.wait_for_grpc_addr(STARTUP);
        self.grpc.insert(service, addr);
        self.processes.insert(name, process);
        addr
    }

    /// Starts a second process of `service` on the same database and topics (a replica): the
    /// Key_Shared subscriptions split the keys between the two.
    pub fn start_replica(&mut self, service: &'static str) {
        let mut env = self.common_env();
        env.push(("MODE", self.mode.clone()));
        env.push(("DATABASE_URL", self.databases[service].url.clone()));
        env.push(("GRPC_LISTEN", "127.0.0.1:0".into()));
        env.push(("SAGA_RESUME_INTERVAL", "1s".into()));
        env.push(("PULSAR_ADMIN_URL", crate::broker().admin_url));
        let name = format!("{service}-service");
        let replica = format!("{name}-replica");
        let mut process = Process::start(&replica, &binary(&name), &[], &env, &self.logs);
        process.wait_for_grpc_addr(STARTUP);
        self.processes.insert(replica, process);
    }

    /// The services whose outboxes the relay serves: [`SERVICES`], and the webhook service if
    /// it runs.
    fn publishers(&self) -> Vec<&'static str> {
        let mut publishers = SERVICES.to_vec();
        if self.followers.contains(&WEBHOOK) {
            publishers.push(WEBHOOK);
        }
        publishers
    }

    /// Starts (or restarts) the relay for the outboxes of [`Platform::publishers`].
    pub fn start_relay(&mut self, name: &str) {
        let publishers = self.publishers();
        let outboxes: Vec<String> = publishers
            .iter()
            .map(|s| format!("{s}={}", self.databases[s].url))
            .collect();
        let mut env = self.common_env();
        env.push(("RELAY_OUTBOXES", outboxes.join(",")));
        env.push(("RELAY_POLL_INTERVAL", "100ms".into()));
        env.push(("RELAY_STANDBY_INTERVAL", "100ms".into()));
        let mut process = Process::start(name, &binary("relay"), &[], &env, &self.logs);
        self.note_metrics(name, &mut process);
        for _ in &publishers {
            process.wait_for_line("leading: publishing this outbox", STARTUP);
        }
        self.processes.insert(name.to_owned(), process);
    }

    /// Starts (or restarts, on the same port) the redirect edge on tracking's database, with
    /// `env` added (e.g. `REDIRECT_RATE_LIMIT`); returns its HTTP address.
    pub fn start_redirect(&mut self, env: &[(&'static str, String)]) -> SocketAddr {
        let mut all = self.common_env();
        all.push(("DATABASE_URL", self.databases["tracking"].url.clone()));
        all.push(("CLICK_IP_SALT", "test-salt-0123456789abcdef".into()));
        let listen = self
            .redirect
            .map_or_else(|| "127.0.0.1:0".to_owned(), |a| a.to_string());
        all.push(("REDIRECT_LISTEN", listen));
        all.extend(env.iter().cloned());
        let mut process = Process::start("redirect", &binary("redirect"), &[], &all, &self.logs);
        let addr = process.wait_for_addr("redirect started", "http", STARTUP);
        self.redirect = Some(addr);
        self.processes.insert("redirect".to_owned(), process);
        addr
    }

    /// SIGKILLs a process by name (e.g. `payment-service`, `relay`).
    pub fn kill(&mut self, name: &str) {
        if let Some(process) = self.processes.get_mut(name) {
            process.kill();
        }
    }

    /// Sends a signal (`STOP`, `CONT`, …) to a process by name: `STOP` freezes it with its
    /// connections open, `CONT` lets it go on.
    pub fn signal(&mut self, name: &str, signal: &str) {
        let process = self
            .processes
            .get_mut(name)
            .unwrap_or_else(|| panic!("no process named {name}"));
        process.signal(signal);
    }

    /// The full name of a topic in this platform's namespace.
    pub fn topic(&self, short: &str) -> String {
        self.namespace.topic(short)
    }

    pub fn url(&self, service: &str) -> String {
        format!("http://{}", self.grpc[service])
    }

    /// Runs the operators' check of the commission ledger, `platform verify ledger`, against
    /// this platform and asserts the books balance (exit status 0); returns what it printed.
    pub fn assert_books_balance(&self) -> String {
        let output = std::process::Command::new(crate::process::binary("platform"))
            .args([
                "verify",
                "ledger",
                "--commission-url",
                &self.url("commission"),
            ])
            .output()
            .expect("run platform verify ledger");
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "platform verify ledger: the books do not balance ({}):\n{printed}",
            output.status
        );
        printed
    }

    /// The lines of every process's log (this test's) that contain `needle`.
    pub fn log_lines_containing(&self, needle: &str) -> Vec<String> {
        self.processes
            .values()
            .flat_map(|process| {
                std::fs::read_to_string(&process.log)
                    .unwrap_or_default()
                    .lines()
                    .filter(|line| line.contains(needle))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Asserts every process is still running (none crashed during the test).
    pub fn assert_all_running(&mut self) {
        for process in self.processes.values_mut() {
            assert!(
                process.is_running(),
                "{} exited; see {}",
                process.name,
                process.log.display()
            );
        }
    }
}

impl Platform {
    /// Whether everything has been delivered and processed: every outbox is empty and every
    /// durable subscription on every command and events topic has no backlog and nothing
    /// unacknowledged. (Non-durable subscriptions are the tests' own watchers, not the platform.)
    pub async fn drained(&self) -> bool {
        self.busy().await.is_empty()
    }

    /// Waits (at most `within`) until every service has reached the broker and each of its
    /// subscriptions is consuming, as its `GetStatus` tells: for tests whose clock starts with the
    /// first command (a new namespace's topics take seconds to be created on a cluster).
    pub async fn consuming(&self, within: Duration) {
        use affiliate_proto::common::GetStatusRequest;
        use affiliate_proto::common::status_service_client::StatusServiceClient;
        let deadline = std::time::Instant::now() + within;
        for service in SERVICES.iter().chain(&self.followers).copied() {
            let url = self.url(service);
            loop {
                let status = match StatusServiceClient::connect(url.clone()).await {
                    Ok(mut client) => client.get_status(GetStatusRequest {}).await.ok(),
                    Err(_) => None,
                }
                .map(tonic::Response::into_inner);
                let ready = status.as_ref().is_some_and(|s| {
                    s.pulsar.as_ref().is_some_and(|p| p.reachable)
                        && !s.subscriptions.is_empty()
                        && s.subscriptions.iter().all(|sub| sub.state == "consuming")
                });
                if ready {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{service}: every subscription consuming within {within:?}; status: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// What is not drained yet, one line each (an outbox, a subscription, a topic without stats).
    pub async fn busy(&self) -> Vec<String> {
        let mut busy = Vec::new();
        for service in SERVICES {
            let pending: i64 = sqlx::query_scalar("select count(*) from outbox")
                .fetch_one(&self.databases[service].pool)
                .await
                .unwrap_or(1);
            if pending > 0 {
                busy.push(format!("{service} outbox: {pending} rows"));
            }
            for kind in ["commands", "events"] {
                let path = format!(
                    "/admin/v2/persistent/{}/{}/{service}-{kind}/stats",
                    pulsar_tenant(),
                    &*self.namespace
                );
                let (status, body) = crate::http_request("GET", &path, "").await;
                if status == 404 {
                    continue; // never published to
                }
                let Ok(stats) = serde_json::from_str::<serde_json::Value>(&body) else {
                    busy.push(format!(
                        "{service}-{kind}: stats unreadable (HTTP {status})"
                    ));
                    continue;
                };
                let Some(subs) = stats["subscriptions"].as_object() else {
                    busy.push(format!("{service}-{kind}: no subscriptions in the stats"));
                    continue;
                };
                for (name, s) in subs {
                    if s["isDurable"].as_bool() == Some(false) {
                        continue;
                    }
                    let backlog = s["msgBacklog"].as_i64();
                    let unacked = s["unackedMessages"].as_i64().unwrap_or(0);
                    if backlog != Some(0) || unacked != 0 {
                        busy.push(format!(
                            "{service}-{kind}/{name}: backlog {backlog:?}, unacked {unacked}, consumers {}",
                            s["consumers"].as_array().map_or(0, Vec::len)
                        ));
                    }
                }
            }
        }
        busy
    }
}
