//! The command-topic door: `CampaignCommand` messages from `campaign-commands` run the same
//! handlers as the gRPC door, with the message id as the idempotency key, so a command has the
//! same effect whichever door it used and a redelivered one is applied once. A command that can
//! never succeed is recorded and answered with `campaign.command_rejected.v1` (see
//! `messaging::door`).

use uuid::Uuid;

use affiliate_proto::campaign::{CampaignCommand, CampaignEvent, campaign_command::Command};
use messaging::door::CommandDoor;
use service_runtime::context::CommandContext;
use service_runtime::errors::Error;

use crate::app::{Campaigns, messages};

/// Runs campaign commands that arrive as messages.
#[derive(Debug, Clone)]
pub struct CampaignDoor(pub Campaigns);

impl CommandDoor for CampaignDoor {
    type Envelope = CampaignCommand;
    type Events = CampaignEvent;

    fn target(&self, command: &Command) -> Option<Uuid> {
        let id = match command {
            Command::CreateCampaign(_) => return None,
            Command::AddVideo(r) => &r.campaign_id,
            Command::AcceptCampaign(r) => &r.campaign_id,
            Command::PauseCampaign(r) => &r.campaign_id,
            Command::ResumeCampaign(r) => &r.campaign_id,
            Command::CloseCampaign(r) => &r.campaign_id,
            Command::UpdateBudget(r) => &r.campaign_id,
            Command::UpdateTracking(r) => &r.campaign_id,
        };
        Uuid::parse_str(id).ok()
    }

    async fn run(&self, ctx: &CommandContext, command: Command) -> Result<(), Error> {
        let c = &self.0;
        match command {
            Command::CreateCampaign(r) => c.create_campaign(ctx, r).await.map(drop),
            Command::AddVideo(r) => c.add_video(ctx, r).await.map(drop),
            Command::AcceptCampaign(r) => c.accept_campaign(ctx, r).await.map(drop),
            Command::PauseCampaign(r) => c.pause_campaign(ctx, r).await.map(drop),
            Command::ResumeCampaign(r) => c.resume_campaign(ctx, r).await.map(drop),
            Command::CloseCampaign(r) => c.close_campaign(ctx, r).await.map(drop),
            Command::UpdateBudget(r) => c.update_budget(ctx, r).await.map(drop),
            Command::UpdateTracking(r) => c.update_tracking_settings(ctx, r).await.map(drop),
        }
    }

    fn rejected_aggregate(&self, _command_type: &str) -> &'static str {
        messages::AGGREGATE
    }
}
