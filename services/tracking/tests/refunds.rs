//! Refunds and chargebacks of conversions, through the tracking service's real gRPC server (TCP,
//! port 0) and its command topic, on a fresh PostgreSQL database per test: full and partial
//! refunds against what is left of the sale, the refund id as the idempotency, the refusals, and
//! what lands in the outbox (`conversion.refunded.v1` and the `commission.reverse.command.v1` it
//! causes, in the same transaction). The campaign, link and click a conversion needs are written
//! here directly, as the campaign events and the redirect edge would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use prost::Message as _;
use sqlx::PgPool;
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

use affiliate_proto::commission::{
    CommissionCommand, ReverseCommissionRequest, commission_command,
};
use affiliate_proto::common::{MessageMetadata, Money};
use affiliate_proto::tracking::tracking_service_client::TrackingServiceClient;
use affiliate_proto::tracking::{
    self as pb, TrackingCommand, tracking_command, tracking_event_envelope::Event,
};
use e2e::{TestDatabase, fresh_database, violated_fields as fields};
use service_runtime::errors::error_reason;
use tracking_service::Tracking;

/// The sale every test refunds: 100.00 EUR.
const SALE: i64 = 10_000;

struct TestApp {
    client: TrackingServiceClient<Channel>,
    db: TestDatabase,
    namespace: e2e::TestNamespace,
    served: e2e::Served,
    advertiser: Uuid,
}

async fn spawn_app() -> TestApp {
    let db = fresh_database("tracking_refunds").await;
    let namespace = e2e::fresh_namespace().await;
    let served = e2e::serve_service::<Tracking>(
        &db.url,
        Some(&*namespace),
        &[
            "--mode",
            "hybrid",
            "--attribution-grace",
            "0s",
            "--retry-min-backoff",
            "10ms",
            "--retry-max-backoff",
            "50ms",
        ],
    )
    .await;
    let client = TrackingServiceClient::connect(served.url())
        .await
        .expect("connect gRPC");
    TestApp {
        client,
        db,
        namespace,
        served,
        advertiser: Uuid::now_v7(),
    }
}

/// The refund of `order` for `amount_minor` EUR (all that is left when `None`) under `refund_id`.
fn refund(
    app: &TestApp,
    order: &str,
    refund_id: &str,
    amount_minor: Option<i64>,
) -> pb::RefundConversionRequest {
    pb::RefundConversionRequest {
        advertiser_id: app.advertiser.to_string(),
        order_id: order.to_owned(),
        refund_id: refund_id.to_owned(),
        amount: amount_minor.map(|amount_minor| Money {
            amount_minor,
            currency: "EUR".to_owned(),
        }),
        kind: String::new(),
        reason: String::new(),
    }
}

impl TestApp {
    async fn stop(self) {
        self.served.stop().await;
    }

    /// A click an hour old on a link of an active EUR campaign of the advertiser, which holds
    /// conversions sooner than `min_conversion_secs` after their click; its click id.
    async fn click(&self, min_conversion_secs: i64) -> Uuid {
        let pool = &self.db.pool;
        let (campaign, creator, link, click) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        sqlx::query(
            "insert into campaigns (campaign_id, status, version, advertiser_id, currency,
                                    landing_url, min_conversion_secs)
             values ($1, 'active', 1, $2, 'EUR', 'https://shop.example.com', $3)",
        )
        .bind(campaign)
        .bind(self.advertiser)
        .bind(min_conversion_secs)
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "insert into acceptances (campaign_id, creator_id, accepted_at) values ($1, $2, now())",
        )
        .bind(campaign)
        .bind(creator)
        .execute(pool)
        .await
        .unwrap();
        let code: String = link.simple().to_string()[22..].to_owned();
        sqlx::query(
            "insert into links (id, code, campaign_id, creator_id, created_at)
             values ($1, $2, $3, $4, now())",
        )
        .bind(link)
        .bind(code)
        .bind(campaign)
        .bind(creator)
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "insert into clicks (id, link_id, campaign_id, creator_id, clicked_at, ip_hash,
                                 user_agent, referrer, verdict)
             values ($1, $2, $3, $4, now() - interval '1 hour', $5, 'Mozilla/5.0', '', 'unique')",
        )
        .bind(click)
        .bind(link)
        .bind(campaign)
        .bind(creator)
        .bind("0".repeat(32))
        .execute(pool)
        .await
        .unwrap();
        click
    }

    /// An accepted conversion of [`SALE`] for `order` (a purchase, so a commission follows).
    async fn sale(&mut self, order: &str) -> pb::Conversion {
        let click = self.click(0).await;
        let conversion = self.record(click, order).await;
        assert_eq!(conversion.status(), pb::ConversionStatus::Accepted);
        conversion
    }

    async fn record(&mut self, click: Uuid, order: &str) -> pb::Conversion {
        self.client
            .record_conversion(pb::RecordConversionRequest {
                advertiser_id: self.advertiser.to_string(),
                click_id: click.simple().to_string(),
                order_id: order.to_owned(),
                amount: Some(Money {
                    amount_minor: SALE,
                    currency: "EUR".to_owned(),
                }),
                converted_at: None,
            })
            .await
            .unwrap()
            .into_inner()
            .conversion
            .unwrap()
    }

    async fn refund(
        &mut self,
        request: pb::RefundConversionRequest,
    ) -> Result<pb::RefundConversionResponse, tonic::Status> {
        Ok(self.client.refund_conversion(request).await?.into_inner())
    }

    async fn refunded_minor(&mut self, conversion_id: &str) -> i64 {
        self.client
            .get_conversion(pb::GetConversionRequest {
                conversion_id: conversion_id.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .conversion
            .unwrap()
            .refunded_minor
    }

    /// Sends a RefundConversion command to `tracking-commands` as message `message_id`.
    async fn send(&self, message_id: &str, request: pb::RefundConversionRequest) {
        let command = tracking_command::Command::RefundConversion(request);
        let message_type = "tracking.refund_conversion.command.v1";
        let envelope = TrackingCommand {
            metadata: Some(MessageMetadata {
                message_id: message_id.to_owned(),
                message_type: message_type.to_owned(),
                correlation_id: "corr-refund".to_owned(),
                ..Default::default()
            }),
            command: Some(command),
        };
        e2e::publish(
            &e2e::pulsar().await,
            &self.namespace.topic("tracking-commands"),
            message_id,
            message_id,
            message_type,
            "corr-refund",
            envelope.encode_to_vec(),
        )
        .await;
    }
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

/// The outbox rows of type `message_type`, in order.
async fn outbox(pool: &PgPool, message_type: &str) -> Vec<OutboxRow> {
    sqlx::query_as(
        r#"
        select message_id, topic, message_type, aggregate_type, aggregate_id, aggregate_version,
               correlation_id, causation_id, payload, xmin::text as xmin
        from outbox where message_type = $1 order by id
        "#,
    )
    .bind(message_type)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn outbox_len(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from outbox")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn refunds_stored(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from refunds")
        .fetch_one(pool)
        .await
        .unwrap()
}

const REFUNDED: &str = "conversion.refunded.v1";
const REVERSE: &str = "commission.reverse.command.v1";

fn refunded_event(row: &OutboxRow) -> pb::ConversionRefunded {
    match pb::TrackingEventEnvelope::decode(row.payload.as_slice())
        .unwrap()
        .event
    {
        Some(Event::ConversionRefunded(refunded)) => refunded,
        other => panic!("not a conversion.refunded.v1: {other:?}"),
    }
}

fn reverse_command(row: &OutboxRow) -> (MessageMetadata, ReverseCommissionRequest) {
    let envelope = CommissionCommand::decode(row.payload.as_slice()).unwrap();
    match envelope.command {
        Some(commission_command::Command::Reverse(reverse)) => {
            (envelope.metadata.unwrap(), reverse)
        }
        other => panic!("not a commission.reverse.command.v1: {other:?}"),
    }
}

fn eur(amount_minor: i64) -> Option<Money> {
    Some(Money {
        amount_minor,
        currency: "EUR".to_owned(),
    })
}

fn reason(status: &tonic::Status) -> Option<String> {
    error_reason(status)
}

#[tokio::test]
async fn a_full_refund_takes_the_sale_back_and_sends_the_reverse_command_with_its_event() {
    let mut app = spawn_app().await;
    let sale = app.sale("order-1").await;
    assert_eq!(sale.refunded_minor, 0);

    let mut request = refund(&app, "order-1", "", None);
    request.reason = "returned unopened".into();
    let answer = app.refund(request).await.unwrap();

    assert!(!answer.duplicate);
    let recorded = answer.refund.unwrap();
    assert_eq!(
        recorded.refund_id, "full",
        "an empty refund id is the full refund"
    );
    assert_eq!(recorded.conversion_id, sale.id);
    assert_eq!(recorded.order_id, "order-1");
    assert_eq!(recorded.amount, eur(SALE), "absent: all that is left");
    assert_eq!(recorded.kind, "refund");
    assert_eq!(recorded.reason, "returned unopened");
    let conversion = answer.conversion.unwrap();
    assert_eq!(conversion.refunded_minor, SALE);
    assert_eq!(app.refunded_minor(&sale.id).await, SALE);

    // The event about the conversion (its next version), in the click's workflow...
    let events = outbox(&app.db.pool, REFUNDED).await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(
        (event.topic.as_str(), event.message_type.as_str()),
        ("tracking-events", REFUNDED)
    );
    assert_eq!(
        (
            event.aggregate_type.as_str(),
            event.aggregate_id.to_string()
        ),
        ("conversion", sale.id.clone())
    );
    assert_eq!(event.aggregate_version, 2, "recorded, then refunded");
    assert_eq!(event.correlation_id, sale.click_id);
    let refunded = refunded_event(event);
    assert_eq!(refunded.conversion.as_ref(), Some(&conversion));
    assert_eq!(refunded.refund.as_ref(), Some(&recorded));
    // ...and the command it causes, keyed by the purchase, in the same transaction.
    let commands = outbox(&app.db.pool, REVERSE).await;
    assert_eq!(commands.len(), 1);
    let command = &commands[0];
    assert_eq!(
        (command.topic.as_str(), command.message_type.as_str()),
        ("commission-commands", REVERSE)
    );
    assert_eq!(
        (
            command.aggregate_type.as_str(),
            command.aggregate_id.to_string()
        ),
        ("tracking_event", sale.tracking_event_id.clone())
    );
    assert_eq!(command.correlation_id, sale.click_id);
    assert_eq!(command.causation_id, Some(event.message_id.to_string()));
    assert_eq!(command.xmin, event.xmin, "one transaction");
    let (metadata, reverse) = reverse_command(command);
    assert_eq!(metadata.message_id, command.message_id.to_string());
    assert_eq!(metadata.causation_id, event.message_id.to_string());
    assert_eq!(
        reverse,
        ReverseCommissionRequest {
            tracking_event_id: sale.tracking_event_id.clone(),
            refund_id: "full".into(),
            refunded_amount: eur(SALE),
            kind: "refund".into(),
            reason: "returned unopened".into(),
        }
    );

    // A second full refund is the same one: answered, nothing written.
    let outbox_before = outbox_len(&app.db.pool).await;
    let again = app.refund(refund(&app, "order-1", "", None)).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.refund.as_ref(), Some(&recorded));
    assert_eq!(again.conversion.unwrap().refunded_minor, SALE);
    // Under another id there is nothing left to refund.
    let more = app
        .refund(refund(&app, "order-1", "r-2", None))
        .await
        .unwrap_err();
    assert_eq!(more.code(), Code::FailedPrecondition);
    assert_eq!(reason(&more).as_deref(), Some("ALREADY_REFUNDED"));
    assert!(more.message().contains("refunded in full"), "{more:?}");
    let partial = app
        .refund(refund(&app, "order-1", "r-3", Some(1)))
        .await
        .unwrap_err();
    assert_eq!(reason(&partial).as_deref(), Some("ALREADY_REFUNDED"));
    assert_eq!(outbox_len(&app.db.pool).await, outbox_before);
    assert_eq!(refunds_stored(&app.db.pool).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn partial_refunds_add_up_to_the_sale_and_each_reverses_its_own_amount() {
    let mut app = spawn_app().await;
    let sale = app.sale("order-1").await;

    let first = app
        .refund(refund(&app, "order-1", "r-1", Some(3_000)))
        .await
        .unwrap();
    assert_eq!(first.conversion.unwrap().refunded_minor, 3_000);
    let mut chargeback = refund(&app, "order-1", "r-2", Some(SALE - 3_000));
    chargeback.kind = "chargeback".into();
    chargeback.reason = "disputed by the buyer".into();
    let second = app.refund(chargeback).await.unwrap();
    assert_eq!(second.conversion.unwrap().refunded_minor, SALE);
    assert_eq!(second.refund.as_ref().unwrap().kind, "chargeback");
    assert_eq!(app.refunded_minor(&sale.id).await, SALE);

    let events = outbox(&app.db.pool, REFUNDED).await;
    let versions: Vec<i64> = events.iter().map(|e| e.aggregate_version).collect();
    assert_eq!(versions, [2, 3]);
    let commands: Vec<ReverseCommissionRequest> = outbox(&app.db.pool, REVERSE)
        .await
        .iter()
        .map(|row| reverse_command(row).1)
        .collect();
    let reversed: Vec<(&str, i64, &str)> = commands
        .iter()
        .map(|c| {
            (
                c.refund_id.as_str(),
                c.refunded_amount.as_ref().unwrap().amount_minor,
                c.kind.as_str(),
            )
        })
        .collect();
    assert_eq!(
        reversed,
        [("r-1", 3_000, "refund"), ("r-2", 7_000, "chargeback")]
    );
    assert_eq!(commands[1].reason, "disputed by the buyer");
    assert!(
        commands
            .iter()
            .all(|c| c.tracking_event_id == sale.tracking_event_id)
    );

    let done = app
        .refund(refund(&app, "order-1", "r-3", None))
        .await
        .unwrap_err();
    assert_eq!(done.code(), Code::FailedPrecondition);
    assert_eq!(reason(&done).as_deref(), Some("ALREADY_REFUNDED"));
    app.stop().await;
}

#[tokio::test]
async fn a_refund_larger_than_what_is_left_is_invalid_and_writes_nothing() {
    let mut app = spawn_app().await;
    let sale = app.sale("order-1").await;
    app.refund(refund(&app, "order-1", "r-1", Some(4_000)))
        .await
        .unwrap();
    let outbox_before = outbox_len(&app.db.pool).await;

    let too_much = app
        .refund(refund(&app, "order-1", "r-2", Some(6_001)))
        .await
        .unwrap_err();
    assert_eq!(too_much.code(), Code::InvalidArgument);
    assert_eq!(fields(&too_much), ["amount.amount_minor"]);
    // The violation's description (in the status's details) says how much is left.
    let details = String::from_utf8_lossy(too_much.details()).into_owned();
    assert!(details.contains("at most 6000"), "{details}");
    let mut dollars = refund(&app, "order-1", "r-2", Some(100));
    dollars.amount.as_mut().unwrap().currency = "USD".into();
    let wrong_currency = app.refund(dollars).await.unwrap_err();
    assert_eq!(fields(&wrong_currency), ["amount.currency"]);

    assert_eq!(outbox_len(&app.db.pool).await, outbox_before);
    assert_eq!(refunds_stored(&app.db.pool).await, 1);
    assert_eq!(app.refunded_minor(&sale.id).await, 4_000);

    // The rest, by leaving the amount out.
    let rest = app
        .refund(refund(&app, "order-1", "r-2", None))
        .await
        .unwrap();
    assert_eq!(rest.refund.unwrap().amount, eur(6_000));
    assert_eq!(rest.conversion.unwrap().refunded_minor, SALE);
    app.stop().await;
}

#[tokio::test]
async fn unknown_orders_are_not_found_and_invalid_requests_name_every_field() {
    let mut app = spawn_app().await;
    app.sale("order-1").await;

    let unknown = app
        .refund(refund(&app, "order-404", "", None))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let mut others = refund(&app, "order-1", "", None);
    others.advertiser_id = Uuid::now_v7().to_string();
    let not_theirs = app.refund(others).await.unwrap_err();
    assert_eq!(
        not_theirs.code(),
        Code::NotFound,
        "another advertiser's order"
    );

    let invalid = app
        .refund(pb::RefundConversionRequest {
            advertiser_id: "someone".into(),
            order_id: String::new(),
            refund_id: "r\u{0}1".into(),
            amount: Some(Money {
                amount_minor: -5,
                currency: "EUR".into(),
            }),
            kind: "return".into(),
            reason: "x".repeat(501),
        })
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert_eq!(
        fields(&invalid),
        [
            "advertiser_id",
            "order_id",
            "refund_id",
            "amount.amount_minor",
            "kind",
            "reason"
        ]
    );
    assert_eq!(refunds_stored(&app.db.pool).await, 0);
    assert!(outbox(&app.db.pool, REVERSE).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_repeated_refund_id_answers_the_first_and_writes_one_command() {
    let mut app = spawn_app().await;
    let sale = app.sale("order-1").await;
    let first = app
        .refund(refund(&app, "order-1", "r-1", Some(2_500)))
        .await
        .unwrap();
    assert!(!first.duplicate);

    let again = app
        .refund(refund(&app, "order-1", "r-1", Some(2_500)))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.refund, first.refund);
    assert_eq!(again.conversion, first.conversion);
    // Without an amount it is still the same refund.
    let no_amount = app
        .refund(refund(&app, "order-1", "r-1", None))
        .await
        .unwrap();
    assert!(no_amount.duplicate);
    assert_eq!(no_amount.refund, first.refund);
    // Concurrent repeats: the lock on the conversion orders them, each is answered the first.
    let repeats = (0..4).map(|_| {
        let mut client = app.client.clone();
        let request = refund(&app, "order-1", "r-1", Some(2_500));
        async move { client.refund_conversion(request).await }
    });
    for answer in futures::future::join_all(repeats).await {
        assert!(answer.unwrap().into_inner().duplicate);
    }
    // The same id for another amount is refused.
    let reused = app
        .refund(refund(&app, "order-1", "r-1", Some(2_000)))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&reused).as_deref(), Some("REFUND_ID_REUSED"));

    assert_eq!(outbox(&app.db.pool, REVERSE).await.len(), 1);
    assert_eq!(outbox(&app.db.pool, REFUNDED).await.len(), 1);
    assert_eq!(refunds_stored(&app.db.pool).await, 1);
    assert_eq!(app.refunded_minor(&sale.id).await, 2_500);
    app.stop().await;
}

#[tokio::test]
async fn held_and_declined_conversions_have_no_purchase_to_refund() {
    let mut app = spawn_app().await;
    // Converted at once after its click, sooner than the campaign's minimum of a day: held.
    let click = app.click(86_400).await;
    let held = app.record(click, "order-held").await;
    assert_eq!(held.status(), pb::ConversionStatus::Held);

    let refused = app
        .refund(refund(&app, "order-held", "", None))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused).as_deref(), Some("CONVERSION_NOT_ACCEPTED"));
    assert!(refused.message().contains("decline"), "{refused:?}");

    app.client
        .review_conversion(pb::ReviewConversionRequest {
            conversion_id: held.id.clone(),
            advertiser_id: app.advertiser.to_string(),
            approve: false,
            reason: "fraud".into(),
        })
        .await
        .unwrap();
    let declined = app
        .refund(refund(&app, "order-held", "", None))
        .await
        .unwrap_err();
    assert_eq!(
        reason(&declined).as_deref(),
        Some("CONVERSION_NOT_ACCEPTED")
    );
    assert_eq!(refunds_stored(&app.db.pool).await, 0);
    assert!(outbox(&app.db.pool, REFUNDED).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn refund_commands_on_the_topic_are_applied_once() {
    let mut app = spawn_app().await;
    let sale = app.sale("order-1").await;
    let message = Uuid::now_v7().to_string();
    app.send(&message, refund(&app, "order-1", "r-1", Some(1_000)))
        .await;
    // Redelivered, and repeated under another message id: both answered by the first.
    app.send(&message, refund(&app, "order-1", "r-1", Some(1_000)))
        .await;
    let repeat = Uuid::now_v7().to_string();
    app.send(&repeat, refund(&app, "order-1", "r-1", Some(1_000)))
        .await;
    // A command's answer is kept under its message id (the idempotency key).
    let pool = app.db.pool.clone();
    let answers = e2e::eventually(Duration::from_secs(30), "both commands answered", || {
        let pool = pool.clone();
        let ids = vec![message.clone(), repeat.clone()];
        async move {
            let rows: Vec<Vec<u8>> = sqlx::query_scalar(
                "select response from idempotency_keys
                 where idempotency_key = any($1) and response is not null",
            )
            .bind(&ids)
            .fetch_all(&pool)
            .await
            .unwrap();
            (rows.len() == 2).then_some(rows)
        }
    })
    .await;
    // Whichever ran first recorded the refund; the other was answered with it.
    let mut duplicates: Vec<bool> = answers
        .iter()
        .map(|r| {
            pb::RefundConversionResponse::decode(r.as_slice())
                .unwrap()
                .duplicate
        })
        .collect();
    duplicates.sort();
    assert_eq!(duplicates, [false, true]);
    let commands = outbox(&app.db.pool, REVERSE).await;
    assert_eq!(commands.len(), 1);
    let (_, reverse) = reverse_command(&commands[0]);
    assert_eq!(reverse.tracking_event_id, sale.tracking_event_id);
    assert_eq!(reverse.refunded_amount, eur(1_000));
    assert_eq!(refunds_stored(&app.db.pool).await, 1);
    assert_eq!(app.refunded_minor(&sale.id).await, 1_000);
    app.stop().await;
}
