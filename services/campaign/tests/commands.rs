//! The command-topic door of the campaign service, in its own Pulsar namespace and database:
//! commands published to `campaign-commands` run the same handlers as gRPC calls, a redelivered
//! command is applied once, a command that can never succeed is rejected once with an event, and
//! one that keeps failing goes to the dead-letter topic while other commands keep flowing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use prost::Message as _;
use sqlx::PgPool;

use affiliate_proto::campaign::campaign_service_client::CampaignServiceClient;
use affiliate_proto::campaign::{
    self as pb, CampaignCommand, campaign_command::Command, campaign_event::Event,
};
use affiliate_proto::common::{MessageMetadata, Money};
use campaign_service::Campaign;
use e2e::{TestDatabase, eventually, fresh_database, fresh_namespace, publish, pulsar};
use service_runtime::time::duration_secs;

struct TestApp {
    addr: std::net::SocketAddr,
    db: TestDatabase,
    namespace: e2e::TestNamespace,
    grpc: CampaignServiceClient<tonic::transport::Channel>,
    client: pulsar::Pulsar<pulsar::TokioExecutor>,
    served: e2e::Served,
}

async fn spawn_app() -> TestApp {
    let db = fresh_database("campaign_cmd").await;
    let namespace = fresh_namespace().await;
    let served = e2e::serve_service::<Campaign>(
        &db.url,
        Some(&*namespace),
        &[
            "--mode",
            "hybrid",
            "--max-redeliveries",
            "2",
            "--retry-min-backoff",
            "10ms",
            "--retry-max-backoff",
            "50ms",
        ],
    )
    .await;
    let addr = served.addr;
    let grpc = CampaignServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    TestApp {
        addr,
        db,
        namespace,
        grpc,
        client: pulsar().await,
        served,
    }
}

impl TestApp {
    fn topic(&self, short: &str) -> String {
        self.namespace.topic(short)
    }

    async fn send(&self, message_id: &str, command: Command) {
        let envelope = CampaignCommand {
            metadata: Some(MessageMetadata {
                message_id: message_id.to_owned(),
                message_type: command.message_type().to_owned(),
                correlation_id: "corr-cmd".to_owned(),
                ..Default::default()
            }),
            command: Some(command),
        };
        let message_type = envelope.command.as_ref().map_or("", |c| c.message_type());
        self.send_raw(message_id, message_type, envelope.encode_to_vec())
            .await;
    }

    async fn send_raw(&self, message_id: &str, message_type: &str, payload: Vec<u8>) {
        let topic = self.topic("campaign-commands");
        publish(
            &self.client,
            &topic,
            message_id,
            message_id,
            message_type,
            "corr-cmd",
            payload,
        )
        .await;
    }

    async fn stop(self) {
        self.served.stop().await;
    }
}

fn create(name: &str) -> pb::CreateCampaignRequest {
    pb::CreateCampaignRequest {
        advertiser_id: "0193a9e0-0000-7000-8000-0000000000ab".into(),
        name: name.into(),
        description: "by command".into(),
        commission_rate_bps: 700,
        budget: Some(Money {
            amount_minor: 90_000,
            currency: "USD".into(),
        }),
        tracking: None,
        hold_period: None,
    }
}

/// Outbox events as (type, decoded envelope), in id order.
async fn events(pool: &PgPool) -> Vec<(String, pb::CampaignEvent)> {
    let rows: Vec<(String, Vec<u8>)> =
        sqlx::query_as("select message_type, payload from outbox order by id")
            .fetch_all(pool)
            .await
            .unwrap();
    rows.into_iter()
        .map(|(t, p)| (t, pb::CampaignEvent::decode(p.as_slice()).unwrap()))
        .collect()
}

async fn campaigns(pool: &PgPool) -> Vec<(uuid::Uuid, String)> {
    sqlx::query_as("select id, name from campaigns order by id")
        .fetch_all(pool)
        .await
        .unwrap()
}

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_command_message_and_a_grpc_call_with_its_id_as_key_have_one_effect() {
    let mut app = spawn_app().await;
    let message_id = uuid::Uuid::now_v7().to_string();
    let create = pb::CreateCampaignRequest {
        hold_period: Some(duration_secs(7 * 86_400)),
        ..create("By message")
    };
    app.send(&message_id, Command::CreateCampaign(create.clone()))
        .await;
    let pool = app.db.pool.clone();
    let stored = eventually(WAIT, "the command created a campaign", || {
        let pool = pool.clone();
        async move { campaigns(&pool).await.pop() }
    })
    .await;

    // The same command through the other door, keyed by the message id: the first result.
    let request = e2e::with_key(create, &message_id);
    let campaign = app
        .grpc
        .create_campaign(request)
        .await
        .unwrap()
        .into_inner()
        .campaign
        .unwrap();
    assert_eq!(campaign.id, stored.0.to_string());
    assert_eq!(campaign.hold_period, Some(duration_secs(7 * 86_400)));
    assert_eq!(campaigns(&app.db.pool).await.len(), 1);

    let events = events(&app.db.pool).await;
    assert_eq!(events.len(), 1);
    match &events[0].1.event {
        Some(Event::CampaignCreated(created)) => assert_eq!(
            created.campaign.as_ref().and_then(|c| c.hold_period),
            Some(duration_secs(7 * 86_400)),
            "the hold period given by message is stored and published"
        ),
        other => panic!("unexpected event {other:?}"),
    }
    let metadata = events[0].1.metadata.clone().unwrap();
    assert_eq!(events[0].0, "campaign.created.v1");
    assert_eq!(metadata.correlation_id, "corr-cmd");
    assert_eq!(
        metadata.causation_id, message_id,
        "the event names the command that caused it"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_redelivered_command_is_applied_once() {
    let app = spawn_app().await;
    let first = uuid::Uuid::now_v7().to_string();
    for _ in 0..3 {
        app.send(&first, Command::CreateCampaign(create("Twice")))
            .await;
    }
    let marker = uuid::Uuid::now_v7().to_string();
    app.send(&marker, Command::CreateCampaign(create("Marker")))
        .await;
    let pool = app.db.pool.clone();
    eventually(
        WAIT,
        "the marker command and the repeated one applied",
        || {
            let pool = pool.clone();
            async move {
                let all = campaigns(&pool).await;
                let has = |name: &str| all.iter().any(|(_, n)| n == name);
                (has("Marker") && has("Twice")).then_some(())
            }
        },
    )
    .await;
    // Two keys: nothing orders them, so the names are compared sorted (the marker may be applied
    // while the first of the three copies is still in its transaction).
    let mut names: Vec<String> = campaigns(&app.db.pool)
        .await
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    names.sort();
    assert_eq!(names, ["Marker", "Twice"], "each command applied once");
    assert_eq!(events(&app.db.pool).await.len(), 2);
    // The status service reports the mode, the dependencies and the subscription's counters.
    let addr = app.addr;
    let mut status = affiliate_proto::common::status_service_client::StatusServiceClient::connect(
        format!("http://{addr}"),
    )
    .await
    .unwrap();
    let status = status
        .get_status(affiliate_proto::common::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.mode, "hybrid");
    assert!(status.database.unwrap().reachable);
    assert!(status.pulsar.unwrap().reachable);
    let subscription = &status.subscriptions[0];
    assert_eq!(
        (
            subscription.subscription.as_str(),
            subscription.state.as_str()
        ),
        ("campaign", "consuming")
    );
    assert!(subscription.applied >= 2, "{subscription:?}");
    app.stop().await;
}

#[tokio::test]
async fn commands_that_can_never_succeed_are_rejected_once_with_an_event() {
    let app = spawn_app().await;
    let invalid = uuid::Uuid::now_v7().to_string();
    let mut bad = create("");
    bad.budget = Some(Money {
        amount_minor: 0,
        currency: "usd".into(),
    });
    app.send(&invalid, Command::CreateCampaign(bad.clone()))
        .await;
    app.send(&invalid, Command::CreateCampaign(bad)).await;
    let garbage = uuid::Uuid::now_v7().to_string();
    app.send_raw(
        &garbage,
        "campaign.create.command.v1",
        vec![0xff, 0xff, 0xff, 0x01],
    )
    .await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let missing = uuid::Uuid::new_v4().to_string();
    app.send(
        &unknown,
        Command::PauseCampaign(pb::PauseCampaignRequest {
            campaign_id: missing.clone(),
            ..Default::default()
        }),
    )
    .await;

    let pool = app.db.pool.clone();
    let rejections = eventually(WAIT, "three rejections recorded", || {
        let pool = pool.clone();
        async move {
            let n: i64 =
                sqlx::query_scalar("select count(*) from inbox where outcome = 'rejected'")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            (n == 3).then_some(())
        }
    });
    rejections.await;
    let events = events(&app.db.pool).await;
    // Different keys are applied concurrently: their rejections may commit in any order.
    let mut rejected: Vec<(String, String, Vec<String>)> = events
        .iter()
        .map(|(t, e)| {
            assert_eq!(t, "campaign.command_rejected.v1");
            match &e.event {
                Some(Event::CommandRejected(r)) => (
                    r.command_message_id.clone(),
                    r.code.clone(),
                    r.field_violations.iter().map(|v| v.field.clone()).collect(),
                ),
                other => panic!("unexpected {other:?}"),
            }
        })
        .collect();
    rejected.sort();
    let mut expected = [
        (
            invalid,
            "INVALID_ARGUMENT".to_owned(),
            vec![
                "name".to_owned(),
                "budget.amount_minor".into(),
                "budget.currency".into(),
            ],
        ),
        (garbage, "INVALID_ARGUMENT".to_owned(), vec![]),
        (unknown.clone(), "NOT_FOUND".to_owned(), vec![]),
    ];
    expected.sort();
    assert_eq!(rejected, expected);
    let not_found = events
        .iter()
        .find(|(_, e)| matches!(&e.event, Some(Event::CommandRejected(r)) if r.command_message_id == unknown))
        .unwrap();
    assert_eq!(not_found.1.metadata.as_ref().unwrap().aggregate_id, missing);
    assert!(campaigns(&app.db.pool).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_command_that_keeps_failing_goes_to_the_dead_letter_topic_while_others_flow() {
    let app = spawn_app().await;
    // Make one campaign name fail inside the transaction: a transient-looking database error.
    e2e::poison_campaigns(&app.db.pool).await;
    let dlq = app.topic("campaign-commands-campaign-DLQ");
    let mut dead_letters = e2e::consumer(&app.client, &dlq).await;

    let poison = uuid::Uuid::now_v7().to_string();
    app.send(&poison, Command::CreateCampaign(create("Poison")))
        .await;
    for i in 0..3 {
        app.send(
            &uuid::Uuid::now_v7().to_string(),
            Command::CreateCampaign(create(&format!("Healthy {i}"))),
        )
        .await;
    }
    let pool = app.db.pool.clone();
    eventually(WAIT, "the healthy commands applied", || {
        let pool = pool.clone();
        async move { (campaigns(&pool).await.len() == 3).then_some(()) }
    })
    .await;

    use futures::TryStreamExt as _;
    let dead = tokio::time::timeout(WAIT, dead_letters.try_next())
        .await
        .expect("no dead letter within 30s")
        .unwrap()
        .unwrap();
    assert_eq!(e2e::property(&dead, "message-id"), Some(poison.clone()));
    assert_eq!(
        e2e::property(&dead, "REAL_TOPIC"),
        Some(app.topic("campaign-commands"))
    );
    let names: Vec<String> = campaigns(&app.db.pool)
        .await
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert!(!names.contains(&"Poison".to_owned()));
    app.stop().await;
}

/// Publishes `envelope` with exactly `properties` (no defaults), keyed by `key`.
async fn publish_with(app: &TestApp, key: &str, properties: &[(&str, &str)], payload: Vec<u8>) {
    let message = pulsar::producer::Message {
        payload,
        properties: properties
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        partition_key: Some(key.to_owned()),
        ..Default::default()
    };
    let topic = app.topic("campaign-commands");
    app.client
        .send(topic.as_str(), message)
        .await
        .unwrap()
        .await
        .unwrap();
}

fn create_envelope(message_id: &str, name: &str) -> Vec<u8> {
    let command = Command::CreateCampaign(create(name));
    CampaignCommand {
        metadata: Some(MessageMetadata {
            message_id: message_id.to_owned(),
            message_type: command.message_type().to_owned(),
            correlation_id: "corr-identity".to_owned(),
            ..Default::default()
        }),
        command: Some(command),
    }
    .encode_to_vec()
}

#[tokio::test]
async fn commands_are_identified_by_their_envelope_and_refused_when_properties_disagree() {
    let app = spawn_app().await;
    // The same create command twice, with no `message-id` property at all (as a client in
    // another language may publish it): the envelope's metadata.message_id makes it one.
    let twice = uuid::Uuid::now_v7().to_string();
    for _ in 0..2 {
        publish_with(&app, &twice, &[], create_envelope(&twice, "Twice")).await;
    }
    // A `message-id` property that disagrees with the envelope, and a `message-type` property
    // that disagrees with the envelope's command: refused, nothing created.
    let (lying_id, lying_type) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    publish_with(
        &app,
        &lying_id,
        &[("message-id", "someone-else")],
        create_envelope(&lying_id, "Lying id"),
    )
    .await;
    publish_with(
        &app,
        &lying_type,
        &[
            ("message-id", lying_type.as_str()),
            ("message-type", "campaign.close.command.v1"),
        ],
        create_envelope(&lying_type, "Lying type"),
    )
    .await;
    // A last command, keyed like the first: once it is applied, the duplicate before it was seen.
    let last = uuid::Uuid::now_v7().to_string();
    publish_with(&app, &twice, &[], create_envelope(&last, "Last")).await;

    let pool = app.db.pool.clone();
    eventually(WAIT, "two campaigns and two rejections", || {
        let pool = pool.clone();
        async move {
            let rejected: i64 =
                sqlx::query_scalar("select count(*) from inbox where outcome = 'rejected'")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            (campaigns(&pool).await.len() == 2 && rejected == 2).then_some(())
        }
    })
    .await;
    let names: Vec<String> = campaigns(&pool).await.into_iter().map(|(_, n)| n).collect();
    assert_eq!(
        names,
        ["Twice", "Last"],
        "the repeated command made one campaign"
    );
    let mut refused: Vec<(String, String)> = events(&pool)
        .await
        .into_iter()
        .filter_map(|(_, e)| match e.event {
            Some(Event::CommandRejected(r)) => Some((r.command_message_id, r.reason)),
            _ => None,
        })
        .collect();
    refused.sort();
    let mut expected = [lying_id.clone(), lying_type.clone()];
    expected.sort();
    assert_eq!(
        refused.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
        expected,
        "each refusal names the command by its envelope's id: {refused:?}"
    );
    for (id, reason) in &refused {
        let property = if *id == lying_id {
            "message-id"
        } else {
            "message-type"
        };
        assert!(
            reason.contains(property) && reason.contains("disagrees"),
            "{id}: {reason}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_budget_pause_and_a_budget_update_by_message_pause_and_resume_once() {
    let mut app = spawn_app().await;
    let campaign = app
        .grpc
        .create_campaign(create("Budget by message"))
        .await
        .unwrap()
        .into_inner()
        .campaign
        .unwrap();
    let usd = |amount_minor| {
        Some(Money {
            amount_minor,
            currency: "USD".into(),
        })
    };
    let status = |pool: PgPool, id: String| async move {
        let (status, version): (String, i64) =
            sqlx::query_as("select status, version from campaigns where id = $1::uuid")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
        (status, version)
    };
    // The commission service's pause, delivered twice: applied once.
    let pause = uuid::Uuid::now_v7().to_string();
    for _ in 0..2 {
        app.send(
            &pause,
            Command::PauseCampaign(pb::PauseCampaignRequest {
                campaign_id: campaign.id.clone(),
                reason: pb::PauseReason::BudgetExhausted.into(),
                exhausted_budget: usd(90_000),
            }),
        )
        .await;
    }
    let (pool, id) = (app.db.pool.clone(), campaign.id.clone());
    eventually(WAIT, "the campaign paused for its budget", || {
        let (pool, id) = (pool.clone(), id.clone());
        async move { (status(pool, id).await == ("paused".into(), 2)).then_some(()) }
    })
    .await;
    let raise = uuid::Uuid::now_v7().to_string();
    app.send(
        &raise,
        Command::UpdateBudget(pb::UpdateBudgetRequest {
            campaign_id: campaign.id.clone(),
            budget: usd(180_000),
        }),
    )
    .await;
    eventually(WAIT, "the larger budget resumed it", || {
        let (pool, id) = (pool.clone(), id.clone());
        async move { (status(pool, id).await == ("active".into(), 3)).then_some(()) }
    })
    .await;
    let types: Vec<String> = events(&app.db.pool)
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(
        types,
        [
            "campaign.created.v1",
            "campaign.status_changed.v1",
            "campaign.budget_updated.v1"
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_tracking_update_by_message_is_applied_once_and_refused_once_the_campaign_is_closed() {
    let mut app = spawn_app().await;
    let campaign = app
        .grpc
        .create_campaign(create("Links by message"))
        .await
        .unwrap()
        .into_inner()
        .campaign
        .unwrap();
    let update = |landing_url: &str| {
        Command::UpdateTracking(pb::UpdateTrackingSettingsRequest {
            campaign_id: campaign.id.clone(),
            tracking: Some(pb::TrackingSettings {
                landing_url: landing_url.into(),
                landing_domains: vec!["Shop.Example.com".into()],
                ..Default::default()
            }),
        })
    };
    // Delivered twice: applied once.
    let first = uuid::Uuid::now_v7().to_string();
    for _ in 0..2 {
        app.send(&first, update("https://shop.example.com/a")).await;
    }
    let pool = app.db.pool.clone();
    let stored = |pool: PgPool| async move {
        let row: (i64, Option<String>, Option<Vec<String>>) = sqlx::query_as(
            "select version, landing_url, landing_domains from campaigns order by id limit 1",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        row
    };
    eventually(WAIT, "the settings applied", || {
        let pool = pool.clone();
        async move { (stored(pool).await.0 == 2).then_some(()) }
    })
    .await;
    app.grpc
        .close_campaign(pb::CloseCampaignRequest {
            campaign_id: campaign.id.clone(),
        })
        .await
        .unwrap();
    let refused = uuid::Uuid::now_v7().to_string();
    app.send(&refused, update("https://shop.example.com/b"))
        .await;
    let found = eventually(WAIT, "the update of the closed campaign rejected", || {
        let pool = pool.clone();
        let refused = refused.clone();
        async move {
            events(&pool)
                .await
                .into_iter()
                .find_map(|(_, e)| match e.event {
                    Some(Event::CommandRejected(r)) if r.command_message_id == refused => Some(r),
                    _ => None,
                })
        }
    })
    .await;
    assert_eq!(found.code, "FAILED_PRECONDITION");
    assert_eq!(found.command_type, "campaign.update_tracking.command.v1");
    assert_eq!(
        stored(pool.clone()).await,
        (
            3,
            Some("https://shop.example.com/a".to_owned()),
            Some(vec!["shop.example.com".to_owned()])
        ),
        "the first update, then the close"
    );
    let events = events(&app.db.pool).await;
    let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "campaign.created.v1",
            "campaign.tracking_updated.v1",
            "campaign.status_changed.v1",
            "campaign.command_rejected.v1"
        ]
    );
    match &events[1].1.event {
        Some(Event::TrackingUpdated(u)) => {
            let tracking = u
                .campaign
                .as_ref()
                .and_then(|c| c.tracking.as_ref())
                .unwrap();
            assert_eq!(tracking.landing_domains, ["shop.example.com"]);
            assert_eq!(tracking.click_id_param, "click_id");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        events[1].1.metadata.as_ref().unwrap().causation_id,
        first,
        "the event names the command that caused it"
    );
    app.stop().await;
}
