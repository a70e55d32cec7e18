//! The payment service's edges: repository, provider port and sandbox, gRPC server, command
//! topic, and the saga's commission-event feed.

pub mod commands;
pub mod commissions;
pub mod grpc;
pub mod provider;
pub mod repository;
