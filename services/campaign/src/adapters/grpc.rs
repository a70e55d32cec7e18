//! The gRPC door: reads the command context from metadata, calls the handler, and maps handler
//! errors to statuses (the one place that does).

use tonic::{Request, Response, Status};

use affiliate_proto::campaign::campaign_service_server::CampaignService;
use affiliate_proto::campaign::{self as pb};
use service_runtime::context::CommandContext;
use service_runtime::errors::{internal, invalid_argument, unavailable};

use crate::app::{Campaigns, Error};

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

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::Invalid(violations) => invalid_argument(
                "invalid request",
                violations.into_iter().map(|v| (v.field, v.description)),
            ),
            Error::NotFound { .. } => Status::not_found(error.to_string()),
            Error::AlreadyExists(message) => Status::already_exists(message),
            Error::Rejected(rejection) => Status::failed_precondition(rejection.to_string()),
            Error::KeyReused(_) => Status::failed_precondition(error.to_string()),
            Error::Unavailable(cause) => unavailable(&cause),
            Error::Internal(cause) => internal(&cause),
        }
    }
}

#[tonic::async_trait]
impl CampaignService for CampaignApi {
    async fn create_campaign(
        &self,
        request: Request<pb::CreateCampaignRequest>,
    ) -> Result<Response<pb::CreateCampaignResponse>, Status> {
        let ctx = CommandContext::from_grpc(&request)?;
        let response = self
            .campaigns
            .create_campaign(&ctx, request.into_inner())
            .await?;
        Ok(Response::new(response))
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
        let ctx = CommandContext::from_grpc(&request)?;
        Ok(Response::new(
            self.campaigns.add_video(&ctx, request.into_inner()).await?,
        ))
    }

    async fn accept_campaign(
        &self,
        request: Request<pb::AcceptCampaignRequest>,
    ) -> Result<Response<pb::AcceptCampaignResponse>, Status> {
        let ctx = CommandContext::from_grpc(&request)?;
        Ok(Response::new(
            self.campaigns
                .accept_campaign(&ctx, request.into_inner())
                .await?,
        ))
    }

    async fn pause_campaign(
        &self,
        request: Request<pb::PauseCampaignRequest>,
    ) -> Result<Response<pb::PauseCampaignResponse>, Status> {
        let ctx = CommandContext::from_grpc(&request)?;
        Ok(Response::new(
            self.campaigns
                .pause_campaign(&ctx, request.into_inner())
                .await?,
        ))
    }

    async fn resume_campaign(
        &self,
        request: Request<pb::ResumeCampaignRequest>,
    ) -> Result<Response<pb::ResumeCampaignResponse>, Status> {
        let ctx = CommandContext::from_grpc(&request)?;
        Ok(Response::new(
            self.campaigns
                .resume_campaign(&ctx, request.into_inner())
                .await?,
        ))
    }

    async fn close_campaign(
        &self,
        request: Request<pb::CloseCampaignRequest>,
    ) -> Result<Response<pb::CloseCampaignResponse>, Status> {
        let ctx = CommandContext::from_grpc(&request)?;
        Ok(Response::new(
            self.campaigns
                .close_campaign(&ctx, request.into_inner())
                .await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;
    use tonic_types::StatusExt;

    use super::*;
    use crate::domain::{CampaignStatus, FieldViolation, Rejection};

    fn code(error: Error) -> Code {
        Status::from(error).code()
    }

    #[test]
    fn invalid_input_is_invalid_argument_with_field_details() {
        let status = Status::from(Error::Invalid(vec![
            FieldViolation::new("name", "must not be empty"),
            FieldViolation::new("budget.currency", "must be an ISO-4217 code"),
        ]));
        assert_eq!(status.code(), Code::InvalidArgument);
        let violations = status
            .get_details_bad_request()
            .map(|b| b.field_violations)
            .unwrap_or_default();
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["name", "budget.currency"]);
    }

    #[test]
    fn every_error_maps_to_its_status_code() {
        assert_eq!(
            code(Error::NotFound {
                what: "campaign",
                id: "x".into()
            }),
            Code::NotFound
        );
        assert_eq!(
            code(Error::AlreadyExists("dup".into())),
            Code::AlreadyExists
        );
        assert_eq!(
            code(Error::Rejected(Rejection::NotAcceptable(
                CampaignStatus::Paused
            ))),
            Code::FailedPrecondition
        );
        assert_eq!(
            code(Error::Rejected(Rejection::Closed)),
            Code::FailedPrecondition
        );
        assert_eq!(code(Error::KeyReused("k".into())), Code::FailedPrecondition);
        assert_eq!(
            code(Error::Unavailable(anyhow::anyhow!("pool timed out"))),
            Code::Unavailable
        );
        assert_eq!(
            code(Error::Internal(anyhow::anyhow!("boom"))),
            Code::Internal
        );
    }

    #[test]
    fn internal_and_unavailable_errors_do_not_leak_their_cause() {
        let secret = "password authentication failed for user \"platform\"";
        for error in [
            Error::Internal(anyhow::anyhow!(secret)),
            Error::Unavailable(anyhow::anyhow!(secret)),
        ] {
            assert!(!Status::from(error).message().contains("password"));
        }
    }

    #[test]
    fn transient_database_errors_are_unavailable() {
        assert_eq!(
            code(Error::from(sqlx::Error::PoolTimedOut)),
            Code::Unavailable
        );
        assert_eq!(code(Error::from(sqlx::Error::RowNotFound)), Code::Internal);
    }
}
