//! The BFF's configuration. Every flag also reads its environment variable; the HS256 secret is
//! wrapped so it never reaches a log line or `Debug` output.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use service_runtime::config::{LogArgs, parse_duration};

/// `bff serve`: where to listen, the services to call, how to authenticate and limit callers.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address the HTTP server binds; port 0 picks a free port (the bound address is logged).
    #[arg(long, env = "BFF_LISTEN", default_value = "127.0.0.1:8088")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub services: ServiceUrls,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub edge: EdgeArgs,
    #[command(flatten)]
    pub pulsar_admin: PulsarAdminArgs,
    /// The redirect edge's public base URL: a tracking link is `{this}/c/{code}`.
    #[arg(
        long,
        env = "REDIRECT_PUBLIC_URL",
        default_value = "http://127.0.0.1:8090"
    )]
    pub redirect_public_url: String,
    /// The trace viewer's UI (Jaeger), whose `/trace/{traceId}` pages the audit trail links to.
    #[arg(
        long,
        env = "TRACE_VIEWER_URL",
        default_value = "http://127.0.0.1:16686"
    )]
    pub trace_viewer_url: String,
    #[command(flatten)]
    pub log: LogArgs,
}

/// gRPC endpoints of the services the BFF calls.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceUrls {
    #[arg(
        long,
        env = "CAMPAIGN_GRPC_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub campaign_url: String,
    #[arg(
        long,
        env = "TRACKING_GRPC_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    pub tracking_url: String,
    #[arg(
        long,
        env = "COMMISSION_GRPC_URL",
        default_value = "http://127.0.0.1:50053"
    )]
    pub commission_url: String,
    #[arg(
        long,
        env = "PAYMENT_GRPC_URL",
        default_value = "http://127.0.0.1:50054"
    )]
    pub payment_url: String,
    #[arg(
        long,
        env = "NOTIFICATION_GRPC_URL",
        default_value = "http://127.0.0.1:50055"
    )]
    pub notification_url: String,
    #[arg(
        long,
        env = "ANALYTICS_GRPC_URL",
        default_value = "http://127.0.0.1:50056"
    )]
    pub analytics_url: String,
    /// The webhook service (partners' endpoints and their deliveries).
    #[arg(
        long,
        visible_alias = "webhook-grpc-url",
        env = "WEBHOOK_GRPC_URL",
        default_value = "http://127.0.0.1:50057"
    )]
    pub webhook_url: String,
    /// Deadline of each gRPC call (sent to the service as `grpc-timeout`).
    #[arg(long, env = "GRPC_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    pub deadline: Duration,
    /// How long `GET /health/services` waits for each service's health check.
    #[arg(long, env = "HEALTH_CHECK_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub health_timeout: Duration,
}

/// How bearer tokens are verified. Exactly one key source: an HS256 secret (development), or a
/// JWKS file or URL holding RS256/ES256 public keys (production).
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// Required `iss` claim.
    #[arg(long, env = "JWT_ISSUER", default_value = "affiliate-platform")]
    pub issuer: String,
    /// Required `aud` claim.
    #[arg(long, env = "JWT_AUDIENCE", default_value = "affiliate-bff")]
    pub audience: String,
    /// Shared secret for HS256 tokens (development); at least 32 bytes.
    #[arg(long, env = "JWT_HS256_SECRET", hide_env_values = true)]
    pub hs256_secret: Option<SecretString>,
    /// A JWKS file with the RS256/ES256 public keys tokens are signed with.
    #[arg(long, env = "JWT_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// A JWKS URL (fetched at start, and again when a token names an unknown key id).
    #[arg(long, env = "JWT_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// A JWKS URL is fetched again for a token naming an unknown key id at most this often.
    #[arg(long, env = "JWT_JWKS_REFRESH_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub jwks_refresh_interval: Duration,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[arg(long, env = "JWT_LEEWAY", default_value = "30s", value_parser = parse_duration)]
    pub leeway: Duration,
}

/// Behaviour at the edge: limits, timeouts, CORS.
#[derive(Debug, Clone, clap::Args)]
pub struct EdgeArgs {
    /// Requests per second each user may make (sustained).
    #[arg(long, env = "RATE_LIMIT_PER_SECOND", default_value_t = 20)]
    pub rate_per_second: u32,
    /// Requests each user may make in a burst above the sustained rate.
    #[arg(long, env = "RATE_LIMIT_BURST", default_value_t = 60)]
    pub rate_burst: u32,
    /// Requests with a missing or refused token each client address may make per second
    /// (sustained); over it, 429 instead of 401.
    #[arg(long, env = "RATE_LIMIT_REFUSED_PER_SECOND", default_value_t = 5)]
    pub refused_per_second: u32,
    /// Burst of requests with a missing or refused token per client address.
    #[arg(long, env = "RATE_LIMIT_REFUSED_BURST", default_value_t = 30)]
    pub refused_burst: u32,
    /// Server-to-server postbacks (`GET /postback`, `POST /api/v1/conversions`) each client
    /// address may send per second (sustained), whatever their key; over it, 429.
    #[arg(long, env = "RATE_LIMIT_POSTBACK_PER_SECOND", default_value_t = 50)]
    pub postback_per_second: u32,
    /// Burst of postbacks per client address above the sustained rate.
    #[arg(long, env = "RATE_LIMIT_POSTBACK_BURST", default_value_t = 200)]
    pub postback_burst: u32,
    /// Origins allowed to call the API from a browser, comma-separated; `*` for any; empty for
    /// none (no CORS headers).
    #[arg(
        long,
        env = "CORS_ALLOWED_ORIGINS",
        default_value = "",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// How long a request may take before the BFF answers 504.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
    /// Interval of the keep-alive comments on notification streams.
    #[arg(long, env = "SSE_KEEP_ALIVE", default_value = "15s", value_parser = parse_duration)]
    pub sse_keep_alive: Duration,
}

/// Where admins' dead-letter inspection reads from.
#[derive(Debug, Clone, clap::Args)]
pub struct PulsarAdminArgs {
    /// Pulsar admin REST URL.
    #[arg(
        long,
        env = "PULSAR_ADMIN_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub pulsar_admin_url: String,
    #[arg(long, env = "PULSAR_TENANT", default_value = "affiliate")]
    pub pulsar_tenant: String,
    #[arg(long, env = "PULSAR_NAMESPACE", default_value = "platform")]
    pub pulsar_namespace: String,
    /// PEM CA certificates of the broker, for an `https://` admin URL.
    #[arg(long, env = "PULSAR_TLS_CA_FILE")]
    pub pulsar_tls_ca_file: Option<std::path::PathBuf>,
    /// File holding the token for the admin API (read again for every request). Its role needs
    /// the admin rights the dead-letter reads take (topic stats and examine-message).
    #[arg(long, env = "PULSAR_TOKEN_FILE")]
    pub pulsar_token_file: Option<std::path::PathBuf>,
}
