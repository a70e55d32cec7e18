//! The commission service: commissions computed from purchases, creators' balances, and the
//! reservations the payout saga makes, releases and settles.
//!
//! `domain` holds the rules (no I/O), `app` the handlers (one unit of work each), `adapters` the
//! repository, the gRPC server, the `commission-commands` door and the campaign-event feed.
//! The feed and the command door run in every mode, because other services address this one
//! through them (tracking sends calculate, the payout saga reserve/release/settle); `events`
//! mode only turns the gRPC API off. [`Commission`] declares it to the kit (`service_host::kit`).

pub mod adapters;
pub mod app;
pub mod domain;

use affiliate_proto::commission::commission_service_server::CommissionServiceServer;
use std::time::Duration;

use service_host::kit::{Config, Declaration, Kit, Wiring};
use service_runtime::config::{Mode, parse_positive_duration};
use service_runtime::outbox::events_topic;

/// The commission service's own flags; each also reads its environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct CommissionArgs {
    /// How often commissions whose hold has ended are looked for (and approved), and kept
    /// refunds whose commission has arrived applied, e.g. 1s. A full batch is followed by the
    /// next at once.
    #[arg(long = "hold-poll-interval", env = "HOLD_POLL_INTERVAL", default_value = "1s", value_parser = parse_positive_duration)]
    pub hold_poll_interval: Duration,
    /// Most commissions approved in one transaction when their holds end.
    #[arg(long = "hold-batch", env = "HOLD_BATCH", default_value_t = 5000, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub hold_batch: i64,
}

/// The commission service: its API, its command door, the campaign-event feed and the loop that
/// ends holds.
pub struct Commission;

impl Declaration for Commission {
    const NAME: &'static str = "commission-service";
    const SERVICE: &'static str = app::messages::SERVICE;
    const ABOUT: &'static str = "Commissions, balances and payout reservations";
    const LISTEN: &'static str = "127.0.0.1:50053";
    const MODE: (Mode, Option<&'static str>) = (
        Mode::Hybrid,
        Some("grpc (API + what other services send), events (no API) or hybrid (both)"),
    );
    /// Versions from 1000; the platform tables come from the runtime.
    const MIGRATOR: &'static sqlx::migrate::Migrator = &sqlx::migrate!("./migrations");
    type Flags = CommissionArgs;

    fn needs_pulsar(_: Mode) -> bool {
        true
    }

    fn wire(config: &Config<CommissionArgs>, kit: &Kit) -> anyhow::Result<Wiring> {
        let commissions = app::Commissions::new(kit.pool.clone());
        let door = adapters::commands::CommissionDoor(commissions.clone());
        let (interval, batch) = (config.own.hold_poll_interval, config.own.hold_batch);
        let holds = commissions.clone();
        Ok(Wiring::new()
            .run("hold ends", move |token| {
                app::lifecycle::hold_loop(holds, interval, batch, token)
            })
            .api(CommissionServiceServer::new(
                adapters::grpc::CommissionApi::new(commissions),
            ))
            .door_in_every_mode(door)
            .feed(
                "campaign-event feed",
                &events_topic("campaign"),
                "commission",
                adapters::campaigns::feed(kit.pool.clone()),
            ))
    }
}

/// A built commission service (see `service_host::kit::Application`).
pub type Application = service_host::kit::Application<Commission>;

#[cfg(test)]
mod config_tests {
    #[test]
    fn the_command_line_is_well_formed_with_the_declared_defaults() {
        service_host::kit::check_declaration::<super::Commission>();
    }
}
