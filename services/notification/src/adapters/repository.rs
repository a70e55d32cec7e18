//! SQL for campaigns, user streams and notifications. Every function borrows the caller's
//! connection (the handler's transaction where there is one).

use std::collections::HashMap;

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

/// The stored campaigns among `ids`, by id.
pub async fn find_campaigns(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> sqlx::Result<HashMap<Uuid, Campaign>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(sqlx::query_as!(
        Campaign,
        "select id, advertiser_id, name from campaigns where id = any($1)",
        ids,
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(|c| (c.id, c))
    .collect())
}

// ---- notifications ----

/// Advances each user's stream by a count, each `(user, count)` (ascending users: the one
/// order every transaction locks them in), in one statement; returns each user's last sequence
/// after it. The rows stay locked until the transaction ends, so a user's notifications are
/// numbered and committed one batch at a time, in order.
pub async fn advance_sequences(
    conn: &mut PgConnection,
    counts: &[(Uuid, i64)],
) -> sqlx::Result<Vec<(Uuid, i64)>> {
    let users: Vec<Uuid> = counts.iter().map(|c| c.0).collect();
    let by: Vec<i64> = counts.iter().map(|c| c.1).collect();
    Ok(sqlx::query!(
        r#"
        insert into user_streams (user_id, last_sequence)
        select * from unnest($1::uuid[], $2::int8[])
        on conflict (user_id) do update set last_sequence = user_streams.last_sequence + excluded.last_sequence
        returning user_id, last_sequence
        "#,
        &users,
        &by,
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(|r| (r.user_id, r.last_sequence))
    .collect())
}

/// Inserts notifications in one statement, each derived from the message id beside it (the
/// insert trigger NOTIFYs each user).
pub async fn insert_notifications(
    conn: &mut PgConnection,
    rows: &[NotificationRow],
    message_ids: &[&str],
) -> sqlx::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let text = |f: fn(&NotificationRow) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
    let id: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let user: Vec<Uuid> = rows.iter().map(|r| r.user_id).collect();
    let sequence: Vec<i64> = rows.iter().map(|r| r.sequence).collect();
    let subject: Vec<Uuid> = rows.iter().map(|r| r.subject_id).collect();
    let created: Vec<DateTime<Utc>> = rows.iter().map(|r| r.created_at).collect();
    sqlx::query!(
        r#"
        insert into notifications (id, user_id, sequence, kind, title, body, subject_type,
                                   subject_id, correlation_id, message_id, created_at)
        select * from unnest($1::uuid[], $2::uuid[], $3::int8[], $4::text[], $5::text[], $6::text[],
                             $7::text[], $8::uuid[], $9::text[], $10::text[], $11::timestamptz[])
        "#,
        &id,
        &user,
        &sequence,
        &text(|r| &r.kind) as _,
        &text(|r| &r.title) as _,
        &text(|r| &r.body) as _,
        &text(|r| &r.subject_type) as _,
        &subject,
        &text(|r| &r.correlation_id) as _,
        message_ids as _,
        &created,
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
