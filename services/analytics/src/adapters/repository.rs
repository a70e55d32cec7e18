//! The analytics tables: statistics rows added to, the campaigns' owners and budgets, the audit
//! trail, and the replays. Small functions on a borrowed connection; the use cases own the
//! transactions.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{Amounts, CampaignState, Counts, Subject, Sums};

/// Adds a batch's `sums` to the statistics: one statement per table, each row written once, the
/// rows taken in the order their keys sort in (counters, then money, then campaigns: the same
/// order in every transaction, so two never deadlock). Amounts saturate at the largest bigint.
pub async fn add_sums(conn: &mut PgConnection, sums: &Sums) -> sqlx::Result<()> {
    if !sums.counts.is_empty() {
        let n = sums.counts.len();
        let (mut kind, mut id, mut day) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut views, mut clicks, mut purchases, mut commissions, mut refused) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut unique_clicks, mut bot_clicks, mut conversions) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for ((subject, d), c) in &sums.counts {
            kind.push(subject.kind());
            id.push(subject.id());
            day.push(*d);
            views.push(c.views);
            clicks.push(c.clicks);
            purchases.push(c.purchases);
            commissions.push(c.commissions);
            refused.push(c.commissions_refused);
            unique_clicks.push(c.unique_clicks);
            bot_clicks.push(c.bot_clicks);
            conversions.push(c.conversions);
        }
        sqlx::query!(
            r#"
            insert into stats_days
                (subject_kind, subject_id, day, views, clicks, purchases, commissions, commissions_refused,
                 unique_clicks, bot_clicks, conversions)
            select * from unnest($1::text[], $2::uuid[], $3::date[], $4::int8[], $5::int8[],
                                 $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[],
                                 $11::int8[])
            on conflict (subject_kind, subject_id, day) do update set
                views = stats_days.views + excluded.views,
                clicks = stats_days.clicks + excluded.clicks,
                purchases = stats_days.purchases + excluded.purchases,
                commissions = stats_days.commissions + excluded.commissions,
                commissions_refused = stats_days.commissions_refused + excluded.commissions_refused,
                unique_clicks = stats_days.unique_clicks + excluded.unique_clicks,
                bot_clicks = stats_days.bot_clicks + excluded.bot_clicks,
                conversions = stats_days.conversions + excluded.conversions
            "#,
            &kind as _,
            &id,
            &day,
            &views,
            &clicks,
            &purchases,
            &commissions,
            &refused,
            &unique_clicks,
            &bot_clicks,
            &conversions,
        )
        .execute(&mut *conn)
        .await?;
    }
    if !sums.amounts.is_empty() {
        let n = sums.amounts.len();
        let (mut kind, mut id, mut day, mut currency) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut revenue, mut earned, mut reserved, mut released, mut paid) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for ((subject, d, c), a) in &sums.amounts {
            kind.push(subject.kind());
            id.push(subject.id());
            day.push(*d);
            currency.push(c.as_str());
            revenue.push(a.revenue_minor);
            earned.push(a.earned_minor);
            reserved.push(a.reserved_minor);
            released.push(a.released_minor);
            paid.push(a.paid_minor);
        }
        sqlx::query!(
            r#"
            insert into stats_amounts
                (subject_kind, subject_id, day, currency,
                 revenue_minor, earned_minor, reserved_minor, released_minor, paid_minor)
            select * from unnest($1::text[], $2::uuid[], $3::date[], $4::text[], $5::int8[],
                                 $6::int8[], $7::int8[], $8::int8[], $9::int8[])
            on conflict (subject_kind, subject_id, day, currency) do update set
                revenue_minor = least(stats_amounts.revenue_minor::numeric + excluded.revenue_minor, 9223372036854775807)::bigint,
                earned_minor = least(stats_amounts.earned_minor::numeric + excluded.earned_minor, 9223372036854775807)::bigint,
                reserved_minor = least(stats_amounts.reserved_minor::numeric + excluded.reserved_minor, 9223372036854775807)::bigint,
                released_minor = least(stats_amounts.released_minor::numeric + excluded.released_minor, 9223372036854775807)::bigint,
                paid_minor = least(stats_amounts.paid_minor::numeric + excluded.paid_minor, 9223372036854775807)::bigint
            "#,
            &kind as _,
            &id,
            &day,
            &currency as _,
            &revenue,
            &earned,
            &reserved,
            &released,
            &paid,
        )
        .execute(&mut *conn)
        .await?;
    }
    for state in sums.campaigns.values() {
        upsert_campaign(conn, state).await?;
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
        select day, views, clicks, purchases, commissions, commissions_refused,
               unique_clicks, bot_clicks, conversions
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
                unique_clicks: r.unique_clicks,
                bot_clicks: r.bot_clicks,
                conversions: r.conversions,
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

/// Keeps a batch of messages in the audit trail in one statement (those kept before are left).
pub async fn keep_all(conn: &mut PgConnection, rows: &[AuditRow]) -> sqlx::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&AuditRow) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
    let message_id = column(|r| &r.message_id);
    let topic = column(|r| &r.topic);
    let kind = column(|r| &r.kind);
    let message_type = column(|r| &r.message_type);
    let correlation_id = column(|r| &r.correlation_id);
    let causation_id = column(|r| &r.causation_id);
    let aggregate_type = column(|r| &r.aggregate_type);
    let aggregate_id = column(|r| &r.aggregate_id);
    let trace_id = column(|r| &r.trace_id);
    let aggregate_version: Vec<i64> = rows.iter().map(|r| r.aggregate_version).collect();
    let occurred_at: Vec<DateTime<Utc>> = rows.iter().map(|r| r.occurred_at).collect();
    let payload: Vec<&[u8]> = rows.iter().map(|r| r.payload.as_slice()).collect();
    sqlx::query!(
        r#"
        insert into audit_messages
            (message_id, topic, kind, message_type, correlation_id, causation_id,
             aggregate_type, aggregate_id, aggregate_version, occurred_at, trace_id, payload)
        select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::text[], $7::text[], $8::text[], $9::int8[], $10::timestamptz[],
                             $11::text[], $12::bytea[])
        on conflict (message_id) do nothing
        "#,
        &message_id as _,
        &topic as _,
        &kind as _,
        &message_type as _,
        &correlation_id as _,
        &causation_id as _,
        &aggregate_type as _,
        &aggregate_id as _,
        &aggregate_version,
        &occurred_at,
        &trace_id as _,
        &payload as _,
    )
    .execute(conn)
    .await?;
    Ok(())
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

/// Drops the statistics (every subject's rows: campaigns, creators, links and sub-ids) and what
/// the projections' inbox remembers, under locks that wait for
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
