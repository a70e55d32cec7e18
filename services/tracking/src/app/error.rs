//! The errors a tracking handler returns. Callers branch on them: the gRPC adapter maps each to
//! a status once (see `adapters::grpc`), the command door sorts them into reject and retry.

use service_runtime::db::is_transient;
use service_runtime::idempotency::IdempotencyError;

use crate::domain::FieldViolation;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is malformed; nothing was written.
    #[error("invalid request: {} field violation(s)", .0.len())]
    Invalid(Vec<FieldViolation>),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// The idempotency key was used before with a different request.
    #[error("idempotency key `{0}` was already used for a different request")]
    KeyReused(String),
    /// Infrastructure trouble worth retrying (database down, pool exhausted).
    #[error("unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    #[error("internal: {0:#}")]
    Internal(anyhow::Error),
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        if is_transient(&error) {
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
