//! The campaign service: advertisers' campaigns, their videos, and creators' acceptances.
//!
//! `domain` holds the rules (no I/O), `app` the handlers (one transaction each), `adapters` the
//! repository and the gRPC server, and [`Application`] wires them from [`Config`].

pub mod adapters;
pub mod app;
pub mod domain;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use affiliate_proto::campaign::campaign_service_server::{CampaignServiceServer, SERVICE_NAME};
use messaging::Subscription;
use service_runtime::app::{Parts, Service};
use service_runtime::config::{ConsumerArgs, DatabaseArgs, GrpcArgs, LogArgs, Mode, PulsarArgs};
use service_runtime::db;
use service_runtime::grpc::GrpcServer;
use service_runtime::outbox::commands_topic;
use service_runtime::status::StatusBoard;

/// How often the dependencies are checked (and health follows).
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// The service's own tables (versions from 1000; the platform tables come from the runtime).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Configuration of the campaign service; every flag also reads its environment variable.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "campaign-service",
    version,
    about = "Campaigns, videos and acceptances over gRPC and Pulsar"
)]
pub struct Config {
    /// Which doors to open: grpc (the API), events (the campaign-commands topic) or hybrid (both).
    #[arg(long, env = "MODE", value_enum, default_value = "grpc")]
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

/// A built service: database migrated, gRPC listener bound, Pulsar connected when the mode
/// consumes commands; not yet serving.
pub struct Application {
    server: GrpcServer,
    pool: sqlx::PgPool,
    pulsar: Option<pulsar::Pulsar<pulsar::TokioExecutor>>,
    config: Config,
    board: StatusBoard,
}

impl Application {
    /// Connects and migrates the database, binds the gRPC listener, and connects Pulsar if the
    /// mode needs it.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let started = Instant::now();
        let pool = db::connect(&config.database).await?;
        db::migrate(&pool, &MIGRATOR).await?;
        let board = StatusBoard::new("campaign-service", config.mode.as_str());
        board.set_database(Ok(started.elapsed()));
        let pulsar = if config.mode.consumes_commands() {
            let started = Instant::now();
            let client = messaging::connect(&config.pulsar).await?;
            board.set_pulsar(Ok(started.elapsed()));
            Some(client)
        } else {
            None
        };
        let server = GrpcServer::bind(config.grpc.listen).await?;
        Ok(Self {
            server,
            pool,
            pulsar,
            config,
            board,
        })
    }

    /// The bound gRPC address (health and reflection in every mode; the API unless `events`).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves until `shutdown` is cancelled or a part fails, then stops every part: the gRPC
    /// server drains within the configured grace, the consumer stops between messages.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let campaigns = app::Campaigns::new(self.pool.clone());
        let mode = self.config.mode;
        tracing::info!(mode = mode.as_str(), "campaign-service running");
        let mut parts = Parts::new(shutdown.clone());

        let (routes, names): (Routes, Vec<&str>) = if mode.serves_grpc() {
            let api =
                CampaignServiceServer::new(adapters::grpc::CampaignApi::new(campaigns.clone()));
            (Routes::new(api), vec![SERVICE_NAME])
        } else {
            (Routes::default(), Vec::new())
        };
        let board = self.board.clone();
        let pulsar_check = self.pulsar.clone().map(|p| {
            (
                p,
                self.config
                    .pulsar
                    .topic(&commands_topic(app::messages::SERVICE)),
            )
        });
        let (pool, token) = (self.pool.clone(), shutdown.clone());
        let watched = board.clone();
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
        parts.spawn("gRPC server", async move {
            self.server.serve(routes, &names, board, token, grace).await
        });

        if let Some(pulsar) = self.pulsar {
            let subscription = Subscription::configured(
                vec![
                    self.config
                        .pulsar
                        .topic(&commands_topic(app::messages::SERVICE)),
                ],
                "campaign",
                &self.config.consumer,
                &self.board,
            );
            let door = Arc::new(messaging::door::Door(
                adapters::commands::CampaignDoor::new(campaigns, self.pool.clone()),
            ));
            let token = shutdown.clone();
            parts.spawn("command consumer", async move {
                messaging::run_consumer(pulsar, subscription, door, token).await
            });
        }

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
