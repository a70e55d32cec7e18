//! Configuration pieces every process flattens into its own clap struct. Each flag also reads an
//! environment variable; secrets are wrapped so they never reach a log line or `Debug` output.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

/// How to reach the service's own PostgreSQL database.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL of this service's database, e.g. postgres://user:pass@127.0.0.1:55432/campaign
    #[arg(
        id = "database_url",
        long = "database-url",
        env = "DATABASE_URL",
        hide_env_values = true
    )]
    pub url: SecretString,
    /// Maximum connections in the pool.
    #[arg(
        long = "database-max-connections",
        env = "DATABASE_MAX_CONNECTIONS",
        default_value_t = 10
    )]
    pub max_connections: u32,
    /// How long to wait for a pooled connection (and for the first connect at start), e.g. 5s.
    #[arg(long = "database-acquire-timeout", env = "DATABASE_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub acquire_timeout: Duration,
    /// The server cancels a statement that runs (or waits for a lock) longer than this, e.g.
    /// 30s (PostgreSQL's `statement_timeout` on every connection of the pool; 0 turns it off).
    #[arg(long = "database-statement-timeout", env = "DATABASE_STATEMENT_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub statement_timeout: Duration,
    /// The server ends a session whose transaction stays idle longer than this, e.g. 60s,
    /// releasing its locks (`idle_in_transaction_session_timeout`; 0 turns it off).
    #[arg(long = "database-idle-in-transaction-timeout", env = "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_in_transaction_timeout: Duration,
}

impl DatabaseArgs {
    /// The URL, for the one place that connects.
    pub fn expose_url(&self) -> &str {
        self.url.expose_secret()
    }
}

/// Where the gRPC server listens.
#[derive(Debug, Clone, clap::Args)]
pub struct GrpcArgs {
    /// Address the gRPC server binds; port 0 picks a free port (the bound address is logged).
    #[arg(
        long = "grpc-listen",
        env = "GRPC_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: SocketAddr,
    /// How often the database and Pulsar are checked; health follows the last check.
    #[arg(long = "health-interval", env = "HEALTH_CHECK_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub health_interval: Duration,
    /// How long in-flight calls may take to finish after shutdown is requested.
    #[arg(long = "shutdown-grace", env = "SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// API calls in flight at most; one more is answered UNAVAILABLE at once (load shedding,
    /// so that an outage does not queue thousands of calls on the database pool).
    #[arg(long = "grpc-max-in-flight", env = "GRPC_MAX_IN_FLIGHT", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,
    /// An API call not answered after this long is answered UNAVAILABLE and its work dropped (a
    /// transaction rolls back), e.g. 8s: a database that stops answering turns into a retry, not
    /// a call hanging until the client's deadline. Keep it below the clients' deadlines.
    #[arg(long = "grpc-call-timeout", env = "GRPC_CALL_TIMEOUT", default_value = "8s", value_parser = parse_positive_duration)]
    pub call_timeout: Duration,
}

/// How the process writes its log.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log filter in tracing's EnvFilter syntax, e.g. "info,sqlx=warn".
    #[arg(
        long = "log",
        env = "RUST_LOG",
        default_value = "info,sqlx=warn,pulsar=warn,h2=warn"
    )]
    pub filter: String,
    /// Log format: "json" (one JSON object per line) or "text".
    #[arg(long = "log-format", env = "LOG_FORMAT", default_value = "json", value_parser = ["json", "text"])]
    pub format: String,
    /// OTLP gRPC endpoint to export spans to, e.g. http://127.0.0.1:4317; unset: no export.
    #[arg(long = "otlp-endpoint", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// The service name spans carry; defaults to the binary's name.
    #[arg(long = "service-name", env = "OTEL_SERVICE_NAME")]
    pub service_name: Option<String>,
    /// Address of the Prometheus `/metrics` endpoint; port 0 picks a free one (logged as
    /// `metrics endpoint listening`); unset: no endpoint.
    #[arg(long = "metrics-listen", env = "METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

/// Parses durations written as `250ms`, `5s`, `2m`, `6h`, `7d` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; write e.g. 250ms, 5s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{s}`; use ms, s, m, h or d"
            ));
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("`{s}` is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("6h"), Ok(Duration::from_secs(6 * 3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
    }

    #[test]
    fn bad_durations_are_rejected_with_a_message() {
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn database_url_is_not_in_debug_output() {
        let args = DatabaseArgs {
            url: SecretString::from("postgres://u:hunter2@localhost/db"),
            max_connections: 1,
            acquire_timeout: Duration::from_secs(1),
            statement_timeout: Duration::from_secs(30),
            idle_in_transaction_timeout: Duration::from_secs(60),
        };
        assert!(!format!("{args:?}").contains("hunter2"));
    }
}

/// How to reach Pulsar and which tenant/namespace holds the platform's topics.
#[derive(Debug, Clone, clap::Args)]
pub struct PulsarArgs {
    /// Pulsar service URL.
    #[arg(
        long = "pulsar-url",
        env = "PULSAR_URL",
        default_value = "pulsar://127.0.0.1:6650"
    )]
    pub url: String,
    /// Pulsar tenant of the platform's topics.
    #[arg(
        long = "pulsar-tenant",
        env = "PULSAR_TENANT",
        default_value = "affiliate"
    )]
    pub tenant: String,
    /// Pulsar namespace of the platform's topics.
    #[arg(
        long = "pulsar-namespace",
        env = "PULSAR_NAMESPACE",
        default_value = "platform"
    )]
    pub namespace: String,
    /// How long to wait for the first connection to the broker at start.
    #[arg(long = "pulsar-connect-timeout", env = "PULSAR_CONNECT_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// PEM file of the CA certificates that sign the broker's certificate, for a `pulsar+ssl://`
    /// URL (trusted beside the public web roots).
    #[arg(long = "pulsar-tls-ca-file", env = "PULSAR_TLS_CA_FILE")]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Token (a JWT) for the broker's token authentication. Never logged; prefer the file.
    #[arg(long = "pulsar-token", env = "PULSAR_TOKEN", hide_env_values = true)]
    pub token: Option<SecretString>,
    /// File holding the token, read again for every new connection, so that a token rotated in
    /// the file is used from the next connection on.
    #[arg(
        long = "pulsar-token-file",
        env = "PULSAR_TOKEN_FILE",
        conflicts_with = "token"
    )]
    pub token_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub oauth2: OAuth2Args,
}

/// OAuth2 client credentials for the broker, instead of a token: the client fetches an access
/// token from the issuer's token endpoint (found through its OpenID discovery document) and
/// fetches a new one before it expires.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OAuth2Args {
    /// The OAuth2 issuer, e.g. `https://auth.example.com/`; its
    /// `/.well-known/openid-configuration` names the token endpoint.
    #[arg(
        long = "pulsar-oauth2-issuer-url",
        env = "PULSAR_OAUTH2_ISSUER_URL",
        conflicts_with_all = ["token", "token_file"],
        requires = "oauth2_credentials_file"
    )]
    pub issuer_url: Option<String>,
    /// JSON file with `client_id` and `client_secret` (the key file of Pulsar's OAuth2 client
    /// plugin). Never logged.
    #[arg(
        id = "oauth2_credentials_file",
        long = "pulsar-oauth2-credentials-file",
        env = "PULSAR_OAUTH2_CREDENTIALS_FILE",
        requires = "issuer_url"
    )]
    pub credentials_file: Option<std::path::PathBuf>,
    /// The audience to ask the token for, if the issuer needs one.
    #[arg(long = "pulsar-oauth2-audience", env = "PULSAR_OAUTH2_AUDIENCE")]
    pub audience: Option<String>,
    /// The scope to ask the token for, if the issuer needs one.
    #[arg(long = "pulsar-oauth2-scope", env = "PULSAR_OAUTH2_SCOPE")]
    pub scope: Option<String>,
}

impl PulsarArgs {
    /// The full topic name of a short one, e.g. `campaign-events` →
    /// `persistent://affiliate/platform/campaign-events`.
    pub fn topic(&self, short: &str) -> String {
        format!("persistent://{}/{}/{short}", self.tenant, self.namespace)
    }
}

/// Which doors a service opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Serve the gRPC API only.
    Grpc,
    /// Consume the service's command topic only (gRPC still serves health and reflection).
    Events,
    /// Both.
    Hybrid,
}

impl Mode {
    pub fn serves_grpc(self) -> bool {
        matches!(self, Self::Grpc | Self::Hybrid)
    }

    pub fn consumes_commands(self) -> bool {
        matches!(self, Self::Events | Self::Hybrid)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Events => "events",
            Self::Hybrid => "hybrid",
        }
    }
}

/// How a service consumes its topics.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsumerArgs {
    /// Retries of a failing message before it goes to the dead-letter topic.
    #[arg(
        long = "max-redeliveries",
        env = "MAX_REDELIVERIES",
        default_value_t = 5
    )]
    pub max_redeliveries: usize,
    /// First retry delay of a failing message (doubles per attempt).
    #[arg(id = "retry_min_backoff", long = "retry-min-backoff", env = "RETRY_MIN_BACKOFF", default_value = "200ms", value_parser = parse_duration)]
    pub min_backoff: Duration,
    /// Longest retry delay of a failing message.
    #[arg(id = "retry_max_backoff", long = "retry-max-backoff", env = "RETRY_MAX_BACKOFF", default_value = "10s", value_parser = parse_duration)]
    pub max_backoff: Duration,
    /// Transactions a subscription runs at once (for a handler that does not batch: messages).
    /// Keys applied at once, each in order: concurrency x batch size.
    #[arg(
        long = "consumer-concurrency",
        env = "CONSUMER_CONCURRENCY",
        default_value_t = 4
    )]
    pub concurrency: usize,
    /// Messages of different keys applied in one transaction, where the handler allows it.
    #[arg(
        long = "consumer-batch-size",
        env = "CONSUMER_BATCH_SIZE",
        default_value_t = 64
    )]
    pub batch_size: usize,
    /// Messages a subscription takes from the broker and holds before it stops receiving.
    #[arg(
        long = "consumer-max-held",
        env = "CONSUMER_MAX_HELD",
        default_value_t = 4000
    )]
    pub max_held: usize,
    /// A subscription with messages waiting (held, or on the broker) that makes no progress for
    /// this long is stalled: its health turns NOT_SERVING and the progress watchdog checks the
    /// broker and, if that does not help, subscribes again, e.g. 20s.
    #[arg(long = "consumer-stall-timeout", env = "CONSUMER_STALL_TIMEOUT", default_value = "20s", value_parser = parse_positive_duration)]
    pub stall_timeout: Duration,
    /// A batch (or a message applied alone) that has not finished after this long is abandoned
    /// (its transaction rolls back) and retried like a transient failure, e.g. 60s; longer than
    /// the database's statement time-out, so the server's own cancellation comes first.
    #[arg(long = "consumer-batch-timeout", env = "CONSUMER_BATCH_TIMEOUT", default_value = "60s", value_parser = parse_positive_duration)]
    pub batch_timeout: Duration,
    /// How long a set-applying subscription lets a set smaller than its batch size wait for more
    /// messages before applying it, e.g. 5ms (`0s`: apply at once). Unset: each handler's own
    /// (`messaging::Handler::linger`: the read side waits longer than the write path).
    #[arg(long = "consumer-linger", env = "CONSUMER_LINGER", value_parser = parse_duration)]
    pub linger: Option<Duration>,
}

/// How long the records that make redelivery harmless are kept, and how the loop that prunes
/// them runs (`service_runtime::retention`). A redelivery, a client's retry with the same
/// `idempotency-key`, or a replay of a topic older than the retention runs again: keep it
/// longer than any of those can come. The default, 7 days, is the Pulsar namespace retention
/// (`deploy/local/env.sh` `PULSAR_RETENTION`): no message older than that can be replayed.
#[derive(Debug, Clone, clap::Args)]
pub struct RetentionArgs {
    /// How long an idempotency record (a command's key and response) is kept, e.g. 7d; at least 1h.
    #[arg(id = "idempotency_retention", long = "idempotency-retention", env = "IDEMPOTENCY_RETENTION", default_value = "7d", value_parser = parse_retention)]
    pub idempotency: Duration,
    /// How long an inbox row (a processed or rejected message id) is kept, e.g. 7d; at least 1h.
    #[arg(id = "inbox_retention", long = "inbox-retention", env = "INBOX_RETENTION", default_value = "7d", value_parser = parse_retention)]
    pub inbox: Duration,
    /// How often the pruning pass runs (each pass deletes everything past its retention).
    #[arg(id = "prune_interval", long = "prune-interval", env = "PRUNE_INTERVAL", default_value = "10m", value_parser = parse_positive_duration)]
    pub interval: Duration,
    /// Rows deleted per statement (each statement its own short transaction).
    #[arg(id = "prune_batch_size", long = "prune-batch-size", env = "PRUNE_BATCH_SIZE", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
}

/// The shortest retention accepted: below it, a message redelivered after a consumer restart or
/// a broker failover could find its record gone and apply twice.
pub const MIN_RETENTION: Duration = Duration::from_secs(3600);

/// A retention: a duration of at least [`MIN_RETENTION`].
pub fn parse_retention(s: &str) -> Result<Duration, String> {
    let retention = parse_duration(s)?;
    if retention < MIN_RETENTION {
        return Err(format!(
            "a retention of `{s}` would forget messages that can still be redelivered; keep records at least 1h (the default is 7d)"
        ));
    }
    Ok(retention)
}

/// A duration longer than zero.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        Duration::ZERO => Err(format!("`{s}` must be longer than zero")),
        d => Ok(d),
    }
}

#[cfg(test)]
mod oauth2_tests {
    use clap::Parser as _;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        pulsar: PulsarArgs,
    }

    #[test]
    fn oauth2_needs_its_credentials_file_and_excludes_a_token() {
        let issuer = [
            "x",
            "--pulsar-oauth2-issuer-url",
            "https://auth.example.com/",
        ];
        assert!(
            Cli::try_parse_from(issuer).is_err(),
            "an issuer without credentials is refused"
        );
        let with = [
            &issuer[..],
            &["--pulsar-oauth2-credentials-file", "/c.json"],
        ]
        .concat();
        let cli = Cli::try_parse_from(&with).unwrap();
        assert_eq!(
            cli.pulsar.oauth2.issuer_url.as_deref(),
            Some("https://auth.example.com/")
        );
        let both = [&with[..], &["--pulsar-token-file", "/t"]].concat();
        assert!(
            Cli::try_parse_from(both).is_err(),
            "OAuth2 and a token together are refused"
        );
    }
}

#[cfg(test)]
mod retention_tests {
    use super::*;
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        retention: RetentionArgs,
    }

    #[test]
    fn records_are_kept_seven_days_by_default_and_never_less_than_an_hour() {
        let defaults = Cli::try_parse_from(["x"]).unwrap_or_else(|e| panic!("{e}"));
        let week = Duration::from_secs(7 * 86_400);
        assert_eq!(
            (defaults.retention.idempotency, defaults.retention.inbox),
            (week, week)
        );
        assert_eq!(defaults.retention.interval, Duration::from_secs(600));
        assert_eq!(defaults.retention.batch_size, 1000);
        for bad in [
            ["x", "--inbox-retention", "59m"],
            ["x", "--idempotency-retention", "0"],
            ["x", "--prune-interval", "0s"],
            ["x", "--prune-batch-size", "0"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
        let set = Cli::try_parse_from(["x", "--inbox-retention", "30d", "--prune-interval", "1m"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(set.retention.inbox, Duration::from_secs(30 * 86_400));
    }
}
