//! Building gRPC statuses: field violations as `google.rpc.BadRequest` details, and internal
//! errors that log their whole cause chain but tell the caller only a reference.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use uuid::Uuid;

/// INVALID_ARGUMENT with one `BadRequest.FieldViolation` per (field, description).
pub fn invalid_argument<I, F, D>(message: &str, violations: I) -> Status
where
    I: IntoIterator<Item = (F, D)>,
    F: Into<String>,
    D: Into<String>,
{
    let mut details = ErrorDetails::new();
    for (field, description) in violations {
        details.add_bad_request_violation(field, description);
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// INTERNAL with a generic message; the full cause chain goes to the log under a reference id.
pub fn internal(error: &anyhow::Error) -> Status {
    let reference = Uuid::new_v4();
    tracing::error!(error = format!("{error:#}"), %reference, "internal error");
    Status::internal(format!("internal error (reference {reference})"))
}

/// UNAVAILABLE for infrastructure that is down or overloaded; the cause goes to the log.
pub fn unavailable(error: &anyhow::Error) -> Status {
    tracing::warn!(error = format!("{error:#}"), "dependency unavailable");
    Status::unavailable("a dependency is unavailable; retry with backoff")
}

/// The canonical name of a status code, as in `google.rpc.Code` (e.g. `NOT_FOUND`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_every_field_violation() {
        let status = invalid_argument(
            "bad",
            [
                ("name", "must not be empty"),
                ("budget", "must be positive"),
            ],
        );
        assert_eq!(status.code(), Code::InvalidArgument);
        let fields: Vec<String> = status
            .get_details_bad_request()
            .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
            .unwrap_or_default();
        assert_eq!(fields, ["name", "budget"]);
    }

    #[test]
    fn code_names_are_the_canonical_ones() {
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
        assert_eq!(code_name(Code::InvalidArgument), "INVALID_ARGUMENT");
    }

    #[test]
    fn internal_hides_the_cause() {
        let error = anyhow::anyhow!("password authentication failed for user platform");
        let status = internal(&error);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("password"));
    }
}
