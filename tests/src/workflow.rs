//! Driving a business workflow through either door: gRPC calls (with idempotency keys) or
//! command messages on the services' command topics (answered by events naming the command as
//! their cause). Every domain event the platform publishes is collected for comparison.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt as _;
use tonic::Request;
use tonic::transport::Channel;
use uuid::Uuid;

use affiliate_proto::CommandEnvelope;
use affiliate_proto::campaign::{
    self as campaign_pb, campaign_service_client::CampaignServiceClient,
};
use affiliate_proto::commission::commission_service_client::CommissionServiceClient;
use affiliate_proto::common::MessageMetadata;
use affiliate_proto::payment::{self as payment_pb, payment_service_client::PaymentServiceClient};
use affiliate_proto::tracking::{
    self as tracking_pb, tracking_service_client::TrackingServiceClient,
};

use crate::platform::{Platform, SERVICES};
use crate::{eventually, publish};

/// One published domain event, decoded.
#[derive(Debug, Clone)]
pub struct Collected {
    pub topic: String,
    pub key: String,
    pub metadata: MessageMetadata,
    /// The whole envelope as proto3 JSON.
    pub json: serde_json::Value,
}

/// Decodes a message of `service`'s events topic: its metadata and the envelope as proto3 JSON.
pub fn decode(service: &str, payload: &[u8]) -> Option<(MessageMetadata, serde_json::Value)> {
    fn json<M: prost::Message + Default + serde::Serialize>(
        payload: &[u8],
    ) -> Option<(M, serde_json::Value)> {
        let m = M::decode(payload).ok()?;
        let v = serde_json::to_value(&m).ok()?;
        Some((m, v))
    }
    match service {
        "campaign" => json::<campaign_pb::CampaignEvent>(payload)
            .map(|(m, v)| (m.metadata.unwrap_or_default(), v)),
        "tracking" => json::<tracking_pb::TrackingEventEnvelope>(payload)
            .map(|(m, v)| (m.metadata.unwrap_or_default(), v)),
        "commission" => json::<affiliate_proto::commission::CommissionEvent>(payload)
            .map(|(m, v)| (m.metadata.unwrap_or_default(), v)),
        "payment" => json::<payment_pb::PaymentEvent>(payload)
            .map(|(m, v)| (m.metadata.unwrap_or_default(), v)),
        _ => None,
    }
}

/// Subscribes to every service's events topic (before anything is published) and collects.
pub async fn collect_events(
    platform: &Platform,
    client: &pulsar::Pulsar<pulsar::TokioExecutor>,
) -> Arc<Mutex<Vec<Collected>>> {
    let collected: Arc<Mutex<Vec<Collected>>> = Arc::default();
    for service in SERVICES {
        let topic = platform.topic(&format!("{service}-events"));
        let mut consumer = crate::consumer(client, &topic).await;
        let collected = collected.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = consumer.try_next().await {
                let _ = consumer.ack(&message).await;
                if let Some((metadata, json)) = decode(service, &message.payload.data) {
                    collected.lock().unwrap().push(Collected {
                        topic: topic.clone(),
                        key: message.key().unwrap_or_default(),
                        metadata,
                        json,
                    });
                }
            }
        });
    }
    collected
}

/// Which door the driver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    Grpc,
    Events,
}

pub const WAIT: Duration = Duration::from_secs(60);

/// Runs workflow steps through one door and returns the ids the platform assigned.
pub struct Driver<'a> {
    pub platform: &'a Platform,
    pub door: Door,
    pub client: pulsar::Pulsar<pulsar::TokioExecutor>,
    pub events: Arc<Mutex<Vec<Collected>>>,
    step: u32,
}

impl<'a> Driver<'a> {
    pub async fn new(platform: &'a Platform, door: Door) -> Self {
        let client = crate::pulsar().await;
        let events = collect_events(platform, &client).await;
        Self {
            platform,
            door,
            client,
            events,
            step: 0,
        }
    }

    /// How many commands the driver has sent (through either door).
    pub fn commands_sent(&self) -> u32 {
        self.step
    }

    /// A fresh idempotency key (the message id on the topic door) and a correlation id per
    /// step, the same in every run of the script.
    fn ids(&mut self) -> (String, String) {
        self.step += 1;
        (
            Uuid::now_v7().to_string(),
            format!("workflow-step-{}", self.step),
        )
    }

    fn request<T>(&self, message: T, (key, correlation): &(String, String)) -> Request<T> {
        let mut request = crate::with_key(message, key);
        request
            .metadata_mut()
            .insert("x-correlation-id", correlation.parse().unwrap());
        // Each step its own trace, as an edge that traces would start it.
        let traceparent = format!(
            "00-{}-{:016x}-01",
            Uuid::new_v4().simple(),
            rand::random::<u64>() | 1
        );
        request
            .metadata_mut()
            .insert("traceparent", traceparent.parse().unwrap());
        request
    }

    /// Publishes `command` on its service's command topic (envelope `E`, message id `key`) and
    /// waits for the event it caused; returns that event.
    async fn send<E: CommandEnvelope>(
        &self,
        (key, correlation): &(String, String),
        command: E::Command,
    ) -> Collected {
        let message_type = E::command_type(&command);
        let metadata = MessageMetadata {
            message_id: key.clone(),
            message_type: message_type.to_owned(),
            correlation_id: correlation.clone(),
            occurred_at: Some(service_runtime::time::timestamp(chrono::Utc::now())),
            ..Default::default()
        };
        let payload = E::wrap(metadata, command).encode_to_vec();
        let topic = self.platform.topic(&format!("{}-commands", E::SERVICE));
        publish(
            &self.client,
            &topic,
            key,
            key,
            message_type,
            correlation,
            payload,
        )
        .await;
        let events = self.events.clone();
        let id = key.clone();
        eventually(
            WAIT,
            &format!("the event caused by {message_type} {key}"),
            || {
                let events = events.clone();
                let id = id.clone();
                async move {
                    events
                        .lock()
                        .unwrap()
                        .iter()
                        .find(|e| e.metadata.causation_id == id)
                        .cloned()
                }
            },
        )
        .await
    }

    async fn campaigns(&self) -> CampaignServiceClient<Channel> {
        CampaignServiceClient::connect(self.platform.url("campaign"))
            .await
            .unwrap()
    }

    async fn tracking(&self) -> TrackingServiceClient<Channel> {
        TrackingServiceClient::connect(self.platform.url("tracking"))
            .await
            .unwrap()
    }

    pub async fn create_campaign(&mut self, request: campaign_pb::CreateCampaignRequest) -> String {
        let ids = self.ids();
        match self.door {
            Door::Grpc => {
                let request = self.request(request, &ids);
                let created = self.campaigns().await.create_campaign(request).await;
                created.unwrap().into_inner().campaign.unwrap().id
            }
            Door::Events => {
                let command = campaign_pb::campaign_command::Command::CreateCampaign(request);
                let caused = self
                    .send::<campaign_pb::CampaignCommand>(&ids, command)
                    .await;
                caused.metadata.aggregate_id
            }
        }
    }

    pub async fn campaign_command(&mut self, command: campaign_pb::campaign_command::Command) {
        use campaign_pb::campaign_command::Command as C;
        let ids = self.ids();
        if self.door == Door::Events {
            self.send::<campaign_pb::CampaignCommand>(&ids, command)
                .await;
            return;
        }
        let mut client = self.campaigns().await;
        match command {
            C::AddVideo(r) => drop(client.add_video(self.request(r, &ids)).await.unwrap()),
            C::AcceptCampaign(r) => {
                drop(client.accept_campaign(self.request(r, &ids)).await.unwrap())
            }
            C::PauseCampaign(r) => {
                drop(client.pause_campaign(self.request(r, &ids)).await.unwrap())
            }
            C::ResumeCampaign(r) => {
                drop(client.resume_campaign(self.request(r, &ids)).await.unwrap())
            }
            C::CloseCampaign(r) => {
                drop(client.close_campaign(self.request(r, &ids)).await.unwrap())
            }
            C::CreateCampaign(r) => {
                drop(client.create_campaign(self.request(r, &ids)).await.unwrap())
            }
            C::UpdateBudget(r) => drop(client.update_budget(self.request(r, &ids)).await.unwrap()),
            C::UpdateTracking(r) => drop(
                client
                    .update_tracking_settings(self.request(r, &ids))
                    .await
                    .unwrap(),
            ),
        }
    }

    /// Records a tracking event; returns its id.
    pub async fn track(&mut self, request: tracking_pb::CreateEventRequest) -> String {
        let ids = self.ids();
        match self.door {
            Door::Grpc => {
                let request = self.request(request, &ids);
                let created = self.tracking().await.create_event(request).await;
                created.unwrap().into_inner().event.unwrap().id
            }
            Door::Events => {
                let command = tracking_pb::tracking_command::Command::CreateEvent(request);
                let caused = self
                    .send::<tracking_pb::TrackingCommand>(&ids, command)
                    .await;
                caused.metadata.aggregate_id
            }
        }
    }

    /// Records a tracking event that tracking refuses; returns the refusal's gRPC code name (the
    /// status over gRPC, the `tracking.command_rejected.v1` event's code on the command topic).
    pub async fn track_refused(&mut self, request: tracking_pb::CreateEventRequest) -> String {
        let ids = self.ids();
        match self.door {
            Door::Grpc => {
                let request = self.request(request, &ids);
                let refused = self.tracking().await.create_event(request).await;
                let status = refused.expect_err("tracking refuses the event");
                service_runtime::errors::code_name(status.code()).to_owned()
            }
            Door::Events => {
                let command = tracking_pb::tracking_command::Command::CreateEvent(request);
                let caused = self
                    .send::<tracking_pb::TrackingCommand>(&ids, command)
                    .await;
                assert_eq!(caused.metadata.message_type, "tracking.command_rejected.v1");
                caused.json["commandRejected"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            }
        }
    }

    pub async fn submit_evidence(&mut self, request: tracking_pb::SubmitEvidenceRequest) {
        let ids = self.ids();
        match self.door {
            Door::Grpc => {
                let request = self.request(request, &ids);
                self.tracking()
                    .await
                    .submit_evidence(request)
                    .await
                    .unwrap();
            }
            Door::Events => {
                let command = tracking_pb::tracking_command::Command::SubmitEvidence(request);
                self.send::<tracking_pb::TrackingCommand>(&ids, command)
                    .await;
            }
        }
    }

    /// Creates a tracking link; returns its id and code.
    pub async fn create_link(
        &mut self,
        request: tracking_pb::CreateLinkRequest,
    ) -> (String, String) {
        let ids = self.ids();
        match self.door {
            Door::Grpc => {
                let request = self.request(request, &ids);
                let link = self.tracking().await.create_link(request).await;
                let link = link.unwrap().into_inner().link.unwrap();
                (link.id, link.code)
            }
            Door::Events => {
                let command = tracking_pb::tracking_command::Command::CreateLink(request);
                let caused = self
                    .send::<tracking_pb::TrackingCommand>(&ids, command)
                    .await;
                assert_eq!(caused.metadata.message_type, "link.created.v1");
                let link = &caused.json["linkCreated"]["link"];
                (
                    link["id"].as_str().unwrap().to_owned(),
                    link["code"].as_str().unwrap().to_owned(),
                )
            }
        }
    }

    /// Records a conversion that is credited; returns the purchase (tracking event) it became.
    pub async fn record_conversion(
        &mut self,
        request: tracking_pb::RecordConversionRequest,
    ) -> String {
        let ids = self.ids();
        match self.door {
            Door::Grpc => {
                let request = self.request(request, &ids);
                let recorded = self.tracking().await.record_conversion(request).await;
                let conversion = recorded.unwrap().into_inner().conversion.unwrap();
                conversion.tracking_event_id
            }
            Door::Events => {
                let command = tracking_pb::tracking_command::Command::RecordConversion(request);
                self.send::<tracking_pb::TrackingCommand>(&ids, command)
                    .await;
                let events = self.events.clone();
                let key = ids.0.clone();
                eventually(WAIT, "the conversion.recorded.v1 of the command", || {
                    let events = events.clone();
                    let key = key.clone();
                    async move {
                        events.lock().unwrap().iter().find_map(|e| {
                            (e.metadata.causation_id == key
                                && e.metadata.message_type == "conversion.recorded.v1")
                                .then(|| {
                                    e.json["conversionRecorded"]["conversion"]["trackingEventId"]
                                        .as_str()
                                        .unwrap_or_default()
                                        .to_owned()
                                })
                        })
                    }
                })
                .await
            }
        }
    }

    /// Reports a refund of a conversion's order (tracking's RefundConversion).
    pub async fn refund_conversion(&mut self, request: tracking_pb::RefundConversionRequest) {
        let ids = self.ids();
        match self.door {
            Door::Grpc => {
                let request = self.request(request, &ids);
                self.tracking()
                    .await
                    .refund_conversion(request)
                    .await
                    .unwrap();
            }
            Door::Events => {
                let command = tracking_pb::tracking_command::Command::RefundConversion(request);
                self.send::<tracking_pb::TrackingCommand>(&ids, command)
                    .await;
            }
        }
    }

    /// Sends a commission command that publishes an event (approve, decline, a refund of a
    /// purchase with a commission) through the driver's door.
    pub async fn commission_command(
        &mut self,
        command: affiliate_proto::commission::commission_command::Command,
    ) {
        use affiliate_proto::commission::commission_command::Command as C;
        let ids = self.ids();
        if self.door == Door::Events {
            self.send::<affiliate_proto::commission::CommissionCommand>(&ids, command)
                .await;
            return;
        }
        let mut client = CommissionServiceClient::connect(self.platform.url("commission"))
            .await
            .unwrap();
        match command {
            C::Approve(r) => drop(
                client
                    .approve_commissions(self.request(r, &ids))
                    .await
                    .unwrap(),
            ),
            C::Decline(r) => drop(
                client
                    .decline_commissions(self.request(r, &ids))
                    .await
                    .unwrap(),
            ),
            C::Reverse(r) => drop(
                client
                    .reverse_commission(self.request(r, &ids))
                    .await
                    .unwrap(),
            ),
            other => panic!("not a command this driver sends: {other:?}"),
        }
    }

    /// The id of the commission of `tracking_event_id` once it has one.
    pub async fn commission_id_of(&self, tracking_event_id: &str) -> String {
        self.commission_of(tracking_event_id).await;
        let pool = self.platform.databases["commission"].pool.clone();
        let id: Uuid =
            sqlx::query_scalar("select id from commissions where tracking_event_id = $1")
                .bind(Uuid::parse_str(tracking_event_id).unwrap())
                .fetch_one(&pool)
                .await
                .unwrap();
        id.to_string()
    }

    /// Waits until the commission of `tracking_event_id` has reached `status` with `refunded`
    /// of its purchase refunded.
    pub async fn commission_reaches(&self, tracking_event_id: &str, status: &str, refunded: i64) {
        let pool = self.platform.databases["commission"].pool.clone();
        let id = Uuid::parse_str(tracking_event_id).unwrap();
        let status = status.to_owned();
        eventually(
            WAIT,
            &format!("the commission of {id} is {status} with {refunded} refunded"),
            || {
                let (pool, status) = (pool.clone(), status.clone());
                async move {
                    let n: i64 = sqlx::query_scalar(
                        "select count(*) from commissions where tracking_event_id = $1 and status = $2 and refunded_minor = $3",
                    )
                    .bind(id)
                    .bind(status)
                    .bind(refunded)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                    (n == 1).then_some(())
                }
            },
        )
        .await;
    }

    /// Requests a payout; returns its id.
    pub async fn request_payout(&mut self, request: payment_pb::RequestPayoutRequest) -> String {
        let ids = self.ids();
        match self.door {
            Door::Grpc => {
                let mut client = PaymentServiceClient::connect(self.platform.url("payment"))
                    .await
                    .unwrap();
                let requested = client.request_payout(self.request(request, &ids)).await;
                requested.unwrap().into_inner().payout.unwrap().id
            }
            Door::Events => {
                let command = payment_pb::payment_command::Command::RequestPayout(request);
                let caused = self.send::<payment_pb::PaymentCommand>(&ids, command).await;
                caused.metadata.aggregate_id
            }
        }
    }

    /// Waits until the commission service has a commission for `tracking_event_id`.
    pub async fn commission_of(&self, tracking_event_id: &str) -> i64 {
        let pool = self.platform.databases["commission"].pool.clone();
        let id = Uuid::parse_str(tracking_event_id).unwrap();
        eventually(
            WAIT,
            &format!("a commission for tracking event {id}"),
            || {
                let pool = pool.clone();
                async move {
                    sqlx::query_scalar(
                        "select amount_minor from commissions where tracking_event_id = $1",
                    )
                    .bind(id)
                    .fetch_optional(&pool)
                    .await
                    .unwrap()
                }
            },
        )
        .await
    }

    /// Waits until the payout is in a final state; returns it.
    pub async fn payout_final(&self, payout_id: &str) -> String {
        let pool = self.platform.databases["payment"].pool.clone();
        let id = Uuid::parse_str(payout_id).unwrap();
        eventually(WAIT, &format!("payout {id} finished"), || {
            let pool = pool.clone();
            async move {
                let status: String = sqlx::query_scalar("select status from payouts where id = $1")
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                ["completed", "failed", "rejected"]
                    .contains(&status.as_str())
                    .then_some(status)
            }
        })
        .await
    }

    /// Waits until the payout reaches `status`.
    pub async fn payout_reaches(&self, payout_id: &str, status: &str) {
        let pool = self.platform.databases["payment"].pool.clone();
        let id = Uuid::parse_str(payout_id).unwrap();
        let wanted = status.to_owned();
        eventually(WAIT, &format!("payout {id} reaches {status}"), || {
            let pool = pool.clone();
            let wanted = wanted.clone();
            async move {
                let status: String = sqlx::query_scalar("select status from payouts where id = $1")
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                (status == wanted).then_some(())
            }
        })
        .await;
    }

    /// A creator's balance in `currency` as (available, reserved, paid), read over gRPC.
    pub async fn balance(&self, creator: &str, currency: &str) -> (i64, i64, i64) {
        let mut client = CommissionServiceClient::connect(self.platform.url("commission"))
            .await
            .unwrap();
        let request = affiliate_proto::commission::GetBalanceRequest {
            creator_id: creator.to_owned(),
            currency: currency.to_owned(),
        };
        match client.get_balance(request).await {
            Ok(r) => {
                let b = r.into_inner().balance.unwrap_or_default();
                (b.available_minor, b.reserved_minor, b.paid_minor)
            }
            // In events mode there is no API: read the table.
            Err(_) => {
                let pool = &self.platform.databases["commission"].pool;
                sqlx::query_as("select available_minor, reserved_minor, paid_minor from balances where creator_id = $1::uuid and currency = $2")
                    .bind(creator)
                    .bind(currency)
                    .fetch_optional(pool)
                    .await
                    .unwrap()
                    .unwrap_or((0, 0, 0))
            }
        }
    }
}

/// The ids and results of one run of [`business_workflow`].
#[derive(Debug, Clone)]
pub struct Outcome {
    pub campaign: String,
    /// The purchase the shop's conversion became (when the redirect edge runs).
    pub conversion: Option<String>,
    pub closed_campaign: String,
    pub purchases: Vec<String>,
    /// The gRPC code name of the refusal of the closed campaign's purchase.
    pub closed_refusal: String,
    pub paid_payout: String,
    pub failed_payout: String,
    pub rejected_payout: String,
    pub statuses: Vec<String>,
}

pub const ADVERTISER: &str = "0193a9e0-0000-7000-8000-00000000ad01";
pub const CREATOR_1: &str = "0193a9e0-0000-7000-8000-00000000c001";
pub const CREATOR_2: &str = "0193a9e0-0000-7000-8000-00000000c002";
pub const IBAN: &str = "DE89370400440532013000";

fn money(amount_minor: i64, currency: &str) -> Option<affiliate_proto::common::Money> {
    Some(affiliate_proto::common::Money {
        amount_minor,
        currency: currency.to_owned(),
    })
}

fn tracking(
    campaign: &str,
    creator: &str,
    kind: tracking_pb::TrackingEventKind,
    amount: Option<affiliate_proto::common::Money>,
) -> tracking_pb::CreateEventRequest {
    tracking_pb::CreateEventRequest {
        campaign_id: campaign.to_owned(),
        creator_id: creator.to_owned(),
        kind: kind.into(),
        amount,
        product_id: String::new(),
        occurred_at: None,
    }
}

fn payout(creator: &str, amount_minor: i64, account: &str) -> payment_pb::RequestPayoutRequest {
    payment_pb::RequestPayoutRequest {
        creator_id: creator.to_owned(),
        amount: money(amount_minor, "EUR"),
        method: payment_pb::PayoutMethod::BankTransfer.into(),
        account_details: account.to_owned(),
    }
}

/// The scripted business workflow: campaigns, a video, acceptances, views, clicks, purchases,
/// evidence, a closed campaign's purchase (refused at tracking), and payouts that succeed, fail at the provider and
/// exceed the balance. Each step waits for its effect, so both doors see the same order.
pub async fn business_workflow(driver: &mut Driver<'_>) -> Outcome {
    use campaign_pb::campaign_command::Command as C;
    use tracking_pb::TrackingEventKind as K;
    let create = |name: &str, currency: &str| campaign_pb::CreateCampaignRequest {
        advertiser_id: ADVERTISER.to_owned(),
        name: name.to_owned(),
        description: "workflow".to_owned(),
        commission_rate_bps: 1000,
        budget: money(1_000_000, currency),
        tracking: None,
        // payouts follow: commissions are payable at once
        hold_period: crate::NO_HOLD,
    };
    let campaign = driver.create_campaign(create("Spring launch", "EUR")).await;
    driver
        .campaign_command(C::AddVideo(campaign_pb::AddVideoRequest {
            campaign_id: campaign.clone(),
            url: "https://cdn.example.com/spring.mp4".into(),
            title: "Teaser".into(),
        }))
        .await;
    driver
        .campaign_command(C::UpdateTracking(
            campaign_pb::UpdateTrackingSettingsRequest {
                campaign_id: campaign.clone(),
                tracking: Some(campaign_pb::TrackingSettings {
                    landing_url: "https://shop.example.com/spring".into(),
                    landing_domains: vec!["*.example.com".into()],
                    // conversions right after their click are credited, not held
                    min_click_to_conversion: Some(pbjson_types::Duration {
                        seconds: 0,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
            },
        ))
        .await;
    for creator in [CREATOR_1, CREATOR_2] {
        let accept = campaign_pb::AcceptCampaignRequest {
            campaign_id: campaign.clone(),
            creator_id: creator.into(),
            accepted_terms: true,
        };
        driver.campaign_command(C::AcceptCampaign(accept)).await;
    }
    driver
        .track(tracking(&campaign, CREATOR_1, K::View, None))
        .await;
    driver
        .track(tracking(&campaign, CREATOR_1, K::Click, None))
        .await;
    let mut purchases = Vec::new();
    let mut refunded_conversion = None;
    for (creator, amount) in [(CREATOR_1, 10_000), (CREATOR_1, 2_550), (CREATOR_2, 20_000)] {
        let id = driver
            .track(tracking(
                &campaign,
                creator,
                K::Purchase,
                money(amount, "EUR"),
            ))
            .await;
        driver.commission_of(&id).await;
        purchases.push(id);
    }
    // With the redirect edge running: a tracking link, a click through it, and the shop's
    // conversion for that click, credited as a purchase with its commission.
    if let Some(edge) = driver.platform.redirect {
        let (_, code) = driver
            .create_link(tracking_pb::CreateLinkRequest {
                campaign_id: campaign.clone(),
                creator_id: CREATOR_1.into(),
                sub_ids: Some(tracking_pb::SubIds {
                    sub1: "teaser".into(),
                    ..Default::default()
                }),
                deep_link: "https://www.example.com/spring/shoes".into(),
            })
            .await;
        let click_id = click(edge, &code).await;
        let purchase = driver
            .record_conversion(tracking_pb::RecordConversionRequest {
                advertiser_id: ADVERTISER.into(),
                click_id,
                order_id: "spring-order-1".into(),
                amount: money(3_000, "EUR"),
                converted_at: None,
            })
            .await;
        driver.commission_of(&purchase).await;
        refunded_conversion = Some(purchase);
    }
    driver
        .submit_evidence(tracking_pb::SubmitEvidenceRequest {
            campaign_id: campaign.clone(),
            creator_id: CREATOR_1.into(),
            kind: tracking_pb::EvidenceKind::Link.into(),
            url: "https://social.example.com/p/1".into(),
            note: "posted".into(),
        })
        .await;

    let closed_campaign = driver.create_campaign(create("Closed early", "EUR")).await;
    driver
        .campaign_command(C::CloseCampaign(campaign_pb::CloseCampaignRequest {
            campaign_id: closed_campaign.clone(),
        }))
        .await;
    // The close reaches tracking through campaign-events, the purchase through its own door: two
    // topics, no order between them. Wait for tracking's copy to know, then the purchase is
    // refused there, and nothing reaches the commission service.
    let pool = driver.platform.databases["tracking"].pool.clone();
    let closed_id = Uuid::parse_str(&closed_campaign).unwrap();
    eventually(WAIT, "tracking learns the campaign closed", || {
        let pool = pool.clone();
        async move {
            let status: Option<String> =
                sqlx::query_scalar("select status from campaigns where campaign_id = $1")
                    .bind(closed_id)
                    .fetch_optional(&pool)
                    .await
                    .unwrap();
            (status.as_deref() == Some("closed")).then_some(())
        }
    })
    .await;
    let closed_refusal = driver
        .track_refused(tracking(
            &closed_campaign,
            CREATOR_1,
            K::Purchase,
            money(5_000, "EUR"),
        ))
        .await;

    let paid_payout = driver.request_payout(payout(CREATOR_1, 1_200, IBAN)).await;
    let s1 = driver.payout_final(&paid_payout).await;
    let failed_payout = driver
        .request_payout(payout(CREATOR_2, 1_500, "DE00INVALID0000000000"))
        .await;
    let s2 = driver.payout_final(&failed_payout).await;
    let rejected_payout = driver
        .request_payout(payout(CREATOR_1, 100_000, IBAN))
        .await;
    let s3 = driver.payout_final(&rejected_payout).await;
    // A failed payout is final once the release is published; wait for the balance to be restored.
    let pool = driver.platform.databases["commission"].pool.clone();
    eventually(WAIT, "the failed payout's reservation is released", || {
        let pool = pool.clone();
        async move {
            let open: i64 =
                sqlx::query_scalar("select count(*) from reservations where status = 'reserved'")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            (open == 0).then_some(())
        }
    })
    .await;

    Outcome {
        campaign,
        conversion: refunded_conversion,
        closed_campaign,
        purchases,
        closed_refusal,
        paid_payout,
        failed_payout,
        rejected_payout,
        statuses: vec![s1, s2, s3],
    }
}

/// The money's life after [`business_workflow`]: the conversion's order refunded in part by the
/// shop (tracking, then the commission reversed), CREATOR_1's first purchase charged back in full
/// after the paid payout took it (clawed back), and on a campaign with a hold one commission
/// approved early and one declined by the advertiser; each through the driver's door.
pub async fn money_workflow(driver: &mut Driver<'_>, outcome: &Outcome) {
    use affiliate_proto::commission::{self as commission_pb, commission_command::Command as M};
    use campaign_pb::campaign_command::Command as C;
    use tracking_pb::TrackingEventKind as K;
    if let Some(purchase) = &outcome.conversion {
        driver
            .refund_conversion(tracking_pb::RefundConversionRequest {
                advertiser_id: ADVERTISER.into(),
                order_id: "spring-order-1".into(),
                refund_id: "spring-refund-1".into(),
                amount: money(1_000, "EUR"),
                kind: "refund".into(),
                reason: "one pair returned".into(),
            })
            .await;
        driver.commission_reaches(purchase, "approved", 1_000).await;
    }
    driver
        .commission_command(M::Reverse(commission_pb::ReverseCommissionRequest {
            tracking_event_id: outcome.purchases[0].clone(),
            refund_id: "chargeback-1".into(),
            refunded_amount: money(10_000, "EUR"),
            kind: "chargeback".into(),
            reason: "disputed".into(),
        }))
        .await;
    driver
        .commission_reaches(&outcome.purchases[0], "reversed", 10_000)
        .await;
    let held_campaign = driver
        .create_campaign(campaign_pb::CreateCampaignRequest {
            advertiser_id: ADVERTISER.to_owned(),
            name: "Held a while".to_owned(),
            description: "workflow".to_owned(),
            commission_rate_bps: 1000,
            budget: money(1_000_000, "EUR"),
            tracking: None,
            hold_period: Some(pbjson_types::Duration {
                seconds: 3_600,
                nanos: 0,
            }),
        })
        .await;
    driver
        .campaign_command(C::AcceptCampaign(campaign_pb::AcceptCampaignRequest {
            campaign_id: held_campaign.clone(),
            creator_id: CREATOR_2.into(),
            accepted_terms: true,
        }))
        .await;
    let mut held = Vec::new();
    for amount in [4_000, 6_000] {
        let id = driver
            .track(tracking(
                &held_campaign,
                CREATOR_2,
                K::Purchase,
                money(amount, "EUR"),
            ))
            .await;
        held.push(driver.commission_id_of(&id).await);
    }
    driver
        .commission_command(M::Approve(commission_pb::ApproveCommissionsRequest {
            advertiser_id: ADVERTISER.into(),
            commission_ids: vec![held[0].clone()],
        }))
        .await;
    driver
        .commission_command(M::Decline(commission_pb::DeclineCommissionsRequest {
            advertiser_id: ADVERTISER.into(),
            commission_ids: vec![held[1].clone()],
            reason: "returned before the hold ended".into(),
        }))
        .await;
}

/// A visit through the redirect edge: the click id of its 302.
pub async fn click(edge: std::net::SocketAddr, code: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = http
        .get(format!("http://{edge}/c/{code}"))
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/127.0",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::FOUND);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    location
        .query_pairs()
        .find(|(k, _)| k == "click_id")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

/// Property marking a message this harness re-published (so it is duplicated only once).
pub const DUPLICATE_MARK: &str = "test-duplicate";

/// Re-publishes every message on every command and events topic of the platform once more (same
/// key, payload and properties, so the same message id): every command and event is delivered
/// twice. Returns how many duplicates it has published so far.
pub async fn duplicate_everything(
    platform: &Platform,
    client: &pulsar::Pulsar<pulsar::TokioExecutor>,
) -> Arc<Mutex<usize>> {
    let count: Arc<Mutex<usize>> = Arc::default();
    for service in SERVICES {
        for kind in ["commands", "events"] {
            let topic = platform.topic(&format!("{service}-{kind}"));
            let mut consumer = crate::consumer(client, &topic).await;
            let producer_client = client.clone();
            let count = count.clone();
            tokio::spawn(async move {
                while let Ok(Some(message)) = consumer.try_next().await {
                    let mut properties: std::collections::HashMap<String, String> = message
                        .metadata()
                        .properties
                        .iter()
                        .map(|kv| (kv.key.clone(), kv.value.clone()))
                        .collect();
                    if properties.contains_key(DUPLICATE_MARK) {
                        let _ = consumer.ack(&message).await;
                        continue;
                    }
                    properties.insert(DUPLICATE_MARK.to_owned(), "1".to_owned());
                    let copy = pulsar::producer::Message {
                        payload: message.payload.data.clone(),
                        properties,
                        partition_key: message.key(),
                        ..Default::default()
                    };
                    if let Ok(receipt) = producer_client.send(topic.as_str(), copy).await
                        && receipt.await.is_ok()
                    {
                        *count.lock().unwrap() += 1;
                    }
                    // Acknowledged only once the copy is out, so "drained" covers the copies.
                    let _ = consumer.ack(&message).await;
                }
            });
        }
    }
    count
}
