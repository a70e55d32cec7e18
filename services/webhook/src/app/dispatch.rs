//! The dispatcher: claims due deliveries, sends each in a task of its own (at most
//! `concurrency` at once, at most `endpoint_concurrency` to one endpoint, so a slow endpoint never
//! holds the others up, and no faster than an endpoint's rate limit: a token bucket per process),
//! and hands each answer to the recorder, which writes them in sets. It wakes on the feed's
//! NOTIFY, on the recorder's news (a lane moved on, an immediate retry), on a finished send when
//! the claim was full, and on its poll interval (retries come due by time).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::Settings;
use crate::adapters::deliveries::{self, Claimed, Finished, Verdict};
use crate::adapters::repository::WAKE_CHANNEL;
use crate::adapters::sender::{Answer, Outgoing, Sender};
use crate::domain::rate::Buckets;
use crate::domain::schedule::Next;
use crate::domain::signature;

/// Answers recorded in one transaction at most.
const RECORD_BATCH: usize = 512;
/// How long a claim outlives its attempt's time-out before another claim may take it.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// Requests in flight per endpoint.
#[derive(Debug, Default)]
struct InFlight(Mutex<HashMap<Uuid, i32>>);

impl InFlight {
    fn add(&self, endpoint: Uuid, n: i32) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(endpoint).or_default();
        *entry += n;
        if *entry <= 0 {
            map.remove(&endpoint);
        }
    }

    fn snapshot(&self) -> Vec<(Uuid, i32)> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter().map(|(k, v)| (*k, *v)).collect()
    }
}

/// The dispatcher loop.
pub struct Dispatcher {
    pool: PgPool,
    settings: Arc<Settings>,
    sender: Sender,
}

impl Dispatcher {
    pub fn new(pool: PgPool, settings: Arc<Settings>, sender: Sender) -> Self {
        Self {
            pool,
            settings,
            sender,
        }
    }

    /// Runs until `shutdown`; sends in flight finish and are recorded first (within the grace
    /// the process gives), what is not recorded is sent again after its lease.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        // Nothing is sent before every stored secret opens with the keys given.
        let sealed = super::secrets::seal_stored(&self.pool, &self.settings.keys).await?;
        tracing::info!(
            key = self.settings.keys.current_id(),
            sealed = sealed.sealed,
            resealed = sealed.resealed,
            "endpoint secrets sealed at rest"
        );
        let wake = Arc::new(Notify::new());
        let (results, inbox) = mpsc::channel::<Finished>(RECORD_BATCH * 4);
        let recorder = tokio::spawn(record_loop(
            self.pool.clone(),
            inbox,
            self.settings.disable_after,
            wake.clone(),
        ));
        let listener = tokio::spawn(listen(self.pool.clone(), wake.clone(), shutdown.clone()));
        let permits = Arc::new(Semaphore::new(self.settings.concurrency));
        let in_flight = Arc::new(InFlight::default());
        let per_endpoint = i32::try_from(self.settings.endpoint_concurrency).unwrap_or(i32::MAX);
        let lease = self.settings.request_timeout + LEASE_MARGIN;
        // Rate-limited endpoints' tokens (this loop alone claims).
        let mut buckets = Buckets::default();
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            let room = permits.available_permits();
            let mut full = false;
            if room > 0 {
                let limit = i64::try_from(room)
                    .unwrap_or(i64::MAX)
                    .min(self.settings.batch);
                let now = std::time::Instant::now();
                let claimed = match self.pool.acquire().await {
                    Ok(mut conn) => {
                        deliveries::claim(
                            &mut conn,
                            limit,
                            per_endpoint,
                            &in_flight.snapshot(),
                            &buckets.available(now),
                            lease,
                        )
                        .await
                    }
                    Err(e) => Err(e),
                };
                match claimed {
                    Ok(claimed) => {
                        failures = 0;
                        for claim in &claimed {
                            buckets.take(claim.endpoint_id, claim.rate_limit, now);
                        }
                        full = i64::try_from(claimed.len()).unwrap_or(0) >= limit;
                        metrics::counter!("webhook_claimed_total").increment(claimed.len() as u64);
                        for claim in claimed {
                            let Ok(permit) = permits.clone().try_acquire_owned() else {
                                break; // cannot happen: no more than the free permits were claimed
                            };
                            in_flight.add(claim.endpoint_id, 1);
                            let sender = self.sender.clone();
                            let settings = self.settings.clone();
                            let results = results.clone();
                            let in_flight = in_flight.clone();
                            let wake = wake.clone();
                            tokio::spawn(async move {
                                let endpoint = claim.endpoint_id;
                                let finished = attempt(&sender, &settings, claim).await;
                                in_flight.add(endpoint, -1);
                                drop(permit);
                                wake.notify_one();
                                let _ = results.send(finished).await;
                            });
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        let delay = service_runtime::backoff::doubling(
                            Duration::from_millis(100),
                            Duration::from_secs(5),
                            failures,
                        );
                        tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "claiming deliveries failed");
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(delay) => {}
                        }
                        continue;
                    }
                }
            }
            if full && permits.available_permits() > 0 {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = wake.notified() => {}
                () = tokio::time::sleep(self.settings.poll_interval) => {}
            }
        }
        // Let the sends in flight finish (each is bounded by the request time-out) and be
        // recorded; the process's shutdown grace bounds the wait.
        let _ = permits
            .acquire_many(u32::try_from(self.settings.concurrency).unwrap_or(u32::MAX))
            .await;
        drop(results);
        let _ = recorder.await;
        listener.abort();
        Ok(())
    }
}

/// Sends one claimed delivery and decides what follows.
async fn attempt(sender: &Sender, settings: &Settings, claim: Claimed) -> Finished {
    let attempted_at = chrono::Utc::now();
    let timestamp = attempted_at.timestamp();
    let opened: Result<Vec<String>, _> = claim
        .secrets
        .iter()
        .map(|stored| settings.keys.open(claim.endpoint_id, stored))
        .collect();
    let answer: Answer = match opened {
        Ok(secrets) => {
            let signature =
                signature::header(&secrets, &claim.message_id, timestamp, &claim.payload);
            sender
                .send(&Outgoing {
                    url: &claim.url,
                    webhook_id: &claim.message_id,
                    timestamp,
                    signature: &signature,
                    body: &claim.payload,
                })
                .await
        }
        // Never sent unsigned: the attempt fails (and is retried on the schedule) until a
        // process with the right key sends it. A replica started with other keys than the
        // one that sealed, say; the start-up check keeps a lone process from getting here.
        Err(e) => {
            tracing::error!(endpoint = %claim.endpoint_id, error = %e, "endpoint secret does not open: not sent");
            Answer {
                error: format!("not sent: the endpoint's secret does not open ({e})"),
                ..Answer::default()
            }
        }
    };
    let verdict = if answer.success() {
        Verdict::Succeeded
    } else if answer.status == 410 {
        Verdict::Gone
    } else {
        let retry_after = if matches!(answer.status, 429 | 503) {
            answer.retry_after
        } else {
            None
        };
        match settings.schedule.after_failure(
            u32::try_from(claim.attempts).unwrap_or(u32::MAX),
            retry_after,
        ) {
            Next::RetryIn(delay) => Verdict::Retry(delay),
            Next::GiveUp => Verdict::Failed,
        }
    };
    let outcome = match verdict {
        Verdict::Succeeded => "succeeded",
        Verdict::Retry(_) => "retry",
        Verdict::Failed => "failed",
        Verdict::Gone => "gone",
    };
    metrics::counter!("webhook_attempts_total", "outcome" => outcome).increment(1);
    metrics::histogram!("webhook_attempt_seconds").record(answer.latency.as_secs_f64());
    Finished {
        seq: claim.seq,
        fence: claim.attempts,
        message_id: claim.message_id,
        endpoint_id: claim.endpoint_id,
        attempted_at,
        status_code: i32::from(answer.status),
        latency_ms: i64::try_from(answer.latency.as_millis()).unwrap_or(i64::MAX),
        response: answer.response,
        error: answer.error,
        verdict,
    }
}

/// Writes answers in sets, retrying a set the database refused (its deliveries' leases keep
/// them from being sent again meanwhile, for a while).
async fn record_loop(
    pool: PgPool,
    mut inbox: mpsc::Receiver<Finished>,
    disable_after: i32,
    wake: Arc<Notify>,
) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while inbox.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let mut failures = 0u32;
        loop {
            match record_once(&pool, &batch, disable_after).await {
                Ok(recorded) => {
                    if recorded.due_now {
                        wake.notify_one();
                    }
                    for d in recorded.disabled {
                        tracing::warn!(endpoint = %d.endpoint_id, owner = %d.owner_id, reason = %d.reason, "endpoint disabled");
                    }
                    break;
                }
                Err(e) => {
                    failures += 1;
                    if failures > 20 {
                        // Their leases run out and they are sent again, with the same ids.
                        tracing::error!(error = %e, answers = batch.len(), "recording answers failed; their deliveries will be retried");
                        break;
                    }
                    let delay = service_runtime::backoff::doubling(
                        Duration::from_millis(50),
                        Duration::from_secs(2),
                        failures,
                    );
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "recording answers failed");
                    tokio::time::sleep(delay).await;
                }
            }
        }
        batch.clear();
    }
}

async fn record_once(
    pool: &PgPool,
    batch: &[Finished],
    disable_after: i32,
) -> sqlx::Result<deliveries::Recorded> {
    let mut tx = pool.begin().await?;
    let recorded = deliveries::record(&mut tx, batch, disable_after).await?;
    crate::app::notify_disabled(&mut tx, &recorded.disabled).await?;
    tx.commit().await?;
    Ok(recorded)
}

/// Wakes the loop on each NOTIFY of the feed (the listener reconnects by itself; a lost wake-up
/// costs at most one poll interval).
async fn listen(pool: PgPool, wake: Arc<Notify>, shutdown: CancellationToken) {
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let listener = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(WAKE_CHANNEL).await?;
            loop {
                listener.recv().await?;
                wake.notify_one();
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            result = listener => {
                if let Err(e) = result {
                    failures += 1;
                    tracing::warn!(error = %e, "the delivery listener failed; reconnecting");
                    let delay = service_runtime::backoff::doubling(
                        Duration::from_millis(100),
                        Duration::from_secs(5),
                        failures,
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// Deletes attempts, finished deliveries and messages older than the retention, a slice at a
/// time, every hour (or every tenth of the retention if that is shorter).
pub struct Retention {
    pool: PgPool,
    keep: Duration,
}

impl Retention {
    pub fn new(pool: PgPool, keep: Duration) -> Self {
        Self { pool, keep }
    }

    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let every = (self.keep / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
        while !shutdown.is_cancelled() {
            if let Err(e) = crate::app::expire(&self.pool, self.keep).await {
                tracing::warn!(error = %e, "expiring old deliveries failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
        }
        Ok(())
    }
}
