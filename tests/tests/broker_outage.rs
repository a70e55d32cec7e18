//! The broker goes away for 15 s under load and comes back (`deploy/local/pulsar.sh down`, then
//! `up`, on its kept data): no process exits, the gRPC API keeps answering and its health stays
//! SERVING, the command door's own health name and `StatusService` show the outage and its end,
//! and every purchase acknowledged over gRPC, before, during and after, gets exactly one
//! commission.
//!
//! This test stops and starts the shared broker, so it needs the one `deploy/local/pulsar.sh`
//! runs (as `tests/run.sh` does).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tonic_health::pb::health_check_response::ServingStatus;
use uuid::Uuid;

use affiliate_proto::campaign::{AcceptCampaignRequest, CreateCampaignRequest, campaign_command};
use affiliate_proto::common::status_service_client::StatusServiceClient;
use affiliate_proto::common::{GetStatusRequest, Money};
use affiliate_proto::tracking::tracking_service_client::TrackingServiceClient;
use affiliate_proto::tracking::{CreateEventRequest, TrackingEventKind};
use e2e::platform::Platform;
use e2e::workflow::{ADVERTISER, CREATOR_1, Door, Driver};
use e2e::{eventually, health};

const OUTAGE: Duration = Duration::from_secs(15);
const COMMAND_DOOR: &str = "affiliate.common.v1.CommandDoor";

/// Runs `deploy/local/pulsar.sh <command>`, failing with what to do if it cannot.
fn pulsar_sh(command: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/local/pulsar.sh");
    let output = Command::new(script)
        .arg(command)
        .output()
        .expect("run deploy/local/pulsar.sh");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "pulsar.sh {command} failed: {log}");
    if command == "down" {
        assert!(
            !log.contains("not running"),
            "this test stops and starts the broker that deploy/local/pulsar.sh runs, and found none: \
             start it with `deploy/local/pulsar.sh up` (tests/run.sh does): {log}"
        );
    }
    println!(
        "pulsar.sh {command}: {}",
        log.lines().last().unwrap_or_default()
    );
}

/// What the watcher saw of one service's health during the run.
#[derive(Debug, Default)]
struct Seen {
    overall_not_serving: u32,
    /// `StatusService` said the broker was unreachable (with a reason).
    status_broker_down: Option<String>,
    door_not_serving: u32,
    door_serving_after_outage: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_under_load_loses_nothing_and_takes_no_process_down() {
    let mut platform = Platform::start("broker_outage", "hybrid").await;
    let mut driver = Driver::new(&platform, Door::Grpc).await;
    let campaign = driver
        .create_campaign(CreateCampaignRequest {
            advertiser_id: ADVERTISER.into(),
            name: "Outage".into(),
            description: String::new(),
            commission_rate_bps: 1000,
            budget: Some(Money {
                amount_minor: 1_000_000_000,
                currency: "EUR".into(),
            }),
            tracking: None,
            // the balance is read as available below
            hold_period: e2e::NO_HOLD,
        })
        .await;
    driver
        .campaign_command(campaign_command::Command::AcceptCampaign(
            AcceptCampaignRequest {
                campaign_id: campaign.clone(),
                creator_id: CREATOR_1.into(),
                accepted_terms: true,
            },
        ))
        .await;

    // Health watchers: the whole server (the API) of every service, and the command door of
    // the commission service.
    let outage_over = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    // The load stops 5 s after the broker is back; the health watcher only once it has seen the
    // command door SERVING again (one flag for both stopped the watcher before that).
    let stop_load = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let watcher = {
        let urls: Vec<String> = [
            "campaign",
            "tracking",
            "commission",
            "payment",
            "notification",
        ]
        .iter()
        .map(|s| platform.url(s))
        .collect();
        // The platform is up once every service's overall health says so (a process listens
        // before its first dependency check has set it): only then does the watch begin.
        for url in &urls {
            eventually(
                Duration::from_secs(30),
                "overall health SERVING",
                || async { (health(url, "").await == Some(ServingStatus::Serving)).then_some(()) },
            )
            .await;
        }
        let commission = platform.url("commission");
        let (stop, seen, outage_over) = (stop.clone(), seen.clone(), outage_over.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                for url in &urls {
                    if health(url, "").await != Some(ServingStatus::Serving) {
                        seen.lock().await.overall_not_serving += 1;
                        println!("{url}: overall health not SERVING");
                    }
                }
                if let Ok(mut status) = StatusServiceClient::connect(commission.clone()).await
                    && let Ok(status) = status.get_status(GetStatusRequest {}).await
                    && let Some(pulsar) = status.into_inner().pulsar
                    && !pulsar.reachable
                {
                    seen.lock()
                        .await
                        .status_broker_down
                        .get_or_insert(pulsar.detail);
                }
                let door = health(&commission, COMMAND_DOOR).await;
                let mut s = seen.lock().await;
                if door == Some(ServingStatus::Serving) {
                    if outage_over.load(Ordering::SeqCst) && s.door_not_serving > 0 {
                        s.door_serving_after_outage = true;
                    }
                } else {
                    s.door_not_serving += 1;
                }
                drop(s);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    // Load: purchases over gRPC at a steady pace, each retried with its idempotency key until
    // it is acknowledged.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let load = {
        let (url, stop_load, acknowledged, campaign) = (
            platform.url("tracking"),
            stop_load.clone(),
            acknowledged.clone(),
            campaign.clone(),
        );
        tokio::spawn(async move {
            let mut client = TrackingServiceClient::connect(url).await.unwrap();
            let mut failures = 0u32;
            while !stop_load.load(Ordering::SeqCst) {
                let key = Uuid::now_v7().to_string();
                let request = CreateEventRequest {
                    campaign_id: campaign.clone(),
                    creator_id: CREATOR_1.into(),
                    kind: TrackingEventKind::Purchase.into(),
                    amount: Some(Money {
                        amount_minor: 1000,
                        currency: "EUR".into(),
                    }),
                    product_id: String::new(),
                    occurred_at: None,
                };
                loop {
                    let call = e2e::with_key(request.clone(), &key);
                    match client.create_event(call).await {
                        Ok(response) => {
                            let id = response.into_inner().event.unwrap().id;
                            acknowledged.lock().await.push(id);
                            break;
                        }
                        Err(status) => {
                            failures += 1;
                            println!(
                                "purchase answered {:?}: {}",
                                status.code(),
                                status.message()
                            );
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            failures
        })
    };

    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = acknowledged.lock().await.len();
    pulsar_sh("down");
    let down_at = Instant::now();
    tokio::time::sleep(OUTAGE).await;
    let during = acknowledged.lock().await.len() - before;
    pulsar_sh("up");
    println!("broker back after {:?}", down_at.elapsed());
    outage_over.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop_load.store(true, Ordering::SeqCst);
    let failed_calls = load.await.unwrap();
    let purchases = acknowledged.lock().await.clone();
    println!(
        "purchases acknowledged: {} ({before} before the outage, {during} during it); calls that failed and were retried: {failed_calls}",
        purchases.len()
    );
    assert!(
        during > 0,
        "the API took purchases while the broker was away"
    );
    assert_eq!(
        failed_calls, 0,
        "every purchase call was answered OK, outage or not"
    );

    // Every acknowledged purchase gets exactly one commission, with no operator action.
    let commission = platform.databases["commission"].pool.clone();
    let ids: Vec<Uuid> = purchases
        .iter()
        .map(|p| Uuid::parse_str(p).unwrap())
        .collect();
    let converge = Instant::now();
    eventually(
        Duration::from_secs(120),
        "every purchase has its commission",
        || {
            let (commission, ids) = (commission.clone(), ids.clone());
            async move {
                let n: i64 = sqlx::query_scalar(
                    "select count(*) from commissions where tracking_event_id = any($1)",
                )
                .bind(&ids)
                .fetch_one(&commission)
                .await
                .unwrap();
                (n as usize == ids.len()).then_some(())
            }
        },
    )
    .await;
    println!(
        "converged {:?} after the broker came back",
        converge.elapsed() + Duration::from_secs(5)
    );
    let (total, distinct): (i64, i64) =
        sqlx::query_as("select count(*), count(distinct tracking_event_id) from commissions")
            .fetch_one(&commission)
            .await
            .unwrap();
    assert_eq!(
        (total, distinct),
        (ids.len() as i64, ids.len() as i64),
        "one commission each"
    );
    let (available, _, _) = driver.balance(CREATOR_1, "EUR").await;
    assert_eq!(
        available,
        100 * ids.len() as i64,
        "the balance holds each commission once"
    );

    // The command door's health and the status show the outage and its end.
    eventually(
        Duration::from_secs(60),
        "the command door SERVING again",
        || {
            let seen = seen.clone();
            async move { seen.lock().await.door_serving_after_outage.then_some(()) }
        },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    watcher.await.unwrap();
    let seen = seen.lock().await;
    println!("health seen: {seen:?}");
    assert_eq!(
        seen.overall_not_serving, 0,
        "no service's overall health left SERVING"
    );
    assert!(
        seen.door_not_serving > 0,
        "the command door's health showed the outage"
    );
    let mut status = StatusServiceClient::connect(platform.url("commission"))
        .await
        .unwrap();
    let status = status
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    println!("commission status after the outage: {status:?}");
    assert!(
        seen.status_broker_down.is_some(),
        "StatusService showed the broker unreachable during the outage"
    );
    assert!(
        status.pulsar.as_ref().unwrap().reachable,
        "and reachable after it"
    );
    for sub in &status.subscriptions {
        assert_eq!(sub.state, "consuming", "{sub:?}");
    }
    platform.assert_all_running();
}
