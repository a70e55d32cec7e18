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
//!
//! Nothing in the loop waits without a bound: a batch that has not finished after the batch
//! time-out is abandoned and retried, dead-lettering and closing a consumer have time-outs, and
//! a progress [`watchdog`] turns a stall (messages waiting, no progress) into a NOT_SERVING
//! health and, where the process itself cannot move them, into a new subscription.

mod batch;
pub mod lanes;
pub mod watchdog;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
use watchdog::{Action, BrokerView, Observation, Watchdog};

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

impl Failure {
    /// A handler's error as a failure to retry, keeping the database error (if any) in its
    /// chain of causes, so the consumer can tell the database being away from a message's fault.
    pub fn transient(error: service_runtime::errors::Error) -> Self {
        use service_runtime::errors::Error;
        Self::Transient(match error {
            Error::Unavailable(e) | Error::Internal(e) => e,
            other => anyhow::Error::new(other),
        })
    }
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

    /// Whether the handler applies whole batches set-based ([`Handler::apply_set`]) rather than
    /// one message at a time inside the batch's transaction ([`Handler::handle_in`]).
    fn applies_sets(&self) -> bool {
        false
    }

    /// How long a set smaller than the batch size waits for more messages before it is applied
    /// (unless `CONSUMER_LINGER` says otherwise). A set costs a transaction and a handful of
    /// statements whatever its size, so under moderate load a few milliseconds of waiting turn
    /// many sets of one or two into one larger set; the handler trades that against how fast
    /// its effects must be seen. Zero (the default): apply at once.
    fn linger(&self) -> Duration {
        Duration::ZERO
    }

    /// Applies a whole batch inside the caller's transaction in as few statements as it can:
    /// every message decoded and decided in memory first, then one statement per table for all
    /// of them (the inbox as one insert of every id, returning the new ones; effects summed per
    /// row, each row written once; the outbox rows in one insert), rows locked in one global
    /// order. `Ok` has one outcome per delivery, in order: `Ok(())` (applied, or skipped as a
    /// duplicate), `Rejected` (recorded in this transaction), `Transient` (nothing of it
    /// written; retried later on its own). `Err` fails the whole batch: the consumer rolls it
    /// back and applies the halves apart, halving again until the culprit stands alone. Needs
    /// [`Handler::batch_pool`].
    fn apply_set(
        &self,
        conn: &mut PgConnection,
        deliveries: &[&Delivery],
    ) -> impl Future<Output = Result<Vec<Result<(), Failure>>, Failure>> + Send {
        let _ = (conn, deliveries);
        async {
            Err(Failure::Transient(anyhow::anyhow!(
                "this handler does not apply sets"
            )))
        }
    }

    /// For a handler that applies messages one by one in a shared transaction
    /// ([`Handler::handle_in`]): they are applied in ascending order of this key, so that two
    /// batches running at once take the rows they share in the same order and never deadlock.
    /// `None` sorts first. A set ([`Handler::apply_set`]) orders its own locks and is not sorted.
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
    /// No progress for this long while messages wait is a stall ([`watchdog`]).
    pub stall_after: Duration,
    /// A batch not finished after this long is abandoned and its messages retried.
    pub batch_timeout: Duration,
    /// How long a set smaller than `batch_size` waits for more messages before it is applied
    /// (`None`: the handler's own, [`Handler::linger`]).
    pub linger: Option<Duration>,
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
            stall_after: Duration::from_secs(20),
            batch_timeout: Duration::from_secs(60),
            linger: None,
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
        s.stall_after = args.stall_timeout;
        s.batch_timeout = args.batch_timeout;
        s.linger = args.linger;
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

/// How long a connection check, a probe of the broker's stats, or closing the consumer may take.
const BROKER_CALL: Duration = Duration::from_secs(5);
/// How often the loop looks at its own progress (the watchdog, the status board, the gauges).
const TICK: Duration = Duration::from_secs(1);
/// How long publishing one message to the dead-letter topic may take, receipt included.
const DEAD_LETTER_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// The order it arrived in (this subscription's life), which keys [`Unfinished`].
    seq: u64,
}

/// The messages held and not finished, by arrival, with when each was published: the oldest
/// one's age is how far behind the subscription is.
#[derive(Default)]
struct Unfinished(BTreeMap<u64, u64>);

impl Unfinished {
    fn received(&mut self, item: &Item) {
        self.0
            .insert(item.seq, item.message.metadata().publish_time);
    }

    fn finished(&mut self, item: &Item) {
        self.0.remove(&item.seq);
    }

    /// How long ago the oldest unfinished message was published.
    fn oldest_age(&self) -> Duration {
        let Some(oldest) = self.0.values().min() else {
            return Duration::ZERO;
        };
        let now = chrono::Utc::now().timestamp_millis().max(0) as u64;
        Duration::from_millis(now.saturating_sub(*oldest))
    }
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
/// until the subscription fails or stalls (`Err`; the caller subscribes again).
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
    let linger = if batching {
        subscription.linger.unwrap_or_else(|| handler.linger())
    } else {
        Duration::ZERO
    };
    // Since when a set smaller than `per_job` has been waiting for more (see `linger`).
    let mut lingering: Option<Instant> = None;
    let mut lanes: Lanes<Item> = Lanes::default();
    let mut unfinished = Unfinished::default();
    let mut work: FuturesUnordered<BoxFuture<'static, Done>> = FuturesUnordered::new();
    let mut jobs = 0usize;
    let mut receive_errors = 0u32;
    let mut seq = 0u64;
    let (mut last_received, mut last_progress) = (Instant::now(), Instant::now());
    let mut watchdog = Watchdog::new(subscription.stall_after, Instant::now());
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.reset();
    let ended: anyhow::Result<()> = loop {
        while jobs < subscription.concurrency {
            let ready = lanes.ready();
            if ready == 0 {
                lingering = None;
                break;
            }
            if ready < per_job
                && !linger.is_zero()
                && lingering.get_or_insert_with(Instant::now).elapsed() < linger
            {
                break;
            }
            lingering = None;
            let taken = lanes.take_ready(per_job);
            if taken.is_empty() {
                break;
            }
            let items = taken.into_iter().map(|(_, item)| item).collect();
            let (handler, name) = (handler.clone(), subscription.name.clone());
            let limit = subscription.batch_timeout;
            work.push(
                async move { Done::Applied(batch::run(&*handler, &name, items, limit).await) }
                    .boxed(),
            );
            jobs += 1;
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break Ok(()),
            () = tokio::time::sleep(lingering.map_or(Duration::ZERO, |since| linger.saturating_sub(since.elapsed()))), if lingering.is_some() => {}
            Some(done) = work.next() => {
                if matches!(done, Done::Applied(_)) {
                    jobs -= 1;
                }
                if settle(done, &mut consumer, pulsar, subscription, &mut lanes, &mut unfinished, &mut work).await {
                    last_progress = Instant::now();
                }
            }
            next = consumer.try_next(), if lanes.len() < subscription.max_held => match next {
                Ok(Some(message)) => {
                    receive_errors = 0;
                    (last_received, last_progress) = (Instant::now(), Instant::now());
                    let delivery = Delivery::from_message(&message);
                    let lane = delivery.lane();
                    seq += 1;
                    let item = Item { lane, message, delivery, failures: 0, seq };
                    unfinished.received(&item);
                    lanes.push(&item.lane.clone(), item);
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
            _ = tick.tick() => {
                let observation = Observation {
                    held: lanes.len(),
                    running: jobs,
                    ready: lanes.ready(),
                    pending: work.len().saturating_sub(jobs),
                    receiving: lanes.len() < subscription.max_held,
                    last_received,
                    last_progress,
                };
                let now = Instant::now();
                let action = watchdog.decide(&observation, now);
                if let Err(error) = act(action, &mut consumer, subscription, &mut watchdog, now).await {
                    break Err(error);
                }
                report_progress(subscription, &watchdog, &observation, &unfinished);
            }
        }
    };
    // Let running transactions finish (they need only the database, and each is bounded by the
    // batch time-out). After a lost subscription their acknowledgements have nowhere to go: the
    // broker redelivers and the inbox skips them.
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
                    &mut unfinished,
                    &mut work,
                )
                .await;
            }
        }
    }
    lanes.clear();
    metrics::gauge!("consumer_oldest_unprocessed_seconds", "subscription" => subscription.name.clone())
        .set(0.0);
    close(consumer, subscription).await;
    ended
}

/// Closes the consumer, within [`BROKER_CALL`]. pulsar-rs's `close` asks the consumer's engine
/// for its connection, and the engine answers only between messages: while it waits for the loop
/// to take a message (the loop held its maximum and stopped reading), the request is never
/// answered. Unbounded, this wait was the silent stall of issue 23: the loop, ending its
/// subscription after a failed check, waited here forever, holding thousands of unacknowledged
/// messages with no permits. Dropping the consumer after the time-out ends the engine (its
/// channel to the loop closes) and the engine closes the consumer on the broker.
async fn close(
    mut consumer: pulsar::Consumer<Vec<u8>, TokioExecutor>,
    subscription: &Subscription,
) {
    match tokio::time::timeout(BROKER_CALL, consumer.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::debug!(subscription = %subscription.name, error = %e, "closing the consumer failed");
        }
        Err(_) => tracing::info!(
            subscription = %subscription.name,
            "the consumer did not close within {BROKER_CALL:?}; dropped (its engine closes it on the broker)"
        ),
    }
    drop(consumer);
}

/// Carries out the watchdog's decision; `Err` ends the subscription (it is made again).
async fn act(
    action: Action,
    consumer: &mut pulsar::Consumer<Vec<u8>, TokioExecutor>,
    subscription: &Subscription,
    watchdog: &mut Watchdog,
    now: Instant,
) -> anyhow::Result<()> {
    match action {
        Action::Nothing => Ok(()),
        // Nothing arrived for a while: make sure the subscription is still alive. After a broker
        // outage longer than the client's reconnection tries, pulsar-rs's consumer can be left on
        // a dead connection, delivering nothing and reporting no error, while the broker lists
        // no consumer. A ping through the consumer's own connection fails then, and the
        // subscription is made again. (Only while the loop reads: otherwise the engine may be
        // waiting for the loop, and could not answer.)
        Action::CheckConnection => {
            match tokio::time::timeout(BROKER_CALL, consumer.check_connection()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => {
                    Err(anyhow::Error::new(e).context("the consumer's connection check failed"))
                }
                Err(_) => Err(anyhow::anyhow!(
                    "the consumer's connection check did not answer within {BROKER_CALL:?}"
                )),
            }
        }
        Action::Probe => {
            let answer = match tokio::time::timeout(BROKER_CALL, consumer.get_stats()).await {
                Ok(Ok(stats)) => Ok(BrokerView {
                    backlog: stats.iter().filter_map(|s| s.msg_backlog).sum(),
                    permits: stats.iter().filter_map(|s| s.available_permits).sum(),
                }),
                Ok(Err(e)) => Err(format!("{e}")),
                Err(_) => Err(format!("no answer within {BROKER_CALL:?}")),
            };
            // An idle subscription is asked once per stall time-out: only what is not idle is
            // worth a line at info.
            let idle = matches!(answer, Ok(BrokerView { backlog: 0, .. }));
            let message = "no progress: asked the broker for the subscription's stats";
            let name = &subscription.name;
            if idle {
                tracing::debug!(subscription = %name, broker = ?answer, "{message}");
            } else {
                tracing::info!(subscription = %name, broker = ?answer, "{message}");
            }
            watchdog.probed(answer, Instant::now());
            Ok(())
        }
        Action::Resubscribe(reason) => {
            tracing::warn!(
                subscription = %subscription.name,
                %reason,
                "stalled: subscribing again (the broker redelivers what was not acknowledged)"
            );
            metrics::counter!("consumer_stall_recoveries_total", "subscription" => subscription.name.clone())
                .increment(1);
            subscription.report(SubscriptionHandle::stall_recovered);
            watchdog.reset(now);
            Err(anyhow::anyhow!("stalled: {reason}"))
        }
    }
}

/// Reports what the subscription holds, how long it has been stalled and how old its oldest
/// unfinished message is, to the status board and the metrics.
fn report_progress(
    subscription: &Subscription,
    watchdog: &Watchdog,
    observation: &Observation,
    unfinished: &Unfinished,
) {
    let now = Instant::now();
    let stalled_for = watchdog.stalled_for(observation, now);
    let oldest = unfinished.oldest_age();
    let name = subscription.name.clone();
    metrics::gauge!("consumer_oldest_unprocessed_seconds", "subscription" => name.clone())
        .set(oldest.as_secs_f64());
    metrics::gauge!("consumer_stalled_seconds", "subscription" => name.clone())
        .set(stalled_for.as_secs_f64());
    metrics::gauge!("consumer_held_messages", "subscription" => name).set(observation.held as f64);
    subscription.report(|s| {
        s.progress(
            observation.held,
            stalled_for,
            oldest,
            subscription.stall_after,
        );
    });
}

/// Acts on finished work: acknowledge what is done, hold back and schedule the retry of what
/// failed, dead-letter what failed for the last time. Returns whether a message was finished
/// (progress).
async fn settle(
    done: Done,
    consumer: &mut pulsar::Consumer<Vec<u8>, TokioExecutor>,
    pulsar: &Pulsar<TokioExecutor>,
    subscription: &Subscription,
    lanes: &mut Lanes<Item>,
    unfinished: &mut Unfinished,
    work: &mut FuturesUnordered<BoxFuture<'static, Done>>,
) -> bool {
    let mut progress = false;
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
                        unfinished.finished(&item);
                        progress = true;
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
                        unfinished.finished(&item);
                        progress = true;
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
            unfinished.finished(&item);
            progress = true;
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
    progress
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
    // In a task of its own, never dropped half-way (a producer being created when its future
    // is dropped leaves pulsar-rs's connection manager waiting for good; see `crate::health`),
    // and waited for at most DEAD_LETTER_TIMEOUT: the key waits and it is tried again.
    let send = tokio::spawn(async move {
        let receipt = pulsar
            .send(topic.clone(), message)
            .await
            .with_context(|| format!("send to {topic}"))?;
        receipt
            .await
            .with_context(|| format!("receipt from {topic}"))?;
        anyhow::Ok(())
    });
    let sent = match tokio::time::timeout(DEAD_LETTER_TIMEOUT, send).await {
        Ok(Ok(sent)) => sent,
        Ok(Err(e)) => Err(anyhow::Error::new(e).context("the dead-lettering task failed")),
        Err(_) => Err(anyhow::anyhow!(
            "the dead-letter topic took no message within {DEAD_LETTER_TIMEOUT:?}"
        )),
    };
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
