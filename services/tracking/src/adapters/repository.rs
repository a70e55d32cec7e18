//! SQL for tracking events and evidence. Every function borrows the caller's connection
//! (usually a transaction the handler owns), so it never decides transaction boundaries.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{CampaignStatus, EventKind, EvidenceKind, NewEvent, NewEvidence, Standing};

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

/// Inserts many events in one statement (`(id, event)`, recorded at `now`); returns the rows
/// (in no particular order).
pub async fn insert_events(
    conn: &mut PgConnection,
    events: &[(Uuid, NewEvent)],
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<TrackingEventRow>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = events.iter().map(|(id, _)| *id).collect();
    let campaigns: Vec<Uuid> = events.iter().map(|(_, e)| e.campaign_id).collect();
    let creators: Vec<Uuid> = events.iter().map(|(_, e)| e.creator_id).collect();
    let kinds: Vec<&str> = events.iter().map(|(_, e)| e.kind.as_str()).collect();
    let amounts: Vec<Option<i64>> = events
        .iter()
        .map(|(_, e)| e.amount.as_ref().map(|a| a.minor))
        .collect();
    let currencies: Vec<Option<&str>> = events
        .iter()
        .map(|(_, e)| e.amount.as_ref().map(|a| a.currency.as_str()))
        .collect();
    let products: Vec<Option<&str>> = events
        .iter()
        .map(|(_, e)| e.product_id.as_deref())
        .collect();
    let occurred: Vec<DateTime<Utc>> = events
        .iter()
        .map(|(_, e)| e.occurred_at.unwrap_or(now))
        .collect();
    sqlx::query_as!(
        TrackingEventRow,
        r#"
        insert into tracking_events (id, campaign_id, creator_id, kind, amount_minor, currency,
                                     product_id, occurred_at, recorded_at)
        select e.id, e.campaign_id, e.creator_id, e.kind, e.amount_minor, e.currency,
               e.product_id, e.occurred_at, $9
        from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::int8[], $6::text[],
                    $7::text[], $8::timestamptz[])
             as e(id, campaign_id, creator_id, kind, amount_minor, currency, product_id, occurred_at)
        returning *
        "#,
        &ids,
        &campaigns,
        &creators,
        &kinds as _,
        &amounts as _,
        &currencies as _,
        &products as _,
        &occurred,
        now,
    )
    .fetch_all(conn)
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

// ---- the copy of the campaigns (fed by campaign events) ----

/// The standing of many (campaign, creator) pairs in one query: the campaign's status and
/// whether the creator accepted it. A pair whose campaign is unknown is absent.
pub async fn standings(
    conn: &mut PgConnection,
    pairs: &[(Uuid, Uuid)],
) -> sqlx::Result<std::collections::HashMap<(Uuid, Uuid), Standing>> {
    let campaigns: Vec<Uuid> = pairs.iter().map(|(c, _)| *c).collect();
    let creators: Vec<Uuid> = pairs.iter().map(|(_, c)| *c).collect();
    let rows = sqlx::query!(
        r#"
        select p.campaign_id as "campaign_id!", p.creator_id as "creator_id!", c.status,
               exists (select 1 from acceptances a
                       where a.campaign_id = p.campaign_id and a.creator_id = p.creator_id) as "accepted!"
        from (select distinct * from unnest($1::uuid[], $2::uuid[])) as p(campaign_id, creator_id)
        join campaigns c on c.campaign_id = p.campaign_id
        "#,
        &campaigns,
        &creators,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                (row.campaign_id, row.creator_id),
                Standing {
                    // The table's check constraint guarantees it parses.
                    status: CampaignStatus::parse(&row.status).unwrap_or(CampaignStatus::Closed),
                    accepted: row.accepted,
                },
            )
        })
        .collect())
}

/// Inserts or updates a campaign's status if `version` is newer than what is stored.
pub async fn upsert_campaign(
    conn: &mut PgConnection,
    campaign_id: Uuid,
    status: CampaignStatus,
    version: i64,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"
        insert into campaigns (campaign_id, status, version) values ($1, $2, $3)
        on conflict (campaign_id) do update
            set status = excluded.status, version = excluded.version, updated_at = now()
            where campaigns.version < excluded.version
        "#,
        campaign_id,
        status.as_str(),
        version,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that the campaign reached `version` without a change of status; returns whether the
/// campaign is known.
pub async fn touch_campaign(
    conn: &mut PgConnection,
    campaign_id: Uuid,
    version: i64,
) -> sqlx::Result<bool> {
    let known = sqlx::query_scalar!(
        r#"
        update campaigns set version = greatest(version, $2) where campaign_id = $1 returning version
        "#,
        campaign_id,
        version,
    )
    .fetch_optional(conn)
    .await?;
    Ok(known.is_some())
}

/// Records a creator's acceptance of a known campaign (once).
pub async fn insert_acceptance(
    conn: &mut PgConnection,
    campaign_id: Uuid,
    creator_id: Uuid,
    accepted_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"
        insert into acceptances (campaign_id, creator_id, accepted_at) values ($1, $2, $3)
        on conflict do nothing
        "#,
        campaign_id,
        creator_id,
        accepted_at,
    )
    .execute(conn)
    .await?;
    Ok(())
}
