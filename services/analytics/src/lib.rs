//! The analytics service, the platform's read side (CQRS): campaign, creator, tracking link and
//! sub-id statistics by day, and the audit trail of every command and event, projected
//! effectively once from every service's command and events topic and rebuildable from them
//! (`Replay`).
//!
//! `domain` holds what each message counts for and the causal order of a workflow (no I/O),
//! `app` the use cases (one transaction each) and the replays, `adapters` the repository, the
//! eight projections (subscription `analytics` on each topic) and the gRPC server. The
//! projections run in every mode; `events` mode only turns the gRPC API off.

pub mod adapters;
pub mod app;
pub mod domain;

use std::time::Duration;

use affiliate_proto::analytics::analytics_service_server::AnalyticsServiceServer;
use service_host::kit::{Config, Declaration, Kit, Wiring};
use service_runtime::config::{Mode, parse_positive_duration, parse_retention};

use crate::adapters::feed::Projection;
use crate::app::replay::Replays;
use crate::domain::TOPICS;

/// The subscription name on every followed topic.
pub const SUBSCRIPTION: &str = "analytics";

/// The analytics service's own flags; each also reads its environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct AnalyticsArgs {
    /// Pulsar admin REST URL: a replay moves the subscriptions' cursors through it, and the
    /// backlogs (how far behind the topics the projections are) are read from it. The broker's
    /// CA file and token are the binary protocol's.
    #[arg(
        long = "pulsar-admin-url",
        env = "PULSAR_ADMIN_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub pulsar_admin_url: String,
    /// How often the backlogs are measured (status board, metrics) and an interrupted replay is
    /// finished, e.g. 5s.
    #[arg(long = "lag-interval", env = "LAG_INTERVAL", default_value = "5s", value_parser = parse_positive_duration)]
    pub lag_interval: Duration,
    /// How long a message stays in the audit trail (by when it happened), e.g. 90d; at least 1h.
    #[arg(long = "audit-retention", env = "AUDIT_RETENTION", default_value = "90d", value_parser = parse_retention)]
    pub audit_retention: Duration,
}

/// The analytics service: the eight projections and the replay watcher in every mode, the API
/// unless in `events` mode.
pub struct Analytics;

impl Declaration for Analytics {
    const NAME: &'static str = "analytics-service";
    const SERVICE: &'static str = "analytics";
    const ABOUT: &'static str =
        "Campaign and creator statistics and the audit trail, projected from every topic";
    /// Campaign 50051 ... notification 50055.
    const LISTEN: &'static str = "127.0.0.1:50056";
    const MODE: (Mode, Option<&'static str>) = (
        Mode::Hybrid,
        Some("grpc or hybrid (the API and the projections) or events (the projections only)"),
    );
    /// Versions from 1000; the platform tables come from the runtime.
    const MIGRATOR: &'static sqlx::migrate::Migrator = &sqlx::migrate!("./migrations");
    type Flags = AnalyticsArgs;

    fn needs_pulsar(_: Mode) -> bool {
        true
    }

    /// It has no command topic: the broker check looks up the first followed topic.
    fn check_topic() -> String {
        TOPICS[0].short.to_owned()
    }

    fn wire(config: &Config<AnalyticsArgs>, kit: &Kit) -> anyhow::Result<Wiring> {
        let own = &config.own;
        let analytics = app::Analytics::new(kit.pool.clone());
        let replays = Replays::new(
            kit.pool.clone(),
            &own.pulsar_admin_url,
            &config.service.pulsar,
            kit.board.clone(),
        )?;
        let mut wiring = Wiring::new();
        if kit.mode.serves_grpc() {
            let api = adapters::grpc::AnalyticsApi::new(analytics.clone(), replays.clone());
            wiring = wiring.api(AnalyticsServiceServer::new(api));
        }
        let every = own.lag_interval;
        wiring = wiring.run("replay and lag watcher", move |token| {
            replays.watch(every, token)
        });
        let (pool, retention, prune_every) = (
            kit.pool.clone(),
            own.audit_retention,
            config.service.retention.interval,
        );
        wiring = wiring.run("audit pruning", move |token| {
            app::retention::prune_audit(pool, retention, prune_every, token)
        });
        for topic in TOPICS {
            wiring = wiring.feed(
                topic.part,
                topic.short,
                SUBSCRIPTION,
                Projection::new(topic, analytics.clone()),
            );
        }
        Ok(wiring)
    }
}

/// A built analytics service (see `service_host::kit::Application`).
pub type Application = service_host::kit::Application<Analytics>;

#[cfg(test)]
mod config_tests {
    #[test]
    fn the_command_line_is_well_formed_with_the_declared_defaults() {
        service_host::kit::check_declaration::<super::Analytics>();
    }
}
