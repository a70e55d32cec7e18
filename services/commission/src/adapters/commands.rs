//! The `commission-commands` door: calculate (sent by tracking), reserve, release and settle (sent
//! by the payout saga), run by the same handlers as the gRPC calls with the message id as the
//! idempotency key. A calculate for a campaign not known yet is retried, never rejected.

use prost::Message as _;
use sqlx::PgPool;
use uuid::Uuid;

use affiliate_proto::commission::{
    CommissionCommand, commission_command::Command, commission_event::Event,
};
use affiliate_proto::common::{CommandRejected, FieldViolation as WireViolation};
use messaging::{Delivery, Failure, Handler, inbox};
use service_runtime::context::CommandContext;
use service_runtime::errors::code_name;

use crate::app::{Commissions, Error, messages};

pub const CONSUMER: &str = "commission/commission-commands";

pub fn command_type(command: &Command) -> &'static str {
    match command {
        Command::Calculate(_) => "commission.calculate.command.v1",
        Command::Reserve(_) => "commission.reserve.command.v1",
        Command::Release(_) => "commission.release.command.v1",
        Command::Settle(_) => "commission.settle.command.v1",
    }
}

#[derive(Debug, Clone)]
pub struct CommandDoor {
    commissions: Commissions,
    pool: PgPool,
}

impl CommandDoor {
    pub fn new(commissions: Commissions, pool: PgPool) -> Self {
        Self { commissions, pool }
    }

    async fn run(&self, ctx: &CommandContext, command: Command) -> Result<(), Error> {
        match command {
            Command::Calculate(r) => self.commissions.calculate(ctx, r).await.map(drop),
            Command::Reserve(r) => self.commissions.reserve(ctx, r).await.map(drop),
            Command::Release(r) => self.commissions.release(ctx, r).await.map(drop),
            Command::Settle(r) => self.commissions.settle(ctx, r).await.map(drop),
        }
    }

    async fn reject(
        &self,
        ctx: &CommandContext,
        message_id: &str,
        rejected: CommandRejected,
    ) -> Failure {
        let reason = format!("{}: {}", rejected.code, rejected.reason);
        let event = messages::event_message(
            ctx,
            "command",
            Uuid::nil(),
            0,
            messages::now(),
            Event::CommandRejected(rejected),
        );
        inbox::record_rejection(&self.pool, CONSUMER, message_id, reason, event).await
    }
}

impl Handler for CommandDoor {
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
        let rejected = |code: tonic::Code, reason: String, command_type: String| CommandRejected {
            command_message_id: delivery.message_id.clone(),
            command_type,
            code: code_name(code).to_owned(),
            reason,
            field_violations: Vec::new(),
        };
        let envelope = match CommissionCommand::decode(delivery.payload.as_slice()) {
            Ok(envelope) => envelope,
            Err(e) => {
                let r = rejected(
                    tonic::Code::InvalidArgument,
                    format!("not a commission command envelope: {e}"),
                    delivery.message_type.clone().unwrap_or_default(),
                );
                return Err(self.reject(&ctx, &delivery.message_id, r).await);
            }
        };
        if let Some(correlation) = envelope
            .metadata
            .as_ref()
            .map(|m| &m.correlation_id)
            .filter(|c| !c.is_empty())
        {
            ctx.correlation_id = correlation.clone();
        }
        let Some(command) = envelope.command else {
            let r = rejected(
                tonic::Code::InvalidArgument,
                "the envelope holds no command".to_owned(),
                delivery.message_type.clone().unwrap_or_default(),
            );
            return Err(self.reject(&ctx, &delivery.message_id, r).await);
        };
        let kind = command_type(&command);
        match self.run(&ctx, command).await {
            Ok(()) => Ok(()),
            Err(e @ Error::CampaignNotKnown(_)) => Err(Failure::Transient(anyhow::anyhow!(e))),
            Err(Error::Unavailable(e) | Error::Internal(e)) => Err(Failure::Transient(e)),
            Err(error) => {
                let violations: Vec<WireViolation> = match &error {
                    Error::Invalid(v) => v
                        .iter()
                        .map(|v| WireViolation {
                            field: v.field.clone(),
                            description: v.description.clone(),
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                let reason = error.to_string();
                let mut r = rejected(tonic::Status::from(error).code(), reason, kind.to_owned());
                r.field_violations = violations;
                Err(self.reject(&ctx, &delivery.message_id, r).await)
            }
        }
    }
}
