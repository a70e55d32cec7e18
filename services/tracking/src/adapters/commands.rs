//! The command-topic door: `TrackingCommand` messages from `tracking-commands` run the same
//! handlers as the gRPC door, with the message id as the idempotency key, so a command has the
//! same effect whichever door it used and a redelivered one is applied once. A command that can
//! never succeed is recorded and answered with `tracking.command_rejected.v1` (see
//! `messaging::door`).

use sqlx::PgConnection;
use uuid::Uuid;

use affiliate_proto::tracking::{
    TrackingCommand, TrackingEventEnvelope, tracking_command::Command,
};
use messaging::door::CommandDoor;
use service_runtime::context::CommandContext;
use service_runtime::errors::Error;

use crate::app::{CreateEvent, RecordConversion, Tracking, messages};

/// Runs tracking commands that arrive as messages.
#[derive(Debug, Clone)]
pub struct TrackingDoor(pub Tracking);

impl CommandDoor for TrackingDoor {
    type Envelope = TrackingCommand;
    type Events = TrackingEventEnvelope;

    /// DisableLink acts on its link; the others create their aggregate, so a rejected one has
    /// none (the nil id).
    fn target(&self, command: &Command) -> Option<Uuid> {
        match command {
            Command::DisableLink(r) => Uuid::parse_str(&r.link_id).ok(),
            Command::ReviewConversion(r) => Uuid::parse_str(&r.conversion_id).ok(),
            _ => None,
        }
    }

    async fn run(&self, ctx: &CommandContext, command: Command) -> Result<(), Error> {
        match command {
            Command::CreateEvent(r) => self.0.create_event(ctx, r).await.map(drop),
            Command::SubmitEvidence(r) => self.0.submit_evidence(ctx, r).await.map(drop),
            Command::CreateLink(r) => self.0.create_link(ctx, r).await.map(drop),
            Command::DisableLink(r) => self.0.disable_link(ctx, r).await.map(drop),
            Command::RecordConversion(r) => self.0.record_conversion(ctx, r).await.map(drop),
            Command::ReviewConversion(r) => self.0.review_conversion(ctx, r).await.map(drop),
            Command::RefundConversion(r) => self.0.refund_conversion(ctx, r).await.map(drop),
        }
    }

    fn runs_sets(&self) -> bool {
        true
    }

    /// CreateEvent commands as one set (`Tracking::create_events`), RecordConversion commands as
    /// another (`Tracking::record_conversions`); evidence, links, reviews and refunds, which are
    /// rare, one at a time, each in a savepoint of the set's transaction.
    async fn run_set(
        &self,
        conn: &mut PgConnection,
        commands: Vec<(CommandContext, Command)>,
    ) -> Result<Vec<Result<(), Error>>, Error> {
        let mut outcomes: Vec<Option<Result<(), Error>>> = commands.iter().map(|_| None).collect();
        let mut events: Vec<(usize, CreateEvent)> = Vec::new();
        let mut conversions: Vec<(usize, RecordConversion)> = Vec::new();
        let mut others = Vec::new();
        for (i, (ctx, command)) in commands.into_iter().enumerate() {
            match command {
                Command::CreateEvent(r) => events.push((i, (ctx, r))),
                Command::RecordConversion(r) => conversions.push((i, (ctx, r))),
                other => others.push((i, ctx, other)),
            }
        }
        let (positions, set): (Vec<usize>, Vec<RecordConversion>) = conversions.into_iter().unzip();
        if !set.is_empty() {
            for (i, result) in positions
                .into_iter()
                .zip(self.0.record_conversions(conn, &set).await?)
            {
                outcomes[i] = Some(result.map(drop));
            }
        }
        let (positions, set): (Vec<usize>, Vec<CreateEvent>) = events.into_iter().unzip();
        if !set.is_empty() {
            for (i, result) in positions
                .into_iter()
                .zip(self.0.create_events(conn, &set).await?)
            {
                outcomes[i] = Some(result.map(drop));
            }
        }
        for (i, ctx, command) in others {
            let outcome = match command {
                Command::SubmitEvidence(r) => self
                    .0
                    .submit_evidence_in(&mut *conn, &ctx, r)
                    .await
                    .map(drop),
                Command::CreateLink(r) => {
                    self.0.create_link_in(&mut *conn, &ctx, r).await.map(drop)
                }
                Command::DisableLink(r) => {
                    self.0.disable_link_in(&mut *conn, &ctx, r).await.map(drop)
                }
                Command::ReviewConversion(r) => self
                    .0
                    .review_conversion_in(&mut *conn, &ctx, r)
                    .await
                    .map(drop),
                Command::RefundConversion(r) => self
                    .0
                    .refund_conversion_in(&mut *conn, &ctx, r)
                    .await
                    .map(drop),
                Command::CreateEvent(_) | Command::RecordConversion(_) => {
                    Err(Error::Internal(anyhow::anyhow!("not in this set")))
                }
            };
            outcomes[i] = Some(outcome);
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(Error::Internal(anyhow::anyhow!("no outcome")))))
            .collect())
    }

    fn rejected_aggregate(&self, command_type: &str) -> &'static str {
        match command_type {
            "tracking.submit_evidence.command.v1" => messages::EVIDENCE,
            "tracking.create_link.command.v1" | "tracking.disable_link.command.v1" => {
                messages::LINK
            }
            "tracking.refund_conversion.command.v1" => messages::CONVERSION,
            _ => messages::TRACKING_EVENT,
        }
    }
}
