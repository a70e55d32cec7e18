//! The webhook service: partners' endpoints, and the dispatcher that delivers the platform's
//! events to them to the Standard Webhooks specification (v1).
//!
//! The feeds follow the four services' events topics (subscription `webhook`): each event
//! partners receive becomes a message and one delivery per matching endpoint of its owners, in
//! the feed's transaction (the inbox makes it once). The dispatcher claims due deliveries from
//! the database, sends them (signed, with a time-out, redirects not followed, private
//! destinations refused), and records every attempt: success, a retry on the schedule, or
//! failure; so nothing is lost across a crash, and a delivery repeated after one carries the same
//! `webhook-id`. Messages about one aggregate reach an endpoint in order (a lane per endpoint
//! and aggregate); endpoints never wait for each other.
//!
//! `domain` decides without I/O, `app` holds the use cases, `adapters` the SQL, the feeds, the
//! HTTP sender and the gRPC door.

pub mod adapters;
pub mod app;
pub mod domain;

use std::sync::Arc;
use std::time::Duration;

use affiliate_proto::webhook::webhook_service_server::WebhookServiceServer;
use secrecy::{ExposeSecret as _, SecretString};
use service_host::kit::{Config, Declaration, Kit, Wiring};
use service_runtime::config::{Mode, parse_duration};
use service_runtime::outbox::events_topic;

use crate::adapters::feed::{EventFeed, Source};
use crate::domain::destination::Policy;
use crate::domain::schedule::{self, Schedule};
use crate::domain::sealing::Keys;

/// The subscription name on every events topic.
pub const SUBSCRIPTION: &str = "webhook";

/// The webhook service's own flags; each also reads its environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookArgs {
    /// How long a partner's server has to answer (a 2xx in time is the only success).
    #[arg(long = "request-timeout", env = "WEBHOOK_REQUEST_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Delays before each retry after a failed attempt, comma-separated (Svix's by default).
    #[arg(long = "retry-schedule", env = "WEBHOOK_RETRY_SCHEDULE", default_value = schedule::DEFAULT)]
    pub retry_schedule: String,
    /// The longest wait a `Retry-After` (on 429 and 503) may ask for.
    #[arg(long = "max-retry-after", env = "WEBHOOK_MAX_RETRY_AFTER", default_value = "1h", value_parser = parse_duration)]
    pub max_retry_after: Duration,
    /// An endpoint whose messages failed this many times in a row (every retry spent) is
    /// disabled, and its owner told.
    #[arg(
        long = "disable-after",
        env = "WEBHOOK_DISABLE_AFTER",
        default_value_t = 20
    )]
    pub disable_after: i32,
    /// The keys that seal endpoints' signing secrets at rest, comma-separated, each at least 32
    /// bytes (e.g. `openssl rand -base64 32`). The first seals; every one listed opens. To rotate,
    /// put a new key first: the service reseals the stored secrets with it when it starts; drop
    /// the old key once every replica runs with the new list.
    #[arg(
        long = "secret-keys",
        env = "WEBHOOK_SECRET_KEYS",
        hide_env_values = true
    )]
    pub secret_keys: SecretString,
    /// How long the previous secret keeps signing after a rotation.
    #[arg(long = "secret-overlap", env = "WEBHOOK_SECRET_OVERLAP", default_value = "24h", value_parser = parse_duration)]
    pub secret_overlap: Duration,
    /// Networks allowed although not public, comma-separated (e.g. `127.0.0.0/8,::1` for a local
    /// receiver); by default every private, loopback and link-local destination is refused.
    #[arg(
        long = "allow-networks",
        env = "WEBHOOK_ALLOW_NETWORKS",
        default_value = ""
    )]
    pub allow_networks: String,
    /// Accept plain `http://` endpoints (a local receiver); otherwise https only.
    #[arg(long = "allow-http", env = "WEBHOOK_ALLOW_HTTP", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_http: bool,
    /// Requests in flight at once, over every endpoint.
    #[arg(
        long = "dispatch-concurrency",
        env = "WEBHOOK_DISPATCH_CONCURRENCY",
        default_value_t = 256
    )]
    pub dispatch_concurrency: usize,
    /// Requests in flight at once to one endpoint: a slow endpoint holds at most these.
    #[arg(
        long = "endpoint-concurrency",
        env = "WEBHOOK_ENDPOINT_CONCURRENCY",
        default_value_t = 16
    )]
    pub endpoint_concurrency: usize,
    /// Deliveries claimed per query.
    #[arg(
        long = "dispatch-batch",
        env = "WEBHOOK_DISPATCH_BATCH",
        default_value_t = 256
    )]
    pub dispatch_batch: i64,
    /// How often the dispatcher looks for due deliveries without a wake-up.
    #[arg(long = "dispatch-poll-interval", env = "WEBHOOK_DISPATCH_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// How long attempts and finished deliveries are kept.
    #[arg(long = "retention", env = "WEBHOOK_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub retention: Duration,
}

/// The dispatcher's settings, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub request_timeout: Duration,
    pub schedule: Schedule,
    pub disable_after: i32,
    pub secret_overlap: Duration,
    /// The keys sealing endpoints' secrets at rest.
    pub keys: Arc<Keys>,
    pub policy: Policy,
    pub concurrency: usize,
    pub endpoint_concurrency: usize,
    pub batch: i64,
    pub poll_interval: Duration,
    pub retention: Duration,
}

impl Settings {
    pub fn from_args(args: &WebhookArgs) -> anyhow::Result<Self> {
        let schedule = Schedule::parse(&args.retry_schedule, args.max_retry_after)
            .map_err(|e| anyhow::anyhow!("WEBHOOK_RETRY_SCHEDULE: {e}"))?;
        let allowed = Policy::parse_networks(&args.allow_networks)
            .map_err(|e| anyhow::anyhow!("WEBHOOK_ALLOW_NETWORKS: {e}"))?;
        let keys = Keys::parse(args.secret_keys.expose_secret())
            .map_err(|e| anyhow::anyhow!("WEBHOOK_SECRET_KEYS: {e}"))?;
        anyhow::ensure!(
            args.disable_after > 0,
            "WEBHOOK_DISABLE_AFTER must be positive"
        );
        anyhow::ensure!(
            args.dispatch_concurrency > 0
                && args.endpoint_concurrency > 0
                && args.dispatch_batch > 0,
            "WEBHOOK_DISPATCH_CONCURRENCY, WEBHOOK_ENDPOINT_CONCURRENCY and WEBHOOK_DISPATCH_BATCH must be positive"
        );
        Ok(Self {
            request_timeout: args.request_timeout,
            schedule,
            disable_after: args.disable_after,
            secret_overlap: args.secret_overlap,
            keys: Arc::new(keys),
            policy: Policy {
                allowed,
                allow_http: args.allow_http,
            },
            concurrency: args.dispatch_concurrency,
            endpoint_concurrency: args.endpoint_concurrency,
            batch: args.dispatch_batch,
            poll_interval: args.poll_interval,
            retention: args.retention,
        })
    }
}

/// The webhook service: the feeds and the dispatcher in every mode, the API unless in `events`
/// mode.
pub struct Webhook;

impl Declaration for Webhook {
    const NAME: &'static str = "webhook-service";
    const SERVICE: &'static str = "webhook";
    const ABOUT: &'static str = "Partners' webhook endpoints and the dispatcher that delivers the platform's events to them";
    /// Campaign 50051 ... analytics 50056.
    const LISTEN: &'static str = "127.0.0.1:50057";
    const MODE: (Mode, Option<&'static str>) = (
        Mode::Hybrid,
        Some("grpc or hybrid (the API, the feeds and the dispatcher) or events (no API)"),
    );
    /// Versions from 1000; the platform tables come from the runtime.
    const MIGRATOR: &'static sqlx::migrate::Migrator = &sqlx::migrate!("./migrations");
    type Flags = WebhookArgs;

    fn needs_pulsar(_: Mode) -> bool {
        true
    }

    /// It has no command topic: the broker check looks up the first feed's topic.
    fn check_topic() -> String {
        events_topic(Source::Campaign.service())
    }

    fn wire(config: &Config<WebhookArgs>, kit: &Kit) -> anyhow::Result<Wiring> {
        let settings = Arc::new(Settings::from_args(&config.own)?);
        let sender = adapters::sender::Sender::new(&settings)?;
        let mut wiring = Wiring::new();
        if kit.mode.serves_grpc() {
            let webhooks = app::Webhooks::new(kit.pool.clone(), settings.clone(), sender.clone());
            let api = adapters::grpc::WebhookApi::new(webhooks);
            wiring = wiring.api(WebhookServiceServer::new(api));
        }
        let dispatcher = app::dispatch::Dispatcher::new(kit.pool.clone(), settings.clone(), sender);
        let retention = app::dispatch::Retention::new(kit.pool.clone(), settings.retention);
        wiring = wiring
            .run("dispatcher", move |token| dispatcher.run(token))
            .run("retention", move |token| retention.run(token));
        for source in Source::ALL {
            let feed = EventFeed::new(source, kit.pool.clone());
            wiring = wiring.feed(
                source.part(),
                &events_topic(source.service()),
                SUBSCRIPTION,
                feed,
            );
        }
        Ok(wiring)
    }
}

/// A built webhook service (see `service_host::kit::Application`).
pub type Application = service_host::kit::Application<Webhook>;

#[cfg(test)]
mod config_tests {
    #[test]
    fn the_command_line_is_well_formed_with_the_declared_defaults() {
        service_host::kit::check_declaration_with::<super::Webhook>(&[
            "--secret-keys",
            "a-key-of-at-least-32-bytes-0123456789",
        ]);
    }
}
