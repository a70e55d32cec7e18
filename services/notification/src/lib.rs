//! The notification service: per-user notifications derived from every service's domain events,
//! numbered 1, 2, 3 ... per user, listed, marked read, and streamed live.
//!
//! `domain` holds who is told what (no I/O), `app` the use cases (one transaction each),
//! `adapters` the repository, the five event feeds (`campaign-`, `tracking-`, `commission-`,
//! `payment-` and `webhook-events`, one `notification` subscription each), the live streams and
//! the gRPC server. The feeds run in every mode; `events` mode only turns the gRPC API off.

pub mod adapters;
pub mod app;
pub mod domain;

use std::time::Duration;

use affiliate_proto::notification::notification_service_server::NotificationServiceServer;
use service_host::kit::{Config, Declaration, Kit, Wiring};
use service_runtime::config::{Mode, parse_duration};
use service_runtime::outbox::events_topic;

use crate::adapters::events::{EventFeed, Source};

/// The subscription name on every events topic.
pub const SUBSCRIPTION: &str = "notification";

/// The notification service's own flags; each also reads its environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct LiveArgs {
    /// How often a live Subscribe stream re-reads its user's notifications even without a
    /// wake-up (NOTIFYs are lost while the listener reconnects), e.g. 2s.
    #[arg(long = "subscribe-poll-interval", env = "SUBSCRIBE_POLL_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub subscribe_poll_interval: Duration,
}

/// The notification service: the five event feeds in every mode, the API and the listener that
/// wakes its live streams unless in `events` mode.
pub struct Notification;

impl Declaration for Notification {
    const NAME: &'static str = "notification-service";
    const SERVICE: &'static str = "notification";
    const ABOUT: &'static str =
        "Per-user notifications from every service's events, listed and streamed live";
    /// Campaign 50051 ... payment 50054.
    const LISTEN: &'static str = "127.0.0.1:50055";
    const MODE: (Mode, Option<&'static str>) = (
        Mode::Hybrid,
        Some("grpc or hybrid (the API and the event feeds) or events (the feeds only)"),
    );
    /// Versions from 1000; the platform tables come from the runtime.
    const MIGRATOR: &'static sqlx::migrate::Migrator = &sqlx::migrate!("./migrations");
    type Flags = LiveArgs;

    fn needs_pulsar(_: Mode) -> bool {
        true
    }

    /// It has no command topic: the broker check looks up the first feed's topic.
    fn check_topic() -> String {
        events_topic(Source::Campaign.service())
    }

    fn wire(config: &Config<LiveArgs>, kit: &Kit) -> anyhow::Result<Wiring> {
        let notifications = app::Notifications::new(kit.pool.clone());
        let mut wiring = Wiring::new();
        if kit.mode.serves_grpc() {
            let live = adapters::live::Live::new(
                notifications.clone(),
                config.own.subscribe_poll_interval,
                kit.shutdown.clone(),
            );
            let api = adapters::grpc::NotificationApi::new(notifications.clone(), live.clone());
            let pool = kit.pool.clone();
            wiring = wiring
                .api(NotificationServiceServer::new(api))
                .run("notification listener", move |_| live.listen(pool));
        }
        for source in Source::ALL {
            let feed = EventFeed::new(source, notifications.clone());
            wiring = wiring.feed(
                source.part(),
                &events_topic(source.service()),
                SUBSCRIPTION,
                feed,
            );
        }
        Ok(wiring)
    }
}

/// A built notification service (see `service_host::kit::Application`).
pub type Application = service_host::kit::Application<Notification>;

#[cfg(test)]
mod config_tests {
    #[test]
    fn the_command_line_is_well_formed_with_the_declared_defaults() {
        service_host::kit::check_declaration::<super::Notification>();
    }
}
