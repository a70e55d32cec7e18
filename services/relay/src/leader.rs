//! One outbox's relay loop: become the leader (a session advisory lock, held on the same
//! connection that claims and deletes, so losing the connection loses both), then publish until
//! idle, sleep until NOTIFY or the poll interval, repeat. Standbys retry the lock; when the leader
//! dies its session ends, the lock frees, and a standby takes over within one standby interval.

use std::time::Duration;

use anyhow::Context as _;
use service_runtime::backoff::{Delays, exponential};
use service_runtime::bounded::within;
use sqlx::postgres::{PgConnectOptions, PgListener};
use sqlx::{Connection as _, PgConnection};
use tokio_util::sync::CancellationToken;

use crate::batch::{Outcome, publish_batch};
use crate::config::{OutboxSource, Tuning};
use crate::publisher::Publisher;

/// Advisory lock key of "the relay of this database's outbox" (the bytes of "outbox").
pub const LEADER_LOCK_KEY: i64 = 0x6f75_7462_6f78;

/// The relay loop of one outbox.
pub struct OutboxRelay {
    source: OutboxSource,
    tuning: Tuning,
    publisher: Publisher,
}

impl OutboxRelay {
    pub fn new(source: OutboxSource, tuning: Tuning, publisher: Publisher) -> Self {
        Self {
            source,
            tuning,
            publisher,
        }
    }

    /// Runs until `shutdown`, checking it between batches. Errors are logged and retried with
    /// back-off; only shutdown ends the loop.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let service = self.source.service.clone();
        let mut backoff = Backoff::new(self.tuning.max_backoff);
        while !shutdown.is_cancelled() {
            match self.lead(&shutdown).await {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    let delay = backoff.next();
                    tracing::warn!(outbox = %service, error = format!("{e:#}"), retry_in_ms = delay.as_millis() as u64, "relay error");
                    metrics::counter!("relay_publish_errors_total", "outbox" => service.clone())
                        .increment(1);
                    metrics::gauge!("relay_leader", "outbox" => service.clone()).set(0.0);
                    sleep_or_stop(delay, &shutdown).await;
                }
            }
        }
        tracing::info!(outbox = %service, "outbox relay stopped");
        Ok(())
    }

    /// How the relay connects to the outbox's database: the server cancels a statement after
    /// the database time-out and ends a session idle in its transaction for longer than a batch
    /// may take (publish time-out plus database time-out), releasing its rows and the lock.
    fn connect_options(&self) -> anyhow::Result<PgConnectOptions> {
        let options: PgConnectOptions = self
            .source
            .expose_url()
            .parse()
            .with_context(|| format!("parse the {} database URL", self.source.service))?;
        let tuning = &self.tuning;
        Ok(service_runtime::db::bounded(
            options,
            tuning.database_timeout,
            tuning.publish_timeout + tuning.database_timeout,
        ))
    }

    /// Waits for leadership, then publishes until shutdown or an error.
    async fn lead(&mut self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let service = self.source.service.clone();
        let limit = self.tuning.database_timeout;
        let options = self.connect_options()?;
        let mut conn = within(limit, "connect to the database", async {
            PgConnection::connect_with(&options)
                .await
                .with_context(|| format!("connect to the {service} database"))
        })
        .await?;
        let mut announced = false;
        loop {
            let acquired = within(limit, "try the leader lock", async {
                sqlx::query_scalar!(
                    r#"select pg_try_advisory_lock($1) as "acquired!""#,
                    LEADER_LOCK_KEY
                )
                .fetch_one(&mut conn)
                .await
                .context("try the leader lock")
            })
            .await?;
            if acquired {
                break;
            }
            if !announced {
                tracing::info!(outbox = %service, "standing by: another relay holds this outbox");
                announced = true;
            }
            if sleep_or_stop(self.tuning.standby_interval, shutdown).await {
                return Ok(());
            }
        }
        tracing::info!(outbox = %service, "leading: publishing this outbox");
        metrics::gauge!("relay_leader", "outbox" => service.clone()).set(1.0);
        let mut measured = std::time::Instant::now() - METER_INTERVAL;

        let mut listener = within(limit, "connect the NOTIFY listener", async {
            let mut listener = PgListener::connect(self.source.expose_url())
                .await
                .context("connect the NOTIFY listener")?;
            listener.listen("outbox").await.context("LISTEN outbox")?;
            anyhow::Ok(listener)
        })
        .await?;
        let mut published_since_log = 0usize;
        let mut vacuum = Vacuum::new(self.tuning.vacuum_interval);
        while !shutdown.is_cancelled() {
            if measured.elapsed() >= METER_INTERVAL {
                measured = std::time::Instant::now();
                within(
                    limit,
                    "count pending outbox rows",
                    measure_pending(&mut conn, &service),
                )
                .await?;
            }
            if vacuum.due() {
                within(limit, "vacuum the outbox", vacuum.run(&mut conn)).await?;
            }
            // The claim and the delete are database steps, the receipts have their own limit.
            let batch_limit = self.tuning.publish_timeout + limit;
            match within(
                batch_limit,
                "claim, publish and delete a batch",
                publish_batch(
                    &mut conn,
                    &mut self.publisher,
                    self.tuning.batch_size,
                    self.tuning.publish_timeout,
                ),
            )
            .await?
            {
                // A batch smaller than the limit took every row committed when it claimed them:
                // what committed since has notified, so wait for that rather than claim again at
                // once (an empty claim, a transaction, after nearly every batch under light load).
                Outcome::Published(n) => {
                    metrics::histogram!("relay_batch_size", "outbox" => service.clone())
                        .record(n as f64);
                    published_since_log += n;
                    vacuum.deleted(n);
                    tracing::debug!(outbox = %service, rows = n, "published batch");
                    if i64::try_from(n).unwrap_or(i64::MAX) >= self.tuning.batch_size {
                        continue;
                    }
                }
                Outcome::Empty => {
                    // Nothing committed is waiting: no need to count.
                    set_pending(&service, 0, 0.0);
                    if published_since_log > 0 {
                        tracing::info!(outbox = %service, rows = published_since_log, "outbox drained");
                        published_since_log = 0;
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(self.tuning.poll_interval) => {}
                notified = listener.recv() => {
                    notified.context("wait for NOTIFY")?;
                }
            }
        }
        // Closing the session frees the leader lock at once for a standby.
        metrics::gauge!("relay_leader", "outbox" => service.clone()).set(0.0);
        let _ = conn.close().await;
        Ok(())
    }
}

/// The leader's own vacuum of its outbox: every published row is deleted, so the table fills
/// with dead rows that every claim reads until they are vacuumed. Run at most once per
/// interval, and only after rows were deleted. Without the right to vacuum the table the server
/// skips it with a warning, and autovacuum is left to do it.
struct Vacuum {
    interval: Duration,
    last: std::time::Instant,
    deleted: usize,
}

impl Vacuum {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: std::time::Instant::now(),
            deleted: 0,
        }
    }

    fn deleted(&mut self, rows: usize) {
        self.deleted += rows;
    }

    fn due(&self) -> bool {
        !self.interval.is_zero() && self.deleted > 0 && self.last.elapsed() >= self.interval
    }

    async fn run(&mut self, conn: &mut PgConnection) -> anyhow::Result<()> {
        // The simple protocol: VACUUM cannot run inside the extended protocol's implicit
        // transaction.
        sqlx::raw_sql("vacuum outbox")
            .execute(conn)
            .await
            .context("vacuum the outbox")?;
        metrics::counter!("relay_vacuums_total").increment(1);
        self.deleted = 0;
        self.last = std::time::Instant::now();
        Ok(())
    }
}

/// How often the pending rows are counted while a backlog is being published.
const METER_INTERVAL: Duration = Duration::from_secs(1);

/// Sets the outbox's pending-row count and the age of its oldest pending row.
async fn measure_pending(conn: &mut PgConnection, service: &str) -> anyhow::Result<()> {
    let row = sqlx::query!(
        r#"
        select count(*) as "pending!",
               coalesce(extract(epoch from now() - min(created_at)), 0)::float8 as "oldest!"
        from outbox
        "#
    )
    .fetch_one(conn)
    .await
    .context("count pending outbox rows")?;
    set_pending(service, row.pending, row.oldest);
    Ok(())
}

fn set_pending(service: &str, pending: i64, oldest_seconds: f64) {
    metrics::gauge!("outbox_pending_rows", "outbox" => service.to_owned()).set(pending as f64);
    metrics::gauge!("outbox_oldest_pending_age_seconds", "outbox" => service.to_owned())
        .set(oldest_seconds);
}

/// Sleeps for `delay` unless `shutdown` comes first; returns whether shutdown came.
async fn sleep_or_stop(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(delay) => false,
    }
}

/// Exponential back-off from 100 ms, doubling up to a maximum, started again by [`Backoff::reset`].
#[derive(Debug)]
struct Backoff {
    delays: Delays,
    max: Duration,
}

impl Backoff {
    const START: Duration = Duration::from_millis(100);

    fn new(max: Duration) -> Self {
        Self {
            delays: exponential(Self::START, max),
            max,
        }
    }

    fn next(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.max)
    }

    fn reset(&mut self) {
        self.delays = exponential(Self::START, self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500));
        let delays: Vec<u128> = (0..5).map(|_| b.next().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(100));
    }
}
