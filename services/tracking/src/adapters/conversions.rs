//! SQL for conversions and postback keys. Every function borrows the caller's connection.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::adapters::links::secs;
use crate::domain::CampaignStatus;
use crate::domain::conversions::{ClickFacts, NewConversion};

/// A conversion row, with its click's time and its link's sub-ids.
#[derive(Debug, Clone)]
pub struct ConversionRow {
    pub id: Uuid,
    pub advertiser_id: Uuid,
    pub order_id: String,
    pub click_id: Uuid,
    pub link_id: Uuid,
    pub campaign_id: Uuid,
    pub creator_id: Uuid,
    pub amount_minor: i64,
    pub currency: String,
    pub converted_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub status: String,
    pub tracking_event_id: Option<Uuid>,
    pub reason: Option<String>,
    pub version: i64,
    /// Minor units of the amount refunded so far.
    pub refunded_minor: i64,
    pub clicked_at: DateTime<Utc>,
    pub sub1: Option<String>,
    pub sub2: Option<String>,
    pub sub3: Option<String>,
    pub sub4: Option<String>,
    pub sub5: Option<String>,
}

/// Where a conversion's click leads: its link, creator and campaign.
#[derive(Debug, Clone, Copy)]
pub struct ClickTarget {
    pub link_id: Uuid,
    pub campaign_id: Uuid,
    pub creator_id: Uuid,
}

/// The clicks `click_ids` and what the copy knows of their campaigns and creators, in one query.
pub async fn click_facts_many(
    conn: &mut PgConnection,
    click_ids: &[Uuid],
) -> sqlx::Result<std::collections::HashMap<Uuid, (ClickTarget, ClickFacts)>> {
    let rows = sqlx::query!(
        r#"
        select c.id, c.link_id, c.campaign_id, c.creator_id, c.clicked_at, c.verdict,
               k.advertiser_id, k.status, k.currency, k.attribution_window_secs,
               k.min_conversion_secs,
               exists (select 1 from acceptances a
                       where a.campaign_id = c.campaign_id and a.creator_id = c.creator_id)
                   as "accepted!"
        from clicks c join campaigns k on k.campaign_id = c.campaign_id
        where c.id = any($1)
        "#,
        click_ids,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.id,
                (
                    ClickTarget {
                        link_id: r.link_id,
                        campaign_id: r.campaign_id,
                        creator_id: r.creator_id,
                    },
                    ClickFacts {
                        clicked_at: r.clicked_at,
                        bot: r.verdict == "bot",
                        advertiser_id: r.advertiser_id,
                        status: CampaignStatus::parse(&r.status).unwrap_or(CampaignStatus::Closed),
                        accepted: r.accepted,
                        currency: r.currency,
                        attribution_window: secs(r.attribution_window_secs),
                        min_click_to_conversion: secs(r.min_conversion_secs),
                    },
                ),
            )
        })
        .collect())
}

/// One conversion to insert with [`insert_conversions`].
#[derive(Debug, Clone)]
pub struct ConversionInsert<'a> {
    pub id: Uuid,
    pub new: &'a NewConversion,
    pub target: ClickTarget,
    pub status: &'static str,
    pub tracking_event_id: Option<Uuid>,
    pub reason: Option<String>,
}

/// Inserts many conversions in one statement; returns the ids inserted (an order recorded
/// already, concurrently, is left out).
pub async fn insert_conversions(
    conn: &mut PgConnection,
    rows: &[ConversionInsert<'_>],
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<Uuid>> {
    let col = |f: &dyn Fn(&ConversionInsert<'_>) -> Uuid| rows.iter().map(f).collect::<Vec<_>>();
    let ids = col(&|r| r.id);
    let advertisers = col(&|r| r.new.advertiser_id);
    let clicks = col(&|r| r.new.click_id);
    let links = col(&|r| r.target.link_id);
    let campaigns = col(&|r| r.target.campaign_id);
    let creators = col(&|r| r.target.creator_id);
    let orders: Vec<&str> = rows.iter().map(|r| r.new.order_id.as_str()).collect();
    let amounts: Vec<i64> = rows.iter().map(|r| r.new.amount.minor).collect();
    let currencies: Vec<&str> = rows
        .iter()
        .map(|r| r.new.amount.currency.as_str())
        .collect();
    let converted: Vec<DateTime<Utc>> = rows.iter().map(|r| r.new.converted_at).collect();
    let statuses: Vec<&str> = rows.iter().map(|r| r.status).collect();
    let events: Vec<Option<Uuid>> = rows.iter().map(|r| r.tracking_event_id).collect();
    let reasons: Vec<Option<&str>> = rows.iter().map(|r| r.reason.as_deref()).collect();
    sqlx::query_scalar!(
        r#"
        insert into conversions (id, advertiser_id, order_id, click_id, link_id, campaign_id,
                                 creator_id, amount_minor, currency, converted_at, recorded_at,
                                 status, tracking_event_id, reason)
        select v.id, v.advertiser_id, v.order_id, v.click_id, v.link_id, v.campaign_id,
               v.creator_id, v.amount_minor, v.currency, v.converted_at, $14, v.status,
               v.tracking_event_id, v.reason
        from unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::uuid[], $6::uuid[],
                    $7::uuid[], $8::int8[], $9::text[], $10::timestamptz[], $11::text[],
                    $12::uuid[], $13::text[])
             as v(id, advertiser_id, order_id, click_id, link_id, campaign_id, creator_id,
                  amount_minor, currency, converted_at, status, tracking_event_id, reason)
        on conflict (advertiser_id, order_id) do nothing
        returning id
        "#,
        &ids,
        &advertisers,
        &orders as _,
        &clicks,
        &links,
        &campaigns,
        &creators,
        &amounts,
        &currencies as _,
        &converted,
        &statuses as _,
        &events as _,
        &reasons as _,
        now,
    )
    .fetch_all(conn)
    .await
}

/// The conversions of many (advertiser, order) pairs.
pub async fn find_by_orders(
    conn: &mut PgConnection,
    orders: &[(Uuid, String)],
) -> sqlx::Result<Vec<ConversionRow>> {
    let advertisers: Vec<Uuid> = orders.iter().map(|(a, _)| *a).collect();
    let ids: Vec<&str> = orders.iter().map(|(_, o)| o.as_str()).collect();
    sqlx::query_as!(
        ConversionRow,
        r#"
        select v.id, v.advertiser_id, v.order_id, v.click_id, v.link_id, v.campaign_id,
               v.creator_id, v.amount_minor, v.currency, v.converted_at, v.recorded_at, v.status,
               v.tracking_event_id, v.reason, v.version, v.refunded_minor, c.clicked_at,
               l.sub1, l.sub2, l.sub3, l.sub4, l.sub5
        from conversions v join clicks c on c.id = v.click_id join links l on l.id = v.link_id
        join unnest($1::uuid[], $2::text[]) as o(advertiser_id, order_id)
          on o.advertiser_id = v.advertiser_id and o.order_id = v.order_id
        "#,
        &advertisers,
        &ids as _,
    )
    .fetch_all(conn)
    .await
}

/// Many conversions by id.
pub async fn find_conversions(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> sqlx::Result<Vec<ConversionRow>> {
    sqlx::query_as!(
        ConversionRow,
        r#"
        select v.id, v.advertiser_id, v.order_id, v.click_id, v.link_id, v.campaign_id,
               v.creator_id, v.amount_minor, v.currency, v.converted_at, v.recorded_at, v.status,
               v.tracking_event_id, v.reason, v.version, v.refunded_minor, c.clicked_at,
               l.sub1, l.sub2, l.sub3, l.sub4, l.sub5
        from conversions v join clicks c on c.id = v.click_id join links l on l.id = v.link_id
        where v.id = any($1)
        "#,
        ids,
    )
    .fetch_all(conn)
    .await
}

/// One conversion by id.
pub async fn find_conversion(
    conn: &mut PgConnection,
    id: Uuid,
) -> sqlx::Result<Option<ConversionRow>> {
    Ok(find_conversions(conn, &[id]).await?.pop())
}

/// Locks a conversion for its review.
pub async fn lock_conversion(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(
        "select status from conversions where id = $1 for update",
        id
    )
    .fetch_optional(conn)
    .await
}

/// Records a review's outcome.
pub async fn review(
    conn: &mut PgConnection,
    id: Uuid,
    status: &str,
    tracking_event_id: Option<Uuid>,
    reason: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"
        update conversions
        set status = $2, tracking_event_id = $3, reason = coalesce($4, reason), version = version + 1
        where id = $1
        "#,
        id,
        status,
        tracking_event_id,
        reason,
    )
    .execute(conn)
    .await?;
    Ok(())
}

// ---- refunds ----

/// A refund or chargeback of an order.
#[derive(Debug, Clone)]
pub struct RefundRow {
    pub conversion_id: Uuid,
    pub order_id: String,
    pub refund_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub kind: String,
    pub reason: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

/// Locks the conversion of an advertiser's order, so its refunds are recorded one at a time;
/// its id, or `None` for an unknown order.
pub async fn lock_order(
    conn: &mut PgConnection,
    advertiser_id: Uuid,
    order_id: &str,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        "select id from conversions where advertiser_id = $1 and order_id = $2 for update",
        advertiser_id,
        order_id,
    )
    .fetch_optional(conn)
    .await
}

/// The refund `refund_id` of an advertiser's order, if it was recorded.
pub async fn find_refund(
    conn: &mut PgConnection,
    advertiser_id: Uuid,
    order_id: &str,
    refund_id: &str,
) -> sqlx::Result<Option<RefundRow>> {
    sqlx::query_as!(
        RefundRow,
        r#"
        select conversion_id, order_id, refund_id, amount_minor, currency, kind, reason,
               recorded_at
        from refunds where advertiser_id = $1 and order_id = $2 and refund_id = $3
        "#,
        advertiser_id,
        order_id,
        refund_id,
    )
    .fetch_optional(conn)
    .await
}

/// One refund to record with [`insert_refund`].
#[derive(Debug, Clone, Copy)]
pub struct RefundInsert<'a> {
    pub conversion_id: Uuid,
    pub advertiser_id: Uuid,
    pub order_id: &'a str,
    pub refund_id: &'a str,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub kind: &'a str,
    pub reason: Option<&'a str>,
}

/// Records a refund and adds it to its conversion's refunded total (a new version of the
/// conversion), in one statement. `None` when the order has that refund id already (its key,
/// `refunds_pkey`, is the idempotency).
pub async fn insert_refund(
    conn: &mut PgConnection,
    refund: RefundInsert<'_>,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<RefundRow>> {
    sqlx::query_as!(
        RefundRow,
        r#"
        with inserted as (
            insert into refunds (advertiser_id, order_id, refund_id, conversion_id, amount_minor,
                                 currency, kind, reason, recorded_at)
            values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            on conflict on constraint refunds_pkey do nothing
            returning conversion_id, order_id, refund_id, amount_minor, currency, kind, reason,
                      recorded_at
        ), added as (
            update conversions v
            set refunded_minor = v.refunded_minor + i.amount_minor, version = v.version + 1
            from inserted i where v.id = i.conversion_id
        )
        select conversion_id as "conversion_id!", order_id as "order_id!",
               refund_id as "refund_id!", amount_minor as "amount_minor!",
               currency as "currency!", kind as "kind!", reason, recorded_at as "recorded_at!"
        from inserted
        "#,
        refund.advertiser_id,
        refund.order_id,
        refund.refund_id,
        refund.conversion_id,
        refund.amount_minor,
        refund.currency,
        refund.kind,
        refund.reason,
        now,
    )
    .fetch_optional(conn)
    .await
}

// ---- postback keys ----

#[derive(Debug, Clone)]
pub struct PostbackKeyRow {
    pub id: Uuid,
    pub advertiser_id: Uuid,
    pub secret: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Inserts a key unless the advertiser has two unrevoked already (`None` then). The advertiser's
/// keys are locked first, so two concurrent creations cannot make three.
pub async fn insert_key(
    conn: &mut PgConnection,
    id: Uuid,
    advertiser_id: Uuid,
    secret: &str,
    secret_sha256: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<PostbackKeyRow>> {
    sqlx::query!(
        "select pg_advisory_xact_lock(hashtextextended($1::uuid::text, 26))",
        advertiser_id
    )
    .execute(&mut *conn)
    .await?;
    let active: i64 = sqlx::query_scalar!(
        r#"select count(*) as "n!" from postback_keys where advertiser_id = $1 and revoked_at is null"#,
        advertiser_id
    )
    .fetch_one(&mut *conn)
    .await?;
    if active >= 2 {
        return Ok(None);
    }
    sqlx::query_as!(
        PostbackKeyRow,
        r#"
        insert into postback_keys (id, advertiser_id, secret, secret_sha256, created_at)
        values ($1, $2, $3, $4, $5)
        returning id, advertiser_id, secret, created_at, revoked_at
        "#,
        id,
        advertiser_id,
        secret,
        secret_sha256,
        now,
    )
    .fetch_one(conn)
    .await
    .map(Some)
}

pub async fn list_keys(
    conn: &mut PgConnection,
    advertiser_id: Uuid,
) -> sqlx::Result<Vec<PostbackKeyRow>> {
    sqlx::query_as!(
        PostbackKeyRow,
        r#"
        select id, advertiser_id, secret, created_at, revoked_at from postback_keys
        where advertiser_id = $1 order by created_at desc, id desc
        "#,
        advertiser_id,
    )
    .fetch_all(conn)
    .await
}

/// Revokes an advertiser's key (once); `None` if the advertiser has no such key.
pub async fn revoke_key(
    conn: &mut PgConnection,
    advertiser_id: Uuid,
    id: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<PostbackKeyRow>> {
    sqlx::query_as!(
        PostbackKeyRow,
        r#"
        update postback_keys set revoked_at = coalesce(revoked_at, $3)
        where id = $1 and advertiser_id = $2
        returning id, advertiser_id, secret, created_at, revoked_at
        "#,
        id,
        advertiser_id,
        now,
    )
    .fetch_optional(conn)
    .await
}

/// The unrevoked key whose secret hashes to `secret_sha256`.
pub async fn key_by_secret(
    conn: &mut PgConnection,
    secret_sha256: &str,
) -> sqlx::Result<Option<PostbackKeyRow>> {
    sqlx::query_as!(
        PostbackKeyRow,
        r#"
        select id, advertiser_id, secret, created_at, revoked_at from postback_keys
        where secret_sha256 = $1 and revoked_at is null
        "#,
        secret_sha256,
    )
    .fetch_optional(conn)
    .await
}

/// The unrevoked key `id`.
pub async fn key_by_id(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<PostbackKeyRow>> {
    sqlx::query_as!(
        PostbackKeyRow,
        r#"
        select id, advertiser_id, secret, created_at, revoked_at from postback_keys
        where id = $1 and revoked_at is null
        "#,
        id,
    )
    .fetch_optional(conn)
    .await
}
