//! Group commit for a front door: concurrent calls of one command are queued and written
//! together, as many as are waiting, in one transaction of a few statements ([`SetWriter`]),
//! instead of one transaction of several round trips each. Every caller still gets its own
//! answer, and only after the transaction that holds its write committed.
//!
//! There is no timer: a writer takes whatever is queued when it is free (so a lone call is
//! written at once, and under load the sets grow by themselves while the previous one commits).
//! A few writers run at once, so one slow commit does not stop the door. Calls that carry the
//! same idempotency key (a client's impatient retry) never share a set: the later ones wait for
//! a following set and replay the first one's answer.
//!
//! A set that fails on the database as a whole (away, a lock conflict) answers each of its
//! calls with that error (UNAVAILABLE: the caller retries with its idempotency key); a set that
//! fails for any other reason is written again one call at a time, so one bad call cannot fail
//! the calls it happened to be queued with.

use std::sync::Arc;

use sqlx::{PgConnection, PgPool};
use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::Instrument as _;

use crate::errors::Error;

/// Writes many calls of one command in the caller's open transaction: one result per item, in
/// order. `Err` fails the whole set (the transaction is rolled back).
pub trait SetWriter: Clone + Send + Sync + 'static {
    type Item: Clone + Send + Sync + 'static;
    type Output: Send + 'static;
    /// Names the set's transaction in traces (e.g. `tracking.create_event`).
    const OPERATION: &'static str;

    /// The item's idempotency key, if it has one: of the calls with one key, one goes in a set
    /// and the others wait for a later set, where they replay its answer.
    fn key(item: &Self::Item) -> Option<&str>;

    fn write_set(
        &self,
        conn: &mut PgConnection,
        items: &[Self::Item],
    ) -> impl Future<Output = Result<Vec<Result<Self::Output, Error>>, Error>> + Send;
}

/// How many writers run at once and how many calls one set takes at most.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    pub writers: usize,
    pub max_set: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            writers: 2,
            max_set: 128,
        }
    }
}

struct Job<W: SetWriter> {
    item: W::Item,
    /// The caller's W3C trace context, for the set's transaction span when it is sampled.
    traceparent: Option<String>,
    answer: oneshot::Sender<Result<W::Output, Error>>,
}

/// The queue in front of a [`SetWriter`]; cloning shares it. The writers stop when the last
/// clone is dropped (after writing what was queued).
pub struct GroupCommit<W: SetWriter> {
    queue: mpsc::Sender<Job<W>>,
}

impl<W: SetWriter> Clone for GroupCommit<W> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<W: SetWriter> std::fmt::Debug for GroupCommit<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("operation", &W::OPERATION)
            .finish_non_exhaustive()
    }
}

impl<W: SetWriter> GroupCommit<W> {
    /// Starts `tuning.writers` writers of `writer` on `pool` (must run inside a tokio runtime).
    pub fn start(writer: W, pool: PgPool, tuning: Tuning) -> Self {
        let writers = tuning.writers.max(1);
        let max_set = tuning.max_set.max(1);
        // Bounded: callers wait for room rather than pile up without limit (the door's own
        // in-flight limit sheds load long before this fills).
        let (queue, jobs) = mpsc::channel(writers * max_set * 2);
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..writers {
            tokio::spawn(write_loop(
                writer.clone(),
                pool.clone(),
                jobs.clone(),
                max_set,
            ));
        }
        Self { queue }
    }

    /// Queues `item` and waits until the set that holds it committed (or failed).
    pub async fn submit(
        &self,
        item: W::Item,
        traceparent: Option<String>,
    ) -> Result<W::Output, Error> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Job {
                item,
                traceparent,
                answer,
            })
            .await
            .map_err(|_| {
                Error::Unavailable(anyhow::anyhow!(
                    "{}: the writers have stopped",
                    W::OPERATION
                ))
            })?;
        answered.await.map_err(|_| {
            Error::Unavailable(anyhow::anyhow!(
                "{}: the writer stopped before answering",
                W::OPERATION
            ))
        })?
    }
}

/// Takes what is queued (waiting for the first call), writes it, answers, again. The queue's
/// lock is held only while taking, so the next writer gathers the next set meanwhile.
async fn write_loop<W: SetWriter>(
    writer: W,
    pool: PgPool,
    jobs: Arc<Mutex<mpsc::Receiver<Job<W>>>>,
    max_set: usize,
) {
    // Calls that share a key with an earlier call of their set, written in the next set.
    let mut held: Vec<Job<W>> = Vec::new();
    loop {
        let mut set = std::mem::take(&mut held);
        if set.is_empty() {
            let mut jobs = jobs.lock().await;
            let Some(first) = jobs.recv().await else {
                return;
            };
            set.push(first);
            take_waiting(&mut jobs, &mut set, max_set);
        } else if let Ok(mut jobs) = jobs.try_lock() {
            // Never wait for the lock with calls in hand: its holder may be waiting for a call.
            take_waiting(&mut jobs, &mut set, max_set);
        }
        let mut keys = std::collections::HashSet::new();
        let (now, later): (Vec<Job<W>>, Vec<Job<W>>) = set
            .into_iter()
            .partition(|job| W::key(&job.item).is_none_or(|key| keys.insert(key.to_owned())));
        held = later;
        write(&writer, &pool, now).await;
    }
}

/// Adds to `set` the calls already queued, up to `max_set` in all.
fn take_waiting<W: SetWriter>(
    jobs: &mut mpsc::Receiver<Job<W>>,
    set: &mut Vec<Job<W>>,
    max_set: usize,
) {
    while set.len() < max_set {
        match jobs.try_recv() {
            Ok(job) => set.push(job),
            Err(_) => break,
        }
    }
}

async fn write<W: SetWriter>(writer: &W, pool: &PgPool, mut set: Vec<Job<W>>) {
    // A caller that has gone (its call timed out or was cancelled) is not written for: as with a
    // transaction of its own, its work is dropped, and its retry runs it.
    set.retain(|job| !job.answer.is_closed());
    if set.is_empty() {
        return;
    }
    metrics::histogram!("group_commit_set_size", "operation" => W::OPERATION)
        .record(set.len() as f64);
    let items: Vec<W::Item> = set.iter().map(|job| job.item.clone()).collect();
    let traceparent = set
        .iter()
        .filter_map(|job| job.traceparent.as_deref())
        .find(|t| crate::telemetry::is_sampled(t));
    match attempt(writer, pool, &items, traceparent).await {
        Ok(outputs) => {
            for (job, output) in set.into_iter().zip(outputs) {
                let _ = job.answer.send(output);
            }
        }
        Err(e) if set.len() == 1 => {
            if let Some(job) = set.pop() {
                let _ = job.answer.send(Err(e));
            }
        }
        Err(e) if !matches!(e, Error::Unavailable(_)) => {
            tracing::warn!(operation = W::OPERATION, calls = set.len(), error = %e, "a set failed: writing its calls one at a time");
            for job in set {
                let output = attempt(
                    writer,
                    pool,
                    std::slice::from_ref(&job.item),
                    job.traceparent.as_deref(),
                )
                .await
                .and_then(|mut outputs| {
                    outputs.pop().ok_or_else(|| {
                        Error::Internal(anyhow::anyhow!("{}: no answer", W::OPERATION))
                    })?
                });
                let _ = job.answer.send(output);
            }
        }
        Err(e) => {
            let message = format!("{e:#}");
            for job in set {
                let error = Error::Unavailable(anyhow::anyhow!("{message}"));
                let _ = job.answer.send(Err(error));
            }
        }
    }
}

/// One transaction for `items`: begin, write, commit.
async fn attempt<W: SetWriter>(
    writer: &W,
    pool: &PgPool,
    items: &[W::Item],
    traceparent: Option<&str>,
) -> Result<Vec<Result<W::Output, Error>>, Error> {
    let span = match traceparent {
        Some(parent) => {
            let span = tracing::info_span!(
                "db.transaction",
                otel.kind = "internal",
                db.system = "postgresql",
                operation = W::OPERATION,
                calls = items.len()
            );
            crate::telemetry::set_remote_parent(&span, Some(parent), None);
            span
        }
        None => tracing::Span::none(),
    };
    async {
        let mut tx = pool.begin().await?;
        let outputs = writer.write_set(&mut tx, items).await?;
        if outputs.len() != items.len() {
            return Err(Error::Internal(anyhow::anyhow!(
                "{}: {} answers for {} calls",
                W::OPERATION,
                outputs.len(),
                items.len()
            )));
        }
        tx.commit().await?;
        Ok(outputs)
    }
    .instrument(span)
    .await
}
