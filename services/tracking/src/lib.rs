//! The tracking service: what the audience does through creators' links (views, clicks,
//! purchases) and creators' evidence of published content. A purchase also asks the commission
//! service, through its command topic, to calculate the creator's commission.
//!
//! `domain` holds the rules (no I/O), `app` the handlers (one unit of work each), `adapters` the
//! repository, the gRPC server and the command door; [`Tracking`] declares the service to the
//! kit (`service_host::kit`), which builds and runs it.

pub mod adapters;
pub mod app;
pub mod domain;

use affiliate_proto::tracking::tracking_service_server::TrackingServiceServer;
use service_host::kit::{Config, Declaration, Kit, NoFlags, Wiring};

/// The tracking service: its API and its command door, in the mode's doors.
pub struct Tracking;

impl Declaration for Tracking {
    const NAME: &'static str = "tracking-service";
    const SERVICE: &'static str = app::messages::SERVICE;
    const ABOUT: &'static str = "Tracking events and evidence over gRPC and Pulsar";
    /// Campaign has 50051.
    const LISTEN: &'static str = "127.0.0.1:50052";
    /// Versions from 1000; the platform tables come from the runtime.
    const MIGRATOR: &'static sqlx::migrate::Migrator = &sqlx::migrate!("./migrations");
    type Flags = NoFlags;

    fn wire(_: &Config<NoFlags>, kit: &Kit) -> anyhow::Result<Wiring> {
        let tracking = app::Tracking::new(kit.pool.clone());
        let door = adapters::commands::TrackingDoor(tracking.clone());
        Ok(Wiring::new()
            .api(TrackingServiceServer::new(
                adapters::grpc::TrackingApi::new(tracking),
            ))
            .door(door))
    }
}

/// A built tracking service (see `service_host::kit::Application`).
pub type Application = service_host::kit::Application<Tracking>;

#[cfg(test)]
mod config_tests {
    #[test]
    fn the_command_line_is_well_formed_with_the_declared_defaults() {
        service_host::kit::check_declaration::<super::Tracking>();
    }
}
