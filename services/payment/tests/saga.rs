//! The payment service and its payout saga on real PostgreSQL, Pulsar and gRPC over TCP, each
//! test in its own database and Pulsar namespace. Commission events are published here as the
//! relay would publish them; what the saga sends back is read from its outbox.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use prost::Message as _;
use sqlx::PgPool;
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

use affiliate_proto::commission::{
    self as cpb, CommissionCommand, CommissionEvent, commission_command, commission_event,
};
use affiliate_proto::common::{MessageMetadata, Money};
use affiliate_proto::payment::payment_service_client::PaymentServiceClient;
use affiliate_proto::payment::{self as pb};
use e2e::{
    TestDatabase, TestNamespace, eventually, fresh_database, fresh_namespace, publish, pulsar,
};
use payment_service::Payment;

const WAIT: Duration = Duration::from_secs(30);
const IBAN: &str = "DE89370400440532013000";

struct TestApp {
    db: TestDatabase,
    namespace: TestNamespace,
    grpc: PaymentServiceClient<Channel>,
    client: pulsar::Pulsar<pulsar::TokioExecutor>,
    served: e2e::Served,
}

async fn start(db: TestDatabase, namespace: TestNamespace) -> TestApp {
    start_with(db, namespace, &[]).await
}

/// Starts the service with `extra` flags.
async fn start_with(db: TestDatabase, namespace: TestNamespace, extra: &[&str]) -> TestApp {
    let flags: Vec<&str> = ["--sandbox-slow-delay", "100ms"]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    let served = e2e::serve_service::<Payment>(&db.url, Some(&*namespace), &flags).await;
    let addr = served.addr;
    let grpc = PaymentServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    TestApp {
        db,
        namespace,
        grpc,
        client: pulsar().await,
        served,
    }
}

async fn spawn_app() -> TestApp {
    start(fresh_database("payment").await, fresh_namespace().await).await
}

fn request(account: &str, amount_minor: i64) -> pb::RequestPayoutRequest {
    pb::RequestPayoutRequest {
        creator_id: Uuid::now_v7().to_string(),
        amount: Some(Money {
            amount_minor,
            currency: "EUR".into(),
        }),
        method: pb::PayoutMethod::BankTransfer.into(),
        account_details: account.into(),
    }
}

impl TestApp {
    async fn request(&mut self, account: &str, amount_minor: i64) -> pb::Payout {
        self.grpc
            .request_payout(request(account, amount_minor))
            .await
            .unwrap()
            .into_inner()
            .payout
            .unwrap()
    }

    /// Publishes a commission event about `payout` as the relay would; returns its message id.
    async fn commission_event(
        &self,
        payout: &pb::Payout,
        event: commission_event::Event,
    ) -> String {
        let message_id = Uuid::now_v7().to_string();
        self.commission_event_with_id(&message_id, payout, event)
            .await;
        message_id
    }

    async fn commission_event_with_id(
        &self,
        message_id: &str,
        payout: &pb::Payout,
        event: commission_event::Event,
    ) {
        let envelope = CommissionEvent {
            metadata: Some(MessageMetadata {
                message_id: message_id.to_owned(),
                correlation_id: "corr-saga".into(),
                // Commission events about a payout are keyed by it (a rejected command's too).
                aggregate_id: payout.id.clone(),
                ..Default::default()
            }),
            event: Some(event),
        };
        let topic = self.namespace.topic("commission-events");
        publish(
            &self.client,
            &topic,
            &payout.id,
            message_id,
            "commission.v1",
            "corr-saga",
            envelope.encode_to_vec(),
        )
        .await;
    }

    async fn status_becomes(
        &mut self,
        payout: &pb::Payout,
        status: pb::PayoutStatus,
    ) -> pb::Payout {
        let grpc = self.grpc.clone();
        let id = payout.id.clone();
        eventually(WAIT, &format!("payout reaches {status:?}"), || {
            let mut grpc = grpc.clone();
            let id = id.clone();
            async move {
                let p = grpc
                    .get_payout(pb::GetPayoutRequest { payout_id: id })
                    .await
                    .unwrap()
                    .into_inner()
                    .payout
                    .unwrap();
                (p.status() == status).then_some(p)
            }
        })
        .await
    }

    async fn stop(self) -> (TestDatabase, TestNamespace) {
        self.served.stop().await;
        (self.db, self.namespace)
    }
}

fn reservation(payout: &pb::Payout) -> Option<cpb::Reservation> {
    Some(cpb::Reservation {
        payout_id: payout.id.clone(),
        creator_id: payout.creator_id.clone(),
        amount: payout.amount.clone(),
        status: 1,
    })
}

/// The outbox: (topic, type, payload) in id order.
async fn outbox(pool: &PgPool) -> Vec<(String, String, Vec<u8>)> {
    sqlx::query_as("select topic, message_type, payload from outbox order by id")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn payouts(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from payouts")
        .fetch_one(pool)
        .await
        .unwrap()
}

fn commands(rows: &[(String, String, Vec<u8>)]) -> Vec<commission_command::Command> {
    rows.iter()
        .filter(|(topic, _, _)| topic == "commission-commands")
        .map(|(_, _, p)| {
            CommissionCommand::decode(p.as_slice())
                .unwrap()
                .command
                .unwrap()
        })
        .collect()
}

fn types(rows: &[(String, String, Vec<u8>)]) -> Vec<&str> {
    rows.iter().map(|(_, t, _)| t.as_str()).collect()
}

/// The aggregate versions of the payout's events, in outbox order.
fn event_versions(rows: &[(String, String, Vec<u8>)]) -> Vec<i64> {
    rows.iter()
        .filter(|(topic, _, _)| topic == "payment-events")
        .map(|(_, _, p)| {
            pb::PaymentEvent::decode(p.as_slice())
                .unwrap()
                .metadata
                .unwrap()
                .aggregate_version
        })
        .collect()
}

#[tokio::test]
async fn a_payout_request_publishes_its_event_and_the_reserve_command_and_keeps_the_account_secret()
{
    let mut app = spawn_app().await;
    let payout = app.request(IBAN, 5000).await;
    assert_eq!(
        (payout.status(), payout.account_masked.as_str()),
        (pb::PayoutStatus::Requested, "****3000")
    );
    let rows = outbox(&app.db.pool).await;
    assert_eq!(
        types(&rows),
        ["payout.requested.v1", "commission.reserve.command.v1"]
    );
    match &commands(&rows)[..] {
        [commission_command::Command::Reserve(r)] => {
            assert_eq!(
                (
                    r.payout_id.as_str(),
                    r.amount.as_ref().map(|m| m.amount_minor)
                ),
                (payout.id.as_str(), Some(5000))
            );
        }
        other => panic!("unexpected commands {other:?}"),
    }
    for (_, _, payload) in &rows {
        assert!(
            !String::from_utf8_lossy(payload).contains("370400440532"),
            "account details published"
        );
    }
    let bad = app
        .grpc
        .request_payout(request("not-an-iban", 0))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let fields = e2e::violated_fields(&bad);
    assert_eq!(fields, ["amount.amount_minor", "account_details"]);
    app.stop().await;
}

#[tokio::test]
async fn reserved_then_paid_then_settled_completes_the_payout() {
    let mut app = spawn_app().await;
    let payout = app.request(IBAN, 5000).await;
    let reserved = commission_event::Event::CommissionReserved(cpb::CommissionReserved {
        reservation: reservation(&payout),
        balance: None,
    });
    let message_id = app.commission_event(&payout, reserved.clone()).await;
    app.commission_event_with_id(&message_id, &payout, reserved)
        .await; // redelivered: applied once
    let settling = app
        .status_becomes(&payout, pb::PayoutStatus::Settling)
        .await;
    assert!(settling.provider_reference.starts_with("sbx_"));
    let settled = commission_event::Event::CommissionSettled(cpb::CommissionSettled {
        reservation: reservation(&payout),
        balance: None,
    });
    app.commission_event(&payout, settled).await;
    let done = app
        .status_becomes(&payout, pb::PayoutStatus::Completed)
        .await;
    assert_eq!(done.version, 4);
    let rows = outbox(&app.db.pool).await;
    assert_eq!(
        types(&rows),
        [
            "payout.requested.v1",
            "commission.reserve.command.v1",
            "payout.processing.v1",
            "payment.processed.v1",
            "commission.settle.command.v1",
            "payout.completed.v1"
        ]
    );
    assert_eq!(
        event_versions(&rows),
        [1, 2, 3, 4],
        "one event per change, no gap"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_provider_failure_releases_the_reservation_and_fails_the_payout() {
    let mut app = spawn_app().await;
    let payout = app.request("DE00INVALID0000000000", 5000).await;
    app.commission_event(
        &payout,
        commission_event::Event::CommissionReserved(cpb::CommissionReserved {
            reservation: reservation(&payout),
            balance: None,
        }),
    )
    .await;
    let releasing = app
        .status_becomes(&payout, pb::PayoutStatus::Releasing)
        .await;
    assert_eq!(
        releasing.failure_reason,
        "the provider rejected the account"
    );
    let rows = outbox(&app.db.pool).await;
    assert!(
        matches!(commands(&rows).last(), Some(commission_command::Command::Release(r)) if r.payout_id == payout.id)
    );
    app.commission_event(
        &payout,
        commission_event::Event::CommissionReleased(cpb::CommissionReleased {
            reservation: reservation(&payout),
            balance: None,
        }),
    )
    .await;
    app.status_becomes(&payout, pb::PayoutStatus::Failed).await;
    let rows = outbox(&app.db.pool).await;
    assert_eq!(
        types(&rows),
        [
            "payout.requested.v1",
            "commission.reserve.command.v1",
            "payout.processing.v1",
            "payment.failed.v1",
            "commission.release.command.v1",
            "payout.failed.v1"
        ]
    );
    assert_eq!(
        event_versions(&rows),
        [1, 2, 3, 4],
        "one event per change, no gap"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_refused_reservation_rejects_the_payout_with_nothing_to_compensate() {
    let mut app = spawn_app().await;
    let payout = app.request(IBAN, 5000).await;
    let refused = cpb::CommissionRejected {
        payout_id: payout.id.clone(),
        creator_id: payout.creator_id.clone(),
        reason: "INSUFFICIENT_BALANCE".into(),
        message: "too little".into(),
        ..Default::default()
    };
    app.commission_event(
        &payout,
        commission_event::Event::CommissionRejected(refused),
    )
    .await;
    let rejected = app
        .status_becomes(&payout, pb::PayoutStatus::Rejected)
        .await;
    assert!(rejected.failure_reason.starts_with("INSUFFICIENT_BALANCE"));
    assert_eq!(
        types(&outbox(&app.db.pool).await),
        [
            "payout.requested.v1",
            "commission.reserve.command.v1",
            "payout.rejected.v1"
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_reserve_command_the_commission_service_rejects_rejects_the_payout() {
    let mut app = spawn_app().await;
    let payout = app.request(IBAN, 5000).await;
    let rejected = affiliate_proto::common::CommandRejected {
        command_message_id: Uuid::now_v7().to_string(),
        command_type: "commission.reserve.command.v1".into(),
        code: "OUT_OF_RANGE".into(),
        reason: "out of range: amount.amount_minor: the creator's reserved balance would pass \
                 92233720368547758.07 EUR, the largest amount there can be"
            .into(),
        field_violations: vec![affiliate_proto::common::FieldViolation {
            field: "amount.amount_minor".into(),
            description: "would pass the largest amount".into(),
        }],
    };
    app.commission_event(&payout, commission_event::Event::CommandRejected(rejected))
        .await;
    let refused = app
        .status_becomes(&payout, pb::PayoutStatus::Rejected)
        .await;
    assert!(
        refused.failure_reason.starts_with("OUT_OF_RANGE"),
        "{}",
        refused.failure_reason
    );
    assert_eq!(
        types(&outbox(&app.db.pool).await),
        [
            "payout.requested.v1",
            "commission.reserve.command.v1",
            "payout.rejected.v1"
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_restart_finishes_a_payment_left_mid_way() {
    let mut app = spawn_app().await;
    let payout = app.request(IBAN, 5000).await;
    // As if the service died after recording the reservation but before the provider answered.
    sqlx::query("update payouts set status = 'processing', version = 2 where id = $1::uuid")
        .bind(&payout.id)
        .execute(&app.db.pool)
        .await
        .unwrap();
    let (db, namespace) = app.stop().await;
    let mut app = start(db, namespace).await;
    let settling = app
        .status_becomes(&payout, pb::PayoutStatus::Settling)
        .await;
    assert!(settling.provider_reference.starts_with("sbx_"));
    assert!(matches!(
        commands(&outbox(&app.db.pool).await).last(),
        Some(commission_command::Command::Settle(_))
    ));
    app.stop().await;
}

#[tokio::test]
async fn a_payout_below_its_currency_s_minimum_is_refused_on_both_doors_with_nothing_written() {
    let minimums = ["--payout-minimums", "EUR=10.00,JPY=1000"];
    let mut app = start_with(
        fresh_database("payment").await,
        fresh_namespace().await,
        &minimums,
    )
    .await;

    // The gRPC door: FAILED_PRECONDITION with the reason and the minimum; nothing written.
    let refused = app
        .grpc
        .request_payout(request(IBAN, 999))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        service_runtime::errors::error_reason(&refused).as_deref(),
        Some("BELOW_MINIMUM_PAYOUT")
    );
    assert!(
        refused.message().contains("9.99 EUR") && refused.message().contains("10.00 EUR"),
        "{}",
        refused.message()
    );
    assert_eq!(payouts(&app.db.pool).await, 0);
    assert!(outbox(&app.db.pool).await.is_empty());

    // The command door: the usual rejection event, and still no payout.
    let message_id = Uuid::now_v7().to_string();
    let command = pb::payment_command::Command::RequestPayout(request(IBAN, 500));
    let envelope = pb::PaymentCommand {
        metadata: Some(MessageMetadata {
            message_id: message_id.clone(),
            message_type: command.message_type().to_owned(),
            correlation_id: "corr-minimum".into(),
            ..Default::default()
        }),
        command: Some(command),
    };
    publish(
        &app.client,
        &app.namespace.topic("payment-commands"),
        &message_id,
        &message_id,
        "payment.request_payout.command.v1",
        "corr-minimum",
        envelope.encode_to_vec(),
    )
    .await;
    let pool = app.db.pool.clone();
    let rows = eventually(WAIT, "the command is rejected", || {
        let pool = pool.clone();
        async move {
            let rows = outbox(&pool).await;
            (!rows.is_empty()).then_some(rows)
        }
    })
    .await;
    assert_eq!(types(&rows), ["payment.command_rejected.v1"]);
    match pb::PaymentEvent::decode(rows[0].2.as_slice())
        .unwrap()
        .event
    {
        Some(pb::payment_event::Event::CommandRejected(r)) => {
            assert_eq!(
                (r.command_message_id.as_str(), r.code.as_str()),
                (message_id.as_str(), "FAILED_PRECONDITION")
            );
            assert!(
                r.reason.contains("minimum payout of 10.00 EUR"),
                "{}",
                r.reason
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(payouts(&app.db.pool).await, 0);

    // At the minimum, and in a currency without one, payouts are requested as usual.
    let at_minimum = app.request(IBAN, 1000).await;
    assert_eq!(at_minimum.status(), pb::PayoutStatus::Requested);
    let mut dollars = request(IBAN, 1);
    dollars.amount = Some(Money {
        amount_minor: 1,
        currency: "USD".into(),
    });
    app.grpc.request_payout(dollars).await.unwrap();
    assert_eq!(payouts(&app.db.pool).await, 2);
    app.stop().await;
}
