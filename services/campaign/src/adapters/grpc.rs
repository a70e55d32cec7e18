//! The gRPC door of the campaign service: reads the command context from metadata and calls the
//! handlers; their errors become statuses through `service_runtime::errors` (the one mapping).

use tonic::{Request, Response, Status};

use affiliate_proto::campaign::campaign_service_server::CampaignService;
use affiliate_proto::campaign::{self as pb};
use service_runtime::grpc::command;

use crate::app::Campaigns;

/// The tonic service over the handlers.
#[derive(Debug, Clone)]
pub struct CampaignApi {
    campaigns: Campaigns,
}

impl CampaignApi {
    pub fn new(campaigns: Campaigns) -> Self {
        Self { campaigns }
    }
}

#[tonic::async_trait]
impl CampaignService for CampaignApi {
    async fn create_campaign(
        &self,
        request: Request<pb::CreateCampaignRequest>,
    ) -> Result<Response<pb::CreateCampaignResponse>, Status> {
        command(request, async |ctx, r| {
            self.campaigns.create_campaign(ctx, r).await
        })
        .await
    }

    async fn get_campaign(
        &self,
        request: Request<pb::GetCampaignRequest>,
    ) -> Result<Response<pb::GetCampaignResponse>, Status> {
        Ok(Response::new(
            self.campaigns.get_campaign(request.into_inner()).await?,
        ))
    }

    async fn list_campaigns(
        &self,
        request: Request<pb::ListCampaignsRequest>,
    ) -> Result<Response<pb::ListCampaignsResponse>, Status> {
        Ok(Response::new(
            self.campaigns.list_campaigns(request.into_inner()).await?,
        ))
    }

    async fn add_video(
        &self,
        request: Request<pb::AddVideoRequest>,
    ) -> Result<Response<pb::AddVideoResponse>, Status> {
        command(request, async |ctx, r| {
            self.campaigns.add_video(ctx, r).await
        })
        .await
    }

    async fn accept_campaign(
        &self,
        request: Request<pb::AcceptCampaignRequest>,
    ) -> Result<Response<pb::AcceptCampaignResponse>, Status> {
        command(request, async |ctx, r| {
            self.campaigns.accept_campaign(ctx, r).await
        })
        .await
    }

    async fn pause_campaign(
        &self,
        request: Request<pb::PauseCampaignRequest>,
    ) -> Result<Response<pb::PauseCampaignResponse>, Status> {
        command(request, async |ctx, r| {
            self.campaigns.pause_campaign(ctx, r).await
        })
        .await
    }

    async fn resume_campaign(
        &self,
        request: Request<pb::ResumeCampaignRequest>,
    ) -> Result<Response<pb::ResumeCampaignResponse>, Status> {
        command(request, async |ctx, r| {
            self.campaigns.resume_campaign(ctx, r).await
        })
        .await
    }

    async fn close_campaign(
        &self,
        request: Request<pb::CloseCampaignRequest>,
    ) -> Result<Response<pb::CloseCampaignResponse>, Status> {
        command(request, async |ctx, r| {
            self.campaigns.close_campaign(ctx, r).await
        })
        .await
    }

    async fn update_budget(
        &self,
        request: Request<pb::UpdateBudgetRequest>,
    ) -> Result<Response<pb::UpdateBudgetResponse>, Status> {
        command(request, async |ctx, r| {
            self.campaigns.update_budget(ctx, r).await
        })
        .await
    }

    async fn update_tracking_settings(
        &self,
        request: Request<pb::UpdateTrackingSettingsRequest>,
    ) -> Result<Response<pb::UpdateTrackingSettingsResponse>, Status> {
        command(request, async |ctx, r| {
            self.campaigns.update_tracking_settings(ctx, r).await
        })
        .await
    }
}
