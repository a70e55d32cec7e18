//! The tracking service: what the audience does through creators' links (views, clicks,
//! purchases) and creators' evidence of published content. A purchase also asks the commission
//! service, through its command topic, to calculate the creator's commission.
//!
//! `domain` holds the rules (no I/O), `app` the handlers (one transaction each), `adapters` the
//! repository, the gRPC server and the command door, and [`Application`] wires them from
//! [`Config`].

pub mod adapters;
pub mod app;
pub mod domain;

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use affiliate_proto::tracking::tracking_service_server::{SERVICE_NAME, TrackingServiceServer};
use messaging::door::Door;
use service_host::{Host, ServiceArgs};
use service_runtime::app::Service;
use service_runtime::config::{
    ConsumerArgs, DatabaseArgs, GrpcArgs, LogArgs, Mode, PulsarArgs, RetentionArgs,
};
use service_runtime::outbox::commands_topic;

/// The service's own tables (versions from 1000; the platform tables come from the runtime).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Where the gRPC server listens unless told otherwise (campaign has 50051).
pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:50052";

/// Configuration of the tracking service; every flag also reads its environment variable.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "tracking-service",
    version,
    about = "Tracking events and evidence over gRPC and Pulsar",
    mut_arg("listen", |arg| arg.default_value(DEFAULT_GRPC_LISTEN))
)]
pub struct Config {
    /// Which doors to open: grpc (the API), events (the tracking-commands topic) or hybrid (both).
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
            name: "tracking-service",
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

    /// Serves until `shutdown` is cancelled or a part fails, then stops every part.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mode = self.config.mode;
        let tracking = app::Tracking::new(self.host.pool.clone());
        let commands = commands_topic(app::messages::SERVICE);
        let subscription = self.host.subscription(&commands, "tracking");
        let door = Door(adapters::commands::TrackingDoor::new(
            tracking.clone(),
            self.host.pool.clone(),
        ));
        let api = mode.serves_grpc().then(|| {
            (
                Routes::new(TrackingServiceServer::new(
                    adapters::grpc::TrackingApi::new(tracking),
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
    use clap::{CommandFactory as _, Parser as _};

    use super::{Config, DEFAULT_GRPC_LISTEN};
    use service_runtime::config::Mode;

    #[test]
    fn the_command_line_is_well_formed() {
        Config::command().debug_assert();
    }

    #[test]
    fn defaults_are_grpc_mode_on_port_50052() {
        let config =
            Config::try_parse_from(["tracking-service", "--database-url", "postgres://x@h/db"]);
        let config = config.map_err(|e| e.to_string());
        assert_eq!(
            config.as_ref().map(|c| (c.mode, c.grpc.listen.to_string())),
            Ok((Mode::Grpc, DEFAULT_GRPC_LISTEN.to_owned()))
        );
    }
}
