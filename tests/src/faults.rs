//! One fault under load: the broker SIGKILLed and started again with `deploy/local/pulsar.sh up`
//! (on its kept data), PostgreSQL stopped as a crash would (`pg_ctl stop -m immediate`) and
//! started again, the commission service SIGKILLed and started again, the relay SIGKILLed and
//! started again (`tests/tests/faults.rs`); the same four frozen instead for [`FREEZE_FOR`]
//! (SIGSTOP, then SIGCONT: connections stay open and nothing answers on them, as in a long GC
//! pause, a stuck disk or a half-dead VM; `tests/tests/freezes.rs`), each converging within
//! [`AFTER_REPAIR`] of the restart or the thaw; and, on the cluster of
//! `deploy/local/pulsar-cluster.sh`, the broker that owns the platform's topics SIGKILLed and
//! left dead, so that they move to the other broker (`tests/tests/cluster_failover.rs`).
//!
//! Each run drives purchases over gRPC at [`RATE`] a second for [`SEND`], every call retried
//! with its idempotency key until it is acknowledged, and requests a payout (whose provider
//! answers slowly, so the saga is in flight) just before the fault. Then, with no operator
//! action and within [`CONVERGE`]: every acknowledged purchase has exactly one commission, each
//! creator's balance holds each commission once (available + reserved + paid), the payout ends in
//! a terminal state with its reservation settled or released, every outbox is empty, per
//! aggregate the events arrive in version order, no call was ever answered with anything but OK
//! or UNAVAILABLE (never INTERNAL), no process but the killed one exited, and the analytics
//! service (running like every other) shows for each campaign and creator exactly the counts and
//! sums the tracking and commission databases hold. Purchases go to [`CAMPAIGNS`] hot campaigns,
//! each accepted by the same [`CREATORS`] creators, so that concurrent batches share rows. Each run prints how
//! long the platform stalled: the longest pause between two commissions.
//!
//! The runs stop and start the shared broker and PostgreSQL that `deploy/local` runs (as
//! `tests/run.sh` does), so they take turns. Reproduce one with `FAULT_SEED=<seed printed>`;
//! seeds, figures and every process's log are kept in `target/test-logs/faults_<fault>/`.

#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::sync::Mutex;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::eventually;
use crate::platform::{Platform, SERVICES};
use crate::workflow::{ADVERTISER, Door, Driver, decode};
use affiliate_proto::campaign::{AcceptCampaignRequest, CreateCampaignRequest, campaign_command};
use affiliate_proto::commission::commission_service_client::CommissionServiceClient;
use affiliate_proto::commission::{GetBalanceRequest, ReverseCommissionRequest};
use affiliate_proto::common::Money;
use affiliate_proto::payment::payment_service_client::PaymentServiceClient;
use affiliate_proto::payment::{PayoutMethod, RequestPayoutRequest};
use affiliate_proto::tracking::tracking_service_client::TrackingServiceClient;
use affiliate_proto::tracking::{CreateEventRequest, TrackingEventKind};

/// Purchases per second, each from its own task (open loop: a slow answer does not slow the
/// sender down, up to [`IN_FLIGHT`] purchases waiting for their answer). `FAULT_RATE` overrides it
/// (e.g. 500 against a release build: `cargo test --release`).
const RATE: u64 = 200;
/// Purchases in flight at most (like clients with a bounded pool of requests); beyond it the
/// sender waits, so an outage delays sends instead of piling up thousands of retrying calls.
const IN_FLIGHT: usize = 256;
/// Client connections the purchases are spread over (one HTTP/2 connection each).
const CONNECTIONS: usize = 4;
/// How long purchases are sent.
const SEND: Duration = Duration::from_secs(20);
/// When the fault strikes, after the first purchase.
const FAULT_AT: Duration = Duration::from_secs(6);
/// When the payout is requested (its provider call then takes `SANDBOX_SLOW_DELAY`, 3 s).
const PAYOUT_AT: Duration = Duration::from_secs(5);
/// How long a stopped process or server stays down.
const DOWN_FOR: Duration = Duration::from_secs(3);
/// How long a frozen process or server stays frozen.
pub const FREEZE_FOR: Duration = Duration::from_secs(20);
/// The bound on convergence after a fault ends (the process or server restarted and ready, or
/// thawed), with no operator action; the cluster's failover has only [`CONVERGE`].
pub const AFTER_REPAIR: Duration = Duration::from_secs(60);
/// The consumers' stall time-out in the freeze runs (`CONSUMER_STALL_TIMEOUT`), shorter than the
/// freeze so that a stall shows in the command door's health while it lasts.
const FREEZE_STALL_TIMEOUT: &str = "10s";
/// Hot rows, as a real program has them: purchases spread over this many campaigns, each accepted
/// by the same [`CREATORS`] creators, so that batches share campaign and balance rows.
const CAMPAIGNS: usize = 4;
const CREATORS: usize = 8;
/// The bound on convergence after the last purchase.
const CONVERGE: Duration = Duration::from_secs(180);
const PURCHASE_MINOR: i64 = 1000;
const RATE_BPS: u32 = 1000;
const SLOW_ACCOUNT: &str = "slow-faults@example.com";
/// One purchase in this many is refunded (in full or in half) as soon as it is acknowledged: a
/// refund stream through the fault, some arriving before their commission.
const REFUND_EVERY: u32 = 8;

/// Tests of this file take turns: each stops something the others use.
static TURN: Mutex<()> = Mutex::const_new(());

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    BrokerKilled,
    PostgresCrashed,
    CommissionKilled,
    RelayKilled,
    /// On the cluster: the broker that owns the platform's topics, killed and left dead.
    OwnerBrokerKilled,
    BrokerFrozen,
    PostgresFrozen,
    CommissionFrozen,
    RelayFrozen,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Self::BrokerKilled => "broker_killed",
            Self::PostgresCrashed => "postgres_crashed",
            Self::CommissionKilled => "commission_killed",
            Self::RelayKilled => "relay_killed",
            Self::OwnerBrokerKilled => "owner_broker_killed",
            Self::BrokerFrozen => "broker_frozen",
            Self::PostgresFrozen => "postgres_frozen",
            Self::CommissionFrozen => "commission_frozen",
            Self::RelayFrozen => "relay_frozen",
        }
    }

    fn is_freeze(self) -> bool {
        matches!(
            self,
            Self::BrokerFrozen | Self::PostgresFrozen | Self::CommissionFrozen | Self::RelayFrozen
        )
    }

    /// Purchases a second unless `FAULT_RATE` says: [`RATE`], and a quarter of it on the
    /// cluster, whose seven JVMs (ZooKeeper, three bookies, two brokers, the proxy) share the
    /// machine's 2 cores with the platform: at 100/s the tracking service shed most calls and the
    /// 20 s of sends took 77 to 131 s (at 50/s, 45 s); the failover stall was about the same.
    fn rate(self) -> u64 {
        match self {
            Self::OwnerBrokerKilled => RATE / 4,
            _ => RATE,
        }
    }

    /// Strikes, waits [`DOWN_FOR`] where something is down, and brings it back (the cluster's
    /// broker stays dead). Returns the name of what it struck.
    async fn strike(self, platform: &mut Platform) -> String {
        match self {
            Self::BrokerKilled => {
                // A dead letter waiting for an operator (nobody subscribes to its topic; the
                // namespace's retention keeps it) must outlive the crash like every message.
                let letter = dead_letter(platform).await;
                script("pulsar.sh", &["kill"]);
                tokio::time::sleep(DOWN_FOR).await;
                script("pulsar.sh", &["up"]);
                assert_dead_letter_kept(platform, &letter).await;
                "the broker".into()
            }
            Self::PostgresCrashed => {
                script("postgres.sh", &["crash"]);
                tokio::time::sleep(DOWN_FOR).await;
                script("postgres.sh", &["up"]);
                "PostgreSQL".into()
            }
            Self::CommissionKilled => {
                platform.kill("commission-service");
                tokio::time::sleep(DOWN_FOR).await;
                platform.start_service("commission");
                "commission-service".into()
            }
            Self::RelayKilled => {
                platform.kill("relay");
                tokio::time::sleep(DOWN_FOR).await;
                platform.start_relay("relay");
                "relay".into()
            }
            Self::OwnerBrokerKilled => {
                let owner = owner(platform);
                script("pulsar-cluster.sh", &["kill", &owner]);
                println!("owner_broker_killed: {owner}, which owned the platform's topics, killed");
                owner
            }
            Self::BrokerFrozen => freeze_server("pulsar.sh", "the broker").await,
            Self::PostgresFrozen => freeze_server("postgres.sh", "PostgreSQL").await,
            Self::CommissionFrozen => freeze_process(platform, "commission-service").await,
            Self::RelayFrozen => freeze_process(platform, "relay").await,
        }
    }

    /// After the run has converged: what the fault left behind is checked and mended.
    fn restore(self, platform: &Platform, struck: &str) {
        if let Self::OwnerBrokerKilled = self {
            let now = owner(platform);
            assert_ne!(
                now, struck,
                "the platform's topics moved to the surviving broker"
            );
            println!("owner_broker_killed: the topics are now served by {now}");
            script("pulsar-cluster.sh", &["up"]);
        }
    }
}

/// Freezes the server `deploy/local/<script>` runs for [`FREEZE_FOR`], then thaws it.
async fn freeze_server(script_name: &str, what: &str) -> String {
    script(script_name, &["freeze"]);
    tokio::time::sleep(FREEZE_FOR).await;
    script(script_name, &["thaw"]);
    what.to_owned()
}

/// Freezes one of the platform's processes for [`FREEZE_FOR`], then lets it go on.
async fn freeze_process(platform: &mut Platform, name: &str) -> String {
    platform.signal(name, "STOP");
    tokio::time::sleep(FREEZE_FOR).await;
    platform.signal(name, "CONT");
    name.to_owned()
}

/// The cluster's broker that serves the commission command topic (and, one bundle per
/// namespace, every topic of the platform's namespace).
fn owner(platform: &Platform) -> String {
    script(
        "pulsar-cluster.sh",
        &[
            "owner",
            &format!("{}/commission-commands", &*platform.namespace),
        ],
    )
    .trim()
    .to_owned()
}

/// The commission command door's dead-letter topic, short name.
fn dead_letter_topic(platform: &Platform) -> String {
    let full = messaging::consumer::dead_letter_topic(
        &platform.topic("commission-commands"),
        "commission",
    );
    full.rsplit('/').next().unwrap().to_owned()
}

/// Publishes a dead letter as the consumer does (its payload names it); returns the payload.
async fn dead_letter(platform: &Platform) -> String {
    let letter = format!("dead letter {}", Uuid::now_v7());
    let client = crate::pulsar().await;
    let topic = platform.topic(&dead_letter_topic(platform));
    crate::publish(
        &client,
        &topic,
        "key",
        &letter,
        "test.letter.v1",
        "",
        letter.clone().into_bytes(),
    )
    .await;
    letter
}

async fn assert_dead_letter_kept(platform: &Platform, letter: &str) {
    let path = format!(
        "/admin/v2/persistent/{}/{}/{}/examinemessage?initialPosition=earliest&messagePosition=1",
        crate::pulsar_tenant(),
        &*platform.namespace,
        dead_letter_topic(platform)
    );
    let (status, body) = crate::http_request("GET", &path, "").await;
    assert_eq!(
        (status, body.as_str()),
        (200, letter),
        "the dead letter published before the broker was killed is still there"
    );
    println!("broker_killed: the dead letter outlived the crash");
}

/// The last ERROR lines of the local broker's log (`deploy/local/pulsar.sh` writes it under the
/// state folder), for a time-out's message.
fn broker_errors() -> Vec<String> {
    let state = std::env::var("STATE_DIR")
        .unwrap_or_else(|_| format!("{}/../.state", env!("CARGO_MANIFEST_DIR")));
    let log = std::fs::read_to_string(format!("{state}/logs/pulsar.log")).unwrap_or_default();
    let errors: Vec<String> = log
        .lines()
        .filter(|l| l.contains(" ERROR "))
        .map(|l| l.chars().take(300).collect())
        .collect();
    errors[errors.len().saturating_sub(15)..].to_vec()
}

/// Runs `deploy/local/<name> <args>` (blocking: the caller's runtime has other threads), failing
/// with what to do if it cannot; returns its standard output.
pub fn script(name: &str, args: &[&str]) -> String {
    let path = format!("{}/../deploy/local/{name}", env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {path}: {e}"));
    let log = String::from_utf8_lossy(&output.stderr);
    let command = args.join(" ");
    assert!(
        output.status.success(),
        "{name} {command} failed: this test stops and starts the server that deploy/local/{name} \
         runs; start it with `deploy/local/{name} up` (tests/run.sh does): {log}"
    );
    for line in log.lines() {
        println!("{name} {command}: {line}");
    }
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What the load saw.
#[derive(Debug, Default)]
struct Load {
    /// Tracking event id of each acknowledged purchase, with its creator.
    acknowledged: Vec<(Uuid, String)>,
    /// Answers the server sent other than OK, by code (every one was retried with the same key).
    failures: BTreeMap<String, u64>,
    /// Calls that failed in the client's own transport (connection refused or reset, no answer
    /// in time): no status came from the server. Retried with the same key too.
    transport: u64,
    /// A sample message per failure code.
    samples: BTreeMap<String, String>,
    /// Refunds acknowledged (each retried with its key until it was).
    refunds: u64,
}

/// Refunds `refund_minor` of the purchase `tracking_event_id` through the commission service,
/// retrying with its idempotency key until it is acknowledged.
async fn refund(
    mut client: CommissionServiceClient<Channel>,
    tracking_event_id: Uuid,
    refund_minor: i64,
    load: Arc<Mutex<Load>>,
) {
    let key = Uuid::now_v7().to_string();
    let request = ReverseCommissionRequest {
        tracking_event_id: tracking_event_id.to_string(),
        refund_id: format!("fault-{key}"),
        refunded_amount: Some(Money {
            amount_minor: refund_minor,
            currency: "EUR".into(),
        }),
        kind: "refund".into(),
        reason: "returned".into(),
    };
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut call = crate::with_key(request.clone(), &key);
        call.set_timeout(Duration::from_secs(10));
        match client.reverse_commission(call).await {
            Ok(_) => {
                load.lock().await.refunds += 1;
                return;
            }
            Err(status) => {
                assert!(
                    matches!(
                        status.code(),
                        tonic::Code::Unavailable
                            | tonic::Code::DeadlineExceeded
                            | tonic::Code::Unknown
                    ) || std::error::Error::source(&status).is_some(),
                    "a refund met the fault with {status:?}"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Sends one purchase, retrying with its idempotency key until it is acknowledged.
async fn purchase(
    mut client: TrackingServiceClient<Channel>,
    campaign: String,
    creator: String,
    load: Arc<Mutex<Load>>,
    refunded: Option<(CommissionServiceClient<Channel>, i64)>,
) {
    let key = Uuid::now_v7().to_string();
    let request = CreateEventRequest {
        campaign_id: campaign,
        creator_id: creator.clone(),
        kind: TrackingEventKind::Purchase.into(),
        amount: Some(Money {
            amount_minor: PURCHASE_MINOR,
            currency: "EUR".into(),
        }),
        product_id: String::new(),
        occurred_at: None,
    };
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut call = crate::with_key(request.clone(), &key);
        call.set_timeout(Duration::from_secs(10));
        match client.create_event(call).await {
            Ok(response) => {
                let id = response.into_inner().event.unwrap().id;
                let id = Uuid::parse_str(&id).unwrap();
                load.lock().await.acknowledged.push((id, creator));
                if let Some((commission, amount)) = refunded {
                    refund(commission, id, amount, load).await;
                }
                return;
            }
            Err(status) => {
                let code = service_runtime::errors::code_name(status.code()).to_owned();
                let mut load = load.lock().await;
                // A status the client made from its own transport error carries that error as
                // its source; statuses sent by a server never do.
                if std::error::Error::source(&status).is_some()
                    || status.code() == tonic::Code::DeadlineExceeded
                {
                    load.transport += 1;
                } else {
                    *load.failures.entry(code.clone()).or_default() += 1;
                }
                load.samples
                    .entry(code)
                    .or_insert_with(|| status.message().to_owned());
                drop(load);
                // Half to all of the back-off, so calls that failed together spread out.
                let pause = backoff.mul_f64(rand::rng().random_range(0.5..=1.0));
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Events of every service's topic as first seen, per aggregate: (aggregate id → versions).
/// Re-reads from the earliest message whenever its subscription ends (a broker restart), so
/// redeliveries come after the first arrivals they repeat.
fn watch_order(platform: &Platform) -> Arc<Mutex<HashMap<String, Vec<i64>>>> {
    let seen: Arc<Mutex<HashMap<String, Vec<i64>>>> = Arc::default();
    for service in SERVICES {
        let topic = platform.topic(&format!("{service}-events"));
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut first_seen: std::collections::HashSet<String> = Default::default();
            loop {
                let Ok(client) = crate::try_pulsar().await else {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                };
                let Ok(mut consumer) = messaging::watch(
                    &client,
                    &topic,
                    "faults-order",
                    pulsar::consumer::InitialPosition::Earliest,
                )
                .await
                else {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                };
                use futures::TryStreamExt as _;
                while let Ok(Some(message)) = consumer.try_next().await {
                    let _ = consumer.ack(&message).await;
                    let Some((metadata, _)) = decode(service, &message.payload.data) else {
                        continue;
                    };
                    if first_seen.insert(metadata.message_id.clone()) {
                        seen.lock()
                            .await
                            .entry(format!(
                                "{}:{}",
                                metadata.aggregate_type, metadata.aggregate_id
                            ))
                            .or_default()
                            .push(metadata.aggregate_version);
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
    seen
}

pub async fn under_load(fault: Fault) {
    let _turn = TURN.lock().await;
    let seed = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random::<u64>());
    let test = format!("faults_{}", fault.name());
    // GRPC_MAX_IN_FLIGHT passes through, to compare runs with more or less load shedding.
    let mut extra: Vec<(&'static str, String)> = std::env::var("GRPC_MAX_IN_FLIGHT")
        .map(|limit| vec![("GRPC_MAX_IN_FLIGHT", limit)])
        .unwrap_or_default();
    if fault.is_freeze() {
        extra.push(("CONSUMER_STALL_TIMEOUT", FREEZE_STALL_TIMEOUT.into()));
    }
    let mut platform = Platform::start_whole(&test, "hybrid", extra).await;
    platform.consuming(Duration::from_secs(60)).await;
    std::fs::write(platform.logs.join("seed"), seed.to_string()).unwrap();
    println!(
        "{}: FAULT_SEED={seed}; logs in {}",
        fault.name(),
        platform.logs.display()
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let rate: u64 = std::env::var("FAULT_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|r| *r > 0)
        .unwrap_or_else(|| fault.rate());

    // The campaigns and their creators.
    let (campaign_count, creator_count) = (CAMPAIGNS, CREATORS);
    let creators: Vec<String> = (0..creator_count)
        .map(|_| Uuid::now_v7().to_string())
        .collect();
    let mut campaigns = Vec::new();
    {
        let mut driver = Driver::new(&platform, Door::Grpc).await;
        for n in 0..campaign_count {
            let campaign = driver
                .create_campaign(CreateCampaignRequest {
                    advertiser_id: ADVERTISER.into(),
                    name: format!("Faults {} {n}", fault.name()),
                    description: String::new(),
                    commission_rate_bps: RATE_BPS,
                    budget: Some(Money {
                        amount_minor: 1_000_000_000_000,
                        currency: "EUR".into(),
                    }),
                    tracking: None,
                    // payouts follow: commissions are payable at once
                    hold_period: crate::NO_HOLD,
                })
                .await;
            for creator in &creators {
                driver
                    .campaign_command(campaign_command::Command::AcceptCampaign(
                        AcceptCampaignRequest {
                            campaign_id: campaign.clone(),
                            creator_id: creator.clone(),
                            accepted_terms: true,
                        },
                    ))
                    .await;
            }
            campaigns.push(campaign);
        }
    }
    let order = watch_order(&platform);
    // Let the commission service's copy of the acceptances arrive before the first purchase.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The load: one task per purchase on a fixed timetable, so a fault delays answers, not sends.
    let load = Arc::new(Mutex::new(Load::default()));
    let tracking: Vec<Channel> = (0..CONNECTIONS)
        .map(|_| {
            Channel::from_shared(platform.url("tracking"))
                .unwrap()
                .connect_lazy()
        })
        .collect();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let started = Instant::now();
    let total = rate * SEND.as_secs();
    let sender = {
        let (load, campaigns, creators) = (load.clone(), campaigns.clone(), creators.clone());
        // (campaign, creator, refunded amount if refunded)
        let picks: Vec<(usize, usize, Option<i64>)> = (0..total)
            .map(|_| {
                (
                    rng.random_range(0..campaigns.len()),
                    rng.random_range(0..creators.len()),
                    (rng.random_range(0..REFUND_EVERY) == 0).then(|| {
                        if rng.random_bool(0.5) {
                            PURCHASE_MINOR
                        } else {
                            PURCHASE_MINOR / 2
                        }
                    }),
                )
            })
            .collect();
        let commission = Channel::from_shared(platform.url("commission"))
            .unwrap()
            .connect_lazy();
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1) / rate as u32);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for (i, (campaign, creator, refunded)) in picks.into_iter().enumerate() {
                tick.tick().await;
                let permit = in_flight.clone().acquire_owned().await.unwrap();
                let refunded = refunded
                    .map(|amount| (CommissionServiceClient::new(commission.clone()), amount));
                let purchase = purchase(
                    TrackingServiceClient::new(tracking[i % CONNECTIONS].clone()),
                    campaigns[campaign].clone(),
                    creators[creator].clone(),
                    load.clone(),
                    refunded,
                );
                tasks.push(tokio::spawn(async move {
                    purchase.await;
                    drop(permit);
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
        })
    };

    // The payout, in flight when the fault strikes.
    tokio::time::sleep(PAYOUT_AT).await;
    let payout_creator = creators[0].clone();
    let mut commission = CommissionServiceClient::connect(platform.url("commission"))
        .await
        .unwrap();
    let available = commission
        .get_balance(GetBalanceRequest {
            creator_id: payout_creator.clone(),
            currency: "EUR".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .balance
        .unwrap_or_default()
        .available_minor;
    assert!(
        available > 0,
        "{payout_creator} earned commissions in the first {PAYOUT_AT:?}"
    );
    let mut payment = PaymentServiceClient::connect(platform.url("payment"))
        .await
        .unwrap();
    let message = RequestPayoutRequest {
        creator_id: payout_creator.clone(),
        amount: Some(Money {
            // half: refunds racing it take from the balance too
            amount_minor: available / 2,
            currency: "EUR".into(),
        }),
        method: PayoutMethod::Paypal.into(),
        account_details: SLOW_ACCOUNT.into(),
    };
    let call = crate::with_key(message, Uuid::now_v7().to_string());
    let payout = payment
        .request_payout(call)
        .await
        .unwrap()
        .into_inner()
        .payout
        .unwrap()
        .id;
    let payout = Uuid::parse_str(&payout).unwrap();

    // The fault.
    tokio::time::sleep(FAULT_AT.saturating_sub(started.elapsed())).await;
    let struck = Instant::now();
    println!(
        "{}: strikes {:?} after the first purchase",
        fault.name(),
        started.elapsed()
    );
    let door = watch_door(&platform);
    let victim = fault.strike(&mut platform).await;
    let recovered = Instant::now();
    println!("{}: recovered after {:?}", fault.name(), struck.elapsed());

    sender.await.unwrap();
    let sent_for = started.elapsed();
    let load = std::mem::take(&mut *load.lock().await);
    let ids: Vec<Uuid> = load.acknowledged.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids.len() as u64,
        total,
        "every purchase was acknowledged in the end"
    );

    // Convergence, with no operator action.
    let converge = Instant::now();
    let commission_db = platform.databases["commission"].pool.clone();
    // On time-out it says how many were there and what was still busy.
    let commissions = loop {
        let n: Option<i64> = sqlx::query_scalar(
            "select count(*) from commissions where tracking_event_id = any($1)",
        )
        .bind(&ids)
        .fetch_one(&commission_db)
        .await
        .ok();
        if n == Some(ids.len() as i64) {
            break ids.len() as i64;
        }
        if converge.elapsed() >= CONVERGE {
            let busy = platform.busy().await;
            panic!(
                "timed out after {CONVERGE:?} waiting for every purchase's commission: {n:?} of {} \
                 (logs in {}); still busy: {busy:#?}; the broker's last errors: {:#?}",
                ids.len(),
                platform.logs.display(),
                broker_errors()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let payment_db = platform.databases["payment"].pool.clone();
    let payout_status: String = eventually(CONVERGE, "the payout reaches a terminal state", || {
        let pool = payment_db.clone();
        async move {
            let status: String = sqlx::query_scalar("select status from payouts where id = $1")
                .bind(payout)
                .fetch_one(&pool)
                .await
                .ok()?;
            ["completed", "failed", "rejected"]
                .contains(&status.as_str())
                .then_some(status)
        }
    })
    .await;
    // Bounded like the rest; on time-out it says what was still busy.
    let drain_deadline = Instant::now() + CONVERGE;
    loop {
        let busy = platform.busy().await;
        if busy.is_empty() {
            break;
        }
        assert!(
            Instant::now() < drain_deadline,
            "every outbox empty and every backlog consumed within {CONVERGE:?}; still busy: {busy:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Refunds kept for commissions that had not arrived are applied by the commission service's
    // own loop once they have.
    let kept: i64 = eventually(CONVERGE, "every refund applied", || {
        let pool = commission_db.clone();
        async move {
            let (all, waiting): (i64, i64) =
                sqlx::query_as("select count(*), count(*) filter (where not applied) from refunds")
                    .fetch_one(&pool)
                    .await
                    .ok()?;
            (waiting == 0).then_some(all)
        }
    })
    .await;
    let converged_in = converge.elapsed();
    let after_repair = recovered.elapsed();
    // The read side too: analytics counted every purchase and commission once, through the fault.
    let subjects = |ids: &[String]| -> Vec<Uuid> {
        ids.iter().map(|id| Uuid::parse_str(id).unwrap()).collect()
    };
    let compared = crate::statistics::assert_analytics_agree(
        &platform,
        &subjects(&campaigns),
        &subjects(&creators),
        CONVERGE,
    )
    .await;
    let door = door.stop().await;
    // How long the platform stalled: the longest pause between two commissions of the run (at
    // this rate a few milliseconds when nothing is wrong).
    let stalled: f64 = sqlx::query_scalar(
        "select coalesce(extract(epoch from max(gap))::float8, 0) from (
             select created_at - lag(created_at) over (order by created_at) as gap
             from commissions where tracking_event_id = any($1)) gaps",
    )
    .bind(&ids)
    .fetch_one(&commission_db)
    .await
    .unwrap();
    fault.restore(&platform, &victim);

    // No effect twice: one commission per purchase, each in its creator's balance once.
    let (total_rows, distinct): (i64, i64) =
        sqlx::query_as("select count(*), count(distinct tracking_event_id) from commissions")
            .fetch_one(&commission_db)
            .await
            .unwrap();
    let duplicates = total_rows - distinct;
    let lost = ids.len() as i64 - commissions;
    let per_creator: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "select c.creator_id::text, sum(c.amount_minor - c.reversed_minor - c.clawed_back_minor)::int8,
                b.available_minor, b.reserved_minor, b.paid_minor
         from commissions c join balances b on b.creator_id = c.creator_id and b.currency = c.currency
         group by c.creator_id, b.available_minor, b.reserved_minor, b.paid_minor",
    )
    .fetch_all(&commission_db)
    .await
    .unwrap();
    let reservation: (String, i64) =
        sqlx::query_as("select status, amount_minor from reservations where payout_id = $1")
            .bind(payout)
            .fetch_one(&commission_db)
            .await
            .unwrap();

    let figures = format!(
        "{}: purchases {} (sent in {:.1?} at {rate}/s, {campaign_count} campaigns x \
         {creator_count} creators), commissions {commissions}, lost {lost}, duplicates \
         {duplicates}, refunds {kept} (all applied), stalled {stalled:.1} s (the longest pause between two commissions), \
         converged {:.1?} after the last purchase ({:.1?} after the fault struck, {:.1?} after \
         it ended), answers other than OK (all retried with their key): {:?}, client transport \
         errors {}, payout {payout_status} (reservation {}), commission door health: {door}, \
         seed {seed}",
        fault.name(),
        ids.len(),
        sent_for,
        converged_in,
        struck.elapsed(),
        after_repair,
        load.failures,
        load.transport,
        reservation.0,
    );
    println!("{figures}");
    println!(
        "{}: first failure message per code: {:?}",
        fault.name(),
        load.samples
    );
    std::fs::write(platform.logs.join("figures"), &figures).unwrap();

    assert_eq!(lost, 0, "every acknowledged purchase has a commission");
    assert_eq!(
        kept as u64, load.refunds,
        "every acknowledged refund is recorded once"
    );
    // The books balance: every running total equals its transfers, nobody paid more than earned.
    let books = platform.assert_books_balance();
    println!("{}: {}", fault.name(), books.trim());
    assert_eq!(duplicates, 0, "no purchase has two commissions");
    for (creator, earned, available, reserved, paid) in &per_creator {
        assert_eq!(
            available + reserved + paid,
            *earned,
            "{creator}'s balance holds each of its commissions once"
        );
        assert_eq!(*reserved, 0, "{creator}: no reservation left open");
    }
    let expected = match payout_status.as_str() {
        "completed" => "settled",
        _ => "released",
    };
    assert_eq!(
        reservation.0, expected,
        "the payout's reservation ended with the payout"
    );
    assert_eq!(
        load.transport, 0,
        "no call hung until its client's deadline or lost its connection ({:?}): transient trouble \
         is answered UNAVAILABLE within the pool's acquire timeout",
        load.samples
    );
    for code in load.failures.keys() {
        assert_eq!(
            code,
            "UNAVAILABLE",
            "a call met the fault with {code} ({:?}); transient trouble must be UNAVAILABLE",
            load.samples.get(code)
        );
    }
    let order = order.lock().await;
    for (aggregate, versions) in order.iter() {
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "{aggregate}: events first arrived in version order, got {versions:?}"
        );
    }
    println!(
        "{}: order checked over {} aggregates; analytics equal to the services' databases for {compared} campaigns and creators",
        fault.name(),
        order.len()
    );
    platform.assert_all_running();
    // Batches lock the rows they share in one global order (a commission batch: its campaigns,
    // then balances by creator), so PostgreSQL never has to break a deadlock between them.
    let deadlocks = platform.log_lines_containing("deadlock detected");
    assert!(
        deadlocks.is_empty(),
        "{}: no deadlock between the services' transactions, found {}: {:?}",
        fault.name(),
        deadlocks.len(),
        deadlocks.first()
    );
    assert!(
        door.serving_at_end,
        "the commission service's command door serves again once the fault is over: {door}"
    );
    if !matches!(fault, Fault::OwnerBrokerKilled) {
        assert!(
            after_repair <= AFTER_REPAIR,
            "{}: converged {after_repair:.1?} after the fault ended, beyond the goal of {AFTER_REPAIR:?} \
             (logs in {})",
            fault.name(),
            platform.logs.display()
        );
    }
}

/// What the commission service's command door said of its health from the fault on.
#[derive(Debug, Default)]
struct DoorHealth {
    /// Samples (every 500 ms) answered NOT_SERVING, and not answered at all.
    not_serving: u32,
    unanswered: u32,
    samples: u32,
    serving_at_end: bool,
}

impl std::fmt::Display for DoorHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NOT_SERVING in {} of {} samples, no answer in {}, SERVING at the end: {}",
            self.not_serving, self.samples, self.unanswered, self.serving_at_end
        )
    }
}

/// Samples the commission service's command door health until stopped.
struct DoorWatch {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<DoorHealth>,
    url: String,
}

fn watch_door(platform: &Platform) -> DoorWatch {
    let url = platform.url("commission");
    let stop = tokio_util::sync::CancellationToken::new();
    let (watched, stopped) = (url.clone(), stop.clone());
    let task = tokio::spawn(async move {
        use tonic_health::pb::health_check_response::ServingStatus;
        let mut seen = DoorHealth::default();
        while !stopped.is_cancelled() {
            seen.samples += 1;
            match crate::health(&watched, service_runtime::status::COMMAND_DOOR_HEALTH).await {
                Some(ServingStatus::Serving) => {}
                Some(_) => seen.not_serving += 1,
                None => seen.unanswered += 1,
            }
            tokio::select! {
                () = stopped.cancelled() => {}
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
        seen
    });
    DoorWatch { stop, task, url }
}

impl DoorWatch {
    /// Stops sampling; the door must be SERVING now (asked again for up to 10 s, as health is
    /// refreshed on an interval).
    async fn stop(self) -> DoorHealth {
        use tonic_health::pb::health_check_response::ServingStatus;
        self.stop.cancel();
        let mut seen = self.task.await.unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let now = crate::health(&self.url, service_runtime::status::COMMAND_DOOR_HEALTH).await;
            if now == Some(ServingStatus::Serving) {
                seen.serving_at_end = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        seen
    }
}
