//! Which events partners receive, who owns each, and the JSON body they get.
//!
//! An event is about an advertiser, a creator, or a campaign (whose advertiser owns it too): the
//! first `advertiserId`, `creatorId` and `campaignId` in its proto3 JSON say which. The body is
//! the Standard Webhooks envelope `{"type", "timestamp", "data"}` with the event's proto3 JSON as
//! `data`, so a partner reads the same field names as the REST API and the typed events.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use uuid::Uuid;

/// The test event [`crate`] sends on request (SendTestEvent).
pub const TEST_EVENT: &str = "webhook.test.v1";

/// The event types partners can receive (an endpoint's filter names some of them). Commands'
/// rejections and the money movements inside the payout saga are the platform's own business.
pub const TYPES: &[&str] = &[
    "campaign.created.v1",
    "campaign.status_changed.v1",
    "campaign.budget_updated.v1",
    "campaign.budget_exhausted.v1",
    "campaign.tracking_updated.v1",
    "campaign.accepted.v1",
    "video.added.v1",
    "link.created.v1",
    "link.disabled.v1",
    "click.recorded.v1",
    "conversion.recorded.v1",
    "conversion.reviewed.v1",
    "conversion.refunded.v1",
    "tracking_event.created.v1",
    "evidence.submitted.v1",
    "commission.calculated.v1",
    "commission.rejected.v1",
    "commission.approved.v1",
    "commission.declined.v1",
    "commission.reversed.v1",
    "payout.requested.v1",
    "payout.processing.v1",
    "payout.completed.v1",
    "payout.failed.v1",
    "payout.rejected.v1",
    TEST_EVENT,
];

/// Whether partners receive events of `event_type`.
pub fn delivered(event_type: &str) -> bool {
    TYPES.contains(&event_type)
}

/// Who an event is about: the first of each id field found in its JSON, depth first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parties {
    pub advertiser: Option<Uuid>,
    pub creator: Option<Uuid>,
    pub campaign: Option<Uuid>,
}

impl Parties {
    pub fn of(data: &Value) -> Self {
        let mut parties = Self::default();
        parties.visit(data);
        parties
    }

    fn visit(&mut self, value: &Value) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    let slot = match key.as_str() {
                        "advertiserId" => &mut self.advertiser,
                        "creatorId" => &mut self.creator,
                        "campaignId" => &mut self.campaign,
                        _ => {
                            self.visit(v);
                            continue;
                        }
                    };
                    if slot.is_none() {
                        *slot = v.as_str().and_then(|s| Uuid::parse_str(s).ok());
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| self.visit(v)),
            _ => {}
        }
    }

    /// The owners whose endpoints receive the event: its advertiser (or the campaign's, from
    /// `campaign_owner`) and its creator.
    pub fn owners(&self, campaign_owner: Option<Uuid>) -> Vec<Uuid> {
        let mut owners: Vec<Uuid> = [self.advertiser.or(campaign_owner), self.creator]
            .into_iter()
            .flatten()
            .collect();
        owners.dedup();
        owners
    }
}

/// The JSON body of a message: `{"type": ..., "timestamp": RFC 3339, "data": ...}`.
pub fn body(event_type: &str, occurred_at: DateTime<Utc>, data: &Value) -> String {
    serde_json::json!({
        "type": event_type,
        "timestamp": occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "data": data,
    })
    .to_string()
}

/// Whether an endpoint with `filter` (empty: every type) receives `event_type`. The test event
/// goes only where it is sent.
pub fn wanted(filter: &[String], event_type: &str) -> bool {
    event_type != TEST_EVENT && (filter.is_empty() || filter.iter().any(|t| t == event_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_id_of_each_party_is_found_at_any_depth() {
        let a = Uuid::now_v7();
        let c = Uuid::now_v7();
        let k = Uuid::now_v7();
        let data = serde_json::json!({
            "commission": {"id": "x", "campaignId": k.to_string(), "creatorId": c.to_string()},
            "other": [{"creatorId": Uuid::now_v7().to_string()}],
        });
        let parties = Parties::of(&data);
        assert_eq!(parties.creator, Some(c));
        assert_eq!(parties.campaign, Some(k));
        assert_eq!(parties.advertiser, None);
        assert_eq!(parties.owners(Some(a)), vec![a, c]);
        let own = serde_json::json!({"campaign": {"advertiserId": a.to_string()}});
        assert_eq!(Parties::of(&own).owners(None), vec![a]);
        assert_eq!(
            Parties::of(&serde_json::json!({"creatorId": "nope"})).owners(None),
            Vec::<Uuid>::new()
        );
    }

    #[test]
    fn filters_and_the_test_event() {
        assert!(wanted(&[], "click.recorded.v1"));
        assert!(!wanted(
            &["payout.completed.v1".into()],
            "click.recorded.v1"
        ));
        assert!(!wanted(&[], TEST_EVENT));
        assert!(delivered("commission.approved.v1"));
        assert!(!delivered("commission.reserved.v1"));
    }

    #[test]
    fn the_body_is_the_standard_envelope() {
        let at = DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let body = body("payout.completed.v1", at, &serde_json::json!({"a": 1}));
        assert_eq!(
            body,
            r#"{"data":{"a":1},"timestamp":"2026-12-07T10:00:00.000Z","type":"payout.completed.v1"}"#
        );
    }
}
