//! The payment service: creators' payouts, paid through a payment provider as a saga with
//! compensation (reserve → pay → settle, or release when the provider fails).
//!
//! `domain` holds the rules and the saga's state machine (no I/O), `app` the handlers and saga
//! steps, `adapters` the repository, the provider port with its sandbox, the gRPC server, the
//! `payment-commands` door and the commission-event feed. The feed and the resumer run in every
//! mode (they are the saga); the mode only chooses the client doors.

pub mod adapters;
pub mod app;
pub mod domain;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use affiliate_proto::payment::payment_service_server::{PaymentServiceServer, SERVICE_NAME};
use messaging::door::Door;
use service_host::{Host, ServiceArgs};
use service_runtime::app::Service;
use service_runtime::config::{
    ConsumerArgs, DatabaseArgs, GrpcArgs, LogArgs, Mode, PulsarArgs, RetentionArgs, parse_duration,
};
use service_runtime::outbox::{commands_topic, events_topic};

use crate::adapters::provider::SandboxProvider;
use crate::app::Payouts;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The payment provider's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ProviderArgs {
    /// The sandbox provider's per-payout limit in minor units; larger payouts are declined.
    #[arg(
        long = "sandbox-limit-minor",
        env = "SANDBOX_LIMIT_MINOR",
        default_value_t = 1_000_000
    )]
    pub sandbox_limit_minor: i64,
    /// How long the sandbox takes to answer for accounts containing `slow`.
    #[arg(long = "sandbox-slow-delay", env = "SANDBOX_SLOW_DELAY", default_value = "3s", value_parser = parse_duration)]
    pub sandbox_slow_delay: Duration,
    /// Longest wait for the provider's answer.
    #[arg(long = "provider-timeout", env = "PROVIDER_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How often the resumer looks for payouts left mid-payment (by a crash or a provider outage).
    #[arg(long = "resume-interval", env = "SAGA_RESUME_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub resume_interval: Duration,
}

/// Configuration of the payment service; every flag also reads its environment variable.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "payment-service",
    version,
    about = "Payouts through a payment provider, as a saga"
)]
pub struct Config {
    /// grpc (API), events (the payment-commands topic) or hybrid (both). The saga runs in all.
    #[arg(long, env = "MODE", value_enum, default_value = "hybrid")]
    pub mode: Mode,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub grpc: GrpcArgs,
    #[command(flatten)]
    pub pulsar: PulsarArgs,
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub provider: ProviderArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// A built service: database migrated, Pulsar connected, gRPC listener bound; not yet serving.
pub struct Application {
    host: Host,
    config: Config,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let args = ServiceArgs {
            name: "payment-service",
            mode: config.mode,
            database: &config.database,
            grpc: &config.grpc,
            pulsar: &config.pulsar,
            consumer: &config.consumer,
            retention: &config.retention,
        };
        let host = Host::start(args, &MIGRATOR, true).await?;
        Ok(Self { host, config })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.host.grpc_addr()
    }

    /// Serves until `shutdown` or a failing part. The saga (its commission-event feed and its
    /// resumer) runs in every mode; the mode chooses the client doors.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let provider = Arc::new(SandboxProvider {
            limit_minor: self.config.provider.sandbox_limit_minor,
            slow_delay: self.config.provider.sandbox_slow_delay,
        });
        let payouts = Payouts::new(
            self.host.pool.clone(),
            provider,
            self.config.provider.timeout,
        );
        let mode = self.config.mode;
        let commands = commands_topic(app::messages::SERVICE);
        let feed_subscription = self
            .host
            .subscription(&events_topic("commission"), "payment");
        let door_subscription = self.host.subscription(&commands, "payment");
        let feed = adapters::commissions::SagaFeed::new(payouts.clone());
        let door = Door(adapters::commands::PaymentDoor::new(
            payouts.clone(),
            self.host.pool.clone(),
        ));
        let api = mode.serves_grpc().then(|| {
            (
                Routes::new(PaymentServiceServer::new(adapters::grpc::PaymentApi::new(
                    payouts.clone(),
                ))),
                SERVICE_NAME,
            )
        });
        let pool = self.host.pool.clone();
        let mut running = self.host.serve(api, &commands, shutdown);
        running.consume("saga feed", feed_subscription, feed)?;
        if mode.consumes_commands() {
            running.consume("command consumer", door_subscription, door)?;
        }
        let (interval, token) = (self.config.provider.resume_interval, running.token());
        running.spawn("saga resumer", async move {
            resume_loop(payouts, interval, token).await
        });
        let token = running.token();
        running.spawn(
            "saga metrics",
            async move { meter_sagas(pool, token).await },
        );
        running.supervise().await
    }
}

/// Every few seconds, how many payouts are in each saga state (`payouts{status}`).
async fn meter_sagas(pool: sqlx::PgPool, shutdown: CancellationToken) -> anyhow::Result<()> {
    const STATES: [&str; 7] = [
        "requested",
        "processing",
        "settling",
        "completed",
        "releasing",
        "failed",
        "rejected",
    ];
    loop {
        match sqlx::query_as::<_, (String, i64)>(
            "select status, count(*) from payouts group by status",
        )
        .fetch_all(&pool)
        .await
        {
            Ok(rows) => {
                for state in STATES {
                    let count = rows.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n);
                    metrics::gauge!("payouts", "status" => state).set(count as f64);
                }
            }
            Err(e) => tracing::debug!(error = %e, "counting payouts by state failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
        }
    }
}

/// At start, finishes every payment a previous run left mid-way; then, every `interval`, those
/// stuck for longer than `interval` (a provider outage, a lost attempt).
async fn resume_loop(
    payouts: Payouts<SandboxProvider>,
    interval: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut min_age = Duration::ZERO;
    loop {
        match payouts.resume(min_age).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(payouts = n, "resumed payments left mid-way"),
            Err(e) => tracing::warn!(error = %e, "resuming payments failed; will retry"),
        }
        min_age = interval;
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
    }
}

impl Service for Application {
    fn grpc_addr(&self) -> SocketAddr {
        Application::grpc_addr(self)
    }

    async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        Application::run_until_stopped(self, shutdown).await
    }
}

#[cfg(test)]
mod config_tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Config::command().debug_assert();
    }
}
