//! The command-topic door: decodes `CampaignCommand` messages from `campaign-commands` and runs
//! the same handlers as the gRPC door, with the message id as the idempotency key, so a command
//! has the same effect whichever door it used and a redelivered one is applied once. A command
//! that can never succeed is recorded in the inbox and answered with `campaign.command_rejected.v1`.

use prost::Message as _;
use sqlx::PgPool;
use uuid::Uuid;

use affiliate_proto::campaign::{
    CampaignCommand, campaign_command::Command, campaign_event::Event,
};
use affiliate_proto::common::{CommandRejected, FieldViolation as WireViolation};
use messaging::{Delivery, Failure, Handler, inbox};
use service_runtime::context::CommandContext;
use service_runtime::errors::code_name;

use crate::app::{Campaigns, Error, messages};

/// The inbox consumer name of this door.
pub const CONSUMER: &str = "campaign/campaign-commands";

/// The versioned type name of a command.
pub fn command_type(command: &Command) -> &'static str {
    match command {
        Command::CreateCampaign(_) => "campaign.create.command.v1",
        Command::AddVideo(_) => "campaign.add_video.command.v1",
        Command::AcceptCampaign(_) => "campaign.accept.command.v1",
        Command::PauseCampaign(_) => "campaign.pause.command.v1",
        Command::ResumeCampaign(_) => "campaign.resume.command.v1",
        Command::CloseCampaign(_) => "campaign.close.command.v1",
    }
}

/// The campaign a command targets, if it names one.
fn target(command: &Command) -> Option<&str> {
    match command {
        Command::CreateCampaign(_) => None,
        Command::AddVideo(r) => Some(&r.campaign_id),
        Command::AcceptCampaign(r) => Some(&r.campaign_id),
        Command::PauseCampaign(r) => Some(&r.campaign_id),
        Command::ResumeCampaign(r) => Some(&r.campaign_id),
        Command::CloseCampaign(r) => Some(&r.campaign_id),
    }
}

/// Runs campaign commands that arrive as messages.
#[derive(Debug, Clone)]
pub struct CommandDoor {
    campaigns: Campaigns,
    pool: PgPool,
}

impl CommandDoor {
    pub fn new(campaigns: Campaigns, pool: PgPool) -> Self {
        Self { campaigns, pool }
    }

    async fn run(&self, ctx: &CommandContext, command: Command) -> Result<(), Error> {
        match command {
            Command::CreateCampaign(r) => self.campaigns.create_campaign(ctx, r).await.map(drop),
            Command::AddVideo(r) => self.campaigns.add_video(ctx, r).await.map(drop),
            Command::AcceptCampaign(r) => self.campaigns.accept_campaign(ctx, r).await.map(drop),
            Command::PauseCampaign(r) => self.campaigns.pause_campaign(ctx, r).await.map(drop),
            Command::ResumeCampaign(r) => self.campaigns.resume_campaign(ctx, r).await.map(drop),
            Command::CloseCampaign(r) => self.campaigns.close_campaign(ctx, r).await.map(drop),
        }
    }

    /// Records the rejection once and publishes `campaign.command_rejected.v1`.
    async fn reject(
        &self,
        ctx: &CommandContext,
        message_id: &str,
        aggregate: Uuid,
        rejected: CommandRejected,
    ) -> Failure {
        let reason = format!("{}: {}", rejected.code, rejected.reason);
        let event = messages::event_message(
            ctx,
            aggregate,
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
        let envelope = match CampaignCommand::decode(delivery.payload.as_slice()) {
            Ok(envelope) => envelope,
            Err(e) => {
                let rejected = CommandRejected {
                    command_message_id: delivery.message_id.clone(),
                    command_type: delivery.message_type.clone().unwrap_or_default(),
                    code: code_name(tonic::Code::InvalidArgument).to_owned(),
                    reason: format!("not a campaign command envelope: {e}"),
                    field_violations: Vec::new(),
                };
                return Err(self
                    .reject(&ctx, &delivery.message_id, Uuid::nil(), rejected)
                    .await);
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
            let rejected = CommandRejected {
                command_message_id: delivery.message_id.clone(),
                command_type: delivery.message_type.clone().unwrap_or_default(),
                code: code_name(tonic::Code::InvalidArgument).to_owned(),
                reason: "the envelope holds no command".to_owned(),
                field_violations: Vec::new(),
            };
            return Err(self
                .reject(&ctx, &delivery.message_id, Uuid::nil(), rejected)
                .await);
        };
        let kind = command_type(&command);
        let aggregate = target(&command)
            .and_then(|id| Uuid::parse_str(id).ok())
            .unwrap_or(Uuid::nil());
        match self.run(&ctx, command).await {
            Ok(()) => Ok(()),
            Err(Error::Unavailable(e) | Error::Internal(e)) => Err(Failure::Transient(e)),
            Err(error) => {
                let field_violations = match &error {
                    Error::Invalid(violations) => violations
                        .iter()
                        .map(|v| WireViolation {
                            field: v.field.clone(),
                            description: v.description.clone(),
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                let reason = error.to_string();
                let status = tonic::Status::from(error);
                let rejected = CommandRejected {
                    command_message_id: delivery.message_id.clone(),
                    command_type: kind.to_owned(),
                    code: code_name(status.code()).to_owned(),
                    reason,
                    field_violations,
                };
                Err(self
                    .reject(&ctx, &delivery.message_id, aggregate, rejected)
                    .await)
            }
        }
    }
}
