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

use std::time::Duration;

use affiliate_proto::tracking::tracking_service_server::TrackingServiceServer;
use service_host::kit::{Config, Declaration, Kit, Wiring};
use service_runtime::config::{Mode, parse_duration};
use service_runtime::outbox::events_topic;

/// The tracking service's own settings.
#[derive(Debug, Clone, clap::Args)]
pub struct AttributionArgs {
    /// How long a view, click or purchase that its copy of the campaigns does not attribute (an
    /// unknown, inactive or not accepted campaign) waits for the copy before it is refused: the
    /// campaign events that feed it may still be on their way, e.g. 3s.
    #[arg(long = "attribution-grace", env = "ATTRIBUTION_GRACE", default_value = "3s", value_parser = parse_duration)]
    pub attribution_grace: Duration,
}

/// The tracking service: its API and its command door, in the mode's doors, and the campaign
/// feed that keeps its copy of the campaigns in every mode.
pub struct Tracking;

impl Declaration for Tracking {
    const NAME: &'static str = "tracking-service";
    const SERVICE: &'static str = app::messages::SERVICE;
    const ABOUT: &'static str = "Tracking events and evidence over gRPC and Pulsar";
    /// Campaign has 50051.
    const LISTEN: &'static str = "127.0.0.1:50052";
    /// Versions from 1000; the platform tables come from the runtime.
    const MIGRATOR: &'static sqlx::migrate::Migrator = &sqlx::migrate!("./migrations");
    type Flags = AttributionArgs;

    fn needs_pulsar(_: Mode) -> bool {
        true
    }

    fn wire(config: &Config<AttributionArgs>, kit: &Kit) -> anyhow::Result<Wiring> {
        let attribution = app::Attribution::new(config.own.attribution_grace);
        let feed = adapters::campaigns::feed(kit.pool.clone(), attribution.changed.clone());
        let tracking = app::Tracking::new(kit.pool.clone(), attribution);
        let door = adapters::commands::TrackingDoor(tracking.clone());
        Ok(Wiring::new()
            .api(TrackingServiceServer::new(
                adapters::grpc::TrackingApi::new(tracking),
            ))
            .door(door)
            .feed(
                "campaign-event feed",
                &events_topic("campaign"),
                "tracking",
                feed,
            ))
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
