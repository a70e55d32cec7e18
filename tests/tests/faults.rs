//! Four faults under load against the standalone broker and PostgreSQL of `deploy/local`; what
//! each run does and checks is in the harness, `tests/src/faults.rs`.

use e2e::faults::{Fault, under_load};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_under_load_loses_nothing() {
    under_load(Fault::BrokerKilled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_crash_under_load_loses_nothing() {
    under_load(Fault::PostgresCrashed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commission_service_killed_under_load_loses_nothing() {
    under_load(Fault::CommissionKilled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_under_load_loses_nothing() {
    under_load(Fault::RelayKilled).await;
}
