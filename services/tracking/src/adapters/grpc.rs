//! The gRPC door: reads the command context from metadata, calls the handler, and maps handler
//! errors to statuses (the one place that does).

use tonic::{Request, Response, Status};

use affiliate_proto::tracking::tracking_service_server::TrackingService;
use affiliate_proto::tracking::{self as pb};
use service_runtime::context::CommandContext;
use service_runtime::errors::{internal, invalid_argument, unavailable};

use crate::app::{Error, Tracking};

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
impl TrackingService for TrackingApi {
    async fn create_event(
        &self,
        request: Request<pb::CreateEventRequest>,
    ) -> Result<Response<pb::CreateEventResponse>, Status> {
        let ctx = CommandContext::from_grpc(&request)?;
        Ok(Response::new(
            self.tracking
                .create_event(&ctx, request.into_inner())
                .await?,
        ))
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
        let ctx = CommandContext::from_grpc(&request)?;
        Ok(Response::new(
            self.tracking
                .submit_evidence(&ctx, request.into_inner())
                .await?,
        ))
    }

    async fn list_evidence(
        &self,
        request: Request<pb::ListEvidenceRequest>,
    ) -> Result<Response<pb::ListEvidenceResponse>, Status> {
        Ok(Response::new(
            self.tracking.list_evidence(request.into_inner()).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;
    use tonic_types::StatusExt;

    use super::*;
    use crate::domain::FieldViolation;

    fn code(error: Error) -> Code {
        Status::from(error).code()
    }

    #[test]
    fn invalid_input_is_invalid_argument_with_every_field_violation() {
        let status = Status::from(Error::Invalid(vec![
            FieldViolation::new("kind", "must be specified"),
            FieldViolation::new("amount.currency", "must be an ISO-4217 code"),
        ]));
        assert_eq!(status.code(), Code::InvalidArgument);
        let violations = status
            .get_details_bad_request()
            .map(|b| b.field_violations)
            .unwrap_or_default();
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["kind", "amount.currency"]);
    }

    #[test]
    fn every_error_maps_to_its_status_code() {
        assert_eq!(
            code(Error::NotFound {
                what: "tracking event",
                id: "x".into()
            }),
            Code::NotFound
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
    fn not_found_names_what_was_missing() {
        let status = Status::from(Error::NotFound {
            what: "tracking event",
            id: "0193a9e0-0000-7000-8000-000000000001".into(),
        });
        assert_eq!(
            status.message(),
            "tracking event 0193a9e0-0000-7000-8000-000000000001 not found"
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
