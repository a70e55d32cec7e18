//! The relay's step function: claim a batch, publish it, delete it, commit. Tests drive it until
//! it reports [`Outcome::Empty`]; the leader loop calls it in a loop.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::{Connection as _, PgConnection};
use uuid::Uuid;

use crate::publisher::Publisher;

/// A claimed outbox row (`FromRow` for the benchmarks, which read rows their own way).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub message_id: Uuid,
    pub topic: String,
    pub message_type: String,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    pub aggregate_version: i64,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub payload: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// This many rows were published and deleted.
    Published(usize),
    /// No committed rows were waiting.
    Empty,
}

/// Claims up to `limit` rows in id order, publishes them, awaits every receipt, deletes them and
/// commits. On any error the transaction rolls back and the rows stay for the next attempt.
///
/// There is no cursor: a row that commits late with a lower id than rows already published is
/// still present, so a later batch picks it up.
#[tracing::instrument(name = "db.transaction", skip_all, fields(otel.kind = "internal", db.system = "postgresql", operation = "publish_batch"))]
pub async fn publish_batch(
    conn: &mut PgConnection,
    publisher: &mut Publisher,
    limit: i64,
    publish_timeout: Duration,
) -> anyhow::Result<Outcome> {
    let mut tx = conn.begin().await.context("begin claim transaction")?;
    let rows = sqlx::query_as!(
        OutboxRow,
        r#"
        select id, message_id, topic, message_type, aggregate_type, aggregate_id,
               aggregate_version, correlation_id, causation_id, traceparent, tracestate,
               payload, created_at
        from outbox
        order by id
        limit $1
        for update skip locked
        "#,
        limit,
    )
    .fetch_all(&mut *tx)
    .await
    .context("claim outbox rows")?;
    if rows.is_empty() {
        tx.commit().await.context("end empty claim")?;
        return Ok(Outcome::Empty);
    }
    publisher.publish(&rows, publish_timeout).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    sqlx::query!(
        r#"
        delete from outbox where id = any($1)
        "#,
        &ids,
    )
    .execute(&mut *tx)
    .await
    .context("delete published outbox rows")?;
    tx.commit().await.context("commit published batch")?;
    Ok(Outcome::Published(rows.len()))
}
