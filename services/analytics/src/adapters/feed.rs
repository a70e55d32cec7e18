//! The projections' consumers: one per followed topic (subscription `analytics`, inbox consumer
//! `analytics/{topic}`), each applying a message in one transaction of its own that takes its
//! statistics rows in one global order (so two never deadlock). A message that is not its
//! topic's envelope is recorded as refused and acknowledged; database trouble is retried.

use messaging::{Delivery, Failure, Handler};

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
    async fn handle(&self, delivery: &Delivery) -> Result<(), Failure> {
        match self.analytics.apply(&self.topic, delivery).await {
            Ok(Applied::Applied | Applied::Duplicate) => Ok(()),
            Ok(Applied::Refused(reason)) => Err(Failure::Rejected(reason)),
            Err(e) => Err(Failure::Transient(e.into())),
        }
    }
}
