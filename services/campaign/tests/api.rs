//! The campaign service through its real gRPC server (TCP, port 0) on a fresh PostgreSQL
//! database per test: behaviour, error statuses, idempotency, and what lands in the outbox.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use prost::Message as _;
use sqlx::PgPool;
use tonic::transport::Channel;
use tonic::{Code, Request};
use tonic_types::StatusExt as _;

use affiliate_proto::campaign::campaign_service_client::CampaignServiceClient;
use affiliate_proto::campaign::{self as pb, campaign_event::Event};
use affiliate_proto::common::Money;
use campaign_service::Campaign;
use e2e::{TestDatabase, fresh_database};
use service_runtime::time::duration_secs;

struct TestApp {
    client: CampaignServiceClient<Channel>,
    db: TestDatabase,
    served: e2e::Served,
}

async fn spawn_app() -> TestApp {
    let db = fresh_database("campaign_api").await;
    let served = e2e::serve_service::<Campaign>(&db.url, None, &[]).await;
    let client = CampaignServiceClient::connect(served.url())
        .await
        .expect("connect gRPC");
    TestApp { client, db, served }
}

impl TestApp {
    async fn stop(self) {
        self.served.stop().await;
    }

    async fn create(
        &mut self,
        request: pb::CreateCampaignRequest,
        key: Option<&str>,
    ) -> Result<pb::Campaign, tonic::Status> {
        let req = e2e::maybe_keyed(request, key);
        Ok(self
            .client
            .create_campaign(req)
            .await?
            .into_inner()
            .campaign
            .unwrap())
    }

    async fn accept(
        &mut self,
        campaign_id: &str,
        creator_id: &str,
    ) -> Result<pb::Acceptance, tonic::Status> {
        let req = pb::AcceptCampaignRequest {
            campaign_id: campaign_id.to_owned(),
            creator_id: creator_id.to_owned(),
            accepted_terms: true,
        };
        Ok(self
            .client
            .accept_campaign(req)
            .await?
            .into_inner()
            .acceptance
            .unwrap())
    }
}

fn new_campaign(name: &str) -> pb::CreateCampaignRequest {
    pb::CreateCampaignRequest {
        advertiser_id: uuid::Uuid::new_v4().to_string(),
        name: name.to_owned(),
        description: "Spring shoes".to_owned(),
        commission_rate_bps: 1500,
        budget: Some(Money {
            amount_minor: 500_000,
            currency: "EUR".to_owned(),
        }),
        tracking: None,
        hold_period: None,
    }
}

/// Tracking settings with a landing URL and deep-link domains, the rest left to their defaults.
fn tracking(landing_url: &str, domains: &[&str]) -> pb::TrackingSettings {
    pb::TrackingSettings {
        landing_url: landing_url.to_owned(),
        landing_domains: domains.iter().map(|d| (*d).to_owned()).collect(),
        ..Default::default()
    }
}

/// The outbox as (message type, aggregate id, version, decoded event), in id order.
async fn outbox(pool: &PgPool) -> Vec<(String, uuid::Uuid, i64, pb::CampaignEvent)> {
    let rows: Vec<(String, uuid::Uuid, i64, Vec<u8>)> = sqlx::query_as(
        "select message_type, aggregate_id, aggregate_version, payload from outbox order by id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(t, id, v, payload)| {
            (
                t,
                id,
                v,
                pb::CampaignEvent::decode(payload.as_slice()).unwrap(),
            )
        })
        .collect()
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn create_stores_an_active_campaign_and_appends_one_created_event() {
    let mut app = spawn_app().await;
    let mut request = Request::new(new_campaign("Launch"));
    request
        .metadata_mut()
        .insert("x-correlation-id", "corr-42".parse().unwrap());
    let campaign = app
        .client
        .create_campaign(request)
        .await
        .unwrap()
        .into_inner()
        .campaign
        .unwrap();

    assert_eq!(campaign.name, "Launch");
    assert_eq!(campaign.status(), pb::CampaignStatus::Active);
    assert_eq!(campaign.version, 1);
    let events = outbox(&app.db.pool).await;
    assert_eq!(events.len(), 1);
    let (message_type, aggregate_id, version, envelope) = &events[0];
    assert_eq!(message_type, "campaign.created.v1");
    assert_eq!(aggregate_id.to_string(), campaign.id);
    assert_eq!(*version, 1);
    let metadata = envelope.metadata.clone().unwrap();
    assert_eq!(metadata.correlation_id, "corr-42");
    assert_eq!(metadata.aggregate_type, "campaign");
    match &envelope.event {
        Some(Event::CampaignCreated(created)) => {
            assert_eq!(created.campaign.as_ref(), Some(&campaign))
        }
        other => panic!("unexpected event {other:?}"),
    }
    let fetched = app
        .client
        .get_campaign(pb::GetCampaignRequest {
            campaign_id: campaign.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.campaign, Some(campaign));
    app.stop().await;
}

#[tokio::test]
async fn retried_create_with_same_key_returns_the_first_result_and_writes_once() {
    let mut app = spawn_app().await;
    let request = new_campaign("Retry me");
    let first = app.create(request.clone(), Some("key-1")).await.unwrap();
    let second = app.create(request, Some("key-1")).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(count(&app.db.pool, "campaigns").await, 1);
    assert_eq!(outbox(&app.db.pool).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_creates_with_same_key_write_once() {
    let app = spawn_app().await;
    let request = new_campaign("Race");
    let calls = (0..8).map(|_| {
        let mut client = app.client.clone();
        let request = request.clone();
        async move {
            let req = e2e::with_key(request, "same-key");
            client
                .create_campaign(req)
                .await
                .map(|r| r.into_inner().campaign.unwrap().id)
        }
    });
    let ids: Vec<String> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "different campaigns: {ids:?}"
    );
    assert_eq!(count(&app.db.pool, "campaigns").await, 1);
    assert_eq!(outbox(&app.db.pool).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn reusing_a_key_for_a_different_request_is_refused_and_writes_nothing() {
    let mut app = spawn_app().await;
    app.create(new_campaign("One"), Some("key-2"))
        .await
        .unwrap();
    let err = app
        .create(new_campaign("Two"), Some("key-2"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(count(&app.db.pool, "campaigns").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn invalid_create_is_invalid_argument_with_every_field_and_writes_nothing() {
    let mut app = spawn_app().await;
    let request = pb::CreateCampaignRequest {
        advertiser_id: "not-a-uuid".into(),
        name: " ".into(),
        description: String::new(),
        commission_rate_bps: 10_001,
        budget: Some(Money {
            amount_minor: -1,
            currency: "DOLLARS".into(),
        }),
        tracking: None,
        hold_period: Some(duration_secs(-86_400)),
    };
    let err = app.create(request, Some("key-3")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields = e2e::violated_fields(&err);
    assert_eq!(
        fields,
        [
            "advertiser_id",
            "name",
            "commission_rate_bps",
            "budget.amount_minor",
            "budget.currency",
            "hold_period"
        ]
    );
    assert_eq!(count(&app.db.pool, "campaigns").await, 0);
    assert_eq!(count(&app.db.pool, "outbox").await, 0);
    assert_eq!(count(&app.db.pool, "idempotency_keys").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn malformed_metadata_is_invalid_argument() {
    let mut app = spawn_app().await;
    let req = e2e::with_key(new_campaign("x"), "k".repeat(201));
    let err = app.client.create_campaign(req).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(count(&app.db.pool, "campaigns").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn unknown_ids_are_not_found_and_malformed_ids_invalid() {
    let mut app = spawn_app().await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let get = app
        .client
        .get_campaign(pb::GetCampaignRequest {
            campaign_id: unknown.clone(),
        })
        .await;
    assert_eq!(get.unwrap_err().code(), Code::NotFound);
    let get = app
        .client
        .get_campaign(pb::GetCampaignRequest {
            campaign_id: "x".into(),
        })
        .await;
    assert_eq!(get.unwrap_err().code(), Code::InvalidArgument);
    let video = app
        .client
        .add_video(pb::AddVideoRequest {
            campaign_id: unknown.clone(),
            url: "https://v.example/1".into(),
            title: "t".into(),
        })
        .await;
    assert_eq!(video.unwrap_err().code(), Code::NotFound);
    let accept = app
        .accept(&unknown, &uuid::Uuid::new_v4().to_string())
        .await;
    assert_eq!(accept.unwrap_err().code(), Code::NotFound);
    assert_eq!(count(&app.db.pool, "outbox").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn add_video_and_accept_bump_the_version_and_publish_in_order() {
    let mut app = spawn_app().await;
    let campaign = app.create(new_campaign("Videos"), None).await.unwrap();
    let video = app
        .client
        .add_video(pb::AddVideoRequest {
            campaign_id: campaign.id.clone(),
            url: "https://v.example/1.mp4".into(),
            title: "Teaser".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .video
        .unwrap();
    let creator = uuid::Uuid::new_v4().to_string();
    let acceptance = app.accept(&campaign.id, &creator).await.unwrap();
    assert_eq!(acceptance.creator_id, creator);

    let events = outbox(&app.db.pool).await;
    let kinds: Vec<(&str, i64)> = events.iter().map(|(t, _, v, _)| (t.as_str(), *v)).collect();
    assert_eq!(
        kinds,
        [
            ("campaign.created.v1", 1),
            ("video.added.v1", 2),
            ("campaign.accepted.v1", 3)
        ]
    );
    let fetched = app
        .client
        .get_campaign(pb::GetCampaignRequest {
            campaign_id: campaign.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.campaign.unwrap().version, 3);
    assert_eq!(fetched.videos, [video]);
    app.stop().await;
}

#[tokio::test]
async fn accepting_twice_is_already_exists_and_writes_nothing_more() {
    let mut app = spawn_app().await;
    let campaign = app.create(new_campaign("Once"), None).await.unwrap();
    let creator = uuid::Uuid::new_v4().to_string();
    app.accept(&campaign.id, &creator).await.unwrap();
    let err = app.accept(&campaign.id, &creator).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(count(&app.db.pool, "acceptances").await, 1);
    assert_eq!(count(&app.db.pool, "outbox").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn only_active_campaigns_can_be_accepted_and_terms_are_required() {
    let mut app = spawn_app().await;
    let campaign = app.create(new_campaign("Paused"), None).await.unwrap();
    let creator = uuid::Uuid::new_v4().to_string();
    let no_terms = app
        .client
        .accept_campaign(pb::AcceptCampaignRequest {
            campaign_id: campaign.id.clone(),
            creator_id: creator.clone(),
            accepted_terms: false,
        })
        .await
        .unwrap_err();
    assert_eq!(no_terms.code(), Code::InvalidArgument);
    app.client
        .pause_campaign(pb::PauseCampaignRequest {
            campaign_id: campaign.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let err = app.accept(&campaign.id, &creator).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(count(&app.db.pool, "acceptances").await, 0);
    assert_eq!(count(&app.db.pool, "outbox").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn list_pages_through_every_campaign_newest_first() {
    let mut app = spawn_app().await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(
            app.create(new_campaign(&format!("c{i}")), None)
                .await
                .unwrap()
                .id,
        );
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .client
            .list_campaigns(pb::ListCampaignsRequest {
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.campaigns.len() <= 3);
        seen.extend(page.campaigns.into_iter().map(|c| c.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    created.reverse();
    assert_eq!(seen, created);
    let bad = app
        .client
        .list_campaigns(pb::ListCampaignsRequest {
            page_size: 1000,
            page_token: "zzz".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(
        bad.get_details_bad_request()
            .unwrap()
            .field_violations
            .len(),
        2
    );
    app.stop().await;
}

#[tokio::test]
async fn concurrent_changes_to_one_campaign_append_versions_in_outbox_id_order() {
    let mut app = spawn_app().await;
    let campaign = app.create(new_campaign("Busy"), None).await.unwrap();
    let calls = (0..20).map(|i| {
        let mut client = app.client.clone();
        let id = campaign.id.clone();
        async move {
            if i % 2 == 0 {
                client
                    .add_video(pb::AddVideoRequest {
                        campaign_id: id,
                        url: format!("https://v.example/{i}"),
                        title: format!("v{i}"),
                    })
                    .await
                    .map(|_| ())
            } else {
                client
                    .accept_campaign(pb::AcceptCampaignRequest {
                        campaign_id: id,
                        creator_id: uuid::Uuid::new_v4().to_string(),
                        accepted_terms: true,
                    })
                    .await
                    .map(|_| ())
            }
        }
    });
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    let versions: Vec<i64> = outbox(&app.db.pool)
        .await
        .iter()
        .map(|(_, _, v, _)| *v)
        .collect();
    assert_eq!(versions, (1..=21).collect::<Vec<i64>>());
    app.stop().await;
}

#[tokio::test]
async fn pause_resume_close_follow_the_lifecycle_and_publish_status_changes() {
    use pb::CampaignStatus::{Active, Closed, Paused};
    let mut app = spawn_app().await;
    let campaign = app.create(new_campaign("Lifecycle"), None).await.unwrap();
    let id = campaign.id.clone();
    let pause = || pb::PauseCampaignRequest {
        campaign_id: id.clone(),
        ..Default::default()
    };
    let paused = app
        .client
        .pause_campaign(pause())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paused.campaign.unwrap().status(), Paused);
    assert_eq!(
        app.client.pause_campaign(pause()).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    let resumed = app
        .client
        .resume_campaign(pb::ResumeCampaignRequest {
            campaign_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resumed.campaign.unwrap().status(), Active);
    let closed = app
        .client
        .close_campaign(pb::CloseCampaignRequest {
            campaign_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .campaign
        .unwrap();
    assert_eq!((closed.status(), closed.version), (Closed, 4));
    let reopen = app
        .client
        .resume_campaign(pb::ResumeCampaignRequest {
            campaign_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(reopen.code(), Code::FailedPrecondition);
    let video = app
        .client
        .add_video(pb::AddVideoRequest {
            campaign_id: id.clone(),
            url: "https://v.example/x".into(),
            title: "late".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(video.code(), Code::FailedPrecondition);

    let changes: Vec<(i32, i32, i64)> = outbox(&app.db.pool)
        .await
        .iter()
        .filter_map(|(_, _, v, e)| match &e.event {
            Some(Event::CampaignStatusChanged(c)) => {
                Some((c.previous_status, c.campaign.as_ref().unwrap().status, *v))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [
            (Active as i32, Paused as i32, 2),
            (Paused as i32, Active as i32, 3),
            (Active as i32, Closed as i32, 4)
        ]
    );
    app.stop().await;
}

fn eur(amount_minor: i64) -> Option<Money> {
    Some(Money {
        amount_minor,
        currency: "EUR".to_owned(),
    })
}

#[tokio::test]
async fn a_larger_budget_resumes_a_campaign_paused_for_its_spent_budget_but_not_an_advertisers_pause()
 {
    use pb::CampaignStatus::{Active, Paused};
    let mut app = spawn_app().await;
    let campaign = app.create(new_campaign("Budget"), None).await.unwrap();
    let id = campaign.id.clone();
    let update = |amount_minor| pb::UpdateBudgetRequest {
        campaign_id: id.clone(),
        budget: eur(amount_minor),
    };
    let budget_pause = |amount_minor| pb::PauseCampaignRequest {
        campaign_id: id.clone(),
        reason: pb::PauseReason::BudgetExhausted.into(),
        exhausted_budget: eur(amount_minor),
    };
    // A pause for a budget that is no longer the campaign's is refused: the budget changed since.
    let stale = app
        .client
        .pause_campaign(budget_pause(1))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition);
    let paused = app
        .client
        .pause_campaign(budget_pause(500_000))
        .await
        .unwrap()
        .into_inner()
        .campaign
        .unwrap();
    assert_eq!(
        (paused.status(), paused.pause_reason()),
        (Paused, pb::PauseReason::BudgetExhausted)
    );
    // The same budget, or a smaller one, keeps it paused.
    let same = app.client.update_budget(update(500_000)).await.unwrap();
    assert_eq!(same.into_inner().campaign.unwrap().status(), Paused);
    let raised = app
        .client
        .update_budget(update(900_000))
        .await
        .unwrap()
        .into_inner()
        .campaign
        .unwrap();
    assert_eq!(
        (
            raised.status(),
            raised.pause_reason(),
            raised.budget.clone()
        ),
        (Active, pb::PauseReason::Unspecified, eur(900_000))
    );
    // An advertiser's pause is not resumed by a budget.
    app.client
        .pause_campaign(pb::PauseCampaignRequest {
            campaign_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let kept = app.client.update_budget(update(2_000_000)).await.unwrap();
    assert_eq!(kept.into_inner().campaign.unwrap().status(), Paused);

    let updates: Vec<(i64, bool, i32)> = outbox(&app.db.pool)
        .await
        .iter()
        .filter_map(|(t, _, v, e)| match &e.event {
            Some(Event::BudgetUpdated(b)) => {
                assert_eq!(t, "campaign.budget_updated.v1");
                Some((*v, b.resumed, b.campaign.as_ref().unwrap().status))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        updates,
        [
            (3, false, Paused as i32),
            (4, true, Active as i32),
            (6, false, Paused as i32)
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_budget_updates_are_refused_with_their_fields_and_write_nothing() {
    let mut app = spawn_app().await;
    let campaign = app.create(new_campaign("Budget"), None).await.unwrap();
    let before = count(&app.db.pool, "outbox").await;
    let invalid = app
        .client
        .update_budget(pb::UpdateBudgetRequest {
            campaign_id: "nope".into(),
            budget: Some(Money {
                amount_minor: 0,
                currency: "eur".into(),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert_eq!(
        e2e::violated_fields(&invalid),
        ["campaign_id", "budget.amount_minor", "budget.currency"]
    );
    let other_currency = app
        .client
        .update_budget(pb::UpdateBudgetRequest {
            campaign_id: campaign.id.clone(),
            budget: Some(Money {
                amount_minor: 10,
                currency: "USD".into(),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(other_currency.code(), Code::FailedPrecondition);
    let unknown = app
        .client
        .update_budget(pb::UpdateBudgetRequest {
            campaign_id: uuid::Uuid::now_v7().to_string(),
            budget: eur(10),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    app.client
        .close_campaign(pb::CloseCampaignRequest {
            campaign_id: campaign.id.clone(),
        })
        .await
        .unwrap();
    let closed = app
        .client
        .update_budget(pb::UpdateBudgetRequest {
            campaign_id: campaign.id.clone(),
            budget: eur(10),
        })
        .await
        .unwrap_err();
    assert_eq!(closed.code(), Code::FailedPrecondition);
    assert_eq!(
        count(&app.db.pool, "outbox").await,
        before + 1,
        "only the close"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_campaign_created_with_tracking_settings_stores_them_normalized() {
    let mut app = spawn_app().await;
    let without = app
        .create(new_campaign("No links yet"), None)
        .await
        .unwrap();
    assert_eq!(without.tracking, None);

    let mut request = new_campaign("With links");
    request.tracking = Some(pb::TrackingSettings {
        click_id_param: "aff_id".into(),
        min_click_to_conversion: Some(duration_secs(0)),
        fallback_url: "https://shop.example.com/closed".into(),
        ..tracking(
            "https://shop.example.com/spring",
            &["Shop.Example.com", "*.example.org"],
        )
    });
    let campaign = app.create(request, None).await.unwrap();
    assert_eq!(
        campaign.tracking,
        Some(pb::TrackingSettings {
            landing_url: "https://shop.example.com/spring".into(),
            landing_domains: vec!["*.example.org".into(), "shop.example.com".into()],
            click_id_param: "aff_id".into(),
            attribution_window: Some(duration_secs(30 * 86_400)),
            min_click_to_conversion: Some(duration_secs(0)),
            fallback_url: "https://shop.example.com/closed".into(),
        }),
        "normalized: domains lower-cased and sorted, the default window spelled out"
    );
    let fetched = app
        .client
        .get_campaign(pb::GetCampaignRequest {
            campaign_id: campaign.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.campaign.as_ref(), Some(&campaign));
    let listed = app
        .client
        .list_campaigns(pb::ListCampaignsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.campaigns[0], campaign, "newest first");
    let created = outbox(&app.db.pool).await.pop().unwrap();
    match created.3.event {
        Some(Event::CampaignCreated(e)) => assert_eq!(e.campaign, Some(campaign)),
        other => panic!("unexpected event {other:?}"),
    }
    app.stop().await;
}

#[tokio::test]
async fn a_campaign_holds_its_commissions_thirty_days_unless_created_with_another_hold() {
    let mut app = spawn_app().await;
    let default = app.create(new_campaign("Default"), None).await.unwrap();
    assert_eq!(default.hold_period, Some(duration_secs(30 * 86_400)));

    let mut request = new_campaign("No hold");
    request.hold_period = Some(duration_secs(0));
    let none = app.create(request, None).await.unwrap();
    assert_eq!(none.hold_period, Some(duration_secs(0)));

    let mut request = new_campaign("A year");
    request.hold_period = Some(duration_secs(365 * 86_400));
    let year = app.create(request, None).await.unwrap();
    assert_eq!(year.hold_period, Some(duration_secs(365 * 86_400)));

    // Stored: read back as created, and carried by every later event of the campaign.
    let fetched = app
        .client
        .get_campaign(pb::GetCampaignRequest {
            campaign_id: none.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        fetched.campaign.and_then(|c| c.hold_period),
        Some(duration_secs(0))
    );
    app.client
        .pause_campaign(pb::PauseCampaignRequest {
            campaign_id: default.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let events = outbox(&app.db.pool).await;
    let held: Vec<_> = events
        .iter()
        .map(|(t, _, _, envelope)| {
            let campaign = match &envelope.event {
                Some(Event::CampaignCreated(e)) => e.campaign.as_ref(),
                Some(Event::CampaignStatusChanged(e)) => e.campaign.as_ref(),
                other => panic!("unexpected event {other:?}"),
            };
            (t.as_str(), campaign.and_then(|c| c.hold_period))
        })
        .collect();
    let days = |d: i64| Some(duration_secs(d * 86_400));
    assert_eq!(
        held,
        [
            ("campaign.created.v1", days(30)),
            ("campaign.created.v1", days(0)),
            ("campaign.created.v1", days(365)),
            ("campaign.status_changed.v1", days(30)),
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn negative_fractional_or_overlong_hold_periods_are_refused_and_write_nothing() {
    let mut app = spawn_app().await;
    for (seconds, nanos, why) in [
        (-1, 0, "must not be negative"),
        (3600, 500_000_000, "must be a whole number of seconds"),
        (365 * 86_400 + 1, 0, "must be between 0 and 365 days"),
        (1, -1, "is not a valid duration"),
    ] {
        let mut request = new_campaign("Held");
        let mut hold = duration_secs(seconds);
        hold.nanos = nanos;
        request.hold_period = Some(hold);
        let err = app.create(request, None).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{seconds}s {nanos}ns");
        let details = err.get_details_bad_request().expect("field violations");
        let violations: Vec<(&str, &str)> = details
            .field_violations
            .iter()
            .map(|v| (v.field.as_str(), v.description.as_str()))
            .collect();
        assert_eq!(violations, [("hold_period", why)], "{seconds}s {nanos}ns");
    }
    assert_eq!(count(&app.db.pool, "campaigns").await, 0);
    assert_eq!(count(&app.db.pool, "outbox").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn updating_tracking_settings_bumps_the_version_and_publishes_the_campaign_once() {
    let mut app = spawn_app().await;
    let campaign = app.create(new_campaign("Links"), None).await.unwrap();
    let update = |settings| pb::UpdateTrackingSettingsRequest {
        campaign_id: campaign.id.clone(),
        tracking: Some(settings),
    };
    let first = update(pb::TrackingSettings {
        attribution_window: Some(duration_secs(7 * 86_400)),
        ..tracking("https://shop.example.com/", &["*.EXAMPLE.com"])
    });
    let updated = app
        .client
        .update_tracking_settings(e2e::with_key(first.clone(), "tracking-1"))
        .await
        .unwrap()
        .into_inner()
        .campaign
        .unwrap();
    assert_eq!(updated.version, 2);
    let settings = updated.tracking.clone().unwrap();
    assert_eq!(settings.landing_domains, ["*.example.com"]);
    assert_eq!(settings.click_id_param, "click_id");
    assert_eq!(settings.attribution_window, Some(duration_secs(7 * 86_400)));
    assert_eq!(settings.min_click_to_conversion, Some(duration_secs(10)));
    assert_eq!(settings.fallback_url, "");
    // Retried with the same key: the first answer, nothing written again.
    let replayed = app
        .client
        .update_tracking_settings(e2e::with_key(first, "tracking-1"))
        .await
        .unwrap()
        .into_inner()
        .campaign
        .unwrap();
    assert_eq!(replayed, updated);

    // A paused campaign's settings may change too; the new settings replace the old ones whole.
    app.client
        .pause_campaign(pb::PauseCampaignRequest {
            campaign_id: campaign.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let replaced = app
        .client
        .update_tracking_settings(update(tracking("http://other.example.net/x", &[])))
        .await
        .unwrap()
        .into_inner()
        .campaign
        .unwrap();
    assert_eq!(replaced.status(), pb::CampaignStatus::Paused);
    assert_eq!(replaced.version, 4);
    assert_eq!(
        replaced.tracking.as_ref().map(|t| (
            t.landing_url.as_str(),
            t.landing_domains.len(),
            t.attribution_window
        )),
        Some((
            "http://other.example.net/x",
            0,
            Some(duration_secs(30 * 86_400))
        ))
    );

    let updates: Vec<(i64, pb::Campaign)> = outbox(&app.db.pool)
        .await
        .into_iter()
        .filter_map(|(t, id, v, e)| match e.event {
            Some(Event::TrackingUpdated(u)) => {
                assert_eq!(t, "campaign.tracking_updated.v1");
                assert_eq!(id.to_string(), campaign.id);
                Some((v, u.campaign.unwrap()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(updates, [(2, updated), (4, replaced)]);
    app.stop().await;
}

#[tokio::test]
async fn bad_tracking_settings_are_refused_with_their_fields_and_write_nothing() {
    let mut app = spawn_app().await;
    let campaign = app.create(new_campaign("Links"), None).await.unwrap();
    let before = count(&app.db.pool, "outbox").await;
    let bad = pb::TrackingSettings {
        landing_url: "https://user:pw@shop.example.com/".into(),
        landing_domains: vec![
            "shop.example.com:8443".into(),
            "a.example.com".into(),
            "A.example.com".into(),
        ],
        click_id_param: "click id".into(),
        attribution_window: Some(duration_secs(401 * 86_400)),
        min_click_to_conversion: Some(duration_secs(-1)),
        fallback_url: "ftp://shop.example.com/".into(),
    };
    let invalid = app
        .client
        .update_tracking_settings(pb::UpdateTrackingSettingsRequest {
            campaign_id: campaign.id.clone(),
            tracking: Some(bad.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    let every_field = [
        "tracking.landing_url",
        "tracking.landing_domains[0]",
        "tracking.landing_domains[2]",
        "tracking.click_id_param",
        "tracking.attribution_window",
        "tracking.min_click_to_conversion",
        "tracking.fallback_url",
    ];
    assert_eq!(e2e::violated_fields(&invalid), every_field);
    let missing = app
        .client
        .update_tracking_settings(pb::UpdateTrackingSettingsRequest {
            campaign_id: "nope".into(),
            tracking: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e2e::violated_fields(&missing), ["campaign_id", "tracking"]);
    let no_landing_url = app
        .client
        .update_tracking_settings(pb::UpdateTrackingSettingsRequest {
            campaign_id: campaign.id.clone(),
            tracking: Some(pb::TrackingSettings::default()),
        })
        .await
        .unwrap_err();
    assert_eq!(
        e2e::violated_fields(&no_landing_url),
        ["tracking.landing_url"]
    );
    // CreateCampaign checks the same settings under the same names.
    let mut create = new_campaign("Bad links");
    create.tracking = Some(bad);
    let refused = app.create(create, None).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(e2e::violated_fields(&refused), every_field);
    let unknown = app
        .client
        .update_tracking_settings(pb::UpdateTrackingSettingsRequest {
            campaign_id: uuid::Uuid::now_v7().to_string(),
            tracking: Some(tracking("https://shop.example.com/", &[])),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(count(&app.db.pool, "campaigns").await, 1);
    assert_eq!(count(&app.db.pool, "outbox").await, before);

    // A closed campaign's settings never change.
    app.client
        .close_campaign(pb::CloseCampaignRequest {
            campaign_id: campaign.id.clone(),
        })
        .await
        .unwrap();
    let closed = app
        .client
        .update_tracking_settings(pb::UpdateTrackingSettingsRequest {
            campaign_id: campaign.id.clone(),
            tracking: Some(tracking("https://shop.example.com/", &[])),
        })
        .await
        .unwrap_err();
    assert_eq!(closed.code(), Code::FailedPrecondition);
    assert_eq!(
        count(&app.db.pool, "outbox").await,
        before + 1,
        "only the close"
    );
    let stored: Option<String> =
        sqlx::query_scalar("select landing_url from campaigns where id = $1::uuid")
            .bind(&campaign.id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(stored, None);
    app.stop().await;
}

/// A real fault on real infrastructure: the service's database stops accepting connections, so
/// health turns NOT_SERVING and calls fail with UNAVAILABLE (no cause leaked); when it accepts
/// connections again, health and calls recover by themselves.
#[tokio::test]
async fn health_and_calls_follow_a_database_outage_and_recover() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let db = fresh_database("campaign_outage").await;
    let served = e2e::serve_service::<Campaign>(
        &db.url,
        None,
        &[
            "--health-interval",
            "100ms",
            "--database-acquire-timeout",
            "1s",
        ],
    )
    .await;
    let addr = served.addr;
    let mut client = CampaignServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = HealthClient::new(channel);
    let status = |health: &HealthClient<Channel>| {
        let mut health = health.clone();
        async move {
            health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .unwrap()
                .into_inner()
                .status()
        }
    };
    assert_eq!(status(&health).await, ServingStatus::Serving);

    let admin = PgPool::connect(&e2e::postgres_admin_url()).await.unwrap();
    let set_connections = |allow: bool| {
        let admin = admin.clone();
        let name = db.name.clone();
        async move {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "alter database {name} with allow_connections {allow}"
            )))
            .execute(&admin)
            .await
            .unwrap();
            if !allow {
                sqlx::query(
                    "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1",
                )
                .bind(&name)
                .execute(&admin)
                .await
                .unwrap();
            }
        }
    };
    set_connections(false).await;
    e2e::eventually(
        Duration::from_secs(20),
        "health turns NOT_SERVING",
        || async { (status(&health).await == ServingStatus::NotServing).then_some(()) },
    )
    .await;
    let err = client
        .create_campaign(new_campaign("During outage"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        !err.message().contains(&db.name),
        "the cause leaked: {}",
        err.message()
    );

    set_connections(true).await;
    e2e::eventually(
        Duration::from_secs(20),
        "health is SERVING again",
        || async { (status(&health).await == ServingStatus::Serving).then_some(()) },
    )
    .await;
    client
        .create_campaign(new_campaign("After outage"))
        .await
        .unwrap();
    served.stop().await;
}
