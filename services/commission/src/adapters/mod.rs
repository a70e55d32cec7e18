//! The commission service's edges: repository, gRPC server, command topic, campaign-event feed.

pub mod campaigns;
pub mod commands;
pub mod grpc;
pub mod ledger;
pub mod repository;
