//! Publishing outbox rows to Pulsar: one producer per topic (created on first use), unbatched
//! (Key_Shared consumers need per-message keys), keyed by aggregate id, with the message's
//! identity and trace context as properties. Sends are pipelined and the receipts awaited
//! together, never one round trip per message.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use futures::future::try_join_all;
use pulsar::producer::{Message, SendFuture};
use pulsar::{Producer, ProducerOptions, Pulsar, TokioExecutor};
use service_runtime::config::PulsarArgs;
use service_runtime::telemetry;

use crate::batch::OutboxRow;

pub use messaging::properties;

pub use messaging::connect;

/// The producers of one outbox's topics.
pub struct Publisher {
    pulsar: Pulsar<TokioExecutor>,
    args: PulsarArgs,
    producers: HashMap<String, Producer<TokioExecutor>>,
}

impl Publisher {
    pub fn new(pulsar: Pulsar<TokioExecutor>, args: PulsarArgs) -> Self {
        Self {
            pulsar,
            args,
            producers: HashMap::new(),
        }
    }

    /// Sends every row, in order, and waits for all receipts (at most `timeout`). Any failure
    /// fails the whole call; the caller then keeps the rows for a later batch.
    pub async fn publish(&mut self, rows: &[OutboxRow], timeout: Duration) -> anyhow::Result<()> {
        let result = tokio::time::timeout(timeout, self.send_all(rows)).await;
        let result = match result {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!(
                "broker receipts not all received within {timeout:?}"
            )),
        };
        if result.is_err() {
            // A producer that failed may be half-broken; start afresh on the next batch.
            self.producers.clear();
        }
        result
    }

    async fn send_all(&mut self, rows: &[OutboxRow]) -> anyhow::Result<()> {
        let mut receipts: Vec<SendFuture> = Vec::with_capacity(rows.len());
        // A span per message whose trace is sampled, a child of the context the row captured;
        // it ends with the receipts, and its own context travels in the message properties. A
        // message whose trace is not sampled carries the row's context unchanged, with no span.
        let mut spans = Vec::with_capacity(rows.len());
        for row in rows {
            let mut message = message(row);
            let sampled = row
                .traceparent
                .as_deref()
                .is_some_and(telemetry::is_sampled);
            if sampled {
                traced(row, &mut message, &mut spans);
            }
            let producer = self.producer(&row.topic).await?;
            let receipt = producer
                .send_non_blocking(message)
                .await
                .with_context(|| format!("send outbox row {} to {}", row.id, row.topic))?;
            receipts.push(receipt);
        }
        try_join_all(receipts)
            .await
            .context("broker refused or lost a message")?;
        // One metrics handle per topic of the batch, not a registry lookup per row.
        let now = chrono::Utc::now();
        let mut by_topic: HashMap<&str, (metrics::Histogram, u64)> = HashMap::new();
        for row in rows {
            let latency = (now - row.created_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
            let (histogram, count) = by_topic.entry(row.topic.as_str()).or_insert_with(|| {
                let topic = row.topic.clone();
                (
                    metrics::histogram!("relay_commit_to_publish_seconds", "topic" => topic),
                    0,
                )
            });
            histogram.record(latency.max(0.0));
            *count += 1;
        }
        for (topic, (_, count)) in by_topic {
            metrics::counter!("relay_messages_published_total", "topic" => topic.to_owned())
                .increment(count);
        }
        drop(spans);
        Ok(())
    }

    async fn producer(
        &mut self,
        short_topic: &str,
    ) -> anyhow::Result<&mut Producer<TokioExecutor>> {
        if !self.producers.contains_key(short_topic) {
            let topic = self.args.topic(short_topic);
            // Made in a task of its own, so that the batch's time-out never drops it half-way
            // through connecting (see `messaging::health`: pulsar-rs would then leave the
            // broker marked `Connecting` for good and the client would wait on it forever).
            let pulsar = self.pulsar.clone();
            let making = topic.clone();
            let producer = tokio::spawn(async move {
                pulsar
                    .producer()
                    .with_topic(&making)
                    .with_options(ProducerOptions {
                        // Hash the key to pick a partition if the topic is ever partitioned;
                        // the default policy ignores the key.
                        routing_policy: Some(pulsar::routing_policy::RoutingPolicy::RoundRobin),
                        block_queue_if_full: true,
                        // The topic's envelope in the schema registry (`messaging::schema`).
                        schema: messaging::schema::of_topic(&making),
                        ..ProducerOptions::default()
                    })
                    .build()
                    .await
            })
            .await
            .with_context(|| format!("the task creating the producer for {topic}"))?
            .with_context(|| format!("create producer for {topic}"))?;
            self.producers.insert(short_topic.to_owned(), producer);
        }
        self.producers
            .get_mut(short_topic)
            .ok_or_else(|| anyhow::anyhow!("producer for {short_topic} vanished"))
    }
}

/// Makes `row`'s publish span (the child of the context the row captured), puts its context in
/// the message's properties, and keeps it in `spans` until the receipts are in.
fn traced(row: &OutboxRow, message: &mut Message, spans: &mut Vec<tracing::Span>) {
    let span = tracing::info_span!(
        "pulsar.publish",
        otel.name = %format!("{} publish", row.topic),
        otel.kind = "producer",
        messaging.system = "pulsar",
        messaging.destination = %row.topic,
        message_id = %row.message_id,
        message_type = %row.message_type,
        correlation_id = %row.correlation_id,
    );
    telemetry::set_remote_parent(&span, row.traceparent.as_deref(), row.tracestate.as_deref());
    if let Some((parent, state)) = telemetry::trace_headers_of(&span) {
        message
            .properties
            .insert(properties::TRACEPARENT.to_owned(), parent);
        match state {
            Some(state) => message
                .properties
                .insert(properties::TRACESTATE.to_owned(), state),
            None => message.properties.remove(properties::TRACESTATE),
        };
    }
    spans.push(span);
}

/// The Pulsar message for one outbox row.
pub fn message(row: &OutboxRow) -> Message {
    let mut props = HashMap::from([
        (
            properties::MESSAGE_TYPE.to_owned(),
            row.message_type.clone(),
        ),
        (
            properties::MESSAGE_ID.to_owned(),
            row.message_id.to_string(),
        ),
        (
            properties::CORRELATION_ID.to_owned(),
            row.correlation_id.clone(),
        ),
        (
            properties::AGGREGATE_TYPE.to_owned(),
            row.aggregate_type.clone(),
        ),
        (
            properties::AGGREGATE_VERSION.to_owned(),
            row.aggregate_version.to_string(),
        ),
    ]);
    for (name, value) in [
        (properties::CAUSATION_ID, &row.causation_id),
        (properties::TRACEPARENT, &row.traceparent),
        (properties::TRACESTATE, &row.tracestate),
    ] {
        if let Some(value) = value.as_ref().filter(|v| !v.is_empty()) {
            props.insert(name.to_owned(), value.clone());
        }
    }
    Message {
        payload: row.payload.clone(),
        properties: props,
        partition_key: Some(row.aggregate_id.to_string()),
        event_time: u64::try_from(row.created_at.timestamp_millis()).ok(),
        ..Message::default()
    }
}
