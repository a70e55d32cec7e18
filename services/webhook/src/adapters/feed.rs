//! The event feeds: one consumer per service's `{service}-events` topic (subscription `webhook`),
//! each decoding that topic's envelope into an [`Incoming`] event (its type, aggregate, time and
//! proto3 JSON) and applying a batch at once ([`crate::app::feed::apply_set`]). An undecodable
//! message is recorded as rejected and acknowledged; database trouble, or an event about a
//! campaign not known yet, is retried.

use prost::Message as _;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use affiliate_proto::campaign::CampaignEvent;
use affiliate_proto::commission::CommissionEvent;
use affiliate_proto::common::MessageMetadata;
use affiliate_proto::payment::PaymentEvent;
use affiliate_proto::tracking::TrackingEventEnvelope;
use messaging::campaign_copy::{Change, change_of};
use messaging::{Delivery, Failure, Handler};

use crate::app::feed::{Applied, Incoming, apply_set};
use crate::domain::event;

/// The services whose events partners receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Campaign,
    Tracking,
    Commission,
    Payment,
}

impl Source {
    pub const ALL: [Self; 4] = [
        Self::Campaign,
        Self::Tracking,
        Self::Commission,
        Self::Payment,
    ];

    /// The publishing service, whose `events_topic` this source reads.
    pub fn service(self) -> &'static str {
        match self {
            Self::Campaign => "campaign",
            Self::Tracking => "tracking",
            Self::Commission => "commission",
            Self::Payment => "payment",
        }
    }

    /// The inbox consumer name.
    pub fn consumer(self) -> &'static str {
        match self {
            Self::Campaign => "webhook/campaign-events",
            Self::Tracking => "webhook/tracking-events",
            Self::Commission => "webhook/commission-events",
            Self::Payment => "webhook/payment-events",
        }
    }

    /// The process part that consumes it.
    pub fn part(self) -> &'static str {
        match self {
            Self::Campaign => "campaign-event feed",
            Self::Tracking => "tracking-event feed",
            Self::Commission => "commission-event feed",
            Self::Payment => "payment-event feed",
        }
    }

    /// The event an envelope carries, as partners see it; `Err`: not this topic's envelope. The
    /// JSON is made only for the types partners receive (most events of a busy platform, e.g.
    /// the saga's money movements, are not).
    pub fn decode(self, payload: &[u8]) -> Result<Incoming, String> {
        fn json<T: serde::Serialize>(
            metadata: Option<&MessageMetadata>,
            envelope: &T,
        ) -> Result<Value, String> {
            match metadata {
                Some(m) if event::delivered(&m.message_type) => serde_json::to_value(envelope)
                    .map_err(|e| format!("the event has no JSON form: {e}")),
                _ => Ok(Value::Null),
            }
        }
        let undecodable =
            |e: prost::DecodeError| format!("not a {} event envelope: {e}", self.service());
        let (metadata, value, owner) = match self {
            Self::Campaign => {
                let e = CampaignEvent::decode(payload).map_err(undecodable)?;
                let value = json(e.metadata.as_ref(), &e)?;
                // A campaign's state names its advertiser: kept for the events about it.
                let owner = match change_of(e.clone())? {
                    Some((id, _, Change::State(c))) => {
                        Uuid::parse_str(&c.advertiser_id).ok().map(|a| (id, a))
                    }
                    _ => None,
                };
                (e.metadata, value, owner)
            }
            Self::Tracking => {
                let e = TrackingEventEnvelope::decode(payload).map_err(undecodable)?;
                (e.metadata.clone(), json(e.metadata.as_ref(), &e)?, None)
            }
            Self::Commission => {
                let e = CommissionEvent::decode(payload).map_err(undecodable)?;
                (e.metadata.clone(), json(e.metadata.as_ref(), &e)?, None)
            }
            Self::Payment => {
                let e = PaymentEvent::decode(payload).map_err(undecodable)?;
                (e.metadata.clone(), json(e.metadata.as_ref(), &e)?, None)
            }
        };
        let metadata = metadata.ok_or("the envelope has no metadata")?;
        Ok(incoming(metadata, value, owner))
    }
}

/// The envelope's JSON without its metadata: `{"<event>": data}`; data is that one value.
fn data_of(value: Value) -> Value {
    match value {
        Value::Null => Value::Null,
        Value::Object(mut map) => {
            map.remove("metadata");
            match map.into_iter().next() {
                Some((_, data)) => data,
                None => Value::Object(Default::default()),
            }
        }
        other => other,
    }
}

fn incoming(metadata: MessageMetadata, value: Value, owner: Option<(Uuid, Uuid)>) -> Incoming {
    let occurred_at = metadata
        .occurred_at
        .and_then(|t| {
            chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
        })
        .unwrap_or_else(chrono::Utc::now);
    Incoming {
        webhook_id: format!("msg_{}", metadata.message_id.replace('-', "")),
        event_type: metadata.message_type,
        aggregate: format!("{}/{}", metadata.aggregate_type, metadata.aggregate_id),
        occurred_at,
        data: data_of(value),
        campaign_owner: owner,
    }
}

/// One topic's feed.
#[derive(Debug, Clone)]
pub struct EventFeed {
    source: Source,
    pool: PgPool,
}

impl EventFeed {
    pub fn new(source: Source, pool: PgPool) -> Self {
        Self { source, pool }
    }
}

impl Handler for EventFeed {
    fn batch_pool(&self) -> Option<&PgPool> {
        Some(&self.pool)
    }

    fn applies_sets(&self) -> bool {
        true
    }

    /// Every failure but a refusal is the database's or a campaign still in flight: retry.
    async fn apply_set(
        &self,
        conn: &mut PgConnection,
        deliveries: &[&Delivery],
    ) -> Result<Vec<Result<(), Failure>>, Failure> {
        let messages: Vec<(&str, Result<Incoming, String>)> = deliveries
            .iter()
            .map(|d| (d.message_id.as_str(), self.source.decode(&d.payload)))
            .collect();
        let applied = apply_set(conn, self.source.consumer(), &messages)
            .await
            .map_err(Failure::transient)?;
        Ok(applied
            .into_iter()
            .map(|outcome| match outcome {
                Ok(Applied::Queued(_) | Applied::Duplicate) => Ok(()),
                Ok(Applied::Refused(reason)) => Err(Failure::Rejected(reason)),
                Err(e) => Err(Failure::transient(e)),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use affiliate_proto::commission::{Commission, CommissionApproved, commission_event};

    #[test]
    fn an_event_becomes_its_type_aggregate_and_json_data() {
        let event = CommissionEvent {
            metadata: Some(MessageMetadata {
                message_id: "0193a9e0-0000-7000-8000-000000000001".into(),
                message_type: "commission.approved.v1".into(),
                aggregate_type: "commission".into(),
                aggregate_id: "c1".into(),
                ..Default::default()
            }),
            event: Some(commission_event::Event::CommissionApproved(
                CommissionApproved {
                    commission: Some(Commission {
                        id: "c1".into(),
                        creator_id: "0193a9e0-0000-7000-8000-0000000000c1".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )),
        };
        let incoming = Source::Commission.decode(&event.encode_to_vec()).unwrap();
        assert_eq!(incoming.webhook_id, "msg_0193a9e0000070008000000000000001");
        assert_eq!(incoming.event_type, "commission.approved.v1");
        assert_eq!(incoming.aggregate, "commission/c1");
        assert_eq!(incoming.data["commission"]["id"], "c1");
        assert!(Source::Payment.decode(&[0xff, 0xff]).is_err());
    }
}
