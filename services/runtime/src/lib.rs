//! What every service process shares: typed configuration pieces, JSON logs, the PostgreSQL pool
//! and migrations, the outbox writer, idempotency records, the gRPC server (always with health and
//! reflection), request context from gRPC metadata, rich error statuses, the pruning of the dedup
//! tables, and the shutdown signal.

pub mod app;
pub mod backoff;
pub mod bounded;
pub mod config;
pub mod context;
pub mod db;
pub mod errors;
pub mod group_commit;
pub mod grpc;
pub mod grpc_trace;
pub mod idempotency;
pub mod money;
pub mod outbox;
pub mod paging;
pub mod retention;
pub mod shed;
pub mod shutdown;
pub mod status;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod unit_of_work;
pub mod validation;
