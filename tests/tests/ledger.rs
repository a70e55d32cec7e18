//! The commission ledger on real PostgreSQL, Pulsar and gRPC over TCP (`cargo test -p e2e --test
//! ledger`): a commission pending for its campaign's hold and approved once when it ends (by the
//! service's own loop, across a restart), approved early or declined by its advertiser (all or
//! nothing), reversed by refunds or clawed back after payout, a refund kept until its commission
//! arrives, a monthly statement that reconciles to the ledger, and races between refunds, hold
//! ends, approvals and payouts through both doors. After each test the books balance
//! (`CheckLedger`, what `platform verify ledger` runs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use prost::Message as _;
use sqlx::PgPool;
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

use affiliate_proto::campaign::{self as campaign_pb, campaign_event};
use affiliate_proto::commission::commission_service_client::CommissionServiceClient;
use affiliate_proto::commission::{
    self as pb, CommissionCommand, CommissionStatus, commission_command::Command,
};
use affiliate_proto::common::{MessageMetadata, Money};
use commission_service::Commission;
use e2e::{TestDatabase, eventually, fresh_database, fresh_namespace, publish, pulsar};

const WAIT: Duration = Duration::from_secs(30);

struct TestApp {
    db: TestDatabase,
    namespace: e2e::TestNamespace,
    grpc: CommissionServiceClient<Channel>,
    client: pulsar::Pulsar<pulsar::TokioExecutor>,
    served: Option<e2e::Served>,
}

/// The service's flags in these tests: holds polled every 50 ms.
const FLAGS: [&str; 8] = [
    "--retry-min-backoff",
    "20ms",
    "--retry-max-backoff",
    "200ms",
    "--max-redeliveries",
    "1000",
    "--hold-poll-interval",
    "50ms",
];

async fn serve(
    db: &TestDatabase,
    namespace: &str,
) -> (e2e::Served, CommissionServiceClient<Channel>) {
    let served = e2e::serve_service::<Commission>(&db.url, Some(namespace), &FLAGS).await;
    let grpc = CommissionServiceClient::connect(format!("http://{}", served.addr))
        .await
        .unwrap();
    (served, grpc)
}

async fn spawn_app() -> TestApp {
    let db = fresh_database("ledger").await;
    let namespace = fresh_namespace().await;
    let (served, grpc) = serve(&db, &namespace).await;
    TestApp {
        db,
        namespace,
        grpc,
        client: pulsar().await,
        served: Some(served),
    }
}

fn eur(amount_minor: i64) -> Option<Money> {
    Some(Money {
        amount_minor,
        currency: "EUR".into(),
    })
}

fn ids(ids: &[Uuid]) -> Vec<String> {
    ids.iter().map(Uuid::to_string).collect()
}

impl TestApp {
    /// A campaign of `advertiser` the service knows: 10 % in EUR, a budget of 10 000 000, and a
    /// hold of `hold_seconds`.
    async fn campaign(&self, advertiser: Uuid, hold_seconds: i64) -> Uuid {
        self.campaign_with_budget(advertiser, hold_seconds, 10_000_000)
            .await
    }

    async fn campaign_with_budget(&self, advertiser: Uuid, hold_seconds: i64, budget: i64) -> Uuid {
        let id = Uuid::now_v7();
        let campaign = campaign_pb::Campaign {
            id: id.to_string(),
            advertiser_id: advertiser.to_string(),
            commission_rate_bps: 1_000,
            budget: eur(budget),
            status: campaign_pb::CampaignStatus::Active.into(),
            version: 1,
            hold_period: Some(pbjson_types::Duration {
                seconds: hold_seconds,
                nanos: 0,
            }),
            ..Default::default()
        };
        e2e::publish_campaign_event(
            &self.client,
            &self.namespace.topic("campaign-events"),
            &Uuid::now_v7().to_string(),
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
            async move {
                sqlx::query_scalar::<_, i64>(
                    "select version from campaign_terms where campaign_id = $1",
                )
                .bind(id)
                .fetch_optional(&pool)
                .await
                .unwrap()
            }
        })
        .await;
        id
    }

    /// A purchase of `amount` (10 % commission): the commission and its tracking event.
    async fn purchase(
        &mut self,
        campaign: Uuid,
        creator: Uuid,
        amount: i64,
    ) -> (pb::Commission, Uuid) {
        let tracking = Uuid::now_v7();
        let commission = self.purchase_for(tracking, campaign, creator, amount).await;
        (commission, tracking)
    }

    async fn purchase_for(
        &mut self,
        tracking: Uuid,
        campaign: Uuid,
        creator: Uuid,
        amount: i64,
    ) -> pb::Commission {
        let request = pb::CalculateCommissionRequest {
            tracking_event_id: tracking.to_string(),
            campaign_id: campaign.to_string(),
            creator_id: creator.to_string(),
            purchase_amount: eur(amount),
        };
        let response = self
            .grpc
            .calculate_commission(request)
            .await
            .unwrap()
            .into_inner();
        response.commission.expect("a commission")
    }

    async fn refund(
        &mut self,
        tracking: Uuid,
        refund_id: &str,
        amount: i64,
    ) -> Result<pb::ReverseCommissionResponse, tonic::Status> {
        let request = pb::ReverseCommissionRequest {
            tracking_event_id: tracking.to_string(),
            refund_id: refund_id.into(),
            refunded_amount: eur(amount),
            kind: "refund".into(),
            reason: "returned by the customer".into(),
        };
        Ok(self.grpc.reverse_commission(request).await?.into_inner())
    }

    async fn commission(&mut self, id: &str) -> pb::Commission {
        let request = pb::GetCommissionRequest {
            commission_id: id.into(),
        };
        self.grpc
            .get_commission(request)
            .await
            .unwrap()
            .into_inner()
            .commission
            .unwrap()
    }

    async fn balance(&mut self, creator: Uuid) -> pb::Balance {
        let request = pb::GetBalanceRequest {
            creator_id: creator.to_string(),
            currency: "EUR".into(),
        };
        self.grpc
            .get_balance(request)
            .await
            .unwrap()
            .into_inner()
            .balance
            .unwrap()
    }

    /// Reserves and settles a payout of `amount`: paid.
    async fn pay(&mut self, creator: Uuid, amount: i64) -> Result<Uuid, tonic::Status> {
        let payout = Uuid::now_v7();
        let reserved = self
            .grpc
            .reserve_commission(pb::ReserveCommissionRequest {
                payout_id: payout.to_string(),
                creator_id: creator.to_string(),
                amount: eur(amount),
            })
            .await?
            .into_inner();
        if !reserved.rejection.is_empty() {
            return Err(tonic::Status::failed_precondition(reserved.rejection));
        }
        self.grpc
            .settle_commission(pb::SettleCommissionRequest {
                payout_id: payout.to_string(),
            })
            .await?;
        Ok(payout)
    }

    /// The books balance: no problem found.
    async fn assert_books_balance(&mut self) -> pb::CheckLedgerResponse {
        let books = self
            .grpc
            .check_ledger(pb::CheckLedgerRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(
            books.problems.is_empty(),
            "the books do not balance: {:#?}",
            books.problems
        );
        books
    }

    /// Sends a command through the command topic, keyed by `key`; returns its message id.
    async fn send(&self, key: &str, command: Command) -> String {
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
            &self.client,
            &self.namespace.topic("commission-commands"),
            key,
            &id,
            message_type,
            "corr",
            envelope.encode_to_vec(),
        )
        .await;
        id
    }

    async fn stop(mut self) {
        if let Some(served) = self.served.take() {
            served.stop().await;
        }
    }
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

fn status(c: &pb::Commission) -> CommissionStatus {
    CommissionStatus::try_from(c.status).unwrap()
}

#[tokio::test]
async fn a_commission_is_pending_for_its_hold_then_approved_once_by_the_service_across_a_restart() {
    let mut app = spawn_app().await;
    let campaign = app.campaign(Uuid::now_v7(), 2).await;
    let creator = Uuid::now_v7();
    let (commission, _) = app.purchase(campaign, creator, 10_000).await;
    assert_eq!(status(&commission), CommissionStatus::Pending);
    assert!(commission.hold_until.is_some());
    let balance = app.balance(creator).await;
    assert_eq!((balance.pending_minor, balance.available_minor), (1_000, 0));
    // Not payable while pending.
    assert!(app.pay(creator, 1_000).await.is_err());

    // The service stops before the hold ends and starts again: the hold still ends, once.
    let served = app.served.take().unwrap();
    served.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (served, grpc) = serve(&app.db, &app.namespace).await;
    (app.served, app.grpc) = (Some(served), grpc);
    let id = commission.id.clone();
    let approved = eventually(WAIT, "the hold ends", || {
        let mut grpc = app.grpc.clone();
        let id = id.clone();
        async move {
            let c = grpc
                .get_commission(pb::GetCommissionRequest { commission_id: id })
                .await
                .unwrap()
                .into_inner()
                .commission
                .unwrap();
            (status(&c) == CommissionStatus::Available).then_some(c)
        }
    })
    .await;
    assert!(approved.decided_at.is_some());
    let balance = app.balance(creator).await;
    assert_eq!((balance.pending_minor, balance.available_minor), (0, 1_000));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        count(
            &app.db.pool,
            "select count(*) from outbox where message_type = 'commission.approved.v1'"
        )
        .await,
        1,
        "approved once"
    );
    assert_eq!(
        count(
            &app.db.pool,
            "select count(*) from ledger_transfers where kind = 'approval'"
        )
        .await,
        1
    );
    app.pay(creator, 1_000).await.unwrap();
    app.assert_books_balance().await;
    app.stop().await;
}

#[tokio::test]
async fn advertisers_approve_early_and_decline_with_a_reason_all_or_nothing() {
    let mut app = spawn_app().await;
    let advertiser = Uuid::now_v7();
    let campaign = app.campaign(advertiser, 3_600).await;
    let other_campaign = app.campaign(Uuid::now_v7(), 3_600).await;
    let creator = Uuid::now_v7();
    let mut commissions = Vec::new();
    for _ in 0..3 {
        let (c, _) = app.purchase(campaign, creator, 10_000).await;
        commissions.push(c.id.parse::<Uuid>().unwrap());
    }
    let (theirs, _) = app.purchase(other_campaign, creator, 10_000).await;
    let theirs: Uuid = theirs.id.parse().unwrap();
    let transfers = || count(&app.db.pool, "select count(*) from ledger_transfers");
    let before = transfers().await;

    // Naming another advertiser's commission: nothing approved.
    let err = app
        .grpc
        .approve_commissions(pb::ApproveCommissionsRequest {
            advertiser_id: advertiser.to_string(),
            commission_ids: ids(&[commissions[0], theirs]),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("commission_ids[1]"), "{err:?}");
    // Over 100, or twice the same: invalid.
    let many: Vec<Uuid> = (0..101).map(|_| Uuid::now_v7()).collect();
    let err = app
        .grpc
        .approve_commissions(pb::ApproveCommissionsRequest {
            advertiser_id: advertiser.to_string(),
            commission_ids: ids(&many),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(e2e::violated_fields(&err), ["commission_ids"]);
    let err = app
        .grpc
        .decline_commissions(pb::DeclineCommissionsRequest {
            advertiser_id: advertiser.to_string(),
            commission_ids: ids(&[commissions[1], commissions[1]]),
            reason: "fraud".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e2e::violated_fields(&err), ["commission_ids[1]"]);
    let err = app
        .grpc
        .decline_commissions(pb::DeclineCommissionsRequest {
            advertiser_id: advertiser.to_string(),
            commission_ids: ids(&[commissions[1]]),
            reason: " ".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e2e::violated_fields(&err), ["reason"]);
    assert_eq!(transfers().await, before, "nothing written");

    // Approved early: payable now.
    let approved = app
        .grpc
        .approve_commissions(pb::ApproveCommissionsRequest {
            advertiser_id: advertiser.to_string(),
            commission_ids: ids(&commissions[..1]),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status(&approved.commissions[0]),
        CommissionStatus::Available
    );
    // Declined with a reason: back to the budget.
    let declined = app
        .grpc
        .decline_commissions(pb::DeclineCommissionsRequest {
            advertiser_id: advertiser.to_string(),
            commission_ids: ids(&commissions[1..]),
            reason: "the order was cancelled".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        declined
            .commissions
            .iter()
            .all(|c| status(c) == CommissionStatus::Declined
                && c.decline_reason == "the order was cancelled")
    );
    let committed: i64 =
        sqlx::query_scalar("select committed_minor from campaign_terms where campaign_id = $1")
            .bind(campaign)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(
        committed, 1_000,
        "the declined commissions' money is back in the budget"
    );
    let balance = app.balance(creator).await;
    assert_eq!(
        (balance.pending_minor, balance.available_minor),
        (1_000, 1_000),
        "the other campaign's is pending"
    );

    // A declined commission cannot be approved, an approved one not declined; repeating a
    // decision answers it as it is.
    let err = app
        .grpc
        .approve_commissions(pb::ApproveCommissionsRequest {
            advertiser_id: advertiser.to_string(),
            commission_ids: ids(&[commissions[0], commissions[1]]),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("commission_ids[1]"), "{err:?}");
    let again = app
        .grpc
        .decline_commissions(pb::DeclineCommissionsRequest {
            advertiser_id: advertiser.to_string(),
            commission_ids: ids(&commissions[1..]),
            reason: "again".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        again
            .commissions
            .iter()
            .all(|c| c.decline_reason == "the order was cancelled")
    );
    assert_eq!(
        count(
            &app.db.pool,
            "select count(*) from outbox where message_type = 'commission.declined.v1'"
        )
        .await,
        2
    );
    app.assert_books_balance().await;
    app.stop().await;
}

#[tokio::test]
async fn refunds_reverse_unpaid_commissions_and_claw_back_paid_ones_and_the_statement_reconciles() {
    let mut app = spawn_app().await;
    let advertiser = Uuid::now_v7();
    let campaign = app.campaign(advertiser, 0).await;
    let creator = Uuid::now_v7();
    let (first, first_purchase) = app.purchase(campaign, creator, 10_000).await;
    assert_eq!(
        status(&first),
        CommissionStatus::Available,
        "no hold: approved at once"
    );
    let payout = app.pay(creator, 1_000).await.unwrap();
    let (_, second_purchase) = app.purchase(campaign, creator, 20_000).await;

    // The paid commission refunded in full: clawed back, a debt against the next payout.
    let clawed = app.refund(first_purchase, "r-1", 10_000).await.unwrap();
    assert_eq!(clawed.clawed_back.unwrap().amount_minor, 1_000);
    assert_eq!(clawed.reversed.unwrap().amount_minor, 0);
    let c = clawed.commission.unwrap();
    assert_eq!(status(&c), CommissionStatus::Reversed);
    assert_eq!(
        (c.paid_minor, c.clawed_back_minor),
        (1_000, 1_000),
        "the paid amount is never edited"
    );
    // A quarter of the unpaid one: reversed in proportion.
    let reversed = app.refund(second_purchase, "r-2", 5_000).await.unwrap();
    assert_eq!(reversed.reversed.unwrap().amount_minor, 500);
    let balance = app.balance(creator).await;
    assert_eq!(
        (balance.available_minor, balance.paid_minor),
        (2_000 - 500 - 1_000, 1_000)
    );

    // Bad refunds change nothing: larger than what is left, another amount under the same id.
    let transfers = count(&app.db.pool, "select count(*) from ledger_transfers").await;
    let err = app
        .refund(second_purchase, "r-3", 15_001)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(e2e::violated_fields(&err), ["refunded_amount.amount_minor"]);
    let err = app.refund(second_purchase, "r-2", 4_000).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    // The same refund again: answered, nothing taken twice.
    let repeat = app.refund(second_purchase, "r-2", 5_000).await.unwrap();
    assert_eq!(repeat.reversed.unwrap().amount_minor, 0);
    // A reversed commission cannot be approved or declined.
    for approve in [true, false] {
        let commission_ids = vec![first.id.clone()];
        let err = if approve {
            app.grpc
                .approve_commissions(pb::ApproveCommissionsRequest {
                    advertiser_id: advertiser.to_string(),
                    commission_ids,
                })
                .await
        } else {
            app.grpc
                .decline_commissions(pb::DeclineCommissionsRequest {
                    advertiser_id: advertiser.to_string(),
                    commission_ids,
                    reason: "late".into(),
                })
                .await
                .map(|_| tonic::Response::new(pb::ApproveCommissionsResponse::default()))
        }
        .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains("reversed"), "{err:?}");
    }
    // A second full refund of the first: nothing is left of it.
    let err = app.refund(first_purchase, "r-4", 1).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        count(&app.db.pool, "select count(*) from ledger_transfers").await,
        transfers
    );

    // The next payout nets the debt: 500 available of the 1 500 left.
    assert!(app.pay(creator, 501).await.is_err());
    app.pay(creator, 500).await.unwrap();

    // The month's statement: every movement, and balances that reconcile to the ledger.
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let statement = app
        .grpc
        .get_statement(pb::GetStatementRequest {
            creator_id: creator.to_string(),
            month: month.clone(),
            currency: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let eur = &statement.currencies[0];
    let lines: Vec<(&str, i64)> = eur
        .lines
        .iter()
        .map(|l| (l.kind.as_str(), l.amount_minor))
        .collect();
    assert_eq!(
        lines,
        [
            ("commission", 1_000),
            ("payout", -1_000),
            ("commission", 2_000),
            ("clawback", -1_000),
            ("reversal", -500),
            ("payout", -500),
        ]
    );
    assert_eq!(eur.opening_minor, 0);
    assert_eq!(
        eur.closing_minor,
        eur.lines.iter().map(|l| l.amount_minor).sum::<i64>()
    );
    let balance = app.balance(creator).await;
    assert_eq!(
        eur.closing_minor,
        balance.pending_minor + balance.available_minor + balance.reserved_minor
    );
    assert_eq!((eur.paid_minor, balance.paid_minor), (1_500, 1_500));
    assert!(eur.lines.iter().any(|l| l.payout_id == payout.to_string()));
    assert_eq!(eur.lines.last().unwrap().balance_minor, eur.closing_minor);
    let err = app
        .grpc
        .get_statement(pb::GetStatementRequest {
            creator_id: creator.to_string(),
            month: "2026-13".into(),
            currency: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e2e::violated_fields(&err), ["month"]);
    app.assert_books_balance().await;
    app.stop().await;
}

#[tokio::test]
async fn a_refund_before_its_commission_is_kept_and_applied_when_the_commission_arrives() {
    let mut app = spawn_app().await;
    let campaign = app.campaign(Uuid::now_v7(), 3_600).await;
    let creator = Uuid::now_v7();
    let purchase = Uuid::now_v7();
    let kept = app.refund(purchase, "early", 10_000).await.unwrap();
    assert!(kept.deferred && kept.commission.is_none());
    // Repeated while kept: still kept, once.
    assert!(
        app.refund(purchase, "early", 10_000)
            .await
            .unwrap()
            .deferred
    );
    let commission = app.purchase_for(purchase, campaign, creator, 10_000).await;
    let id = commission.id.clone();
    eventually(WAIT, "the kept refund is applied", || {
        let mut grpc = app.grpc.clone();
        let id = id.clone();
        async move {
            let c = grpc
                .get_commission(pb::GetCommissionRequest { commission_id: id })
                .await
                .unwrap()
                .into_inner()
                .commission
                .unwrap();
            (status(&c) == CommissionStatus::Reversed).then_some(())
        }
    })
    .await;
    let c = app.commission(&commission.id).await;
    assert_eq!((c.refunded_minor, c.reversed_minor), (10_000, 1_000));
    let balance = app.balance(creator).await;
    assert_eq!((balance.pending_minor, balance.available_minor), (0, 0));
    app.assert_books_balance().await;
    app.stop().await;
}

/// Refunds racing hold ends, approvals racing refunds, payouts racing clawbacks, many at once and
/// through both doors: whatever the order, the books balance and no creator was paid more than
/// their approved, unreversed commissions (both checked by CheckLedger).
#[tokio::test]
async fn refunds_racing_hold_ends_approvals_and_payouts_leave_the_books_balanced() {
    let mut app = spawn_app().await;
    let advertiser = Uuid::now_v7();
    let campaign = app.campaign(advertiser, 1).await;
    let creators: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    let mut purchases = Vec::new();
    for i in 0..60 {
        let creator = creators[i % creators.len()];
        let (c, tracking) = app.purchase(campaign, creator, 1_000 + i as i64 * 37).await;
        purchases.push((c, tracking, creator));
    }
    let mut tasks = tokio::task::JoinSet::new();
    let mut sent = Vec::new();
    for (i, (c, tracking, creator)) in purchases.iter().enumerate() {
        let purchase = 1_000 + i as i64 * 37;
        let mut grpc = app.grpc.clone();
        let (id, tracking, creator) = (c.id.clone(), *tracking, *creator);
        match i % 4 {
            // A full refund by gRPC, racing the hold's end.
            0 => {
                tasks.spawn(async move {
                    let _ = grpc
                        .reverse_commission(pb::ReverseCommissionRequest {
                            tracking_event_id: tracking.to_string(),
                            refund_id: "full".into(),
                            refunded_amount: eur(purchase),
                            kind: "chargeback".into(),
                            reason: String::new(),
                        })
                        .await;
                });
            }
            // An early approval racing a partial refund through the command topic.
            1 => {
                tasks.spawn(async move {
                    let _ = grpc
                        .approve_commissions(pb::ApproveCommissionsRequest {
                            advertiser_id: advertiser.to_string(),
                            commission_ids: vec![id],
                        })
                        .await;
                });
                let refund = Command::Reverse(pb::ReverseCommissionRequest {
                    tracking_event_id: tracking.to_string(),
                    refund_id: "half".into(),
                    refunded_amount: eur(purchase / 2),
                    kind: "refund".into(),
                    reason: String::new(),
                });
                sent.push(app.send(&tracking.to_string(), refund).await);
            }
            // Payouts racing refunds once the hold has ended.
            2 => {
                tasks.spawn(async move {
                    tokio::time::sleep(Duration::from_millis(1_100)).await;
                    let payout = Uuid::now_v7();
                    let reserved = grpc
                        .reserve_commission(pb::ReserveCommissionRequest {
                            payout_id: payout.to_string(),
                            creator_id: creator.to_string(),
                            amount: eur(60),
                        })
                        .await;
                    if reserved.is_ok_and(|r| r.into_inner().rejection.is_empty()) {
                        let _ = grpc
                            .settle_commission(pb::SettleCommissionRequest {
                                payout_id: payout.to_string(),
                            })
                            .await;
                    }
                    let _ = grpc
                        .reverse_commission(pb::ReverseCommissionRequest {
                            tracking_event_id: tracking.to_string(),
                            refund_id: "late".into(),
                            refunded_amount: eur(purchase),
                            kind: "refund".into(),
                            reason: String::new(),
                        })
                        .await;
                });
            }
            // Left to its hold.
            _ => {}
        }
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
    // A command applied leaves its message id as its idempotency key.
    for id in &sent {
        let pool = app.db.pool.clone();
        eventually(WAIT, &format!("refund command {id} is applied"), || {
            let pool = pool.clone();
            async move {
                let n: i64 = sqlx::query_scalar(
                    "select count(*) from idempotency_keys where idempotency_key = $1 and response is not null",
                )
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
                (n == 1).then_some(())
            }
        })
        .await;
    }
    let pool = app.db.pool.clone();
    eventually(WAIT, "every hold has ended", || {
        let pool = pool.clone();
        async move {
            let pending = count(
                &pool,
                "select count(*) from commissions where status = 'pending'",
            )
            .await;
            (pending == 0).then_some(())
        }
    })
    .await;
    let books = app.assert_books_balance().await;
    assert!(books.transfers >= 60, "{books:?}");
    // Every full refund took all of its commission back, reversed or clawed back.
    let partial: i64 = count(
        &app.db.pool,
        "select count(*) from commissions where refunded_minor = purchase_minor and status <> 'reversed'",
    )
    .await;
    assert_eq!(partial, 0);
    app.stop().await;
}

#[tokio::test]
async fn ledger_transfers_are_never_updated_or_deleted() {
    let mut app = spawn_app().await;
    let campaign = app.campaign(Uuid::now_v7(), 0).await;
    app.purchase(campaign, Uuid::now_v7(), 10_000).await;
    for sql in [
        "update ledger_transfers set amount_minor = amount_minor + 1",
        "delete from ledger_transfers",
        "truncate ledger_transfers",
    ] {
        let err = sqlx::query(sql).execute(&app.db.pool).await.unwrap_err();
        assert!(
            err.to_string().contains("never updated or deleted"),
            "{sql}: {err}"
        );
    }
    app.assert_books_balance().await;
    app.stop().await;
}

/// The new events are in the envelopes registered in Pulsar's schema registry, so a client in any
/// language decodes them with the descriptors it fetches from there.
#[tokio::test]
async fn the_money_events_are_in_the_registered_schemas() {
    use base64::Engine as _;
    let namespace = fresh_namespace().await;
    for (topic, messages) in [
        (
            "commission-events",
            &[
                "CommissionApproved",
                "CommissionDeclined",
                "CommissionReversed",
            ][..],
        ),
        (
            "commission-commands",
            &["ReverseCommissionRequest", "DeclineCommissionsRequest"][..],
        ),
        ("tracking-events", &["ConversionRefunded"][..]),
    ] {
        let path = format!(
            "/admin/v2/schemas/{}/{}/{topic}/schema",
            e2e::pulsar_tenant(),
            &*namespace
        );
        let (status, body) = e2e::admin().request("GET", &path, "").await.unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        let data: serde_json::Value =
            serde_json::from_str(answer["data"].as_str().unwrap()).unwrap();
        let set = base64::engine::general_purpose::STANDARD
            .decode(data["fileDescriptorSet"].as_str().unwrap())
            .unwrap();
        let set = prost_types::FileDescriptorSet::decode(&*set).unwrap();
        let names: Vec<&str> = set
            .file
            .iter()
            .flat_map(|f| f.message_type.iter().map(|m| m.name()))
            .collect();
        for message in messages {
            assert!(
                names.contains(message),
                "{topic}: {message} not in {names:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_budget_freed_by_a_refund_is_spent_and_announced_again() {
    let mut app = spawn_app().await;
    let campaign = app.campaign_with_budget(Uuid::now_v7(), 0, 1_000).await;
    let creator = Uuid::now_v7();
    let (_, purchase) = app.purchase(campaign, creator, 10_000).await;
    let pool = app.db.pool.clone();
    let announced = || {
        count(
            &pool,
            "select count(*) from outbox where message_type = 'campaign.budget_exhausted.v1'",
        )
    };
    assert_eq!(announced().await, 1, "the budget is spent");
    app.refund(purchase, "r-1", 10_000).await.unwrap();
    let committed: i64 =
        sqlx::query_scalar("select committed_minor from campaign_terms where campaign_id = $1")
            .bind(campaign)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(committed, 0, "the refund gave the budget back");
    app.purchase(campaign, creator, 10_000).await;
    assert_eq!(announced().await, 2, "spent again, and announced again");
    app.assert_books_balance().await;
    app.stop().await;
}
