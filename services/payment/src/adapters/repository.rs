//! SQL for payouts. Functions borrow the caller's connection (the handler's transaction).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{AccountDetails, Method, NewPayout, State};

#[derive(Debug, Clone)]
pub struct PayoutRow {
    pub id: Uuid,
    pub creator_id: Uuid,
    pub amount_minor: i64,
    pub currency: String,
    pub method: String,
    /// Read as text; `query_as!` makes it an `Account` through `From<String>`.
    pub account_details: Account,
    pub account_masked: String,
    pub status: String,
    pub provider_reference: Option<String>,
    pub failure_reason: Option<String>,
    pub version: i64,
    pub correlation_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The stored account details, redacted in `Debug`.
#[derive(Clone, Debug)]
pub struct Account(pub AccountDetails);

impl From<String> for Account {
    fn from(value: String) -> Self {
        Self(AccountDetails::new(value))
    }
}

impl PayoutRow {
    pub fn state(&self) -> Option<State> {
        State::parse(&self.status)
    }

    pub fn method(&self) -> Option<Method> {
        Method::parse(&self.method)
    }
}

pub async fn insert_payout(
    conn: &mut PgConnection,
    id: Uuid,
    new: &NewPayout,
    masked: &str,
    correlation_id: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<PayoutRow> {
    sqlx::query_as!(
        PayoutRow,
        r#"
        insert into payouts (id, creator_id, amount_minor, currency, method, account_details, account_masked,
                             status, version, correlation_id, created_at, updated_at)
        values ($1, $2, $3, $4, $5, $6, $7, 'requested', 1, $8, $9, $9)
        returning *
        "#,
        id,
        new.creator_id,
        new.amount_minor,
        &new.currency,
        new.method.as_str(),
        new.account.expose(),
        masked,
        correlation_id,
        now,
    )
    .fetch_one(conn)
    .await
}

pub async fn find_payout(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<PayoutRow>> {
    sqlx::query_as!(
        PayoutRow,
        r#"
        select * from payouts where id = $1
        "#,
        id,
    )
    .fetch_optional(conn)
    .await
}

pub async fn lock_payout(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<PayoutRow>> {
    sqlx::query_as!(
        PayoutRow,
        r#"
        select * from payouts where id = $1 for update
        "#,
        id,
    )
    .fetch_optional(conn)
    .await
}

/// Moves a locked payout to `state` (bumping its version), recording the provider's reference
/// or the failure reason when given.
pub async fn set_state(
    conn: &mut PgConnection,
    id: Uuid,
    state: State,
    provider_reference: Option<&str>,
    failure_reason: Option<&str>,
    now: DateTime<Utc>,
) -> sqlx::Result<PayoutRow> {
    sqlx::query_as!(
        PayoutRow,
        r#"
        update payouts
        set status = $2,
            provider_reference = coalesce($3, provider_reference),
            failure_reason = coalesce($4, failure_reason),
            version = version + 1,
            updated_at = $5
        where id = $1
        returning *
        "#,
        id,
        state.as_str(),
        provider_reference,
        failure_reason,
        now,
    )
    .fetch_one(conn)
    .await
}

pub async fn list_payouts(
    conn: &mut PgConnection,
    creator_id: Option<Uuid>,
    before: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<PayoutRow>> {
    sqlx::query_as!(
        PayoutRow,
        r#"
        select * from payouts
        where ($1::uuid is null or creator_id = $1)
          and ($2::uuid is null or id < $2)
        order by id desc
        limit $3
        "#,
        creator_id,
        before,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// Payouts whose payment was started but not finished at least `older_than_secs` ago.
pub async fn stuck_in_processing(
    conn: &mut PgConnection,
    older_than_secs: f64,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        r#"
        select id from payouts
        where status = 'processing' and updated_at <= now() - make_interval(secs => $1)
        order by updated_at
        limit 100
        "#,
        older_than_secs,
    )
    .fetch_all(conn)
    .await
}
