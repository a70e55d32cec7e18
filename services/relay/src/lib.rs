//! The outbox relay: for each configured service database, one active relay (the holder of a
//! PostgreSQL advisory lock; others stand by) claims committed outbox rows in id order, publishes
//! them to Pulsar keyed by aggregate id, awaits every broker receipt, then deletes them and
//! commits. A failed publish rolls the claim back, so the rows go out in a later batch:
//! at least once, never a row that did not commit, never a skipped row.

pub mod batch;
pub mod config;
pub mod leader;
pub mod publisher;

use service_runtime::app::Parts;
use tokio_util::sync::CancellationToken;

pub use batch::{Outcome, publish_batch};
pub use config::{Config, OutboxSource};
pub use publisher::Publisher;

/// A connected relay, ready to run one leader loop per outbox.
pub struct Application {
    config: Config,
    pulsar: pulsar::Pulsar<pulsar::TokioExecutor>,
}

impl Application {
    /// Connects to Pulsar (bounded by the connect timeout).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pulsar = publisher::connect(&config.pulsar).await?;
        Ok(Self { config, pulsar })
    }

    /// Runs every outbox's loop until `shutdown`; a loop that fails for good stops the others.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut parts = Parts::new(shutdown.clone());
        for source in &self.config.outboxes {
            let publisher = Publisher::new(self.pulsar.clone(), self.config.pulsar.clone());
            let relay =
                leader::OutboxRelay::new(source.clone(), self.config.tuning.clone(), publisher);
            parts.spawn("outbox loop", relay.run(shutdown.clone()));
        }
        let result = parts.supervise().await;
        tracing::info!("relay stopped");
        result
    }
}
