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
use service_host::kit::{Declaration, Kit, ServiceFlags, Wiring};

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
    #[command(flatten)]
    pub service: ServiceFlags,
}

/// The tracking service: its API and its command door, in the mode's doors.
pub struct Tracking;

impl Declaration for Tracking {
    const NAME: &'static str = "tracking-service";
    const SERVICE: &'static str = app::messages::SERVICE;
    type Config = Config;

    fn flags(config: &Config) -> &ServiceFlags {
        &config.service
    }

    fn migrator() -> &'static sqlx::migrate::Migrator {
        &MIGRATOR
    }

    fn wire(_: &Config, kit: &Kit) -> anyhow::Result<Wiring> {
        let tracking = app::Tracking::new(kit.pool.clone());
        let door = adapters::commands::TrackingDoor::new(tracking.clone(), kit.pool.clone());
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
            config
                .as_ref()
                .map(|c| (c.service.mode, c.service.grpc.listen.to_string())),
            Ok((Mode::Grpc, DEFAULT_GRPC_LISTEN.to_owned()))
        );
    }
}
