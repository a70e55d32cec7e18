//! The notification service's edges: repository, the event feeds, the live streams, gRPC server.

pub mod events;
pub mod grpc;
pub mod live;
pub mod repository;
