//! The errors a payment handler returns; mapped to gRPC statuses once in `adapters::grpc`.

use service_runtime::db::is_transient;
use service_runtime::idempotency::IdempotencyError;

use crate::domain::FieldViolation;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request: {} field violation(s)", .0.len())]
    Invalid(Vec<FieldViolation>),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("idempotency key `{0}` was already used for a different request")]
    KeyReused(String),
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
