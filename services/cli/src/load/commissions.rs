//! Watching `commission-events` for the run's commissions: a non-durable exclusive subscription
//! of its own, made before the first purchase and starting at the latest message, whose
//! commission.calculated.v1 (and commission.rejected.v1) events complete purchases in the tally.

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use futures::TryStreamExt as _;
use prost::Message as _;
use pulsar::{Consumer, Pulsar, TokioExecutor};
use tokio::sync::Notify;
use tokio::time::Instant;

use affiliate_proto::commission::CommissionEvent;
use affiliate_proto::commission::commission_event::Event;
use service_runtime::config::PulsarArgs;

use super::lock;
use super::tally::Tally;

/// The topic the commission service publishes its events on (short name).
const TOPIC: &str = "commission-events";

/// A subscription to `commission-events` (the client kept alive with it).
pub struct Subscription {
    _client: Pulsar<TokioExecutor>,
    consumer: Consumer<Vec<u8>, TokioExecutor>,
    topic: String,
}

/// Subscribes now, so every event published from here on is seen.
pub async fn subscribe(pulsar: &PulsarArgs) -> anyhow::Result<Subscription> {
    let topic = pulsar.topic(TOPIC);
    let client = messaging::connect(pulsar).await?;
    let consumer = messaging::watch(
        &client,
        &topic,
        "platform-load",
        pulsar::consumer::InitialPosition::Latest,
    )
    .await
    .with_context(|| format!("subscribe to {topic}"))?;
    Ok(Subscription {
        _client: client,
        consumer,
        topic,
    })
}

impl Subscription {
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

/// Records the commissions of `campaign_ids` in `tally` as they arrive, waking `changed` after
/// each; runs until the subscription fails or the task is aborted.
pub async fn watch(
    mut subscription: Subscription,
    campaign_ids: std::collections::HashSet<String>,
    tally: Arc<Mutex<Tally>>,
    changed: Arc<Notify>,
) -> anyhow::Result<()> {
    let topic = subscription.topic.clone();
    loop {
        let message = subscription
            .consumer
            .try_next()
            .await
            .with_context(|| format!("receive from {topic}"))?
            .ok_or_else(|| anyhow::anyhow!("the subscription to {topic} ended"))?;
        let received = Instant::now();
        // The subscription is the run's own and not durable: acknowledging only lets the broker
        // forget what it sent us, so a failed acknowledgement loses nothing.
        let _ = subscription.consumer.ack(&message).await;
        let event = CommissionEvent::decode(message.payload.data.as_slice())
            .ok()
            .and_then(|envelope| envelope.event);
        match event {
            Some(Event::CommissionCalculated(calculated)) => {
                if let Some(commission) = calculated.commission
                    && campaign_ids.contains(&commission.campaign_id)
                {
                    lock(&tally).calculated(commission.tracking_event_id, received);
                    changed.notify_one();
                }
            }
            Some(Event::CommissionRejected(rejected)) if !rejected.tracking_event_id.is_empty() => {
                lock(&tally).rejected(rejected.tracking_event_id, rejected.reason);
                changed.notify_one();
            }
            _ => {}
        }
    }
}
