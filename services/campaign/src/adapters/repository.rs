//! SQL for campaigns, videos and acceptances. Every function borrows the caller's connection
//! (usually a transaction the handler owns), so it never decides transaction boundaries.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{
    CampaignStatus, NewAcceptance, NewCampaign, NewVideo, PauseReason, TrackingSettings,
};

/// A campaign row.
#[derive(Debug, Clone)]
pub struct CampaignRow {
    pub id: Uuid,
    pub advertiser_id: Uuid,
    pub name: String,
    pub description: String,
    pub commission_rate_bps: i32,
    pub budget_minor: i64,
    pub currency: String,
    pub status: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub pause_reason: Option<String>,
    pub landing_url: Option<String>,
    pub landing_domains: Option<Vec<String>>,
    pub click_id_param: Option<String>,
    pub attribution_window_secs: Option<i64>,
    pub min_click_to_conversion_secs: Option<i64>,
    pub fallback_url: Option<String>,
    /// Whole seconds, 0..=365 days (the table's check constraint).
    pub hold_period_secs: i64,
}

impl CampaignRow {
    /// The status as the domain knows it (the table's check constraint guarantees it parses).
    pub fn status(&self) -> Option<CampaignStatus> {
        CampaignStatus::parse(&self.status)
    }

    /// Why it is paused; `None` unless it is.
    pub fn pause_reason(&self) -> Option<PauseReason> {
        self.pause_reason.as_deref().and_then(PauseReason::parse)
    }

    /// Its tracking settings; `None` until they are set (the table's check constraint keeps the
    /// columns null or set together).
    pub fn tracking(&self) -> Option<TrackingSettings> {
        Some(TrackingSettings {
            landing_url: self.landing_url.clone()?,
            landing_domains: self.landing_domains.clone()?,
            click_id_param: self.click_id_param.clone()?,
            attribution_window_secs: self.attribution_window_secs?,
            min_click_to_conversion_secs: self.min_click_to_conversion_secs?,
            fallback_url: self.fallback_url.clone(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct VideoRow {
    pub id: Uuid,
    pub campaign_id: Uuid,
    pub url: String,
    pub title: String,
    pub added_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct AcceptanceRow {
    pub campaign_id: Uuid,
    pub creator_id: Uuid,
    pub accepted_at: DateTime<Utc>,
}

/// Whether a write hit the named constraint.
pub fn violates(error: &sqlx::Error, constraint: &str) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.constraint() == Some(constraint))
}

pub async fn insert_campaign(
    conn: &mut PgConnection,
    id: Uuid,
    new: &NewCampaign,
    now: DateTime<Utc>,
) -> sqlx::Result<CampaignRow> {
    let tracking = new.tracking.as_ref();
    sqlx::query_as!(
        CampaignRow,
        r#"
        insert into campaigns (id, advertiser_id, name, description, commission_rate_bps,
                               budget_minor, currency, status, version, created_at, updated_at,
                               landing_url, landing_domains, click_id_param,
                               attribution_window_secs, min_click_to_conversion_secs, fallback_url,
                               hold_period_secs)
        values ($1, $2, $3, $4, $5, $6, $7, 'active', 1, $8, $8, $9, $10, $11, $12, $13, $14, $15)
        returning *
        "#,
        id,
        new.advertiser_id,
        &new.name,
        &new.description,
        i32::try_from(new.commission_rate_bps).unwrap_or(i32::MAX),
        new.budget_minor,
        &new.currency,
        now,
        tracking.map(|t| t.landing_url.as_str()),
        tracking.map(|t| t.landing_domains.as_slice()),
        tracking.map(|t| t.click_id_param.as_str()),
        tracking.map(|t| t.attribution_window_secs),
        tracking.map(|t| t.min_click_to_conversion_secs),
        tracking.and_then(|t| t.fallback_url.as_deref()),
        new.hold_period_secs,
    )
    .fetch_one(conn)
    .await
}

pub async fn find_campaign(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<CampaignRow>> {
    sqlx::query_as!(
        CampaignRow,
        r#"
        select * from campaigns where id = $1
        "#,
        id,
    )
    .fetch_optional(conn)
    .await
}

/// Locks the campaign row until the transaction ends: every change to one campaign is
/// serialized here, before its outbox rows are appended.
pub async fn lock_campaign(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<CampaignRow>> {
    sqlx::query_as!(
        CampaignRow,
        r#"
        select * from campaigns where id = $1 for update
        "#,
        id,
    )
    .fetch_optional(conn)
    .await
}

/// Bumps the version of a locked campaign; returns the new version.
pub async fn bump_version(
    conn: &mut PgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"
        update campaigns set version = version + 1, updated_at = $2 where id = $1 returning version
        "#,
        id,
        now,
    )
    .fetch_one(conn)
    .await
}

/// Sets the status of a locked campaign (and why it is paused, if it is) and bumps its version;
/// returns the updated row.
pub async fn set_status(
    conn: &mut PgConnection,
    id: Uuid,
    status: CampaignStatus,
    pause_reason: Option<PauseReason>,
    now: DateTime<Utc>,
) -> sqlx::Result<CampaignRow> {
    sqlx::query_as!(
        CampaignRow,
        r#"
        update campaigns set status = $2, pause_reason = $3, version = version + 1, updated_at = $4
        where id = $1
        returning *
        "#,
        id,
        status.as_str(),
        pause_reason.map(PauseReason::as_str),
        now,
    )
    .fetch_one(conn)
    .await
}

/// Sets the budget of a locked campaign and its status after the change, and bumps its version;
/// returns the updated row.
pub async fn set_budget(
    conn: &mut PgConnection,
    id: Uuid,
    budget_minor: i64,
    status: CampaignStatus,
    now: DateTime<Utc>,
) -> sqlx::Result<CampaignRow> {
    sqlx::query_as!(
        CampaignRow,
        r#"
        update campaigns
        set budget_minor = $2,
            status = $3,
            pause_reason = case when $3 = 'paused' then pause_reason end,
            version = version + 1,
            updated_at = $4
        where id = $1
        returning *
        "#,
        id,
        budget_minor,
        status.as_str(),
        now,
    )
    .fetch_one(conn)
    .await
}

/// Replaces the tracking settings of a locked campaign and bumps its version; returns the updated
/// row.
pub async fn set_tracking(
    conn: &mut PgConnection,
    id: Uuid,
    tracking: &TrackingSettings,
    now: DateTime<Utc>,
) -> sqlx::Result<CampaignRow> {
    sqlx::query_as!(
        CampaignRow,
        r#"
        update campaigns
        set landing_url = $2,
            landing_domains = $3,
            click_id_param = $4,
            attribution_window_secs = $5,
            min_click_to_conversion_secs = $6,
            fallback_url = $7,
            version = version + 1,
            updated_at = $8
        where id = $1
        returning *
        "#,
        id,
        &tracking.landing_url,
        tracking.landing_domains.as_slice(),
        &tracking.click_id_param,
        tracking.attribution_window_secs,
        tracking.min_click_to_conversion_secs,
        tracking.fallback_url.as_deref(),
        now,
    )
    .fetch_one(conn)
    .await
}

/// One page of campaigns, newest first, after `before` (exclusive) when given.
pub async fn list_campaigns(
    conn: &mut PgConnection,
    advertiser_id: Option<Uuid>,
    status: Option<CampaignStatus>,
    before: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<CampaignRow>> {
    sqlx::query_as!(
        CampaignRow,
        r#"
        select * from campaigns
        where ($1::uuid is null or advertiser_id = $1)
          and ($2::text is null or status = $2)
          and ($3::uuid is null or id < $3)
        order by id desc
        limit $4
        "#,
        advertiser_id,
        status.map(CampaignStatus::as_str),
        before,
        limit,
    )
    .fetch_all(conn)
    .await
}

pub async fn insert_video(
    conn: &mut PgConnection,
    id: Uuid,
    new: &NewVideo,
    now: DateTime<Utc>,
) -> sqlx::Result<VideoRow> {
    sqlx::query_as!(
        VideoRow,
        r#"
        insert into videos (id, campaign_id, url, title, added_at)
        values ($1, $2, $3, $4, $5)
        returning *
        "#,
        id,
        new.campaign_id,
        &new.url,
        &new.title,
        now,
    )
    .fetch_one(conn)
    .await
}

pub async fn videos_of(conn: &mut PgConnection, campaign_id: Uuid) -> sqlx::Result<Vec<VideoRow>> {
    sqlx::query_as!(
        VideoRow,
        r#"
        select * from videos where campaign_id = $1 order by id
        "#,
        campaign_id,
    )
    .fetch_all(conn)
    .await
}

/// Inserts the acceptance; a second acceptance by the same creator violates `acceptances_pkey`.
pub async fn insert_acceptance(
    conn: &mut PgConnection,
    new: &NewAcceptance,
    now: DateTime<Utc>,
) -> sqlx::Result<AcceptanceRow> {
    sqlx::query_as!(
        AcceptanceRow,
        r#"
        insert into acceptances (campaign_id, creator_id, accepted_at)
        values ($1, $2, $3)
        returning *
        "#,
        new.campaign_id,
        new.creator_id,
        now,
    )
    .fetch_one(conn)
    .await
}
