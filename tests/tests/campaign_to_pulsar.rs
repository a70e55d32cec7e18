//! End to end: the campaign service and the relay as real processes, against the real
//! PostgreSQL and Pulsar. A campaign created over gRPC arrives on `campaign-events` as a typed
//! envelope, keyed by the campaign id, whose schema the relay registered; a retry with the same
//! idempotency key publishes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::TryStreamExt as _;
use prost::Message as _;
use tonic::Request;

use affiliate_proto::campaign::campaign_service_client::CampaignServiceClient;
use affiliate_proto::campaign::{self as pb, campaign_event::Event};
use affiliate_proto::common::Money;
use e2e::process::{Process, binary};
use e2e::{consumer, fresh_database, log_dir, property, pulsar, pulsar_url, topic};
use relay::publisher::properties;

const STARTUP: Duration = Duration::from_secs(30);

fn create_request(name: &str) -> pb::CreateCampaignRequest {
    pb::CreateCampaignRequest {
        advertiser_id: uuid::Uuid::new_v4().to_string(),
        name: name.to_owned(),
        description: "e2e".to_owned(),
        commission_rate_bps: 1000,
        budget: Some(Money {
            amount_minor: 100_000,
            currency: "USD".to_owned(),
        }),
        tracking: None,
        hold_period: None,
    }
}

fn with_headers(
    request: pb::CreateCampaignRequest,
    key: &str,
    correlation: &str,
) -> Request<pb::CreateCampaignRequest> {
    let mut request = e2e::with_key(request, key);
    request
        .metadata_mut()
        .insert("x-correlation-id", correlation.parse().unwrap());
    request
}

#[tokio::test]
async fn campaign_created_over_grpc_arrives_on_pulsar_once() {
    let logs = log_dir("campaign_to_pulsar");
    let db = fresh_database("e2e_campaign").await;
    let client = pulsar().await;
    let mut events = consumer(&client, &topic("campaign-events")).await;

    let mut service = Process::start(
        "campaign-service",
        &binary("campaign-service"),
        &[],
        &[
            ("DATABASE_URL", db.url.clone()),
            ("GRPC_LISTEN", "127.0.0.1:0".into()),
            ("SHUTDOWN_GRACE", "5s".into()),
        ],
        &logs,
    );
    let addr = service.wait_for_grpc_addr(STARTUP);
    let mut relay = Process::start(
        "relay",
        &binary("relay"),
        &[],
        &[
            ("RELAY_OUTBOXES", format!("campaign={}", db.url)),
            ("PULSAR_URL", pulsar_url()),
            ("RELAY_POLL_INTERVAL", "200ms".into()),
        ],
        &logs,
    );
    relay.wait_for_line("leading: publishing this outbox", STARTUP);

    let mut grpc = CampaignServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let key = uuid::Uuid::new_v4().to_string();
    let correlation = format!("corr-{}", uuid::Uuid::new_v4());
    let request = create_request("Pulsar bound");
    let campaign = grpc
        .create_campaign(with_headers(request.clone(), &key, &correlation))
        .await
        .unwrap()
        .into_inner()
        .campaign
        .unwrap();

    // The retry returns the first result...
    let retried = grpc
        .create_campaign(with_headers(request, &key, &correlation))
        .await
        .unwrap()
        .into_inner()
        .campaign
        .unwrap();
    assert_eq!(retried, campaign);
    // ...and a later, different campaign marks the point by which a second event would have
    // arrived: the relay publishes in outbox id order on one topic.
    let marker = grpc
        .create_campaign(Request::new(create_request("Marker")))
        .await
        .unwrap()
        .into_inner()
        .campaign
        .unwrap();

    let mut ours = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let message = tokio::time::timeout_at(deadline, events.try_next())
            .await
            .expect("campaign events did not arrive within 30s; see target/test-logs/campaign_to_pulsar/")
            .unwrap()
            .expect("consumer stream ended");
        events.ack(&message).await.unwrap();
        let key = message.key().unwrap_or_default();
        if key == marker.id {
            break;
        }
        if key == campaign.id {
            ours.push(message);
        }
    }

    assert_eq!(
        ours.len(),
        1,
        "exactly one campaign.created for the campaign, retry included"
    );
    let message = &ours[0];
    let envelope = pb::CampaignEvent::decode(message.payload.data.as_slice()).unwrap();
    let metadata = envelope.metadata.clone().unwrap();
    assert_eq!(metadata.message_type, "campaign.created.v1");
    assert_eq!(metadata.aggregate_id, campaign.id);
    assert_eq!(metadata.aggregate_version, 1);
    assert_eq!(metadata.correlation_id, correlation);
    assert_eq!(
        property(message, properties::MESSAGE_TYPE).as_deref(),
        Some("campaign.created.v1")
    );
    assert_eq!(
        property(message, properties::MESSAGE_ID),
        Some(metadata.message_id.clone())
    );
    assert_eq!(
        property(message, properties::CORRELATION_ID),
        Some(correlation.clone())
    );
    assert_eq!(
        property(message, properties::AGGREGATE_VERSION).as_deref(),
        Some("1")
    );
    match envelope.event {
        Some(Event::CampaignCreated(created)) => assert_eq!(created.campaign, Some(campaign)),
        other => panic!("unexpected event {other:?}"),
    }

    // The relay's producer registered the topic's envelope in the schema registry.
    let path = format!(
        "/admin/v2/schemas/{}/schema",
        topic("campaign-events").trim_start_matches("persistent://")
    );
    let (status, body) = e2e::http_request("GET", &path, "").await;
    assert_eq!(status, 200, "{body}");
    let registered: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(registered["type"], "PROTOBUF_NATIVE", "{body}");
    let data: serde_json::Value =
        serde_json::from_str(registered["data"].as_str().unwrap_or_default()).unwrap();
    assert_eq!(
        data["rootMessageTypeName"],
        "affiliate.campaign.v1.CampaignEvent"
    );

    // Published rows leave the outbox (the relay deletes them after the receipts, so possibly
    // a moment after the consumer saw them).
    e2e::eventually(Duration::from_secs(10), "outbox drained", || async {
        let pending: i64 = sqlx::query_scalar("select count(*) from outbox")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        (pending == 0).then_some(())
    })
    .await;

    drop(grpc);
    assert!(
        relay.terminate(Duration::from_secs(10)).await,
        "relay did not stop cleanly on SIGTERM; see {}",
        relay.log.display()
    );
    assert!(
        service.terminate(Duration::from_secs(15)).await,
        "service did not stop cleanly on SIGTERM; see {}",
        service.log.display()
    );
}
