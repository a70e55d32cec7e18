//! SQL for campaigns, user streams and notifications. Every function borrows the caller's
//! connection (the handler's transaction where there is one).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::Campaign;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub sequence: i64,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub subject_type: String,
    pub subject_id: Uuid,
    pub correlation_id: String,
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

// ---- campaigns (fed by campaign events) ----

/// Stores a campaign unless what is stored is as new as `version` or newer.
pub async fn upsert_campaign(
    conn: &mut PgConnection,
    campaign: &Campaign,
    version: i64,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"
        insert into campaigns (id, advertiser_id, name, version)
        values ($1, $2, $3, $4)
        on conflict (id) do update
            set advertiser_id = excluded.advertiser_id,
                name = excluded.name,
                version = excluded.version
            where campaigns.version < excluded.version
        "#,
        campaign.id,
        campaign.advertiser_id,
        &campaign.name,
        version,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find_campaign(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Campaign>> {
    sqlx::query_as!(
        Campaign,
        r#"
        select id, advertiser_id, name from campaigns where id = $1
        "#,
        id,
    )
    .fetch_optional(conn)
    .await
}

// ---- notifications ----

/// The user's next sequence number. Locks the user's stream row until the transaction ends, so
/// the user's notifications are numbered and committed one at a time, in order.
pub async fn next_sequence(conn: &mut PgConnection, user_id: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"
        insert into user_streams (user_id, last_sequence) values ($1, 1)
        on conflict (user_id) do update set last_sequence = user_streams.last_sequence + 1
        returning last_sequence
        "#,
        user_id,
    )
    .fetch_one(conn)
    .await
}

/// Inserts a notification derived from `message_id` (the insert trigger NOTIFYs its user).
pub async fn insert_notification(
    conn: &mut PgConnection,
    row: &NotificationRow,
    message_id: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"
        insert into notifications (id, user_id, sequence, kind, title, body, subject_type,
                                   subject_id, correlation_id, message_id, created_at)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        "#,
        row.id,
        row.user_id,
        row.sequence,
        &row.kind,
        &row.title,
        &row.body,
        &row.subject_type,
        row.subject_id,
        &row.correlation_id,
        message_id,
        row.created_at,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A page of the user's notifications, newest first, below `before` (a sequence) if given.
pub async fn list(
    conn: &mut PgConnection,
    user_id: Uuid,
    before: Option<i64>,
    unread_only: bool,
    limit: i64,
) -> sqlx::Result<Vec<NotificationRow>> {
    sqlx::query_as!(
        NotificationRow,
        r#"
        select id, user_id, sequence, kind, title, body, subject_type, subject_id,
               correlation_id, read_at, created_at
        from notifications
        where user_id = $1
          and ($2::int8 is null or sequence < $2)
          and (not $3 or read_at is null)
        order by sequence desc
        limit $4
        "#,
        user_id,
        before,
        unread_only,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// The user's notifications after `after` (a sequence), oldest first.
pub async fn after(
    conn: &mut PgConnection,
    user_id: Uuid,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<NotificationRow>> {
    sqlx::query_as!(
        NotificationRow,
        r#"
        select id, user_id, sequence, kind, title, body, subject_type, subject_id,
               correlation_id, read_at, created_at
        from notifications
        where user_id = $1 and sequence > $2
        order by sequence
        limit $3
        "#,
        user_id,
        after,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// The sequence of the user's notification `id`, if it is the user's.
pub async fn sequence_of(
    conn: &mut PgConnection,
    user_id: Uuid,
    id: Uuid,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar!(
        r#"
        select sequence from notifications where id = $1 and user_id = $2
        "#,
        id,
        user_id,
    )
    .fetch_optional(conn)
    .await
}

pub async fn unread_count(conn: &mut PgConnection, user_id: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"
        select count(*) as "unread!" from notifications where user_id = $1 and read_at is null
        "#,
        user_id,
    )
    .fetch_one(conn)
    .await
}

/// Marks the user's notification read at `now` unless it already was (the first time stays);
/// `None` if the user has no such notification.
pub async fn mark_read(
    conn: &mut PgConnection,
    user_id: Uuid,
    id: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<NotificationRow>> {
    sqlx::query_as!(
        NotificationRow,
        r#"
        update notifications set read_at = coalesce(read_at, $3)
        where id = $1 and user_id = $2
        returning id, user_id, sequence, kind, title, body, subject_type, subject_id,
                  correlation_id, read_at, created_at
        "#,
        id,
        user_id,
        now,
    )
    .fetch_optional(conn)
    .await
}
