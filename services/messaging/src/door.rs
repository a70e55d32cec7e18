//! The command-topic door shared by every service: turns a delivered command message into a
//! call of the service's handler with the message id as idempotency key, and sorts the outcome:
//! done (acknowledge), retry (transient), or reject (recorded once in the inbox and answered with
//! the service's `*.command_rejected.v1` event). Services say only how to decode, run and announce.

use std::future::Future;

use affiliate_proto::common::{CommandRejected, FieldViolation};
use affiliate_proto::{CommandEnvelope, EventEnvelope};
use prost::Message as _;
use service_runtime::context::CommandContext;
use service_runtime::errors::Error;
use service_runtime::outbox::{self, Subject};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{Delivery, Failure, Handler, inbox};

/// How a command ended.
#[derive(Debug)]
pub enum Outcome {
    Done,
    /// Worth retrying later (infrastructure trouble, a dependency not known yet).
    Retry(anyhow::Error),
    /// Can never succeed: `code` is the gRPC code name the same call would get.
    Reject {
        code: &'static str,
        reason: String,
        violations: Vec<(String, String)>,
    },
}

/// How a handler error ends a command that came as a message: infrastructure trouble and data
/// not arrived yet are retried; everything else can never succeed and is rejected with the code
/// the same call would get over gRPC, and its field violations (invalid or out-of-range money).
impl From<Error> for Outcome {
    fn from(error: Error) -> Self {
        match error {
            Error::Unavailable(e) | Error::Internal(e) => Self::Retry(e),
            e @ Error::NotYet(_) => Self::Retry(anyhow::anyhow!(e)),
            other => {
                let violations = match &other {
                    Error::Invalid(v) | Error::OutOfRange(v) => v
                        .iter()
                        .map(|v| (v.field.clone(), v.description.clone()))
                        .collect(),
                    _ => Vec::new(),
                };
                let reason = other.to_string();
                let code = service_runtime::errors::code_name(tonic::Status::from(other).code());
                Self::Reject {
                    code,
                    reason,
                    violations,
                }
            }
        }
    }
}

/// A service's command door.
pub trait CommandDoor: Send + Sync + 'static {
    /// The envelope its command topic carries.
    type Envelope: CommandEnvelope;
    /// The envelope of the service's events topic, where a refused command is announced (its
    /// `*.command_rejected.v1` event).
    type Events: EventEnvelope;

    /// The aggregate a command targets, if it names one (the rejection event is keyed by it).
    fn target(&self, command: &Command<Self>) -> Option<Uuid>;
    /// Runs the command through the same handler as the gRPC door, in a transaction of its own;
    /// the door sorts the handler's error into retry or reject ([`Outcome`]).
    fn run(
        &self,
        ctx: &CommandContext,
        command: Command<Self>,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    /// Whether [`CommandDoor::run_set`] runs whole batches (so the consumer applies many
    /// commands in one transaction, in a handful of statements).
    fn runs_sets(&self) -> bool {
        false
    }
    /// Runs a batch of commands inside the caller's open transaction, set-based: one outcome per
    /// command, in order; a command that fails has written nothing (the door sorts its error
    /// into retry or reject, [`Outcome`]). `Err` fails the whole batch, which the consumer
    /// rolls back and applies again in halves.
    fn run_set(
        &self,
        conn: &mut PgConnection,
        commands: Vec<(CommandContext, Command<Self>)>,
    ) -> impl Future<Output = Result<Vec<Result<(), Error>>, Error>> + Send {
        let _ = (conn, commands);
        async {
            Err(Error::Internal(anyhow::anyhow!(
                "this door runs one command at a time"
            )))
        }
    }
    /// The aggregate type of the rejection event of a command of `command_type` (`command`
    /// unless the service keys its rejections by the aggregate the command was about).
    fn rejected_aggregate(&self, command_type: &str) -> &'static str {
        let _ = command_type;
        "command"
    }
}

/// The command a door's envelope carries.
pub type Command<D> = <<D as CommandDoor>::Envelope as CommandEnvelope>::Command;

/// Adapts a [`CommandDoor`] to the consumer loop, on the service's database (where rejections
/// are recorded, and batches run).
pub struct Door<D> {
    door: D,
    pool: PgPool,
    /// The inbox consumer name of the command topic, e.g. `campaign/campaign-commands`.
    consumer: String,
}

impl<D: CommandDoor> Door<D> {
    pub fn new(door: D, pool: PgPool) -> Self {
        let service = D::Envelope::SERVICE;
        let consumer = format!("{service}/{service}-commands");
        Self {
            door,
            pool,
            consumer,
        }
    }

    /// Decodes a command message into its metadata and command.
    fn decode(
        payload: &[u8],
    ) -> Result<
        (
            Option<affiliate_proto::common::MessageMetadata>,
            Option<Command<D>>,
        ),
        prost::DecodeError,
    > {
        D::Envelope::decode(payload).map(CommandEnvelope::into_parts)
    }
}

/// The context a command message runs in: its envelope's message id is the idempotency key.
fn context(delivery: &Delivery) -> CommandContext {
    CommandContext {
        idempotency_key: Some(delivery.message_id.clone()),
        correlation_id: delivery
            .correlation_id
            .clone()
            .unwrap_or_else(|| Uuid::new_v4().to_string()),
        causation_id: Some(delivery.message_id.clone()),
        traceparent: delivery.traceparent.clone(),
        tracestate: delivery.tracestate.clone(),
        issued_at: delivery.occurred_at,
    }
}

/// A rejection of a message whose command could not be read.
fn unreadable(delivery: &Delivery, reason: String) -> CommandRejected {
    CommandRejected {
        command_message_id: delivery.message_id.clone(),
        command_type: delivery.message_type.clone().unwrap_or_default(),
        code: "INVALID_ARGUMENT".to_owned(),
        reason,
        field_violations: Vec::new(),
    }
}

impl<D: CommandDoor> Door<D> {
    /// Records the rejection (once) with the service's rejection event, on `conn` inside the
    /// caller's transaction, or in a transaction of its own.
    async fn reject(
        &self,
        conn: Option<&mut PgConnection>,
        ctx: &CommandContext,
        delivery: &Delivery,
        aggregate: Uuid,
        rejected: CommandRejected,
    ) -> Failure {
        let reason = format!("{}: {}", rejected.code, rejected.reason);
        let aggregate_type = self.door.rejected_aggregate(&rejected.command_type);
        let subject = Subject::new(aggregate_type, aggregate, 0);
        let rejected = D::Events::command_rejected(rejected);
        let event =
            outbox::event::<D::Events>(ctx, subject, service_runtime::time::now(), rejected);
        let (consumer, id) = (self.consumer.as_str(), &delivery.message_id);
        match conn {
            Some(conn) => inbox::record_rejection(conn, consumer, id, reason, event).await,
            None => inbox::record_rejection(&self.pool, consumer, id, reason, event).await,
        }
    }

    /// Decodes a command message: its context, command, type and target, or the rejection of a
    /// message that holds no readable command of this service (with its context and target).
    fn prepare(&self, delivery: &Delivery) -> Result<Prepared<D>, Box<Unreadable>> {
        let mut ctx = context(delivery);
        let (metadata, command) = match Self::decode(&delivery.payload) {
            Ok(decoded) => decoded,
            Err(e) => {
                let reason = format!("not a command envelope of this service: {e}");
                return Err(Box::new((ctx, Uuid::nil(), unreadable(delivery, reason))));
            }
        };
        if let Some(correlation) = metadata.map(|m| m.correlation_id).filter(|c| !c.is_empty()) {
            ctx.correlation_id = correlation;
        }
        let Some(command) = command else {
            let reason = "the envelope holds no command".to_owned();
            return Err(Box::new((ctx, Uuid::nil(), unreadable(delivery, reason))));
        };
        let command_type = D::Envelope::command_type(&command);
        let aggregate = self.door.target(&command).unwrap_or(Uuid::nil());
        if let Some(property) = delivery.message_type.as_deref()
            && property != command_type
        {
            let reason = format!(
                "the message-type property `{property}` disagrees with the envelope's command `{command_type}`"
            );
            return Err(Box::new((ctx, aggregate, unreadable(delivery, reason))));
        }
        Ok(Prepared {
            ctx,
            command,
            command_type,
            aggregate,
        })
    }

    /// Sorts how a command ended: done, retried, or rejected (recorded on `conn`, or in a
    /// transaction of its own).
    async fn settle(
        &self,
        conn: Option<&mut PgConnection>,
        delivery: &Delivery,
        prepared: (CommandContext, &'static str, Uuid),
        result: Result<(), Error>,
    ) -> Result<(), Failure> {
        let (ctx, command_type, aggregate) = prepared;
        match result.map_or_else(Outcome::from, |()| Outcome::Done) {
            Outcome::Done => Ok(()),
            Outcome::Retry(e) => Err(Failure::Transient(e)),
            Outcome::Reject {
                code,
                reason,
                violations,
            } => {
                let rejected = CommandRejected {
                    command_message_id: delivery.message_id.clone(),
                    command_type: command_type.to_owned(),
                    code: code.to_owned(),
                    reason,
                    field_violations: violations
                        .into_iter()
                        .map(|(field, description)| FieldViolation { field, description })
                        .collect(),
                };
                Err(self.reject(conn, &ctx, delivery, aggregate, rejected).await)
            }
        }
    }

    /// Decodes and runs one command message in a transaction of its own.
    async fn apply(&self, delivery: &Delivery) -> Result<(), Failure> {
        match self.prepare(delivery) {
            Ok(p) => {
                let result = self.door.run(&p.ctx, p.command).await;
                self.settle(None, delivery, (p.ctx, p.command_type, p.aggregate), result)
                    .await
            }
            Err(unreadable) => {
                let (ctx, aggregate, rejected) = *unreadable;
                Err(self.reject(None, &ctx, delivery, aggregate, rejected).await)
            }
        }
    }

    /// Decodes a batch of command messages and runs them as one set on `conn`.
    async fn apply_set_on(
        &self,
        conn: &mut PgConnection,
        deliveries: &[&Delivery],
    ) -> Result<Vec<Result<(), Failure>>, Failure> {
        let mut outcomes: Vec<Option<Result<(), Failure>>> =
            deliveries.iter().map(|_| None).collect();
        let mut commands = Vec::with_capacity(deliveries.len());
        let mut runs = Vec::with_capacity(deliveries.len());
        for (i, delivery) in deliveries.iter().enumerate() {
            match self.prepare(delivery) {
                Ok(p) => {
                    commands.push((p.ctx.clone(), p.command));
                    runs.push((i, (p.ctx, p.command_type, p.aggregate)));
                }
                Err(unreadable) => {
                    let (ctx, aggregate, rejected) = *unreadable;
                    let refused = self
                        .reject(Some(&mut *conn), &ctx, delivery, aggregate, rejected)
                        .await;
                    outcomes[i] = Some(Err(refused));
                }
            }
        }
        let results = self
            .door
            .run_set(conn, commands)
            .await
            .map_err(Failure::transient)?;
        if results.len() != runs.len() {
            return Err(Failure::Transient(anyhow::anyhow!(
                "the door gave {} outcomes for {} commands",
                results.len(),
                runs.len()
            )));
        }
        for ((i, prepared), result) in runs.into_iter().zip(results) {
            let settled = self
                .settle(Some(&mut *conn), deliveries[i], prepared, result)
                .await;
            outcomes[i] = Some(settled);
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(Failure::Transient(anyhow::anyhow!("no outcome")))))
            .collect())
    }
}

/// A command message decoded: its context, command, type and target.
struct Prepared<D: CommandDoor> {
    ctx: CommandContext,
    command: Command<D>,
    command_type: &'static str,
    aggregate: Uuid,
}

/// A message with no readable command: its context, target and rejection.
type Unreadable = (CommandContext, Uuid, CommandRejected);

impl<D: CommandDoor> Handler for Door<D> {
    async fn handle(&self, delivery: &Delivery) -> Result<(), Failure> {
        self.apply(delivery).await
    }

    fn batch_pool(&self) -> Option<&PgPool> {
        self.door.runs_sets().then_some(&self.pool)
    }

    fn applies_sets(&self) -> bool {
        self.door.runs_sets()
    }

    async fn apply_set(
        &self,
        conn: &mut PgConnection,
        deliveries: &[&Delivery],
    ) -> Result<Vec<Result<(), Failure>>, Failure> {
        self.apply_set_on(conn, deliveries).await
    }

    async fn refuse(&self, delivery: &Delivery, reason: String) -> Failure {
        let ctx = context(delivery);
        let rejected = unreadable(delivery, reason);
        self.reject(None, &ctx, delivery, Uuid::nil(), rejected)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(error: Error) -> (&'static str, Vec<(String, String)>) {
        match Outcome::from(error) {
            Outcome::Reject {
                code, violations, ..
            } => (code, violations),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn money_out_of_range_is_rejected_with_its_field_never_retried() {
        let (code, violations) = sorted(Error::out_of_range(
            "purchase_amount.amount_minor",
            "would take the balance past the largest amount",
        ));
        assert_eq!(code, "OUT_OF_RANGE");
        assert_eq!(
            violations,
            [(
                "purchase_amount.amount_minor".to_owned(),
                "would take the balance past the largest amount".to_owned()
            )]
        );
    }

    #[test]
    fn infrastructure_trouble_and_data_not_arrived_yet_are_retried() {
        for error in [
            Error::Unavailable(anyhow::anyhow!("pool timed out")),
            Error::Internal(anyhow::anyhow!("bug")),
            Error::NotYet("campaign not known yet".into()),
        ] {
            assert!(matches!(Outcome::from(error), Outcome::Retry(_)));
        }
        assert_eq!(
            sorted(Error::AlreadyExists("dup".into())).0,
            "ALREADY_EXISTS"
        );
    }
}
