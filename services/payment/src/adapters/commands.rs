//! The `payment-commands` door: RequestPayout as a message, run by the same handler as the gRPC
//! call with the message id as the idempotency key.

use prost::Message as _;
use sqlx::PgPool;
use uuid::Uuid;

use affiliate_proto::common::{CommandRejected, MessageMetadata};
use affiliate_proto::payment::{PaymentCommand, payment_command::Command, payment_event::Event};
use messaging::door::{CommandDoor, Outcome};
use service_runtime::context::CommandContext;
use service_runtime::outbox::{OutboxMessage, Subject, events_topic, metadata, new_message_id};

use crate::adapters::provider::PaymentProvider;
use crate::app::{Payouts, messages};

pub struct PaymentDoor<P> {
    payouts: Payouts<P>,
    pool: PgPool,
}

impl<P: PaymentProvider> PaymentDoor<P> {
    pub fn new(payouts: Payouts<P>, pool: PgPool) -> Self {
        Self { payouts, pool }
    }
}

impl<P: PaymentProvider> CommandDoor for PaymentDoor<P> {
    type Command = Command;

    fn consumer(&self) -> &'static str {
        "payment/payment-commands"
    }

    fn decode(
        &self,
        payload: &[u8],
    ) -> Result<(Option<MessageMetadata>, Option<Command>), prost::DecodeError> {
        PaymentCommand::decode(payload).map(|e| (e.metadata, e.command))
    }

    fn command_type(&self, command: &Command) -> &'static str {
        command.message_type()
    }

    fn target(&self, _command: &Command) -> Option<Uuid> {
        None
    }

    async fn run(&self, ctx: &CommandContext, command: Command) -> Outcome {
        let result = match command {
            Command::RequestPayout(r) => self.payouts.request_payout(ctx, r).await.map(drop),
        };
        result.map_or_else(Outcome::from, |()| Outcome::Done)
    }

    fn rejection_event(
        &self,
        ctx: &CommandContext,
        aggregate: Uuid,
        rejected: CommandRejected,
    ) -> OutboxMessage {
        let event = Event::CommandRejected(rejected);
        let message_type = messages::event_type(&event);
        let message_id = new_message_id();
        let subject = Subject {
            aggregate_type: "command",
            aggregate_id: aggregate,
            aggregate_version: 0,
        };
        let envelope = affiliate_proto::payment::PaymentEvent {
            metadata: Some(metadata(
                ctx,
                message_id,
                message_type,
                subject,
                messages::now(),
            )),
            event: Some(event),
        };
        OutboxMessage::new(
            ctx,
            message_id,
            events_topic(messages::SERVICE),
            message_type,
            subject,
            envelope.encode_to_vec(),
        )
    }

    fn pool(&self) -> &PgPool {
        &self.pool
    }
}
