//! Sending the purchases on the timetable: `concurrency` clients over one shared channel take the
//! next slot, wait for its time and send it. A slot no client was free to take in time is sent at
//! once and its latencies count from when it was due, so a slow server shows as latency (and late
//! sends) instead of a quietly lower rate, and the timetable catches up when the server does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng as _;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use affiliate_proto::common::Money;
use affiliate_proto::tracking::tracking_service_client::TrackingServiceClient;
use affiliate_proto::tracking::{CreateEventRequest, TrackingEventKind};
use service_runtime::errors::code_name;
use tonic::Status;
use tonic::transport::Channel;

use super::lock;
use super::retry::{Attempts, RetryPolicy};
use super::schedule::Schedule;
use super::setup::Run;
use super::tally::Tally;

/// A slot taken this soon after it was due still counts as taken in time.
const TAKEN_IN_TIME: Duration = Duration::from_millis(2);
/// The timetable starts this long after the clients are spawned, so they are all waiting by then.
const LEAD: Duration = Duration::from_millis(20);

/// What every purchase of the run has in common.
#[derive(Debug)]
pub struct Purchases {
    pub client: TrackingServiceClient<Channel>,
    pub run: Run,
    pub campaign_ids: Vec<String>,
    pub creators: Vec<String>,
    pub amount: Money,
    pub retry: RetryPolicy,
}

impl Purchases {
    /// Sends purchase `i` (retrying with its key); returns its tracking event id.
    async fn send(&self, i: u64) -> Attempts<String> {
        let (campaign, creator) = {
            let mut rng = rand::rng();
            (
                rng.random_range(0..self.campaign_ids.len()),
                rng.random_range(0..self.creators.len()),
            )
        };
        let message = CreateEventRequest {
            campaign_id: self.campaign_ids[campaign].clone(),
            creator_id: self.creators[creator].clone(),
            kind: TrackingEventKind::Purchase.into(),
            amount: Some(self.amount.clone()),
            ..Default::default()
        };
        let step = format!("purchase-{i}");
        self.retry
            .call(|| {
                let mut client = self.client.clone();
                let request = self.run.request(message.clone(), &step);
                async move {
                    let response = client.create_event(request?).await?.into_inner();
                    response
                        .event
                        .map(|event| event.id)
                        .filter(|id| !id.is_empty())
                        .ok_or_else(|| Status::internal("CreateEvent answered without an event"))
                }
            })
            .await
    }
}

/// Sends every purchase of `schedule` (or until `stop`); returns when the last call has ended.
pub async fn drive(
    purchases: Purchases,
    schedule: Schedule,
    concurrency: usize,
    tally: Arc<Mutex<Tally>>,
    stop: CancellationToken,
) -> Instant {
    let purchases = Arc::new(purchases);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + LEAD;
    let mut clients = JoinSet::new();
    for _ in 0..concurrency {
        let client = Client {
            purchases: purchases.clone(),
            schedule,
            start,
            next: next.clone(),
            tally: tally.clone(),
            stop: stop.clone(),
        };
        clients.spawn(client.run());
    }
    while let Some(ended) = clients.join_next().await {
        if let Err(e) = ended {
            eprintln!("a sending client stopped: {e}");
        }
    }
    Instant::now()
}

/// One of the concurrent clients.
struct Client {
    purchases: Arc<Purchases>,
    schedule: Schedule,
    start: Instant,
    /// The next slot of the timetable nobody has taken yet.
    next: Arc<AtomicU64>,
    tally: Arc<Mutex<Tally>>,
    stop: CancellationToken,
}

impl Client {
    async fn run(self) {
        while !self.stop.is_cancelled() {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(offset) = self.schedule.send_at(i) else {
                break;
            };
            let due = self.start + offset;
            // A slot taken after it was due waited for a free client: its clocks start when it
            // was due, so the wait shows as latency. Otherwise they start just before the call
            // (not at `due`, which the timer passes a little late).
            let taken_late = Instant::now().saturating_duration_since(due) > TAKEN_IN_TIME;
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                () = self.stop.cancelled() => break,
            }
            let now = Instant::now();
            let started = if taken_late { due } else { now };
            lock(&self.tally).sending(now, taken_late.then_some(due));
            let attempts = self.purchases.send(i).await;
            let now = Instant::now();
            let mut tally = lock(&self.tally);
            match attempts.result {
                Ok(tracking_event_id) => {
                    tally.acknowledged(tracking_event_id, started, now, attempts.retries);
                }
                Err(status) => tally.failed(code_name(status.code()), attempts.retries),
            }
        }
    }
}
