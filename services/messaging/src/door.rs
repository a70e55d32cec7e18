//! The command-topic door shared by every service: turns a delivered command message into a
//! call of the service's handler with the message id as idempotency key, and sorts the outcome:
//! done (acknowledge), retry (transient), or reject (recorded once in the inbox and answered with
//! the service's `*.command_rejected.v1` event). Services say only how to decode, run and announce.

use std::future::Future;

use affiliate_proto::common::{CommandRejected, FieldViolation, MessageMetadata};
use service_runtime::context::CommandContext;
use service_runtime::outbox::OutboxMessage;
use sqlx::PgPool;
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
/// the same call would get over gRPC.
impl From<service_runtime::errors::Error> for Outcome {
    fn from(error: service_runtime::errors::Error) -> Self {
        use service_runtime::errors::Error;
        match error {
            Error::Unavailable(e) | Error::Internal(e) => Self::Retry(e),
            e @ Error::NotYet(_) => Self::Retry(anyhow::anyhow!(e)),
            other => {
                let violations = match &other {
                    Error::Invalid(v) => v
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
    type Command: Send;

    /// The inbox consumer name, e.g. `campaign/campaign-commands`.
    fn consumer(&self) -> &'static str;
    /// Decodes the envelope into its metadata and command.
    fn decode(
        &self,
        payload: &[u8],
    ) -> Result<(Option<MessageMetadata>, Option<Self::Command>), prost::DecodeError>;
    /// The versioned type name of a command.
    fn command_type(&self, command: &Self::Command) -> &'static str;
    /// The aggregate a command targets, if it names one (the rejection event is keyed by it).
    fn target(&self, command: &Self::Command) -> Option<Uuid>;
    /// Runs the command through the same handler as the gRPC door.
    fn run(
        &self,
        ctx: &CommandContext,
        command: Self::Command,
    ) -> impl Future<Output = Outcome> + Send;
    /// The service's rejection event.
    fn rejection_event(
        &self,
        ctx: &CommandContext,
        aggregate: Uuid,
        rejected: CommandRejected,
    ) -> OutboxMessage;
    fn pool(&self) -> &PgPool;
}

/// Adapts a [`CommandDoor`] to the consumer loop.
pub struct Door<D>(pub D);

impl<D: CommandDoor> Door<D> {
    async fn reject(
        &self,
        ctx: &CommandContext,
        delivery: &Delivery,
        aggregate: Uuid,
        rejected: CommandRejected,
    ) -> Failure {
        let reason = format!("{}: {}", rejected.code, rejected.reason);
        let event = self.0.rejection_event(ctx, aggregate, rejected);
        inbox::record_rejection(
            self.0.pool(),
            self.0.consumer(),
            &delivery.message_id,
            reason,
            event,
        )
        .await
    }
}

impl<D: CommandDoor> Handler for Door<D> {
    async fn handle(&self, delivery: &Delivery) -> Result<(), Failure> {
        let mut ctx = CommandContext {
            idempotency_key: Some(delivery.message_id.clone()),
            correlation_id: delivery
                .correlation_id
                .clone()
                .unwrap_or_else(|| Uuid::new_v4().to_string()),
            causation_id: Some(delivery.message_id.clone()),
            traceparent: delivery.traceparent.clone(),
            tracestate: delivery.tracestate.clone(),
        };
        let unreadable = |reason: String| CommandRejected {
            command_message_id: delivery.message_id.clone(),
            command_type: delivery.message_type.clone().unwrap_or_default(),
            code: "INVALID_ARGUMENT".to_owned(),
            reason,
            field_violations: Vec::new(),
        };
        let (metadata, command) = match self.0.decode(&delivery.payload) {
            Ok(decoded) => decoded,
            Err(e) => {
                let rejected = unreadable(format!("not a command envelope of this service: {e}"));
                return Err(self.reject(&ctx, delivery, Uuid::nil(), rejected).await);
            }
        };
        if let Some(correlation) = metadata.map(|m| m.correlation_id).filter(|c| !c.is_empty()) {
            ctx.correlation_id = correlation;
        }
        let Some(command) = command else {
            let rejected = unreadable("the envelope holds no command".to_owned());
            return Err(self.reject(&ctx, delivery, Uuid::nil(), rejected).await);
        };
        let command_type = self.0.command_type(&command);
        let aggregate = self.0.target(&command).unwrap_or(Uuid::nil());
        match self.0.run(&ctx, command).await {
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
                Err(self.reject(&ctx, delivery, aggregate, rejected).await)
            }
        }
    }
}
