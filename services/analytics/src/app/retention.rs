//! Keeping the audit trail to its retention: messages that happened longer ago than
//! `--audit-retention` are deleted, a thousand per statement, every `--prune-interval`.

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::adapters::repository as repo;

/// Deletes the audit trail's messages older than `retention`, every `every`.
pub async fn prune_audit(
    pool: PgPool,
    retention: Duration,
    every: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let before =
            Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        loop {
            let pruned = match pool.acquire().await {
                Ok(mut conn) => repo::prune_audit(&mut conn, before, 1000).await,
                Err(e) => Err(e),
            };
            match pruned {
                Ok(0) => break,
                Ok(n) => metrics::counter!("records_pruned_total", "table" => "audit_messages")
                    .increment(n),
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "prune the audit trail");
                    break;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}
