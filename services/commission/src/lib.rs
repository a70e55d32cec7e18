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

use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use affiliate_proto::commission::commission_service_server::{
    CommissionServiceServer, SERVICE_NAME,
};
use messaging::door::Door;
use service_host::{Host, ServiceArgs};
use service_runtime::app::Service;
use service_runtime::config::{
    ConsumerArgs, DatabaseArgs, GrpcArgs, LogArgs, Mode, PulsarArgs, RetentionArgs,
};
use service_runtime::outbox::{commands_topic, events_topic};

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
    pub retention: RetentionArgs,
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
            name: "commission-service",
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

    /// Serves until `shutdown` or a failing part. The campaign-event feed and the command door
    /// run in every mode (other services address this one through them).
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let commissions = app::Commissions::new(self.host.pool.clone());
        let commands = commands_topic(app::messages::SERVICE);
        let feed_subscription = self
            .host
            .subscription(&events_topic("campaign"), "commission");
        let door_subscription = self.host.subscription(&commands, "commission");
        let feed = adapters::campaigns::CampaignFeed::new(self.host.pool.clone());
        let door = Door(adapters::commands::CommissionDoor::new(
            commissions.clone(),
            self.host.pool.clone(),
        ));
        let api = self.config.mode.serves_grpc().then(|| {
            (
                Routes::new(CommissionServiceServer::new(
                    adapters::grpc::CommissionApi::new(commissions),
                )),
                SERVICE_NAME,
            )
        });
        let mut running = self.host.serve(api, &commands, shutdown);
        running.consume("campaign-event feed", feed_subscription, feed)?;
        running.consume("command consumer", door_subscription, door)?;
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
