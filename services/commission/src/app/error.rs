//! The errors a commission handler returns; the gRPC adapter maps each to a status once, the
//! command door sorts them into reject and retry.

use service_runtime::db::is_transient;
use service_runtime::idempotency::IdempotencyError;
use uuid::Uuid;

use crate::domain::FieldViolation;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request: {} field violation(s)", .0.len())]
    Invalid(Vec<FieldViolation>),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    AlreadyExists(String),
    /// Valid, but not allowed in the current state (e.g. settling a released reservation).
    #[error("{0}")]
    Precondition(String),
    /// The campaign's created event has not arrived yet: retry later, do not reject.
    #[error("campaign {0} is not known yet; retry later")]
    CampaignNotKnown(Uuid),
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
