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
    /// pending, approved, declined or reversed ([`crate::domain::ledger::Life`]).
    pub status: String,
    pub hold_until: Option<DateTime<Utc>>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decline_reason: Option<String>,
    pub refunded_minor: i64,
    pub reversed_minor: i64,
    pub clawed_back_minor: i64,
    pub version: i64,
}

#[derive(Debug, Clone, Default)]
pub struct BalanceRow {
    pub creator_id: Uuid,
    pub currency: String,
    pub available_minor: i64,
    pub reserved_minor: i64,
    pub paid_minor: i64,
    pub pending_minor: i64,
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
               exhausted_announced, version, advertiser_id, hold_seconds
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
                advertiser_id: row.advertiser_id,
                hold_seconds: row.hold_seconds,
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
    pub advertiser_id: Option<Uuid>,
    pub hold_seconds: Option<i64>,
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
        insert into campaign_terms (campaign_id, commission_rate_bps, currency, status, budget_minor, version,
                                    advertiser_id, hold_seconds)
        values ($1, $2, $3, $4, $5, $6, $7, $8)
        on conflict (campaign_id) do update
            set commission_rate_bps = excluded.commission_rate_bps,
                advertiser_id = excluded.advertiser_id,
                hold_seconds = excluded.hold_seconds,
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
        terms.advertiser_id,
        terms.hold_seconds,
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
    let status: Vec<&str> = rows.iter().map(|r| r.status.as_str()).collect();
    let hold_until: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.hold_until).collect();
    let decided_at: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.decided_at).collect();
    sqlx::query!(
        r#"
        insert into commissions (id, tracking_event_id, campaign_id, creator_id, purchase_minor, currency,
                                 commission_rate_bps, amount_minor, created_at, status, hold_until, decided_at)
        select * from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::int8[], $6::text[],
                             $7::int4[], $8::int8[], $9::timestamptz[], $10::text[], $11::timestamptz[],
                             $12::timestamptz[])
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
        &status as _,
        &hold_until as _,
        &decided_at as _,
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

/// Which commissions a list shows; `None` matches any.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommissionFilter {
    pub creator_id: Option<Uuid>,
    pub campaign_id: Option<Uuid>,
    /// A `status` value (pending, approved, declined or reversed).
    pub status: Option<&'static str>,
}

/// A page of commissions newest first (by id), those before `before`. A campaign's are found by
/// `commissions_campaign_idx (campaign_id, id)`, the status checked on the rows it reads.
pub async fn list_commissions(
    conn: &mut PgConnection,
    filter: &CommissionFilter,
    before: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<CommissionRow>> {
    sqlx::query_as!(
        CommissionRow,
        r#"
        select * from commissions
        where ($1::uuid is null or creator_id = $1)
          and ($2::uuid is null or campaign_id = $2)
          and ($3::text is null or status = $3)
          and ($4::uuid is null or id < $4)
        order by id desc
        limit $5
        "#,
        filter.creator_id,
        filter.campaign_id,
        filter.status,
        before,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// The creator's approved commissions in `currency` with open money, oldest first, locked.
pub async fn open_commissions(
    conn: &mut PgConnection,
    creator_id: Uuid,
    currency: &str,
) -> sqlx::Result<Vec<Open>> {
    sqlx::query_as!(
        Open,
        r#"
        select id as commission_id,
               amount_minor - reserved_minor - paid_minor - reversed_minor as "open_minor!"
        from commissions
        where creator_id = $1 and currency = $2 and status = 'approved'
          and amount_minor > reserved_minor + paid_minor + reversed_minor
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

/// Sets the pending and available money of locked balances, in one statement.
pub async fn set_balances(conn: &mut PgConnection, balances: &[&BalanceRow]) -> sqlx::Result<()> {
    if balances.is_empty() {
        return Ok(());
    }
    let creators: Vec<Uuid> = balances.iter().map(|b| b.creator_id).collect();
    let currencies: Vec<&str> = balances.iter().map(|b| b.currency.as_str()).collect();
    let pending: Vec<i64> = balances.iter().map(|b| b.pending_minor).collect();
    let available: Vec<i64> = balances.iter().map(|b| b.available_minor).collect();
    sqlx::query!(
        r#"
        update balances b set pending_minor = m.pending, available_minor = m.available
        from unnest($1::uuid[], $2::text[], $3::int8[], $4::int8[]) as m(creator_id, currency, pending, available)
        where b.creator_id = m.creator_id and b.currency = m.currency
        "#,
        &creators,
        &currencies as _,
        &pending,
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
/// amounts when `paid` (settle), or back to open (release). Released money a refund clawed back
/// while it was reserved never reached the creator: that part of the clawback becomes a reversal
/// (the release credits the available balance the clawback debited), so it is not open again.
pub async fn unreserve_allocations(
    conn: &mut PgConnection,
    payout_id: Uuid,
    paid: bool,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"
        with moved as (
            select a.commission_id, a.amount_minor,
                   case when $2 then 0
                        else least(a.amount_minor, greatest(c.clawed_back_minor - c.paid_minor, 0))
                   end as unclawed
            from allocations a join commissions c on c.id = a.commission_id
            where a.payout_id = $1
        )
        update commissions c
        set reserved_minor = c.reserved_minor - m.amount_minor,
            paid_minor = c.paid_minor + case when $2 then m.amount_minor else 0 end,
            clawed_back_minor = c.clawed_back_minor - m.unclawed,
            reversed_minor = c.reversed_minor + m.unclawed
        from moved m
        where c.id = m.commission_id
        "#,
        payout_id,
        paid,
    )
    .execute(conn)
    .await?;
    Ok(())
}

// ---- a commission's life ----

/// These commissions, unlocked (to learn which campaigns and creators to lock first).
pub async fn find_commissions(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> sqlx::Result<Vec<CommissionRow>> {
    sqlx::query_as!(
        CommissionRow,
        "select * from commissions where id = any($1) order by id",
        ids,
    )
    .fetch_all(conn)
    .await
}

/// Locks these commissions in ascending order and returns them.
pub async fn lock_commissions(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> sqlx::Result<Vec<CommissionRow>> {
    sqlx::query_as!(
        CommissionRow,
        "select * from commissions where id = any($1) order by id for update",
        ids,
    )
    .fetch_all(conn)
    .await
}

/// The commission of a purchase, if it has one.
pub async fn commission_of(
    conn: &mut PgConnection,
    tracking_event_id: Uuid,
) -> sqlx::Result<Option<CommissionRow>> {
    sqlx::query_as!(
        CommissionRow,
        "select * from commissions where tracking_event_id = $1",
        tracking_event_id,
    )
    .fetch_optional(conn)
    .await
}

/// Up to `limit` pending commissions whose hold has ended by `now`, the most overdue first,
/// unlocked: `(id, creator, currency)`.
pub async fn due_commissions(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, Uuid, String)>> {
    Ok(sqlx::query!(
        r#"
        select id, creator_id, currency from commissions
        where status = 'pending' and hold_until <= $1
        order by hold_until
        limit $2
        "#,
        now,
        limit,
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(|r| (r.id, r.creator_id, r.currency))
    .collect())
}

/// Locks those of `ids` still pending and due by `now`, skipping any another transaction holds
/// (an approval or refund in flight: the next round takes it, if still pending).
pub async fn lock_due(
    conn: &mut PgConnection,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<CommissionRow>> {
    sqlx::query_as!(
        CommissionRow,
        r#"
        select * from commissions
        where id = any($1) and status = 'pending' and hold_until <= $2
        order by id
        for update skip locked
        "#,
        ids,
        now,
    )
    .fetch_all(conn)
    .await
}

/// Writes the life and refund amounts of locked commissions, in one statement.
pub async fn save_commissions(
    conn: &mut PgConnection,
    rows: &[&CommissionRow],
) -> sqlx::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let id: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let status: Vec<&str> = rows.iter().map(|r| r.status.as_str()).collect();
    let decided: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.decided_at).collect();
    let reason: Vec<Option<&str>> = rows.iter().map(|r| r.decline_reason.as_deref()).collect();
    let refunded: Vec<i64> = rows.iter().map(|r| r.refunded_minor).collect();
    let reversed: Vec<i64> = rows.iter().map(|r| r.reversed_minor).collect();
    let clawed: Vec<i64> = rows.iter().map(|r| r.clawed_back_minor).collect();
    let version: Vec<i64> = rows.iter().map(|r| r.version).collect();
    sqlx::query!(
        r#"
        update commissions c
        set status = m.status, decided_at = m.decided_at, decline_reason = m.reason,
            refunded_minor = m.refunded, reversed_minor = m.reversed, clawed_back_minor = m.clawed,
            version = m.version
        from unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::int8[], $6::int8[],
                    $7::int8[], $8::int8[])
             as m(id, status, decided_at, reason, refunded, reversed, clawed, version)
        where c.id = m.id
        "#,
        &id,
        &status as _,
        &decided as _,
        &reason as _,
        &refunded,
        &reversed,
        &clawed,
        &version,
    )
    .execute(conn)
    .await?;
    Ok(())
}

// ---- refunds ----

#[derive(Debug, Clone)]
pub struct RefundRow {
    pub tracking_event_id: Uuid,
    pub refund_id: String,
    pub refunded_minor: i64,
    pub currency: String,
    pub kind: String,
    pub reason: String,
    pub applied: bool,
}

pub async fn find_refund(
    conn: &mut PgConnection,
    tracking_event_id: Uuid,
    refund_id: &str,
) -> sqlx::Result<Option<RefundRow>> {
    sqlx::query_as!(
        RefundRow,
        r#"
        select tracking_event_id, refund_id, refunded_minor, currency, kind, reason, applied
        from refunds where tracking_event_id = $1 and refund_id = $2
        "#,
        tracking_event_id,
        refund_id,
    )
    .fetch_optional(conn)
    .await
}

/// Records a refund, applied now or waiting for its commission; `false` if it was recorded
/// before (a concurrent repeat committed first).
pub async fn insert_refund(
    conn: &mut PgConnection,
    refund: &RefundRow,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query!(
        r#"
        insert into refunds (tracking_event_id, refund_id, refunded_minor, currency, kind, reason,
                             applied, received_at)
        values ($1, $2, $3, $4, $5, $6, $7, $8)
        on conflict do nothing
        "#,
        refund.tracking_event_id,
        refund.refund_id,
        refund.refunded_minor,
        refund.currency,
        refund.kind,
        refund.reason,
        refund.applied,
        now,
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Waiting refunds whose purchase has a commission now, oldest first: `(tracking event, refund
/// id)`.
pub async fn applicable_refunds(
    conn: &mut PgConnection,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, String)>> {
    Ok(sqlx::query!(
        r#"
        select r.tracking_event_id, r.refund_id from refunds r
        join commissions c on c.tracking_event_id = r.tracking_event_id
        where not r.applied
        order by r.received_at
        limit $1
        "#,
        limit,
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(|r| (r.tracking_event_id, r.refund_id))
    .collect())
}

/// Locks a waiting refund, unless another transaction holds it or it was applied.
pub async fn lock_waiting_refund(
    conn: &mut PgConnection,
    tracking_event_id: Uuid,
    refund_id: &str,
) -> sqlx::Result<Option<RefundRow>> {
    sqlx::query_as!(
        RefundRow,
        r#"
        select tracking_event_id, refund_id, refunded_minor, currency, kind, reason, applied
        from refunds where tracking_event_id = $1 and refund_id = $2 and not applied
        for update skip locked
        "#,
        tracking_event_id,
        refund_id,
    )
    .fetch_optional(conn)
    .await
}

pub async fn mark_refund_applied(
    conn: &mut PgConnection,
    tracking_event_id: Uuid,
    refund_id: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "update refunds set applied = true where tracking_event_id = $1 and refund_id = $2",
        tracking_event_id,
        refund_id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The campaign, creator and currency of the commissions `ids` and of the purchases'
/// `tracking_event_ids` (those that exist): what a batch must lock first.
pub async fn commission_owners(
    conn: &mut PgConnection,
    ids: &[Uuid],
    tracking_event_ids: &[Uuid],
) -> sqlx::Result<Vec<(Uuid, Uuid, String)>> {
    if ids.is_empty() && tracking_event_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query!(
        r#"
        select campaign_id, creator_id, currency from commissions
        where id = any($1) or tracking_event_id = any($2)
        "#,
        ids,
        tracking_event_ids,
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(|r| (r.campaign_id, r.creator_id, r.currency))
    .collect())
}
