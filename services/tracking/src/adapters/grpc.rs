//! The gRPC door of the tracking service: reads the command context from metadata and calls the
//! handlers; their errors become statuses through `service_runtime::errors` (the one mapping).

use tonic::{Request, Response, Status};

use affiliate_proto::tracking::tracking_service_server::TrackingService;
use affiliate_proto::tracking::{self as pb};
use service_runtime::grpc::command;

use crate::app::Tracking;

/// The tonic service over the handlers.
#[derive(Debug, Clone)]
pub struct TrackingApi {
    tracking: Tracking,
}

impl TrackingApi {
    pub fn new(tracking: Tracking) -> Self {
        Self { tracking }
    }
}

#[tonic::async_trait]
impl TrackingService for TrackingApi {
    async fn create_event(
        &self,
        request: Request<pb::CreateEventRequest>,
    ) -> Result<Response<pb::CreateEventResponse>, Status> {
        command(request, async |ctx, r| {
            self.tracking.create_event_waiting(ctx, r).await
        })
        .await
    }

    async fn get_event(
        &self,
        request: Request<pb::GetEventRequest>,
    ) -> Result<Response<pb::GetEventResponse>, Status> {
        Ok(Response::new(
            self.tracking.get_event(request.into_inner()).await?,
        ))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        Ok(Response::new(
            self.tracking.list_events(request.into_inner()).await?,
        ))
    }

    async fn submit_evidence(
        &self,
        request: Request<pb::SubmitEvidenceRequest>,
    ) -> Result<Response<pb::SubmitEvidenceResponse>, Status> {
        command(request, async |ctx, r| {
            self.tracking.submit_evidence(ctx, r).await
        })
        .await
    }

    async fn list_evidence(
        &self,
        request: Request<pb::ListEvidenceRequest>,
    ) -> Result<Response<pb::ListEvidenceResponse>, Status> {
        Ok(Response::new(
            self.tracking.list_evidence(request.into_inner()).await?,
        ))
    }

    async fn create_link(
        &self,
        request: Request<pb::CreateLinkRequest>,
    ) -> Result<Response<pb::CreateLinkResponse>, Status> {
        command(request, async |ctx, r| {
            self.tracking.create_link_waiting(ctx, r).await
        })
        .await
    }

    async fn get_link(
        &self,
        request: Request<pb::GetLinkRequest>,
    ) -> Result<Response<pb::GetLinkResponse>, Status> {
        Ok(Response::new(
            self.tracking.get_link(request.into_inner()).await?,
        ))
    }

    async fn list_links(
        &self,
        request: Request<pb::ListLinksRequest>,
    ) -> Result<Response<pb::ListLinksResponse>, Status> {
        Ok(Response::new(
            self.tracking.list_links(request.into_inner()).await?,
        ))
    }

    async fn disable_link(
        &self,
        request: Request<pb::DisableLinkRequest>,
    ) -> Result<Response<pb::DisableLinkResponse>, Status> {
        command(request, async |ctx, r| {
            self.tracking.disable_link(ctx, r).await
        })
        .await
    }

    async fn record_conversion(
        &self,
        request: Request<pb::RecordConversionRequest>,
    ) -> Result<Response<pb::RecordConversionResponse>, Status> {
        command(request, async |ctx, r| {
            self.tracking.record_conversion(ctx, r).await
        })
        .await
    }

    async fn review_conversion(
        &self,
        request: Request<pb::ReviewConversionRequest>,
    ) -> Result<Response<pb::ReviewConversionResponse>, Status> {
        command(request, async |ctx, r| {
            self.tracking.review_conversion(ctx, r).await
        })
        .await
    }

    async fn refund_conversion(
        &self,
        request: Request<pb::RefundConversionRequest>,
    ) -> Result<Response<pb::RefundConversionResponse>, Status> {
        command(request, async |ctx, r| {
            self.tracking.refund_conversion(ctx, r).await
        })
        .await
    }

    async fn get_conversion(
        &self,
        request: Request<pb::GetConversionRequest>,
    ) -> Result<Response<pb::GetConversionResponse>, Status> {
        Ok(Response::new(
            self.tracking.get_conversion(request.into_inner()).await?,
        ))
    }

    async fn create_postback_key(
        &self,
        request: Request<pb::CreatePostbackKeyRequest>,
    ) -> Result<Response<pb::CreatePostbackKeyResponse>, Status> {
        command(request, async |ctx, r| {
            self.tracking.create_postback_key(ctx, r).await
        })
        .await
    }

    async fn list_postback_keys(
        &self,
        request: Request<pb::ListPostbackKeysRequest>,
    ) -> Result<Response<pb::ListPostbackKeysResponse>, Status> {
        Ok(Response::new(
            self.tracking
                .list_postback_keys(request.into_inner())
                .await?,
        ))
    }

    async fn revoke_postback_key(
        &self,
        request: Request<pb::RevokePostbackKeyRequest>,
    ) -> Result<Response<pb::RevokePostbackKeyResponse>, Status> {
        Ok(Response::new(
            self.tracking
                .revoke_postback_key(request.into_inner())
                .await?,
        ))
    }

    async fn authenticate_postback(
        &self,
        request: Request<pb::AuthenticatePostbackRequest>,
    ) -> Result<Response<pb::AuthenticatePostbackResponse>, Status> {
        Ok(Response::new(
            self.tracking
                .authenticate_postback(request.into_inner())
                .await?,
        ))
    }
}
