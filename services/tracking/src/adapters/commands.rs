//! The command-topic door: `TrackingCommand` messages from `tracking-commands` run the same
//! handlers as the gRPC door, with the message id as the idempotency key, so a command has the
//! same effect whichever door it used and a redelivered one is applied once. A command that can
//! never succeed is recorded and answered with `tracking.command_rejected.v1` (see
//! `messaging::door`).

use uuid::Uuid;

use affiliate_proto::tracking::{
    TrackingCommand, TrackingEventEnvelope, tracking_command::Command,
};
use messaging::door::CommandDoor;
use service_runtime::context::CommandContext;
use service_runtime::errors::Error;

use crate::app::{Tracking, messages};

/// Runs tracking commands that arrive as messages.
#[derive(Debug, Clone)]
pub struct TrackingDoor(pub Tracking);

impl CommandDoor for TrackingDoor {
    type Envelope = TrackingCommand;
    type Events = TrackingEventEnvelope;

    /// Both commands create their aggregate, so a rejected one has none (the nil id).
    fn target(&self, _command: &Command) -> Option<Uuid> {
        None
    }

    async fn run(&self, ctx: &CommandContext, command: Command) -> Result<(), Error> {
        match command {
            Command::CreateEvent(r) => self.0.create_event(ctx, r).await.map(drop),
            Command::SubmitEvidence(r) => self.0.submit_evidence(ctx, r).await.map(drop),
        }
    }

    fn rejected_aggregate(&self, command_type: &str) -> &'static str {
        if command_type == "tracking.submit_evidence.command.v1" {
            messages::EVIDENCE
        } else {
            messages::TRACKING_EVENT
        }
    }
}
