//! The webhook service's SQL: the campaign owners, endpoints and their secrets, messages,
//! lanes, deliveries and attempts. Set-based where the feed and the dispatcher write many rows.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// The channel a committed delivery wakes the dispatcher on.
pub const WAKE_CHANNEL: &str = "webhook_deliveries";

pub async fn upsert_campaign(
    conn: &mut PgConnection,
    id: Uuid,
    advertiser: Uuid,
) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into campaigns (id, advertiser_id) values ($1, $2)
         on conflict (id) do update set advertiser_id = excluded.advertiser_id
         where campaigns.advertiser_id <> excluded.advertiser_id",
        id,
        advertiser
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The advertisers of the campaigns among `ids` that are known.
pub async fn campaign_owners(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> sqlx::Result<HashMap<Uuid, Uuid>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query!(
        "select id, advertiser_id from campaigns where id = any($1)",
        ids
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.advertiser_id)).collect())
}

/// An enabled endpoint's address for the feed: who owns it, what it wants, since when.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub event_types: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// When the oldest enabled endpoint was registered; `None` when there is none.
pub async fn oldest_endpoint(conn: &mut PgConnection) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar!("select min(created_at) from endpoints where enabled")
        .fetch_one(conn)
        .await
}

/// The enabled endpoints of `owners`.
pub async fn subscribers(
    conn: &mut PgConnection,
    owners: &[Uuid],
) -> sqlx::Result<Vec<Subscriber>> {
    if owners.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_as!(
        Subscriber,
        "select id, owner_id, event_types, created_at from endpoints
         where enabled and owner_id = any($1)",
        owners
    )
    .fetch_all(conn)
    .await
}

/// A message to store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub event_type: String,
    pub aggregate: String,
    pub payload: String,
    pub created_at: DateTime<Utc>,
}

/// Stores messages; one stored before (the same event through another path) is kept as it is.
pub async fn insert_messages(conn: &mut PgConnection, messages: &[NewMessage]) -> sqlx::Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = messages.iter().map(|m| m.id.as_str()).collect();
    let types: Vec<&str> = messages.iter().map(|m| m.event_type.as_str()).collect();
    let aggregates: Vec<&str> = messages.iter().map(|m| m.aggregate.as_str()).collect();
    let payloads: Vec<&str> = messages.iter().map(|m| m.payload.as_str()).collect();
    let times: Vec<DateTime<Utc>> = messages.iter().map(|m| m.created_at).collect();
    sqlx::query!(
        "insert into messages (id, event_type, aggregate, payload, created_at)
         select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
         on conflict (id) do nothing",
        &ids as _,
        &types as _,
        &aggregates as _,
        &payloads as _,
        &times
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds `count` messages to each lane `(endpoint, aggregate)` (given in ascending order: one lock
/// order with the dispatcher); returns how many each held before, in the same order.
pub async fn queue(
    conn: &mut PgConnection,
    lanes: &[(Uuid, String, i32)],
) -> sqlx::Result<Vec<i32>> {
    let endpoints: Vec<Uuid> = lanes.iter().map(|l| l.0).collect();
    let aggregates: Vec<&str> = lanes.iter().map(|l| l.1.as_str()).collect();
    let counts: Vec<i32> = lanes.iter().map(|l| l.2).collect();
    let rows = sqlx::query!(
        r#"
        insert into lanes (endpoint_id, aggregate, queued)
        select * from unnest($1::uuid[], $2::text[], $3::int4[]) order by 1, 2
        on conflict (endpoint_id, aggregate) do update set queued = lanes.queued + excluded.queued
        returning endpoint_id, aggregate, queued
        "#,
        &endpoints,
        &aggregates as _,
        &counts
    )
    .fetch_all(&mut *conn)
    .await?;
    let after: HashMap<(Uuid, String), i32> = rows
        .into_iter()
        .map(|r| ((r.endpoint_id, r.aggregate), r.queued))
        .collect();
    Ok(lanes
        .iter()
        .map(|(e, a, n)| after.get(&(*e, a.clone())).map_or(0, |q| q - n))
        .collect())
}

/// A delivery to insert.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub message_id: String,
    pub endpoint_id: Uuid,
    pub aggregate: String,
    /// `pending` or `blocked`.
    pub status: &'static str,
}

/// Inserts deliveries in the given order (their `seq` ascends in it), due now; returns whether
/// any is pending (the dispatcher should wake).
pub async fn insert_deliveries(
    conn: &mut PgConnection,
    deliveries: &[NewDelivery],
) -> sqlx::Result<bool> {
    if deliveries.is_empty() {
        return Ok(false);
    }
    let messages: Vec<&str> = deliveries.iter().map(|d| d.message_id.as_str()).collect();
    let endpoints: Vec<Uuid> = deliveries.iter().map(|d| d.endpoint_id).collect();
    let aggregates: Vec<&str> = deliveries.iter().map(|d| d.aggregate.as_str()).collect();
    let statuses: Vec<&str> = deliveries.iter().map(|d| d.status).collect();
    sqlx::query!(
        "insert into deliveries (message_id, endpoint_id, aggregate, status, next_attempt_at, created_at)
         select m, e, a, s, now(), now()
         from unnest($1::text[], $2::uuid[], $3::text[], $4::text[]) with ordinality as u(m, e, a, s, n)
         order by n",
        &messages as _,
        &endpoints,
        &aggregates as _,
        &statuses as _
    )
    .execute(conn)
    .await?;
    Ok(deliveries.iter().any(|d| d.status == "pending"))
}

/// Wakes the dispatcher when the transaction commits.
pub async fn wake(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query!("select pg_notify($1, '')", WAKE_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}
