//! The chains between services, end to end: every service and the relay as real processes on
//! real PostgreSQL and Pulsar. Purchases become exactly one commission each; payouts complete
//! (commissions paid), fail at the provider (reservation released, balance restored) or exceed
//! the balance (rejected, nothing reserved); and a payment service killed mid-saga finishes the
//! payout after its restart. Advertisers and creators are told of each step, each in their own
//! gapless sequence, by the notification service.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use uuid::Uuid;

use affiliate_proto::notification::ListNotificationsRequest;
use affiliate_proto::notification::notification_service_client::NotificationServiceClient;
use e2e::eventually;
use e2e::platform::{NOTIFICATION, Platform};
use e2e::workflow::{
    ADVERTISER, CREATOR_1, CREATOR_2, Door, Driver, IBAN, WAIT, business_workflow,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchases_become_commissions_and_payouts_complete_fail_or_are_rejected() {
    let mut platform = Platform::start("chains", "hybrid").await;
    let mut driver = Driver::new(&platform, Door::Grpc).await;
    let outcome = business_workflow(&mut driver).await;
    assert_eq!(outcome.statuses, ["completed", "failed", "rejected"]);

    let commission = &platform.databases["commission"].pool;
    // The closed campaign's purchase was refused at tracking.
    assert_eq!(outcome.closed_refusal, "FAILED_PRECONDITION");
    // Exactly one commission per purchase.
    let per_purchase: Vec<(Uuid, i64)> =
        sqlx::query_as("select tracking_event_id, amount_minor from commissions order by id")
            .fetch_all(commission)
            .await
            .unwrap();
    let expected: Vec<(Uuid, i64)> = outcome
        .purchases
        .iter()
        .map(|p| Uuid::parse_str(p).unwrap())
        .zip([1_000, 255, 2_000])
        .collect();
    assert_eq!(per_purchase, expected);
    let calculated = driver
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.metadata.message_type == "commission.calculated.v1")
        .count();
    assert_eq!(calculated, 3, "one commission.calculated.v1 per purchase");

    // Creator 1: 1 255 earned, 1 200 paid: the oldest commission wholly, the next in part.
    assert_eq!(driver.balance(CREATOR_1, "EUR").await, (55, 0, 1_200));
    let paid: Vec<(i64, i64, i64)> = sqlx::query_as(
        "select amount_minor, reserved_minor, paid_minor from commissions where creator_id = $1::uuid order by id",
    )
    .bind(CREATOR_1)
    .fetch_all(commission)
    .await
    .unwrap();
    assert_eq!(paid, [(1_000, 0, 1_000), (255, 0, 200)]);
    // Creator 2: the provider declined, the reservation was released, the balance is whole.
    assert_eq!(driver.balance(CREATOR_2, "EUR").await, (2_000, 0, 0));
    let reservations: Vec<(String, String)> =
        sqlx::query_as("select payout_id::text, status from reservations order by created_at")
            .fetch_all(commission)
            .await
            .unwrap();
    assert_eq!(
        reservations,
        [
            (outcome.paid_payout.clone(), "settled".into()),
            (outcome.failed_payout.clone(), "released".into())
        ]
    );
    // The payout above the balance reserved nothing (no reservation row above) and was rejected.
    let payment = &platform.databases["payment"].pool;
    let reason: String =
        sqlx::query_scalar("select failure_reason from payouts where id = $1::uuid")
            .bind(&outcome.rejected_payout)
            .fetch_one(payment)
            .await
            .unwrap();
    assert!(reason.starts_with("INSUFFICIENT_BALANCE"), "{reason}");
    let provider: Option<String> =
        sqlx::query_scalar("select provider_reference from payouts where id = $1::uuid")
            .bind(&outcome.paid_payout)
            .fetch_one(payment)
            .await
            .unwrap();
    assert!(provider.is_some_and(|r| r.starts_with("sbx_")));

    // Everyone was told, newest first, numbered 1..n per user.
    let client = NotificationServiceClient::connect(platform.url(NOTIFICATION))
        .await
        .unwrap();
    let told = |user: &'static str, count: usize| {
        let client = client.clone();
        eventually(
            WAIT,
            "every notification of the workflow is stored",
            move || {
                let mut client = client.clone();
                async move {
                    let request = ListNotificationsRequest {
                        user_id: user.into(),
                        page_size: 100,
                        ..Default::default()
                    };
                    let page = client
                        .list_notifications(request)
                        .await
                        .unwrap()
                        .into_inner();
                    (page.notifications.len() == count).then_some(page.notifications)
                }
            },
        )
    };
    let kinds = |notifications: &[affiliate_proto::notification::Notification]| {
        let mut kinds: Vec<String> = notifications
            .iter()
            .map(|n| n.kind().as_str_name().to_owned())
            .collect();
        kinds.sort();
        kinds
    };
    let advertiser = told(ADVERTISER, 6).await;
    assert_eq!(
        kinds(&advertiser),
        [
            "NOTIFICATION_KIND_CAMPAIGN_ACCEPTED",
            "NOTIFICATION_KIND_CAMPAIGN_ACCEPTED",
            "NOTIFICATION_KIND_CAMPAIGN_CREATED",
            "NOTIFICATION_KIND_CAMPAIGN_CREATED",
            "NOTIFICATION_KIND_CAMPAIGN_STATUS_CHANGED",
            "NOTIFICATION_KIND_EVIDENCE_SUBMITTED",
        ]
    );
    let creator_1 = told(CREATOR_1, 7).await;
    let sequences: Vec<i64> = creator_1.iter().map(|n| n.sequence).collect();
    assert_eq!(sequences, [7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(
        kinds(&creator_1),
        [
            "NOTIFICATION_KIND_CAMPAIGN_ACCEPTED",
            "NOTIFICATION_KIND_COMMISSION_EARNED",
            "NOTIFICATION_KIND_COMMISSION_EARNED",
            "NOTIFICATION_KIND_PAYOUT_COMPLETED",
            "NOTIFICATION_KIND_PAYOUT_REJECTED",
            "NOTIFICATION_KIND_PAYOUT_REQUESTED",
            "NOTIFICATION_KIND_PAYOUT_REQUESTED",
        ]
    );
    assert!(
        creator_1
            .iter()
            .any(|n| n.body == "You earned 2.55 EUR from a purchase on \"Spring launch\"."),
        "{creator_1:#?}"
    );
    let creator_2 = told(CREATOR_2, 4).await;
    assert!(creator_2.iter().any(|n| n.title == "Payout failed"));
    platform.assert_all_running();
    platform.assert_books_balance();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_service_killed_mid_saga_finishes_the_payout_after_restart() {
    let mut platform = Platform::start("saga_restart", "hybrid").await;
    let mut driver = Driver::new(&platform, Door::Grpc).await;
    // Earn something to pay out.
    let campaign = driver
        .create_campaign(affiliate_proto::campaign::CreateCampaignRequest {
            advertiser_id: e2e::workflow::ADVERTISER.into(),
            name: "Restart".into(),
            description: String::new(),
            commission_rate_bps: 5_000,
            budget: Some(affiliate_proto::common::Money {
                amount_minor: 100_000,
                currency: "EUR".into(),
            }),
            tracking: None,
            hold_period: e2e::NO_HOLD,
        })
        .await;
    driver
        .campaign_command(
            affiliate_proto::campaign::campaign_command::Command::AcceptCampaign(
                affiliate_proto::campaign::AcceptCampaignRequest {
                    campaign_id: campaign.clone(),
                    creator_id: CREATOR_1.into(),
                    accepted_terms: true,
                },
            ),
        )
        .await;
    let purchase = driver
        .track(affiliate_proto::tracking::CreateEventRequest {
            campaign_id: campaign,
            creator_id: CREATOR_1.into(),
            kind: affiliate_proto::tracking::TrackingEventKind::Purchase.into(),
            amount: Some(affiliate_proto::common::Money {
                amount_minor: 10_000,
                currency: "EUR".into(),
            }),
            product_id: String::new(),
            occurred_at: None,
        })
        .await;
    assert_eq!(driver.commission_of(&purchase).await, 5_000);

    // The sandbox answers "slow" accounts after 3 s: kill the service while it waits.
    let payout = driver
        .request_payout(affiliate_proto::payment::RequestPayoutRequest {
            creator_id: CREATOR_1.into(),
            amount: Some(affiliate_proto::common::Money {
                amount_minor: 4_000,
                currency: "EUR".into(),
            }),
            method: affiliate_proto::payment::PayoutMethod::BankTransfer.into(),
            account_details: format!("{}SLOW", &IBAN[..18]),
        })
        .await;
    driver.payout_reaches(&payout, "processing").await;
    drop(driver);
    platform.kill("payment-service");
    platform.start_service("payment");

    let driver = Driver::new(&platform, Door::Grpc).await;
    assert_eq!(driver.payout_final(&payout).await, "completed");
    assert_eq!(driver.balance(CREATOR_1, "EUR").await, (1_000, 0, 4_000));
    platform.assert_all_running();
    platform.assert_books_balance();
}
