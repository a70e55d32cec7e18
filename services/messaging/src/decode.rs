//! Decoding the platform's envelopes to proto3 JSON by the topic they travel on (the CLI's
//! `tail` and `dlq`, the analytics service's audit trail).

use prost::Message;
use serde::Serialize;

use affiliate_proto::{campaign, commission, payment, tracking};

fn json<M: Message + Default + Serialize>(payload: &[u8]) -> serde_json::Value {
    match M::decode(payload) {
        Ok(message) => serde_json::to_value(&message)
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() })),
        Err(e) => {
            serde_json::json!({ "error": format!("not a valid envelope: {e}"), "bytes": payload.len() })
        }
    }
}

/// The envelope of `topic` (short or full name, DLQ suffix ignored) as JSON; unknown topics
/// give the payload size.
pub fn envelope(topic: &str, payload: &[u8]) -> serde_json::Value {
    let short = topic.rsplit('/').next().unwrap_or(topic);
    let base = short.split("-DLQ").next().unwrap_or(short);
    let service_topic = |service: &str, kind: &str| base.starts_with(&format!("{service}-{kind}"));
    if service_topic("campaign", "events") {
        json::<campaign::CampaignEvent>(payload)
    } else if service_topic("campaign", "commands") {
        json::<campaign::CampaignCommand>(payload)
    } else if service_topic("tracking", "events") {
        json::<tracking::TrackingEventEnvelope>(payload)
    } else if service_topic("tracking", "commands") {
        json::<tracking::TrackingCommand>(payload)
    } else if service_topic("commission", "events") {
        json::<commission::CommissionEvent>(payload)
    } else if service_topic("commission", "commands") {
        json::<commission::CommissionCommand>(payload)
    } else if service_topic("payment", "events") {
        json::<payment::PaymentEvent>(payload)
    } else if service_topic("payment", "commands") {
        json::<payment::PaymentCommand>(payload)
    } else {
        serde_json::json!({ "undecoded_bytes": payload.len() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_chosen_by_topic_including_dead_letter_topics() {
        let command = campaign::CampaignCommand {
            command: Some(campaign::campaign_command::Command::PauseCampaign(
                campaign::PauseCampaignRequest {
                    campaign_id: "c1".into(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        let bytes = command.encode_to_vec();
        let value = envelope("persistent://t/n/campaign-commands-campaign-DLQ", &bytes);
        assert_eq!(value["pauseCampaign"]["campaignId"], "c1");
        assert_eq!(envelope("other", &bytes)["undecoded_bytes"], bytes.len());
        assert!(
            envelope("campaign-events", &[0xff, 0xff])
                .get("error")
                .is_some()
        );
    }
}
