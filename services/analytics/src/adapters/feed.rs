//! The projections' consumers: one per followed topic (subscription `analytics`, inbox consumer
//! `analytics/{topic}`), each applying a batch of messages set-based in one transaction
//! ([`Analytics::apply_set`]) whose statistics rows are taken in one global order (so two never
//! deadlock). A message that is not its topic's envelope is recorded as refused and
//! acknowledged; database trouble fails the batch, which the consumer splits and retries.

use messaging::{Delivery, Failure, Handler};
use sqlx::{PgConnection, PgPool};

use crate::app::{Analytics, Applied};
use crate::domain::Topic;

/// Applies one topic's messages.
#[derive(Debug, Clone)]
pub struct Projection {
    topic: Topic,
    analytics: Analytics,
}

impl Projection {
    pub fn new(topic: Topic, analytics: Analytics) -> Self {
        Self { topic, analytics }
    }
}

impl Handler for Projection {
    fn batch_pool(&self) -> Option<&PgPool> {
        Some(self.analytics.pool())
    }

    fn applies_sets(&self) -> bool {
        true
    }

    /// Statistics may trail by a fraction of a second (the goal: lag p99 under 1 s); in
    /// exchange a set carries every message of that time in one transaction.
    fn linger(&self) -> std::time::Duration {
        std::time::Duration::from_millis(100)
    }

    async fn apply_set(
        &self,
        conn: &mut PgConnection,
        deliveries: &[&Delivery],
    ) -> Result<Vec<Result<(), Failure>>, Failure> {
        let applied = Analytics::apply_set(conn, &self.topic, deliveries)
            .await
            .map_err(Failure::transient)?;
        Ok(applied
            .into_iter()
            .map(|applied| match applied {
                Applied::Applied | Applied::Duplicate => Ok(()),
                Applied::Refused(reason) => Err(Failure::Rejected(reason)),
            })
            .collect())
    }
}
