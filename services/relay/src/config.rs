//! Relay configuration: which outboxes to publish, where Pulsar is, and the loop's timings.

use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use service_runtime::config::{LogArgs, PulsarArgs, parse_duration};

/// One service outbox: the service name (it names the topics) and its database URL.
#[derive(Debug, Clone)]
pub struct OutboxSource {
    pub service: String,
    pub database_url: SecretString,
}

impl OutboxSource {
    pub fn expose_url(&self) -> &str {
        self.database_url.expose_secret()
    }
}

impl FromStr for OutboxSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (service, url) = s
            .split_once('=')
            .ok_or_else(|| "expected SERVICE=postgres://… (e.g. campaign=postgres://u:p@127.0.0.1:55432/campaign)".to_owned())?;
        let service = service.trim();
        if service.is_empty()
            || !service
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "service name `{service}` must be lower-case letters, digits and dashes"
            ));
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(format!(
                "the database URL for `{service}` must start with postgres://"
            ));
        }
        Ok(Self {
            service: service.to_owned(),
            database_url: SecretString::from(url.to_owned()),
        })
    }
}

/// Timings and sizes of the relay loop.
#[derive(Debug, Clone, clap::Args)]
pub struct Tuning {
    /// Most rows claimed and published per batch.
    #[arg(long = "batch-size", env = "RELAY_BATCH_SIZE", default_value_t = 500, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub batch_size: i64,
    /// Poll interval when no NOTIFY arrives (NOTIFY is only a wake-up hint).
    #[arg(long = "poll-interval", env = "RELAY_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// How often a standby relay retries the leader lock.
    #[arg(long = "standby-interval", env = "RELAY_STANDBY_INTERVAL", default_value = "500ms", value_parser = parse_duration)]
    pub standby_interval: Duration,
    /// Longest wait for all broker receipts of one batch; past it the batch is retried.
    #[arg(long = "publish-timeout", env = "RELAY_PUBLISH_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub publish_timeout: Duration,
    /// How often the leader vacuums its outbox while it deletes rows (`0s`: never, leaving it to
    /// autovacuum). Every published row is deleted, so the table is a queue of dead rows: between
    /// two autovacuums (a minute apart by default) a busy outbox grew to 2,457 pages holding 34
    /// live rows, and every claim read them all (8.5 ms of server CPU per claim).
    #[arg(long = "vacuum-interval", env = "RELAY_VACUUM_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub vacuum_interval: Duration,
    /// Longest back-off after repeated errors.
    #[arg(long = "max-backoff", env = "RELAY_MAX_BACKOFF", default_value = "10s", value_parser = parse_duration)]
    pub max_backoff: Duration,
    /// Longest wait for any one database step (connecting, the leader lock, counting, and the
    /// claim and delete of a batch beyond its publish time-out); the server also cancels a
    /// statement after it (`statement_timeout`). A database that stops answering turns into an
    /// error and a new connection, never a relay waiting forever.
    #[arg(long = "database-timeout", env = "RELAY_DATABASE_TIMEOUT", default_value = "30s", value_parser = service_runtime::config::parse_positive_duration)]
    pub database_timeout: Duration,
}

/// The relay's configuration; every flag also reads its environment variable.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "relay",
    version,
    about = "Publishes service outboxes to Pulsar, one active relay per outbox"
)]
pub struct Config {
    /// Outboxes to publish, as SERVICE=DATABASE_URL, comma-separated or repeated.
    #[arg(
        long = "outbox",
        env = "RELAY_OUTBOXES",
        value_delimiter = ',',
        required = true,
        hide_env_values = true
    )]
    pub outboxes: Vec<OutboxSource>,
    #[command(flatten)]
    pub pulsar: PulsarArgs,
    #[command(flatten)]
    pub tuning: Tuning,
    #[command(flatten)]
    pub log: LogArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory as _;
        Config::command().debug_assert();
    }

    #[test]
    fn parses_service_equals_url() {
        let source: OutboxSource = "campaign=postgres://u:secret@127.0.0.1:55432/campaign"
            .parse()
            .unwrap_or_else(|e: String| panic!("{e}"));
        assert_eq!(source.service, "campaign");
        assert!(source.expose_url().ends_with("/campaign"));
        assert!(!format!("{source:?}").contains("secret"));
    }

    #[test]
    fn refuses_malformed_sources() {
        for bad in [
            "campaign",
            "=postgres://x",
            "Campaign=postgres://x",
            "campaign=mysql://x",
        ] {
            assert!(bad.parse::<OutboxSource>().is_err(), "{bad}");
        }
    }
}
