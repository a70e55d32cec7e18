//! The dispatcher's SQL: claim due deliveries (a lease: the claim moves the due time past the
//! attempt's time-out and counts the attempt, so a crashed dispatcher's claims come due again),
//! and record a set of finished attempts in one transaction: the attempt log, each delivery's
//! new state (only if still the claim that made the attempt: the attempt count fences it), the
//! lanes moved on, and the endpoints' failure counts.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// A claimed delivery, with what sending it needs.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub seq: i64,
    pub message_id: String,
    pub endpoint_id: Uuid,
    pub aggregate: String,
    /// Attempts including this one: the fence of its result.
    pub attempts: i32,
    pub payload: String,
    pub url: String,
    /// The endpoint's valid secrets, newest first.
    pub secrets: Vec<String>,
    /// The endpoint's rate limit (messages per second; 0: none).
    pub rate_limit: i32,
}

/// Claims up to `limit` due deliveries of enabled endpoints, at most `room(endpoint)` each:
/// `per_endpoint` minus what `busy` says is in flight there, and for a rate-limited endpoint no
/// more than the tokens `tokens` gives it (its rate when not listed: a full bucket).
pub async fn claim(
    conn: &mut PgConnection,
    limit: i64,
    per_endpoint: i32,
    busy: &[(Uuid, i32)],
    tokens: &[(Uuid, i32)],
    lease: Duration,
) -> sqlx::Result<Vec<Claimed>> {
    let busy_ids: Vec<Uuid> = busy.iter().map(|b| b.0).collect();
    let busy_counts: Vec<i32> = busy.iter().map(|b| b.1).collect();
    let token_ids: Vec<Uuid> = tokens.iter().map(|t| t.0).collect();
    let token_counts: Vec<i32> = tokens.iter().map(|t| t.1).collect();
    sqlx::query_as!(
        Claimed,
        r#"
        with ready as (
            select e.id,
                   greatest(least($2::int4 - coalesce(b.n, 0),
                                  case when e.rate_limit > 0 then coalesce(t.n, e.rate_limit)
                                       else $2::int4 end), 0) as room
            from endpoints e
            left join unnest($3::uuid[], $4::int4[]) as b(endpoint_id, n) on b.endpoint_id = e.id
            left join unnest($6::uuid[], $7::int4[]) as t(endpoint_id, n) on t.endpoint_id = e.id
            where e.enabled
        ),
        picked as (
            select p.seq from ready r
            cross join lateral (
                select d.seq from deliveries d
                where d.endpoint_id = r.id and d.status = 'pending' and d.next_attempt_at <= now()
                order by d.next_attempt_at
                limit r.room
                for update skip locked
            ) p
            limit $1
        )
        update deliveries d
        set attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $5)
        from picked p, messages m, endpoints e
        where d.seq = p.seq and m.id = d.message_id and e.id = d.endpoint_id
        returning d.seq, d.message_id, d.endpoint_id, d.aggregate, d.attempts, m.payload, e.url,
            array(select s.secret from endpoint_secrets s
                  where s.endpoint_id = d.endpoint_id and (s.expires_at is null or s.expires_at > now())
                  order by s.created_at desc) as "secrets!",
            e.rate_limit
        "#,
        limit,
        per_endpoint,
        &busy_ids,
        &busy_counts,
        lease.as_secs_f64(),
        &token_ids,
        &token_counts
    )
    .fetch_all(conn)
    .await
}

/// What an attempt decided for its delivery.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    Succeeded,
    /// Tried again after this long.
    Retry(Duration),
    /// Every retry spent.
    Failed,
    /// 410 Gone: failed, and the endpoint is disabled.
    Gone,
}

/// One finished attempt.
#[derive(Debug, Clone)]
pub struct Finished {
    pub seq: i64,
    pub fence: i32,
    pub message_id: String,
    pub endpoint_id: Uuid,
    pub attempted_at: DateTime<Utc>,
    pub status_code: i32,
    pub latency_ms: i64,
    pub response: String,
    pub error: String,
    pub verdict: Verdict,
}

/// An endpoint the recorded attempts disabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disabled {
    pub endpoint_id: Uuid,
    pub owner_id: Uuid,
    pub reason: String,
}

/// What recording a set changed that the dispatcher acts on.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Deliveries now due at once (unblocked, or retried without delay): claim again.
    pub due_now: bool,
    pub disabled: Vec<Disabled>,
}

/// Records finished attempts (one transaction, the caller's).
pub async fn record(
    conn: &mut PgConnection,
    finished: &[Finished],
    disable_after: i32,
) -> sqlx::Result<Recorded> {
    let mut recorded = Recorded::default();
    if finished.is_empty() {
        return Ok(recorded);
    }
    let ids: Vec<Uuid> = finished.iter().map(|_| Uuid::now_v7()).collect();
    let seqs: Vec<i64> = finished.iter().map(|f| f.seq).collect();
    let fences: Vec<i32> = finished.iter().map(|f| f.fence).collect();
    let messages: Vec<&str> = finished.iter().map(|f| f.message_id.as_str()).collect();
    let endpoints: Vec<Uuid> = finished.iter().map(|f| f.endpoint_id).collect();
    let times: Vec<DateTime<Utc>> = finished.iter().map(|f| f.attempted_at).collect();
    let codes: Vec<i32> = finished.iter().map(|f| f.status_code).collect();
    let latencies: Vec<i64> = finished.iter().map(|f| f.latency_ms).collect();
    let responses: Vec<&str> = finished.iter().map(|f| f.response.as_str()).collect();
    let errors: Vec<&str> = finished.iter().map(|f| f.error.as_str()).collect();
    let successes: Vec<bool> = finished
        .iter()
        .map(|f| f.verdict == Verdict::Succeeded)
        .collect();
    // A delivery deleted meanwhile (its endpoint deleted) keeps no attempts.
    sqlx::query!(
        "insert into attempts (id, delivery_seq, message_id, endpoint_id, attempted_at, status_code,
                               latency_ms, response, error, success)
         select u.* from unnest($1::uuid[], $2::int8[], $3::text[], $4::uuid[], $5::timestamptz[],
                                $6::int4[], $7::int8[], $8::text[], $9::text[], $10::bool[])
             as u(id, seq, message_id, endpoint_id, at, code, latency, response, error, success)
         join deliveries d on d.seq = u.seq",
        &ids,
        &seqs,
        &messages as _,
        &endpoints,
        &times,
        &codes,
        &latencies,
        &responses as _,
        &errors as _,
        &successes
    )
    .execute(&mut *conn)
    .await?;

    let statuses: Vec<&str> = finished
        .iter()
        .map(|f| match f.verdict {
            Verdict::Succeeded => "succeeded",
            Verdict::Retry(_) => "pending",
            Verdict::Failed | Verdict::Gone => "failed",
        })
        .collect();
    let delays: Vec<f64> = finished
        .iter()
        .map(|f| match f.verdict {
            Verdict::Retry(d) => d.as_secs_f64(),
            _ => 0.0,
        })
        .collect();
    recorded.due_now = finished
        .iter()
        .any(|f| matches!(f.verdict, Verdict::Retry(d) if d.is_zero()));
    let ended = sqlx::query!(
        r#"
        update deliveries d
        set status = u.status,
            next_attempt_at = case when u.status = 'pending'
                                   then now() + make_interval(secs => u.delay)
                                   else d.next_attempt_at end,
            finished_at = case when u.status = 'pending' then null else now() end
        from unnest($1::int8[], $2::int4[], $3::text[], $4::float8[]) as u(seq, fence, status, delay)
        where d.seq = u.seq and d.attempts = u.fence and d.status = 'pending'
        returning d.endpoint_id, d.aggregate, d.status
        "#,
        &seqs,
        &fences,
        &statuses as _,
        &delays
    )
    .fetch_all(&mut *conn)
    .await?;

    // The lanes of the deliveries that ended move on: the next blocked message becomes pending.
    let mut lanes: Vec<(Uuid, String)> = ended
        .iter()
        .filter(|e| e.status != "pending" && !e.aggregate.is_empty())
        .map(|e| (e.endpoint_id, e.aggregate.clone()))
        .collect();
    lanes.sort();
    if !lanes.is_empty() {
        let lane_endpoints: Vec<Uuid> = lanes.iter().map(|l| l.0).collect();
        let lane_aggregates: Vec<&str> = lanes.iter().map(|l| l.1.as_str()).collect();
        sqlx::query!(
            "select 1 as one from lanes l
             join unnest($1::uuid[], $2::text[]) as u(endpoint_id, aggregate)
               on l.endpoint_id = u.endpoint_id and l.aggregate = u.aggregate
             order by l.endpoint_id, l.aggregate
             for update of l",
            &lane_endpoints,
            &lane_aggregates as _
        )
        .fetch_all(&mut *conn)
        .await?;
        let unblocked = sqlx::query_scalar!(
            r#"
            with moved as (
                update lanes l set queued = l.queued - u.n
                from (select endpoint_id, aggregate, count(*)::int4 as n
                      from unnest($1::uuid[], $2::text[]) as x(endpoint_id, aggregate)
                      group by 1, 2) u
                where l.endpoint_id = u.endpoint_id and l.aggregate = u.aggregate
                returning l.endpoint_id, l.aggregate, l.queued
            ),
            next as (
                select (select min(b.seq) from deliveries b
                        where b.endpoint_id = m.endpoint_id and b.aggregate = m.aggregate
                          and b.status = 'blocked') as seq
                from moved m where m.queued > 0
            )
            update deliveries d set status = 'pending', next_attempt_at = now()
            from next where d.seq = next.seq
            returning d.seq
            "#,
            &lane_endpoints,
            &lane_aggregates as _
        )
        .fetch_all(&mut *conn)
        .await?;
        recorded.due_now |= !unblocked.is_empty();
        sqlx::query!(
            "delete from lanes l using unnest($1::uuid[], $2::text[]) as u(endpoint_id, aggregate)
             where l.endpoint_id = u.endpoint_id and l.aggregate = u.aggregate and l.queued = 0",
            &lane_endpoints,
            &lane_aggregates as _
        )
        .execute(&mut *conn)
        .await?;
    }

    // Endpoints: a success resets the failure count, a failed message adds one, and N in a row
    // or a 410 disable the endpoint.
    let mut ok: Vec<Uuid> = Vec::new();
    let mut failed: Vec<Uuid> = Vec::new();
    let mut gone: Vec<Uuid> = Vec::new();
    for f in finished {
        match f.verdict {
            Verdict::Succeeded => ok.push(f.endpoint_id),
            Verdict::Failed => failed.push(f.endpoint_id),
            Verdict::Gone => gone.push(f.endpoint_id),
            Verdict::Retry(_) => {}
        }
    }
    for list in [&mut ok, &mut failed, &mut gone] {
        list.sort_unstable();
    }
    if !ok.is_empty() {
        sqlx::query!(
            "update endpoints set consecutive_failures = 0
             where id = any($1) and consecutive_failures <> 0",
            &ok
        )
        .execute(&mut *conn)
        .await?;
    }
    if !failed.is_empty() {
        let rows = sqlx::query!(
            r#"
            with counts as (
                select id, count(*)::int4 as n from unnest($1::uuid[]) as x(id) group by 1
            ),
            before as (
                select e.id, e.enabled from endpoints e join counts c on c.id = e.id
            )
            update endpoints e
            set consecutive_failures = e.consecutive_failures + u.n,
                enabled = e.enabled and e.consecutive_failures + u.n < $2,
                disabled_reason = case when e.enabled and e.consecutive_failures + u.n >= $2
                    then format('%s messages in a row failed after every retry', e.consecutive_failures + u.n)
                    else e.disabled_reason end,
                updated_at = now()
            from counts u, before b
            where e.id = u.id and b.id = e.id
            returning e.id, e.owner_id, e.disabled_reason, (b.enabled and not e.enabled) as "newly_disabled!"
            "#,
            &failed,
            disable_after
        )
        .fetch_all(&mut *conn)
        .await?;
        recorded.disabled.extend(
            rows.into_iter()
                .filter(|r| r.newly_disabled)
                .map(|r| Disabled {
                    endpoint_id: r.id,
                    owner_id: r.owner_id,
                    reason: r.disabled_reason,
                }),
        );
    }
    if !gone.is_empty() {
        let rows = sqlx::query!(
            "update endpoints set enabled = false,
                 disabled_reason = 'the endpoint answered 410 Gone', updated_at = now()
             where id = any($1) and enabled
             returning id, owner_id, disabled_reason",
            &gone
        )
        .fetch_all(&mut *conn)
        .await?;
        recorded.disabled.extend(rows.into_iter().map(|r| Disabled {
            endpoint_id: r.id,
            owner_id: r.owner_id,
            reason: r.disabled_reason,
        }));
    }
    Ok(recorded)
}
