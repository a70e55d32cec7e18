//! The gRPC door of the commission service, and the one mapping of handler errors to statuses.

use tonic::{Request, Response, Status};

use affiliate_proto::commission::commission_service_server::CommissionService;
use affiliate_proto::commission::{self as pb};
use service_runtime::context::CommandContext;
use service_runtime::errors::{internal, invalid_argument, unavailable};

use crate::app::{Commissions, Error};

#[derive(Debug, Clone)]
pub struct CommissionApi {
    commissions: Commissions,
}

impl CommissionApi {
    pub fn new(commissions: Commissions) -> Self {
        Self { commissions }
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
            Error::Precondition(message) => Status::failed_precondition(message),
            Error::CampaignNotKnown(_) => Status::failed_precondition(error.to_string()),
            Error::KeyReused(_) => Status::failed_precondition(error.to_string()),
            Error::Unavailable(cause) => unavailable(&cause),
            Error::Internal(cause) => internal(&cause),
        }
    }
}

#[tonic::async_trait]
impl CommissionService for CommissionApi {
    async fn calculate_commission(
        &self,
        request: Request<pb::CalculateCommissionRequest>,
    ) -> Result<Response<pb::CalculateCommissionResponse>, Status> {
        let ctx = CommandContext::from_grpc(&request)?;
        Ok(Response::new(
            self.commissions
                .calculate(&ctx, request.into_inner())
                .await?,
        ))
    }

    async fn reserve_commission(
        &self,
        request: Request<pb::ReserveCommissionRequest>,
    ) -> Result<Response<pb::ReserveCommissionResponse>, Status> {
        let ctx = CommandContext::from_grpc(&request)?;
        Ok(Response::new(
            self.commissions.reserve(&ctx, request.into_inner()).await?,
        ))
    }

    async fn release_commission(
        &self,
        request: Request<pb::ReleaseCommissionRequest>,
    ) -> Result<Response<pb::ReleaseCommissionResponse>, Status> {
        let ctx = CommandContext::from_grpc(&request)?;
        Ok(Response::new(
            self.commissions.release(&ctx, request.into_inner()).await?,
        ))
    }

    async fn settle_commission(
        &self,
        request: Request<pb::SettleCommissionRequest>,
    ) -> Result<Response<pb::SettleCommissionResponse>, Status> {
        let ctx = CommandContext::from_grpc(&request)?;
        Ok(Response::new(
            self.commissions.settle(&ctx, request.into_inner()).await?,
        ))
    }

    async fn get_commission(
        &self,
        request: Request<pb::GetCommissionRequest>,
    ) -> Result<Response<pb::GetCommissionResponse>, Status> {
        Ok(Response::new(
            self.commissions
                .get_commission(request.into_inner())
                .await?,
        ))
    }

    async fn list_commissions(
        &self,
        request: Request<pb::ListCommissionsRequest>,
    ) -> Result<Response<pb::ListCommissionsResponse>, Status> {
        Ok(Response::new(
            self.commissions
                .list_commissions(request.into_inner())
                .await?,
        ))
    }

    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        Ok(Response::new(
            self.commissions.get_balance(request.into_inner()).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;
    use crate::domain::FieldViolation;

    fn code(error: Error) -> Code {
        Status::from(error).code()
    }

    #[test]
    fn every_error_maps_to_its_status_code() {
        assert_eq!(
            code(Error::Invalid(vec![FieldViolation::new("amount", "bad")])),
            Code::InvalidArgument
        );
        assert_eq!(
            code(Error::NotFound {
                what: "commission",
                id: "x".into()
            }),
            Code::NotFound
        );
        assert_eq!(
            code(Error::AlreadyExists("dup".into())),
            Code::AlreadyExists
        );
        assert_eq!(
            code(Error::Precondition("released".into())),
            Code::FailedPrecondition
        );
        assert_eq!(
            code(Error::CampaignNotKnown(uuid::Uuid::nil())),
            Code::FailedPrecondition
        );
        assert_eq!(code(Error::KeyReused("k".into())), Code::FailedPrecondition);
        assert_eq!(
            code(Error::Unavailable(anyhow::anyhow!("down"))),
            Code::Unavailable
        );
        assert_eq!(
            code(Error::Internal(anyhow::anyhow!("boom"))),
            Code::Internal
        );
    }
}
