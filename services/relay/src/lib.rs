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

/// A relay, ready to run one leader loop per outbox.
pub struct Application {
    config: Config,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Ok(Self { config })
    }

    /// Connects to Pulsar, for as long as it takes (a broker that is down or refuses the
    /// credentials is logged and tried again, never a crash loop), then runs every outbox's loop
    /// until `shutdown`; a loop that fails for good stops the others.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Some(pulsar) =
            messaging::connect_persistently(&self.config.pulsar, &shutdown, |_| {}).await
        else {
            return Ok(());
        };
        // A loop stops between batches; a batch takes at most its publish and database time-outs.
        let tuning = &self.config.tuning;
        let grace = tuning.publish_timeout + tuning.database_timeout;
        let mut parts = Parts::new(shutdown.clone(), grace);
        for source in &self.config.outboxes {
            let publisher = Publisher::new(pulsar.clone(), self.config.pulsar.clone());
            let relay =
                leader::OutboxRelay::new(source.clone(), self.config.tuning.clone(), publisher);
            parts.spawn("outbox loop", relay.run(shutdown.clone()));
        }
        let result = parts.supervise().await;
        tracing::info!("relay stopped");
        result
    }
}
