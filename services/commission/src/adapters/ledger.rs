//! SQL of the ledger: transfers written set-based, a creator's statement read from them, and the
//! check that the books balance (every running total equals the sum of its account's transfers).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::ledger::Transfer;

/// A transfer to write, with what it is about.
#[derive(Debug, Clone)]
pub struct TransferRow {
    pub entry_id: Uuid,
    pub transfer: Transfer,
    pub currency: String,
    pub commission_id: Option<Uuid>,
    pub payout_id: Option<Uuid>,
    pub reference: Option<String>,
    pub at: DateTime<Utc>,
}

/// Writes transfers in one statement.
pub async fn insert_transfers(conn: &mut PgConnection, rows: &[TransferRow]) -> sqlx::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let entry: Vec<Uuid> = rows.iter().map(|r| r.entry_id).collect();
    let kind: Vec<&str> = rows.iter().map(|r| r.transfer.movement.code()).collect();
    let currency: Vec<&str> = rows.iter().map(|r| r.currency.as_str()).collect();
    let debit: Vec<String> = rows.iter().map(|r| r.transfer.debit.to_string()).collect();
    let credit: Vec<String> = rows.iter().map(|r| r.transfer.credit.to_string()).collect();
    let amount: Vec<i64> = rows.iter().map(|r| r.transfer.amount_minor).collect();
    let commission: Vec<Option<Uuid>> = rows.iter().map(|r| r.commission_id).collect();
    let payout: Vec<Option<Uuid>> = rows.iter().map(|r| r.payout_id).collect();
    let reference: Vec<Option<&str>> = rows.iter().map(|r| r.reference.as_deref()).collect();
    let at: Vec<DateTime<Utc>> = rows.iter().map(|r| r.at).collect();
    sqlx::query!(
        r#"
        insert into ledger_transfers (entry_id, kind, currency, debit_account, credit_account,
                                      amount_minor, commission_id, payout_id, reference, created_at)
        select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[],
                             $7::uuid[], $8::uuid[], $9::text[], $10::timestamptz[])
        "#,
        &entry,
        &kind as _,
        &currency as _,
        &debit,
        &credit,
        &amount,
        &commission as _,
        &payout as _,
        &reference as _,
        &at,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A transfer between a creator's accounts and the outside, as a statement shows it.
#[derive(Debug, Clone)]
pub struct StatementRow {
    pub at: DateTime<Utc>,
    pub kind: String,
    /// Signed: positive when it adds to what the creator is owed.
    pub amount_minor: i64,
    pub commission_id: Option<Uuid>,
    pub campaign_id: Option<Uuid>,
    pub payout_id: Option<Uuid>,
    pub reference: Option<String>,
}

/// The owed accounts of a creator (what the platform owes them: pending, available, reserved).
fn owed_accounts(creator: Uuid) -> Vec<String> {
    ["pending", "available", "reserved"]
        .iter()
        .map(|kind| format!("{kind}/{creator}"))
        .collect()
}

/// What the creator was owed in `currency` before `until` (the sum of the owed accounts'
/// transfers), and the four balances then: (pending, available, reserved, paid).
pub async fn balances_at(
    conn: &mut PgConnection,
    creator: Uuid,
    currency: &str,
    until: DateTime<Utc>,
) -> sqlx::Result<(i64, i64, i64, i64)> {
    let row = sqlx::query!(
        r#"
        with lines as (
            select credit_account as account, amount_minor as amount from ledger_transfers
            where credit_account = any($1) and currency = $2 and created_at < $3
            union all
            select debit_account, -amount_minor from ledger_transfers
            where debit_account = any($1) and currency = $2 and created_at < $3
        )
        select
            coalesce(sum(amount) filter (where account like 'pending/%'), 0)::int8 as "pending!",
            coalesce(sum(amount) filter (where account like 'available/%'), 0)::int8 as "available!",
            coalesce(sum(amount) filter (where account like 'reserved/%'), 0)::int8 as "reserved!",
            coalesce(sum(amount) filter (where account like 'paid/%'), 0)::int8 as "paid!"
        from lines
        "#,
        &[
            format!("pending/{creator}"),
            format!("available/{creator}"),
            format!("reserved/{creator}"),
            format!("paid/{creator}"),
        ],
        currency,
        until,
    )
    .fetch_one(conn)
    .await?;
    Ok((row.pending, row.available, row.reserved, row.paid))
}

/// The creator's transfers with the outside in `currency` from `from` to before `until`, oldest
/// first: those with one side owed to the creator and the other not.
pub async fn statement_lines(
    conn: &mut PgConnection,
    creator: Uuid,
    currency: &str,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> sqlx::Result<Vec<StatementRow>> {
    sqlx::query_as!(
        StatementRow,
        r#"
        select t.created_at as at, t.kind,
               case when t.credit_account = any($1) then t.amount_minor else -t.amount_minor end as "amount_minor!",
               t.commission_id, c.campaign_id as "campaign_id?", t.payout_id, t.reference
        from ledger_transfers t
        left join commissions c on c.id = t.commission_id
        where (t.credit_account = any($1)) <> (t.debit_account = any($1))
          and (t.credit_account = any($1) or t.debit_account = any($1))
          and t.currency = $2 and t.created_at >= $3 and t.created_at < $4
        order by t.created_at, t.id
        "#,
        &owed_accounts(creator),
        currency,
        from,
        until,
    )
    .fetch_all(conn)
    .await
}

/// The currencies a creator has balances in.
pub async fn creator_currencies(
    conn: &mut PgConnection,
    creator: Uuid,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        "select currency from balances where creator_id = $1 order by currency",
        creator,
    )
    .fetch_all(conn)
    .await
}

/// What the check found.
#[derive(Debug, Clone, Default)]
pub struct Books {
    pub transfers: i64,
    pub accounts: i64,
    pub currencies: Vec<String>,
    pub problems: Vec<String>,
}

/// Checks the books in one snapshot (the caller's transaction, repeatable read): every currency
/// sums to zero, every running total (creators' balances, campaigns' committed budgets) equals
/// the sum of its account's transfers, every commission's own amounts agree with the ledger, and
/// no creator was paid more than their approved, unreversed commissions.
pub async fn check(conn: &mut PgConnection) -> sqlx::Result<Books> {
    let mut books = Books::default();
    // Balanced by construction (each transfer debits what it credits), summed all the same.
    let totals = sqlx::query!(
        r#"
        with lines as (
            select currency, amount_minor as amount, 1 as counted from ledger_transfers
            union all
            select currency, -amount_minor, 0 from ledger_transfers
        )
        select currency as "currency!", sum(counted)::int8 as "transfers!", sum(amount)::int8 as "net!"
        from lines group by currency order by currency
        "#
    )
    .fetch_all(&mut *conn)
    .await?;
    for t in totals {
        books.transfers += t.transfers;
        if t.net != 0 {
            books.problems.push(format!(
                "{}: the transfers sum to {}, not 0",
                t.currency, t.net
            ));
        }
        books.currencies.push(t.currency);
    }
    // Every account's balance from its transfers (credits minus debits), beside its running total.
    let accounts = sqlx::query!(
        r#"
        with lines as (
            select credit_account as account, currency, amount_minor as amount from ledger_transfers
            union all
            select debit_account, currency, -amount_minor from ledger_transfers
        ), sums as (
            select split_part(account, '/', 1) as kind, split_part(account, '/', 2)::uuid as owner,
                   currency, sum(amount)::int8 as total
            from lines group by account, currency
        ), running as (
            select 'pending' as kind, creator_id as owner, currency, pending_minor as total from balances
            union all select 'available', creator_id, currency, available_minor from balances
            union all select 'reserved', creator_id, currency, reserved_minor from balances
            union all select 'paid', creator_id, currency, paid_minor from balances
            union all select 'budget', campaign_id, currency, -committed_minor from campaign_terms
        )
        select coalesce(s.kind, r.kind) as "kind!", coalesce(s.owner, r.owner) as "owner!",
               coalesce(s.currency, r.currency) as "currency!",
               coalesce(s.total, 0) as "ledger!", coalesce(r.total, 0) as "running!"
        from sums s full join running r
          on r.kind = s.kind and r.owner = s.owner and r.currency = s.currency
        "#
    )
    .fetch_all(&mut *conn)
    .await?;
    for a in accounts {
        books.accounts += 1;
        if a.ledger != a.running {
            books.problems.push(format!(
                "{}/{} in {}: the running total is {} but its transfers sum to {}",
                a.kind, a.owner, a.currency, a.running, a.ledger
            ));
        }
    }
    // Each commission's amounts against its transfers.
    let commissions = sqlx::query!(
        r#"
        with t as (
            select commission_id,
                   sum(amount_minor) filter (where kind = 'commission') as committed,
                   sum(amount_minor) filter (where kind in ('reversal', 'decline')) as reversed,
                   sum(amount_minor) filter (where kind = 'clawback') as clawed
            from ledger_transfers where commission_id is not null group by commission_id
        )
        select c.id as "id!", c.status as "status!", c.amount_minor as "amount!",
               c.reversed_minor + c.clawed_back_minor as "taken!",
               coalesce(t.committed, 0)::int8 as "committed!",
               (coalesce(t.reversed, 0) + coalesce(t.clawed, 0))::int8 as "returned!"
        from commissions c left join t on t.commission_id = c.id
        where coalesce(t.committed, 0) <> c.amount_minor
           or (c.status <> 'declined' and coalesce(t.reversed, 0) + coalesce(t.clawed, 0) <> c.reversed_minor + c.clawed_back_minor)
           or (c.status = 'declined' and coalesce(t.reversed, 0) + coalesce(t.clawed, 0) <> c.amount_minor)
        limit 100
        "#
    )
    .fetch_all(&mut *conn)
    .await?;
    for c in commissions {
        books.problems.push(format!(
            "commission {} ({}): amount {}, taken back {}, but its transfers commit {} and return {}",
            c.id, c.status, c.amount, c.taken, c.committed, c.returned
        ));
    }
    // No creator paid more than their approved commissions less what refunds took back unpaid.
    let overpaid = sqlx::query!(
        r#"
        select b.creator_id as "creator_id!", b.currency as "currency!", b.paid_minor as "paid!",
               coalesce(sum(c.amount_minor - c.reversed_minor) filter (where c.status in ('approved', 'reversed')), 0)::int8 as "earned!"
        from balances b
        left join commissions c on c.creator_id = b.creator_id and c.currency = b.currency
        group by b.creator_id, b.currency, b.paid_minor
        having b.paid_minor > coalesce(sum(c.amount_minor - c.reversed_minor) filter (where c.status in ('approved', 'reversed')), 0)
        "#
    )
    .fetch_all(&mut *conn)
    .await?;
    for o in overpaid {
        books.problems.push(format!(
            "creator {} in {}: paid {} but approved, unreversed commissions come to {}",
            o.creator_id, o.currency, o.paid, o.earned
        ));
    }
    Ok(books)
}
