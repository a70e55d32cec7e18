//! The `commission-commands` door: calculate (sent by tracking), reserve, release and settle (sent
//! by the payout saga), run by the same handlers as the gRPC calls with the message id as the
//! idempotency key. A calculate for a campaign not known yet is retried, never rejected.

use prost::Message as _;
use sqlx::PgPool;
use uuid::Uuid;

use affiliate_proto::commission::{
    CommissionCommand, commission_command::Command, commission_event::Event,
};
use affiliate_proto::common::{CommandRejected, MessageMetadata};
use messaging::door::{CommandDoor, Outcome};
use service_runtime::context::CommandContext;
use service_runtime::outbox::OutboxMessage;

use crate::app::{Commissions, messages};

#[derive(Debug, Clone)]
pub struct CommissionDoor {
    commissions: Commissions,
    pool: PgPool,
}

impl CommissionDoor {
    pub fn new(commissions: Commissions, pool: PgPool) -> Self {
        Self { commissions, pool }
    }
}

impl CommandDoor for CommissionDoor {
    type Command = Command;

    fn consumer(&self) -> &'static str {
        "commission/commission-commands"
    }

    fn decode(
        &self,
        payload: &[u8],
    ) -> Result<(Option<MessageMetadata>, Option<Command>), prost::DecodeError> {
        CommissionCommand::decode(payload).map(|e| (e.metadata, e.command))
    }

    fn command_type(&self, command: &Command) -> &'static str {
        command.message_type()
    }

    fn target(&self, command: &Command) -> Option<Uuid> {
        let id = match command {
            Command::Calculate(r) => &r.tracking_event_id,
            Command::Reserve(r) => &r.payout_id,
            Command::Release(r) => &r.payout_id,
            Command::Settle(r) => &r.payout_id,
        };
        Uuid::parse_str(id).ok()
    }

    async fn run(&self, ctx: &CommandContext, command: Command) -> Outcome {
        let c = &self.commissions;
        let result = match command {
            Command::Calculate(r) => c.calculate(ctx, r).await.map(drop),
            Command::Reserve(r) => c.reserve(ctx, r).await.map(drop),
            Command::Release(r) => c.release(ctx, r).await.map(drop),
            Command::Settle(r) => c.settle(ctx, r).await.map(drop),
        };
        result.map_or_else(Outcome::from, |()| Outcome::Done)
    }

    fn rejection_event(
        &self,
        ctx: &CommandContext,
        aggregate: Uuid,
        rejected: CommandRejected,
    ) -> OutboxMessage {
        messages::event_message(
            ctx,
            "command",
            aggregate,
            0,
            messages::now(),
            Event::CommandRejected(rejected),
        )
    }

    fn pool(&self) -> &PgPool {
        &self.pool
    }
}
