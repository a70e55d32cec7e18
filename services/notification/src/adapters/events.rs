//! The event feeds: one consumer per service's `{service}-events` topic, each decoding that
//! topic's envelope into a [`Fact`] and applying it once (the inbox, consumer
//! `notification/{service}-events`). An undecodable message is recorded as rejected and
//! acknowledged; database trouble, or an event about a campaign not known yet, is retried.

use prost::Message as _;
use uuid::Uuid;

use affiliate_proto::campaign::{self as campaign_pb, CampaignEvent, campaign_event};
use affiliate_proto::commission::{self as commission_pb, CommissionEvent, commission_event};
use affiliate_proto::common::{MessageMetadata, Money as MoneyPb};
use affiliate_proto::payment::{self as payment_pb, PaymentEvent, payment_event};
use affiliate_proto::tracking::{EvidenceKind, TrackingEventEnvelope, tracking_event_envelope};
use affiliate_proto::webhook::{WebhookEvent, webhook_event};
use messaging::{Delivery, Failure, Handler};
use sqlx::{PgConnection, PgPool};

use crate::app::{Applied, Incoming, Notifications};
use crate::domain::{Campaign, CampaignStatus, Decision, Fact, Money, PayoutStage};

/// The services whose events the notification service follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Campaign,
    Tracking,
    Commission,
    Payment,
    Webhook,
}

impl Source {
    pub const ALL: [Self; 5] = [
        Self::Campaign,
        Self::Tracking,
        Self::Commission,
        Self::Payment,
        Self::Webhook,
    ];

    /// The publishing service, whose `events_topic` this source reads.
    pub fn service(self) -> &'static str {
        match self {
            Self::Campaign => "campaign",
            Self::Tracking => "tracking",
            Self::Commission => "commission",
            Self::Payment => "payment",
            Self::Webhook => "webhook",
        }
    }

    /// The inbox consumer name.
    pub fn consumer(self) -> &'static str {
        match self {
            Self::Campaign => "notification/campaign-events",
            Self::Tracking => "notification/tracking-events",
            Self::Commission => "notification/commission-events",
            Self::Payment => "notification/payment-events",
            Self::Webhook => "notification/webhook-events",
        }
    }

    /// The process part that consumes it.
    pub fn part(self) -> &'static str {
        match self {
            Self::Campaign => "campaign-event feed",
            Self::Tracking => "tracking-event feed",
            Self::Commission => "commission-event feed",
            Self::Payment => "payment-event feed",
            Self::Webhook => "webhook-event feed",
        }
    }

    /// The envelope's metadata and what its event reports.
    pub fn decode(self, payload: &[u8]) -> Result<(Option<MessageMetadata>, Fact), String> {
        let undecodable =
            |e: prost::DecodeError| format!("not a {} event envelope: {e}", self.service());
        match self {
            Self::Campaign => {
                let e = CampaignEvent::decode(payload).map_err(undecodable)?;
                Ok((e.metadata, campaign_fact(e.event)?))
            }
            Self::Tracking => {
                let e = TrackingEventEnvelope::decode(payload).map_err(undecodable)?;
                Ok((e.metadata, tracking_fact(e.event)?))
            }
            Self::Commission => {
                let e = CommissionEvent::decode(payload).map_err(undecodable)?;
                Ok((e.metadata, commission_fact(e.event)?))
            }
            Self::Payment => {
                let e = PaymentEvent::decode(payload).map_err(undecodable)?;
                Ok((e.metadata, payment_fact(e.event)?))
            }
            Self::Webhook => {
                let e = WebhookEvent::decode(payload).map_err(undecodable)?;
                Ok((e.metadata, webhook_fact(e.event)?))
            }
        }
    }
}

fn id(field: &str, value: &str) -> Result<Uuid, String> {
    Uuid::parse_str(value).map_err(|_| format!("{field} `{value}` is not a UUID"))
}

fn money(field: &str, value: Option<MoneyPb>) -> Result<Money, String> {
    let value = value.ok_or_else(|| format!("{field} is missing"))?;
    Ok(Money {
        amount_minor: value.amount_minor,
        currency: value.currency,
    })
}

fn campaign(value: Option<campaign_pb::Campaign>) -> Result<Campaign, String> {
    let c = value.ok_or("the campaign is missing")?;
    Ok(Campaign {
        id: id("campaign.id", &c.id)?,
        advertiser_id: id("campaign.advertiser_id", &c.advertiser_id)?,
        name: c.name,
    })
}

fn campaign_status(status: i32) -> CampaignStatus {
    match campaign_pb::CampaignStatus::try_from(status) {
        Ok(campaign_pb::CampaignStatus::Paused) => CampaignStatus::Paused,
        Ok(campaign_pb::CampaignStatus::Closed) => CampaignStatus::Closed,
        _ => CampaignStatus::Active,
    }
}

fn campaign_fact(event: Option<campaign_event::Event>) -> Result<Fact, String> {
    use campaign_event::Event;
    Ok(match event {
        Some(Event::CampaignCreated(e)) => Fact::CampaignCreated(campaign(e.campaign)?),
        Some(Event::CampaignStatusChanged(e)) => {
            let to = campaign_status(e.campaign.as_ref().map_or(0, |c| c.status));
            Fact::CampaignStatusChanged {
                campaign: campaign(e.campaign)?,
                from: campaign_status(e.previous_status),
                to,
            }
        }
        Some(Event::CampaignAccepted(e)) => {
            let a = e.acceptance.ok_or("the acceptance is missing")?;
            Fact::CampaignAccepted {
                campaign_id: id("acceptance.campaign_id", &a.campaign_id)?,
                creator_id: id("acceptance.creator_id", &a.creator_id)?,
            }
        }
        Some(
            Event::VideoAdded(_)
            | Event::BudgetUpdated(_)
            | Event::TrackingUpdated(_)
            | Event::CommandRejected(_),
        )
        | None => Fact::Nothing,
    })
}

fn tracking_fact(event: Option<tracking_event_envelope::Event>) -> Result<Fact, String> {
    use tracking_event_envelope::Event;
    Ok(match event {
        Some(Event::EvidenceSubmitted(e)) => {
            let evidence = e.evidence.ok_or("the evidence is missing")?;
            let what = match EvidenceKind::try_from(evidence.kind) {
                Ok(EvidenceKind::Photo) => "a photo",
                Ok(EvidenceKind::Video) => "a video",
                Ok(EvidenceKind::Link) => "a link",
                _ => "evidence",
            };
            Fact::EvidenceSubmitted {
                evidence_id: id("evidence.id", &evidence.id)?,
                campaign_id: id("evidence.campaign_id", &evidence.campaign_id)?,
                what,
            }
        }
        Some(
            Event::TrackingEventCreated(_)
            | Event::CommandRejected(_)
            | Event::LinkCreated(_)
            | Event::LinkDisabled(_)
            | Event::ClickRecorded(_)
            | Event::ConversionRecorded(_)
            | Event::ConversionReviewed(_)
            // The creator hears of a refund from the commission service (commission.reversed.v1).
            | Event::ConversionRefunded(_),
        )
        | None => Fact::Nothing,
    })
}

fn commission_fact(event: Option<commission_event::Event>) -> Result<Fact, String> {
    use commission_event::Event;
    Ok(match event {
        Some(Event::CommissionCalculated(e)) => {
            let c = e.commission.ok_or("the commission is missing")?;
            Fact::CommissionEarned {
                commission_id: id("commission.id", &c.id)?,
                campaign_id: id("commission.campaign_id", &c.campaign_id)?,
                creator_id: id("commission.creator_id", &c.creator_id)?,
                amount: money("commission.amount", c.amount)?,
            }
        }
        Some(Event::CommissionApproved(e)) => {
            decided(e.commission, Decision::Approved { early: e.early })?
        }
        Some(Event::CommissionDeclined(e)) => {
            decided(e.commission, Decision::Declined { reason: e.reason })?
        }
        Some(Event::CommissionReversed(e)) => {
            let c = e.commission.ok_or("the commission is missing")?;
            let currency = c
                .amount
                .as_ref()
                .map(|a| a.currency.clone())
                .unwrap_or_default();
            // An absent amount took nothing back.
            let part = |m: Option<MoneyPb>| {
                m.map_or_else(
                    || Money {
                        amount_minor: 0,
                        currency: currency.clone(),
                    },
                    |m| Money {
                        amount_minor: m.amount_minor,
                        currency: m.currency,
                    },
                )
            };
            let decision = Decision::Reversed {
                chargeback: e.kind == "chargeback",
                reason: e.reason,
                reversed: part(e.reversed),
                clawed_back: part(e.clawed_back),
            };
            decided(Some(c), decision)?
        }
        Some(
            Event::CommissionRejected(_)
            | Event::CommissionReserved(_)
            | Event::CommissionReleased(_)
            | Event::CommissionSettled(_)
            | Event::BudgetExhausted(_)
            | Event::CommandRejected(_),
        )
        | None => Fact::Nothing,
    })
}

/// A commission's approval, decline or reversal, for its creator.
fn decided(
    commission: Option<commission_pb::Commission>,
    decision: Decision,
) -> Result<Fact, String> {
    let c = commission.ok_or("the commission is missing")?;
    Ok(Fact::CommissionDecided {
        commission_id: id("commission.id", &c.id)?,
        campaign_id: id("commission.campaign_id", &c.campaign_id)?,
        creator_id: id("commission.creator_id", &c.creator_id)?,
        amount: money("commission.amount", c.amount)?,
        decision,
    })
}

fn payment_fact(event: Option<payment_event::Event>) -> Result<Fact, String> {
    use payment_event::Event;
    let (stage, payout) = match event {
        Some(Event::PayoutRequested(e)) => (PayoutStage::Requested, e.payout),
        Some(Event::PayoutCompleted(e)) => (PayoutStage::Completed, e.payout),
        Some(Event::PaymentFailed(e)) => (PayoutStage::Failed, e.payout),
        Some(Event::PayoutRejected(e)) => (PayoutStage::Rejected, e.payout),
        // The creator hears of a failure when the provider fails (payment.failed.v1).
        Some(
            Event::PaymentProcessed(_)
            | Event::CommandRejected(_)
            | Event::PayoutProcessing(_)
            | Event::PayoutFailed(_),
        )
        | None => {
            return Ok(Fact::Nothing);
        }
    };
    let p: payment_pb::Payout = payout.ok_or("the payout is missing")?;
    Ok(Fact::Payout {
        stage,
        payout_id: id("payout.id", &p.id)?,
        creator_id: id("payout.creator_id", &p.creator_id)?,
        amount: money("payout.amount", p.amount)?,
        failure_reason: p.failure_reason,
    })
}

fn webhook_fact(event: Option<webhook_event::Event>) -> Result<Fact, String> {
    use webhook_event::Event;
    Ok(match event {
        Some(Event::EndpointDisabled(e)) => {
            let endpoint = e.endpoint.ok_or("the endpoint is missing")?;
            let reason = if e.reason.is_empty() {
                endpoint.disabled_reason
            } else {
                e.reason
            };
            Fact::WebhookEndpointDisabled {
                endpoint_id: id("endpoint.id", &endpoint.id)?,
                owner_id: id("endpoint.owner_id", &endpoint.owner_id)?,
                url: endpoint.url,
                reason,
            }
        }
        Some(Event::CommandRejected(_)) | None => Fact::Nothing,
    })
}

/// Applies one source's events.
#[derive(Debug, Clone)]
pub struct EventFeed {
    source: Source,
    notifications: Notifications,
}

impl EventFeed {
    pub fn new(source: Source, notifications: Notifications) -> Self {
        Self {
            source,
            notifications,
        }
    }
}

impl EventFeed {
    /// Decodes one message into the event it carries, or why it is refused.
    fn incoming(&self, delivery: &Delivery) -> Result<Incoming, String> {
        let (metadata, fact) = self.source.decode(&delivery.payload)?;
        let metadata = metadata.unwrap_or_default();
        let correlation_id = if metadata.correlation_id.is_empty() {
            delivery.correlation_id.clone().unwrap_or_default()
        } else {
            metadata.correlation_id
        };
        Ok(Incoming {
            message_id: delivery.message_id.clone(),
            correlation_id,
            version: metadata.aggregate_version,
            fact,
        })
    }
}

impl Handler for EventFeed {
    fn batch_pool(&self) -> Option<&PgPool> {
        Some(self.notifications.pool())
    }

    fn applies_sets(&self) -> bool {
        true
    }

    /// A person reads these: tens of milliseconds are not seen, and they gather a set.
    fn linger(&self) -> std::time::Duration {
        std::time::Duration::from_millis(50)
    }

    /// Every failure but a refusal is the database's or a campaign still in flight: retry.
    async fn apply_set(
        &self,
        conn: &mut PgConnection,
        deliveries: &[&Delivery],
    ) -> Result<Vec<Result<(), Failure>>, Failure> {
        let messages: Vec<(&str, Result<Incoming, String>)> = deliveries
            .iter()
            .map(|d| (d.message_id.as_str(), self.incoming(d)))
            .collect();
        let applied = Notifications::apply_set(conn, self.source.consumer(), &messages)
            .await
            .map_err(Failure::transient)?;
        Ok(applied
            .into_iter()
            .map(|outcome| match outcome {
                Ok(Applied::Stored(_) | Applied::Duplicate) => Ok(()),
                Ok(Applied::Refused(reason)) => Err(Failure::Rejected(reason)),
                Err(e) => Err(Failure::transient(e)),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_reads_its_service_s_topic_under_its_own_consumer_name() {
        for source in Source::ALL {
            assert_eq!(
                source.consumer(),
                format!("notification/{}-events", source.service())
            );
        }
    }

    #[test]
    fn garbage_is_refused_and_unrelated_events_report_nothing() {
        assert!(Source::Payment.decode(&[0xff, 0xff, 0xff]).is_err());
        let video = CampaignEvent {
            metadata: None,
            event: Some(campaign_event::Event::VideoAdded(Default::default())),
        };
        assert_eq!(
            Source::Campaign.decode(&video.encode_to_vec()),
            Ok((None, Fact::Nothing))
        );
        let accepted = CampaignEvent {
            metadata: None,
            event: Some(campaign_event::Event::CampaignAccepted(Default::default())),
        };
        assert!(Source::Campaign.decode(&accepted.encode_to_vec()).is_err());
    }

    #[test]
    fn a_disabled_webhook_endpoint_is_a_fact_for_its_owner_and_a_rejection_is_nothing() {
        use affiliate_proto::webhook::{Endpoint, EndpointDisabled};
        let envelope = |event| WebhookEvent {
            metadata: None,
            event: Some(event),
        };
        let disabled = |reason: &str, disabled_reason: &str| {
            envelope(webhook_event::Event::EndpointDisabled(EndpointDisabled {
                endpoint: Some(Endpoint {
                    id: Uuid::from_u128(6).to_string(),
                    owner_id: Uuid::from_u128(7).to_string(),
                    url: "https://partner.example/hooks".into(),
                    disabled_reason: disabled_reason.into(),
                    ..Default::default()
                }),
                reason: reason.into(),
            }))
            .encode_to_vec()
        };
        let fact = |reason: &str| Fact::WebhookEndpointDisabled {
            endpoint_id: Uuid::from_u128(6),
            owner_id: Uuid::from_u128(7),
            url: "https://partner.example/hooks".into(),
            reason: reason.into(),
        };
        assert_eq!(
            Source::Webhook.decode(&disabled("the endpoint answered 410 Gone", "")),
            Ok((None, fact("the endpoint answered 410 Gone")))
        );
        assert_eq!(
            Source::Webhook.decode(&disabled("", "20 messages in a row failed")),
            Ok((None, fact("20 messages in a row failed"))),
            "the endpoint's own reason when the event has none"
        );
        let no_endpoint = envelope(webhook_event::Event::EndpointDisabled(Default::default()));
        assert!(
            Source::Webhook
                .decode(&no_endpoint.encode_to_vec())
                .is_err()
        );
        let rejected = envelope(webhook_event::Event::CommandRejected(Default::default()));
        assert_eq!(
            Source::Webhook.decode(&rejected.encode_to_vec()),
            Ok((None, Fact::Nothing))
        );
    }
}
