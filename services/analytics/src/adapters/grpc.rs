//! The gRPC door of the analytics service: statistics (campaigns, creators, links, sub-ids), workflows, histories and replays;
//! handler errors become statuses through `service_runtime::errors` (the one mapping).

use tonic::{Request, Response, Status};

use affiliate_proto::analytics::analytics_service_server::AnalyticsService;
use affiliate_proto::analytics::{self as pb};
use service_runtime::errors::Error;

use crate::app::Analytics;
use crate::app::replay::Replays;

#[derive(Debug, Clone)]
pub struct AnalyticsApi {
    analytics: Analytics,
    replays: Replays,
}

impl AnalyticsApi {
    pub fn new(analytics: Analytics, replays: Replays) -> Self {
        Self { analytics, replays }
    }
}

fn answer<T>(result: Result<T, Error>) -> Result<Response<T>, Status> {
    Ok(Response::new(result?))
}

#[tonic::async_trait]
impl AnalyticsService for AnalyticsApi {
    async fn get_campaign_stats(
        &self,
        request: Request<pb::GetCampaignStatsRequest>,
    ) -> Result<Response<pb::GetCampaignStatsResponse>, Status> {
        answer(self.analytics.campaign_stats(request.into_inner()).await)
    }

    async fn get_creator_stats(
        &self,
        request: Request<pb::GetCreatorStatsRequest>,
    ) -> Result<Response<pb::GetCreatorStatsResponse>, Status> {
        answer(self.analytics.creator_stats(request.into_inner()).await)
    }

    async fn get_link_stats(
        &self,
        request: Request<pb::GetLinkStatsRequest>,
    ) -> Result<Response<pb::GetLinkStatsResponse>, Status> {
        answer(self.analytics.link_stats(request.into_inner()).await)
    }

    async fn get_sub_id_stats(
        &self,
        request: Request<pb::GetSubIdStatsRequest>,
    ) -> Result<Response<pb::GetSubIdStatsResponse>, Status> {
        answer(self.analytics.sub_id_stats(request.into_inner()).await)
    }

    async fn get_workflow(
        &self,
        request: Request<pb::GetWorkflowRequest>,
    ) -> Result<Response<pb::GetWorkflowResponse>, Status> {
        answer(self.analytics.workflow(request.into_inner()).await)
    }

    async fn get_aggregate_history(
        &self,
        request: Request<pb::GetAggregateHistoryRequest>,
    ) -> Result<Response<pb::GetAggregateHistoryResponse>, Status> {
        answer(self.analytics.history(request.into_inner()).await)
    }

    async fn replay(
        &self,
        _request: Request<pb::ReplayRequest>,
    ) -> Result<Response<pb::ReplayResponse>, Status> {
        answer(self.replays.replay().await)
    }

    async fn get_replay_status(
        &self,
        _request: Request<pb::GetReplayStatusRequest>,
    ) -> Result<Response<pb::GetReplayStatusResponse>, Status> {
        answer(self.replays.status().await)
    }
}
