//! The analytics service's edges: the repository, the topic projections, the gRPC server.

pub mod feed;
pub mod grpc;
pub mod repository;
