//! The inbox: which messages a consumer has processed, recorded in the same transaction as the
//! handler's writes, so a redelivered message is recognised and skipped.

use service_runtime::outbox::{self, OutboxMessage};
use sqlx::{Acquire, PgConnection, Postgres};

use crate::Failure;

/// Records that `consumer` processed `message_id`; `false` if it already had (a duplicate).
/// Call it first in the handler's transaction: a concurrent duplicate then waits on the key and
/// sees the first one's outcome.
pub async fn record(
    conn: &mut PgConnection,
    consumer: &str,
    message_id: &str,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query!(
        r#"
        insert into inbox (consumer, message_id, outcome)
        values ($1, $2, 'applied')
        on conflict (consumer, message_id) do nothing
        "#,
        consumer,
        message_id,
    )
    .execute(conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        metrics::counter!("inbox_duplicates_total", "consumer" => consumer.to_owned()).increment(1);
    }
    Ok(inserted == 1)
}

/// Records a batch of `consumer`'s messages in one statement, each `(message_id, reason)`:
/// applied without a reason, rejected with one. Returns the ids recorded now: an id recorded
/// before (a duplicate) is not among them, and one given twice is there once.
pub async fn record_set(
    conn: &mut PgConnection,
    consumer: &str,
    entries: &[(&str, Option<&str>)],
) -> sqlx::Result<Vec<String>> {
    let ids: Vec<&str> = entries.iter().map(|(id, _)| *id).collect();
    let reasons: Vec<Option<&str>> = entries.iter().map(|(_, reason)| *reason).collect();
    let recorded = sqlx::query_scalar!(
        r#"
        insert into inbox (consumer, message_id, outcome, reason)
        select $1, message_id, case when reason is null then 'applied' else 'rejected' end, reason
        from unnest($2::text[], $3::text[]) as m(message_id, reason)
        on conflict (consumer, message_id) do nothing
        returning message_id
        "#,
        consumer,
        &ids as _,
        &reasons as _,
    )
    .fetch_all(conn)
    .await?;
    let duplicates = entries.len() - recorded.len();
    if duplicates > 0 {
        metrics::counter!("inbox_duplicates_total", "consumer" => consumer.to_owned())
            .increment(duplicates as u64);
    }
    Ok(recorded)
}

/// Records that `consumer` rejected `message_id` for `reason`; `false` if it was recorded before.
pub async fn reject(
    conn: &mut PgConnection,
    consumer: &str,
    message_id: &str,
    reason: &str,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query!(
        r#"
        insert into inbox (consumer, message_id, outcome, reason)
        values ($1, $2, 'rejected', $3)
        on conflict (consumer, message_id) do nothing
        "#,
        consumer,
        message_id,
        reason,
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Rejects a message for good, in one transaction (or, on a connection already in one, a
/// savepoint): records it in the inbox and, the first time only, appends `event` (the service's
/// rejection event) to the outbox. Returns the failure the consumer loop should see: `Rejected`
/// (acknowledge), or `Transient` if recording failed.
pub async fn record_rejection<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    consumer: &str,
    message_id: &str,
    reason: String,
    event: OutboxMessage,
) -> Failure {
    let result: anyhow::Result<()> = async {
        let mut tx = db.begin().await?;
        if reject(&mut tx, consumer, message_id, &reason).await? {
            outbox::append(&mut tx, &[event]).await?;
        }
        tx.commit().await?;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Failure::Rejected(reason),
        Err(e) => Failure::Transient(e.context("record the rejection")),
    }
}
