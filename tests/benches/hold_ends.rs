//! Holds ending from a backlog: `BENCH_COMMISSIONS` (default 100000) pending commissions over
//! `BENCH_CREATORS` (default 1000) creators, all due, approved by the commission service's own
//! step (`approve_due`, batches of `HOLD_BATCH`, default 5000: the commissions, their ledger
//! transfers, the balances' running totals and one `commission.approved.v1` each), against a
//! baseline that does the same writes as one SQL statement per batch straight from this process
//! (its outbox payload a fixed 200 bytes), each on a fresh database of the same server, in the
//! same run.
//!
//! `cargo bench -p e2e --bench hold_ends` (PostgreSQL up: `deploy/local/postgres.sh up`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

use commission_service::Commission;
use commission_service::app::lifecycle::approve_due;
use e2e::{TestDatabase, fresh_database};

fn env(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A migrated database holding `n` pending commissions of 200 (a 2 000 purchase at 10 %) over
/// `creators`, all due, with their commission transfers and pending balances.
async fn seeded(prefix: &str, n: i64, creators: i64) -> TestDatabase {
    let db = fresh_database(prefix).await;
    service_runtime::db::migrate(
        &db.pool,
        <Commission as service_host::kit::Declaration>::MIGRATOR,
    )
    .await
    .unwrap();
    let campaign = Uuid::now_v7();
    for sql in [
        r#"insert into campaign_terms (campaign_id, commission_rate_bps, currency, status, version,
                                       budget_minor, committed_minor, hold_seconds)
           values ($1, 1000, 'EUR', 'active', 1, 1000000000000, 200 * $2, 2592000)"#,
        r#"insert into commissions (id, tracking_event_id, campaign_id, creator_id, purchase_minor,
                                    currency, commission_rate_bps, amount_minor, created_at, status,
                                    hold_until)
           select gen_random_uuid(), gen_random_uuid(), $1,
                  ('00000000-0000-0000-0000-' || lpad(to_hex(1 + i % $3), 12, '0'))::uuid,
                  2000, 'EUR', 1000, 200, now() - interval '31 days', 'pending',
                  now() - interval '1 second' * (i % 86400)
           from generate_series(1, $2) as i"#,
        r#"insert into balances (creator_id, currency, pending_minor)
           select creator_id, currency, sum(amount_minor) from commissions group by 1, 2"#,
        r#"insert into ledger_transfers (entry_id, kind, currency, debit_account, credit_account,
                                         amount_minor, commission_id, created_at)
           select gen_random_uuid(), 'commission', currency, 'budget/' || campaign_id,
                  'pending/' || creator_id, amount_minor, id, created_at
           from commissions"#,
    ] {
        sqlx::query(sql)
            .bind(campaign)
            .bind(n)
            .bind(creators)
            .execute(&db.pool)
            .await
            .unwrap();
    }
    sqlx::query("vacuum analyze")
        .execute(&db.pool)
        .await
        .unwrap();
    db
}

/// The baseline: one batch's writes as one statement.
async fn baseline_batch(pool: &PgPool, batch: i64) -> i64 {
    sqlx::query_scalar(
        r#"
        with due as (
            select id from commissions where status = 'pending' and hold_until <= now()
            order by hold_until limit $1 for update skip locked
        ), approved as (
            update commissions c set status = 'approved', decided_at = now(), version = version + 1
            from due where c.id = due.id
            returning c.id, c.creator_id, c.currency, c.amount_minor - c.reversed_minor as open
        ), transfers as (
            insert into ledger_transfers (entry_id, kind, currency, debit_account, credit_account,
                                          amount_minor, commission_id, created_at)
            select gen_random_uuid(), 'approval', currency, 'pending/' || creator_id,
                   'available/' || creator_id, open, id, now()
            from approved where open > 0
        ), totals as (
            update balances b
            set pending_minor = b.pending_minor - s.open, available_minor = b.available_minor + s.open
            from (select creator_id, currency, sum(open) as open from approved group by 1, 2) s
            where b.creator_id = s.creator_id and b.currency = s.currency
        ), events as (
            insert into outbox (message_id, topic, message_type, aggregate_type, aggregate_id,
                                aggregate_version, correlation_id, payload)
            select gen_random_uuid(), 'commission-events', 'commission.approved.v1', 'commission',
                   id, 2, id::text, convert_to(repeat('x', 200), 'UTF8')
            from approved
        )
        select count(*) from approved
        "#,
    )
    .bind(batch)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Runs batches until none is left; the elapsed time and each full batch's rate.
async fn drain<F, Fut>(mut batch: F) -> (Duration, Vec<f64>)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let started = Instant::now();
    let mut rates = Vec::new();
    loop {
        let at = Instant::now();
        let approved = batch().await;
        if approved == 0 {
            return (started.elapsed(), rates);
        }
        rates.push(approved as f64 / at.elapsed().as_secs_f64());
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    let n = env("BENCH_COMMISSIONS", 100_000);
    let creators = env("BENCH_CREATORS", 1000);
    let batch = env("HOLD_BATCH", 5000);
    println!("holds ending: {n} pending commissions due, {creators} creators, batches of {batch}");

    let base = seeded("bench_holds_baseline", n, creators).await;
    let (baseline, baseline_rates) = drain(|| baseline_batch(&base.pool, batch)).await;
    let service = seeded("bench_holds_service", n, creators).await;
    let pool = service.pool.clone();
    let (served, service_rates) = drain(|| {
        let pool = pool.clone();
        async move {
            let round = approve_due(&pool, chrono::Utc::now(), batch).await.unwrap();
            round.approved as i64
        }
    })
    .await;
    let approved: i64 =
        sqlx::query_scalar("select count(*) from commissions where status = 'approved'")
            .fetch_one(&service.pool)
            .await
            .unwrap();
    assert_eq!(approved, n, "every commission approved once");
    let (b, s) = (
        n as f64 / baseline.as_secs_f64(),
        n as f64 / served.as_secs_f64(),
    );
    println!(
        "raw SQL baseline:   {b:>8.0} commissions/s overall ({baseline:.2?}); median batch {:>8.0}/s",
        median(baseline_rates)
    );
    println!(
        "approve_due:        {s:>8.0} commissions/s overall ({served:.2?}); median batch {:>8.0}/s",
        median(service_rates)
    );
    println!("ratio service / baseline: {:.2}", s / b);
}
