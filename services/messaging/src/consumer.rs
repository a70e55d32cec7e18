//! The consumer loop: subscribe (Key_Shared, so order holds per key while consumers scale out),
//! hand each message to the handler, then acknowledge, or back off and negatively acknowledge.
//! The client moves a message that keeps failing to the dead-letter topic after N redeliveries.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::TryStreamExt as _;
use pulsar::consumer::{DeadLetterPolicy, InitialPosition, Message};
use pulsar::{ConsumerOptions, Pulsar, SubType, TokioExecutor};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use service_runtime::status::SubscriptionHandle;

use crate::properties;

/// One received message, as handlers see it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Full topic name it arrived on.
    pub topic: String,
    /// The message key (the aggregate id).
    pub key: Option<String>,
    /// The `message-id` property (or, failing that, the broker's message id).
    pub message_id: String,
    pub message_type: Option<String>,
    pub correlation_id: Option<String>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub properties: HashMap<String, String>,
    pub payload: Vec<u8>,
}

impl Delivery {
    pub fn from_message(message: &Message<Vec<u8>>) -> Self {
        let properties: HashMap<String, String> = message
            .metadata()
            .properties
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect();
        let id = message.message_id();
        let message_id = properties
            .get(properties::MESSAGE_ID)
            .cloned()
            .unwrap_or_else(|| {
                format!(
                    "pulsar:{}:{}:{}",
                    id.ledger_id,
                    id.entry_id,
                    id.batch_index.unwrap_or(-1)
                )
            });
        let property = |name: &str| properties.get(name).cloned();
        Self {
            topic: message.topic.clone(),
            key: message.key(),
            message_id,
            message_type: property(properties::MESSAGE_TYPE),
            correlation_id: property(properties::CORRELATION_ID),
            traceparent: property(properties::TRACEPARENT),
            tracestate: property(properties::TRACESTATE),
            payload: message.payload.data.clone(),
            properties,
        }
    }
}

/// Why a message was not applied.
#[derive(Debug)]
pub enum Failure {
    /// It can never succeed (undecodable, invalid, refused by the domain). The handler has
    /// recorded it (and published a rejection); the loop acknowledges it.
    Rejected(String),
    /// It may succeed later (database down, a dependency not known yet). The loop negatively
    /// acknowledges it after a back-off; after N redeliveries it goes to the dead-letter topic.
    Transient(anyhow::Error),
}

/// Applies messages. Implementations record the message id in the same transaction as their
/// effects, so a redelivery is skipped.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, delivery: &Delivery) -> impl Future<Output = Result<(), Failure>> + Send;
}

/// What to subscribe to, and how to treat failures.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// Full topic names.
    pub topics: Vec<String>,
    /// Subscription name; consumers sharing it share the work (Key_Shared).
    pub name: String,
    /// Redeliveries after which a message goes to the dead-letter topic.
    pub max_redeliveries: usize,
    /// Full name of the dead-letter topic.
    pub dead_letter_topic: String,
    /// First retry delay; doubles per attempt up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Where to report state and counters (the process's status board), if anywhere.
    pub status: Option<SubscriptionHandle>,
}

impl Subscription {
    /// A subscription `name` on `topics` with the dead-letter topic `{first topic}-{name}-DLQ`.
    pub fn new(topics: Vec<String>, name: &str, max_redeliveries: usize) -> Self {
        let first = topics.first().cloned().unwrap_or_default();
        Self {
            dead_letter_topic: dead_letter_topic(&first, name),
            topics,
            name: name.to_owned(),
            max_redeliveries,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            status: None,
        }
    }

    /// A subscription configured from the process's consumer flags, reporting to its board.
    pub fn configured(
        topics: Vec<String>,
        name: &str,
        args: &service_runtime::config::ConsumerArgs,
        board: &service_runtime::status::StatusBoard,
    ) -> Self {
        let mut s = Self::new(topics, name, args.max_redeliveries);
        s.min_backoff = args.min_backoff;
        s.max_backoff = args.max_backoff;
        s.status = Some(board.subscription(name, &s.topics));
        s
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        self.min_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// The dead-letter topic of `subscription` on `topic`: `{topic}-{subscription}-DLQ`.
pub fn dead_letter_topic(topic: &str, subscription: &str) -> String {
    format!("{topic}-{}-DLQ", subscription.replace('/', "-"))
}

/// Consumes until `shutdown`; returns an error only if the subscription cannot be made or ends.
pub async fn run_consumer<H: Handler>(
    pulsar: Pulsar<TokioExecutor>,
    subscription: Subscription,
    handler: Arc<H>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut consumer: pulsar::Consumer<Vec<u8>, TokioExecutor> = pulsar
        .consumer()
        .with_topics(subscription.topics.clone())
        .with_subscription(subscription.name.clone())
        .with_subscription_type(SubType::KeyShared)
        .with_consumer_name(format!(
            "{}-{}",
            subscription.name,
            uuid::Uuid::new_v4().simple()
        ))
        .with_options(ConsumerOptions {
            durable: Some(true),
            initial_position: InitialPosition::Earliest,
            ..ConsumerOptions::default()
        })
        .with_dead_letter_policy(DeadLetterPolicy {
            max_redeliver_count: subscription.max_redeliveries,
            dead_letter_topic: subscription.dead_letter_topic.clone(),
        })
        .build()
        .await
        .with_context(|| {
            format!(
                "subscribe `{}` to {:?}",
                subscription.name, subscription.topics
            )
        })?;
    tracing::info!(subscription = %subscription.name, topics = ?subscription.topics, "consuming");
    let status = subscription.status.clone();
    let report = |f: fn(&SubscriptionHandle)| {
        if let Some(handle) = &status {
            f(handle);
        }
    };
    report(SubscriptionHandle::consuming);

    let mut attempts: HashMap<String, u32> = HashMap::new();
    let mut receive_errors = 0u32;
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => break,
            next = consumer.try_next() => next,
        };
        let message = match next {
            Ok(Some(message)) => {
                receive_errors = 0;
                message
            }
            Ok(None) => anyhow::bail!("subscription `{}` ended", subscription.name),
            Err(e) => {
                receive_errors += 1;
                if receive_errors > 20 {
                    return Err(e).context(format!(
                        "subscription `{}` keeps failing",
                        subscription.name
                    ));
                }
                tracing::warn!(subscription = %subscription.name, error = %e, "receive failed; retrying");
                tokio::time::sleep(subscription.backoff(receive_errors)).await;
                continue;
            }
        };
        let delivery = Delivery::from_message(&message);
        let topic = delivery
            .topic
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        // Processing continues the trace of whoever wrote the message (the relay's publish span).
        let span = tracing::info_span!(
            "pulsar.consume",
            otel.name = %format!("{topic} process"),
            otel.kind = "consumer",
            messaging.system = "pulsar",
            messaging.destination = %topic,
            messaging.subscription = %subscription.name,
            message_id = %delivery.message_id,
            message_type = delivery.message_type.as_deref().unwrap_or("?"),
            correlation_id = delivery.correlation_id.as_deref().unwrap_or_default(),
        );
        service_runtime::telemetry::set_remote_parent(
            &span,
            delivery.traceparent.as_deref(),
            delivery.tracestate.as_deref(),
        );
        let started = std::time::Instant::now();
        let outcome = handler.handle(&delivery).instrument(span.clone()).await;
        span.in_scope(|| {
            tracing::debug!(
                ok = outcome.is_ok(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "message processed"
            );
        });
        let labels = [
            ("subscription", subscription.name.clone()),
            ("topic", topic),
        ];
        metrics::histogram!("consumer_processing_seconds", &labels)
            .record(started.elapsed().as_secs_f64());
        let count = |outcome: &'static str| {
            let mut labels = labels.to_vec();
            labels.push(("outcome", outcome.to_owned()));
            metrics::counter!("consumer_messages_total", &labels).increment(1);
        };
        match outcome {
            Ok(()) => {
                attempts.remove(&delivery.message_id);
                consumer.ack(&message).await.context("acknowledge")?;
                report(SubscriptionHandle::applied);
                count("applied");
            }
            Err(Failure::Rejected(reason)) => {
                span.in_scope(|| {
                    tracing::warn!(
                        subscription = %subscription.name,
                        message_id = %delivery.message_id,
                        message_type = delivery.message_type.as_deref().unwrap_or("?"),
                        %reason,
                        "message rejected"
                    );
                });
                count("rejected");
                attempts.remove(&delivery.message_id);
                consumer
                    .ack(&message)
                    .await
                    .context("acknowledge rejected message")?;
            }
            Err(Failure::Transient(error)) => {
                if attempts.len() > 10_000 {
                    attempts.clear();
                }
                let attempt = attempts.entry(delivery.message_id.clone()).or_insert(0);
                *attempt += 1;
                let delay = subscription.backoff(*attempt);
                span.in_scope(|| {
                    tracing::warn!(
                        subscription = %subscription.name,
                        message_id = %delivery.message_id,
                        attempt = *attempt,
                        retry_in_ms = delay.as_millis() as u64,
                        error = format!("{error:#}"),
                        "message failed; will retry"
                    );
                });
                // After its last redelivery the client moves it to the dead-letter topic.
                count(if *attempt as usize > subscription.max_redeliveries {
                    "dead_lettered"
                } else {
                    "retried"
                });
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(delay) => {}
                }
                consumer
                    .nack(&message)
                    .await
                    .context("negatively acknowledge")?;
            }
        }
    }
    tracing::info!(subscription = %subscription.name, "consumer stopped");
    if let Some(handle) = &status {
        handle.stopped("shutdown");
    }
    let _ = consumer.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_minimum_up_to_the_maximum() {
        let s = Subscription::new(vec!["persistent://t/n/x".into()], "svc", 5);
        let delays: Vec<u128> = (1..=8).map(|a| s.backoff(a).as_millis()).collect();
        assert_eq!(delays, [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
    }

    #[test]
    fn dead_letter_topic_follows_the_pulsar_convention() {
        assert_eq!(
            dead_letter_topic("persistent://t/n/campaign-commands", "campaign"),
            "persistent://t/n/campaign-commands-campaign-DLQ"
        );
    }
}
