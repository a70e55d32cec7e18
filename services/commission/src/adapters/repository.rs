//! SQL for campaign terms, commissions, balances, reservations and allocations. Every function
//! borrows the caller's connection (the handler's transaction).

use std::collections::{HashMap, HashSet};

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

/// Locks the terms of `campaigns` in ascending order (every transaction's first locks) and
/// returns those known.
pub async fn lock_terms(
    conn: &mut PgConnection,
    campaigns: &[Uuid],
) -> sqlx::Result<HashMap<Uuid, CampaignTerms>> {
    let rows = sqlx::query!(
        r#"
        select campaign_id, commission_rate_bps, currency, status, budget_minor, committed_minor,
               exhausted_announced, version
        from campaign_terms where campaign_id = any($1)
        order by campaign_id
        for update
        "#,
        campaigns,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let terms = CampaignTerms {
                rate_bps: u32::try_from(row.commission_rate_bps).unwrap_or(0),
                currency: row.currency,
                closed: row.status == "closed",
                budget_minor: row.budget_minor,
                committed_minor: row.committed_minor,
                exhausted_announced: row.exhausted_announced,
                version: row.version,
            };
            (row.campaign_id, terms)
        })
        .collect())
}

/// Sets what locked campaigns have committed of their budgets, and whether its exhaustion is
/// announced, each `(campaign, committed, announced)`, in one statement.
pub async fn set_committed(
    conn: &mut PgConnection,
    campaigns: &[(Uuid, i64, bool)],
) -> sqlx::Result<()> {
    if campaigns.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = campaigns.iter().map(|c| c.0).collect();
    let committed: Vec<i64> = campaigns.iter().map(|c| c.1).collect();
    let announced: Vec<bool> = campaigns.iter().map(|c| c.2).collect();
    sqlx::query!(
        r#"
        update campaign_terms t
        set committed_minor = m.committed, exhausted_announced = m.announced
        from unnest($1::uuid[], $2::int8[], $3::bool[]) as m(campaign_id, committed, announced)
        where t.campaign_id = m.campaign_id
        "#,
        &ids,
        &committed,
        &announced,
    )
    .execute(conn)
    .await?;
    Ok(())
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

/// Inserts commissions in one statement.
pub async fn insert_commissions(
    conn: &mut PgConnection,
    rows: &[CommissionRow],
) -> sqlx::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&CommissionRow) -> Uuid| rows.iter().map(f).collect::<Vec<Uuid>>();
    let (id, tracking, campaign, creator) = (
        column(|r| r.id),
        column(|r| r.tracking_event_id),
        column(|r| r.campaign_id),
        column(|r| r.creator_id),
    );
    let purchase: Vec<i64> = rows.iter().map(|r| r.purchase_minor).collect();
    let currency: Vec<&str> = rows.iter().map(|r| r.currency.as_str()).collect();
    let rate: Vec<i32> = rows.iter().map(|r| r.commission_rate_bps).collect();
    let amount: Vec<i64> = rows.iter().map(|r| r.amount_minor).collect();
    let created: Vec<DateTime<Utc>> = rows.iter().map(|r| r.created_at).collect();
    sqlx::query!(
        r#"
        insert into commissions (id, tracking_event_id, campaign_id, creator_id, purchase_minor, currency,
                                 commission_rate_bps, amount_minor, created_at)
        select * from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::int8[], $6::text[],
                             $7::int4[], $8::int8[], $9::timestamptz[])
        "#,
        &id,
        &tracking,
        &campaign,
        &creator,
        &purchase,
        &currency as _,
        &rate,
        &amount,
        &created,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Which of these tracking events already have a commission.
pub async fn with_commission(
    conn: &mut PgConnection,
    tracking_event_ids: &[Uuid],
) -> sqlx::Result<HashSet<Uuid>> {
    Ok(sqlx::query_scalar!(
        "select tracking_event_id from commissions where tracking_event_id = any($1)",
        tracking_event_ids,
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .collect())
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

/// Locks (creating those missing) the balances `(creator, currency)`, in ascending order, and
/// returns them.
pub async fn lock_balances(
    conn: &mut PgConnection,
    keys: &[(Uuid, String)],
) -> sqlx::Result<HashMap<(Uuid, String), BalanceRow>> {
    let mut sorted: Vec<&(Uuid, String)> = keys.iter().collect();
    sorted.sort();
    sorted.dedup();
    let creators: Vec<Uuid> = sorted.iter().map(|k| k.0).collect();
    let currencies: Vec<&str> = sorted.iter().map(|k| k.1.as_str()).collect();
    sqlx::query!(
        r#"
        insert into balances (creator_id, currency)
        select * from unnest($1::uuid[], $2::text[])
        on conflict do nothing
        "#,
        &creators,
        &currencies as _,
    )
    .execute(&mut *conn)
    .await?;
    let rows = sqlx::query_as!(
        BalanceRow,
        r#"
        select b.* from balances b
        join unnest($1::uuid[], $2::text[]) as k(creator_id, currency)
          on b.creator_id = k.creator_id and b.currency = k.currency
        order by b.creator_id, b.currency
        for update of b
        "#,
        &creators,
        &currencies as _,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| ((row.creator_id, row.currency.clone()), row))
        .collect())
}

/// Sets the available money of locked balances, each `(creator, currency, available)`.
pub async fn set_available(
    conn: &mut PgConnection,
    balances: &[(Uuid, &str, i64)],
) -> sqlx::Result<()> {
    if balances.is_empty() {
        return Ok(());
    }
    let creators: Vec<Uuid> = balances.iter().map(|b| b.0).collect();
    let currencies: Vec<&str> = balances.iter().map(|b| b.1).collect();
    let available: Vec<i64> = balances.iter().map(|b| b.2).collect();
    sqlx::query!(
        r#"
        update balances b set available_minor = m.available
        from unnest($1::uuid[], $2::text[], $3::int8[]) as m(creator_id, currency, available)
        where b.creator_id = m.creator_id and b.currency = m.currency
        "#,
        &creators,
        &currencies as _,
        &available,
    )
    .execute(conn)
    .await?;
    Ok(())
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

/// The creator and currency of each of these payouts' reservations (those that exist).
pub async fn reservation_owners(
    conn: &mut PgConnection,
    payouts: &[Uuid],
) -> sqlx::Result<Vec<(Uuid, String)>> {
    if payouts.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query!(
        "select creator_id, currency from reservations where payout_id = any($1)",
        payouts,
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(|r| (r.creator_id, r.currency))
    .collect())
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
