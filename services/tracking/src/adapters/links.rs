//! SQL for tracking links and the campaign settings they need. Every function borrows the
//! caller's connection (usually a transaction the handler owns).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::adapters::repository::Page;
use crate::domain::{CampaignStatus, LinkSettings, NewLink, Standing};

/// A link row.
#[derive(Debug, Clone)]
pub struct LinkRow {
    pub id: Uuid,
    pub code: String,
    pub campaign_id: Uuid,
    pub creator_id: Uuid,
    pub sub1: Option<String>,
    pub sub2: Option<String>,
    pub sub3: Option<String>,
    pub sub4: Option<String>,
    pub sub5: Option<String>,
    pub deep_link: Option<String>,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub version: i64,
}

/// Inserts a link under `code`; `None` if the code is taken (the caller draws another).
pub async fn insert_link(
    conn: &mut PgConnection,
    id: Uuid,
    code: &str,
    new: &NewLink,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<LinkRow>> {
    let [s1, s2, s3, s4, s5] = &new.sub_ids;
    sqlx::query_as!(
        LinkRow,
        r#"
        insert into links (id, code, campaign_id, creator_id, sub1, sub2, sub3, sub4, sub5,
                           deep_link, created_at)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        on conflict (code) do nothing
        returning *
        "#,
        id,
        code,
        new.campaign_id,
        new.creator_id,
        s1.as_deref(),
        s2.as_deref(),
        s3.as_deref(),
        s4.as_deref(),
        s5.as_deref(),
        new.deep_link.as_deref(),
        now,
    )
    .fetch_optional(conn)
    .await
}

pub async fn find_link(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<LinkRow>> {
    sqlx::query_as!(LinkRow, "select * from links where id = $1", id)
        .fetch_optional(conn)
        .await
}

/// Disables a link; `(row, changed)`, `None` if there is no such link.
pub async fn disable_link(
    conn: &mut PgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<(LinkRow, bool)>> {
    let changed = sqlx::query_as!(
        LinkRow,
        r#"
        update links set disabled_at = $2, version = version + 1
        where id = $1 and disabled_at is null
        returning *
        "#,
        id,
        now,
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = changed {
        return Ok(Some((row, true)));
    }
    Ok(find_link(conn, id).await?.map(|row| (row, false)))
}

/// One page of links, newest first.
pub async fn list_links(conn: &mut PgConnection, page: Page) -> sqlx::Result<Vec<LinkRow>> {
    sqlx::query_as!(
        LinkRow,
        r#"
        select * from links
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

/// What the copy knows of a campaign for a creator's new link: its standing and its settings
/// (`None` without a landing URL). `None` if the campaign is not in the copy.
pub async fn campaign_for_link(
    conn: &mut PgConnection,
    campaign_id: Uuid,
    creator_id: Uuid,
) -> sqlx::Result<Option<(Standing, Option<LinkSettings>)>> {
    let row = sqlx::query!(
        r#"
        select c.status, c.landing_url, c.landing_domains, c.click_id_param,
               c.attribution_window_secs, c.min_conversion_secs, c.fallback_url,
               exists (select 1 from acceptances a
                       where a.campaign_id = c.campaign_id and a.creator_id = $2) as "accepted!"
        from campaigns c where c.campaign_id = $1
        "#,
        campaign_id,
        creator_id,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| {
        let standing = Standing {
            status: CampaignStatus::parse(&r.status).unwrap_or(CampaignStatus::Closed),
            accepted: r.accepted,
        };
        let settings = r.landing_url.map(|landing_url| LinkSettings {
            landing_url,
            landing_domains: r.landing_domains,
            click_id_param: r.click_id_param,
            attribution_window: secs(r.attribution_window_secs),
            min_click_to_conversion: secs(r.min_conversion_secs),
            fallback_url: r.fallback_url,
        });
        (standing, settings)
    }))
}

/// Seconds as stored (never negative: the campaign service checks them).
pub fn secs(value: i64) -> Duration {
    Duration::from_secs(u64::try_from(value).unwrap_or_default())
}

/// Stores a campaign's advertiser, currency and link settings in the copy (`None`: no landing
/// URL), at `version` (the caller has just upserted the campaign's state at that version).
pub async fn set_link_settings(
    conn: &mut PgConnection,
    campaign_id: Uuid,
    version: i64,
    owner: (Option<Uuid>, Option<&str>),
    settings: Option<&LinkSettings>,
) -> sqlx::Result<()> {
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    sqlx::query!(
        r#"
        update campaigns
        set landing_url = $3, landing_domains = $4, click_id_param = $5,
            attribution_window_secs = $6, min_conversion_secs = $7, fallback_url = $8,
            advertiser_id = coalesce($9, advertiser_id), currency = coalesce($10, currency)
        where campaign_id = $1 and version = $2
        "#,
        campaign_id,
        version,
        settings.map(|s| s.landing_url.as_str()),
        &settings
            .map(|s| s.landing_domains.clone())
            .unwrap_or_default(),
        settings.map_or("click_id", |s| s.click_id_param.as_str()),
        settings.map_or(2_592_000, |s| secs(s.attribution_window)),
        settings.map_or(10, |s| secs(s.min_click_to_conversion)),
        settings.and_then(|s| s.fallback_url.as_deref()),
        owner.0,
        owner.1,
    )
    .execute(conn)
    .await?;
    Ok(())
}
