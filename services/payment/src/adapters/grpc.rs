//! The gRPC door of the payment service: reads the command context from metadata and calls the
//! handlers; their errors become statuses through `service_runtime::errors` (the one mapping).

use tonic::{Request, Response, Status};

use affiliate_proto::payment::payment_service_server::PaymentService;
use affiliate_proto::payment::{self as pb};
use service_runtime::grpc::command;

use crate::adapters::provider::PaymentProvider;
use crate::app::Payouts;

pub struct PaymentApi<P> {
    payouts: Payouts<P>,
}

impl<P> PaymentApi<P> {
    pub fn new(payouts: Payouts<P>) -> Self {
        Self { payouts }
    }
}

#[tonic::async_trait]
impl<P: PaymentProvider> PaymentService for PaymentApi<P> {
    async fn request_payout(
        &self,
        request: Request<pb::RequestPayoutRequest>,
    ) -> Result<Response<pb::RequestPayoutResponse>, Status> {
        command(request, async |ctx, r| {
            self.payouts.request_payout(ctx, r).await
        })
        .await
    }

    async fn get_payout(
        &self,
        request: Request<pb::GetPayoutRequest>,
    ) -> Result<Response<pb::GetPayoutResponse>, Status> {
        Ok(Response::new(
            self.payouts.get_payout(request.into_inner()).await?,
        ))
    }

    async fn list_payouts(
        &self,
        request: Request<pb::ListPayoutsRequest>,
    ) -> Result<Response<pb::ListPayoutsResponse>, Status> {
        Ok(Response::new(
            self.payouts.list_payouts(request.into_inner()).await?,
        ))
    }
}
