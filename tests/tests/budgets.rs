//! Budgets that hold, end to end: every service and the relay as real processes on real
//! PostgreSQL and Pulsar. 200 purchases at once on a campaign whose budget covers 50
//! commissions, half through tracking's gRPC API and half through its command topic: exactly the
//! budget is committed, one `campaign.budget_exhausted.v1` has the campaign service pause the
//! campaign (its own command topic, one saga), every other purchase is refused, at tracking (the
//! campaign paused) or at the commission service (`BUDGET_EXHAUSTED`); and raising the budget
//! resumes the campaign, whose next purchase earns again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use prost::Message as _;
use tonic::Code;
use uuid::Uuid;

use affiliate_proto::campaign::{self as campaign_pb, campaign_command::Command as C};
use affiliate_proto::common::{MessageMetadata, Money};
use affiliate_proto::tracking::tracking_service_client::TrackingServiceClient;
use affiliate_proto::tracking::{self as tracking_pb, TrackingCommand, tracking_command};
use e2e::eventually;
use e2e::platform::Platform;
use e2e::workflow::{ADVERTISER, CREATOR_1, Collected, Door, Driver, WAIT};

/// Purchases sent, half through each door.
const PURCHASES: usize = 200;
/// Each purchase's commission: 1 000 at 10 %.
const COMMISSION: i64 = 100;
/// The budget covers this many commissions.
const COVERED: i64 = 50;

fn eur(amount_minor: i64) -> Option<Money> {
    Some(Money {
        amount_minor,
        currency: "EUR".into(),
    })
}

fn purchase(campaign: &str) -> tracking_pb::CreateEventRequest {
    tracking_pb::CreateEventRequest {
        campaign_id: campaign.to_owned(),
        creator_id: CREATOR_1.to_owned(),
        kind: tracking_pb::TrackingEventKind::Purchase.into(),
        amount: eur(1_000),
        product_id: String::new(),
        occurred_at: None,
    }
}

/// A purchase through the gRPC door: `true` if tracking recorded it, `false` if it refused it
/// (FAILED_PRECONDITION: the campaign is paused). Shed or unavailable calls are retried with
/// the same key.
async fn purchase_by_grpc(url: String, campaign: String) -> bool {
    let mut client = TrackingServiceClient::connect(url).await.unwrap();
    let key = Uuid::now_v7().to_string();
    loop {
        match client
            .create_event(e2e::with_key(purchase(&campaign), &key))
            .await
        {
            Ok(_) => return true,
            Err(status) if status.code() == Code::FailedPrecondition => return false,
            Err(status) if status.code() == Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("purchase {key}: {status:?}"),
        }
    }
}

fn of_type<'a>(events: &'a [Collected], message_type: &str) -> Vec<&'a Collected> {
    events
        .iter()
        .filter(|e| e.metadata.message_type == message_type)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_purchases_never_overspend_a_budget_and_a_raise_resumes_the_campaign() {
    let mut platform = Platform::start("budgets", "hybrid").await;
    let mut driver = Driver::new(&platform, Door::Grpc).await;
    let campaign = driver
        .create_campaign(campaign_pb::CreateCampaignRequest {
            advertiser_id: ADVERTISER.to_owned(),
            name: "Fifty commissions".to_owned(),
            description: "budgets".to_owned(),
            commission_rate_bps: 1000,
            budget: eur(COVERED * COMMISSION),
            tracking: None,
            hold_period: None,
        })
        .await;
    driver
        .campaign_command(C::AcceptCampaign(campaign_pb::AcceptCampaignRequest {
            campaign_id: campaign.clone(),
            creator_id: CREATOR_1.to_owned(),
            accepted_terms: true,
        }))
        .await;
    let campaign_id = Uuid::parse_str(&campaign).unwrap();

    // All at once: the gRPC half as concurrent calls, the topic half published meanwhile.
    let calls: Vec<_> = (0..PURCHASES / 2)
        .map(|_| tokio::spawn(purchase_by_grpc(platform.url("tracking"), campaign.clone())))
        .collect();
    let client = e2e::pulsar().await;
    let topic = platform.topic("tracking-commands");
    let mut sent = Vec::new();
    for _ in 0..PURCHASES / 2 {
        let id = Uuid::now_v7().to_string();
        let command = tracking_command::Command::CreateEvent(purchase(&campaign));
        let message_type = command.message_type();
        let envelope = TrackingCommand {
            metadata: Some(MessageMetadata {
                message_id: id.clone(),
                message_type: message_type.to_owned(),
                correlation_id: id.clone(),
                occurred_at: Some(service_runtime::time::timestamp(chrono::Utc::now())),
                ..Default::default()
            }),
            command: Some(command),
        };
        e2e::publish(
            &client,
            &topic,
            &id,
            &id,
            message_type,
            &id,
            envelope.encode_to_vec(),
        )
        .await;
        sent.push(id);
    }
    let mut grpc_recorded = 0;
    for call in calls {
        grpc_recorded += usize::from(call.await.unwrap());
    }

    // Every topic purchase recorded or refused by tracking, and every recorded purchase (both
    // doors) answered by the commission service: a commission or a refusal.
    let events = driver.events.clone();
    let sent_ids = sent.clone();
    let (topic_recorded, answered) = eventually(WAIT, "every purchase answered", || {
        let events = events.clone();
        let sent = sent_ids.clone();
        async move {
            let events = events.lock().unwrap();
            let caused = |t: &str| {
                of_type(&events, t)
                    .into_iter()
                    .filter(|e| sent.contains(&e.metadata.causation_id))
                    .count()
            };
            let recorded = caused("tracking_event.created.v1");
            let refused = caused("tracking.command_rejected.v1");
            let answered = of_type(&events, "commission.calculated.v1").len()
                + of_type(&events, "commission.rejected.v1").len();
            (recorded + refused == sent.len() && answered == grpc_recorded + recorded)
                .then_some((recorded, answered))
        }
    })
    .await;
    let recorded = grpc_recorded + topic_recorded;
    assert_eq!(answered, recorded);
    eprintln!(
        "budgets: of {PURCHASES} purchases, tracking recorded {recorded} ({grpc_recorded} by gRPC, \
         {topic_recorded} by topic) and refused {} on the paused campaign; {COVERED} earned, \
         {} refused BUDGET_EXHAUSTED",
        PURCHASES - recorded,
        recorded - COVERED as usize
    );
    assert!(
        recorded >= COVERED as usize,
        "{recorded} purchases recorded before the pause"
    );

    let commission = &platform.databases["commission"].pool;
    let (count, total): (i64, Option<i64>) = sqlx::query_as(
        "select count(*), sum(amount_minor)::bigint from commissions where campaign_id = $1",
    )
    .bind(campaign_id)
    .fetch_one(commission)
    .await
    .unwrap();
    assert_eq!((count, total), (COVERED, Some(COVERED * COMMISSION)));
    let committed: i64 =
        sqlx::query_scalar("select committed_minor from campaign_terms where campaign_id = $1")
            .bind(campaign_id)
            .fetch_one(commission)
            .await
            .unwrap();
    assert_eq!(committed, COVERED * COMMISSION);
    {
        let events = driver.events.lock().unwrap();
        let rejected = of_type(&events, "commission.rejected.v1");
        assert_eq!(rejected.len(), recorded - COVERED as usize);
        for r in &rejected {
            assert_eq!(
                r.json["commissionRejected"]["reason"], "BUDGET_EXHAUSTED",
                "{:?}",
                r.json
            );
        }
        let exhausted = of_type(&events, "campaign.budget_exhausted.v1");
        assert_eq!(exhausted.len(), 1, "one exhaustion per budget");
        assert_eq!(exhausted[0].metadata.aggregate_id, campaign);
    }

    // The campaign service paused it through its own command topic.
    let campaigns = &platform.databases["campaign"].pool;
    let paused = || {
        let pool = campaigns.clone();
        async move {
            let row: (String, Option<String>) =
                sqlx::query_as("select status, pause_reason from campaigns where id = $1")
                    .bind(campaign_id)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            row
        }
    };
    assert_eq!(
        paused().await,
        ("paused".to_owned(), Some("budget_exhausted".to_owned()))
    );
    let status_changed = driver
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.metadata.message_type == "campaign.status_changed.v1")
        .count();
    assert_eq!(status_changed, 1, "paused once");

    // Raising the budget resumes it, and a purchase earns again.
    driver
        .campaign_command(C::UpdateBudget(campaign_pb::UpdateBudgetRequest {
            campaign_id: campaign.clone(),
            budget: eur(2 * COVERED * COMMISSION),
        }))
        .await;
    assert_eq!(paused().await, ("active".to_owned(), None));
    let resumed = driver.track(purchase(&campaign)).await;
    driver.commission_of(&resumed).await;
    let total: i64 = sqlx::query_scalar(
        "select sum(amount_minor)::bigint from commissions where campaign_id = $1",
    )
    .bind(campaign_id)
    .fetch_one(commission)
    .await
    .unwrap();
    assert_eq!(total, (COVERED + 1) * COMMISSION);
    drop(driver);
    platform.assert_all_running();
}
