//! The test harness shared by the end-to-end tests and the services' integration tests: a fresh
//! PostgreSQL database per test, the real service and relay binaries as child processes (killed
//! on drop, their logs kept under `target/test-logs/`), Pulsar consumers, and a bounded
//! `eventually`. When PostgreSQL or Pulsar is not running, a test fails and says what to start.

#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod containers;
pub mod faults;
pub mod platform;
pub mod process;
pub mod rest;
pub mod statistics;
pub mod webhooks;
pub mod workflow;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, Executor as _, PgPool};
use uuid::Uuid;

/// A campaign's hold period of 0 (`CreateCampaignRequest.hold_period`): its commissions are
/// approved at once, so a creator's balance is available right after a purchase. Tests that pay
/// out or read available balances create their campaigns with it; absent, the hold is 30 days.
pub const NO_HOLD: Option<pbjson_types::Duration> = Some(pbjson_types::Duration {
    seconds: 0,
    nanos: 0,
});

/// What to run when infrastructure is missing.
pub const START_HINT: &str =
    "start it with `deploy/local/infra.sh up` (or run `tests/run.sh`, which does)";

/// Admin URL of the test PostgreSQL server (a role allowed to create databases).
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://platform:platform@127.0.0.1:55432/postgres".to_owned())
}

/// The broker a test process uses, when it is not the standalone broker of `TEST_PULSAR_URL`
/// and `TEST_PULSAR_ADMIN_URL` (see [`use_broker`]).
#[derive(Debug, Clone, Default)]
pub struct Broker {
    /// Service URL, e.g. the cluster's proxy `pulsar://127.0.0.1:6670`.
    pub url: String,
    /// Admin REST base URL.
    pub admin_url: String,
    /// A secured broker's CA (PEM), trusted by every client and process.
    pub tls_ca_file: Option<PathBuf>,
    /// The token file of the processes' role (`PULSAR_TOKEN_FILE`); the tests' own clients use
    /// it too.
    pub token_file: Option<PathBuf>,
    /// The token file of a superuser, for the admin API (namespaces, grants, stats).
    pub admin_token_file: Option<PathBuf>,
    /// The processes' role, granted produce and consume on each test's namespace.
    pub app_role: Option<String>,
}

/// The broker this process uses (see [`use_broker`]): the standalone broker unless set.
pub fn broker() -> Broker {
    BROKER.get().cloned().unwrap_or_else(|| Broker {
        url: pulsar_url(),
        admin_url: pulsar_admin_url(),
        ..Broker::default()
    })
}

/// Pulsar's admin API of [`broker`], with its CA and superuser token when it is secured.
pub fn admin() -> messaging::admin::Admin {
    let b = broker();
    messaging::admin::Admin::new(
        &b.admin_url,
        b.tls_ca_file.as_deref(),
        b.admin_token_file.map(messaging::admin::Token::File),
    )
    .unwrap_or_else(|e| panic!("the Pulsar admin client for {}: {e:#}", b.admin_url))
}

/// The environment that points a process at [`broker`]: its URL, and its CA and the role's
/// token file when it is secured.
pub fn broker_env() -> Vec<(&'static str, String)> {
    let b = broker();
    let mut env = vec![("PULSAR_URL", b.url)];
    if let Some(ca) = b.tls_ca_file {
        env.push(("PULSAR_TLS_CA_FILE", ca.display().to_string()));
    }
    if let Some(token) = b.token_file {
        env.push(("PULSAR_TOKEN_FILE", token.display().to_string()));
    }
    env
}

static BROKER: std::sync::OnceLock<Broker> = std::sync::OnceLock::new();

/// Points every helper of this process (service command lines, clients, namespaces, admin calls)
/// at `broker`. Call it first thing, in a test binary of its own: it is process-wide and set once.
pub fn use_broker(broker: Broker) {
    let wanted = broker.clone();
    let set = BROKER.get_or_init(|| broker);
    assert_eq!(
        (&set.url, &set.admin_url),
        (&wanted.url, &wanted.admin_url),
        "this test process already uses another broker"
    );
}

/// `message` as a gRPC request carrying `key` as its idempotency key.
///
/// # Panics
///
/// When `key` is not a valid header value (a test passes one).
pub fn with_key<T>(message: T, key: impl AsRef<str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = key
        .as_ref()
        .parse()
        .expect("an idempotency key is a header value");
    request.metadata_mut().insert("idempotency-key", value);
    request
}

/// `message` as a gRPC request, with `key` as its idempotency key when given.
pub fn maybe_keyed<T>(message: T, key: Option<&str>) -> tonic::Request<T> {
    match key {
        Some(key) => with_key(message, key),
        None => tonic::Request::new(message),
    }
}

/// Pulsar service URL for tests.
pub fn pulsar_url() -> String {
    if let Some(broker) = BROKER.get() {
        return broker.url.clone();
    }
    std::env::var("TEST_PULSAR_URL").unwrap_or_else(|_| "pulsar://127.0.0.1:6650".to_owned())
}

/// Tenant and namespace the tests publish in (created by `deploy/local/pulsar.sh up`).
pub fn pulsar_tenant() -> String {
    std::env::var("PULSAR_TENANT").unwrap_or_else(|_| "affiliate".to_owned())
}
pub fn pulsar_namespace() -> String {
    std::env::var("PULSAR_NAMESPACE").unwrap_or_else(|_| "platform".to_owned())
}
pub fn topic(short: &str) -> String {
    format!(
        "persistent://{}/{}/{short}",
        pulsar_tenant(),
        pulsar_namespace()
    )
}

/// The command line of a service under test: `binary`, its database, a free port, Pulsar with the
/// test's `namespace`, then `extra` flags.
pub fn service_args(
    binary: &str,
    database_url: &str,
    namespace: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = [
        binary,
        "--database-url",
        database_url,
        "--grpc-listen",
        "127.0.0.1:0",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(pulsar_args(namespace));
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    args
}

/// Pulsar admin REST base URL for tests.
pub fn pulsar_admin_url() -> String {
    if let Some(broker) = BROKER.get() {
        return broker.admin_url.clone();
    }
    std::env::var("TEST_PULSAR_ADMIN_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".to_owned())
}

/// A namespace `{tenant}/test-{uuid}` of one test, so its topics and subscriptions are shared
/// with no other test. Deleted, with every topic in it, when dropped (at the end of the test,
/// passed or failed).
#[derive(Debug)]
pub struct TestNamespace(String);

impl std::ops::Deref for TestNamespace {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl TestNamespace {
    /// The full name of the short `topic` in this namespace.
    pub fn topic(&self, short: &str) -> String {
        format!("persistent://{}/{}/{short}", pulsar_tenant(), self.0)
    }
}

impl std::fmt::Display for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let path = format!(
            "/admin/v2/namespaces/{}/{}?force=true",
            pulsar_tenant(),
            self.0
        );
        let admin = admin();
        let namespace = self.0.clone();
        outside_the_runtime(async move {
            match admin.request("DELETE", &path, "").await {
                Ok((200 | 204 | 404, _)) => {}
                Ok((status, body)) => {
                    eprintln!("could not delete test namespace {namespace}: HTTP {status} {body}")
                }
                Err(e) => eprintln!("could not delete test namespace {namespace}: {e:#}"),
            }
        });
    }
}

/// Runs `work` to its end on a runtime of its own in a thread of its own: for clean-up in
/// `Drop`, which may run inside a test's runtime (where blocking on it would panic).
fn outside_the_runtime<F>(work: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let _ = std::thread::spawn(move || {
        if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            runtime.block_on(work);
        }
    })
    .join();
}

/// Creates a [`TestNamespace`].
pub async fn fresh_namespace() -> TestNamespace {
    let namespace = format!("test-{}", Uuid::new_v4().simple());
    let path = format!("/admin/v2/namespaces/{}/{namespace}", pulsar_tenant());
    let (status, body) = http_request("PUT", &path, "{}").await;
    assert!(
        status == 204 || status == 200,
        "create namespace {namespace}: HTTP {status} {body}"
    );
    let namespace = TestNamespace(namespace);
    if let Some(role) = broker().app_role {
        let (status, body) = http_request(
            "POST",
            &format!("{path}/permissions/{role}"),
            r#"["produce","consume"]"#,
        )
        .await;
        assert!(
            status == 204 || status == 200,
            "grant produce and consume on {namespace} to {role}: HTTP {status} {body}"
        );
    }
    // As deploy/local/pulsar.sh does: keep dead letters even when nobody subscribed yet.
    let retention = r#"{"retentionTimeInMinutes":60,"retentionSizeInMB":256}"#;
    let (status, body) = http_request("POST", &format!("{path}/retention"), retention).await;
    assert!(
        status == 204 || status == 200,
        "set retention on {namespace}: HTTP {status} {body}"
    );
    // As deploy/local/pulsar.sh does: the schema compatibility strategy of the envelopes.
    let (status, body) = http_request(
        "PUT",
        &format!("{path}/schemaCompatibilityStrategy"),
        &format!("\"{SCHEMA_COMPATIBILITY}\""),
    )
    .await;
    assert!(
        status == 204 || status == 200,
        "set the schema compatibility strategy on {namespace}: HTTP {status} {body}"
    );
    // As deploy/local/platform.sh does (`platform schemas`): every envelope registered first.
    messaging::schema::register_all(&admin(), &pulsar_tenant(), &namespace)
        .await
        .unwrap_or_else(|e| panic!("register the envelopes' schemas in {namespace}: {e:#}"));
    namespace
}

/// The namespaces' schema compatibility strategy (`PULSAR_SCHEMA_COMPATIBILITY`,
/// deploy/local/env.sh).
pub const SCHEMA_COMPATIBILITY: &str = "FULL_TRANSITIVE";

/// A request to the Pulsar admin API; returns status and body.
pub async fn http_request(method: &str, path: &str, body: &str) -> (u16, String) {
    let admin = admin();
    admin.request(method, path, body).await.unwrap_or_else(|e| {
        panic!(
            "cannot reach the Pulsar admin API at {}: {e:#}; {START_HINT}",
            admin.url()
        )
    })
}

/// Publishes one message the way the relay does: keyed, with the message id, type and
/// correlation id as properties.
pub async fn publish(
    client: &pulsar::Pulsar<pulsar::TokioExecutor>,
    topic: &str,
    key: &str,
    message_id: &str,
    message_type: &str,
    correlation_id: &str,
    payload: Vec<u8>,
) {
    let properties = std::collections::HashMap::from([
        ("message-id".to_owned(), message_id.to_owned()),
        ("message-type".to_owned(), message_type.to_owned()),
        ("correlation-id".to_owned(), correlation_id.to_owned()),
    ]);
    let message = pulsar::producer::Message {
        payload,
        properties,
        partition_key: Some(key.to_owned()),
        ..Default::default()
    };
    client
        .send(topic, message)
        .await
        .unwrap_or_else(|e| panic!("send to {topic}: {e}"))
        .await
        .unwrap_or_else(|e| panic!("receipt from {topic}: {e}"));
}

/// Publishes a campaign event about `campaign` at aggregate `version` to `topic` (a test
/// namespace's `campaign-events`) as the relay would: keyed by the campaign, `message_id` in the
/// envelope and the properties.
pub async fn publish_campaign_event(
    client: &pulsar::Pulsar<pulsar::TokioExecutor>,
    topic: &str,
    message_id: &str,
    campaign: Uuid,
    version: i64,
    event: affiliate_proto::campaign::campaign_event::Event,
) {
    use prost::Message as _;
    let message_type = event.message_type();
    let envelope = affiliate_proto::campaign::CampaignEvent {
        metadata: Some(affiliate_proto::common::MessageMetadata {
            message_id: message_id.to_owned(),
            message_type: message_type.to_owned(),
            aggregate_id: campaign.to_string(),
            aggregate_version: version,
            ..Default::default()
        }),
        event: Some(event),
    };
    publish(
        client,
        topic,
        &campaign.to_string(),
        message_id,
        message_type,
        "corr",
        envelope.encode_to_vec(),
    )
    .await;
}

/// A freshly created, empty database of one test, dropped (`with (force)`, so whoever is still
/// connected is disconnected) when this is dropped at the end of the test, passed or failed.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (name, admin_url) = (self.name.clone(), postgres_admin_url());
        outside_the_runtime(async move {
            let dropped = async {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                admin
                    .execute(sqlx::AssertSqlSafe(format!(
                        "drop database if exists {name} with (force)"
                    )))
                    .await
            };
            if let Err(e) = dropped.await {
                eprintln!("could not drop test database {name}: {e}");
            }
        });
    }
}

/// Creates a new database named `{prefix}_{uuid}` and connects a pool to it.
pub async fn fresh_database(prefix: &str) -> TestDatabase {
    let admin_url = postgres_admin_url();
    let admin: PgConnectOptions = admin_url
        .parse()
        .expect("TEST_POSTGRES_URL is not a postgres URL");
    let admin_pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(admin.clone())
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin_url}: {e}; {START_HINT}"));
    let name = format!("{prefix}_{}", Uuid::new_v4().simple());
    admin_pool
        .execute(sqlx::AssertSqlSafe(format!("create database {name}")))
        .await
        .unwrap_or_else(|e| panic!("create database {name}: {e}"));
    admin_pool.close().await;
    let options = admin.database(&name);
    let pool = PgPoolOptions::new()
        .max_connections(20)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .unwrap_or_else(|e| panic!("connect to new database {name}: {e}"));
    let url = replace_database(&admin_url, &name);
    TestDatabase { name, url, pool }
}

/// `postgres://u:p@h:port/old?x` → `postgres://u:p@h:port/new?x`.
fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Connects a Pulsar client or fails saying what to start.
pub async fn pulsar() -> pulsar::Pulsar<pulsar::TokioExecutor> {
    let url = pulsar_url();
    try_pulsar()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to Pulsar at {url}: {e:#}; {START_HINT}"))
}

/// A client of [`broker`] (its CA and token when secured), as the processes connect; an error
/// after 20 s of trying.
pub async fn try_pulsar() -> anyhow::Result<pulsar::Pulsar<pulsar::TokioExecutor>> {
    let b = broker();
    let args = service_runtime::config::PulsarArgs {
        url: b.url,
        tenant: pulsar_tenant(),
        namespace: pulsar_namespace(),
        connect_timeout: Duration::from_secs(20),
        tls_ca_file: b.tls_ca_file,
        token: None,
        token_file: b.token_file,
        oauth2: Default::default(),
    };
    messaging::connect(&args).await
}

/// An exclusive consumer on `topic` (full name) that starts at the latest message. Subscribe
/// before producing what you want to see.
pub async fn consumer(
    client: &pulsar::Pulsar<pulsar::TokioExecutor>,
    topic: &str,
) -> pulsar::Consumer<Vec<u8>, pulsar::TokioExecutor> {
    messaging::watch(
        client,
        topic,
        "test",
        pulsar::consumer::InitialPosition::Latest,
    )
    .await
    .unwrap_or_else(|e| panic!("subscribe to {topic}: {e}; {START_HINT}"))
}

/// Makes every insert into `table` whose new row matches `condition` (SQL over `new`) fail
/// inside its transaction with `message`, as a database error would: a trigger and its function,
/// both named `name`.
pub async fn fail_inserts(pool: &PgPool, name: &str, table: &str, condition: &str, message: &str) {
    let sql = format!(
        "create function {name}() returns trigger language plpgsql as $$
        begin
            if {condition} then raise exception '{message}'; end if;
            return new;
        end $$;
        create trigger {name} before insert on {table} for each row execute function {name}();"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("install the trigger {name} on {table}: {e}"));
}

/// Makes every insert of a campaign named `Poison` fail (trigger `poison` on `campaigns`).
pub async fn poison_campaigns(pool: &PgPool) {
    fail_inserts(
        pool,
        "poison",
        "campaigns",
        "new.name = 'Poison'",
        "poisoned row",
    )
    .await;
}

/// The fields of a status's field violations (its `BadRequest` details), in order; none when it
/// has no such details.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// The flags that point a process at the test broker's namespace `namespace`.
pub fn pulsar_args(namespace: &str) -> [String; 6] {
    [
        "--pulsar-url".to_owned(),
        pulsar_url(),
        "--pulsar-tenant".to_owned(),
        pulsar_tenant(),
        "--pulsar-namespace".to_owned(),
        namespace.to_owned(),
    ]
}

/// A message property by name.
pub use messaging::properties::get as property;

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
/// The gRPC health of `service` (a health name, `""` for the whole server) at `url`, or `None`
/// when the server does not answer within 2 s.
pub async fn health(
    url: &str,
    service: &str,
) -> Option<tonic_health::pb::health_check_response::ServingStatus> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .ok()?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .ok()?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .ok()?;
    tonic_health::pb::health_check_response::ServingStatus::try_from(response.into_inner().status)
        .ok()
}

pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}

/// Waits until a consumer of the service whose database is `pool` has recorded `message_id` in
/// its inbox (applied or rejected): the message, and those before it with its key, are processed.
pub async fn processed(pool: &PgPool, message_id: &str, timeout: Duration) {
    eventually(
        timeout,
        &format!("message {message_id} is processed"),
        || async {
            let n: i64 = sqlx::query_scalar("select count(*) from inbox where message_id = $1")
                .bind(message_id)
                .fetch_one(pool)
                .await
                .unwrap();
            (n > 0).then_some(())
        },
    )
    .await;
}

/// Consumer flags for quick retries, for tests whose messages wait on others in flight.
pub const QUICK_RETRIES: [&str; 6] = [
    "--retry-min-backoff",
    "20ms",
    "--retry-max-backoff",
    "200ms",
    "--max-redeliveries",
    "50",
];

/// Where a test's logs go: `<target>/test-logs/<name>/`.
pub fn log_dir(test: &str) -> PathBuf {
    let dir = process::target_dir().join("test-logs").join(test);
    std::fs::create_dir_all(&dir).expect("create test log dir");
    dir
}

/// Like [`log_dir`], for a test that reads its processes' logs back: the logs of the test's last
/// run (process logs append, and the target directory outlives runs) move to `previous/`
/// (replacing those of the run before), so this run's logs hold this run's lines only. Tests of
/// one binary that share a name share the directory: only logs last written before this run
/// began are moved.
pub fn fresh_log_dir(test: &str) -> PathBuf {
    static RUN_BEGAN: std::sync::LazyLock<std::time::SystemTime> =
        std::sync::LazyLock::new(std::time::SystemTime::now);
    let began = *RUN_BEGAN;
    let dir = log_dir(test);
    let previous = dir.join("previous");
    for entry in std::fs::read_dir(&dir)
        .expect("read test log dir")
        .flatten()
    {
        let path = entry.path();
        let earlier = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|modified| modified < began);
        if earlier && path.extension().is_some_and(|ext| ext == "log") {
            std::fs::create_dir_all(&previous).expect("create the previous run's log dir");
            // Another test of this run may have moved it first.
            let _ = std::fs::rename(&path, previous.join(entry.file_name()));
        }
    }
    dir
}

/// A service serving in this test process (its gRPC server on a real TCP port).
pub struct Served {
    pub addr: std::net::SocketAddr,
    shutdown: tokio_util::sync::CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Builds service `D` of the kit from its command line and serves it in this process until
/// [`Served::stop`]: on the database at `database_url`, a free port, and, given a namespace,
/// the test broker ([`service_args`]); `extra` flags after those.
pub async fn serve_service<D: service_host::kit::Declaration>(
    database_url: &str,
    namespace: Option<&str>,
    extra: &[&str],
) -> Served {
    let args = match namespace {
        Some(namespace) => service_args(D::NAME, database_url, namespace, extra),
        None => [
            D::NAME,
            "--database-url",
            database_url,
            "--grpc-listen",
            "127.0.0.1:0",
        ]
        .iter()
        .chain(extra)
        .map(|a| (*a).to_owned())
        .collect(),
    };
    let config = service_host::kit::parse_from::<D, _, _>(&args)
        .unwrap_or_else(|e| panic!("{} {args:?}: {e}", D::NAME));
    let app = service_host::kit::Application::<D>::build(config)
        .await
        .unwrap_or_else(|e| panic!("build {}: {e:#}", D::NAME));
    serve(app)
}

/// Serves a built service until [`Served::stop`].
pub fn serve<S: service_runtime::app::Service>(service: S) -> Served {
    let addr = service.grpc_addr();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(service.run_until_stopped(shutdown.clone()));
    Served {
        addr,
        shutdown,
        server,
    }
}

impl Served {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits (at most `within`) for it to stop by itself with an error, and returns the error.
    ///
    /// # Panics
    ///
    /// When it still runs after `within` (it is then stopped), or stopped without an error.
    pub async fn failure(mut self, within: std::time::Duration) -> String {
        match tokio::time::timeout(within, &mut self.server).await {
            Ok(Ok(Err(e))) => format!("{e:#}"),
            Ok(Ok(Ok(()))) => panic!("the service stopped without an error"),
            Ok(Err(e)) => panic!("the service task: {e}"),
            Err(_) => {
                self.shutdown.cancel();
                let _ = self.server.await;
                panic!("the service still ran after {within:?}");
            }
        }
    }

    /// Stops it and checks it stopped cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.server
            .await
            .expect("service task")
            .expect("service stopped with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_in_a_url() {
        assert_eq!(
            replace_database("postgres://u:p@127.0.0.1:55432/postgres", "x1"),
            "postgres://u:p@127.0.0.1:55432/x1"
        );
        assert_eq!(
            replace_database("postgres://u@h/db?sslmode=disable", "y"),
            "postgres://u@h/y?sslmode=disable"
        );
        assert_eq!(
            replace_database("postgres://u@h:1", "z"),
            "postgres://u@h:1/z"
        );
    }
}
