//! The campaign service: advertisers' campaigns, their videos, and creators' acceptances.
//!
//! `domain` holds the rules (no I/O), `app` the handlers (one transaction each), `adapters` the
//! repository and the gRPC server, and [`Application`] wires them from [`Config`].

pub mod adapters;
pub mod app;
pub mod domain;

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use affiliate_proto::campaign::campaign_service_server::{CampaignServiceServer, SERVICE_NAME};
use messaging::door::Door;
use service_host::{Host, ServiceArgs};
use service_runtime::app::Service;
use service_runtime::config::{
    ConsumerArgs, DatabaseArgs, GrpcArgs, LogArgs, Mode, PulsarArgs, RetentionArgs,
};
use service_runtime::outbox::commands_topic;

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
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// A built service: database migrated, gRPC listener bound, Pulsar connected when the mode
/// consumes commands; not yet serving.
pub struct Application {
    host: Host,
    config: Config,
}

impl Application {
    /// Connects and migrates the database, binds the gRPC listener, and connects Pulsar if the
    /// mode needs it.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let args = ServiceArgs {
            name: "campaign-service",
            mode: config.mode,
            database: &config.database,
            grpc: &config.grpc,
            pulsar: &config.pulsar,
            consumer: &config.consumer,
            retention: &config.retention,
        };
        let host = Host::start(args, &MIGRATOR, config.mode.consumes_commands()).await?;
        Ok(Self { host, config })
    }

    /// The bound gRPC address (health, status and reflection in every mode; the API unless `events`).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.host.grpc_addr()
    }

    /// Serves until `shutdown` is cancelled or a part fails, then stops every part: the gRPC
    /// server drains within the configured grace, the consumer stops between messages.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mode = self.config.mode;
        let campaigns = app::Campaigns::new(self.host.pool.clone());
        let commands = commands_topic(app::messages::SERVICE);
        let subscription = self.host.subscription(&commands, "campaign");
        let door = Door(adapters::commands::CampaignDoor::new(
            campaigns.clone(),
            self.host.pool.clone(),
        ));
        let api = mode.serves_grpc().then(|| {
            (
                Routes::new(CampaignServiceServer::new(
                    adapters::grpc::CampaignApi::new(campaigns),
                )),
                SERVICE_NAME,
            )
        });
        let mut running = self.host.serve(api, &commands, shutdown);
        if mode.consumes_commands() {
            running.consume("command consumer", subscription, door)?;
        }
        running.supervise().await
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
