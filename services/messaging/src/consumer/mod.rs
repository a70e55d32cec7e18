//! The consumer: subscribe (Key_Shared, so order holds per key while processes scale out), hand
//! messages to the handler many keys at once, acknowledge, and never give up on the broker.
//!
//! In one process a subscription's messages queue per key ([`lanes`]): a key's messages are
//! applied one after another, in order, while up to `concurrency` transactions run other keys
//! beside it. A handler that can apply a message inside a transaction it is given
//! ([`Handler::batch_pool`]) gets up to `batch_size` messages of different keys in ONE
//! transaction, so a consumer pays one commit for many messages. A message that fails
//! transiently is retried after a back-off while only its own key waits; after the last retry it
//! goes to the dead-letter topic and its key moves on. When the subscription ends or fails (the
//! broker went away, restarted, answered `TopicNotFound` while it came back), the loop
//! subscribes again with back-off for as long as it takes; whatever was not acknowledged is
//! redelivered and the inbox skips what was applied.

mod batch;
pub mod lanes;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt as _, TryStreamExt as _};
use pulsar::consumer::{DeadLetterPolicy, InitialPosition, Message};
use pulsar::{ConsumerOptions, Pulsar, SubType, TokioExecutor};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use affiliate_proto::common::MessageMetadata;
use service_runtime::status::SubscriptionHandle;

use crate::properties;
use lanes::Lanes;

/// One received message, as handlers see it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Full topic name it arrived on.
    pub topic: String,
    /// The message key (the aggregate id).
    pub key: Option<String>,
    /// The envelope's `metadata.message_id`: the idempotency key of whatever the message causes.
    /// Only when the envelope carries none (see [`Delivery::identity_problem`]) is it the
    /// `message-id` property or the broker's position, under which the refusal is recorded.
    pub message_id: String,
    pub message_type: Option<String>,
    pub correlation_id: Option<String>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub properties: HashMap<String, String>,
    pub payload: Vec<u8>,
    /// Why the message cannot be identified: no envelope metadata or message id, or properties
    /// that disagree with the envelope. Such a message is refused, never applied.
    pub identity_problem: Option<String>,
    /// The envelope's `metadata.occurred_at`: when the command was issued or the event happened.
    pub occurred_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The head every envelope of the platform shares: `MessageMetadata metadata = 1`.
#[derive(Clone, PartialEq, prost::Message)]
struct EnvelopeHead {
    #[prost(message, optional, tag = "1")]
    metadata: Option<MessageMetadata>,
}

/// The envelope's message id (if it has one) and, if the message cannot be trusted, why not.
fn envelope_identity(
    head: &Result<EnvelopeHead, prost::DecodeError>,
    properties: &HashMap<String, String>,
) -> (Option<String>, Option<String>) {
    let metadata = match head {
        Ok(EnvelopeHead {
            metadata: Some(metadata),
        }) => metadata,
        Ok(EnvelopeHead { metadata: None }) => {
            let problem = "the envelope has no metadata (metadata.message_id identifies a message)";
            return (None, Some(problem.to_owned()));
        }
        Err(e) => return (None, Some(format!("not an envelope: {e}"))),
    };
    if metadata.message_id.is_empty() {
        return (
            None,
            Some("the envelope's metadata.message_id is empty".to_owned()),
        );
    }
    let problem = match (
        properties.get(properties::MESSAGE_ID),
        properties.get(properties::MESSAGE_TYPE),
    ) {
        (Some(property), _) if *property != metadata.message_id => Some(format!(
            "the message-id property `{property}` disagrees with the envelope's metadata.message_id `{}`",
            metadata.message_id
        )),
        (_, Some(property))
            if !metadata.message_type.is_empty() && *property != metadata.message_type =>
        {
            Some(format!(
                "the message-type property `{property}` disagrees with the envelope's metadata.message_type `{}`",
                metadata.message_type
            ))
        }
        _ => None,
    };
    (Some(metadata.message_id.clone()), problem)
}

impl Delivery {
    /// The envelope's metadata (every envelope of the platform carries it as field 1); `None`
    /// when the payload is not an envelope or has none.
    pub fn metadata(&self) -> Option<MessageMetadata> {
        <EnvelopeHead as prost::Message>::decode(self.payload.as_slice())
            .ok()
            .and_then(|head| head.metadata)
    }

    pub fn from_message(message: &Message<Vec<u8>>) -> Self {
        let properties: HashMap<String, String> = properties::all(message);
        let payload = message.payload.data.clone();
        let head = <EnvelopeHead as prost::Message>::decode(payload.as_slice());
        let (envelope_id, identity_problem) = envelope_identity(&head, &properties);
        let occurred_at = head
            .ok()
            .and_then(|h| h.metadata?.occurred_at)
            .and_then(|t| service_runtime::time::from_timestamp(&t));
        // Without an envelope id, the refusal is recorded under the property or the position.
        let message_id = envelope_id.unwrap_or_else(|| {
            let id = message.message_id();
            properties
                .get(properties::MESSAGE_ID)
                .cloned()
                .unwrap_or_else(|| {
                    format!(
                        "pulsar:{}:{}:{}",
                        id.ledger_id,
                        id.entry_id,
                        id.batch_index.unwrap_or(-1)
                    )
                })
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
            payload,
            properties,
            identity_problem,
            occurred_at,
        }
    }

    /// The lane the message runs in: its key, or (a message without one needs no order) its id.
    fn lane(&self) -> String {
        self.key.clone().unwrap_or_else(|| self.message_id.clone())
    }

    /// The topic's short name, e.g. `commission-commands`.
    fn short_topic(&self) -> &str {
        self.topic.rsplit('/').next().unwrap_or_default()
    }
}

/// Why a message was not applied.
#[derive(Debug)]
pub enum Failure {
    /// It can never succeed (undecodable, invalid, refused by the domain). The handler has
    /// recorded it (and published a rejection); the loop acknowledges it.
    Rejected(String),
    /// It may succeed later (database down, a dependency not known yet). The loop retries it
    /// after a back-off, holding back only its key; after the last retry it is dead-lettered.
    Transient(anyhow::Error),
}

/// Applies messages. Implementations record the message id in the same transaction as their
/// effects, so a redelivery is skipped.
///
/// A handler implements either [`Handler::handle`] (it runs its own transaction per message), or
/// [`Handler::batch_pool`] and [`Handler::handle_in`] (it applies a message inside a transaction
/// it is given, which lets the consumer apply many messages in one transaction).
pub trait Handler: Send + Sync + 'static {
    /// Applies one message in a transaction of its own.
    fn handle(&self, delivery: &Delivery) -> impl Future<Output = Result<(), Failure>> + Send {
        async move {
            let Some(pool) = self.batch_pool() else {
                return Err(Failure::Transient(anyhow::anyhow!(
                    "the handler implements neither handle nor handle_in"
                )));
            };
            batch::alone(self, pool, delivery).await
        }
    }

    /// The database batches run on, for a handler that implements [`Handler::handle_in`].
    fn batch_pool(&self) -> Option<&PgPool> {
        None
    }

    /// Applies one message inside the caller's open transaction. On `Err` it must leave the
    /// transaction as it found it (its writes inside a savepoint of its own, e.g. `conn.begin()`),
    /// because the transaction goes on with other messages and commits them.
    fn handle_in(
        &self,
        conn: &mut PgConnection,
        delivery: &Delivery,
    ) -> impl Future<Output = Result<(), Failure>> + Send {
        let _ = (conn, delivery);
        async {
            Err(Failure::Transient(anyhow::anyhow!(
                "this handler applies messages one at a time"
            )))
        }
    }

    /// Messages of one batch are applied in ascending order of this key, so that two batches
    /// running at once take the rows they share (e.g. a creator's balance) in the same order and
    /// never deadlock. `None` sorts first.
    fn order_key(&self, delivery: &Delivery) -> Option<String> {
        let _ = delivery;
        None
    }

    /// Refuses a message that cannot be identified ([`Delivery::identity_problem`]). A command
    /// door records it and publishes its rejection event; the default only reports it.
    fn refuse(&self, delivery: &Delivery, reason: String) -> impl Future<Output = Failure> + Send {
        let _ = delivery;
        async move { Failure::Rejected(reason) }
    }
}

/// What to subscribe to, how many messages to apply at once, and how to treat failures.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// Full topic names.
    pub topics: Vec<String>,
    /// Subscription name; consumers sharing it share the work (Key_Shared).
    pub name: String,
    /// Retries of a failing message before it goes to the dead-letter topic.
    pub max_redeliveries: usize,
    /// Full name of the dead-letter topic.
    pub dead_letter_topic: String,
    /// First retry delay; doubles per attempt up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Transactions (or, for a handler that does not batch, messages) applied at once.
    pub concurrency: usize,
    /// Messages of different keys applied in one transaction, for a handler that batches.
    pub batch_size: usize,
    /// Messages taken from the broker and held in lanes before receiving pauses.
    pub max_held: usize,
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
            concurrency: 4,
            batch_size: 64,
            max_held: 4000,
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
        s.concurrency = args.concurrency.max(1);
        s.batch_size = args.batch_size.max(1);
        s.max_held = args.max_held.max(1);
        s.status = Some(board.subscription(name, &s.topics));
        s
    }

    fn backoff(&self, attempt: u32) -> Duration {
        service_runtime::backoff::doubling(self.min_backoff, self.max_backoff, attempt)
    }

    fn report(&self, f: impl FnOnce(&SubscriptionHandle)) {
        if let Some(handle) = &self.status {
            f(handle);
        }
    }
}

/// The dead-letter topic of `subscription` on `topic`: `{topic}-{subscription}-DLQ`.
pub fn dead_letter_topic(topic: &str, subscription: &str) -> String {
    format!("{topic}-{}-DLQ", subscription.replace('/', "-"))
}

/// How long a subscription may receive nothing before its connection is checked.
const QUIET_CHECK: Duration = Duration::from_secs(5);

/// The waits before subscribing again after lost subscriptions in a row: 100 ms doubling to
/// 2.5 s, each plus a random part of up to as much again (backon's jitter), so at most 5 s; the
/// subscriptions of every process that lost the same broker do not come back in step.
fn resubscribe_delays() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder as _;
    backon::ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_millis(2500))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Consumes until `shutdown`. A lost subscription is made again, with back-off, for as long as it
/// takes; this returns only at shutdown.
pub async fn run_consumer<H: Handler>(
    pulsar: Pulsar<TokioExecutor>,
    subscription: Subscription,
    handler: Arc<H>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut failures = 0u32;
    let mut delays = resubscribe_delays();
    loop {
        match consume(&pulsar, &subscription, &handler, &shutdown, &mut failures).await {
            Ok(()) => break,
            Err(error) => {
                if failures == 0 {
                    delays = resubscribe_delays();
                }
                failures = failures.saturating_add(1);
                let delay = delays.next().unwrap_or(Duration::from_secs(5));
                tracing::warn!(
                    subscription = %subscription.name,
                    error = format!("{error:#}"),
                    attempt = failures,
                    retry_in_ms = delay.as_millis() as u64,
                    "subscription lost; subscribing again"
                );
                let reason = format!("{error:#}");
                subscription.report(|s| s.reconnecting(&reason));
                metrics::counter!("consumer_resubscribes_total", "subscription" => subscription.name.clone())
                    .increment(1);
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    tracing::info!(subscription = %subscription.name, "consumer stopped");
    subscription.report(|s| s.stopped("shutdown"));
    Ok(())
}

/// A message held by the loop.
struct Item {
    lane: String,
    message: Message<Vec<u8>>,
    delivery: Delivery,
    /// Failed attempts so far in this process.
    failures: u32,
}

/// What a finished piece of work reports to the loop.
enum Done {
    /// Messages applied (or refused) with their outcomes.
    Applied(Vec<(Item, Result<(), Failure>)>),
    /// A message moved (or not) to the dead-letter topic.
    DeadLettered(Box<Item>, anyhow::Result<()>),
    /// A held-back key's retry is due.
    Wake(String),
}

async fn subscribe(
    pulsar: &Pulsar<TokioExecutor>,
    subscription: &Subscription,
) -> anyhow::Result<pulsar::Consumer<Vec<u8>, TokioExecutor>> {
    let receiver_queue = u32::try_from(subscription.max_held.min(5000)).unwrap_or(1000);
    pulsar
        .consumer()
        .with_topics(subscription.topics.clone())
        .with_subscription(subscription.name.clone())
        .with_subscription_type(SubType::KeyShared)
        .with_consumer_name(format!(
            "{}-{}",
            subscription.name,
            uuid::Uuid::new_v4().simple()
        ))
        .with_batch_size(receiver_queue)
        .with_options(ConsumerOptions {
            durable: Some(true),
            initial_position: InitialPosition::Earliest,
            // The topic's envelope, checked by the broker against the registry (a subscription
            // over several topics, which one schema cannot describe, declares none).
            schema: match subscription.topics.as_slice() {
                [topic] => crate::schema::of_topic(topic),
                _ => None,
            },
            ..ConsumerOptions::default()
        })
        // Retries happen here, in the process, without a negative acknowledgement (which would
        // let the key's later messages overtake it). The client's own policy only catches a
        // message the broker redelivered this often (the processes holding it kept dying).
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
        })
}

/// One subscription's life: subscribe, then receive, schedule and settle until shutdown (`Ok`) or
/// until the subscription fails (`Err`; the caller subscribes again).
async fn consume<H: Handler>(
    pulsar: &Pulsar<TokioExecutor>,
    subscription: &Subscription,
    handler: &Arc<H>,
    shutdown: &CancellationToken,
    failures: &mut u32,
) -> anyhow::Result<()> {
    let mut consumer = subscribe(pulsar, subscription).await?;
    *failures = 0;
    tracing::info!(subscription = %subscription.name, topics = ?subscription.topics, "consuming");
    subscription.report(SubscriptionHandle::consuming);

    let batching = handler.batch_pool().is_some();
    let per_job = if batching { subscription.batch_size } else { 1 };
    let mut lanes: Lanes<Item> = Lanes::default();
    let mut work: FuturesUnordered<BoxFuture<'static, Done>> = FuturesUnordered::new();
    let mut jobs = 0usize;
    let mut receive_errors = 0u32;
    let mut quiet = tokio::time::interval(QUIET_CHECK);
    quiet.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    quiet.reset();
    let mut received_since_check = false;
    let ended: anyhow::Result<()> = loop {
        while jobs < subscription.concurrency {
            let taken = lanes.take_ready(per_job);
            if taken.is_empty() {
                break;
            }
            let items = taken.into_iter().map(|(_, item)| item).collect();
            let (handler, name) = (handler.clone(), subscription.name.clone());
            work.push(
                async move { Done::Applied(batch::run(&*handler, &name, items).await) }.boxed(),
            );
            jobs += 1;
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break Ok(()),
            Some(done) = work.next() => {
                if matches!(done, Done::Applied(_)) {
                    jobs -= 1;
                }
                settle(done, &mut consumer, pulsar, subscription, &mut lanes, &mut work).await;
            }
            next = consumer.try_next(), if lanes.len() < subscription.max_held => match next {
                Ok(Some(message)) => {
                    receive_errors = 0;
                    received_since_check = true;
                    let delivery = Delivery::from_message(&message);
                    let lane = delivery.lane();
                    lanes.push(&lane.clone(), Item { lane, message, delivery, failures: 0 });
                }
                Ok(None) => break Err(anyhow::anyhow!("subscription `{}` ended", subscription.name)),
                Err(e) => {
                    receive_errors += 1;
                    tracing::warn!(subscription = %subscription.name, error = %e, "receive failed");
                    if receive_errors >= 3 {
                        break Err(anyhow::Error::new(e).context("receive keeps failing"));
                    }
                }
            },
            _ = quiet.tick() => {
                // Nothing arrived for a while: make sure the subscription is still alive. After a
                // broker outage longer than the client's reconnection tries, pulsar-rs's consumer
                // can be left on a dead connection, delivering nothing and reporting no error,
                // while the broker lists no consumer (seen in CI: backlogs of thousands, 0
                // consumers, for minutes). A ping through the consumer's own connection fails
                // then, and the subscription is made again.
                if !std::mem::take(&mut received_since_check) {
                    match tokio::time::timeout(QUIET_CHECK, consumer.check_connection()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => break Err(anyhow::Error::new(e).context("the consumer's connection check failed")),
                        Err(_) => break Err(anyhow::anyhow!("the consumer's connection check did not answer within {QUIET_CHECK:?}")),
                    }
                }
            }
        }
    };
    // Let running transactions finish (they need only the database). After a lost subscription
    // their acknowledgements have nowhere to go: the broker redelivers and the inbox skips them.
    while jobs > 0 {
        let Some(done) = work.next().await else { break };
        if matches!(done, Done::Applied(_)) {
            jobs -= 1;
            if ended.is_ok() {
                settle(
                    done,
                    &mut consumer,
                    pulsar,
                    subscription,
                    &mut lanes,
                    &mut work,
                )
                .await;
            }
        }
    }
    lanes.clear();
    let _ = consumer.close().await;
    ended
}

/// Acts on finished work: acknowledge what is done, hold back and schedule the retry of what
/// failed, dead-letter what failed for the last time.
async fn settle(
    done: Done,
    consumer: &mut pulsar::Consumer<Vec<u8>, TokioExecutor>,
    pulsar: &Pulsar<TokioExecutor>,
    subscription: &Subscription,
    lanes: &mut Lanes<Item>,
    work: &mut FuturesUnordered<BoxFuture<'static, Done>>,
) {
    let count = |delivery: &Delivery, outcome: &'static str| {
        metrics::counter!(
            "consumer_messages_total",
            "subscription" => subscription.name.clone(),
            "topic" => delivery.short_topic().to_owned(),
            "outcome" => outcome
        )
        .increment(1);
    };
    match done {
        Done::Wake(lane) => lanes.wake(&lane),
        Done::Applied(outcomes) => {
            for (mut item, outcome) in outcomes {
                match outcome {
                    Ok(()) => {
                        acknowledge(consumer, &item).await;
                        subscription.report(SubscriptionHandle::applied);
                        count(&item.delivery, "applied");
                        lanes.done(&item.lane);
                    }
                    Err(Failure::Rejected(reason)) => {
                        tracing::warn!(
                            subscription = %subscription.name,
                            message_id = %item.delivery.message_id,
                            message_type = item.delivery.message_type.as_deref().unwrap_or("?"),
                            %reason,
                            "message rejected"
                        );
                        acknowledge(consumer, &item).await;
                        subscription.report(SubscriptionHandle::rejected);
                        count(&item.delivery, "rejected");
                        lanes.done(&item.lane);
                    }
                    Err(Failure::Transient(error)) => {
                        item.failures += 1;
                        let last = item.failures as usize > subscription.max_redeliveries;
                        let delay = subscription.backoff(item.failures);
                        tracing::warn!(
                            subscription = %subscription.name,
                            message_id = %item.delivery.message_id,
                            attempt = item.failures,
                            retry_in_ms = if last { 0 } else { delay.as_millis() as u64 },
                            error = format!("{error:#}"),
                            "{}",
                            if last { "message failed for the last time; dead-lettering it" } else { "message failed; its key waits for the retry" }
                        );
                        if last {
                            count(&item.delivery, "dead_lettered");
                            work.push(
                                dead_letter(
                                    pulsar.clone(),
                                    subscription.dead_letter_topic.clone(),
                                    item,
                                )
                                .boxed(),
                            );
                        } else {
                            count(&item.delivery, "retried");
                            subscription.report(SubscriptionHandle::retried);
                            let lane = item.lane.clone();
                            lanes.retry_later(&lane.clone(), item);
                            work.push(
                                async move {
                                    tokio::time::sleep(delay).await;
                                    Done::Wake(lane)
                                }
                                .boxed(),
                            );
                        }
                    }
                }
            }
        }
        Done::DeadLettered(item, Ok(())) => {
            acknowledge(consumer, &item).await;
            subscription.report(SubscriptionHandle::dead_lettered);
            lanes.done(&item.lane);
        }
        Done::DeadLettered(item, Err(error)) => {
            // The dead-letter topic cannot take it now: keep it (its key waits) and try again.
            tracing::warn!(subscription = %subscription.name, message_id = %item.delivery.message_id,
                error = format!("{error:#}"), "dead-lettering failed; will retry");
            let (lane, delay) = (item.lane.clone(), subscription.max_backoff);
            lanes.retry_later(&lane.clone(), *item);
            work.push(
                async move {
                    tokio::time::sleep(delay).await;
                    Done::Wake(lane)
                }
                .boxed(),
            );
        }
    }
}

/// Acknowledges one message. This hands the id to the client's engine, which sends it without a
/// round trip we wait for; the loop never awaits the broker per message.
async fn acknowledge(consumer: &mut pulsar::Consumer<Vec<u8>, TokioExecutor>, item: &Item) {
    if let Err(e) = consumer.ack(&item.message).await {
        // Not acknowledged: the broker redelivers it and the inbox skips it.
        tracing::warn!(message_id = %item.delivery.message_id, error = %e, "acknowledge failed");
    }
}

/// Publishes `item` to the dead-letter topic as the client would (same payload, key and
/// properties, plus where it came from), waiting for the broker's receipt.
async fn dead_letter(pulsar: Pulsar<TokioExecutor>, topic: String, item: Item) -> Done {
    let metadata = item.message.metadata();
    let id = item.message.message_id();
    let mut properties = item.delivery.properties.clone();
    properties
        .entry(properties::REAL_TOPIC.to_owned())
        .or_insert_with(|| item.delivery.topic.clone());
    properties
        .entry(properties::ORIGIN_MESSAGE_ID.to_owned())
        .or_insert_with(|| {
            format!(
                "{}:{}:{}",
                id.ledger_id,
                id.entry_id,
                id.partition.unwrap_or(-1)
            )
        });
    let message = pulsar::producer::Message {
        payload: item.delivery.payload.clone(),
        properties,
        partition_key: metadata.partition_key.clone(),
        ordering_key: metadata.ordering_key.clone(),
        event_time: metadata.event_time,
        ..Default::default()
    };
    let sent = async {
        let receipt = pulsar
            .send(topic.clone(), message)
            .await
            .with_context(|| format!("send to {topic}"))?;
        tokio::time::timeout(Duration::from_secs(30), receipt)
            .await
            .map_err(|_| anyhow::anyhow!("no receipt from {topic} within 30 s"))?
            .with_context(|| format!("receipt from {topic}"))?;
        anyhow::Ok(())
    }
    .await;
    Done::DeadLettered(Box::new(item), sent)
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
