//! The tracking service through its real gRPC server (TCP, port 0) on a fresh PostgreSQL
//! database per test: behaviour, error statuses, idempotency, and what lands in the outbox
//! (including the commission command a purchase sends, in the same transaction), and
//! attribution: which campaigns and creators an event is accepted for. The copy of the campaigns
//! is written here directly ([`seed`]); `tests/commands.rs` feeds it through campaign events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use prost::Message as _;
use sqlx::PgPool;
use tonic::transport::Channel;
use tonic::{Code, Request};
use uuid::Uuid;

use affiliate_proto::commission::{CommissionCommand, commission_command::Command};
use affiliate_proto::common::Money;
use affiliate_proto::tracking::tracking_service_client::TrackingServiceClient;
use affiliate_proto::tracking::{self as pb, tracking_event_envelope::Event};
use e2e::{TestDatabase, fresh_database, violated_fields as fields};
use tracking_service::Tracking;

struct TestApp {
    client: TrackingServiceClient<Channel>,
    db: TestDatabase,
    served: e2e::Served,
    _namespace: e2e::TestNamespace,
}

/// How long a refused event waits for the copy of the campaigns here.
const GRACE: &str = "300ms";

async fn spawn_app() -> TestApp {
    spawn_app_with_grace(GRACE).await
}

async fn spawn_app_with_grace(grace: &str) -> TestApp {
    let db = fresh_database("tracking_api").await;
    let namespace = e2e::fresh_namespace().await;
    let served =
        e2e::serve_service::<Tracking>(&db.url, Some(&*namespace), &["--attribution-grace", grace])
            .await;
    let client = TrackingServiceClient::connect(served.url())
        .await
        .expect("connect gRPC");
    TestApp {
        client,
        db,
        served,
        _namespace: namespace,
    }
}

/// Puts campaign `campaign` in tracking's copy with `status`, accepted by `creator` (if given),
/// as the campaign events would.
async fn put_campaign(pool: &PgPool, campaign: &str, status: &str, creator: Option<&str>) {
    let campaign = Uuid::parse_str(campaign).unwrap();
    sqlx::query(
        "insert into campaigns (campaign_id, status, version) values ($1, $2, 1)
         on conflict (campaign_id) do update set status = excluded.status",
    )
    .bind(campaign)
    .bind(status)
    .execute(pool)
    .await
    .unwrap();
    if let Some(creator) = creator {
        sqlx::query(
            "insert into acceptances (campaign_id, creator_id, accepted_at) values ($1, $2, now())
             on conflict do nothing",
        )
        .bind(campaign)
        .bind(Uuid::parse_str(creator).unwrap())
        .execute(pool)
        .await
        .unwrap();
    }
}

/// An active campaign `creator` accepted, in the copy (ids that are not UUIDs are left alone:
/// their requests are refused before attribution).
async fn seed(pool: &PgPool, campaign: &str, creator: &str) {
    if Uuid::parse_str(campaign).is_ok() && Uuid::parse_str(creator).is_ok() {
        put_campaign(pool, campaign, "active", Some(creator)).await;
    }
}

impl TestApp {
    async fn stop(self) {
        self.served.stop().await;
    }

    /// Creates the event for an active campaign its creator accepted ([`seed`]).
    async fn create(
        &mut self,
        request: pb::CreateEventRequest,
        key: Option<&str>,
    ) -> Result<pb::TrackingEvent, tonic::Status> {
        seed(&self.db.pool, &request.campaign_id, &request.creator_id).await;
        self.create_unseeded(request, key).await
    }

    async fn create_unseeded(
        &mut self,
        request: pb::CreateEventRequest,
        key: Option<&str>,
    ) -> Result<pb::TrackingEvent, tonic::Status> {
        let req = e2e::maybe_keyed(request, key);
        Ok(self
            .client
            .create_event(req)
            .await?
            .into_inner()
            .event
            .unwrap())
    }

    async fn submit(
        &mut self,
        request: pb::SubmitEvidenceRequest,
        key: Option<&str>,
    ) -> Result<pb::Evidence, tonic::Status> {
        let req = e2e::maybe_keyed(request, key);
        Ok(self
            .client
            .submit_evidence(req)
            .await?
            .into_inner()
            .evidence
            .unwrap())
    }
}

fn purchase(campaign_id: &str, creator_id: &str) -> pb::CreateEventRequest {
    pb::CreateEventRequest {
        campaign_id: campaign_id.to_owned(),
        creator_id: creator_id.to_owned(),
        kind: pb::TrackingEventKind::Purchase.into(),
        amount: Some(Money {
            amount_minor: 12_999,
            currency: "EUR".to_owned(),
        }),
        product_id: "sku-123".to_owned(),
        occurred_at: None,
    }
}

fn view(campaign_id: &str, creator_id: &str) -> pb::CreateEventRequest {
    pb::CreateEventRequest {
        kind: pb::TrackingEventKind::View.into(),
        amount: None,
        product_id: String::new(),
        ..purchase(campaign_id, creator_id)
    }
}

fn evidence(campaign_id: &str, creator_id: &str) -> pb::SubmitEvidenceRequest {
    pb::SubmitEvidenceRequest {
        campaign_id: campaign_id.to_owned(),
        creator_id: creator_id.to_owned(),
        kind: pb::EvidenceKind::Video.into(),
        url: "https://video.example/watch?v=42".to_owned(),
        note: "the launch video".to_owned(),
    }
}

fn new_id() -> String {
    Uuid::now_v7().to_string()
}

/// One outbox row, as the relay will publish it.
#[derive(Debug, sqlx::FromRow)]
struct OutboxRow {
    message_id: Uuid,
    topic: String,
    message_type: String,
    aggregate_type: String,
    aggregate_id: Uuid,
    aggregate_version: i64,
    correlation_id: String,
    causation_id: Option<String>,
    payload: Vec<u8>,
    /// The id of the transaction that wrote the row.
    xmin: String,
}

async fn outbox(pool: &PgPool) -> Vec<OutboxRow> {
    sqlx::query_as(
        r#"
        select message_id, topic, message_type, aggregate_type, aggregate_id, aggregate_version,
               correlation_id, causation_id, payload, xmin::text as xmin
        from outbox order by id
        "#,
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn event_of(row: &OutboxRow) -> pb::TrackingEventEnvelope {
    pb::TrackingEventEnvelope::decode(row.payload.as_slice()).unwrap()
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_purchase_writes_its_event_and_a_calculate_command_in_one_transaction() {
    let mut app = spawn_app().await;
    let (campaign, creator) = (new_id(), new_id());
    seed(&app.db.pool, &campaign, &creator).await;
    let mut request = Request::new(purchase(&campaign, &creator));
    request
        .metadata_mut()
        .insert("x-correlation-id", "corr-7".parse().unwrap());
    let event = app
        .client
        .create_event(request)
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();

    assert_eq!(event.kind(), pb::TrackingEventKind::Purchase);
    assert_eq!(event.product_id, "sku-123");
    assert_eq!(
        event.occurred_at, event.recorded_at,
        "occurred_at defaults to the time of recording"
    );
    let rows = outbox(&app.db.pool).await;
    assert_eq!(rows.len(), 2);
    let (created, command) = (&rows[0], &rows[1]);

    // The event, on tracking-events.
    assert_eq!(
        (
            created.topic.as_str(),
            created.message_type.as_str(),
            created.aggregate_type.as_str(),
            created.aggregate_id.to_string(),
            created.aggregate_version,
            created.correlation_id.as_str(),
            created.causation_id.as_deref(),
        ),
        (
            "tracking-events",
            "tracking_event.created.v1",
            "tracking_event",
            event.id.clone(),
            1,
            "corr-7",
            None
        )
    );
    let envelope = event_of(created);
    let metadata = envelope.metadata.unwrap();
    assert_eq!(metadata.message_id, created.message_id.to_string());
    assert_eq!(metadata.message_type, "tracking_event.created.v1");
    assert_eq!(metadata.aggregate_id, event.id);
    match envelope.event {
        Some(Event::TrackingEventCreated(c)) => assert_eq!(c.event.as_ref(), Some(&event)),
        other => panic!("unexpected event {other:?}"),
    }

    // The command, on commission-commands, caused by the event.
    assert_eq!(
        (
            command.topic.as_str(),
            command.message_type.as_str(),
            command.aggregate_type.as_str(),
            command.aggregate_id.to_string(),
            command.aggregate_version,
            command.correlation_id.as_str(),
            command.causation_id.clone(),
        ),
        (
            "commission-commands",
            "commission.calculate.command.v1",
            "tracking_event",
            event.id.clone(),
            1,
            "corr-7",
            Some(created.message_id.to_string())
        )
    );
    let envelope = CommissionCommand::decode(command.payload.as_slice()).unwrap();
    let metadata = envelope.metadata.unwrap();
    assert_eq!(metadata.message_id, command.message_id.to_string());
    assert_ne!(metadata.message_id, created.message_id.to_string());
    assert_eq!(metadata.message_type, "commission.calculate.command.v1");
    assert_eq!(metadata.aggregate_type, "tracking_event");
    assert_eq!(metadata.aggregate_id, event.id);
    assert_eq!(metadata.aggregate_version, 1);
    assert_eq!(metadata.correlation_id, "corr-7");
    assert_eq!(metadata.causation_id, created.message_id.to_string());
    match envelope.command {
        Some(Command::Calculate(calculate)) => {
            assert_eq!(calculate.tracking_event_id, event.id);
            assert_eq!(calculate.campaign_id, campaign);
            assert_eq!(calculate.creator_id, creator);
            assert_eq!(
                calculate.purchase_amount,
                Some(Money {
                    amount_minor: 12_999,
                    currency: "EUR".into()
                })
            );
        }
        other => panic!("unexpected command {other:?}"),
    }

    // One transaction wrote the event row and both outbox rows.
    let event_xmin: String =
        sqlx::query_scalar("select xmin::text from tracking_events where id = $1")
            .bind(Uuid::parse_str(&event.id).unwrap())
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(
        (created.xmin.as_str(), command.xmin.as_str()),
        (event_xmin.as_str(), event_xmin.as_str())
    );

    let fetched = app
        .client
        .get_event(pb::GetEventRequest {
            event_id: event.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.event, Some(event));
    app.stop().await;
}

#[tokio::test]
async fn when_the_command_cannot_be_written_the_purchase_is_not_recorded_either() {
    let mut app = spawn_app().await;
    let refused = "new.topic = 'commission-commands'";
    e2e::fail_inserts(
        &app.db.pool,
        "refuse_commands",
        "outbox",
        refused,
        "no commands today",
    )
    .await;

    let err = app
        .create(purchase(&new_id(), &new_id()), Some("atomic-1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(!err.message().contains("no commands today"));
    assert_eq!(count(&app.db.pool, "tracking_events").await, 0);
    assert_eq!(count(&app.db.pool, "outbox").await, 0);
    assert_eq!(count(&app.db.pool, "idempotency_keys").await, 0);
    // Views send no command, so they are unaffected.
    app.create(view(&new_id(), &new_id()), None).await.unwrap();
    assert_eq!(count(&app.db.pool, "tracking_events").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn views_and_clicks_write_their_event_and_no_command() {
    let mut app = spawn_app().await;
    let (campaign, creator) = (new_id(), new_id());
    let seen = app.create(view(&campaign, &creator), None).await.unwrap();
    let click = pb::CreateEventRequest {
        kind: pb::TrackingEventKind::Click.into(),
        ..view(&campaign, &creator)
    };
    let clicked = app.create(click, None).await.unwrap();
    assert_eq!(seen.kind(), pb::TrackingEventKind::View);
    assert_eq!(clicked.kind(), pb::TrackingEventKind::Click);
    assert_eq!((seen.amount, clicked.amount), (None, None));

    let rows = outbox(&app.db.pool).await;
    let summary: Vec<(&str, &str, String)> = rows
        .iter()
        .map(|r| {
            (
                r.topic.as_str(),
                r.message_type.as_str(),
                r.aggregate_id.to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("tracking-events", "tracking_event.created.v1", seen.id),
            ("tracking-events", "tracking_event.created.v1", clicked.id)
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_reported_occurrence_time_is_kept() {
    let mut app = spawn_app().await;
    let occurred_at = pbjson_types::Timestamp {
        seconds: 1_700_000_000,
        nanos: 250_000_000,
    };
    let event = app
        .create(
            pb::CreateEventRequest {
                occurred_at: Some(occurred_at),
                ..view(&new_id(), &new_id())
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(event.occurred_at, Some(occurred_at));
    assert_ne!(event.recorded_at, Some(occurred_at));
    app.stop().await;
}

#[tokio::test]
async fn invalid_events_are_invalid_argument_with_every_field_and_write_nothing() {
    let mut app = spawn_app().await;
    let far_future = chrono::Utc::now().timestamp() + 3_600;
    let everything_wrong = pb::CreateEventRequest {
        campaign_id: "not-a-uuid".into(),
        creator_id: String::new(),
        kind: pb::TrackingEventKind::Purchase.into(),
        amount: Some(Money {
            amount_minor: 0,
            currency: "euro".into(),
        }),
        product_id: "p".repeat(201),
        occurred_at: Some(pbjson_types::Timestamp {
            seconds: far_future,
            nanos: 0,
        }),
    };
    let err = app
        .create(everything_wrong, Some("bad-1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        fields(&err),
        [
            "campaign_id",
            "creator_id",
            "amount.amount_minor",
            "amount.currency",
            "product_id",
            "occurred_at"
        ]
    );

    let (campaign, creator) = (new_id(), new_id());
    let cases: Vec<(pb::CreateEventRequest, Vec<&str>)> = vec![
        (
            pb::CreateEventRequest {
                amount: None,
                ..purchase(&campaign, &creator)
            },
            vec!["amount"],
        ),
        (
            pb::CreateEventRequest {
                amount: Some(Money {
                    amount_minor: 100,
                    currency: "USD".into(),
                }),
                ..view(&campaign, &creator)
            },
            vec!["amount"],
        ),
        (
            pb::CreateEventRequest {
                kind: pb::TrackingEventKind::Unspecified.into(),
                ..view(&campaign, &creator)
            },
            vec!["kind"],
        ),
        (
            pb::CreateEventRequest {
                kind: 42,
                ..view(&campaign, &creator)
            },
            vec!["kind"],
        ),
    ];
    for (request, expected) in cases {
        let err = app.create(request.clone(), None).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{request:?}");
        assert_eq!(fields(&err), expected, "{request:?}");
    }
    assert_eq!(count(&app.db.pool, "tracking_events").await, 0);
    assert_eq!(count(&app.db.pool, "outbox").await, 0);
    assert_eq!(count(&app.db.pool, "idempotency_keys").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn invalid_evidence_is_invalid_argument_with_every_field_and_writes_nothing() {
    let mut app = spawn_app().await;
    let request = pb::SubmitEvidenceRequest {
        campaign_id: String::new(),
        creator_id: "creator-1".into(),
        kind: pb::EvidenceKind::Unspecified.into(),
        url: "ftp://files.example/x".into(),
        note: "n".repeat(1001),
    };
    let err = app.submit(request, Some("bad-2")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        fields(&err),
        ["campaign_id", "creator_id", "kind", "url", "note"]
    );
    let long_url = pb::SubmitEvidenceRequest {
        url: format!("https://x.example/{}", "a".repeat(2048)),
        ..evidence(&new_id(), &new_id())
    };
    let err = app.submit(long_url, None).await.unwrap_err();
    assert_eq!(fields(&err), ["url"]);
    assert_eq!(count(&app.db.pool, "evidence").await, 0);
    assert_eq!(count(&app.db.pool, "outbox").await, 0);
    assert_eq!(count(&app.db.pool, "idempotency_keys").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn malformed_metadata_is_invalid_argument_and_writes_nothing() {
    let mut app = spawn_app().await;
    let req = e2e::with_key(purchase(&new_id(), &new_id()), "k".repeat(201));
    let err = app.client.create_event(req).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(count(&app.db.pool, "tracking_events").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn retried_purchase_with_same_key_returns_the_first_result_and_writes_once() {
    let mut app = spawn_app().await;
    let request = purchase(&new_id(), &new_id());
    let first = app.create(request.clone(), Some("key-1")).await.unwrap();
    let second = app.create(request, Some("key-1")).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(count(&app.db.pool, "tracking_events").await, 1);
    let types: Vec<String> = outbox(&app.db.pool)
        .await
        .into_iter()
        .map(|r| r.message_type)
        .collect();
    assert_eq!(
        types,
        [
            "tracking_event.created.v1",
            "commission.calculate.command.v1"
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn concurrent_purchases_with_same_key_write_once() {
    let app = spawn_app().await;
    let request = purchase(&new_id(), &new_id());
    seed(&app.db.pool, &request.campaign_id, &request.creator_id).await;
    let calls = (0..8).map(|_| {
        let mut client = app.client.clone();
        let request = request.clone();
        async move {
            let req = e2e::with_key(request, "same-key");
            client
                .create_event(req)
                .await
                .map(|r| r.into_inner().event.unwrap().id)
        }
    });
    let ids: Vec<String> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "different events: {ids:?}"
    );
    assert_eq!(count(&app.db.pool, "tracking_events").await, 1);
    assert_eq!(outbox(&app.db.pool).await.len(), 2);
    app.stop().await;
}

/// Concurrent calls are written together (a group commit): each caller still gets its own
/// event, a refused call among them fails alone, and every call written is stored once with
/// its two outbox rows, each row in the transaction of its own event (the same `xmin` as the
/// event's row, whichever set it went in).
#[tokio::test]
async fn concurrent_calls_written_together_each_get_their_own_answer() {
    let app = spawn_app_with_grace("0s").await;
    let (campaign, creator) = (new_id(), new_id());
    seed(&app.db.pool, &campaign, &creator).await;
    let calls = (0..60i64).map(|n| {
        let mut client = app.client.clone();
        let mut request = purchase(&campaign, &creator);
        request.amount.as_mut().unwrap().amount_minor = 1_000 + n;
        request.product_id = format!("sku-{n}");
        if n % 20 == 7 {
            // Not accepted by this creator: refused, alone.
            request.creator_id = new_id();
        }
        async move {
            let answer = client
                .create_event(e2e::with_key(request.clone(), format!("call-{n}")))
                .await;
            (n, request, answer)
        }
    });
    let mut written = Vec::new();
    for (n, request, answer) in futures::future::join_all(calls).await {
        if n % 20 == 7 {
            let status = answer.unwrap_err();
            assert_eq!(
                status.code(),
                Code::FailedPrecondition,
                "call {n}: {status:?}"
            );
            continue;
        }
        let event = answer.unwrap().into_inner().event.unwrap();
        assert_eq!(
            event.product_id, request.product_id,
            "call {n} got another call's event"
        );
        assert_eq!(event.amount, request.amount, "call {n}");
        written.push(Uuid::parse_str(&event.id).unwrap());
    }
    assert_eq!(written.len(), 57);
    assert_eq!(count(&app.db.pool, "tracking_events").await, 57);
    assert_eq!(count(&app.db.pool, "outbox").await, 114);
    let same_transaction: i64 = sqlx::query_scalar(
        "select count(*) from outbox o join tracking_events e on e.id = o.aggregate_id
         where o.aggregate_type = 'tracking_event' and o.xmin = e.xmin",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        same_transaction, 114,
        "each event's two outbox rows (created, calculate) in its event's transaction"
    );
    app.stop().await;
}

#[tokio::test]
async fn reusing_a_key_for_a_different_request_is_refused_and_writes_nothing() {
    let mut app = spawn_app().await;
    app.create(view(&new_id(), &new_id()), Some("key-2"))
        .await
        .unwrap();
    let err = app
        .create(view(&new_id(), &new_id()), Some("key-2"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = app
        .submit(evidence(&new_id(), &new_id()), Some("key-2"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(count(&app.db.pool, "tracking_events").await, 1);
    assert_eq!(count(&app.db.pool, "evidence").await, 0);
    assert_eq!(count(&app.db.pool, "outbox").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn submitted_evidence_is_stored_once_and_appends_one_submitted_event() {
    let mut app = spawn_app().await;
    let (campaign, creator) = (new_id(), new_id());
    let request = evidence(&campaign, &creator);
    let first = app.submit(request.clone(), Some("ev-1")).await.unwrap();
    let again = app.submit(request, Some("ev-1")).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(
        (
            first.campaign_id.as_str(),
            first.creator_id.as_str(),
            first.kind(),
            first.url.as_str(),
            first.note.as_str()
        ),
        (
            campaign.as_str(),
            creator.as_str(),
            pb::EvidenceKind::Video,
            "https://video.example/watch?v=42",
            "the launch video"
        )
    );
    assert_eq!(count(&app.db.pool, "evidence").await, 1);
    let rows = outbox(&app.db.pool).await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        (
            row.topic.as_str(),
            row.message_type.as_str(),
            row.aggregate_type.as_str(),
            row.aggregate_id.to_string(),
            row.aggregate_version
        ),
        (
            "tracking-events",
            "evidence.submitted.v1",
            "evidence",
            first.id.clone(),
            1
        )
    );
    match event_of(row).event {
        Some(Event::EvidenceSubmitted(s)) => assert_eq!(s.evidence, Some(first)),
        other => panic!("unexpected event {other:?}"),
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_events_are_not_found_and_malformed_ids_invalid() {
    let mut app = spawn_app().await;
    let get = app
        .client
        .get_event(pb::GetEventRequest { event_id: new_id() })
        .await;
    assert_eq!(get.unwrap_err().code(), Code::NotFound);
    let get = app
        .client
        .get_event(pb::GetEventRequest {
            event_id: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(get.code(), Code::InvalidArgument);
    assert_eq!(fields(&get), ["event_id"]);
    app.stop().await;
}

#[tokio::test]
async fn list_events_pages_newest_first_and_filters_by_campaign_and_creator() {
    let mut app = spawn_app().await;
    let (campaign, other_campaign) = (new_id(), new_id());
    let (creator, other_creator) = (new_id(), new_id());
    let mut mine = Vec::new();
    for i in 0..7 {
        let request = if i % 2 == 0 {
            view(&campaign, &creator)
        } else {
            purchase(&campaign, &creator)
        };
        mine.push(app.create(request, None).await.unwrap().id);
    }
    let same_campaign_other_creator = app
        .create(view(&campaign, &other_creator), None)
        .await
        .unwrap()
        .id;
    let other = app
        .create(view(&other_campaign, &creator), None)
        .await
        .unwrap()
        .id;

    let pages = |campaign_id: &str, creator_id: &str| {
        let mut client = app.client.clone();
        let (campaign_id, creator_id) = (campaign_id.to_owned(), creator_id.to_owned());
        async move {
            let mut seen = Vec::new();
            let mut token = String::new();
            loop {
                let page = client
                    .list_events(pb::ListEventsRequest {
                        page_size: 3,
                        page_token: token.clone(),
                        campaign_id: campaign_id.clone(),
                        creator_id: creator_id.clone(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert!(page.events.len() <= 3);
                seen.extend(page.events.into_iter().map(|e| e.id));
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            seen
        }
    };
    let mut expected = mine.clone();
    expected.reverse();
    assert_eq!(pages(&campaign, &creator).await, expected);

    let mut by_campaign = mine.clone();
    by_campaign.push(same_campaign_other_creator.clone());
    by_campaign.reverse();
    assert_eq!(pages(&campaign, "").await, by_campaign);

    let mut by_creator = mine.clone();
    by_creator.push(other.clone());
    by_creator.reverse();
    assert_eq!(pages("", &creator).await, by_creator);

    let mut everything = mine;
    everything.extend([same_campaign_other_creator, other]);
    everything.reverse();
    assert_eq!(pages("", "").await, everything);

    let default_page = app
        .client
        .list_events(pb::ListEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(default_page.events.len(), 9);
    assert!(default_page.next_page_token.is_empty());

    let bad = app
        .client
        .list_events(pb::ListEventsRequest {
            page_size: 101,
            page_token: "zzz".into(),
            campaign_id: "c".into(),
            creator_id: "d".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(
        fields(&bad),
        ["page_size", "page_token", "campaign_id", "creator_id"]
    );
    app.stop().await;
}

#[tokio::test]
async fn list_evidence_pages_newest_first_and_filters_by_campaign_and_creator() {
    let mut app = spawn_app().await;
    let (campaign, creator) = (new_id(), new_id());
    let mut mine = Vec::new();
    for _ in 0..5 {
        mine.push(
            app.submit(evidence(&campaign, &creator), None)
                .await
                .unwrap()
                .id,
        );
    }
    let elsewhere = app
        .submit(evidence(&new_id(), &creator), None)
        .await
        .unwrap()
        .id;

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .client
            .list_evidence(pb::ListEvidenceRequest {
                page_size: 2,
                page_token: token.clone(),
                campaign_id: campaign.clone(),
                creator_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.evidence.len() <= 2);
        seen.extend(page.evidence.into_iter().map(|e| e.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut expected = mine.clone();
    expected.reverse();
    assert_eq!(seen, expected);

    let by_creator: Vec<String> = app
        .client
        .list_evidence(pb::ListEvidenceRequest {
            creator_id: creator.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .evidence
        .into_iter()
        .map(|e| e.id)
        .collect();
    let mut expected = mine;
    expected.push(elsewhere);
    expected.reverse();
    assert_eq!(by_creator, expected);

    let bad = app
        .client
        .list_evidence(pb::ListEvidenceRequest {
            page_size: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(fields(&bad), ["page_size"]);
    app.stop().await;
}

#[tokio::test]
async fn events_for_unknown_inactive_or_unaccepted_campaigns_are_refused_and_write_nothing() {
    let mut app = spawn_app().await;
    let pool = app.db.pool.clone();
    let (paused, closed, active, creator) = (new_id(), new_id(), new_id(), new_id());
    put_campaign(&pool, &paused, "paused", Some(&creator)).await;
    put_campaign(&pool, &closed, "closed", Some(&creator)).await;
    put_campaign(&pool, &active, "active", Some(&creator)).await;
    let stranger = new_id();
    let refusals = [
        (purchase(&new_id(), &creator), Code::NotFound, "campaign"),
        (view(&paused, &creator), Code::FailedPrecondition, "paused"),
        (
            purchase(&closed, &creator),
            Code::FailedPrecondition,
            "closed",
        ),
        (
            purchase(&active, &stranger),
            Code::FailedPrecondition,
            "has not accepted",
        ),
    ];
    for (request, code, says) in refusals {
        let err = app
            .create_unseeded(request.clone(), Some(&new_id()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
        assert!(err.message().contains(says), "{err:?} should say {says}");
    }
    for table in ["tracking_events", "outbox", "idempotency_keys"] {
        assert_eq!(count(&pool, table).await, 0, "{table}");
    }
    // The same creator on the active campaign is fine.
    app.create_unseeded(view(&active, &creator), None)
        .await
        .unwrap();
    app.stop().await;
}

#[tokio::test]
async fn an_event_waits_for_a_campaign_the_copy_learns_of_within_the_grace() {
    let app = spawn_app_with_grace("10s").await;
    let (campaign, creator) = (new_id(), new_id());
    let request = purchase(&campaign, &creator);
    let mut client = app.client.clone();
    let call = tokio::spawn(async move { client.create_event(request).await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!call.is_finished(), "the call waits for the copy");
    put_campaign(&app.db.pool, &campaign, "active", Some(&creator)).await;
    let created = call.await.unwrap().unwrap().into_inner().event.unwrap();
    assert_eq!(created.campaign_id, campaign);
    assert_eq!(count(&app.db.pool, "tracking_events").await, 1);
    app.stop().await;
}
