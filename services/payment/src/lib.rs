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
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use affiliate_proto::payment::payment_service_server::{PaymentServiceServer, SERVICE_NAME};
use messaging::Subscription;
use messaging::door::Door;
use service_runtime::app::{Parts, Service};
use service_runtime::config::{
    ConsumerArgs, DatabaseArgs, GrpcArgs, LogArgs, Mode, PulsarArgs, parse_duration,
};
use service_runtime::db;
use service_runtime::grpc::GrpcServer;
use service_runtime::outbox::{commands_topic, events_topic};
use service_runtime::status::StatusBoard;

use crate::adapters::provider::SandboxProvider;
use crate::app::Payouts;

/// How often the dependencies are checked (and health follows).
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

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
    pub provider: ProviderArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

pub struct Application {
    server: GrpcServer,
    pool: sqlx::PgPool,
    pulsar: pulsar::Pulsar<pulsar::TokioExecutor>,
    config: Config,
    board: StatusBoard,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let started = Instant::now();
        let pool = db::connect(&config.database).await?;
        db::migrate(&pool, &MIGRATOR).await?;
        let board = StatusBoard::new("payment-service", config.mode.as_str());
        board.set_database(Ok(started.elapsed()));
        let started = Instant::now();
        let pulsar = messaging::connect(&config.pulsar).await?;
        board.set_pulsar(Ok(started.elapsed()));
        let server = GrpcServer::bind(config.grpc.listen).await?;
        Ok(Self {
            server,
            pool,
            pulsar,
            config,
            board,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    fn subscription(&self, short_topic: &str) -> Subscription {
        Subscription::configured(
            vec![self.config.pulsar.topic(short_topic)],
            "payment",
            &self.config.consumer,
            &self.board,
        )
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let provider = Arc::new(SandboxProvider {
            limit_minor: self.config.provider.sandbox_limit_minor,
            slow_delay: self.config.provider.sandbox_slow_delay,
        });
        let payouts = Payouts::new(self.pool.clone(), provider, self.config.provider.timeout);
        let mode = self.config.mode;
        tracing::info!(mode = mode.as_str(), "payment-service running");
        let mut parts = Parts::new(shutdown.clone());

        let feed_subscription = self.subscription(&events_topic("commission"));
        let door_subscription = self.subscription(&commands_topic(app::messages::SERVICE));
        let (routes, names): (Routes, Vec<&str>) = if mode.serves_grpc() {
            (
                Routes::new(PaymentServiceServer::new(adapters::grpc::PaymentApi::new(
                    payouts.clone(),
                ))),
                vec![SERVICE_NAME],
            )
        } else {
            (Routes::default(), Vec::new())
        };
        let board = self.board.clone();
        let pulsar_check = Some((
            self.pulsar.clone(),
            self.config
                .pulsar
                .topic(&commands_topic(app::messages::SERVICE)),
        ));
        let (pool, token, watched) = (self.pool.clone(), shutdown.clone(), board.clone());
        parts.spawn("dependency checks", async move {
            messaging::health::watch_dependencies(
                watched,
                pool,
                pulsar_check,
                HEALTH_INTERVAL,
                token,
            )
            .await
        });
        let grace = self.config.grpc.shutdown_grace;
        let token = shutdown.clone();
        let server = self.server;
        parts.spawn("gRPC server", async move {
            server.serve(routes, &names, board, token, grace).await
        });

        let feed = Arc::new(adapters::commissions::SagaFeed::new(payouts.clone()));
        let (pulsar, token) = (self.pulsar.clone(), shutdown.clone());
        parts.spawn("saga feed", async move {
            messaging::run_consumer(pulsar, feed_subscription, feed, token).await
        });

        if mode.consumes_commands() {
            let door = Arc::new(Door(adapters::commands::PaymentDoor::new(
                payouts.clone(),
                self.pool.clone(),
            )));
            let (pulsar, token) = (self.pulsar.clone(), shutdown.clone());
            parts.spawn("command consumer", async move {
                messaging::run_consumer(pulsar, door_subscription, door, token).await
            });
        }

        let interval = self.config.provider.resume_interval;
        let token = shutdown.clone();
        parts.spawn("saga resumer", async move {
            resume_loop(payouts, interval, token).await
        });

        parts.supervise().await
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
