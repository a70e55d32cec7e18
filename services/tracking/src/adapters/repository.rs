//! SQL for tracking events and evidence. Every function borrows the caller's connection
//! (usually a transaction the handler owns), so it never decides transaction boundaries.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{EventKind, EvidenceKind, NewEvent, NewEvidence};

/// A tracking event row.
#[derive(Debug, Clone)]
pub struct TrackingEventRow {
    pub id: Uuid,
    pub campaign_id: Uuid,
    pub creator_id: Uuid,
    pub kind: String,
    /// Purchases only (the table's check constraint holds both or neither).
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub product_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
}

impl TrackingEventRow {
    /// The kind as the domain knows it (the table's check constraint guarantees it parses).
    pub fn kind(&self) -> Option<EventKind> {
        EventKind::parse(&self.kind)
    }
}

/// An evidence row.
#[derive(Debug, Clone)]
pub struct EvidenceRow {
    pub id: Uuid,
    pub campaign_id: Uuid,
    pub creator_id: Uuid,
    pub kind: String,
    pub url: String,
    pub note: String,
    pub submitted_at: DateTime<Utc>,
}

impl EvidenceRow {
    /// The kind as the domain knows it (the table's check constraint guarantees it parses).
    pub fn kind(&self) -> Option<EvidenceKind> {
        EvidenceKind::parse(&self.kind)
    }
}

/// Which rows a page holds: optional filters, and the last id of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub campaign_id: Option<Uuid>,
    pub creator_id: Option<Uuid>,
    /// Rows older than this id (exclusive), when given.
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// Inserts an event recorded `now`; it occurred at `new.occurred_at`, or `now` if not reported.
pub async fn insert_event(
    conn: &mut PgConnection,
    id: Uuid,
    new: &NewEvent,
    now: DateTime<Utc>,
) -> sqlx::Result<TrackingEventRow> {
    sqlx::query_as!(
        TrackingEventRow,
        r#"
        insert into tracking_events (id, campaign_id, creator_id, kind, amount_minor, currency,
                                     product_id, occurred_at, recorded_at)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        returning *
        "#,
        id,
        new.campaign_id,
        new.creator_id,
        new.kind.as_str(),
        new.amount.as_ref().map(|a| a.minor),
        new.amount.as_ref().map(|a| a.currency.as_str()),
        new.product_id.as_deref(),
        new.occurred_at.unwrap_or(now),
        now,
    )
    .fetch_one(conn)
    .await
}

pub async fn find_event(
    conn: &mut PgConnection,
    id: Uuid,
) -> sqlx::Result<Option<TrackingEventRow>> {
    sqlx::query_as!(
        TrackingEventRow,
        r#"
        select * from tracking_events where id = $1
        "#,
        id,
    )
    .fetch_optional(conn)
    .await
}

/// One page of events, newest first.
pub async fn list_events(
    conn: &mut PgConnection,
    page: Page,
) -> sqlx::Result<Vec<TrackingEventRow>> {
    sqlx::query_as!(
        TrackingEventRow,
        r#"
        select * from tracking_events
        where ($1::uuid is null or campaign_id = $1)
          and ($2::uuid is null or creator_id = $2)
          and ($3::uuid is null or id < $3)
        order by id desc
        limit $4
        "#,
        page.campaign_id,
        page.creator_id,
        page.before,
        page.limit,
    )
    .fetch_all(conn)
    .await
}

pub async fn insert_evidence(
    conn: &mut PgConnection,
    id: Uuid,
    new: &NewEvidence,
    now: DateTime<Utc>,
) -> sqlx::Result<EvidenceRow> {
    sqlx::query_as!(
        EvidenceRow,
        r#"
        insert into evidence (id, campaign_id, creator_id, kind, url, note, submitted_at)
        values ($1, $2, $3, $4, $5, $6, $7)
        returning *
        "#,
        id,
        new.campaign_id,
        new.creator_id,
        new.kind.as_str(),
        &new.url,
        &new.note,
        now,
    )
    .fetch_one(conn)
    .await
}

/// One page of evidence, newest first.
pub async fn list_evidence(conn: &mut PgConnection, page: Page) -> sqlx::Result<Vec<EvidenceRow>> {
    sqlx::query_as!(
        EvidenceRow,
        r#"
        select * from evidence
        where ($1::uuid is null or campaign_id = $1)
          and ($2::uuid is null or creator_id = $2)
          and ($3::uuid is null or id < $3)
        order by id desc
        limit $4
        "#,
        page.campaign_id,
        page.creator_id,
        page.before,
        page.limit,
    )
    .fetch_all(conn)
    .await
}
