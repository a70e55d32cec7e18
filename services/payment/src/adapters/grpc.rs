//! The gRPC door of the payment service, and the one mapping of handler errors to statuses.

use tonic::{Request, Response, Status};

use affiliate_proto::payment::payment_service_server::PaymentService;
use affiliate_proto::payment::{self as pb};
use service_runtime::context::CommandContext;
use service_runtime::errors::{internal, invalid_argument, unavailable};

use crate::adapters::provider::PaymentProvider;
use crate::app::{Error, Payouts};

pub struct PaymentApi<P> {
    payouts: Payouts<P>,
}

impl<P> PaymentApi<P> {
    pub fn new(payouts: Payouts<P>) -> Self {
        Self { payouts }
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
            Error::KeyReused(_) => Status::failed_precondition(error.to_string()),
            Error::Unavailable(cause) => unavailable(&cause),
            Error::Internal(cause) => internal(&cause),
        }
    }
}

#[tonic::async_trait]
impl<P: PaymentProvider> PaymentService for PaymentApi<P> {
    async fn request_payout(
        &self,
        request: Request<pb::RequestPayoutRequest>,
    ) -> Result<Response<pb::RequestPayoutResponse>, Status> {
        let ctx = CommandContext::from_grpc(&request)?;
        Ok(Response::new(
            self.payouts
                .request_payout(&ctx, request.into_inner())
                .await?,
        ))
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

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;
    use crate::domain::FieldViolation;

    #[test]
    fn every_error_maps_to_its_status_code() {
        let code = |e: Error| Status::from(e).code();
        assert_eq!(
            code(Error::Invalid(vec![FieldViolation::new("amount", "bad")])),
            Code::InvalidArgument
        );
        assert_eq!(
            code(Error::NotFound {
                what: "payout",
                id: "x".into()
            }),
            Code::NotFound
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
