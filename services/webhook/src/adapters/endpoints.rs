//! The SQL of the endpoints API: endpoints and secrets, the delivery log, resends.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// An endpoint as stored, with its previous secret's expiry.
#[derive(Debug, Clone)]
pub struct EndpointRow {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub disabled_reason: String,
    pub consecutive_failures: i32,
    /// Messages per second at most; 0: no limit.
    pub rate_limit: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
}

/// A delivery with its message.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub seq: i64,
    pub message_id: String,
    pub endpoint_id: Uuid,
    pub event_type: String,
    pub aggregate: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub payload: String,
}

#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub id: Uuid,
    pub message_id: String,
    pub endpoint_id: Uuid,
    pub attempted_at: DateTime<Utc>,
    pub status_code: i32,
    pub latency_ms: i64,
    pub response: String,
    pub error: String,
    pub success: bool,
}

pub async fn count_owned(conn: &mut PgConnection, owner: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"select count(*) as "n!" from endpoints where owner_id = $1"#,
        owner
    )
    .fetch_one(conn)
    .await
}

/// Inserts an endpoint and its first secret.
pub async fn insert(conn: &mut PgConnection, row: &EndpointRow, secret: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into endpoints (id, owner_id, url, description, event_types, enabled, rate_limit, created_at, updated_at)
         values ($1, $2, $3, $4, $5, true, $6, $7, $7)",
        row.id,
        row.owner_id,
        row.url,
        row.description,
        &row.event_types,
        row.rate_limit,
        row.created_at
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "insert into endpoint_secrets (endpoint_id, secret, created_at) values ($1, $2, $3)",
        row.id,
        secret,
        row.created_at
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// An owner's endpoint, locked for update when `lock`.
pub async fn find(
    conn: &mut PgConnection,
    owner: Uuid,
    id: Uuid,
) -> sqlx::Result<Option<EndpointRow>> {
    sqlx::query_as!(
        EndpointRow,
        r#"
        select e.id, e.owner_id, e.url, e.description, e.event_types, e.enabled, e.disabled_reason,
               e.consecutive_failures, e.rate_limit, e.created_at, e.updated_at,
               (select max(s.expires_at) from endpoint_secrets s
                where s.endpoint_id = e.id and s.expires_at > now()) as previous_secret_expires_at
        from endpoints e where e.id = $1 and e.owner_id = $2
        "#,
        id,
        owner
    )
    .fetch_optional(conn)
    .await
}

/// The endpoints with these ids (any owner).
pub async fn find_many(conn: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<Vec<EndpointRow>> {
    sqlx::query_as!(
        EndpointRow,
        r#"
        select e.id, e.owner_id, e.url, e.description, e.event_types, e.enabled, e.disabled_reason,
               e.consecutive_failures, e.rate_limit, e.created_at, e.updated_at,
               null::timestamptz as previous_secret_expires_at
        from endpoints e where e.id = any($1)
        "#,
        ids
    )
    .fetch_all(conn)
    .await
}

/// An owner's endpoints after `after` (ids ascending), `limit` of them.
pub async fn list(
    conn: &mut PgConnection,
    owner: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<EndpointRow>> {
    sqlx::query_as!(
        EndpointRow,
        r#"
        select e.id, e.owner_id, e.url, e.description, e.event_types, e.enabled, e.disabled_reason,
               e.consecutive_failures, e.rate_limit, e.created_at, e.updated_at,
               (select max(s.expires_at) from endpoint_secrets s
                where s.endpoint_id = e.id and s.expires_at > now()) as previous_secret_expires_at
        from endpoints e where e.owner_id = $1 and ($2::uuid is null or e.id > $2)
        order by e.id limit $3
        "#,
        owner,
        after,
        limit
    )
    .fetch_all(conn)
    .await
}

/// Writes an endpoint's changeable fields; enabling clears the failure count and reason.
pub async fn update(conn: &mut PgConnection, row: &EndpointRow) -> sqlx::Result<()> {
    sqlx::query!(
        "update endpoints set url = $2, description = $3, event_types = $4, enabled = $5,
             disabled_reason = case when $5 then '' else disabled_reason end,
             consecutive_failures = case when $5 and not enabled then 0 else consecutive_failures end,
             rate_limit = $6, updated_at = now()
         where id = $1",
        row.id,
        row.url,
        row.description,
        &row.event_types,
        row.enabled,
        row.rate_limit
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn delete(conn: &mut PgConnection, owner: Uuid, id: Uuid) -> sqlx::Result<bool> {
    let deleted = sqlx::query!(
        "delete from endpoints where id = $1 and owner_id = $2",
        id,
        owner
    )
    .execute(conn)
    .await?;
    Ok(deleted.rows_affected() == 1)
}

/// One stored secret (sealed, or in the clear from before sealing).
#[derive(Debug, Clone)]
pub struct StoredSecret {
    pub endpoint_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub secret: String,
}

/// Every stored secret, locked until the transaction ends.
pub async fn lock_secrets(conn: &mut PgConnection) -> sqlx::Result<Vec<StoredSecret>> {
    sqlx::query_as!(
        StoredSecret,
        "select endpoint_id, created_at, secret from endpoint_secrets
         order by endpoint_id, created_at
         for update"
    )
    .fetch_all(conn)
    .await
}

/// Replaces stored secrets (sealed again) in one statement.
pub async fn replace_secrets(
    conn: &mut PgConnection,
    secrets: &[StoredSecret],
) -> sqlx::Result<()> {
    let endpoints: Vec<Uuid> = secrets.iter().map(|s| s.endpoint_id).collect();
    let created: Vec<DateTime<Utc>> = secrets.iter().map(|s| s.created_at).collect();
    let values: Vec<String> = secrets.iter().map(|s| s.secret.clone()).collect();
    sqlx::query!(
        "update endpoint_secrets s set secret = v.secret
         from unnest($1::uuid[], $2::timestamptz[], $3::text[]) as v(endpoint_id, created_at, secret)
         where s.endpoint_id = v.endpoint_id and s.created_at = v.created_at",
        &endpoints,
        &created,
        &values
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A new current secret; the current one verifies until `overlap` from now, older ones end.
pub async fn rotate(
    conn: &mut PgConnection,
    id: Uuid,
    secret: &str,
    overlap_seconds: f64,
) -> sqlx::Result<()> {
    sqlx::query!(
        "delete from endpoint_secrets where endpoint_id = $1 and expires_at is not null",
        id
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "update endpoint_secrets set expires_at = now() + make_interval(secs => $2)
         where endpoint_id = $1 and expires_at is null",
        id,
        overlap_seconds
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "insert into endpoint_secrets (endpoint_id, secret, created_at) values ($1, $2, clock_timestamp())",
        id,
        secret
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// An endpoint's deliveries, newest first, below `before` (a seq), of `status` if given.
pub async fn deliveries(
    conn: &mut PgConnection,
    endpoint: Uuid,
    status: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<DeliveryRow>> {
    sqlx::query_as!(
        DeliveryRow,
        r#"
        select d.seq, d.message_id, d.endpoint_id, m.event_type, m.aggregate,
               case when d.status = 'blocked' then 'pending' else d.status end as "status!",
               d.attempts, d.next_attempt_at, d.created_at, m.payload
        from deliveries d join messages m on m.id = d.message_id
        where d.endpoint_id = $1
          and ($2::text is null or d.status = $2 or ($2 = 'pending' and d.status = 'blocked'))
          and ($3::int8 is null or d.seq < $3)
        order by d.seq desc limit $4
        "#,
        endpoint,
        status,
        before,
        limit
    )
    .fetch_all(conn)
    .await
}

/// One delivery with its message.
pub async fn delivery(conn: &mut PgConnection, seq: i64) -> sqlx::Result<DeliveryRow> {
    sqlx::query_as!(
        DeliveryRow,
        r#"
        select d.seq, d.message_id, d.endpoint_id, m.event_type, m.aggregate,
               case when d.status = 'blocked' then 'pending' else d.status end as "status!",
               d.attempts, d.next_attempt_at, d.created_at, m.payload
        from deliveries d join messages m on m.id = d.message_id
        where d.seq = $1
        "#,
        seq
    )
    .fetch_one(conn)
    .await
}

/// An endpoint's attempts, newest first, below `before` (an attempt id), of one message if given.
pub async fn attempts(
    conn: &mut PgConnection,
    endpoint: Uuid,
    message: Option<&str>,
    before: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<AttemptRow>> {
    sqlx::query_as!(
        AttemptRow,
        "select id, message_id, endpoint_id, attempted_at, status_code, latency_ms, response, error, success
         from attempts
         where endpoint_id = $1 and ($2::text is null or message_id = $2)
           and ($3::uuid is null or id < $3)
         order by id desc limit $4",
        endpoint,
        message,
        before,
        limit
    )
    .fetch_all(conn)
    .await
}

/// Whether `message` was ever for `endpoint`.
pub async fn was_sent(
    conn: &mut PgConnection,
    endpoint: Uuid,
    message: &str,
) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"select exists (select 1 from deliveries where endpoint_id = $1 and message_id = $2) as "e!""#,
        endpoint,
        message
    )
    .fetch_one(conn)
    .await
}

/// A delivery outside the lanes (resend, recover, test), due now; returns its seq.
pub async fn insert_unlaned(
    conn: &mut PgConnection,
    endpoint: Uuid,
    message: &str,
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        "insert into deliveries (message_id, endpoint_id, aggregate, status, next_attempt_at, created_at)
         values ($1, $2, '', 'pending', now(), now()) returning seq",
        message,
        endpoint
    )
    .fetch_one(conn)
    .await
}

/// Queues again every message to `endpoint` whose last delivery failed at or after `since` and
/// that is not waiting already; returns how many.
pub async fn recover(
    conn: &mut PgConnection,
    endpoint: Uuid,
    since: DateTime<Utc>,
) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        r#"
        insert into deliveries (message_id, endpoint_id, aggregate, status, next_attempt_at, created_at)
        select f.message_id, $1, '', 'pending', now(), now()
        from (select distinct on (message_id) message_id, status, finished_at
              from deliveries where endpoint_id = $1 order by message_id, seq desc) f
        where f.status = 'failed' and f.finished_at >= $2
        order by f.finished_at
        "#,
        endpoint,
        since
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

pub async fn insert_message(
    conn: &mut PgConnection,
    id: &str,
    event_type: &str,
    payload: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into messages (id, event_type, aggregate, payload, created_at) values ($1, $2, '', $3, now())",
        id,
        event_type,
        payload
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes what is older than the retention, a slice of each kind; returns rows deleted.
pub async fn expire(conn: &mut PgConnection, keep_seconds: f64) -> sqlx::Result<u64> {
    let attempts = sqlx::query!(
        "delete from attempts where id in (
             select id from attempts where attempted_at < now() - make_interval(secs => $1) limit 10000)",
        keep_seconds
    )
    .execute(&mut *conn)
    .await?;
    let deliveries = sqlx::query!(
        "delete from deliveries where seq in (
             select seq from deliveries where finished_at < now() - make_interval(secs => $1) limit 10000)",
        keep_seconds
    )
    .execute(&mut *conn)
    .await?;
    let messages = sqlx::query!(
        "delete from messages where id in (
             select m.id from messages m
             where m.created_at < now() - make_interval(secs => $1)
               and not exists (select 1 from deliveries d where d.message_id = m.id)
             limit 10000)",
        keep_seconds
    )
    .execute(conn)
    .await?;
    Ok(attempts.rows_affected() + deliveries.rows_affected() + messages.rows_affected())
}
