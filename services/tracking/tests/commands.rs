//! The command-topic door of the tracking service, in its own Pulsar namespace and database:
//! commands published to `tracking-commands` run the same handlers as gRPC calls (a purchase
//! still sends its commission command), a redelivered command is applied once, and a command
//! that can never succeed is rejected once with an event. Tracking's copy of the campaigns is
//! fed here through its real feed: campaign events published to the namespace's
//! `campaign-events`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use prost::Message as _;
use sqlx::PgPool;
use uuid::Uuid;

use affiliate_proto::campaign::{self as campaign_pb, campaign_event};
use affiliate_proto::commission::{CommissionCommand, commission_command};
use affiliate_proto::common::{MessageMetadata, Money};
use affiliate_proto::tracking::tracking_service_client::TrackingServiceClient;
use affiliate_proto::tracking::{
    self as pb, TrackingCommand, tracking_command::Command, tracking_event_envelope::Event,
};
use e2e::{TestDatabase, eventually, fresh_database, fresh_namespace, publish, pulsar};
use tracking_service::Tracking;

struct TestApp {
    db: TestDatabase,
    namespace: e2e::TestNamespace,
    grpc: TrackingServiceClient<tonic::transport::Channel>,
    client: pulsar::Pulsar<pulsar::TokioExecutor>,
    served: e2e::Served,
}

async fn spawn_app() -> TestApp {
    spawn_app_with(&[
        "--max-redeliveries",
        "2",
        "--retry-min-backoff",
        "10ms",
        "--retry-max-backoff",
        "50ms",
        "--attribution-grace",
        "0s",
    ])
    .await
}

/// The service in hybrid mode with `extra` flags, its copy of the campaigns holding CAMPAIGN,
/// active and accepted by CREATOR, through the feed.
async fn spawn_app_with(extra: &[&str]) -> TestApp {
    let db = fresh_database("tracking_cmd").await;
    let namespace = fresh_namespace().await;
    let args: Vec<&str> = ["--mode", "hybrid"].iter().chain(extra).copied().collect();
    let served = e2e::serve_service::<Tracking>(&db.url, Some(&*namespace), &args).await;
    let addr = served.addr;
    let grpc = TrackingServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let app = TestApp {
        db,
        namespace,
        grpc,
        client: pulsar().await,
        served,
    };
    let campaign = Uuid::parse_str(CAMPAIGN).unwrap();
    app.campaign_event(campaign, 1, created(campaign)).await;
    let accepted = campaign_pb::Acceptance {
        campaign_id: CAMPAIGN.into(),
        creator_id: CREATOR.into(),
        accepted_at: None,
    };
    let accepted = campaign_event::Event::CampaignAccepted(campaign_pb::CampaignAccepted {
        acceptance: Some(accepted),
    });
    app.campaign_event(campaign, 2, accepted).await;
    let pool = app.db.pool.clone();
    eventually(
        WAIT,
        "the copy holds the campaign and the acceptance",
        || {
            let pool = pool.clone();
            async move {
                let n: i64 = sqlx::query_scalar("select count(*) from acceptances")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                (n == 1).then_some(())
            }
        },
    )
    .await;
    app
}

/// The created event of an active campaign.
fn created(campaign: Uuid) -> campaign_event::Event {
    campaign_event::Event::CampaignCreated(campaign_pb::CampaignCreated {
        campaign: Some(campaign_pb::Campaign {
            id: campaign.to_string(),
            status: campaign_pb::CampaignStatus::Active.into(),
            version: 1,
            ..Default::default()
        }),
    })
}

impl TestApp {
    async fn campaign_event(&self, campaign: Uuid, version: i64, event: campaign_event::Event) {
        let topic = self.namespace.topic("campaign-events");
        let message_id = Uuid::now_v7().to_string();
        e2e::publish_campaign_event(&self.client, &topic, &message_id, campaign, version, event)
            .await;
    }

    async fn send(&self, message_id: &str, command: Command) {
        let message_type = command.message_type();
        let envelope = TrackingCommand {
            metadata: Some(MessageMetadata {
                message_id: message_id.to_owned(),
                message_type: message_type.to_owned(),
                correlation_id: "corr-cmd".to_owned(),
                ..Default::default()
            }),
            command: Some(command),
        };
        self.send_raw(message_id, message_type, envelope.encode_to_vec())
            .await;
    }

    async fn send_raw(&self, message_id: &str, message_type: &str, payload: Vec<u8>) {
        let topic = self.namespace.topic("tracking-commands");
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

const CAMPAIGN: &str = "0193a9e0-0000-7000-8000-0000000000c1";
const CREATOR: &str = "0193a9e0-0000-7000-8000-0000000000c2";

fn purchase(product_id: &str) -> pb::CreateEventRequest {
    pb::CreateEventRequest {
        campaign_id: CAMPAIGN.into(),
        creator_id: CREATOR.into(),
        kind: pb::TrackingEventKind::Purchase.into(),
        amount: Some(Money {
            amount_minor: 2_500,
            currency: "USD".into(),
        }),
        product_id: product_id.into(),
        occurred_at: None,
    }
}

fn evidence(url: &str) -> pb::SubmitEvidenceRequest {
    pb::SubmitEvidenceRequest {
        campaign_id: CAMPAIGN.into(),
        creator_id: CREATOR.into(),
        kind: pb::EvidenceKind::Photo.into(),
        url: url.into(),
        note: String::new(),
    }
}

/// Outbox rows as (type, causation id, payload), in id order.
async fn outbox(pool: &PgPool) -> Vec<(String, Option<String>, Vec<u8>)> {
    sqlx::query_as("select message_type, causation_id, payload from outbox order by id")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Tracking events as (id, product id), oldest first.
async fn events(pool: &PgPool) -> Vec<(Uuid, Option<String>)> {
    sqlx::query_as("select id, product_id from tracking_events order by id")
        .fetch_all(pool)
        .await
        .unwrap()
}

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_command_message_and_a_grpc_call_with_its_id_as_key_have_one_effect() {
    let mut app = spawn_app().await;
    let message_id = Uuid::now_v7().to_string();
    app.send(&message_id, Command::CreateEvent(purchase("by-message")))
        .await;
    let pool = app.db.pool.clone();
    let (stored, _) = eventually(WAIT, "the command recorded a purchase", || {
        let pool = pool.clone();
        async move { events(&pool).await.pop() }
    })
    .await;

    // The same command through the other door, keyed by the message id: the first result.
    let request = e2e::with_key(purchase("by-message"), &message_id);
    let event = app
        .grpc
        .create_event(request)
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();
    assert_eq!(event.id, stored.to_string());
    assert_eq!(events(&app.db.pool).await.len(), 1);

    // The event names the command message as its cause; the commission command names the event.
    let rows = outbox(&app.db.pool).await;
    let types: Vec<&str> = rows.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "tracking_event.created.v1",
            "commission.calculate.command.v1"
        ]
    );
    let created = pb::TrackingEventEnvelope::decode(rows[0].2.as_slice()).unwrap();
    let created_meta = created.metadata.unwrap();
    assert_eq!(created_meta.correlation_id, "corr-cmd");
    assert_eq!(created_meta.causation_id, message_id);
    assert_eq!(rows[0].1.as_deref(), Some(message_id.as_str()));
    match created.event {
        Some(Event::TrackingEventCreated(c)) => assert_eq!(c.event, Some(event.clone())),
        other => panic!("unexpected event {other:?}"),
    }
    let command = CommissionCommand::decode(rows[1].2.as_slice()).unwrap();
    let command_meta = command.metadata.unwrap();
    assert_eq!(command_meta.correlation_id, "corr-cmd");
    assert_eq!(command_meta.causation_id, created_meta.message_id);
    assert_eq!(command_meta.aggregate_id, event.id);
    match command.command {
        Some(commission_command::Command::Calculate(c)) => {
            assert_eq!(
                (c.tracking_event_id, c.campaign_id, c.creator_id),
                (event.id, CAMPAIGN.to_owned(), CREATOR.to_owned())
            );
            assert_eq!(c.purchase_amount, event.amount);
        }
        other => panic!("unexpected command {other:?}"),
    }
    app.stop().await;
}

#[tokio::test]
async fn a_redelivered_command_is_applied_once() {
    let app = spawn_app().await;
    let purchase_id = Uuid::now_v7().to_string();
    let evidence_id = Uuid::now_v7().to_string();
    for _ in 0..3 {
        app.send(&purchase_id, Command::CreateEvent(purchase("twice")))
            .await;
        app.send(
            &evidence_id,
            Command::SubmitEvidence(evidence("https://photos.example/1.jpg")),
        )
        .await;
    }
    let marker = Uuid::now_v7().to_string();
    app.send(&marker, Command::CreateEvent(purchase("marker")))
        .await;
    let pool = app.db.pool.clone();
    eventually(WAIT, "the marker command applied", || {
        let pool = pool.clone();
        async move {
            events(&pool)
                .await
                .iter()
                .any(|(_, p)| p.as_deref() == Some("marker"))
                .then_some(())
        }
    })
    .await;
    let products: Vec<Option<String>> = events(&app.db.pool)
        .await
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert_eq!(products, [Some("twice".into()), Some("marker".into())]);
    // The evidence has a key of its own: its lane is not behind the marker's, so wait for it too.
    let evidence: i64 = eventually(WAIT, "the evidence command applied", || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar("select count(*) from evidence")
                .fetch_one(&pool)
                .await
                .unwrap();
            (n > 0).then_some(n)
        }
    })
    .await;
    assert_eq!(evidence, 1);
    let mut types: Vec<String> = outbox(&app.db.pool)
        .await
        .into_iter()
        .map(|(t, _, _)| t)
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            "commission.calculate.command.v1",
            "commission.calculate.command.v1",
            "evidence.submitted.v1",
            "tracking_event.created.v1",
            "tracking_event.created.v1"
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn commands_that_can_never_succeed_are_rejected_once_with_an_event() {
    let app = spawn_app().await;
    let invalid = Uuid::now_v7().to_string();
    let mut bad = purchase("x");
    bad.creator_id = "nobody".into();
    bad.amount = Some(Money {
        amount_minor: -1,
        currency: "usd".into(),
    });
    app.send(&invalid, Command::CreateEvent(bad.clone())).await;
    app.send(&invalid, Command::CreateEvent(bad)).await;
    let garbage = Uuid::now_v7().to_string();
    app.send_raw(
        &garbage,
        "tracking.mystery.v1",
        vec![0xff, 0xff, 0xff, 0x01],
    )
    .await;
    let bad_evidence = Uuid::now_v7().to_string();
    app.send(
        &bad_evidence,
        Command::SubmitEvidence(evidence("javascript:alert(1)")),
    )
    .await;

    let pool = app.db.pool.clone();
    eventually(WAIT, "three rejections recorded", || {
        let pool = pool.clone();
        async move {
            let n: i64 =
                sqlx::query_scalar("select count(*) from inbox where outcome = 'rejected'")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            (n == 3).then_some(())
        }
    })
    .await;
    let mut rejected: Vec<(String, String, String, String, Vec<String>)> = outbox(&app.db.pool)
        .await
        .iter()
        .map(|(t, _, payload)| {
            assert_eq!(t, "tracking.command_rejected.v1");
            let envelope = pb::TrackingEventEnvelope::decode(payload.as_slice()).unwrap();
            let aggregate_type = envelope.metadata.unwrap().aggregate_type;
            match envelope.event {
                Some(Event::CommandRejected(r)) => (
                    r.command_message_id,
                    r.command_type,
                    r.code,
                    aggregate_type,
                    r.field_violations.into_iter().map(|v| v.field).collect(),
                ),
                other => panic!("unexpected {other:?}"),
            }
        })
        .collect();
    rejected.sort();
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        rejected,
        [
            (
                invalid,
                "tracking.create_event.command.v1".to_owned(),
                "INVALID_ARGUMENT".to_owned(),
                "tracking_event".to_owned(),
                strings(&["creator_id", "amount.amount_minor", "amount.currency"])
            ),
            (
                garbage,
                "tracking.mystery.v1".to_owned(),
                "INVALID_ARGUMENT".to_owned(),
                "tracking_event".to_owned(),
                vec![]
            ),
            (
                bad_evidence,
                "tracking.submit_evidence.command.v1".to_owned(),
                "INVALID_ARGUMENT".to_owned(),
                "evidence".to_owned(),
                strings(&["url"])
            ),
        ]
    );
    assert!(events(&app.db.pool).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn commands_for_unknown_paused_or_unaccepted_campaigns_are_rejected_after_the_grace() {
    // Retries that outlast the grace: a refusal is final only once the grace has passed.
    let app = spawn_app_with(&[
        "--max-redeliveries",
        "20",
        "--retry-min-backoff",
        "50ms",
        "--retry-max-backoff",
        "200ms",
        "--attribution-grace",
        "1s",
    ])
    .await;
    let paused = Uuid::now_v7();
    app.campaign_event(paused, 1, created(paused)).await;
    let pause = campaign_event::Event::CampaignStatusChanged(campaign_pb::CampaignStatusChanged {
        campaign_id: paused.to_string(),
        previous_status: campaign_pb::CampaignStatus::Active.into(),
        campaign: Some(campaign_pb::Campaign {
            id: paused.to_string(),
            status: campaign_pb::CampaignStatus::Paused.into(),
            version: 2,
            ..Default::default()
        }),
    });
    app.campaign_event(paused, 2, pause).await;
    let mut unknown = purchase("unknown");
    unknown.campaign_id = Uuid::now_v7().to_string();
    let mut on_paused = purchase("paused");
    on_paused.campaign_id = paused.to_string();
    let mut stranger = purchase("stranger");
    stranger.creator_id = Uuid::now_v7().to_string();
    let sent: Vec<(String, &str)> = vec![
        (Uuid::now_v7().to_string(), "NOT_FOUND"),
        (Uuid::now_v7().to_string(), "FAILED_PRECONDITION"),
        (Uuid::now_v7().to_string(), "FAILED_PRECONDITION"),
    ];
    for ((id, _), request) in sent.iter().zip([unknown, on_paused, stranger]) {
        app.send(id, Command::CreateEvent(request)).await;
    }
    let pool = app.db.pool.clone();
    eventually(WAIT, "three rejections recorded", || {
        let pool = pool.clone();
        async move {
            let n: i64 =
                sqlx::query_scalar("select count(*) from inbox where outcome = 'rejected'")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            (n == 3).then_some(())
        }
    })
    .await;
    let mut rejected: Vec<(String, String)> = outbox(&app.db.pool)
        .await
        .iter()
        .map(|(t, _, payload)| {
            assert_eq!(t, "tracking.command_rejected.v1");
            match pb::TrackingEventEnvelope::decode(payload.as_slice())
                .unwrap()
                .event
            {
                Some(Event::CommandRejected(r)) => (r.command_message_id, r.code),
                other => panic!("unexpected {other:?}"),
            }
        })
        .collect();
    rejected.sort();
    let mut expected: Vec<(String, String)> = sent
        .iter()
        .map(|(id, code)| (id.clone(), (*code).to_owned()))
        .collect();
    expected.sort();
    assert_eq!(rejected, expected);
    assert!(events(&app.db.pool).await.is_empty());
    app.stop().await;
}
