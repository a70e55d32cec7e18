//! The tracking service's edges: the PostgreSQL repository, the gRPC server and the command topic.

pub mod campaigns;
pub mod commands;
pub mod conversions;
pub mod grpc;
pub mod links;
pub mod repository;
