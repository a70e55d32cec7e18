//! The commission service: commissions computed from purchases, creators' balances, and the
//! reservations the payout saga makes, releases and settles.
//!
//! `domain` holds the rules (no I/O), `app` the handlers (one transaction each), `adapters` the
//! repository, the gRPC server, the `commission-commands` door and the campaign-event feed.
//! The feed and the command door run in every mode, because other services address this one
//! through them (tracking sends calculate, the payout saga reserve/release/settle); `events`
//! mode only turns the gRPC API off.

pub mod adapters;
pub mod app;
pub mod domain;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use affiliate_proto::commission::commission_service_server::{
    CommissionServiceServer, SERVICE_NAME,
};
use messaging::Subscription;
use service_runtime::app::{Parts, Service};
use service_runtime::config::{ConsumerArgs, DatabaseArgs, GrpcArgs, LogArgs, Mode, PulsarArgs};
use service_runtime::db;
use service_runtime::grpc::GrpcServer;
use service_runtime::outbox::{commands_topic, events_topic};
use service_runtime::status::StatusBoard;

/// How often the dependencies are checked (and health follows).
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Configuration of the commission service; every flag also reads its environment variable.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "commission-service",
    version,
    about = "Commissions, balances and payout reservations"
)]
pub struct Config {
    /// grpc (API + what other services send), events (no API) or hybrid (both).
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
        let board = StatusBoard::new("commission-service", config.mode.as_str());
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

    fn subscription(&self, short_topic: &str, name: &str) -> Subscription {
        Subscription::configured(
            vec![self.config.pulsar.topic(short_topic)],
            name,
            &self.config.consumer,
            &self.board,
        )
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let commissions = app::Commissions::new(self.pool.clone());
        let mode = self.config.mode;
        tracing::info!(mode = mode.as_str(), "commission-service running");
        let mut parts = Parts::new(shutdown.clone());

        let (routes, names): (Routes, Vec<&str>) = if mode.serves_grpc() {
            (
                Routes::new(CommissionServiceServer::new(
                    adapters::grpc::CommissionApi::new(commissions.clone()),
                )),
                vec![SERVICE_NAME],
            )
        } else {
            (Routes::default(), Vec::new())
        };
        let feed_subscription = self.subscription(&events_topic("campaign"), "commission");
        let door_subscription =
            self.subscription(&commands_topic(app::messages::SERVICE), "commission");
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

        let feed = Arc::new(adapters::campaigns::CampaignFeed::new(self.pool.clone()));
        let (pulsar, token) = (self.pulsar.clone(), shutdown.clone());
        parts.spawn("campaign-event feed", async move {
            messaging::run_consumer(pulsar, feed_subscription, feed, token).await
        });

        let door = Arc::new(messaging::door::Door(
            adapters::commands::CommissionDoor::new(commissions, self.pool.clone()),
        ));
        let (pulsar, token) = (self.pulsar.clone(), shutdown.clone());
        parts.spawn("command consumer", async move {
            messaging::run_consumer(pulsar, door_subscription, door, token).await
        });

        parts.supervise().await
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
