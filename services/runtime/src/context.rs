//! The context a command runs with, whichever door it came through: its idempotency key, the
//! workflow's correlation id, what caused it, and the W3C trace context.

use chrono::{DateTime, Utc};
use tonic::Status;
use uuid::Uuid;

use crate::errors::invalid_argument;

/// gRPC metadata key carrying the idempotency key of a mutating call.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// gRPC metadata key carrying the correlation id of the workflow.
pub const CORRELATION_ID: &str = "x-correlation-id";
/// The longest idempotency key or correlation id accepted.
pub const MAX_KEY_LEN: usize = 200;

/// Per-command context shared by the gRPC and command-topic doors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandContext {
    /// The gRPC `idempotency-key` metadata, or the command message's id.
    pub idempotency_key: Option<String>,
    /// Given by the caller or generated here.
    pub correlation_id: String,
    /// The message or request that caused this command, if known.
    pub causation_id: Option<String>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    /// When the command was issued: now for a gRPC call, the envelope's `occurred_at` for a
    /// command message. A handler whose rule reads a copy fed by events may wait for the copy
    /// while the command is young.
    pub issued_at: Option<DateTime<Utc>>,
}

impl CommandContext {
    /// A context with a fresh correlation id and no key.
    pub fn new() -> Self {
        Self {
            idempotency_key: None,
            correlation_id: Uuid::new_v4().to_string(),
            causation_id: None,
            traceparent: None,
            tracestate: None,
            issued_at: None,
        }
    }

    /// Reads the context from a gRPC request's metadata; malformed values are INVALID_ARGUMENT.
    pub fn from_grpc<T>(request: &tonic::Request<T>) -> Result<Self, Status> {
        let metadata = request.metadata();
        let text = |key: &'static str| -> Result<Option<String>, Status> {
            match metadata.get(key) {
                None => Ok(None),
                Some(value) => {
                    let value = value.to_str().ok().map(str::trim).filter(|v| {
                        !v.is_empty()
                            && v.len() <= MAX_KEY_LEN
                            && v.bytes().all(|b| b.is_ascii_graphic())
                    });
                    match value {
                        Some(v) => Ok(Some(v.to_owned())),
                        None => Err(invalid_argument(
                            "invalid request metadata",
                            [(
                                key.to_owned(),
                                format!(
                                    "must be 1 to {MAX_KEY_LEN} printable ASCII characters without spaces"
                                ),
                            )],
                        )),
                    }
                }
            }
        };
        let idempotency_key = text(IDEMPOTENCY_KEY)?;
        let correlation_id = text(CORRELATION_ID)?.unwrap_or_else(|| Uuid::new_v4().to_string());
        let header = |key: &str| {
            metadata
                .get(key)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Ok(Self {
            idempotency_key,
            correlation_id,
            causation_id: None,
            traceparent: header("traceparent"),
            tracestate: header("tracestate"),
            issued_at: Some(Utc::now()),
        })
    }
}

impl Default for CommandContext {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pairs: &[(&'static str, &str)]) -> tonic::Request<()> {
        let mut request = tonic::Request::new(());
        for (k, v) in pairs {
            if let Ok(v) = v.parse() {
                request.metadata_mut().insert(*k, v);
            }
        }
        request
    }

    #[test]
    fn reads_key_and_correlation_id_from_metadata() {
        let ctx = CommandContext::from_grpc(&request(&[
            ("idempotency-key", "abc-123"),
            ("x-correlation-id", "corr-1"),
        ]));
        let ctx = ctx.ok();
        assert_eq!(
            ctx.as_ref().and_then(|c| c.idempotency_key.as_deref()),
            Some("abc-123")
        );
        assert_eq!(
            ctx.as_ref().map(|c| c.correlation_id.as_str()),
            Some("corr-1")
        );
    }

    #[test]
    fn generates_a_correlation_id_when_absent() {
        let ctx = CommandContext::from_grpc(&request(&[])).ok();
        let id = ctx.map(|c| c.correlation_id).unwrap_or_default();
        assert!(Uuid::parse_str(&id).is_ok(), "not a uuid: {id}");
    }

    #[test]
    fn rejects_an_overlong_idempotency_key() {
        let long = "k".repeat(MAX_KEY_LEN + 1);
        let err = CommandContext::from_grpc(&request(&[("idempotency-key", &long)]));
        assert_eq!(
            err.err().map(|s| s.code()),
            Some(tonic::Code::InvalidArgument)
        );
    }
}
