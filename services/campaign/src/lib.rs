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
use service_runtime::config::{DatabaseArgs, GrpcArgs, LogArgs};
use service_runtime::db;
use service_runtime::grpc::GrpcServer;

/// The service's own tables (versions from 1000; the platform tables come from the runtime).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Configuration of the campaign service; every flag also reads its environment variable.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "campaign-service",
    version,
    about = "Campaigns, videos and acceptances over gRPC"
)]
pub struct Config {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub grpc: GrpcArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// A built service: database migrated, gRPC listener bound, not yet serving.
pub struct Application {
    server: GrpcServer,
    campaigns: app::Campaigns,
    config: Config,
}

impl Application {
    /// Connects and migrates the database and binds the gRPC listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = db::connect(&config.database).await?;
        db::migrate(&pool, &MIGRATOR).await?;
        let server = GrpcServer::bind(config.grpc.listen).await?;
        Ok(Self {
            server,
            campaigns: app::Campaigns::new(pool),
            config,
        })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves until `shutdown` is cancelled, then drains within the configured grace.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let api = CampaignServiceServer::new(adapters::grpc::CampaignApi::new(self.campaigns));
        self.server
            .serve(
                Routes::new(api),
                &[SERVICE_NAME],
                shutdown,
                self.config.grpc.shutdown_grace,
            )
            .await
    }
}
