//! The campaign service: advertisers' campaigns, their videos, and creators' acceptances.
//!
//! `domain` holds the rules (no I/O), `app` the handlers (one unit of work each), `adapters` the
//! repository, the gRPC server and the command door; [`Campaign`] declares the service to the
//! kit (`service_host::kit`), which builds and runs it.

pub mod adapters;
pub mod app;
pub mod domain;

use affiliate_proto::campaign::campaign_service_server::CampaignServiceServer;
use service_host::kit::{Config, Declaration, Kit, NoFlags, Wiring};

/// The campaign service: its API and its command door, in the mode's doors.
pub struct Campaign;

impl Declaration for Campaign {
    const NAME: &'static str = "campaign-service";
    const SERVICE: &'static str = app::messages::SERVICE;
    const ABOUT: &'static str = "Campaigns, videos and acceptances over gRPC and Pulsar";
    const LISTEN: &'static str = "127.0.0.1:50051";
    /// Versions from 1000; the platform tables come from the runtime.
    const MIGRATOR: &'static sqlx::migrate::Migrator = &sqlx::migrate!("./migrations");
    type Flags = NoFlags;

    fn wire(_: &Config<NoFlags>, kit: &Kit) -> anyhow::Result<Wiring> {
        let campaigns = app::Campaigns::new(kit.pool.clone());
        let door = adapters::commands::CampaignDoor(campaigns.clone());
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
    #[test]
    fn the_command_line_is_well_formed_with_the_declared_defaults() {
        service_host::kit::check_declaration::<super::Campaign>();
    }
}
