//! The tracking handlers fail with the platform's errors (`service_runtime::errors::Error`,
//! mapped to gRPC once there).

pub use service_runtime::errors::Error;
