//! The campaign service's edges: the PostgreSQL repository and the gRPC server.

pub mod grpc;
pub mod repository;
