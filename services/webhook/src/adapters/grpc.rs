//! The gRPC door of the webhook service; handler errors become statuses through
//! `service_runtime::errors` (the one mapping).

use tonic::{Request, Response, Status};

use affiliate_proto::webhook::webhook_service_server::WebhookService;
use affiliate_proto::webhook::{self as pb};

use crate::app::Webhooks;

#[derive(Debug, Clone)]
pub struct WebhookApi {
    webhooks: Webhooks,
}

impl WebhookApi {
    pub fn new(webhooks: Webhooks) -> Self {
        Self { webhooks }
    }
}

#[tonic::async_trait]
impl WebhookService for WebhookApi {
    async fn create_endpoint(
        &self,
        request: Request<pb::CreateEndpointRequest>,
    ) -> Result<Response<pb::CreateEndpointResponse>, Status> {
        Ok(Response::new(
            self.webhooks.create_endpoint(request.into_inner()).await?,
        ))
    }
    async fn get_endpoint(
        &self,
        request: Request<pb::GetEndpointRequest>,
    ) -> Result<Response<pb::GetEndpointResponse>, Status> {
        Ok(Response::new(
            self.webhooks.get_endpoint(request.into_inner()).await?,
        ))
    }
    async fn list_endpoints(
        &self,
        request: Request<pb::ListEndpointsRequest>,
    ) -> Result<Response<pb::ListEndpointsResponse>, Status> {
        Ok(Response::new(
            self.webhooks.list_endpoints(request.into_inner()).await?,
        ))
    }
    async fn update_endpoint(
        &self,
        request: Request<pb::UpdateEndpointRequest>,
    ) -> Result<Response<pb::UpdateEndpointResponse>, Status> {
        Ok(Response::new(
            self.webhooks.update_endpoint(request.into_inner()).await?,
        ))
    }
    async fn delete_endpoint(
        &self,
        request: Request<pb::DeleteEndpointRequest>,
    ) -> Result<Response<pb::DeleteEndpointResponse>, Status> {
        Ok(Response::new(
            self.webhooks.delete_endpoint(request.into_inner()).await?,
        ))
    }
    async fn rotate_secret(
        &self,
        request: Request<pb::RotateSecretRequest>,
    ) -> Result<Response<pb::RotateSecretResponse>, Status> {
        Ok(Response::new(
            self.webhooks.rotate_secret(request.into_inner()).await?,
        ))
    }
    async fn list_deliveries(
        &self,
        request: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        Ok(Response::new(
            self.webhooks.list_deliveries(request.into_inner()).await?,
        ))
    }
    async fn list_attempts(
        &self,
        request: Request<pb::ListAttemptsRequest>,
    ) -> Result<Response<pb::ListAttemptsResponse>, Status> {
        Ok(Response::new(
            self.webhooks.list_attempts(request.into_inner()).await?,
        ))
    }
    async fn resend_message(
        &self,
        request: Request<pb::ResendMessageRequest>,
    ) -> Result<Response<pb::ResendMessageResponse>, Status> {
        Ok(Response::new(
            self.webhooks.resend_message(request.into_inner()).await?,
        ))
    }
    async fn recover_endpoint(
        &self,
        request: Request<pb::RecoverEndpointRequest>,
    ) -> Result<Response<pb::RecoverEndpointResponse>, Status> {
        Ok(Response::new(
            self.webhooks.recover_endpoint(request.into_inner()).await?,
        ))
    }
    async fn send_test_event(
        &self,
        request: Request<pb::SendTestEventRequest>,
    ) -> Result<Response<pb::SendTestEventResponse>, Status> {
        Ok(Response::new(
            self.webhooks.send_test_event(request.into_inner()).await?,
        ))
    }
}
