//! The platform on a Pulsar cluster (`deploy/local/pulsar-cluster.sh`: ZooKeeper, three bookies,
//! two brokers, a proxy), reached through its proxy: the broker that owns the platform's topics
//! is SIGKILLed while purchases flow and stays dead. Its topics move to the other broker,
//! producers and consumers follow through the proxy, every purchase gets exactly one commission,
//! and the run prints how long the platform stalled. The harness is `tests/src/faults.rs`.

use e2e::faults::{Fault, under_load};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_owning_the_topics_killed_under_load_loses_nothing() {
    let url = std::env::var("TEST_CLUSTER_PULSAR_URL");
    let admin_url = std::env::var("TEST_CLUSTER_PULSAR_ADMIN_URL");
    let (Ok(url), Ok(admin_url)) = (url, admin_url) else {
        panic!(
            "this test runs against the local Pulsar cluster: start it with \
             `deploy/local/pulsar-cluster.sh up` and set TEST_CLUSTER_PULSAR_URL=pulsar://127.0.0.1:6670 \
             and TEST_CLUSTER_PULSAR_ADMIN_URL=http://127.0.0.1:8100 (tests/run.sh does both)"
        );
    };
    e2e::use_broker(e2e::Broker {
        url,
        admin_url,
        ..e2e::Broker::default()
    });
    under_load(Fault::OwnerBrokerKilled).await;
}
