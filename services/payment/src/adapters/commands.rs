//! The `payment-commands` door: RequestPayout as a message, run by the same handler as the gRPC
//! call with the message id as the idempotency key.

use uuid::Uuid;

use affiliate_proto::payment::{PaymentCommand, PaymentEvent, payment_command::Command};
use messaging::door::CommandDoor;
use service_runtime::context::CommandContext;
use service_runtime::errors::Error;

use crate::adapters::provider::PaymentProvider;
use crate::app::Payouts;

pub struct PaymentDoor<P>(pub Payouts<P>);

impl<P: PaymentProvider> CommandDoor for PaymentDoor<P> {
    type Envelope = PaymentCommand;
    type Events = PaymentEvent;

    fn target(&self, _command: &Command) -> Option<Uuid> {
        None
    }

    async fn run(&self, ctx: &CommandContext, command: Command) -> Result<(), Error> {
        match command {
            Command::RequestPayout(r) => self.0.request_payout(ctx, r).await.map(drop),
        }
    }
}
