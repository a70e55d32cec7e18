//! The notification service on real PostgreSQL, Pulsar and gRPC over TCP, each test in its own
//! database (and, where the service runs, Pulsar namespace): who is told what about each event,
//! effectively-once application, gapless per-user sequences under concurrency, listing, paging,
//! marking read, the live Subscribe stream, and events arriving through the broker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt as _;
use prost::Message as _;
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

use affiliate_proto::campaign::{self as campaign_pb, CampaignEvent, campaign_event};
use affiliate_proto::commission::{self as commission_pb, CommissionEvent, commission_event};
use affiliate_proto::common::{MessageMetadata, Money};
use affiliate_proto::notification::notification_service_client::NotificationServiceClient;
use affiliate_proto::notification::{self as pb, NotificationKind};
use affiliate_proto::payment::{self as payment_pb, PaymentEvent, payment_event};
use affiliate_proto::tracking::{
    self as tracking_pb, TrackingEventEnvelope, tracking_event_envelope,
};
use affiliate_proto::webhook::{self as webhook_pb, WebhookEvent, webhook_event};
use e2e::{TestDatabase, fresh_database, fresh_namespace, publish};
use messaging::{Delivery, Failure, Handler as _};
use notification_service::Notification;
use notification_service::adapters::events::{EventFeed, Source};
use notification_service::app::Notifications;

const WAIT: Duration = Duration::from_secs(30);

// ---- envelopes, as the services publish them ----

/// One published event: its source topic, message id and encoded envelope.
#[derive(Debug, Clone)]
struct Event {
    source: Source,
    key: String,
    message_id: String,
    payload: Vec<u8>,
}

fn metadata(message_id: &str, aggregate_id: Uuid, version: i64) -> Option<MessageMetadata> {
    Some(MessageMetadata {
        message_id: message_id.to_owned(),
        aggregate_id: aggregate_id.to_string(),
        aggregate_version: version,
        correlation_id: format!("corr-{message_id}"),
        ..Default::default()
    })
}

fn event(source: Source, key: Uuid, encode: impl FnOnce(&str) -> Vec<u8>) -> Event {
    let message_id = Uuid::now_v7().to_string();
    Event {
        source,
        key: key.to_string(),
        payload: encode(&message_id),
        message_id,
    }
}

fn money(amount_minor: i64, currency: &str) -> Option<Money> {
    Some(Money {
        amount_minor,
        currency: currency.into(),
    })
}

fn campaign(
    id: Uuid,
    advertiser: Uuid,
    name: &str,
    status: campaign_pb::CampaignStatus,
) -> campaign_pb::Campaign {
    campaign_pb::Campaign {
        id: id.to_string(),
        advertiser_id: advertiser.to_string(),
        name: name.into(),
        commission_rate_bps: 1000,
        budget: money(100_000, "USD"),
        status: status.into(),
        ..Default::default()
    }
}

fn campaign_message(id: Uuid, version: i64, event_: campaign_event::Event) -> Event {
    event(Source::Campaign, id, |m| {
        CampaignEvent {
            metadata: metadata(m, id, version),
            event: Some(event_),
        }
        .encode_to_vec()
    })
}

fn created(id: Uuid, advertiser: Uuid, name: &str) -> Event {
    let c = campaign(id, advertiser, name, campaign_pb::CampaignStatus::Active);
    campaign_message(
        id,
        1,
        campaign_event::Event::CampaignCreated(campaign_pb::CampaignCreated { campaign: Some(c) }),
    )
}

fn paused(id: Uuid, advertiser: Uuid, name: &str, version: i64) -> Event {
    let c = campaign(id, advertiser, name, campaign_pb::CampaignStatus::Paused);
    campaign_message(
        id,
        version,
        campaign_event::Event::CampaignStatusChanged(campaign_pb::CampaignStatusChanged {
            campaign_id: id.to_string(),
            previous_status: campaign_pb::CampaignStatus::Active.into(),
            campaign: Some(c),
        }),
    )
}

fn accepted(campaign_id: Uuid, creator: Uuid) -> Event {
    campaign_message(
        campaign_id,
        2,
        campaign_event::Event::CampaignAccepted(campaign_pb::CampaignAccepted {
            acceptance: Some(campaign_pb::Acceptance {
                campaign_id: campaign_id.to_string(),
                creator_id: creator.to_string(),
                accepted_at: None,
            }),
        }),
    )
}

fn tracking(event_: tracking_event_envelope::Event) -> Event {
    let id = Uuid::now_v7();
    event(Source::Tracking, id, |m| {
        TrackingEventEnvelope {
            metadata: metadata(m, id, 1),
            event: Some(event_),
        }
        .encode_to_vec()
    })
}

fn evidence(campaign_id: Uuid, creator: Uuid) -> Event {
    tracking(tracking_event_envelope::Event::EvidenceSubmitted(
        tracking_pb::EvidenceSubmitted {
            evidence: Some(tracking_pb::Evidence {
                id: Uuid::now_v7().to_string(),
                campaign_id: campaign_id.to_string(),
                creator_id: creator.to_string(),
                kind: tracking_pb::EvidenceKind::Video.into(),
                url: "https://example.com/v".into(),
                ..Default::default()
            }),
        },
    ))
}

fn purchase_tracked(campaign_id: Uuid, creator: Uuid) -> Event {
    tracking(tracking_event_envelope::Event::TrackingEventCreated(
        tracking_pb::TrackingEventCreated {
            event: Some(tracking_pb::TrackingEvent {
                id: Uuid::now_v7().to_string(),
                campaign_id: campaign_id.to_string(),
                creator_id: creator.to_string(),
                kind: tracking_pb::TrackingEventKind::Purchase.into(),
                amount: money(2000, "USD"),
                ..Default::default()
            }),
        },
    ))
}

fn commission_message(event_: commission_event::Event) -> Event {
    let id = Uuid::now_v7();
    event(Source::Commission, id, |m| {
        CommissionEvent {
            metadata: metadata(m, id, 1),
            event: Some(event_),
        }
        .encode_to_vec()
    })
}

fn earned(campaign_id: Uuid, creator: Uuid, amount: Option<Money>) -> Event {
    commission_message(commission_event::Event::CommissionCalculated(
        commission_pb::CommissionCalculated {
            commission: Some(commission_pb::Commission {
                id: Uuid::now_v7().to_string(),
                campaign_id: campaign_id.to_string(),
                creator_id: creator.to_string(),
                amount,
                ..Default::default()
            }),
            balance: None,
        },
    ))
}

/// A 5.00 EUR commission of `creator` on the campaign, as the commission service's lifecycle
/// events carry it.
fn pending_commission(campaign_id: Uuid, creator: Uuid) -> Option<commission_pb::Commission> {
    Some(commission_pb::Commission {
        id: Uuid::now_v7().to_string(),
        campaign_id: campaign_id.to_string(),
        creator_id: creator.to_string(),
        amount: money(500, "EUR"),
        ..Default::default()
    })
}

fn payout(creator: Uuid, stage: fn(Option<payment_pb::Payout>) -> payment_event::Event) -> Event {
    let id = Uuid::now_v7();
    let p = payment_pb::Payout {
        id: id.to_string(),
        creator_id: creator.to_string(),
        amount: money(1200, "EUR"),
        ..Default::default()
    };
    event(Source::Payment, id, |m| {
        PaymentEvent {
            metadata: metadata(m, id, 1),
            event: Some(stage(Some(p))),
        }
        .encode_to_vec()
    })
}

fn requested(p: Option<payment_pb::Payout>) -> payment_event::Event {
    payment_event::Event::PayoutRequested(payment_pb::PayoutRequested { payout: p })
}

fn webhook_message(endpoint: Uuid, event_: webhook_event::Event) -> Event {
    event(Source::Webhook, endpoint, |m| {
        WebhookEvent {
            // The webhook service publishes its endpoints' events with version 0.
            metadata: metadata(m, endpoint, 0),
            event: Some(event_),
        }
        .encode_to_vec()
    })
}

/// The webhook service disabled `owner`'s endpoint, for `reason`.
fn endpoint_disabled(endpoint: Uuid, owner: Uuid, reason: &str) -> Event {
    webhook_message(
        endpoint,
        webhook_event::Event::EndpointDisabled(webhook_pb::EndpointDisabled {
            endpoint: Some(webhook_pb::Endpoint {
                id: endpoint.to_string(),
                owner_id: owner.to_string(),
                url: "https://partner.example/hooks".into(),
                enabled: false,
                disabled_reason: reason.into(),
                ..Default::default()
            }),
            reason: reason.into(),
        }),
    )
}

// ---- the handlers on a database of their own ----

/// The feeds over a fresh, migrated database (no broker: deliveries are handed in).
struct Feeds {
    db: TestDatabase,
    notifications: Notifications,
}

impl Feeds {
    async fn new() -> Self {
        let db = fresh_database("notification").await;
        service_runtime::db::migrate(
            &db.pool,
            <notification_service::Notification as service_host::kit::Declaration>::MIGRATOR,
        )
        .await
        .unwrap();
        let notifications = Notifications::new(db.pool.clone());
        Self { db, notifications }
    }

    /// Hands `event` to its source's feed as the consumer loop would.
    async fn deliver(&self, event: &Event) -> Result<(), Failure> {
        let delivery = Delivery {
            topic: e2e::topic(&format!("{}-events", event.source.service())),
            key: Some(event.key.clone()),
            message_id: event.message_id.clone(),
            message_type: None,
            correlation_id: None,
            traceparent: None,
            tracestate: None,
            properties: HashMap::new(),
            payload: event.payload.clone(),
            identity_problem: None,
            occurred_at: None,
        };
        EventFeed::new(event.source, self.notifications.clone())
            .handle(&delivery)
            .await
    }

    async fn applied(&self, event: &Event) {
        self.deliver(event)
            .await
            .unwrap_or_else(|f| panic!("{event:?} failed: {f:?}"));
    }

    /// (sequence, kind, title, body, subject_type, correlation_id) of the user's notifications.
    async fn of(&self, user: Uuid) -> Vec<(i64, String, String, String, String, String)> {
        sqlx::query_as(
            "select sequence, kind, title, body, subject_type, correlation_id from notifications where user_id = $1 order by sequence",
        )
        .bind(user)
        .fetch_all(&self.db.pool)
        .await
        .unwrap()
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }
}

fn kinds(rows: &[(i64, String, String, String, String, String)]) -> Vec<(i64, &str)> {
    rows.iter().map(|r| (r.0, r.1.as_str())).collect()
}

#[tokio::test]
async fn each_event_tells_the_users_it_concerns_in_their_own_sequence() {
    let feeds = Feeds::new().await;
    let (advertiser, creator, campaign_id) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let created = created(campaign_id, advertiser, "Summer launch");
    let events = [
        created.clone(),
        accepted(campaign_id, creator),
        evidence(campaign_id, creator),
        purchase_tracked(campaign_id, creator),
        earned(campaign_id, creator, money(250, "USD")),
        earned(campaign_id, creator, money(500, "JPY")),
        commission_message(commission_event::Event::CommissionReserved(
            Default::default(),
        )),
        payout(creator, requested),
        payout(creator, |p| {
            payment_event::Event::PaymentProcessed(payment_pb::PaymentProcessed { payout: p })
        }),
        payout(creator, |p| {
            payment_event::Event::PayoutCompleted(payment_pb::PayoutCompleted { payout: p })
        }),
        payout(creator, |p| {
            payment_event::Event::PaymentFailed(payment_pb::PaymentFailed { payout: p })
        }),
        payout(creator, |p| {
            payment_event::Event::PayoutRejected(payment_pb::PayoutRejected { payout: p })
        }),
        paused(campaign_id, advertiser, "Summer launch", 3),
    ];
    for e in &events {
        feeds.applied(e).await;
    }

    let advertiser_rows = feeds.of(advertiser).await;
    assert_eq!(
        kinds(&advertiser_rows),
        [
            (1, "campaign_created"),
            (2, "campaign_accepted"),
            (3, "evidence_submitted"),
            (4, "campaign_status_changed"),
        ]
    );
    assert_eq!(advertiser_rows[0].5, format!("corr-{}", created.message_id));
    assert_eq!(
        advertiser_rows[2].3,
        "A creator submitted a video as evidence for \"Summer launch\"."
    );
    assert_eq!(advertiser_rows[3].2, "Campaign paused");
    let creator_rows = feeds.of(creator).await;
    assert_eq!(
        kinds(&creator_rows),
        [
            (1, "campaign_accepted"),
            (2, "commission_earned"),
            (3, "commission_earned"),
            (4, "payout_requested"),
            (5, "payout_completed"),
            (6, "payout_failed"),
            (7, "payout_rejected"),
        ]
    );
    assert_eq!(
        creator_rows[1].3,
        "You earned 2.50 USD from a purchase on \"Summer launch\"."
    );
    assert_eq!(
        creator_rows[2].3,
        "You earned 500 JPY from a purchase on \"Summer launch\"."
    );
    assert_eq!(
        (creator_rows[4].2.as_str(), creator_rows[4].4.as_str()),
        ("Payout completed", "payout")
    );
    assert!(creator_rows[4].3.contains("12.00 EUR"));
    // Events that tell nobody anything are still recorded as processed.
    assert_eq!(
        feeds
            .count("select count(*) from inbox where outcome = 'applied'")
            .await,
        events.len() as i64
    );
}

#[tokio::test]
async fn the_same_message_twice_makes_one_notification() {
    let feeds = Feeds::new().await;
    let (advertiser, campaign_id) = (Uuid::now_v7(), Uuid::now_v7());
    let e = created(campaign_id, advertiser, "Twice");
    feeds.applied(&e).await;
    feeds.applied(&e).await;
    assert_eq!(
        kinds(&feeds.of(advertiser).await),
        [(1, "campaign_created")]
    );
    assert_eq!(feeds.count("select count(*) from inbox").await, 1);
    // Concurrent duplicates too: the inbox key makes the second wait for the first and skip.
    let creator = Uuid::now_v7();
    let e = payout(creator, requested);
    let (a, b) = tokio::join!(feeds.deliver(&e), feeds.deliver(&e));
    assert!(a.is_ok() && b.is_ok());
    assert_eq!(kinds(&feeds.of(creator).await), [(1, "payout_requested")]);
}

#[tokio::test]
async fn an_acceptance_before_its_campaign_is_retried_until_the_campaign_arrives() {
    let feeds = Feeds::new().await;
    let (advertiser, creator, campaign_id) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let acceptance = accepted(campaign_id, creator);
    let early = feeds.deliver(&acceptance).await;
    assert!(matches!(early, Err(Failure::Transient(_))), "{early:?}");
    assert_eq!(
        feeds.count("select count(*) from inbox").await,
        0,
        "not recorded: retried"
    );
    assert!(feeds.of(creator).await.is_empty());

    feeds
        .applied(&created(campaign_id, advertiser, "Late"))
        .await;
    feeds.applied(&acceptance).await;
    assert_eq!(kinds(&feeds.of(creator).await), [(1, "campaign_accepted")]);
    assert_eq!(
        kinds(&feeds.of(advertiser).await),
        [(1, "campaign_created"), (2, "campaign_accepted")]
    );
    // A commission on a campaign not heard of yet waits for it too (its text names it).
    let (stranger, later) = (Uuid::now_v7(), Uuid::now_v7());
    let commission = earned(later, stranger, money(1, "KWD"));
    assert!(matches!(
        feeds.deliver(&commission).await,
        Err(Failure::Transient(_))
    ));
    assert!(feeds.of(stranger).await.is_empty(), "nothing written");
    feeds.applied(&created(later, advertiser, "Later")).await;
    feeds.applied(&commission).await;
    assert_eq!(
        feeds.of(stranger).await[0].3,
        "You earned 0.001 KWD from a purchase on \"Later\"."
    );
}

#[tokio::test]
async fn a_commission_s_approval_decline_and_reversal_tell_its_creator_once_with_the_reason() {
    let feeds = Feeds::new().await;
    let (advertiser, creator, campaign_id) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let approved = commission_message(commission_event::Event::CommissionApproved(
        commission_pb::CommissionApproved {
            commission: pending_commission(campaign_id, creator),
            balance: None,
            early: false,
        },
    ));
    // Like every commission, it waits for its campaign (its text names it).
    assert!(matches!(
        feeds.deliver(&approved).await,
        Err(Failure::Transient(_))
    ));
    feeds
        .applied(&created(campaign_id, advertiser, "Summer launch"))
        .await;
    let declined = commission_message(commission_event::Event::CommissionDeclined(
        commission_pb::CommissionDeclined {
            commission: pending_commission(campaign_id, creator),
            balance: None,
            reason: "the order was cancelled".into(),
        },
    ));
    let reversed = commission_message(commission_event::Event::CommissionReversed(
        commission_pb::CommissionReversed {
            commission: pending_commission(campaign_id, creator),
            refund_id: "refund-1".into(),
            kind: "chargeback".into(),
            reason: "card disputed".into(),
            reversed: money(0, "EUR"),
            clawed_back: money(500, "EUR"),
            refunded: money(5000, "EUR"),
            ..Default::default()
        },
    ));
    for e in [&approved, &declined, &declined, &reversed, &reversed] {
        feeds.applied(e).await;
    }

    let rows = feeds.of(creator).await;
    assert_eq!(
        kinds(&rows),
        [
            (1, "commission_approved"),
            (2, "commission_declined"),
            (3, "commission_reversed"),
        ],
        "one notification per event, redeliveries skipped"
    );
    assert_eq!(
        (rows[0].2.as_str(), rows[0].3.as_str(), rows[0].4.as_str()),
        (
            "Commission approved",
            "Your commission of 5.00 EUR on \"Summer launch\" is approved: its hold is over and it is in your available balance.",
            "commission"
        )
    );
    assert_eq!(
        rows[1].3,
        "The advertiser declined your commission of 5.00 EUR on \"Summer launch\": the order was cancelled. It earns nothing."
    );
    assert_eq!(
        (rows[2].2.as_str(), rows[2].3.as_str()),
        (
            "Commission clawed back",
            "A chargeback of the purchase on \"Summer launch\" (card disputed) took back 5.00 EUR of your commission of 5.00 EUR after it was paid out or reserved. The 5.00 EUR will be deducted from your next payout."
        )
    );
    assert_eq!(
        kinds(&feeds.of(advertiser).await),
        [(1, "campaign_created")],
        "the advertiser is not told of their own decisions"
    );
    // On the wire, each has a kind of its own.
    let wire: Vec<NotificationKind> = rows
        .iter()
        .map(|r| {
            notification_service::app::messages::kind(notification_service::domain::Kind::parse(
                &r.1,
            ))
        })
        .collect();
    assert_eq!(
        wire,
        [
            NotificationKind::CommissionApproved,
            NotificationKind::CommissionDeclined,
            NotificationKind::CommissionReversed,
        ]
    );
}

#[tokio::test]
async fn a_disabled_webhook_endpoint_tells_its_owner_once_why_and_how_to_enable_it_again() {
    let feeds = Feeds::new().await;
    let (owner, endpoint) = (Uuid::now_v7(), Uuid::now_v7());
    let disabled = endpoint_disabled(endpoint, owner, "the endpoint answered 410 Gone");
    let rejected = webhook_message(
        endpoint,
        webhook_event::Event::CommandRejected(Default::default()),
    );
    // It needs no campaign: applied at once, a redelivery skipped, a rejection tells nobody.
    for e in [&disabled, &disabled, &rejected] {
        feeds.applied(e).await;
    }

    let rows = feeds.of(owner).await;
    assert_eq!(kinds(&rows), [(1, "webhook_endpoint_disabled")]);
    assert_eq!(
        (rows[0].2.as_str(), rows[0].3.as_str(), rows[0].4.as_str()),
        (
            "Webhook endpoint disabled",
            format!("We stopped sending webhooks to your endpoint https://partner.example: the endpoint answered 410 Gone. Once it works again, enable it: PATCH /api/v1/webhooks/endpoints/{endpoint} with {{\"enabled\": true}}. The messages waiting for it are sent then.").as_str(),
            "webhook_endpoint"
        )
    );
    assert_eq!(rows[0].5, format!("corr-{}", disabled.message_id));
    assert_eq!(
        feeds
            .count(&format!(
                "select count(*) from notifications where subject_id = '{endpoint}'"
            ))
            .await,
        1
    );
    assert_eq!(
        feeds
            .count("select count(*) from inbox where outcome = 'applied' and consumer = 'notification/webhook-events'")
            .await,
        2
    );
    assert_eq!(
        notification_service::app::messages::kind(notification_service::domain::Kind::parse(
            &rows[0].1
        )),
        NotificationKind::WebhookEndpointDisabled
    );
}

#[tokio::test]
async fn undecodable_messages_are_rejected_and_recorded() {
    let feeds = Feeds::new().await;
    let garbage = Event {
        source: Source::Payment,
        key: "k".into(),
        message_id: Uuid::now_v7().to_string(),
        payload: vec![0xff, 0xff, 0xff, 0xff],
    };
    let outcome = feeds.deliver(&garbage).await;
    assert!(matches!(outcome, Err(Failure::Rejected(_))), "{outcome:?}");
    assert_eq!(
        feeds
            .count("select count(*) from inbox where outcome = 'rejected' and consumer = 'notification/payment-events'")
            .await,
        1
    );
}

#[tokio::test]
async fn concurrent_notifications_for_one_user_are_numbered_one_to_n_without_gaps() {
    let feeds = Feeds::new().await;
    let creator = Uuid::now_v7();
    let events: Vec<Event> = (0..20).map(|_| payout(creator, requested)).collect();
    let outcomes = futures::future::join_all(events.iter().map(|e| feeds.deliver(e))).await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let sequences: Vec<i64> = feeds.of(creator).await.iter().map(|r| r.0).collect();
    assert_eq!(sequences, (1..=20).collect::<Vec<_>>());
    assert_eq!(
        feeds.count("select last_sequence from user_streams").await,
        20
    );
}

// ---- the service, over gRPC ----

struct TestApp {
    feeds: Feeds,
    namespace: e2e::TestNamespace,
    grpc: NotificationServiceClient<Channel>,
    served: e2e::Served,
}

/// The service on its own database and namespace; live streams re-read every `poll`.
async fn spawn_app(poll: &str) -> TestApp {
    let feeds = Feeds::new().await;
    let namespace = fresh_namespace().await;
    let served = e2e::serve_service::<Notification>(
        &feeds.db.url,
        Some(&*namespace),
        &[
            &e2e::QUICK_RETRIES[..],
            &["--subscribe-poll-interval", poll, "--shutdown-grace", "30s"],
        ]
        .concat(),
    )
    .await;
    let grpc = NotificationServiceClient::connect(served.url())
        .await
        .unwrap();
    TestApp {
        feeds,
        namespace,
        grpc,
        served,
    }
}

impl TestApp {
    /// Gives `user` `n` notifications (payout requests) through the feed.
    async fn notify(&self, user: Uuid, n: usize) {
        for _ in 0..n {
            self.feeds.applied(&payout(user, requested)).await;
        }
    }

    async fn list(
        &mut self,
        user: Uuid,
        page_size: i32,
        page_token: &str,
        unread_only: bool,
    ) -> pb::ListNotificationsResponse {
        self.grpc
            .list_notifications(pb::ListNotificationsRequest {
                user_id: user.to_string(),
                page_size,
                page_token: page_token.into(),
                unread_only,
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn mark_read(&mut self, user: Uuid, id: &str) -> Result<pb::Notification, tonic::Status> {
        let request = pb::MarkReadRequest {
            user_id: user.to_string(),
            notification_id: id.into(),
        };
        Ok(self
            .grpc
            .mark_read(request)
            .await?
            .into_inner()
            .notification
            .unwrap())
    }
}

fn sequences(page: &pb::ListNotificationsResponse) -> Vec<i64> {
    page.notifications.iter().map(|n| n.sequence).collect()
}

fn violated_fields(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    e2e::violated_fields(status)
}

#[tokio::test]
async fn list_pages_newest_first_and_counts_what_is_unread() {
    let mut app = spawn_app("2s").await;
    let (user, other) = (Uuid::now_v7(), Uuid::now_v7());
    app.notify(user, 5).await;
    app.notify(other, 1).await;

    let first = app.list(user, 2, "", false).await;
    assert_eq!(sequences(&first), [5, 4]);
    assert_eq!(first.unread_count, 5);
    let n = &first.notifications[0];
    assert_eq!(
        (
            n.user_id.as_str(),
            n.kind(),
            n.subject_type.as_str(),
            n.read_at.is_none()
        ),
        (
            user.to_string().as_str(),
            NotificationKind::PayoutRequested,
            "payout",
            true
        )
    );
    let second = app.list(user, 2, &first.next_page_token, false).await;
    assert_eq!(sequences(&second), [3, 2]);
    let last = app.list(user, 2, &second.next_page_token, false).await;
    assert_eq!(
        (sequences(&last), last.next_page_token.as_str()),
        (vec![1], "")
    );
    assert_eq!(
        sequences(&app.list(user, 0, "", false).await),
        [5, 4, 3, 2, 1],
        "0 means 20"
    );

    let third = second.notifications[0].id.clone();
    app.mark_read(user, &third).await.unwrap();
    let unread = app.list(user, 0, "", true).await;
    assert_eq!(
        (sequences(&unread), unread.unread_count),
        (vec![5, 4, 2, 1], 4)
    );
    app.served.stop().await;
}

#[tokio::test]
async fn bad_requests_are_invalid_argument_with_field_violations() {
    let mut app = spawn_app("2s").await;
    let (user, other) = (Uuid::now_v7(), Uuid::now_v7());
    app.notify(other, 1).await;
    let others = app.list(other, 0, "", false).await.notifications[0]
        .id
        .clone();
    let list = |user_id: &str, page_size: i32, page_token: &str| pb::ListNotificationsRequest {
        user_id: user_id.into(),
        page_size,
        page_token: page_token.into(),
        unread_only: false,
    };
    for (request, fields) in [
        (list("", 0, ""), vec!["user_id"]),
        (
            list("nope", 101, "x"),
            vec!["user_id", "page_size", "page_token"],
        ),
        (list(&user.to_string(), -1, ""), vec!["page_size"]),
        // Another user's notification is not a token of this user's listing.
        (list(&user.to_string(), 10, &others), vec!["page_token"]),
    ] {
        let status = app.grpc.list_notifications(request).await.unwrap_err();
        assert_eq!(violated_fields(&status), fields);
    }
    let subscribe = |user_id: &str, after_sequence| pb::SubscribeRequest {
        user_id: user_id.into(),
        after_sequence,
    };
    for (request, fields) in [
        (subscribe("", 0), vec!["user_id"]),
        (subscribe(&user.to_string(), -1), vec!["after_sequence"]),
    ] {
        let status = app.grpc.subscribe(request).await.unwrap_err();
        assert_eq!(violated_fields(&status), fields);
    }
    let status = app.mark_read(user, "x").await.unwrap_err();
    assert_eq!(violated_fields(&status), ["notification_id"]);
    app.served.stop().await;
}

#[tokio::test]
async fn mark_read_is_idempotent_and_only_for_the_owner() {
    let mut app = spawn_app("2s").await;
    let (user, other) = (Uuid::now_v7(), Uuid::now_v7());
    app.notify(user, 1).await;
    let id = app.list(user, 0, "", false).await.notifications[0]
        .id
        .clone();

    let first = app.mark_read(user, &id).await.unwrap();
    assert!(first.read_at.is_some());
    let again = app.mark_read(user, &id).await.unwrap();
    assert_eq!(again.read_at, first.read_at, "read_at stays the first time");
    assert_eq!(app.list(user, 0, "", false).await.unread_count, 0);

    let theirs = app.mark_read(other, &id).await.unwrap_err();
    assert_eq!(theirs.code(), Code::NotFound);
    let unknown = app
        .mark_read(user, &Uuid::now_v7().to_string())
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    app.served.stop().await;
}

#[tokio::test]
async fn subscribe_replays_after_a_sequence_then_streams_new_ones_live_without_duplicates() {
    // A re-read interval longer than the test: live notifications must come from NOTIFY.
    let mut app = spawn_app("120s").await;
    let (user, other) = (Uuid::now_v7(), Uuid::now_v7());
    app.notify(user, 3).await;
    let mut stream = app
        .grpc
        .subscribe(pb::SubscribeRequest {
            user_id: user.to_string(),
            after_sequence: 1,
        })
        .await
        .unwrap()
        .into_inner();
    let mut next = async || {
        let received = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("a notification within the wait")
            .expect("the stream is open")
            .expect("no error");
        received.notification.unwrap()
    };
    assert_eq!(next().await.sequence, 2);
    assert_eq!(next().await.sequence, 3);

    // Another user's notification wakes nobody here; this user's next ones arrive live, once.
    app.notify(other, 1).await;
    app.notify(user, 1).await;
    let live = next().await;
    assert_eq!((live.sequence, live.user_id.clone()), (4, user.to_string()));
    app.notify(user, 1).await;
    assert_eq!(next().await.sequence, 5, "the one after 4, not 4 again");

    // Shutdown ends open streams at once rather than waiting out the grace period.
    let stopped = tokio::time::timeout(Duration::from_secs(10), app.served.stop()).await;
    assert!(stopped.is_ok(), "the server stopped with a stream open");
    let end = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("the stream ends");
    assert!(!matches!(end, Some(Ok(_))), "{end:?}");
}

#[tokio::test]
async fn events_published_on_the_broker_become_notifications() {
    let app = spawn_app("2s").await;
    let client = e2e::pulsar().await;
    let (advertiser, creator, campaign_id) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let events = [
        created(campaign_id, advertiser, "On air"),
        accepted(campaign_id, creator),
        earned(campaign_id, creator, money(1999, "EUR")),
    ];
    // The campaign's events in version order (one key: the consumer applies a key strictly in
    // order, so an acceptance never overtakes its campaign; one arriving before it is covered by
    // `an_acceptance_before_its_campaign_is_retried_until_the_campaign_arrives`); then the
    // commission twice (applied once) and an event that tells nobody, keyed like the commission:
    // once that one is processed, so is the duplicate before it.
    let mut after = commission_message(commission_event::Event::CommissionReserved(
        Default::default(),
    ));
    after.key = events[2].key.clone();
    // And the webhook service's feed: an endpoint of the advertiser disabled.
    let disabled = endpoint_disabled(Uuid::now_v7(), advertiser, "the endpoint answered 410 Gone");
    let pool = app.feeds.db.pool.clone();
    for batch in [
        vec![&events[0], &events[1]],
        vec![&events[2], &events[2], &after],
        vec![&disabled],
    ] {
        for e in &batch {
            let topic = app
                .namespace
                .topic(&format!("{}-events", e.source.service()));
            publish(
                &client,
                &topic,
                &e.key,
                &e.message_id,
                "test.v1",
                "corr",
                e.payload.clone(),
            )
            .await;
        }
        e2e::processed(&pool, &batch[batch.len() - 1].message_id, WAIT).await;
    }
    let mut grpc = app.grpc.clone();
    let listed = grpc
        .list_notifications(pb::ListNotificationsRequest {
            user_id: creator.to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut bodies: Vec<&str> = listed
        .notifications
        .iter()
        .map(|n| n.body.as_str())
        .collect();
    bodies.sort_unstable();
    assert_eq!(
        bodies,
        [
            "You earned 19.99 EUR from a purchase on \"On air\".",
            "You joined the campaign \"On air\". Share your link to start earning."
        ]
    );
    let advertiser_page = grpc
        .list_notifications(pb::ListNotificationsRequest {
            user_id: advertiser.to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(advertiser_page.unread_count, 3);
    assert_eq!(
        advertiser_page.notifications[0].kind(),
        NotificationKind::WebhookEndpointDisabled,
        "the newest"
    );
    app.served.stop().await;
}
