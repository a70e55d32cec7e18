//! The analytics service on real PostgreSQL, Pulsar and gRPC over TCP, in its own database and
//! Pulsar namespace: tracking links' clicks and conversions, published on `tracking-events` as the
//! relay does and applied by the real consumer, read per link, per sub-id and per campaign (a
//! conversion's purchase counted once), and rebuilt equal by a replay.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use prost::Message as _;
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

use affiliate_proto::analytics::analytics_service_client::AnalyticsServiceClient;
use affiliate_proto::analytics::{self as pb};
use affiliate_proto::common::{MessageMetadata, Money};
use affiliate_proto::tracking::{
    self as tracking_pb, ClickVerdict, ConversionStatus, TrackingEventEnvelope, TrackingEventKind,
    tracking_event_envelope::Event,
};
use analytics_service::Analytics;
use e2e::{TestDatabase, eventually, fresh_database, fresh_namespace, pulsar, violated_fields};
use service_runtime::time::timestamp;

const WAIT: Duration = Duration::from_secs(60);

/// The day of the clicks and the day of the sales.
const CLICK_DAY: &str = "2026-11-30";
const SALE_DAY: &str = "2026-12-01";

struct TestApp {
    db: TestDatabase,
    namespace: e2e::TestNamespace,
    grpc: AnalyticsServiceClient<Channel>,
    client: pulsar::Pulsar<pulsar::TokioExecutor>,
    served: e2e::Served,
}

async fn spawn_app() -> TestApp {
    let db = fresh_database("analytics").await;
    let namespace = fresh_namespace().await;
    let admin_url = e2e::pulsar_admin_url();
    let mut flags = vec!["--pulsar-admin-url", &admin_url, "--lag-interval", "200ms"];
    flags.extend(e2e::QUICK_RETRIES);
    let served = e2e::serve_service::<Analytics>(&db.url, Some(&*namespace), &flags).await;
    let grpc = AnalyticsServiceClient::connect(served.url()).await.unwrap();
    TestApp {
        db,
        namespace,
        grpc,
        client: pulsar().await,
        served,
    }
}

/// A creator's link on a campaign, with its sub-ids.
#[derive(Clone)]
struct Link {
    campaign: Uuid,
    creator: Uuid,
    id: Uuid,
    sub_ids: tracking_pb::SubIds,
}

fn at(day: &str, time: &str) -> DateTime<Utc> {
    format!("{day}T{time}Z").parse().unwrap()
}

fn eur(amount_minor: i64) -> Option<Money> {
    Some(Money {
        amount_minor,
        currency: "EUR".into(),
    })
}

impl TestApp {
    /// Publishes a tracking event about `aggregate` as the relay would; its message id.
    async fn publish(&self, aggregate_type: &str, aggregate: &str, event: Event) -> String {
        let message_id = Uuid::now_v7().to_string();
        let message_type = event.message_type();
        let envelope = TrackingEventEnvelope {
            metadata: Some(MessageMetadata {
                message_id: message_id.clone(),
                message_type: message_type.to_owned(),
                occurred_at: Some(timestamp(Utc::now())),
                aggregate_type: aggregate_type.to_owned(),
                aggregate_id: aggregate.to_owned(),
                aggregate_version: 1,
                correlation_id: aggregate.to_owned(),
                causation_id: String::new(),
            }),
            event: Some(event),
        };
        e2e::publish(
            &self.client,
            &self.namespace.topic("tracking-events"),
            aggregate,
            &message_id,
            message_type,
            aggregate,
            envelope.encode_to_vec(),
        )
        .await;
        message_id
    }

    async fn click(&self, link: &Link, verdict: ClickVerdict) {
        let id = Uuid::now_v7().to_string();
        let click = tracking_pb::Click {
            id: id.clone(),
            link_id: link.id.to_string(),
            campaign_id: link.campaign.to_string(),
            creator_id: link.creator.to_string(),
            sub_ids: Some(link.sub_ids.clone()),
            clicked_at: Some(timestamp(at(CLICK_DAY, "10:00:00"))),
            verdict: verdict.into(),
            ..Default::default()
        };
        self.publish(
            "click",
            &id,
            Event::ClickRecorded(tracking_pb::ClickRecorded { click: Some(click) }),
        )
        .await;
    }

    /// A conversion recorded as `status`: its message, and when accepted the purchase it became
    /// (tracking_event.created.v1), as the tracking service publishes them. The conversion.
    async fn convert(
        &self,
        link: &Link,
        status: ConversionStatus,
        amount_minor: i64,
    ) -> tracking_pb::Conversion {
        let conversion = tracking_pb::Conversion {
            id: Uuid::now_v7().to_string(),
            order_id: Uuid::now_v7().to_string(),
            link_id: link.id.to_string(),
            campaign_id: link.campaign.to_string(),
            creator_id: link.creator.to_string(),
            sub_ids: Some(link.sub_ids.clone()),
            amount: eur(amount_minor),
            converted_at: Some(timestamp(at(SALE_DAY, "09:30:00"))),
            status: status.into(),
            ..Default::default()
        };
        if status == ConversionStatus::Accepted {
            self.purchase(link, amount_minor).await;
        }
        self.publish(
            "conversion",
            &conversion.id,
            Event::ConversionRecorded(tracking_pb::ConversionRecorded {
                conversion: Some(conversion.clone()),
            }),
        )
        .await;
        conversion
    }

    /// A held conversion reviewed: approved (its purchase published too) or declined.
    async fn review(&self, link: &Link, held: tracking_pb::Conversion, approve: bool) {
        let status = if approve {
            let amount = held.amount.as_ref().map_or(0, |a| a.amount_minor);
            self.purchase(link, amount).await;
            ConversionStatus::Accepted
        } else {
            ConversionStatus::Declined
        };
        let conversion = tracking_pb::Conversion {
            status: status.into(),
            ..held
        };
        self.publish(
            "conversion",
            &conversion.id.clone(),
            Event::ConversionReviewed(tracking_pb::ConversionReviewed {
                conversion: Some(conversion),
            }),
        )
        .await;
    }

    /// The purchase a conversion became: it names the campaign and the creator, not the link.
    async fn purchase(&self, link: &Link, amount_minor: i64) {
        let id = Uuid::now_v7().to_string();
        let event = tracking_pb::TrackingEvent {
            id: id.clone(),
            campaign_id: link.campaign.to_string(),
            creator_id: link.creator.to_string(),
            kind: TrackingEventKind::Purchase.into(),
            amount: eur(amount_minor),
            occurred_at: Some(timestamp(at(SALE_DAY, "09:30:00"))),
            ..Default::default()
        };
        self.publish(
            "tracking_event",
            &id,
            Event::TrackingEventCreated(tracking_pb::TrackingEventCreated { event: Some(event) }),
        )
        .await;
    }

    async fn link_stats(&self, link: &Link) -> pb::GetLinkStatsResponse {
        self.grpc
            .clone()
            .get_link_stats(pb::GetLinkStatsRequest {
                link_id: link.id.to_string(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn sub_id_stats(
        &self,
        creator: Uuid,
        sub: u32,
        value: &str,
    ) -> pb::GetSubIdStatsResponse {
        self.grpc
            .clone()
            .get_sub_id_stats(pb::GetSubIdStatsRequest {
                creator_id: creator.to_string(),
                sub,
                value: value.to_owned(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn campaign_stats(&self, campaign: Uuid) -> pb::GetCampaignStatsResponse {
        self.grpc
            .clone()
            .get_campaign_stats(pb::GetCampaignStatsRequest {
                campaign_id: campaign.to_string(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// Every statistic the test reads, as (what, totals) pairs.
    async fn everything(&self, links: &[Link; 2]) -> Vec<(&'static str, Seen)> {
        let [first, second] = links;
        vec![
            ("first link", seen(self.link_stats(first).await.totals)),
            ("second link", seen(self.link_stats(second).await.totals)),
            (
                "sub1 video-42",
                seen(self.sub_id_stats(first.creator, 1, "video-42").await.totals),
            ),
            (
                "sub3 pinned",
                seen(self.sub_id_stats(first.creator, 3, "pinned").await.totals),
            ),
            (
                "campaign",
                seen(self.campaign_stats(first.campaign).await.totals),
            ),
        ]
    }

    async fn stop(self) {
        self.served.stop().await;
    }
}

/// The counters and EUR revenue a test compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Seen {
    clicks: i64,
    unique_clicks: i64,
    bot_clicks: i64,
    conversions: i64,
    purchases: i64,
    revenue_minor: i64,
}

fn seen(totals: Option<pb::Totals>) -> Seen {
    let totals = totals.unwrap_or_default();
    let c = totals.counts.unwrap_or_default();
    Seen {
        clicks: c.clicks,
        unique_clicks: c.unique_clicks,
        bot_clicks: c.bot_clicks,
        conversions: c.conversions,
        purchases: c.purchases,
        revenue_minor: totals
            .amounts
            .iter()
            .filter(|a| a.currency == "EUR")
            .map(|a| a.revenue_minor)
            .sum(),
    }
}

/// Two links of one creator on one campaign, both with sub1 = video-42, the first also with
/// sub3 = pinned; their clicks, and conversions accepted, held then approved, held then
/// declined, each accepted one with the purchase it became. What each read should then say.
async fn traffic(app: &TestApp) -> ([Link; 2], Vec<(&'static str, Seen)>) {
    let (campaign, creator) = (Uuid::now_v7(), Uuid::now_v7());
    let first = Link {
        campaign,
        creator,
        id: Uuid::now_v7(),
        sub_ids: tracking_pb::SubIds {
            sub1: "video-42".into(),
            sub3: "pinned".into(),
            ..Default::default()
        },
    };
    let second = Link {
        id: Uuid::now_v7(),
        sub_ids: tracking_pb::SubIds {
            sub1: "video-42".into(),
            ..Default::default()
        },
        ..first.clone()
    };
    for verdict in [
        ClickVerdict::Unique,
        ClickVerdict::Unique,
        ClickVerdict::Duplicate,
        ClickVerdict::Bot,
    ] {
        app.click(&first, verdict).await;
    }
    app.click(&second, ClickVerdict::Unique).await;

    app.convert(&first, ConversionStatus::Accepted, 2500).await;
    let approved = app.convert(&first, ConversionStatus::Held, 700).await;
    app.review(&first, approved, true).await;
    let declined = app.convert(&first, ConversionStatus::Held, 300).await;
    app.review(&first, declined, false).await;
    app.convert(&second, ConversionStatus::Accepted, 1000).await;

    let first_link = Seen {
        clicks: 3,
        unique_clicks: 2,
        bot_clicks: 1,
        conversions: 3,
        purchases: 2,
        revenue_minor: 3200,
    };
    let both_links = Seen {
        clicks: 4,
        unique_clicks: 3,
        bot_clicks: 1,
        conversions: 4,
        purchases: 3,
        revenue_minor: 4200,
    };
    let expected = vec![
        ("first link", first_link),
        (
            "second link",
            Seen {
                clicks: 1,
                unique_clicks: 1,
                bot_clicks: 0,
                conversions: 1,
                purchases: 1,
                revenue_minor: 1000,
            },
        ),
        ("sub1 video-42", both_links),
        ("sub3 pinned", first_link),
        // Its purchases and revenue from the tracking events only: none counted twice.
        ("campaign", both_links),
    ];
    ([first, second], expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_and_conversions_count_per_link_sub_id_and_campaign_and_a_replay_rebuilds_them() {
    let mut app = spawn_app().await;
    let (links, expected) = traffic(&app).await;

    let live = eventually(
        WAIT,
        "the statistics count the clicks and conversions",
        || {
            let (app, links, expected) = (&app, &links, &expected);
            async move {
                let now = app.everything(links).await;
                (now == *expected).then_some(now)
            }
        },
    )
    .await;
    assert_eq!(live, expected);

    // By day: the clicks on the day they were clicked, the conversions on the day of the sale.
    let first = app.link_stats(&links[0]).await;
    let days: Vec<(String, i64, i64, i64)> = first
        .days
        .iter()
        .map(|d| {
            let c = d.counts.unwrap_or_default();
            (d.date.clone(), c.clicks, c.conversions, c.purchases)
        })
        .collect();
    assert_eq!(
        days,
        [
            (CLICK_DAY.to_owned(), 3, 0, 0),
            (SALE_DAY.to_owned(), 0, 3, 2)
        ]
    );
    let totals = first.totals.unwrap().counts.unwrap();
    assert!((totals.conversion_rate - 2.0 / 3.0).abs() < 1e-12);
    let sale_day_only = app
        .grpc
        .get_sub_id_stats(pb::GetSubIdStatsRequest {
            creator_id: links[0].creator.to_string(),
            sub: 3,
            value: "pinned".into(),
            from_date: SALE_DAY.into(),
            to_date: SALE_DAY.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sale_day_only.days.len(), 1);
    assert_eq!(sale_day_only.days[0].date, SALE_DAY);
    assert_eq!(
        seen(sale_day_only.totals),
        expected[3].1,
        "the totals cover every day"
    );

    // A replay drops every row (the links' and sub-ids' too) and rebuilds the same numbers: the
    // rows of links and sub-ids spoiled first must come back right.
    for spoil in [
        "update stats_days set clicks = clicks + 100 where subject_kind in ('link', 'sub_id')",
        "update stats_amounts set revenue_minor = revenue_minor + 100 where subject_kind in ('link', 'sub_id')",
    ] {
        let spoiled = sqlx::query(spoil).execute(&app.db.pool).await.unwrap();
        assert!(spoiled.rows_affected() > 0, "{spoil}");
    }
    assert_ne!(app.everything(&links).await, expected);
    // UNAVAILABLE (the broker's admin API busy) asks for a retry with backoff.
    eventually(WAIT, "the replay starts", || {
        let mut grpc = app.grpc.clone();
        async move {
            match grpc.replay(pb::ReplayRequest {}).await {
                Ok(_) => Some(()),
                Err(status) if status.code() == Code::Unavailable => None,
                Err(status) => panic!("replay: {status:?}"),
            }
        }
    })
    .await;
    let rebuilt = eventually(WAIT, "the replay caught up", || {
        let (app, links, expected) = (&app, &links, &expected);
        async move {
            let status = app
                .grpc
                .clone()
                .get_replay_status(pb::GetReplayStatusRequest {})
                .await
                .ok()?
                .into_inner();
            let now = app.everything(links).await;
            (status.caught_up && now == *expected).then_some(now)
        }
    })
    .await;
    assert_eq!(rebuilt, live);

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_and_sub_id_reads_refuse_bad_input_field_by_field() {
    let mut app = spawn_app().await;

    let status = app
        .grpc
        .get_link_stats(pb::GetLinkStatsRequest {
            link_id: "not-a-uuid".into(),
            from_date: "2026-12-02".into(),
            to_date: "2026-12-01".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["link_id", "to_date"]);

    let status = app
        .grpc
        .get_sub_id_stats(pb::GetSubIdStatsRequest {
            creator_id: String::new(),
            sub: 6,
            value: "  ".into(),
            from_date: "yesterday".into(),
            to_date: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        ["creator_id", "sub", "value", "from_date"]
    );

    let status = app
        .grpc
        .get_sub_id_stats(pb::GetSubIdStatsRequest {
            creator_id: Uuid::now_v7().to_string(),
            sub: 0,
            value: "x".repeat(101),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["sub", "value"]);

    // Nothing seen yet: empty, not an error.
    let empty = app.sub_id_stats(Uuid::now_v7(), 5, "never-clicked").await;
    assert!(empty.days.is_empty());
    assert_eq!(seen(empty.totals), Seen::default());

    app.stop().await;
}
