//! The read side end to end: the scripted business workflow runs on the whole platform with the
//! analytics service; its campaign and creator statistics equal what the services' own databases
//! say happened (counted here, independently of the projection); one payout's workflow lists
//! every step of the saga in causal order under one correlation id and one trace id; an
//! aggregate's history comes by version; and after a replay from the earliest message the
//! statistics are rebuilt equal to the live ones.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use uuid::Uuid;

use affiliate_proto::analytics::analytics_service_client::AnalyticsServiceClient;
use affiliate_proto::analytics::{self as pb, MessageKind};
use affiliate_proto::tracking::{
    self as tracking_pb, tracking_service_client::TrackingServiceClient,
};
use e2e::eventually;
use e2e::platform::{ANALYTICS, Platform};
use e2e::statistics::{Seen, counted, seen};
use e2e::workflow::{CREATOR_1, CREATOR_2, Door, Driver, business_workflow};

const WAIT: Duration = Duration::from_secs(90);

struct Stats {
    campaign: Seen,
    creators: [Seen; 2],
    budget_left: Option<i64>,
}

async fn stats(client: &mut AnalyticsServiceClient<Channel>, campaign: &str) -> Stats {
    let c = client
        .get_campaign_stats(pb::GetCampaignStatsRequest {
            campaign_id: campaign.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut creators = Vec::new();
    for creator in [CREATOR_1, CREATOR_2] {
        let s = client
            .get_creator_stats(pb::GetCreatorStatsRequest {
                creator_id: creator.to_owned(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        creators.push(seen(s.totals.as_ref()));
    }
    Stats {
        campaign: seen(c.totals.as_ref()),
        creators: [creators[0].clone(), creators[1].clone()],
        budget_left: c.budget.map(|b| b.left_minor),
    }
}

fn same(a: &Stats, b: &Stats) -> bool {
    a.campaign == b.campaign && a.creators == b.creators && a.budget_left == b.budget_left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_and_the_audit_trail_follow_the_workflow_and_a_replay_rebuilds_them() {
    let mut platform = Platform::start_with_analytics("analytics", "hybrid").await;
    let mut driver = Driver::new(&platform, Door::Grpc).await;
    let outcome = business_workflow(&mut driver).await;
    assert_eq!(outcome.statuses, ["completed", "failed", "rejected"]);
    drop(driver);

    // Counted independently: what tracking and commission recorded.
    let campaign_id = Uuid::parse_str(&outcome.campaign).unwrap();
    let expected = Stats {
        campaign: counted(&platform, "campaign_id", campaign_id, false).await,
        creators: [
            counted(
                &platform,
                "creator_id",
                Uuid::parse_str(CREATOR_1).unwrap(),
                true,
            )
            .await,
            counted(
                &platform,
                "creator_id",
                Uuid::parse_str(CREATOR_2).unwrap(),
                true,
            )
            .await,
        ],
        budget_left: Some(1_000_000 - 3_255),
    };
    assert_eq!(
        (
            expected.campaign.views,
            expected.campaign.clicks,
            expected.campaign.purchases
        ),
        (1, 1, 3),
        "the script's own counts"
    );
    let mut client = AnalyticsServiceClient::connect(platform.url(ANALYTICS))
        .await
        .unwrap();
    let live = eventually(WAIT, "the statistics equal the workflow's", || {
        let mut client = client.clone();
        let campaign = outcome.campaign.clone();
        let expected = &expected;
        async move {
            let s = stats(&mut client, &campaign).await;
            same(&s, expected).then_some(s)
        }
    })
    .await;
    println!(
        "analytics: campaign {:?}; creator 1 {:?}; creator 2 {:?}; budget left {:?}",
        live.campaign, live.creators[0], live.creators[1], live.budget_left
    );
    let days = client
        .get_campaign_stats(pb::GetCampaignStatsRequest {
            campaign_id: outcome.campaign.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let today = days.days.last().unwrap().counts.unwrap();
    assert!(
        (today.conversion_rate - 3.0).abs() < 1e-9,
        "3 purchases of 1 click"
    );

    // The paid payout's workflow: every step of the saga, in causal order, one correlation id,
    // one trace id.
    // Each topic is followed on its own: the statistics being complete says nothing of the
    // payment events, so wait for the paid payout's last one (version 4: completed).
    let history = eventually(WAIT, "the paid payout's four events", || {
        let mut client = client.clone();
        let payout = outcome.paid_payout.clone();
        async move {
            let entries = client
                .get_aggregate_history(pb::GetAggregateHistoryRequest {
                    aggregate_type: "payout".into(),
                    aggregate_id: payout,
                })
                .await
                .ok()?
                .into_inner()
                .entries;
            entries
                .iter()
                .any(|e| e.message_type == "payout.completed.v1")
                .then_some(entries)
        }
    })
    .await;
    let versions: Vec<i64> = history.iter().map(|e| e.aggregate_version).collect();
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]) && !versions.is_empty(),
        "the payout's events by version: {versions:?}"
    );
    let correlation = history[0].correlation_id.clone();
    // Its trail spans three topics, each followed on its own: wait until both ends are in.
    let workflow = eventually(WAIT, "the paid payout's whole workflow", || {
        let mut client = client.clone();
        let correlation = correlation.clone();
        async move {
            let entries = client
                .get_workflow(pb::GetWorkflowRequest {
                    correlation_id: correlation,
                })
                .await
                .ok()?
                .into_inner()
                .entries;
            let has = |t: &str| entries.iter().any(|e| e.message_type == t);
            (has("commission.settled.v1") && has("payout.completed.v1")).then_some(entries)
        }
    })
    .await;
    let types: Vec<&str> = workflow.iter().map(|e| e.message_type.as_str()).collect();
    println!("payout workflow {correlation}: {types:?}");
    let mut before = HashSet::new();
    for (i, e) in workflow.iter().enumerate() {
        assert_eq!(e.correlation_id, correlation);
        let cause_known = workflow.iter().any(|o| o.message_id == e.causation_id);
        // Only the first message was caused by a call; every later one by a message of the trail.
        assert!(
            i == 0 || cause_known,
            "{} names a cause ({}) that is not in the trail {types:?}",
            e.message_type,
            e.causation_id
        );
        assert!(
            !cause_known || before.contains(&e.causation_id),
            "{} comes after its cause",
            e.message_type
        );
        before.insert(e.message_id.clone());
        assert!(
            serde_json::from_str::<serde_json::Value>(&e.payload_json)
                .unwrap()
                .is_object()
        );
    }
    let saga = [
        "payout.requested.v1",
        "commission.reserve.command.v1",
        "commission.reserved.v1",
        "commission.settle.command.v1",
        "commission.settled.v1",
    ];
    let mut at = 0;
    for step in saga {
        let found = types[at..].iter().position(|t| *t == step);
        assert!(found.is_some(), "{step} after position {at} in {types:?}");
        at += found.unwrap() + 1;
    }
    assert!(types.contains(&"payout.completed.v1"), "{types:?}");
    assert!(
        workflow
            .iter()
            .any(|e| e.kind == i32::from(MessageKind::Command))
    );
    let traces: HashSet<&str> = workflow.iter().map(|e| e.trace_id.as_str()).collect();
    let untraced: Vec<&str> = workflow
        .iter()
        .filter(|e| e.trace_id.is_empty())
        .map(|e| e.message_type.as_str())
        .collect();
    assert_eq!(
        traces.len(),
        1,
        "one trace id for the workflow: {traces:?}; without one: {untraced:?}"
    );
    assert!(!traces.contains(""), "the workflow carries a trace id");

    // A replay from the earliest message rebuilds the same numbers.
    let status = client
        .get_replay_status(pb::GetReplayStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let applied_before: i64 = status.topics.iter().map(|t| t.applied).sum();
    let started = Instant::now();
    client.replay(pb::ReplayRequest {}).await.unwrap();
    let rebuilt = eventually(WAIT, "the replay catches up with the live numbers", || {
        let mut client = client.clone();
        let campaign = outcome.campaign.clone();
        let live = &live;
        async move {
            let status = client
                .get_replay_status(pb::GetReplayStatusRequest {})
                .await
                .ok()?
                .into_inner();
            let s = stats(&mut client, &campaign).await;
            (status.caught_up && same(&s, live)).then_some(status)
        }
    })
    .await;
    let replayed: i64 = rebuilt.topics.iter().map(|t| t.applied).sum::<i64>() - applied_before;
    println!(
        "analytics replay: {replayed} messages processed again in {:?} (caught up, numbers equal the live ones)",
        started.elapsed()
    );
    assert!(replayed > 0, "the replay processed the topics again");
    // A replay while purchases keep arriving: what is applied between dropping the statistics and
    // moving the cursors, and what arrives during the replay, counts exactly once.
    let mut tracking = TrackingServiceClient::connect(platform.url("tracking"))
        .await
        .unwrap();
    client.replay(pb::ReplayRequest {}).await.unwrap();
    for _ in 0..10 {
        tracking
            .create_event(tracking_pb::CreateEventRequest {
                campaign_id: outcome.campaign.clone(),
                creator_id: CREATOR_1.to_owned(),
                kind: tracking_pb::TrackingEventKind::Purchase.into(),
                amount: Some(affiliate_proto::common::Money {
                    amount_minor: 1_000,
                    currency: "EUR".into(),
                }),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    eventually(
        WAIT,
        "a replay under traffic ends at the databases' numbers",
        || {
            let mut client = client.clone();
            let campaign = outcome.campaign.clone();
            let platform = &platform;
            async move {
                let campaign_counted = counted(platform, "campaign_id", campaign_id, false).await;
                let earned = campaign_counted.money.get("EUR").map_or(0, |m| m.1);
                let now = Stats {
                    campaign: campaign_counted,
                    creators: [
                        counted(
                            platform,
                            "creator_id",
                            Uuid::parse_str(CREATOR_1).unwrap(),
                            true,
                        )
                        .await,
                        counted(
                            platform,
                            "creator_id",
                            Uuid::parse_str(CREATOR_2).unwrap(),
                            true,
                        )
                        .await,
                    ],
                    budget_left: Some(1_000_000 - earned),
                };
                let status = client
                    .get_replay_status(pb::GetReplayStatusRequest {})
                    .await
                    .ok()?
                    .into_inner();
                let s = stats(&mut client, &campaign).await;
                (status.caught_up && now.campaign.purchases == 13 && same(&s, &now)).then_some(())
            }
        },
    )
    .await;

    // Nothing else moved: no dead letters, every process still up, the audit trail intact.
    let again = client
        .get_workflow(pb::GetWorkflowRequest {
            correlation_id: correlation,
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(
        again.len(),
        workflow.len(),
        "a replay keeps the trail as it was"
    );
    platform.assert_all_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_field_errors_and_change_nothing() {
    let platform = Platform::start_with_analytics("analytics_bad_input", "hybrid").await;
    let mut client = AnalyticsServiceClient::connect(platform.url(ANALYTICS))
        .await
        .unwrap();
    let bad = client
        .get_campaign_stats(pb::GetCampaignStatsRequest {
            campaign_id: "nope".into(),
            from_date: "2026-02-30".into(),
            to_date: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert_eq!(e2e::violated_fields(&bad), ["campaign_id", "from_date"]);
    let missing = client
        .get_workflow(pb::GetWorkflowRequest {
            correlation_id: "no-such-workflow".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let empty = client
        .get_aggregate_history(pb::GetAggregateHistoryRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        e2e::violated_fields(&empty),
        ["aggregate_type", "aggregate_id"]
    );
    let nobody = client
        .get_creator_stats(pb::GetCreatorStatsRequest {
            creator_id: Uuid::new_v4().to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(nobody.days.is_empty());
}
