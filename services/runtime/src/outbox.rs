//! The outbox writer: appends the messages a state change causes to the `outbox` table, inside
//! the caller's transaction (it borrows the caller's connection, never opens its own), so state
//! and messages commit or roll back together.

use affiliate_proto::common::MessageMetadata;
use affiliate_proto::{CommandEnvelope, EventEnvelope};
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::context::CommandContext;
use crate::time::timestamp;

/// The topic that carries a service's domain events, e.g. `campaign-events`.
pub fn events_topic(service: &str) -> String {
    format!("{service}-events")
}

/// The topic that carries commands to a service, e.g. `commission-commands`.
pub fn commands_topic(service: &str) -> String {
    format!("{service}-commands")
}

/// One message to publish once the transaction commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Unique message id; consumers deduplicate on it.
    pub message_id: Uuid,
    /// Short topic name (`{service}-events` or `{service}-commands`).
    pub topic: String,
    /// Versioned type name, e.g. `campaign.created.v1`.
    pub message_type: String,
    pub aggregate_type: String,
    /// The Pulsar message key.
    pub aggregate_id: Uuid,
    pub aggregate_version: i64,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    /// The encoded protobuf envelope.
    pub payload: Vec<u8>,
}

/// What a message is about: the aggregate and its version after the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: Uuid,
    pub aggregate_version: i64,
}

impl<'a> Subject<'a> {
    pub fn new(aggregate_type: &'a str, aggregate_id: Uuid, aggregate_version: i64) -> Self {
        Self {
            aggregate_type,
            aggregate_id,
            aggregate_version,
        }
    }
}

/// A fresh message id (time-ordered).
pub fn new_message_id() -> Uuid {
    Uuid::now_v7()
}

/// The metadata heading an envelope: ids, type, time, aggregate, correlation and causation.
pub fn metadata(
    ctx: &CommandContext,
    message_id: Uuid,
    message_type: &str,
    subject: Subject<'_>,
    occurred_at: DateTime<Utc>,
) -> MessageMetadata {
    MessageMetadata {
        message_id: message_id.to_string(),
        message_type: message_type.to_owned(),
        occurred_at: Some(timestamp(occurred_at)),
        aggregate_type: subject.aggregate_type.to_owned(),
        aggregate_id: subject.aggregate_id.to_string(),
        aggregate_version: subject.aggregate_version,
        correlation_id: ctx.correlation_id.clone(),
        causation_id: ctx.causation_id.clone().unwrap_or_default(),
    }
}

/// The outbox message of one envelope to the short `topic`: a new message id, the [`metadata`] of
/// a `message_type` about `subject` at `occurred_at`, and the envelope `wrap` makes of it.
pub fn message<E: prost::Message>(
    ctx: &CommandContext,
    topic: String,
    message_type: &str,
    subject: Subject<'_>,
    occurred_at: DateTime<Utc>,
    wrap: impl FnOnce(MessageMetadata) -> E,
) -> OutboxMessage {
    let message_id = new_message_id();
    let envelope = wrap(metadata(
        ctx,
        message_id,
        message_type,
        subject,
        occurred_at,
    ));
    OutboxMessage::new(
        ctx,
        message_id,
        topic,
        message_type,
        subject,
        envelope.encode_to_vec(),
    )
}

/// The outbox message of one event (envelope `E`, on its service's `{service}-events`) about
/// `subject` at `occurred_at`.
pub fn event<E: EventEnvelope>(
    ctx: &CommandContext,
    subject: Subject<'_>,
    occurred_at: DateTime<Utc>,
    event: E::Event,
) -> OutboxMessage {
    let message_type = E::event_type(&event);
    let topic = events_topic(E::SERVICE);
    message(ctx, topic, message_type, subject, occurred_at, |m| {
        E::wrap(m, event)
    })
}

/// The outbox message of one command (envelope `E`, on its service's `{service}-commands`) about
/// `subject` at `occurred_at`.
pub fn command<E: CommandEnvelope>(
    ctx: &CommandContext,
    subject: Subject<'_>,
    occurred_at: DateTime<Utc>,
    command: E::Command,
) -> OutboxMessage {
    let message_type = E::command_type(&command);
    let topic = commands_topic(E::SERVICE);
    message(ctx, topic, message_type, subject, occurred_at, |m| {
        E::wrap(m, command)
    })
}

impl OutboxMessage {
    /// The outbox row of an encoded envelope whose metadata came from [`metadata`].
    pub fn new(
        ctx: &CommandContext,
        message_id: Uuid,
        topic: String,
        message_type: &str,
        subject: Subject<'_>,
        payload: Vec<u8>,
    ) -> Self {
        Self {
            message_id,
            topic,
            message_type: message_type.to_owned(),
            aggregate_type: subject.aggregate_type.to_owned(),
            aggregate_id: subject.aggregate_id,
            aggregate_version: subject.aggregate_version,
            correlation_id: ctx.correlation_id.clone(),
            causation_id: ctx.causation_id.clone(),
            traceparent: ctx.traceparent.clone(),
            tracestate: ctx.tracestate.clone(),
            payload,
        }
    }
}

/// Appends `messages` in order (their ids increase in slice order) on the caller's transaction.
/// Inside a traced span (a call, a message's processing), an `outbox.append` span is made as its
/// child and every row carries that span's context, so the relay's publish and every consumer
/// continue the same trace; outside one, each row continues its own cause's ([`append_set`]).
pub async fn append(conn: &mut PgConnection, messages: &[OutboxMessage]) -> anyhow::Result<()> {
    use tracing::Instrument as _;
    if crate::telemetry::current_trace_headers().is_none() {
        return append_set(conn, messages).await;
    }
    let span = tracing::info_span!(
        "outbox.append",
        otel.kind = "internal",
        messages = messages.len()
    );
    let current = crate::telemetry::trace_headers_of(&span);
    let traces = messages
        .iter()
        .map(|m| match &current {
            Some((parent, state)) => (Some(parent.clone()), state.clone()),
            None => own_trace(m),
        })
        .collect();
    insert(conn, messages, traces).instrument(span).await
}

/// Appends the messages of many causes at once (a consumer's set), each continuing its own
/// cause's trace: a message whose context (`traceparent`: its cause's) is sampled gets an
/// `outbox.append` span as that context's child (one per cause) and carries the span's
/// context; any other carries its own as it is. No span for the whole set: it would be a trace
/// of its own.
pub async fn append_set(conn: &mut PgConnection, messages: &[OutboxMessage]) -> anyhow::Result<()> {
    let mut spans: std::collections::HashMap<&str, Option<Trace>> =
        std::collections::HashMap::new();
    let traces = messages
        .iter()
        .map(|m| {
            let sampled = m
                .traceparent
                .as_deref()
                .filter(|p| crate::telemetry::is_sampled(p));
            let Some(parent) = sampled else {
                return own_trace(m);
            };
            spans
                .entry(parent)
                .or_insert_with(|| {
                    let span = tracing::info_span!("outbox.append", otel.kind = "internal");
                    crate::telemetry::set_remote_parent(
                        &span,
                        Some(parent),
                        m.tracestate.as_deref(),
                    );
                    crate::telemetry::trace_headers_of(&span)
                })
                .clone()
                .map_or_else(|| own_trace(m), |(parent, state)| (Some(parent), state))
        })
        .collect();
    insert(conn, messages, traces).await
}

/// A row's W3C trace context: `traceparent` and, if any, `tracestate`.
type Trace = (String, Option<String>);

fn own_trace(m: &OutboxMessage) -> (Option<String>, Option<String>) {
    (m.traceparent.clone(), m.tracestate.clone())
}

/// Inserts `messages` in order, each with its trace context from `traces`.
async fn insert(
    conn: &mut PgConnection,
    messages: &[OutboxMessage],
    traces: Vec<(Option<String>, Option<String>)>,
) -> anyhow::Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let mut message_id = Vec::with_capacity(messages.len());
    let mut topic = Vec::with_capacity(messages.len());
    let mut message_type = Vec::with_capacity(messages.len());
    let mut aggregate_type = Vec::with_capacity(messages.len());
    let mut aggregate_id = Vec::with_capacity(messages.len());
    let mut aggregate_version = Vec::with_capacity(messages.len());
    let mut correlation_id = Vec::with_capacity(messages.len());
    let mut causation_id = Vec::with_capacity(messages.len());
    let mut traceparent = Vec::with_capacity(messages.len());
    let mut tracestate = Vec::with_capacity(messages.len());
    let mut payload = Vec::with_capacity(messages.len());
    for (m, (parent, state)) in messages.iter().zip(&traces) {
        traceparent.push(parent.as_deref());
        tracestate.push(state.as_deref());
        message_id.push(m.message_id);
        topic.push(m.topic.as_str());
        message_type.push(m.message_type.as_str());
        aggregate_type.push(m.aggregate_type.as_str());
        aggregate_id.push(m.aggregate_id);
        aggregate_version.push(m.aggregate_version);
        correlation_id.push(m.correlation_id.as_str());
        causation_id.push(m.causation_id.as_deref());
        payload.push(m.payload.as_slice());
    }
    // `with ordinality` keeps the slice order, so ids follow it.
    sqlx::query!(
        r#"
        insert into outbox (message_id, topic, message_type, aggregate_type, aggregate_id,
                            aggregate_version, correlation_id, causation_id, traceparent,
                            tracestate, payload)
        select message_id, topic, message_type, aggregate_type, aggregate_id,
               aggregate_version, correlation_id, causation_id, traceparent, tracestate, payload
        from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::int8[],
                    $7::text[], $8::text[], $9::text[], $10::text[], $11::bytea[])
             with ordinality as m(message_id, topic, message_type, aggregate_type, aggregate_id,
                                  aggregate_version, correlation_id, causation_id, traceparent,
                                  tracestate, payload, ord)
        order by ord
        "#,
        &message_id,
        &topic as _,
        &message_type as _,
        &aggregate_type as _,
        &aggregate_id,
        &aggregate_version,
        &correlation_id as _,
        &causation_id as _,
        &traceparent as _,
        &tracestate as _,
        &payload as _,
    )
    .execute(conn)
    .await
    .context("append outbox rows")?;
    Ok(())
}
