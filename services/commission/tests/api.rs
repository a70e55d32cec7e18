//! The commission service on real PostgreSQL, Pulsar and gRPC over TCP, each test in its own
//! database and Pulsar namespace: commissions from purchases, the campaign-event feed, and the
//! reservations of the payout saga, including the invariant that balances never overdraw.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use prost::Message as _;
use sqlx::PgPool;
use tonic::transport::Channel;
use tonic::{Code, Request};
use uuid::Uuid;

use affiliate_proto::campaign::{self as campaign_pb, campaign_event};
use affiliate_proto::commission::commission_service_client::CommissionServiceClient;
use affiliate_proto::commission::{self as pb, CommissionCommand, commission_command::Command};
use affiliate_proto::common::{MessageMetadata, Money};
use commission_service::Commission;
use e2e::{TestDatabase, eventually, fresh_database, fresh_namespace, publish, pulsar};

const WAIT: Duration = Duration::from_secs(30);

struct TestApp {
    db: TestDatabase,
    namespace: e2e::TestNamespace,
    grpc: CommissionServiceClient<Channel>,
    client: pulsar::Pulsar<pulsar::TokioExecutor>,
    served: e2e::Served,
}

async fn spawn_app() -> TestApp {
    let db = fresh_database("commission").await;
    let namespace = fresh_namespace().await;
    let served =
        e2e::serve_service::<Commission>(&db.url, Some(&*namespace), &e2e::QUICK_RETRIES).await;
    let addr = served.addr;
    let grpc = CommissionServiceClient::connect(format!("http://{addr}"))
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

fn usd(amount_minor: i64) -> Option<Money> {
    Some(Money {
        amount_minor,
        currency: "USD".into(),
    })
}

impl TestApp {
    fn topic(&self, short: &str) -> String {
        self.namespace.topic(short)
    }

    /// Publishes a campaign event as the relay would.
    async fn campaign_event(
        &self,
        campaign_id: Uuid,
        version: i64,
        event: campaign_event::Event,
    ) -> String {
        let message_id = Uuid::now_v7().to_string();
        self.campaign_event_with_id(&message_id, campaign_id, version, event)
            .await;
        message_id
    }

    async fn campaign_event_with_id(
        &self,
        message_id: &str,
        campaign_id: Uuid,
        version: i64,
        event: campaign_event::Event,
    ) {
        let topic = self.topic("campaign-events");
        e2e::publish_campaign_event(
            &self.client,
            &topic,
            message_id,
            campaign_id,
            version,
            event,
        )
        .await;
    }

    /// A campaign the service knows, with a budget of 1 000 000: created event published and
    /// applied.
    async fn known_campaign(&self, rate_bps: u32, currency: &str) -> Uuid {
        self.budgeted_campaign(rate_bps, currency, 1_000_000).await
    }

    /// A campaign whose budget the service does not know (as for terms kept before budgets
    /// were): nothing is enforced, so commissions up to i64::MAX fit.
    async fn known_campaign_without_budget(&self, rate_bps: u32, currency: &str) -> Uuid {
        self.budgeted_campaign(rate_bps, currency, 0).await
    }

    /// A campaign the service knows with `budget_minor` (0: none known).
    async fn budgeted_campaign(&self, rate_bps: u32, currency: &str, budget_minor: i64) -> Uuid {
        let id = Uuid::now_v7();
        let campaign = campaign_pb::Campaign {
            id: id.to_string(),
            commission_rate_bps: rate_bps,
            budget: Some(Money {
                amount_minor: budget_minor,
                currency: currency.into(),
            }),
            status: campaign_pb::CampaignStatus::Active.into(),
            version: 1,
            ..Default::default()
        };
        self.campaign_event(
            id,
            1,
            campaign_event::Event::CampaignCreated(campaign_pb::CampaignCreated {
                campaign: Some(campaign),
            }),
        )
        .await;
        let pool = self.db.pool.clone();
        eventually(WAIT, "the campaign's terms arrive", || {
            let pool = pool.clone();
            async move { terms(&pool, id).await.map(|_| ()) }
        })
        .await;
        id
    }

    async fn purchase(
        &mut self,
        campaign: Uuid,
        creator: Uuid,
        amount: Option<Money>,
    ) -> Result<pb::CalculateCommissionResponse, tonic::Status> {
        let request = pb::CalculateCommissionRequest {
            tracking_event_id: Uuid::now_v7().to_string(),
            campaign_id: campaign.to_string(),
            creator_id: creator.to_string(),
            purchase_amount: amount,
        };
        Ok(self.grpc.calculate_commission(request).await?.into_inner())
    }

    async fn reserve(
        &mut self,
        payout: Uuid,
        creator: Uuid,
        amount_minor: i64,
    ) -> Result<pb::ReserveCommissionResponse, tonic::Status> {
        let request = pb::ReserveCommissionRequest {
            payout_id: payout.to_string(),
            creator_id: creator.to_string(),
            amount: usd(amount_minor),
        };
        Ok(self.grpc.reserve_commission(request).await?.into_inner())
    }

    async fn balance(&mut self, creator: Uuid) -> pb::Balance {
        let request = pb::GetBalanceRequest {
            creator_id: creator.to_string(),
            currency: "USD".into(),
        };
        self.grpc
            .get_balance(request)
            .await
            .unwrap()
            .into_inner()
            .balance
            .unwrap()
    }

    async fn stop(self) {
        self.served.stop().await;
    }
}

async fn terms(pool: &PgPool, campaign: Uuid) -> Option<(i32, String, String, i64)> {
    sqlx::query_as("select commission_rate_bps, currency, status, version from campaign_terms where campaign_id = $1")
        .bind(campaign)
        .fetch_optional(pool)
        .await
        .unwrap()
}

async fn event_types(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("select message_type from outbox order by id")
        .fetch_all(pool)
        .await
        .unwrap()
}

fn triple(b: &pb::Balance) -> (i64, i64, i64) {
    (b.available_minor, b.reserved_minor, b.paid_minor)
}

/// Rows in every table a command writes: (commissions, reservations, allocations, outbox,
/// idempotency_keys, inbox).
async fn written(pool: &PgPool) -> [i64; 6] {
    let mut counts = [0; 6];
    for (i, table) in [
        "commissions",
        "reservations",
        "allocations",
        "outbox",
        "idempotency_keys",
        "inbox",
    ]
    .iter()
    .enumerate()
    {
        counts[i] =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
                .fetch_one(pool)
                .await
                .unwrap();
    }
    counts
}

/// The status is OUT_OF_RANGE with exactly one field violation, on `field`.
fn assert_out_of_range(status: &tonic::Status, field: &str) {
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert_eq!(e2e::violated_fields(status), [field], "{status:?}");
}

/// A request with an idempotency key, so "nothing written" covers the key's record too.
fn keyed<T>(message: T) -> Request<T> {
    e2e::with_key(message, Uuid::now_v7().to_string())
}

#[tokio::test]
async fn a_purchase_earns_amount_times_rate_rounded_and_credits_the_balance() {
    let mut app = spawn_app().await;
    let campaign = app.known_campaign(1250, "USD").await;
    let creator = Uuid::now_v7();
    let earned = app
        .purchase(campaign, creator, usd(1999))
        .await
        .unwrap()
        .commission
        .unwrap();
    assert_eq!(
        earned.amount,
        usd(250),
        "19.99 at 12.5 % = 2.49875, rounded half away from zero"
    );
    assert_eq!(earned.status(), pb::CommissionStatus::Available);
    app.purchase(campaign, creator, usd(10_000)).await.unwrap();
    assert_eq!(triple(&app.balance(creator).await), (250 + 1250, 0, 0));
    assert_eq!(
        event_types(&app.db.pool).await,
        ["commission.calculated.v1", "commission.calculated.v1"]
    );
    let listed = app
        .grpc
        .list_commissions(pb::ListCommissionsRequest {
            creator_id: creator.to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.commissions.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn purchases_on_closed_campaigns_or_in_another_currency_are_rejected_with_events() {
    let mut app = spawn_app().await;
    let euro = app.known_campaign(1000, "EUR").await;
    let creator = Uuid::now_v7();
    let mismatch = app.purchase(euro, creator, usd(5000)).await.unwrap();
    assert_eq!(
        (mismatch.commission, mismatch.rejection.as_str()),
        (None, "CURRENCY_MISMATCH")
    );

    let closed = app.known_campaign(1000, "USD").await;
    let campaign = campaign_pb::Campaign {
        id: closed.to_string(),
        commission_rate_bps: 1000,
        budget: usd(1_000_000),
        status: campaign_pb::CampaignStatus::Closed.into(),
        version: 2,
        ..Default::default()
    };
    let change = campaign_pb::CampaignStatusChanged {
        campaign_id: closed.to_string(),
        previous_status: 1,
        campaign: Some(campaign),
    };
    app.campaign_event(
        closed,
        2,
        campaign_event::Event::CampaignStatusChanged(change),
    )
    .await;
    let pool = app.db.pool.clone();
    eventually(WAIT, "the campaign closes", || {
        let pool = pool.clone();
        async move {
            terms(&pool, closed)
                .await
                .filter(|t| t.2 == "closed")
                .map(|_| ())
        }
    })
    .await;
    let refused = app.purchase(closed, creator, usd(5000)).await.unwrap();
    assert_eq!(refused.rejection, "CAMPAIGN_CLOSED");
    assert_eq!(triple(&app.balance(creator).await), (0, 0, 0));
    assert_eq!(
        event_types(&app.db.pool).await,
        ["commission.rejected.v1", "commission.rejected.v1"]
    );
    app.stop().await;
}

#[tokio::test]
async fn one_commission_per_tracking_event_ever_and_bad_input_is_invalid() {
    let mut app = spawn_app().await;
    let campaign = app.known_campaign(500, "USD").await;
    let request = pb::CalculateCommissionRequest {
        tracking_event_id: Uuid::now_v7().to_string(),
        campaign_id: campaign.to_string(),
        creator_id: Uuid::now_v7().to_string(),
        purchase_amount: usd(1000),
    };
    app.grpc
        .calculate_commission(request.clone())
        .await
        .unwrap();
    let again = app.grpc.calculate_commission(request).await.unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
    let bad = pb::CalculateCommissionRequest {
        purchase_amount: Some(Money {
            amount_minor: -5,
            currency: "usd".into(),
        }),
        ..Default::default()
    };
    let err = app.grpc.calculate_commission(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(event_types(&app.db.pool).await.len(), 1);
    let unknown = app
        .purchase(Uuid::now_v7(), Uuid::now_v7(), usd(100))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::FailedPrecondition);
    app.stop().await;
}

#[tokio::test]
async fn a_calculate_command_before_its_campaign_is_retried_until_the_campaign_arrives() {
    let app = spawn_app().await;
    let campaign = Uuid::now_v7();
    let creator = Uuid::now_v7();
    let command = CommissionCommand {
        metadata: Some(MessageMetadata {
            message_id: Uuid::now_v7().to_string(),
            ..Default::default()
        }),
        command: Some(Command::Calculate(pb::CalculateCommissionRequest {
            tracking_event_id: Uuid::now_v7().to_string(),
            campaign_id: campaign.to_string(),
            creator_id: creator.to_string(),
            purchase_amount: usd(10_000),
        })),
    };
    let id = command.metadata.as_ref().unwrap().message_id.clone();
    publish(
        &app.client,
        &app.topic("commission-commands"),
        &id,
        &id,
        "commission.calculate.command.v1",
        "corr",
        command.encode_to_vec(),
    )
    .await;
    // Let the command fail at least once before the campaign exists.
    let pool = app.db.pool.clone();
    let created = campaign_pb::Campaign {
        id: campaign.to_string(),
        commission_rate_bps: 2000,
        budget: usd(1_000_000),
        status: 1,
        version: 1,
        ..Default::default()
    };
    app.campaign_event(
        campaign,
        1,
        campaign_event::Event::CampaignCreated(campaign_pb::CampaignCreated {
            campaign: Some(created),
        }),
    )
    .await;
    let amount: i64 = eventually(WAIT, "the commission is calculated", || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar("select amount_minor from commissions where creator_id = $1")
                .bind(creator)
                .fetch_optional(&pool)
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(amount, 2000);
    let rejected: i64 = sqlx::query_scalar("select count(*) from inbox where outcome = 'rejected'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(
        rejected, 0,
        "a calculate for an unknown campaign is retried, not rejected"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_campaign_feed_applies_each_event_once_and_never_goes_back_in_version() {
    let app = spawn_app().await;
    let campaign = app.known_campaign(800, "USD").await;
    let closed = campaign_pb::Campaign {
        id: campaign.to_string(),
        commission_rate_bps: 800,
        budget: usd(1_000_000),
        status: 3,
        version: 3,
        ..Default::default()
    };
    let change = campaign_pb::CampaignStatusChanged {
        campaign_id: campaign.to_string(),
        previous_status: 1,
        campaign: Some(closed),
    };
    let message_id = Uuid::now_v7().to_string();
    app.campaign_event_with_id(
        &message_id,
        campaign,
        3,
        campaign_event::Event::CampaignStatusChanged(change.clone()),
    )
    .await;
    app.campaign_event_with_id(
        &message_id,
        campaign,
        3,
        campaign_event::Event::CampaignStatusChanged(change),
    )
    .await;
    // An older event arriving late must not reopen it.
    let older = campaign_pb::Campaign {
        id: campaign.to_string(),
        commission_rate_bps: 900,
        budget: usd(1_000_000),
        status: 2,
        version: 2,
        ..Default::default()
    };
    let paused = campaign_pb::CampaignStatusChanged {
        campaign_id: campaign.to_string(),
        previous_status: 1,
        campaign: Some(older),
    };
    let late = app
        .campaign_event(
            campaign,
            2,
            campaign_event::Event::CampaignStatusChanged(paused),
        )
        .await;
    e2e::processed(&app.db.pool, &late, WAIT).await;
    assert_eq!(
        terms(&app.db.pool, campaign).await,
        Some((800, "USD".into(), "closed".into(), 3))
    );
    let applied: i64 = sqlx::query_scalar("select count(*) from inbox where message_id = $1")
        .bind(&message_id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(applied, 1);
    app.stop().await;
}

#[tokio::test]
async fn reserve_then_settle_pays_the_oldest_commissions() {
    let mut app = spawn_app().await;
    let campaign = app.known_campaign(10_000, "USD").await; // 100 %: commission = purchase
    let creator = Uuid::now_v7();
    let first = app
        .purchase(campaign, creator, usd(300))
        .await
        .unwrap()
        .commission
        .unwrap();
    let second = app
        .purchase(campaign, creator, usd(500))
        .await
        .unwrap()
        .commission
        .unwrap();
    let payout = Uuid::now_v7();
    let reserved = app.reserve(payout, creator, 450).await.unwrap();
    assert_eq!(reserved.rejection, "");
    assert_eq!(triple(reserved.balance.as_ref().unwrap()), (350, 450, 0));
    let settled = app
        .grpc
        .settle_commission(pb::SettleCommissionRequest {
            payout_id: payout.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        settled.reservation.unwrap().status(),
        pb::ReservationStatus::Settled
    );
    assert_eq!(triple(&app.balance(creator).await), (350, 0, 450));
    let status = |id: String| {
        let mut grpc = app.grpc.clone();
        async move {
            grpc.get_commission(pb::GetCommissionRequest { commission_id: id })
                .await
                .unwrap()
                .into_inner()
                .commission
                .unwrap()
        }
    };
    let (a, b) = (status(first.id).await, status(second.id).await);
    assert_eq!(
        (a.status(), a.paid_minor),
        (pb::CommissionStatus::Paid, 300)
    );
    assert_eq!(
        (b.status(), b.paid_minor),
        (pb::CommissionStatus::Available, 150)
    );
    // Settling again answers the same and writes nothing; releasing a settled one is refused.
    app.grpc
        .settle_commission(pb::SettleCommissionRequest {
            payout_id: payout.to_string(),
        })
        .await
        .unwrap();
    let release = app
        .grpc
        .release_commission(pb::ReleaseCommissionRequest {
            payout_id: payout.to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(release.code(), Code::FailedPrecondition);
    assert_eq!(
        event_types(&app.db.pool).await,
        [
            "commission.calculated.v1",
            "commission.calculated.v1",
            "commission.reserved.v1",
            "commission.settled.v1"
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn release_restores_the_balance_and_a_reserve_above_it_reserves_nothing() {
    let mut app = spawn_app().await;
    let campaign = app.known_campaign(10_000, "USD").await;
    let creator = Uuid::now_v7();
    app.purchase(campaign, creator, usd(1000)).await.unwrap();
    let too_much = app.reserve(Uuid::now_v7(), creator, 1001).await.unwrap();
    assert_eq!(
        (too_much.reservation, too_much.rejection.as_str()),
        (None, "INSUFFICIENT_BALANCE")
    );
    assert_eq!(triple(&app.balance(creator).await), (1000, 0, 0));
    let payout = Uuid::now_v7();
    app.reserve(payout, creator, 600).await.unwrap();
    assert_eq!(triple(&app.balance(creator).await), (400, 600, 0));
    let released = app
        .grpc
        .release_commission(pb::ReleaseCommissionRequest {
            payout_id: payout.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        released.reservation.unwrap().status(),
        pb::ReservationStatus::Released
    );
    assert_eq!(triple(&app.balance(creator).await), (1000, 0, 0));
    let open: i64 =
        sqlx::query_scalar("select sum(reserved_minor + paid_minor)::int8 from commissions")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(open, 0);
    let settle = app
        .grpc
        .settle_commission(pb::SettleCommissionRequest {
            payout_id: payout.to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(settle.code(), Code::FailedPrecondition);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_reservations_never_overdraw_a_balance() {
    let mut app = spawn_app().await;
    let campaign = app.known_campaign(10_000, "USD").await;
    let creator = Uuid::now_v7();
    for _ in 0..4 {
        app.purchase(campaign, creator, usd(250)).await.unwrap();
    }
    let attempts = (0..10).map(|_| {
        let mut grpc = app.grpc.clone();
        async move {
            let request = pb::ReserveCommissionRequest {
                payout_id: Uuid::now_v7().to_string(),
                creator_id: creator.to_string(),
                amount: usd(300),
            };
            grpc.reserve_commission(Request::new(request))
                .await
                .unwrap()
                .into_inner()
        }
    });
    let outcomes = futures::future::join_all(attempts).await;
    let granted = outcomes.iter().filter(|o| o.reservation.is_some()).count();
    assert_eq!(
        granted, 3,
        "1000 available covers three reservations of 300"
    );
    assert_eq!(triple(&app.balance(creator).await), (100, 900, 0));
    app.stop().await;
}

#[tokio::test]
async fn a_commission_that_would_take_the_balance_past_i64_max_is_out_of_range_and_writes_nothing()
{
    let mut app = spawn_app().await;
    let campaign = app.known_campaign_without_budget(10_000, "USD").await; // 100 %: commission = purchase
    let creator = Uuid::now_v7();
    app.purchase(campaign, creator, usd(i64::MAX))
        .await
        .unwrap();
    let before = written(&app.db.pool).await;
    let request = pb::CalculateCommissionRequest {
        tracking_event_id: Uuid::now_v7().to_string(),
        campaign_id: campaign.to_string(),
        creator_id: creator.to_string(),
        purchase_amount: usd(i64::MAX),
    };
    let refused = app
        .grpc
        .calculate_commission(keyed(request.clone()))
        .await
        .unwrap_err();
    assert_out_of_range(&refused, "purchase_amount.amount_minor");
    assert_eq!(triple(&app.balance(creator).await), (i64::MAX, 0, 0));
    assert_eq!(written(&app.db.pool).await, before, "nothing written");
    // Refused for good: the same request is refused the same way, and a purchase that fits
    // after it still earns.
    let again = app.grpc.calculate_commission(request).await.unwrap_err();
    assert_out_of_range(&again, "purchase_amount.amount_minor");
    let other = Uuid::now_v7();
    app.purchase(campaign, other, usd(i64::MAX)).await.unwrap();
    assert_eq!(triple(&app.balance(other).await), (i64::MAX, 0, 0));
    app.stop().await;
}

#[tokio::test]
async fn a_reservation_that_would_take_the_reserved_balance_past_i64_max_is_out_of_range_and_writes_nothing()
 {
    let mut app = spawn_app().await;
    let campaign = app.known_campaign_without_budget(10_000, "USD").await;
    let creator = Uuid::now_v7();
    app.purchase(campaign, creator, usd(10)).await.unwrap();
    app.reserve(Uuid::now_v7(), creator, 10).await.unwrap();
    app.purchase(campaign, creator, usd(i64::MAX))
        .await
        .unwrap();
    assert_eq!(triple(&app.balance(creator).await), (i64::MAX, 10, 0));
    let before = written(&app.db.pool).await;
    let request = pb::ReserveCommissionRequest {
        payout_id: Uuid::now_v7().to_string(),
        creator_id: creator.to_string(),
        amount: usd(i64::MAX),
    };
    let refused = app
        .grpc
        .reserve_commission(keyed(request))
        .await
        .unwrap_err();
    assert_out_of_range(&refused, "amount.amount_minor");
    assert_eq!(triple(&app.balance(creator).await), (i64::MAX, 10, 0));
    assert_eq!(written(&app.db.pool).await, before, "nothing written");
    app.stop().await;
}

/// A creator whose balance holds i64::MAX on `side` (available or paid) while a reservation of
/// 10 is open: ending it would add 10 to that side. Returns the payout of the reservation.
async fn a_reservation_of_10_beside_i64_max(app: &mut TestApp, creator: Uuid, paid: bool) -> Uuid {
    let campaign = app.known_campaign_without_budget(10_000, "USD").await;
    if paid {
        app.purchase(campaign, creator, usd(i64::MAX))
            .await
            .unwrap();
        let all = Uuid::now_v7();
        app.reserve(all, creator, i64::MAX).await.unwrap();
        app.grpc
            .settle_commission(pb::SettleCommissionRequest {
                payout_id: all.to_string(),
            })
            .await
            .unwrap();
    }
    app.purchase(campaign, creator, usd(10)).await.unwrap();
    let payout = Uuid::now_v7();
    app.reserve(payout, creator, 10).await.unwrap();
    if !paid {
        app.purchase(campaign, creator, usd(i64::MAX))
            .await
            .unwrap();
    }
    payout
}

#[tokio::test]
async fn a_release_that_would_take_the_available_balance_past_i64_max_is_out_of_range_and_keeps_the_reservation()
 {
    let mut app = spawn_app().await;
    let creator = Uuid::now_v7();
    let payout = a_reservation_of_10_beside_i64_max(&mut app, creator, false).await;
    assert_eq!(triple(&app.balance(creator).await), (i64::MAX, 10, 0));
    let before = written(&app.db.pool).await;
    let refused = app
        .grpc
        .release_commission(keyed(pb::ReleaseCommissionRequest {
            payout_id: payout.to_string(),
        }))
        .await
        .unwrap_err();
    assert_out_of_range(&refused, "payout_id");
    assert_eq!(triple(&app.balance(creator).await), (i64::MAX, 10, 0));
    assert_eq!(written(&app.db.pool).await, before, "nothing written");
    let status: String = sqlx::query_scalar("select status from reservations where payout_id = $1")
        .bind(payout)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(status, "reserved");
    app.stop().await;
}

#[tokio::test]
async fn a_settle_that_would_take_the_paid_balance_past_i64_max_is_out_of_range_and_keeps_the_reservation()
 {
    let mut app = spawn_app().await;
    let creator = Uuid::now_v7();
    let payout = a_reservation_of_10_beside_i64_max(&mut app, creator, true).await;
    assert_eq!(triple(&app.balance(creator).await), (0, 10, i64::MAX));
    let before = written(&app.db.pool).await;
    let refused = app
        .grpc
        .settle_commission(keyed(pb::SettleCommissionRequest {
            payout_id: payout.to_string(),
        }))
        .await
        .unwrap_err();
    assert_out_of_range(&refused, "payout_id");
    assert_eq!(triple(&app.balance(creator).await), (0, 10, i64::MAX));
    assert_eq!(written(&app.db.pool).await, before, "nothing written");
    app.stop().await;
}

#[tokio::test]
async fn commands_that_would_overflow_a_balance_are_rejected_once_with_an_event_never_retried() {
    let mut app = spawn_app().await;
    let campaign = app.known_campaign_without_budget(10_000, "USD").await;
    let creator = Uuid::now_v7();
    app.purchase(campaign, creator, usd(10)).await.unwrap();
    app.reserve(Uuid::now_v7(), creator, 10).await.unwrap();
    let before = written(&app.db.pool).await;
    let topic = app.topic("commission-commands");
    // Two commissions of i64::MAX for one creator, then a reservation of i64::MAX beside the 10
    // reserved: the second commission and the reservation cannot fit. One key (the creator), so
    // they apply in order.
    let calculate = |amount| {
        Command::Calculate(pb::CalculateCommissionRequest {
            tracking_event_id: Uuid::now_v7().to_string(),
            campaign_id: campaign.to_string(),
            creator_id: creator.to_string(),
            purchase_amount: usd(amount),
        })
    };
    let reserve = Command::Reserve(pb::ReserveCommissionRequest {
        payout_id: Uuid::now_v7().to_string(),
        creator_id: creator.to_string(),
        amount: usd(i64::MAX),
    });
    let mut ids = Vec::new();
    for command in [calculate(i64::MAX), calculate(i64::MAX), reserve] {
        let id = Uuid::now_v7().to_string();
        let message_type = command.message_type();
        let envelope = CommissionCommand {
            metadata: Some(MessageMetadata {
                message_id: id.clone(),
                ..Default::default()
            }),
            command: Some(command),
        };
        publish(
            &app.client,
            &topic,
            &creator.to_string(),
            &id,
            message_type,
            "corr",
            envelope.encode_to_vec(),
        )
        .await;
        ids.push(id);
    }
    e2e::processed(&app.db.pool, &ids[2], WAIT).await;
    let outcomes: Vec<(String, String, String)> = sqlx::query_as(
        "select message_id, outcome, reason from inbox where consumer = 'commission/commission-commands' order by message_id",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        outcomes
            .iter()
            .map(|(id, outcome, reason)| (
                id.as_str(),
                outcome.as_str(),
                reason.starts_with("OUT_OF_RANGE")
            ))
            .collect::<Vec<_>>(),
        [
            (ids[1].as_str(), "rejected", true),
            (ids[2].as_str(), "rejected", true)
        ],
        "rejected once each, not retried: {outcomes:?}"
    );
    assert_eq!(triple(&app.balance(creator).await), (i64::MAX, 10, 0));
    let rows: Vec<(String, Vec<u8>)> =
        sqlx::query_as("select message_type, payload from outbox order by id offset $1")
            .bind(before[3])
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    let rejections: Vec<(String, String, String, Vec<String>)> = rows
        .iter()
        .filter(|(t, _)| t == "commission.command_rejected.v1")
        .map(|(_, payload)| {
            match pb::CommissionEvent::decode(payload.as_slice())
                .unwrap()
                .event
            {
                Some(pb::commission_event::Event::CommandRejected(r)) => (
                    r.command_message_id,
                    r.command_type,
                    r.code,
                    r.field_violations.into_iter().map(|v| v.field).collect(),
                ),
                other => panic!("unexpected {other:?}"),
            }
        })
        .collect();
    assert_eq!(
        rejections,
        [
            (
                ids[1].clone(),
                "commission.calculate.command.v1".to_owned(),
                "OUT_OF_RANGE".to_owned(),
                vec!["purchase_amount.amount_minor".to_owned()]
            ),
            (
                ids[2].clone(),
                "commission.reserve.command.v1".to_owned(),
                "OUT_OF_RANGE".to_owned(),
                vec!["amount.amount_minor".to_owned()]
            ),
        ]
    );
    assert_eq!(
        rows.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        [
            "commission.calculated.v1",
            "commission.command_rejected.v1",
            "commission.command_rejected.v1"
        ],
        "the first commission only"
    );
    let after = written(&app.db.pool).await;
    assert_eq!(
        (
            after[0] - before[0],
            after[1] - before[1],
            after[2] - before[2]
        ),
        (1, 0, 0),
        "one commission, no reservation"
    );
    app.stop().await;
}

/// What the outbox holds, as (type, topic), in id order.
async fn outbox_types(pool: &PgPool) -> Vec<(String, String)> {
    sqlx::query_as("select message_type, topic from outbox order by id")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_budget_is_spent_to_the_cent_then_refused_announced_once_and_raised() {
    let mut app = spawn_app().await;
    // 10 %: a purchase of 1 000 earns 100; the budget holds two and a half.
    let campaign = app.budgeted_campaign(1000, "USD", 250).await;
    let creator = Uuid::now_v7();
    let mut earned = Vec::new();
    for _ in 0..5 {
        let answer = app.purchase(campaign, creator, usd(1_000)).await.unwrap();
        earned.push(match answer.commission {
            Some(c) => c.amount.unwrap().amount_minor.to_string(),
            None => answer.rejection,
        });
    }
    assert_eq!(
        earned,
        ["100", "100", "50", "BUDGET_EXHAUSTED", "BUDGET_EXHAUSTED"]
    );
    assert_eq!(triple(&app.balance(creator).await), (250, 0, 0));
    let outbox = outbox_types(&app.db.pool).await;
    let exhausted: Vec<_> = outbox
        .iter()
        .filter(|(t, _)| t == "campaign.budget_exhausted.v1" || t == "campaign.pause.command.v1")
        .collect();
    assert_eq!(
        exhausted,
        [
            &(
                "campaign.budget_exhausted.v1".to_owned(),
                "commission-events".to_owned()
            ),
            &(
                "campaign.pause.command.v1".to_owned(),
                "campaign-commands".to_owned()
            )
        ],
        "announced once, with the third commission"
    );
    let pause: Vec<u8> = sqlx::query_scalar(
        "select payload from outbox where message_type = 'campaign.pause.command.v1'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let pause = campaign_pb::CampaignCommand::decode(pause.as_slice()).unwrap();
    match pause.command {
        Some(campaign_pb::campaign_command::Command::PauseCampaign(p)) => {
            assert_eq!(p.campaign_id, campaign.to_string());
            assert_eq!(p.reason(), campaign_pb::PauseReason::BudgetExhausted);
            assert_eq!(p.exhausted_budget, usd(250));
        }
        other => panic!("not a pause: {other:?}"),
    }

    // The campaign service raises the budget to 400: 150 more to spend, announced again when
    // spent.
    let raised = campaign_pb::Campaign {
        id: campaign.to_string(),
        commission_rate_bps: 1000,
        budget: usd(400),
        status: campaign_pb::CampaignStatus::Active.into(),
        version: 2,
        ..Default::default()
    };
    app.campaign_event(
        campaign,
        2,
        campaign_event::Event::BudgetUpdated(campaign_pb::BudgetUpdated {
            campaign: Some(raised),
            previous_budget: usd(250),
            resumed: true,
        }),
    )
    .await;
    let pool = app.db.pool.clone();
    eventually(WAIT, "the new budget arrives", || {
        let pool = pool.clone();
        async move { (terms(&pool, campaign).await?.3 == 2).then_some(()) }
    })
    .await;
    let more = app.purchase(campaign, creator, usd(2_000)).await.unwrap();
    assert_eq!(
        more.commission.unwrap().amount,
        usd(150),
        "capped to what is left"
    );
    let announced = outbox_types(&app.db.pool)
        .await
        .iter()
        .filter(|(t, _)| t == "campaign.budget_exhausted.v1")
        .count();
    assert_eq!(announced, 2, "once per budget");
    let committed: i64 =
        sqlx::query_scalar("select committed_minor from campaign_terms where campaign_id = $1")
            .bind(campaign)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(committed, 400);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_purchases_never_commit_more_than_the_budget() {
    let app = spawn_app().await;
    let campaign = app.budgeted_campaign(1000, "USD", 1_000).await;
    let calls = (0..30).map(|_| {
        let mut grpc = app.grpc.clone();
        async move {
            let request = pb::CalculateCommissionRequest {
                tracking_event_id: Uuid::now_v7().to_string(),
                campaign_id: campaign.to_string(),
                creator_id: Uuid::now_v7().to_string(),
                purchase_amount: usd(1_000),
            };
            grpc.calculate_commission(request)
                .await
                .unwrap()
                .into_inner()
        }
    });
    let answers = futures::future::join_all(calls).await;
    let earned: i64 = answers
        .iter()
        .filter_map(|a| a.commission.as_ref())
        .map(|c| c.amount.as_ref().unwrap().amount_minor)
        .sum();
    let refused = answers
        .iter()
        .filter(|a| a.rejection == "BUDGET_EXHAUSTED")
        .count();
    assert_eq!((earned, refused), (1_000, 20));
    app.stop().await;
}

/// A campaign of `advertiser` the service knows, whose commissions are held for a day (pending).
async fn held_campaign(app: &TestApp, advertiser: Uuid) -> Uuid {
    let id = Uuid::now_v7();
    let mut campaign = campaign_pb::Campaign {
        id: id.to_string(),
        advertiser_id: advertiser.to_string(),
        commission_rate_bps: 1000,
        budget: usd(1_000_000),
        status: campaign_pb::CampaignStatus::Active.into(),
        version: 1,
        ..Default::default()
    };
    campaign.hold_period.get_or_insert_default().seconds = 86_400;
    app.campaign_event(
        id,
        1,
        campaign_event::Event::CampaignCreated(campaign_pb::CampaignCreated {
            campaign: Some(campaign),
        }),
    )
    .await;
    let pool = app.db.pool.clone();
    eventually(WAIT, "the campaign's terms arrive", || {
        let pool = pool.clone();
        async move { terms(&pool, id).await.map(|_| ()) }
    })
    .await;
    id
}

#[tokio::test]
async fn a_campaign_s_commissions_are_listed_by_status_and_an_unknown_status_is_invalid() {
    let mut app = spawn_app().await;
    let advertiser = Uuid::now_v7();
    let campaign = held_campaign(&app, advertiser).await;
    let other = held_campaign(&app, advertiser).await;
    let mut earned = Vec::new();
    for _ in 0..5 {
        let response = app.purchase(campaign, Uuid::now_v7(), usd(1000)).await;
        earned.push(response.unwrap().commission.unwrap());
    }
    app.purchase(other, Uuid::now_v7(), usd(1000))
        .await
        .unwrap();
    let [approved, declined, reversed, older, newer] = &earned[..] else {
        unreachable!("five purchases")
    };
    app.grpc
        .approve_commissions(pb::ApproveCommissionsRequest {
            advertiser_id: advertiser.to_string(),
            commission_ids: vec![approved.id.clone()],
        })
        .await
        .unwrap();
    app.grpc
        .decline_commissions(pb::DeclineCommissionsRequest {
            advertiser_id: advertiser.to_string(),
            commission_ids: vec![declined.id.clone()],
            reason: "self-referral".into(),
        })
        .await
        .unwrap();
    app.grpc
        .reverse_commission(keyed(pb::ReverseCommissionRequest {
            tracking_event_id: reversed.tracking_event_id.clone(),
            refund_id: "full".into(),
            refunded_amount: usd(1000),
            kind: "refund".into(),
            reason: String::new(),
        }))
        .await
        .unwrap();

    let mut grpc = app.grpc.clone();
    let mut list = async |status: &str, page_size: i32, page_token: &str| {
        let page = grpc
            .list_commissions(pb::ListCommissionsRequest {
                campaign_id: campaign.to_string(),
                status: status.into(),
                page_size,
                page_token: page_token.into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let ids: Vec<String> = page.commissions.into_iter().map(|c| c.id).collect();
        Ok::<_, tonic::Status>((ids, page.next_page_token))
    };
    let first = list("pending", 1, "").await.unwrap();
    assert_eq!(first.0, [newer.id.as_str()], "newest first, one per page");
    let second = list("pending", 1, &first.1).await.unwrap();
    assert_eq!(
        (second.0, second.1.as_str()),
        (vec![older.id.clone()], ""),
        "the last pending one, the last page"
    );
    for (status, commission) in [
        ("approved", approved),
        ("declined", declined),
        ("reversed", reversed),
    ] {
        let (ids, next) = list(status, 0, "").await.unwrap();
        assert_eq!(
            (ids, next.as_str()),
            (vec![commission.id.clone()], ""),
            "{status}"
        );
    }
    assert_eq!(list("", 0, "").await.unwrap().0.len(), 5, "no filter: all");

    let err = list("available", 0, "").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(e2e::violated_fields(&err), ["status"], "{err:?}");
    app.stop().await;
}
