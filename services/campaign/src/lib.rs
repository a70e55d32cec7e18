//! The campaign service: advertisers' campaigns, their videos, and creators' acceptances.
//!
//! `domain` holds the rules (no I/O), `app` the handlers (one unit of work each), `adapters` the
//! repository, the gRPC server and the command door; [`Campaign`] declares the service to the
//! kit (`service_host::kit`), which builds and runs it.

pub mod adapters;
pub mod app;
pub mod domain;

use affiliate_proto::campaign::campaign_service_server::CampaignServiceServer;
use service_host::kit::{Declaration, Kit, ServiceFlags, Wiring};

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
    #[command(flatten)]
    pub service: ServiceFlags,
}

/// The campaign service: its API and its command door, in the mode's doors.
pub struct Campaign;

impl Declaration for Campaign {
    const NAME: &'static str = "campaign-service";
    const SERVICE: &'static str = app::messages::SERVICE;
    type Config = Config;

    fn flags(config: &Config) -> &ServiceFlags {
        &config.service
    }

    fn migrator() -> &'static sqlx::migrate::Migrator {
        &MIGRATOR
    }

    fn wire(_: &Config, kit: &Kit) -> anyhow::Result<Wiring> {
        let campaigns = app::Campaigns::new(kit.pool.clone());
        let door = adapters::commands::CampaignDoor::new(campaigns.clone(), kit.pool.clone());
        Ok(Wiring::new()
            .api(CampaignServiceServer::new(
                adapters::grpc::CampaignApi::new(campaigns),
            ))
            .door(door))
    }
}

/// A built campaign service (see `service_host::kit::Application`).
pub type Application = service_host::kit::Application<Campaign>;

#[cfg(test)]
mod config_tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Config::command().debug_assert();
    }
}
