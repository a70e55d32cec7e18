//! The gRPC door of the commission service: reads the command context from metadata and calls the
//! handlers; their errors become statuses through `service_runtime::errors` (the one mapping).

use tonic::{Request, Response, Status};

use affiliate_proto::commission::commission_service_server::CommissionService;
use affiliate_proto::commission::{self as pb};
use service_runtime::grpc::command;

use crate::app::Commissions;

#[derive(Debug, Clone)]
pub struct CommissionApi {
    commissions: Commissions,
}

impl CommissionApi {
    pub fn new(commissions: Commissions) -> Self {
        Self { commissions }
    }
}

#[tonic::async_trait]
impl CommissionService for CommissionApi {
    async fn calculate_commission(
        &self,
        request: Request<pb::CalculateCommissionRequest>,
    ) -> Result<Response<pb::CalculateCommissionResponse>, Status> {
        command(request, async |ctx, r| {
            self.commissions.calculate(ctx, r).await
        })
        .await
    }

    async fn reserve_commission(
        &self,
        request: Request<pb::ReserveCommissionRequest>,
    ) -> Result<Response<pb::ReserveCommissionResponse>, Status> {
        command(request, async |ctx, r| {
            self.commissions.reserve(ctx, r).await
        })
        .await
    }

    async fn release_commission(
        &self,
        request: Request<pb::ReleaseCommissionRequest>,
    ) -> Result<Response<pb::ReleaseCommissionResponse>, Status> {
        command(request, async |ctx, r| {
            self.commissions.release(ctx, r).await
        })
        .await
    }

    async fn settle_commission(
        &self,
        request: Request<pb::SettleCommissionRequest>,
    ) -> Result<Response<pb::SettleCommissionResponse>, Status> {
        command(request, async |ctx, r| {
            self.commissions.settle(ctx, r).await
        })
        .await
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

    async fn approve_commissions(
        &self,
        request: Request<pb::ApproveCommissionsRequest>,
    ) -> Result<Response<pb::ApproveCommissionsResponse>, Status> {
        command(request, async |ctx, r| {
            self.commissions.approve_commissions(ctx, r).await
        })
        .await
    }

    async fn decline_commissions(
        &self,
        request: Request<pb::DeclineCommissionsRequest>,
    ) -> Result<Response<pb::DeclineCommissionsResponse>, Status> {
        command(request, async |ctx, r| {
            self.commissions.decline_commissions(ctx, r).await
        })
        .await
    }

    async fn reverse_commission(
        &self,
        request: Request<pb::ReverseCommissionRequest>,
    ) -> Result<Response<pb::ReverseCommissionResponse>, Status> {
        command(request, async |ctx, r| {
            self.commissions.reverse(ctx, r).await
        })
        .await
    }

    async fn get_statement(
        &self,
        request: Request<pb::GetStatementRequest>,
    ) -> Result<Response<pb::GetStatementResponse>, Status> {
        Ok(Response::new(
            self.commissions.get_statement(request.into_inner()).await?,
        ))
    }

    async fn check_ledger(
        &self,
        _request: Request<pb::CheckLedgerRequest>,
    ) -> Result<Response<pb::CheckLedgerResponse>, Status> {
        Ok(Response::new(self.commissions.check_ledger().await?))
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
