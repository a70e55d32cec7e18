//! The analytics tables: statistics rows added to, the campaigns' owners and budgets, the audit
//! trail, and the replays. Small functions on a borrowed connection; the use cases own the
//! transactions.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{Amounts, CampaignState, Changes, Counts, Subject};

/// Adds `changes` to the statistics, taking the rows in the order the keys sort in (the same
/// order in every transaction). Amounts saturate at the largest bigint instead of failing.
pub async fn add(conn: &mut PgConnection, changes: &Changes) -> sqlx::Result<()> {
    for ((subject, day), c) in &changes.counts {
        sqlx::query!(
            r#"
            insert into stats_days
                (subject_kind, subject_id, day, views, clicks, purchases, commissions, commissions_refused)
            values ($1, $2, $3, $4, $5, $6, $7, $8)
            on conflict (subject_kind, subject_id, day) do update set
                views = stats_days.views + excluded.views,
                clicks = stats_days.clicks + excluded.clicks,
                purchases = stats_days.purchases + excluded.purchases,
                commissions = stats_days.commissions + excluded.commissions,
                commissions_refused = stats_days.commissions_refused + excluded.commissions_refused
            "#,
            subject.kind(),
            subject.id(),
            day,
            c.views,
            c.clicks,
            c.purchases,
            c.commissions,
            c.commissions_refused,
        )
        .execute(&mut *conn)
        .await?;
    }
    for ((subject, day, currency), a) in &changes.amounts {
        sqlx::query!(
            r#"
            insert into stats_amounts
                (subject_kind, subject_id, day, currency,
                 revenue_minor, earned_minor, reserved_minor, released_minor, paid_minor)
            values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            on conflict (subject_kind, subject_id, day, currency) do update set
                revenue_minor = least(stats_amounts.revenue_minor::numeric + excluded.revenue_minor, 9223372036854775807)::bigint,
                earned_minor = least(stats_amounts.earned_minor::numeric + excluded.earned_minor, 9223372036854775807)::bigint,
                reserved_minor = least(stats_amounts.reserved_minor::numeric + excluded.reserved_minor, 9223372036854775807)::bigint,
                released_minor = least(stats_amounts.released_minor::numeric + excluded.released_minor, 9223372036854775807)::bigint,
                paid_minor = least(stats_amounts.paid_minor::numeric + excluded.paid_minor, 9223372036854775807)::bigint
            "#,
            subject.kind(),
            subject.id(),
            day,
            currency,
            a.revenue_minor,
            a.earned_minor,
            a.reserved_minor,
            a.released_minor,
            a.paid_minor,
        )
        .execute(&mut *conn)
        .await?;
    }
    if let Some(c) = &changes.campaign {
        upsert_campaign(conn, c).await?;
    }
    Ok(())
}

/// Keeps the campaign's owner and budget unless a later version is already kept.
async fn upsert_campaign(conn: &mut PgConnection, c: &CampaignState) -> sqlx::Result<()> {
    sqlx::query!(
        r#"
        insert into campaigns (campaign_id, advertiser_id, currency, budget_minor, version)
        values ($1, $2, $3, $4, $5)
        on conflict (campaign_id) do update set
            advertiser_id = excluded.advertiser_id,
            currency = excluded.currency,
            budget_minor = excluded.budget_minor,
            version = excluded.version
        where campaigns.version < excluded.version
        "#,
        c.campaign_id,
        c.advertiser_id,
        c.currency,
        c.budget_minor,
        c.version,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A campaign's owner and budget, if any of its events was seen.
pub async fn campaign(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<CampaignState>> {
    sqlx::query_as!(
        CampaignState,
        r#"
        select campaign_id, advertiser_id, currency, budget_minor, version
        from campaigns where campaign_id = $1
        "#,
        id
    )
    .fetch_optional(conn)
    .await
}

/// One day's counters.
#[derive(Debug, Clone)]
pub struct DayRow {
    pub day: NaiveDate,
    pub counts: Counts,
}

/// One day's money in one currency.
#[derive(Debug, Clone)]
pub struct AmountRow {
    pub day: NaiveDate,
    pub currency: String,
    pub amounts: Amounts,
}

/// Every day of the subject, oldest first.
pub async fn days(conn: &mut PgConnection, subject: Subject) -> sqlx::Result<Vec<DayRow>> {
    let rows = sqlx::query!(
        r#"
        select day, views, clicks, purchases, commissions, commissions_refused
        from stats_days
        where subject_kind = $1 and subject_id = $2
        order by day
        "#,
        subject.kind(),
        subject.id(),
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| DayRow {
            day: r.day,
            counts: Counts {
                views: r.views,
                clicks: r.clicks,
                purchases: r.purchases,
                commissions: r.commissions,
                commissions_refused: r.commissions_refused,
            },
        })
        .collect())
}

/// Every day's money of the subject, by day then currency.
pub async fn amounts(conn: &mut PgConnection, subject: Subject) -> sqlx::Result<Vec<AmountRow>> {
    let rows = sqlx::query!(
        r#"
        select day, currency, revenue_minor, earned_minor, reserved_minor, released_minor, paid_minor
        from stats_amounts
        where subject_kind = $1 and subject_id = $2
        order by day, currency
        "#,
        subject.kind(),
        subject.id(),
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| AmountRow {
            day: r.day,
            currency: r.currency,
            amounts: Amounts {
                revenue_minor: r.revenue_minor,
                earned_minor: r.earned_minor,
                reserved_minor: r.reserved_minor,
                released_minor: r.released_minor,
                paid_minor: r.paid_minor,
            },
        })
        .collect())
}

/// One message of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub message_id: String,
    pub topic: String,
    pub kind: String,
    pub message_type: String,
    pub correlation_id: String,
    pub causation_id: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub aggregate_version: i64,
    pub occurred_at: DateTime<Utc>,
    pub trace_id: String,
    pub payload: Vec<u8>,
}

impl crate::domain::order::Caused for AuditRow {
    fn message_id(&self) -> &str {
        &self.message_id
    }
    fn causation_id(&self) -> &str {
        &self.causation_id
    }
    fn occurred_at(&self) -> DateTime<Utc> {
        self.occurred_at
    }
}

/// Keeps a message in the audit trail; `false` if it was kept before (a replay, a redelivery).
pub async fn keep(conn: &mut PgConnection, row: &AuditRow) -> sqlx::Result<bool> {
    let inserted = sqlx::query!(
        r#"
        insert into audit_messages
            (message_id, topic, kind, message_type, correlation_id, causation_id,
             aggregate_type, aggregate_id, aggregate_version, occurred_at, trace_id, payload)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
        on conflict (message_id) do nothing
        "#,
        row.message_id,
        row.topic,
        row.kind,
        row.message_type,
        row.correlation_id,
        row.causation_id,
        row.aggregate_type,
        row.aggregate_id,
        row.aggregate_version,
        row.occurred_at,
        row.trace_id,
        row.payload,
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Up to `limit` messages of one workflow, by time.
pub async fn workflow(
    conn: &mut PgConnection,
    correlation_id: &str,
    limit: i64,
) -> sqlx::Result<Vec<AuditRow>> {
    sqlx::query_as!(
        AuditRow,
        r#"
        select message_id, topic, kind, message_type, correlation_id, causation_id,
               aggregate_type, aggregate_id, aggregate_version, occurred_at, trace_id, payload
        from audit_messages
        where correlation_id = $1
        order by occurred_at, message_id
        limit $2
        "#,
        correlation_id,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// Up to `limit` events of one aggregate, by version.
pub async fn history(
    conn: &mut PgConnection,
    aggregate_type: &str,
    aggregate_id: &str,
    limit: i64,
) -> sqlx::Result<Vec<AuditRow>> {
    sqlx::query_as!(
        AuditRow,
        r#"
        select message_id, topic, kind, message_type, correlation_id, causation_id,
               aggregate_type, aggregate_id, aggregate_version, occurred_at, trace_id, payload
        from audit_messages
        where aggregate_type = $1 and aggregate_id = $2 and kind = 'event'
        order by aggregate_version, occurred_at, message_id
        limit $3
        "#,
        aggregate_type,
        aggregate_id,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// Deletes up to `batch` audit messages that happened before `before`; how many.
pub async fn prune_audit(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
    batch: i64,
) -> sqlx::Result<u64> {
    Ok(sqlx::query!(
        r#"
        delete from audit_messages
        where message_id in (
            select message_id from audit_messages where occurred_at < $1 limit $2
        )
        "#,
        before,
        batch,
    )
    .execute(conn)
    .await?
    .rows_affected())
}

/// Drops the statistics and what the projections' inbox remembers, under locks that wait for
/// every transaction applying a message and hold the next ones back until commit; records the
/// replay. Call it in a transaction.
pub async fn drop_projections(
    conn: &mut PgConnection,
    consumer_prefix: &str,
) -> sqlx::Result<(i64, DateTime<Utc>)> {
    sqlx::query!("lock table stats_days, stats_amounts, campaigns in access exclusive mode")
        .execute(&mut *conn)
        .await?;
    sqlx::query!("truncate stats_days, stats_amounts, campaigns")
        .execute(&mut *conn)
        .await?;
    sqlx::query!(
        "delete from inbox where starts_with(consumer, $1)",
        consumer_prefix
    )
    .execute(&mut *conn)
    .await?;
    let replay = sqlx::query!("insert into replays default values returning id, started_at")
        .fetch_one(conn)
        .await?;
    Ok((replay.id, replay.started_at))
}

/// The replays whose cursors are not reset yet, oldest first.
pub async fn unfinished_replays(conn: &mut PgConnection) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar!("select id from replays where cursors_reset_at is null order by id")
        .fetch_all(conn)
        .await
}

/// Records that every cursor was reset for the replays up to `id`.
pub async fn replay_cursors_reset(conn: &mut PgConnection, id: i64) -> sqlx::Result<()> {
    sqlx::query!(
        "update replays set cursors_reset_at = now() where id <= $1 and cursors_reset_at is null",
        id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// When the last replay began.
pub async fn last_replay(conn: &mut PgConnection) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar!("select max(started_at) from replays")
        .fetch_one(conn)
        .await
}
