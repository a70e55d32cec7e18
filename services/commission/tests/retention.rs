//! The dedup tables are pruned by age, and only by age (`service_runtime::retention`), on the
//! commission service's real database: a pass deletes idempotency records and inbox rows past
//! their retention and keeps the young ones, so a message redelivered inside the window is still
//! skipped after a pass; and the service runs the passes on its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use prost::Message as _;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use affiliate_proto::campaign::{self as campaign_pb, campaign_event};
use affiliate_proto::commission::{self as pb, CommissionCommand, commission_command::Command};
use affiliate_proto::common::{MessageMetadata, Money};
use commission_service::Commission;
use e2e::{TestDatabase, eventually, fresh_database, fresh_namespace, publish, pulsar};
use service_runtime::retention::{self, Pruned, RetentionArgs};

const WAIT: Duration = Duration::from_secs(30);
const DAY: Duration = Duration::from_secs(86_400);

struct TestApp {
    db: TestDatabase,
    namespace: e2e::TestNamespace,
    client: pulsar::Pulsar<pulsar::TokioExecutor>,
    served: e2e::Served,
}

async fn spawn_app(extra: &[&str]) -> TestApp {
    let db = fresh_database("commission").await;
    let namespace = fresh_namespace().await;
    let served = e2e::serve_service::<Commission>(&db.url, Some(&*namespace), extra).await;
    TestApp {
        db,
        namespace,
        client: pulsar().await,
        served,
    }
}

/// The default policy (7 days each), in batches of `batch_size`.
fn policy(batch_size: u32) -> RetentionArgs {
    RetentionArgs {
        idempotency: 7 * DAY,
        inbox: 7 * DAY,
        interval: Duration::from_secs(600),
        batch_size,
    }
}

async fn prune(pool: &PgPool, policy: &RetentionArgs) -> Pruned {
    retention::prune(pool, policy, &CancellationToken::new())
        .await
        .unwrap()
}

/// Moves a record's timestamp `age` into the past.
async fn age_idempotency_record(pool: &PgPool, key: &str, age: Duration) {
    let n = sqlx::query(
        "update idempotency_keys set created_at = now() - make_interval(secs => $2) where idempotency_key = $1",
    )
    .bind(key)
    .bind(age.as_secs_f64())
    .execute(pool)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(n, 1, "idempotency record {key}");
}

async fn age_inbox_row(pool: &PgPool, message_id: &str, age: Duration) {
    let n = sqlx::query(
        "update inbox set processed_at = now() - make_interval(secs => $2) where message_id = $1",
    )
    .bind(message_id)
    .bind(age.as_secs_f64())
    .execute(pool)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(n, 1, "inbox row {message_id}");
}

async fn keys(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("select idempotency_key from idempotency_keys order by idempotency_key")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn inbox(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("select message_id from inbox order by message_id")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Records of `age`, written as the service writes them: `n` idempotency records and `n` inbox
/// rows, ids prefixed with `prefix`.
async fn records(pool: &PgPool, prefix: &str, n: usize, age: Duration) {
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        sqlx::query(
            "insert into idempotency_keys (idempotency_key, operation, request, response, created_at)
             values ($1, 'commission.calculate', '\\x0a01'::bytea, '\\x0a02'::bytea, now() - make_interval(secs => $2))",
        )
        .bind(&id)
        .bind(age.as_secs_f64())
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "insert into inbox (consumer, message_id, outcome, processed_at)
             values ('commission/campaign-events', $1, 'applied', now() - make_interval(secs => $2))",
        )
        .bind(&id)
        .bind(age.as_secs_f64())
        .execute(pool)
        .await
        .unwrap();
    }
}

impl TestApp {
    fn topic(&self, short: &str) -> String {
        self.namespace.topic(short)
    }

    /// Publishes the created event of a campaign at 100 % with message id `message_id`.
    async fn campaign_created(&self, message_id: &str, campaign: Uuid) {
        let created = campaign_pb::Campaign {
            id: campaign.to_string(),
            commission_rate_bps: 10_000,
            budget: usd(1_000_000),
            status: campaign_pb::CampaignStatus::Active.into(),
            version: 1,
            ..Default::default()
        };
        self.campaign_event(
            message_id,
            campaign,
            1,
            campaign_event::Event::CampaignCreated(campaign_pb::CampaignCreated {
                campaign: Some(created),
            }),
        )
        .await;
    }

    async fn campaign_event(
        &self,
        message_id: &str,
        campaign: Uuid,
        version: i64,
        event: campaign_event::Event,
    ) {
        let topic = self.topic("campaign-events");
        e2e::publish_campaign_event(&self.client, &topic, message_id, campaign, version, event)
            .await;
    }

    /// Publishes a calculate command with message id `message_id`, keyed by the creator.
    async fn calculate(&self, message_id: &str, request: &pb::CalculateCommissionRequest) {
        let envelope = CommissionCommand {
            metadata: Some(MessageMetadata {
                message_id: message_id.to_owned(),
                ..Default::default()
            }),
            command: Some(Command::Calculate(request.clone())),
        };
        publish(
            &self.client,
            &self.topic("commission-commands"),
            &request.creator_id,
            message_id,
            "commission.calculate.command.v1",
            "corr",
            envelope.encode_to_vec(),
        )
        .await;
    }

    async fn stop(self) {
        self.served.stop().await;
    }
}

fn usd(amount_minor: i64) -> Option<Money> {
    Some(Money {
        amount_minor,
        currency: "USD".into(),
    })
}

fn purchase(campaign: Uuid, creator: Uuid, amount_minor: i64) -> pb::CalculateCommissionRequest {
    pb::CalculateCommissionRequest {
        tracking_event_id: Uuid::now_v7().to_string(),
        campaign_id: campaign.to_string(),
        creator_id: creator.to_string(),
        purchase_amount: usd(amount_minor),
    }
}

async fn commission_of(pool: &PgPool, request: &pb::CalculateCommissionRequest) -> Option<i64> {
    sqlx::query_scalar("select amount_minor from commissions where tracking_event_id = $1::uuid")
        .bind(&request.tracking_event_id)
        .fetch_optional(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_pruning_pass_deletes_records_past_their_retention_and_keeps_the_young_ones() {
    // The service's tables, without the service (and its own pruning loop).
    let db = fresh_database("commission").await;
    service_runtime::db::migrate(
        &db.pool,
        <commission_service::Commission as service_host::kit::Declaration>::MIGRATOR,
    )
    .await
    .unwrap();
    let pool = &db.pool;
    records(pool, "old", 5, 8 * DAY).await;
    records(pool, "young", 2, 6 * DAY).await;
    records(pool, "new", 1, Duration::ZERO).await;
    // Batches of 2: the five old records take three statements per table.
    let pruned = prune(pool, &policy(2)).await;
    assert_eq!(
        pruned,
        Pruned {
            idempotency_keys: 5,
            inbox: 5
        }
    );
    let young = ["new-0", "young-0", "young-1"];
    assert_eq!(keys(pool).await, young);
    assert_eq!(inbox(pool).await, young);
    // Each table has its own retention.
    let inbox_only = RetentionArgs {
        inbox: 5 * DAY,
        ..policy(1000)
    };
    assert_eq!(
        prune(pool, &inbox_only).await,
        Pruned {
            idempotency_keys: 0,
            inbox: 2
        }
    );
    assert_eq!(keys(pool).await, young);
    assert_eq!(inbox(pool).await, ["new-0"]);
}

#[tokio::test]
async fn a_redelivery_inside_the_window_is_still_skipped_after_a_pruning_pass() {
    let app = spawn_app(&e2e::QUICK_RETRIES).await;
    let pool = &app.db.pool;
    let campaign = Uuid::now_v7();
    let created = Uuid::now_v7().to_string();
    app.campaign_created(&created, campaign).await;
    let creator = Uuid::now_v7();
    let first = purchase(campaign, creator, 1000);
    let command = Uuid::now_v7().to_string();
    app.calculate(&command, &first).await;
    eventually(WAIT, "the first commission", || commission_of(pool, &first)).await;

    // Six days later (inside the seven-day window), a pruning pass runs...
    age_idempotency_record(pool, &command, 6 * DAY).await;
    age_inbox_row(pool, &created, 6 * DAY).await;
    assert_eq!(prune(pool, &policy(1000)).await, Pruned::default());

    // ... then both messages come again (the broker redelivers or a topic is replayed), each
    // followed by a fresh message with the same key, so once that one is applied the
    // redelivery before it was handled.
    app.campaign_created(&created, campaign).await;
    let paused = Uuid::now_v7().to_string();
    let change = campaign_pb::CampaignStatusChanged {
        campaign_id: campaign.to_string(),
        previous_status: campaign_pb::CampaignStatus::Active.into(),
        campaign: Some(campaign_pb::Campaign {
            id: campaign.to_string(),
            commission_rate_bps: 10_000,
            budget: usd(1_000_000),
            status: campaign_pb::CampaignStatus::Paused.into(),
            version: 2,
            ..Default::default()
        }),
    };
    app.campaign_event(
        &paused,
        campaign,
        2,
        campaign_event::Event::CampaignStatusChanged(change),
    )
    .await;
    app.calculate(&command, &first).await;
    let second = purchase(campaign, creator, 500);
    app.calculate(&Uuid::now_v7().to_string(), &second).await;
    eventually(WAIT, "the second commission", || {
        commission_of(pool, &second)
    })
    .await;
    e2e::processed(pool, &paused, WAIT).await;

    // Skipped: credited once, one event, and the records are the ones from six days ago.
    let balance: i64 = sqlx::query_scalar(
        "select available_minor from balances where creator_id = $1 and currency = 'USD'",
    )
    .bind(creator)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(balance, 1000 + 500, "credited once");
    // Replayed from its record: not run again (which the commission's unique tracking event
    // would have refused, with a rejection event).
    let events: Vec<String> = sqlx::query_scalar("select message_type from outbox order by id")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(
        events,
        ["commission.calculated.v1", "commission.calculated.v1"],
        "the redelivered command was skipped"
    );
    let kept: i64 = sqlx::query_scalar(
        "select count(*) from idempotency_keys where idempotency_key = $1 and created_at < now() - interval '5 days'",
    )
    .bind(&command)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(kept, 1);
    let old: i64 = sqlx::query_scalar(
        "select count(*) from inbox where message_id = $1 and processed_at < now() - interval '5 days'",
    )
    .bind(&created)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        old, 1,
        "the redelivered event was skipped, not applied again"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_service_prunes_its_dedup_tables_on_its_own() {
    let app = spawn_app(&["--prune-interval", "50ms", "--inbox-retention", "2h"]).await;
    let pool = app.db.pool.clone();
    records(&pool, "old", 3, 3 * 3600 * Duration::from_secs(1)).await;
    records(&pool, "young", 1, Duration::from_secs(3600)).await;
    eventually(WAIT, "the old inbox rows are pruned", || {
        let pool = pool.clone();
        async move { (inbox(&pool).await == ["young-0"]).then_some(()) }
    })
    .await;
    // The idempotency records keep the default seven days.
    assert_eq!(keys(&pool).await.len(), 4);
    app.stop().await;
}
