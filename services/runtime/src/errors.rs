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
    fn internal_hides_the_cause() {
        let error = anyhow::anyhow!("password authentication failed for user platform");
        let status = internal(&error);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("password"));
    }
}
