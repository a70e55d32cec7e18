//! Keeping the dedup tables bounded: idempotency records and inbox rows past their retention
//! ([`RetentionArgs`]) are deleted in small batches, by one loop every service process runs.
//!
//! The tables exist so a redelivered message, or a retried request, is recognised and skipped;
//! a row only has to outlive every redelivery of its message, so the retention is set longer
//! than any (7 days, the broker's namespace retention, by default). The outbox needs no pruning
//! (the relay deletes each row it publishes), and dead letters are kept by the broker's
//! namespace retention like every other topic.
//!
//! [`prune`] is the step (one pass over both tables, which tests call directly); [`run`] is the
//! thin loop around it.

use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

pub use crate::config::RetentionArgs;

/// Rows one pass deleted, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub idempotency_keys: u64,
    pub inbox: u64,
}

/// A table whose rows outlive their use.
#[derive(Debug, Clone, Copy)]
enum Table {
    IdempotencyKeys,
    Inbox,
}

/// Deletes up to `limit` rows of `table` older than `retention`, oldest first; returns how many.
/// The timestamp index finds them (the order keeps the planner on it), their `ctid`s make the
/// delete a TID scan, and rows locked by a transaction in flight are skipped, so pruning never
/// waits on a command.
async fn batch(pool: &PgPool, table: Table, retention: Duration, limit: u32) -> sqlx::Result<u64> {
    let (secs, limit) = (retention.as_secs_f64(), i64::from(limit));
    let deleted = match table {
        Table::IdempotencyKeys => {
            sqlx::query!(
                r#"
                delete from idempotency_keys
                where ctid = any(array(
                    select ctid from idempotency_keys
                    where created_at < now() - make_interval(secs => $1)
                    order by created_at
                    limit $2
                    for update skip locked
                ))
                "#,
                secs,
                limit,
            )
            .execute(pool)
            .await?
        }
        Table::Inbox => {
            sqlx::query!(
                r#"
                delete from inbox
                where ctid = any(array(
                    select ctid from inbox
                    where processed_at < now() - make_interval(secs => $1)
                    order by processed_at
                    limit $2
                    for update skip locked
                ))
                "#,
                secs,
                limit,
            )
            .execute(pool)
            .await?
        }
    };
    Ok(deleted.rows_affected())
}

/// One pruning pass: deletes every idempotency record and inbox row past its retention, a batch
/// per statement (each its own transaction, so no lock is held long), until a batch comes back
/// short or `stop` is cancelled. Counts go to the `records_pruned_total{table}` counter.
pub async fn prune(
    pool: &PgPool,
    policy: &RetentionArgs,
    stop: &CancellationToken,
) -> anyhow::Result<Pruned> {
    let mut pruned = Pruned::default();
    loop {
        let n = batch(
            pool,
            Table::IdempotencyKeys,
            policy.idempotency,
            policy.batch_size,
        )
        .await
        .context("prune idempotency records")?;
        metrics::counter!("records_pruned_total", "table" => "idempotency_keys").increment(n);
        pruned.idempotency_keys += n;
        if n < u64::from(policy.batch_size) || stop.is_cancelled() {
            break;
        }
    }
    loop {
        let n = batch(pool, Table::Inbox, policy.inbox, policy.batch_size)
            .await
            .context("prune inbox rows")?;
        metrics::counter!("records_pruned_total", "table" => "inbox").increment(n);
        pruned.inbox += n;
        if n < u64::from(policy.batch_size) || stop.is_cancelled() {
            break;
        }
    }
    Ok(pruned)
}

/// Runs [`prune`] every `policy.interval` (the first one interval after start, so replicas
/// restarting together do not all prune at once) until `stop`. A failed pass is logged and tried
/// again at the next interval: pruning late harms nothing.
pub async fn run(
    pool: PgPool,
    policy: RetentionArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let first = tokio::time::Instant::now() + policy.interval;
    let mut ticks = tokio::time::interval_at(first, policy.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = ticks.tick() => {}
        }
        match prune(&pool, &policy, &stop).await {
            Ok(p) if p == Pruned::default() => tracing::debug!("nothing to prune"),
            Ok(p) => tracing::info!(
                idempotency_keys = p.idempotency_keys,
                inbox = p.inbox,
                idempotency_retention = ?policy.idempotency,
                inbox_retention = ?policy.inbox,
                "pruned records past their retention"
            ),
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                next_in = ?policy.interval,
                "pruning failed; trying again at the next interval"
            ),
        }
    }
}
