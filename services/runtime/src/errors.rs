//! The errors every service's handlers return, and their one mapping to gRPC statuses: field
//! violations as `google.rpc.BadRequest` details, internal errors that log their whole cause
//! chain but tell the caller only a reference. Money that would not fit 64-bit minor units is
//! `OUT_OF_RANGE`, whether Rust's checked arithmetic or PostgreSQL's (SQLSTATE 22003) found it.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use uuid::Uuid;

use crate::db::{is_out_of_range, is_transient, is_transient_cause};
use crate::idempotency::IdempotencyError;
use crate::validation::FieldViolation;

/// What a handler can fail with. Callers branch on it: the gRPC door maps it to a status (below),
/// the command door sorts it into reject or retry (`messaging::door`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; nothing was written.
    #[error("invalid request: {} field violation(s)", .0.len())]
    Invalid(Vec<FieldViolation>),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    AlreadyExists(String),
    /// An amount, or a balance, total or budget the request would make, does not fit 64-bit
    /// minor units; nothing was written. The violations name the request fields it comes from
    /// (none when only the database noticed and the use case did not say which:
    /// [`Error::in_field`]). Never worth retrying: the command door rejects it.
    #[error("out of range: {}", describe(.0))]
    OutOfRange(Vec<FieldViolation>),
    /// Valid, but not allowed in the current state of what it acts on.
    #[error("{0}")]
    Precondition(String),
    /// Valid, but refused for a reason a client acts on (`reason`, an UPPER_SNAKE code, e.g.
    /// `UNKNOWN_CLICK`): FAILED_PRECONDITION carrying `google.rpc.ErrorInfo` with the reason
    /// (the BFF answers 422 with it). Nothing was written.
    #[error("{message}")]
    Refused {
        reason: &'static str,
        message: String,
    },
    /// Depends on data that has not arrived yet (e.g. an event still in flight): callers get
    /// FAILED_PRECONDITION, consumers retry later instead of rejecting.
    #[error("{0}")]
    NotYet(String),
    /// The caller's credential is missing, unknown, revoked or wrong; nothing was written.
    #[error("{0}")]
    Unauthenticated(String),
    /// The idempotency key was used before with a different request.
    #[error("idempotency key `{0}` was already used for a different request")]
    KeyReused(String),
    /// Infrastructure trouble worth retrying (database down, pool exhausted).
    #[error("unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    #[error("internal: {0:#}")]
    Internal(anyhow::Error),
}

impl Error {
    pub fn not_found(what: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            what,
            id: id.to_string(),
        }
    }

    /// [`Error::OutOfRange`] for the request field `field`.
    pub fn out_of_range(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::OutOfRange(vec![FieldViolation::new(field, description)])
    }

    /// Names the request field behind an out-of-range error that does not name one yet (a
    /// numeric overflow PostgreSQL found in a statement's `+` or `sum()`); any other error is
    /// returned as it is.
    pub fn in_field(self, field: impl Into<String>, description: impl Into<String>) -> Self {
        match self {
            Self::OutOfRange(violations) if violations.is_empty() => {
                Self::out_of_range(field, description)
            }
            other => other,
        }
    }
}

/// The field violations of an error message, `field: description; ...`.
fn describe(violations: &[FieldViolation]) -> String {
    if violations.is_empty() {
        return "a value does not fit its type (money: 64-bit minor units)".to_owned();
    }
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The one mapping of database errors: infrastructure trouble is `Unavailable`, a numeric value
/// out of range (an overflowing sum) is `OutOfRange`, anything else `Internal`.
impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        if is_out_of_range(&error) {
            Self::OutOfRange(Vec::new())
        } else if is_transient(&error) {
            Self::Unavailable(error.into())
        } else {
            Self::Internal(error.into())
        }
    }
}

impl From<IdempotencyError> for Error {
    fn from(error: IdempotencyError) -> Self {
        match error {
            IdempotencyError::KeyReused(key) => Self::KeyReused(key),
            IdempotencyError::Database(e) => e.into(),
        }
    }
}

impl From<Vec<FieldViolation>> for Error {
    fn from(violations: Vec<FieldViolation>) -> Self {
        Self::Invalid(violations)
    }
}

impl From<FieldViolation> for Error {
    fn from(violation: FieldViolation) -> Self {
        Self::Invalid(vec![violation])
    }
}

/// The one mapping of handler errors to gRPC statuses.
impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::Invalid(violations) => invalid_argument(
                "invalid request",
                violations.into_iter().map(|v| (v.field, v.description)),
            ),
            Error::OutOfRange(ref violations) => with_violations(
                Code::OutOfRange,
                &error.to_string(),
                violations
                    .iter()
                    .map(|v| (v.field.clone(), v.description.clone())),
            ),
            Error::NotFound { .. } => Status::not_found(error.to_string()),
            Error::AlreadyExists(message) => Status::already_exists(message),
            Error::Precondition(message) | Error::NotYet(message) => {
                Status::failed_precondition(message)
            }
            Error::Refused { reason, message } => {
                let mut details = ErrorDetails::new();
                details.set_error_info(reason, ERROR_DOMAIN, std::collections::HashMap::new());
                Status::with_error_details(Code::FailedPrecondition, message, details)
            }
            Error::KeyReused(_) => Status::failed_precondition(error.to_string()),
            Error::Unauthenticated(message) => Status::unauthenticated(message),
            Error::Unavailable(cause) => unavailable(&cause),
            // A transient database error under some context (e.g. "append outbox rows: error
            // communicating with database") is still worth a retry.
            Error::Internal(cause) if is_transient_cause(&cause) => unavailable(&cause),
            Error::Internal(cause) => internal(&cause),
        }
    }
}

/// The `domain` of the platform's `google.rpc.ErrorInfo` details.
pub const ERROR_DOMAIN: &str = "affiliate-platform";

/// The `google.rpc.ErrorInfo` reason of a status, if it carries one.
pub fn error_reason(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

/// INVALID_ARGUMENT with one `BadRequest.FieldViolation` per (field, description).
pub fn invalid_argument<I, F, D>(message: &str, violations: I) -> Status
where
    I: IntoIterator<Item = (F, D)>,
    F: Into<String>,
    D: Into<String>,
{
    with_violations(Code::InvalidArgument, message, violations)
}

/// `code` with one `BadRequest.FieldViolation` per (field, description).
fn with_violations<I, F, D>(code: Code, message: &str, violations: I) -> Status
where
    I: IntoIterator<Item = (F, D)>,
    F: Into<String>,
    D: Into<String>,
{
    let mut details = ErrorDetails::new();
    for (field, description) in violations {
        details.add_bad_request_violation(field, description);
    }
    Status::with_error_details(code, message, details)
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

    fn code(error: Error) -> Code {
        Status::from(error).code()
    }

    #[test]
    fn a_broken_connection_under_context_is_unavailable_not_internal() {
        use anyhow::Context as _;
        // As seen from outside during a PostgreSQL crash: the outbox append lost its connection.
        let broken = std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "expected to read 5 bytes, got 0 bytes at EOF",
        );
        let cause = Err::<(), _>(sqlx::Error::Io(broken))
            .context("append outbox rows")
            .unwrap_err();
        assert_eq!(code(Error::Internal(cause)), Code::Unavailable);
        assert_eq!(
            code(Error::Internal(anyhow::anyhow!("a bug"))),
            Code::Internal
        );
    }

    #[test]
    fn every_error_maps_to_its_status_code() {
        assert_eq!(
            code(Error::Invalid(vec![FieldViolation::new("name", "bad")])),
            Code::InvalidArgument
        );
        assert_eq!(code(Error::not_found("campaign", "x")), Code::NotFound);
        assert_eq!(
            code(Error::AlreadyExists("dup".into())),
            Code::AlreadyExists
        );
        assert_eq!(
            code(Error::Precondition("closed".into())),
            Code::FailedPrecondition
        );
        assert_eq!(
            code(Error::NotYet("campaign not known yet".into())),
            Code::FailedPrecondition
        );
        assert_eq!(code(Error::KeyReused("k".into())), Code::FailedPrecondition);
        assert_eq!(
            code(Error::out_of_range("amount.amount_minor", "too large")),
            Code::OutOfRange
        );
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
    fn invalid_requests_carry_every_field_violation_as_details() {
        let status = Status::from(Error::Invalid(vec![
            FieldViolation::new("name", "must not be empty"),
            FieldViolation::new("budget.currency", "must be an ISO-4217 code"),
        ]));
        let fields: Vec<String> = status
            .get_details_bad_request()
            .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
            .unwrap_or_default();
        assert_eq!(fields, ["name", "budget.currency"]);
    }

    #[test]
    fn money_out_of_range_is_out_of_range_with_its_field_violation() {
        let status = Status::from(Error::out_of_range(
            "purchase_amount.amount_minor",
            "would take the balance past the largest amount",
        ));
        assert_eq!(status.code(), Code::OutOfRange);
        assert!(status.message().contains("purchase_amount.amount_minor"));
        let fields: Vec<String> = status
            .get_details_bad_request()
            .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
            .unwrap_or_default();
        assert_eq!(fields, ["purchase_amount.amount_minor"]);
    }

    /// A PostgreSQL error with only a SQLSTATE, as the driver reports one.
    #[derive(Debug)]
    struct Sqlstate(&'static str);

    impl std::fmt::Display for Sqlstate {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for Sqlstate {}

    impl sqlx::error::DatabaseError for Sqlstate {
        fn message(&self) -> &str {
            "bigint out of range"
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn database_error(sqlstate: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(Sqlstate(sqlstate)))
    }

    #[test]
    fn a_numeric_overflow_in_sql_is_out_of_range_and_takes_the_use_case_s_field() {
        let error = Error::from(database_error("22003"));
        assert!(matches!(&error, Error::OutOfRange(v) if v.is_empty()));
        assert_eq!(
            Status::from(Error::from(database_error("22003"))).code(),
            Code::OutOfRange
        );
        let named = error.in_field("amount.amount_minor", "too large");
        assert!(
            matches!(&named, Error::OutOfRange(v) if v.len() == 1 && v[0].field == "amount.amount_minor")
        );
        // Naming a field leaves other errors alone, and an already named one as it was.
        assert!(matches!(
            Error::from(database_error("23505")).in_field("amount", "x"),
            Error::Internal(_)
        ));
        assert!(matches!(
            named.in_field("other", "y"),
            Error::OutOfRange(v) if v[0].field == "amount.amount_minor"
        ));
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
