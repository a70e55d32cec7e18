//! The commission handlers fail with the platform's errors (`service_runtime::errors::Error`,
//! mapped to gRPC once there). A calculation for a campaign whose created event has not arrived
//! is `NotYet`: retried by the command door, never rejected.

pub use service_runtime::errors::Error;
