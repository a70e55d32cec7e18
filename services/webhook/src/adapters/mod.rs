//! The webhook service's adapters: SQL (`repository`), the event feeds, the HTTP sender and the
//! gRPC door.

pub mod deliveries;
pub mod endpoints;
pub mod feed;
pub mod grpc;
pub mod repository;
pub mod sender;
