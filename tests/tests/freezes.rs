//! Four freezes under load (SIGSTOP for 20 s, then SIGCONT: the connections stay open and nothing
//! answers on them) against the standalone broker and PostgreSQL of `deploy/local`, on a few hot
//! campaigns: each loses nothing, applies nothing twice, takes no process down and converges
//! within 60 s of the freeze's end with no operator action. What each run does and checks is in
//! the harness, `tests/src/faults.rs`.

use e2e::faults::{Fault, under_load};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_frozen_under_load_converges_after_it_thaws() {
    under_load(Fault::BrokerFrozen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_frozen_under_load_converges_after_it_thaws() {
    under_load(Fault::PostgresFrozen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commission_service_frozen_under_load_converges_after_it_thaws() {
    under_load(Fault::CommissionFrozen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_frozen_under_load_converges_after_it_thaws() {
    under_load(Fault::RelayFrozen).await;
}
