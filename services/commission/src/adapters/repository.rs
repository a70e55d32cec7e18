//! SQL for campaign terms, commissions, balances, reservations and allocations. Every function
//! borrows the caller's connection (the handler's transaction).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{CampaignTerms, Open};

#[derive(Debug, Clone)]
pub struct CommissionRow {
    pub id: Uuid,
    pub tracking_event_id: Uuid,
    pub campaign_id: Uuid,
    pub creator_id: Uuid,
    pub purchase_minor: i64,
    pub currency: String,
    pub commission_rate_bps: i32,
    pub amount_minor: i64,
    pub reserved_minor: i64,
    pub paid_minor: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct BalanceRow {
    pub creator_id: Uuid,
    pub currency: String,
    pub available_minor: i64,
    pub reserved_minor: i64,
    pub paid_minor: i64,
}

#[derive(Debug, Clone)]
pub struct ReservationRow {
    pub payout_id: Uuid,
    pub creator_id: Uuid,
    pub currency: String,
    pub amount_minor: i64,
    pub status: String,
    pub version: i64,
}

/// Whether a write hit the named constraint.
pub fn violates(error: &sqlx::Error, constraint: &str) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.constraint() == Some(constraint))
}

// ---- campaign terms (fed by campaign events) ----

/// Locks the terms of `campaigns` in ascending order (a batch's first locks).
pub async fn lock_campaigns(conn: &mut PgConnection, campaigns: &[Uuid]) -> sqlx::Result<()> {
    sqlx::query_scalar!(
        r#"
        select campaign_id from campaign_terms where campaign_id = any($1)
        order by campaign_id
        for update
        "#,
        campaigns,
    )
    .fetch_all(conn)
    .await?;
    Ok(())
}

pub async fn lock_campaign_terms(
    conn: &mut PgConnection,
    campaign_id: Uuid,
) -> sqlx::Result<Option<CampaignTerms>> {
    let row = sqlx::query!(
        r#"
        select commission_rate_bps, currency, status, budget_minor, committed_minor,
               exhausted_announced, version
        from campaign_terms where campaign_id = $1
        for update
        "#,
        campaign_id,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|row| CampaignTerms {
        rate_bps: u32::try_from(row.commission_rate_bps).unwrap_or(0),
        currency: row.currency,
        closed: row.status == "closed",
        budget_minor: row.budget_minor,
        committed_minor: row.committed_minor,
        exhausted_announced: row.exhausted_announced,
        version: row.version,
    }))
}

/// A campaign's terms as its events give them.
#[derive(Debug, Clone, Copy)]
pub struct TermsUpdate<'a> {
    pub rate_bps: i32,
    pub currency: &'a str,
    pub status: &'a str,
    pub budget_minor: Option<i64>,
    pub version: i64,
}

/// Inserts or updates a campaign's terms if `version` is newer than what is stored; returns
/// whether it was applied. A new budget clears the announcement of the old one's exhaustion.
pub async fn upsert_campaign_terms(
    conn: &mut PgConnection,
    campaign_id: Uuid,
    terms: TermsUpdate<'_>,
) -> sqlx::Result<bool> {
    let applied = sqlx::query!(
        r#"
        insert into campaign_terms (campaign_id, commission_rate_bps, currency, status, budget_minor, version)
        values ($1, $2, $3, $4, $5, $6)
        on conflict (campaign_id) do update
            set commission_rate_bps = excluded.commission_rate_bps,
                currency = excluded.currency,
                status = excluded.status,
                budget_minor = excluded.budget_minor,
                exhausted_announced = campaign_terms.exhausted_announced
                    and campaign_terms.budget_minor is not distinct from excluded.budget_minor,
                version = excluded.version,
                updated_at = now()
            where campaign_terms.version < excluded.version
        "#,
        campaign_id,
        terms.rate_bps,
        terms.currency,
        terms.status,
        terms.budget_minor,
        terms.version,
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(applied == 1)
}

/// Adds a commission's share to what a (locked) campaign has committed (saturating at i64::MAX:
/// only a campaign without a known budget gets there, and no budget is larger), and records that
/// its budget's exhaustion is announced when `announced`.
pub async fn commit_budget(
    conn: &mut PgConnection,
    campaign_id: Uuid,
    amount_minor: i64,
    announced: bool,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"
        update campaign_terms
        set committed_minor = least(committed_minor::numeric + $2::bigint, 9223372036854775807)::bigint,
            exhausted_announced = exhausted_announced or $3
        where campaign_id = $1
        "#,
        campaign_id,
        amount_minor,
        announced,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that the campaign reached `version` without a change of terms (videos, acceptances);
/// returns whether the campaign is known.
pub async fn touch_campaign_terms(
    conn: &mut PgConnection,
    campaign_id: Uuid,
    version: i64,
) -> sqlx::Result<bool> {
    let known: Option<i64> = sqlx::query_scalar!(
        r#"
        update campaign_terms set version = greatest(version, $2) where campaign_id = $1 returning version
        "#,
        campaign_id,
        version,
    )
    .fetch_optional(conn)
    .await?;
    Ok(known.is_some())
}

// ---- commissions ----

pub async fn insert_commission(conn: &mut PgConnection, row: &CommissionRow) -> sqlx::Result<()> {
    sqlx::query!(
        r#"
        insert into commissions (id, tracking_event_id, campaign_id, creator_id, purchase_minor, currency,
                                 commission_rate_bps, amount_minor, created_at)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        "#,
        row.id,
        row.tracking_event_id,
        row.campaign_id,
        row.creator_id,
        row.purchase_minor,
        &row.currency,
        row.commission_rate_bps,
        row.amount_minor,
        row.created_at,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find_commission(
    conn: &mut PgConnection,
    id: Uuid,
) -> sqlx::Result<Option<CommissionRow>> {
    sqlx::query_as!(
        CommissionRow,
        r#"
        select * from commissions where id = $1
        "#,
        id,
    )
    .fetch_optional(conn)
    .await
}

pub async fn list_commissions(
    conn: &mut PgConnection,
    creator_id: Option<Uuid>,
    campaign_id: Option<Uuid>,
    before: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<CommissionRow>> {
    sqlx::query_as!(
        CommissionRow,
        r#"
        select * from commissions
        where ($1::uuid is null or creator_id = $1)
          and ($2::uuid is null or campaign_id = $2)
          and ($3::uuid is null or id < $3)
        order by id desc
        limit $4
        "#,
        creator_id,
        campaign_id,
        before,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// The creator's commissions in `currency` with open money, oldest first, locked.
pub async fn open_commissions(
    conn: &mut PgConnection,
    creator_id: Uuid,
    currency: &str,
) -> sqlx::Result<Vec<Open>> {
    sqlx::query_as!(
        Open,
        r#"
        select id as commission_id, amount_minor - reserved_minor - paid_minor as "open_minor!"
        from commissions
        where creator_id = $1 and currency = $2 and amount_minor > reserved_minor + paid_minor
        order by id
        for update
        "#,
        creator_id,
        currency,
    )
    .fetch_all(conn)
    .await
}

// ---- balances ----

/// Locks (creating if needed) the creator's balance in `currency`.
pub async fn lock_balance(
    conn: &mut PgConnection,
    creator_id: Uuid,
    currency: &str,
) -> sqlx::Result<BalanceRow> {
    sqlx::query!(
        r#"
        insert into balances (creator_id, currency) values ($1, $2) on conflict do nothing
        "#,
        creator_id,
        currency,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query_as!(
        BalanceRow,
        r#"
        select * from balances where creator_id = $1 and currency = $2 for update
        "#,
        creator_id,
        currency,
    )
    .fetch_one(conn)
    .await
}

pub async fn find_balance(
    conn: &mut PgConnection,
    creator_id: Uuid,
    currency: &str,
) -> sqlx::Result<Option<BalanceRow>> {
    sqlx::query_as!(
        BalanceRow,
        r#"
        select * from balances where creator_id = $1 and currency = $2
        "#,
        creator_id,
        currency,
    )
    .fetch_optional(conn)
    .await
}

/// Credits `amount` to the creator's available balance in `currency` (creating the balance if
/// needed) in one statement, which also locks the row until commit; returns it after.
pub async fn credit_balance(
    conn: &mut PgConnection,
    creator_id: Uuid,
    currency: &str,
    amount: i64,
) -> sqlx::Result<BalanceRow> {
    sqlx::query_as!(
        BalanceRow,
        r#"
        insert into balances (creator_id, currency, available_minor) values ($1, $2, $3)
        on conflict (creator_id, currency)
        do update set available_minor = balances.available_minor + excluded.available_minor
        returning *
        "#,
        creator_id,
        currency,
        amount,
    )
    .fetch_one(conn)
    .await
}

/// Adds the deltas to a locked balance; returns it after.
pub async fn adjust_balance(
    conn: &mut PgConnection,
    creator_id: Uuid,
    currency: &str,
    available: i64,
    reserved: i64,
    paid: i64,
) -> sqlx::Result<BalanceRow> {
    sqlx::query_as!(
        BalanceRow,
        r#"
        update balances
        set available_minor = available_minor + $3,
            reserved_minor = reserved_minor + $4,
            paid_minor = paid_minor + $5
        where creator_id = $1 and currency = $2
        returning *
        "#,
        creator_id,
        currency,
        available,
        reserved,
        paid,
    )
    .fetch_one(conn)
    .await
}

// ---- reservations ----

pub async fn lock_reservation(
    conn: &mut PgConnection,
    payout_id: Uuid,
) -> sqlx::Result<Option<ReservationRow>> {
    sqlx::query_as!(
        ReservationRow,
        r#"
        select payout_id, creator_id, currency, amount_minor, status, version
        from reservations where payout_id = $1 for update
        "#,
        payout_id,
    )
    .fetch_optional(conn)
    .await
}

pub async fn insert_reservation(
    conn: &mut PgConnection,
    payout_id: Uuid,
    creator_id: Uuid,
    currency: &str,
    amount: i64,
    now: DateTime<Utc>,
) -> sqlx::Result<ReservationRow> {
    sqlx::query_as!(
        ReservationRow,
        r#"
        insert into reservations (payout_id, creator_id, currency, amount_minor, status, version, created_at, updated_at)
        values ($1, $2, $3, $4, 'reserved', 1, $5, $5)
        returning payout_id, creator_id, currency, amount_minor, status, version
        "#,
        payout_id,
        creator_id,
        currency,
        amount,
        now,
    )
    .fetch_one(conn)
    .await
}

pub async fn finish_reservation(
    conn: &mut PgConnection,
    payout_id: Uuid,
    status: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<ReservationRow> {
    sqlx::query_as!(
        ReservationRow,
        r#"
        update reservations set status = $2, version = version + 1, updated_at = $3
        where payout_id = $1
        returning payout_id, creator_id, currency, amount_minor, status, version
        "#,
        payout_id,
        status,
        now,
    )
    .fetch_one(conn)
    .await
}

pub async fn insert_allocations(
    conn: &mut PgConnection,
    payout_id: Uuid,
    allocations: &[(Uuid, i64)],
) -> sqlx::Result<()> {
    let (ids, amounts): (Vec<Uuid>, Vec<i64>) = allocations.iter().copied().unzip();
    sqlx::query!(
        r#"
        with a as (select * from unnest($2::uuid[], $3::int8[]) as a(commission_id, amount_minor))
        , ins as (
            insert into allocations (payout_id, commission_id, amount_minor)
            select $1, commission_id, amount_minor from a
        )
        update commissions c set reserved_minor = c.reserved_minor + a.amount_minor
        from a where c.id = a.commission_id
        "#,
        payout_id,
        &ids,
        &amounts,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves a reservation's allocations off the commissions' reserved amounts, onto their paid
/// amounts when `paid` (settle), or back to open (release).
pub async fn unreserve_allocations(
    conn: &mut PgConnection,
    payout_id: Uuid,
    paid: bool,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"
        update commissions c
        set reserved_minor = c.reserved_minor - a.amount_minor,
            paid_minor = c.paid_minor + case when $2 then a.amount_minor else 0 end
        from allocations a
        where a.payout_id = $1 and c.id = a.commission_id
        "#,
        payout_id,
        paid,
    )
    .execute(conn)
    .await?;
    Ok(())
}
