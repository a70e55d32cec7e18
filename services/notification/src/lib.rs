//! The notification service: per-user notifications derived from every service's domain events,
//! numbered 1, 2, 3 ... per user, listed, marked read, and streamed live.
//!
//! `domain` holds who is told what (no I/O), `app` the use cases (one transaction each),
//! `adapters` the repository, the four event feeds (`campaign-`, `tracking-`, `commission-` and
//! `payment-events`, one `notification` subscription each), the live streams and the gRPC
//! server. The feeds run in every mode; `events` mode only turns the gRPC API off.

pub mod adapters;
pub mod app;
pub mod domain;

use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use affiliate_proto::notification::notification_service_server::{
    NotificationServiceServer, SERVICE_NAME,
};
use service_host::{Host, ServiceArgs};
use service_runtime::app::Service;
use service_runtime::config::{
    ConsumerArgs, DatabaseArgs, GrpcArgs, LogArgs, Mode, PulsarArgs, RetentionArgs, parse_duration,
};
use service_runtime::outbox::events_topic;

use crate::adapters::events::{EventFeed, Source};

/// The service's own tables (versions from 1000; the platform tables come from the runtime).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Where the gRPC server listens unless told otherwise (campaign 50051 ... payment 50054).
pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:50055";

/// The subscription name on every events topic.
pub const SUBSCRIPTION: &str = "notification";

/// Configuration of the notification service; every flag also reads its environment variable.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "notification-service",
    version,
    about = "Per-user notifications from every service's events, listed and streamed live",
    mut_arg("listen", |arg| arg.default_value(DEFAULT_GRPC_LISTEN))
)]
pub struct Config {
    /// grpc or hybrid (the API and the event feeds) or events (the feeds only).
    #[arg(long, env = "MODE", value_enum, default_value = "hybrid")]
    pub mode: Mode,
    /// How often a live Subscribe stream re-reads its user's notifications even without a
    /// wake-up (NOTIFYs are lost while the listener reconnects), e.g. 2s.
    #[arg(long = "subscribe-poll-interval", env = "SUBSCRIBE_POLL_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub subscribe_poll_interval: Duration,
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
            name: "notification-service",
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
}

impl Service for Application {
    fn grpc_addr(&self) -> SocketAddr {
        self.host.grpc_addr()
    }

    /// Serves until `shutdown` or a failing part: the four event feeds in every mode, the API
    /// and the listener that wakes its live streams unless in `events` mode.
    async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let pool = self.host.pool.clone();
        let notifications = app::Notifications::new(pool.clone());
        let feeds = Source::ALL.map(|source| {
            let topic = events_topic(source.service());
            (source, self.host.subscription(&topic, SUBSCRIPTION))
        });
        let live = self.config.mode.serves_grpc().then(|| {
            adapters::live::Live::new(
                notifications.clone(),
                self.config.subscribe_poll_interval,
                shutdown.clone(),
            )
        });
        let api = live.clone().map(|live| {
            let api = adapters::grpc::NotificationApi::new(notifications.clone(), live);
            (
                Routes::new(NotificationServiceServer::new(api)),
                SERVICE_NAME,
            )
        });
        let mut running = self
            .host
            .serve(api, &events_topic(Source::Campaign.service()), shutdown);
        if let Some(live) = live {
            running.spawn("notification listener", live.listen(pool));
        }
        for (source, subscription) in feeds {
            let feed = EventFeed::new(source, notifications.clone());
            running.consume(source.part(), subscription, feed)?;
        }
        running.supervise().await
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
    fn defaults_are_hybrid_mode_on_port_50055() {
        let config = Config::try_parse_from([
            "notification-service",
            "--database-url",
            "postgres://x@h/db",
        ]);
        let config = config.map_err(|e| e.to_string());
        assert_eq!(
            config.as_ref().map(|c| (c.mode, c.grpc.listen.to_string())),
            Ok((Mode::Hybrid, DEFAULT_GRPC_LISTEN.to_owned()))
        );
    }
}
