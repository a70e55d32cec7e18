//! The headline test: one scripted business workflow runs once with every service in `grpc` mode
//! (the driver calls the APIs) and once in `events` mode (the driver publishes command messages),
//! each on fresh databases and a fresh Pulsar namespace. The normalized final states of all six
//! databases (the analytics service's statistics and audit trail of events included) and the
//! normalized sequences of domain events per aggregate must be equal.
//!
//! The workflow includes a tracking link, a click through the redirect edge and the shop's
//! conversion of it (CreateLink and RecordConversion through each door), and the money's life: a
//! refund of the conversion, a chargeback clawed back after payout, an early approval and a
//! decline (each through each door); the commission ledger's transfers are compared too, and the
//! books must balance after each run.
//!
//! Normalization: timestamps (and the statistics' days) are dropped; links' random codes are dropped; message ids and causation ids (which differ by door)
//! are dropped; every UUID is replaced by its order of first appearance, scanning the states in a
//! fixed order, so "the second campaign created" means the same thing in both runs. On a
//! mismatch both sides are written to target/test-logs/mode_consistency/ for diffing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use e2e::platform::{ANALYTICS, NOTIFICATION, Platform, SERVICES};
use e2e::workflow::{Door, Driver, business_workflow, duplicate_everything, money_workflow};

/// Tables compared per service, with a deterministic order.
const TABLES: &[(&str, &str, &str)] = &[
    ("campaign", "campaigns", "id"),
    ("campaign", "videos", "id"),
    ("campaign", "acceptances", "campaign_id, accepted_at"),
    ("tracking", "tracking_events", "id"),
    ("tracking", "evidence", "id"),
    ("tracking", "campaigns", "campaign_id"),
    ("tracking", "acceptances", "campaign_id, creator_id"),
    ("tracking", "links", "id"),
    ("tracking", "clicks", "id"),
    ("tracking", "conversions", "id"),
    ("commission", "campaign_terms", "campaign_id"),
    ("commission", "commissions", "id"),
    ("commission", "balances", "creator_id, currency"),
    ("commission", "reservations", "payout_id"),
    ("commission", "allocations", "payout_id, commission_id"),
    ("commission", "ledger_transfers", "id"),
    ("commission", "refunds", "tracking_event_id, refund_id"),
    ("tracking", "refunds", "order_id, refund_id"),
    ("payment", "payouts", "id"),
    ("analytics", "stats_days", "subject_kind, subject_id, day"),
    (
        "analytics",
        "stats_amounts",
        "subject_kind, subject_id, day, currency",
    ),
    ("analytics", "campaigns", "campaign_id"),
];

/// Replaces UUIDs (dashed or simple) by `#n` in order of first appearance.
#[derive(Default)]
struct Ids(HashMap<String, usize>);

impl Ids {
    fn label(&mut self, uuid: &str) -> String {
        let key = uuid.replace('-', "").to_ascii_lowercase();
        let next = self.0.len() + 1;
        format!("#{}", self.0.entry(key).or_insert(next))
    }

    fn text(&mut self, s: &str) -> String {
        let re = regex_lite::Regex::new(
            r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}",
        )
        .unwrap();
        let mut out = String::new();
        let mut last = 0;
        for m in re.find_iter(s) {
            out.push_str(&s[last..m.start()]);
            out.push_str(&self.label(m.as_str()));
            last = m.end();
        }
        out.push_str(&s[last..]);
        out
    }

    /// Drops timestamps and volatile message ids; maps UUIDs.
    fn normalize(&mut self, value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .filter(|(k, _)| {
                        !(k.ends_with("_at")
                            || k.ends_with("At")
                            || k.as_str() == "day"
                            // when a hold ends: its start plus the hold
                            || ["hold_until", "holdUntil"].contains(&k.as_str())
                            || ["messageId", "causationId"].contains(&k.as_str())
                            // a link's code is random
                            || k.as_str() == "code")
                    })
                    .map(|(k, v)| (k.clone(), self.normalize(v)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.normalize(v)).collect()),
            Value::String(s) => Value::String(self.text(s)),
            other => other.clone(),
        }
    }
}

struct Run {
    state: Value,
    events: Value,
    commands: u32,
    event_count: usize,
    rows: usize,
    /// Messages delivered a second time on purpose.
    duplicated: usize,
    /// The code of the refusal of the closed campaign's purchase.
    refusal: String,
}

async fn run(door: Door, duplicate: bool) -> Run {
    let (name, mode) = match (door, duplicate) {
        (Door::Grpc, _) => ("mode_grpc", "grpc"),
        (Door::Events, false) => ("mode_events", "events"),
        (Door::Events, true) => ("mode_events_twice", "events"),
    };
    let mut platform = Platform::start_with_analytics(name, mode).await;
    // the workflow clicks a tracking link through the edge (and converts the click)
    platform.start_redirect(&[]);
    if duplicate {
        // Scale out too: a second process of every service shares each subscription.
        for service in SERVICES.into_iter().chain([NOTIFICATION, ANALYTICS]) {
            platform.start_replica(service);
        }
    }
    let mut driver = Driver::new(&platform, door).await;
    let duplicates = if duplicate {
        Some(duplicate_everything(&platform, &driver.client).await)
    } else {
        None
    };
    let outcome = business_workflow(&mut driver).await;
    money_workflow(&mut driver, &outcome).await;
    assert_eq!(
        outcome.statuses,
        ["completed", "failed", "rejected"],
        "{mode} run"
    );
    // Let every event of the workflow arrive: the outboxes are empty and the count is stable.
    wait_for_quiet(&platform).await;
    // Consumers deduplicate by message id; so does the comparison. A refused command is answered
    // by its door: a status over gRPC, a `*.command_rejected.v1` event on the command topic; the
    // refusal's code is compared instead (`Run::refusal`).
    let mut seen = std::collections::HashSet::new();
    let events: Vec<_> = driver
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| !e.metadata.message_type.ends_with(".command_rejected.v1"))
        .filter(|e| seen.insert(e.metadata.message_id.clone()))
        .cloned()
        .collect();
    let commands = driver.commands_sent();
    let duplicated = duplicates.map_or(0, |d| *d.lock().unwrap());
    drop(driver);
    platform.assert_all_running();
    // The books balance (the check `platform verify ledger` runs; in `events` mode there is no
    // API to ask, so on the database).
    let mut conn = platform.databases["commission"]
        .pool
        .acquire()
        .await
        .unwrap();
    let books = commission_service::adapters::ledger::check(&mut conn)
        .await
        .unwrap();
    assert!(
        books.problems.is_empty(),
        "{mode} run: {:#?}",
        books.problems
    );
    drop(conn);

    let mut ids = Ids::default();
    let mut state = serde_json::Map::new();
    let mut rows = 0;
    for (service, table, order) in TABLES {
        let sql = format!(
            "select coalesce(jsonb_agg(to_jsonb(t) order by {order}), '[]'::jsonb) from {table} t"
        );
        let value: Value = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&platform.databases[service].pool)
            .await
            .unwrap();
        rows += value.as_array().map_or(0, Vec::len);
        state.insert(format!("{service}.{table}"), ids.normalize(&value));
    }

    let notifications = notifications(&platform, &mut ids).await;
    rows += notifications.len();
    state.insert(
        "notification.notifications".into(),
        Value::Array(notifications),
    );

    let audit = audited_events(&platform, &mut ids).await;
    rows += audit.len();
    state.insert("analytics.audit_messages".into(), Value::Array(audit));

    let mut per_aggregate: BTreeMap<String, Vec<(i64, Value)>> = BTreeMap::new();
    for e in &events {
        let aggregate = format!(
            "{} {}",
            e.metadata.aggregate_type,
            ids.text(&e.metadata.aggregate_id)
        );
        per_aggregate
            .entry(aggregate)
            .or_default()
            .push((e.metadata.aggregate_version, ids.normalize(&e.json)));
    }
    let events_value: Value = per_aggregate
        .into_iter()
        .map(|(aggregate, mut list)| {
            list.sort_by(|a, b| {
                a.0.cmp(&b.0)
                    .then_with(|| a.1.to_string().cmp(&b.1.to_string()))
            });
            (
                aggregate,
                Value::Array(list.into_iter().map(|(_, v)| v).collect()),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into();
    Run {
        state: Value::Object(state),
        events: events_value,
        commands,
        event_count: events.len(),
        rows,
        duplicated,
        refusal: outcome.closed_refusal,
    }
}

/// Who was told what, normalized and sorted: a user's sequence follows the order in which events
/// of different topics arrived, which no door fixes, so the notifications are compared as a set
/// (after checking that every user's sequence is 1..n).
async fn notifications(platform: &Platform, ids: &mut Ids) -> Vec<Value> {
    let pool = &platform.databases[NOTIFICATION].pool;
    let streams: Vec<(String, Vec<i64>)> = sqlx::query_as(
        "select user_id::text, array_agg(sequence order by sequence) from notifications group by user_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (user, sequences) in streams {
        let gapless: Vec<i64> = (1..=sequences.len() as i64).collect();
        assert_eq!(
            sequences, gapless,
            "the notification sequence of user {user}"
        );
    }
    let sql = "select coalesce(jsonb_agg(jsonb_build_object('user_id', user_id, 'kind', kind, 'title', title, 'body', body, 'subject_type', subject_type, 'subject_id', subject_id)), '[]'::jsonb) from notifications";
    normalized_set(pool, sql, ids, "the workflow told nobody anything").await
}

/// The events of the audit trail, normalized and sorted (their ids and times differ by run;
/// commands differ by door and are left out, as are the command topic's refusals).
async fn audited_events(platform: &Platform, ids: &mut Ids) -> Vec<Value> {
    let sql = "select coalesce(jsonb_agg(jsonb_build_object('topic', topic, 'message_type', message_type, 'aggregate_type', aggregate_type, 'aggregate_id', aggregate_id, 'aggregate_version', aggregate_version, 'correlation_id', correlation_id) order by occurred_at), '[]'::jsonb) from audit_messages where kind = 'event' and message_type not like '%.command_rejected.v1'";
    normalized_set(
        &platform.databases[ANALYTICS].pool,
        sql,
        ids,
        "the audit trail kept no event",
    )
    .await
}

/// The rows `sql` aggregates into one JSON array, normalized and sorted (compared as a set).
async fn normalized_set(
    pool: &sqlx::PgPool,
    sql: &'static str,
    ids: &mut Ids,
    empty: &str,
) -> Vec<Value> {
    let value: Value = sqlx::query_scalar(sql).fetch_one(pool).await.unwrap();
    let mut items = ids
        .normalize(&value)
        .as_array()
        .cloned()
        .unwrap_or_default();
    items.sort_by_cached_key(Value::to_string);
    assert!(!items.is_empty(), "{empty}");
    items
}

/// Waits until every message (duplicates included) has been delivered and processed.
async fn wait_for_quiet(platform: &Platform) {
    e2e::eventually(
        std::time::Duration::from_secs(60),
        "every outbox and subscription drained",
        || async { platform.drained().await.then_some(()) },
    )
    .await;
}

fn dump(name: &str, value: &Value) -> String {
    let dir = e2e::log_dir("mode_consistency");
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(value).unwrap()).unwrap();
    path.display().to_string()
}

fn assert_same(name: &str, expected: &Run, actual: &Run) {
    let (a_state, b_state) = (
        dump("grpc-state", &expected.state),
        dump(&format!("{name}-state"), &actual.state),
    );
    let (a_events, b_events) = (
        dump("grpc-events", &expected.events),
        dump(&format!("{name}-events"), &actual.events),
    );
    assert_eq!(expected.rows, actual.rows, "{name}: row counts differ");
    assert_eq!(
        (expected.refusal.as_str(), actual.refusal.as_str()),
        ("FAILED_PRECONDITION", "FAILED_PRECONDITION"),
        "{name}: the closed campaign's purchase is refused alike"
    );
    assert!(
        expected.state == actual.state,
        "{name}: final states differ: diff {a_state} {b_state}"
    );
    assert!(
        expected.events == actual.events,
        "{name}: event sequences differ: diff {a_events} {b_events}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workflow_gives_identical_states_and_events_through_grpc_and_through_events() {
    let grpc = run(Door::Grpc, false).await;
    let events = run(Door::Events, false).await;
    println!(
        "mode consistency: {} commands per run; {} / {} domain events (grpc / events) over {} aggregates; {} rows in {} tables compared",
        grpc.commands,
        grpc.event_count,
        events.event_count,
        grpc.events.as_object().map_or(0, serde_json::Map::len),
        grpc.rows,
        TABLES.len() + 2
    );
    assert_same("events", &grpc, &events);
}

/// Effectively once: every command and event of the run is delivered twice on purpose, to two
/// processes of every service sharing each subscription, and the states and (distinct) events are
/// still those of a run without duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivering_every_command_and_event_twice_applies_nothing_twice() {
    let once = run(Door::Grpc, false).await;
    let twice = run(Door::Events, true).await;
    println!(
        "effectively once: {} messages delivered a second time; {} distinct domain events; {} rows compared",
        twice.duplicated, twice.event_count, twice.rows
    );
    assert!(
        twice.duplicated >= twice.event_count + twice.commands as usize,
        "not everything was duplicated: {}",
        twice.duplicated
    );
    assert_same("events-twice", &once, &twice);
}
