//! Turning rows into API messages, and state changes into outbox messages: event envelopes on
//! `tracking-events`, and the calculate command a purchase sends on `commission-commands`.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use affiliate_proto::commission::{
    CalculateCommissionRequest, CommissionCommand, ReverseCommissionRequest,
    commission_command::Command,
};
use affiliate_proto::common::Money;
use affiliate_proto::tracking::{self as pb};
use service_runtime::context::CommandContext;
use service_runtime::outbox::{self, OutboxMessage, Subject};

use crate::adapters::conversions::{ConversionRow, PostbackKeyRow, RefundRow};
use crate::adapters::links::LinkRow;
use crate::adapters::repository::{EvidenceRow, TrackingEventRow};
use crate::domain::{EventKind, EvidenceKind};

/// The service's name: topics are `tracking-events` and `tracking-commands`.
pub const SERVICE: &str = "tracking";
/// Aggregate type of a tracking event in message metadata.
pub const TRACKING_EVENT: &str = "tracking_event";
/// Aggregate type of a piece of evidence in message metadata.
pub const EVIDENCE: &str = "evidence";
/// Aggregate type of a tracking link in message metadata.
pub const LINK: &str = "link";
/// Aggregate type of a conversion in message metadata.
pub const CONVERSION: &str = "conversion";
/// Aggregate type of a click in message metadata.
pub const CLICK: &str = "click";
/// Tracking events and evidence are written once: their only version.
pub const VERSION: i64 = 1;
/// The versioned type of the command a purchase sends.
pub const CALCULATE_COMMAND: &str = "commission.calculate.command.v1";
/// The versioned type of the command a refund sends.
pub const REVERSE_COMMAND: &str = "commission.reverse.command.v1";

pub use service_runtime::time::{now, timestamp};

pub fn event_kind_to_proto(kind: Option<EventKind>) -> pb::TrackingEventKind {
    match kind {
        Some(EventKind::View) => pb::TrackingEventKind::View,
        Some(EventKind::Click) => pb::TrackingEventKind::Click,
        Some(EventKind::Purchase) => pb::TrackingEventKind::Purchase,
        None => pb::TrackingEventKind::Unspecified,
    }
}

/// The domain's kind of a request's `kind`; `None` for unspecified and unknown values.
pub fn event_kind_from_proto(kind: i32) -> Option<EventKind> {
    match pb::TrackingEventKind::try_from(kind) {
        Ok(pb::TrackingEventKind::View) => Some(EventKind::View),
        Ok(pb::TrackingEventKind::Click) => Some(EventKind::Click),
        Ok(pb::TrackingEventKind::Purchase) => Some(EventKind::Purchase),
        Ok(pb::TrackingEventKind::Unspecified) | Err(_) => None,
    }
}

pub fn evidence_kind_to_proto(kind: Option<EvidenceKind>) -> pb::EvidenceKind {
    match kind {
        Some(EvidenceKind::Photo) => pb::EvidenceKind::Photo,
        Some(EvidenceKind::Video) => pb::EvidenceKind::Video,
        Some(EvidenceKind::Link) => pb::EvidenceKind::Link,
        None => pb::EvidenceKind::Unspecified,
    }
}

/// The domain's kind of a request's `kind`; `None` for unspecified and unknown values.
pub fn evidence_kind_from_proto(kind: i32) -> Option<EvidenceKind> {
    match pb::EvidenceKind::try_from(kind) {
        Ok(pb::EvidenceKind::Photo) => Some(EvidenceKind::Photo),
        Ok(pb::EvidenceKind::Video) => Some(EvidenceKind::Video),
        Ok(pb::EvidenceKind::Link) => Some(EvidenceKind::Link),
        Ok(pb::EvidenceKind::Unspecified) | Err(_) => None,
    }
}

pub fn tracking_event(row: &TrackingEventRow) -> pb::TrackingEvent {
    let amount = match (row.amount_minor, &row.currency) {
        (Some(amount_minor), Some(currency)) => Some(Money {
            amount_minor,
            currency: currency.clone(),
        }),
        _ => None,
    };
    pb::TrackingEvent {
        id: row.id.to_string(),
        campaign_id: row.campaign_id.to_string(),
        creator_id: row.creator_id.to_string(),
        kind: event_kind_to_proto(row.kind()).into(),
        amount,
        product_id: row.product_id.clone().unwrap_or_default(),
        occurred_at: Some(timestamp(row.occurred_at)),
        recorded_at: Some(timestamp(row.recorded_at)),
    }
}

pub fn evidence(row: &EvidenceRow) -> pb::Evidence {
    pb::Evidence {
        id: row.id.to_string(),
        campaign_id: row.campaign_id.to_string(),
        creator_id: row.creator_id.to_string(),
        kind: evidence_kind_to_proto(row.kind()).into(),
        url: row.url.clone(),
        note: row.note.clone(),
        submitted_at: Some(timestamp(row.submitted_at)),
    }
}

pub fn conversion(row: &ConversionRow) -> pb::Conversion {
    let status = match row.status.as_str() {
        "accepted" => pb::ConversionStatus::Accepted,
        "held" => pb::ConversionStatus::Held,
        "declined" => pb::ConversionStatus::Declined,
        _ => pb::ConversionStatus::Unspecified,
    };
    pb::Conversion {
        id: row.id.to_string(),
        advertiser_id: row.advertiser_id.to_string(),
        order_id: row.order_id.clone(),
        click_id: row.click_id.simple().to_string(),
        link_id: row.link_id.to_string(),
        campaign_id: row.campaign_id.to_string(),
        creator_id: row.creator_id.to_string(),
        sub_ids: Some(sub_ids([
            &row.sub1, &row.sub2, &row.sub3, &row.sub4, &row.sub5,
        ])),
        amount: Some(Money {
            amount_minor: row.amount_minor,
            currency: row.currency.clone(),
        }),
        converted_at: Some(timestamp(row.converted_at)),
        recorded_at: Some(timestamp(row.recorded_at)),
        status: status.into(),
        tracking_event_id: row
            .tracking_event_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        reason: row.reason.clone().unwrap_or_default(),
        clicked_at: Some(timestamp(row.clicked_at)),
        refunded_minor: row.refunded_minor,
    }
}

pub fn refund(row: &RefundRow) -> pb::Refund {
    pb::Refund {
        conversion_id: row.conversion_id.to_string(),
        order_id: row.order_id.clone(),
        refund_id: row.refund_id.clone(),
        amount: Some(Money {
            amount_minor: row.amount_minor,
            currency: row.currency.clone(),
        }),
        kind: row.kind.clone(),
        reason: row.reason.clone().unwrap_or_default(),
        recorded_at: Some(timestamp(row.recorded_at)),
    }
}

pub fn postback_key(row: &PostbackKeyRow) -> pb::PostbackKey {
    pb::PostbackKey {
        id: row.id.to_string(),
        advertiser_id: row.advertiser_id.to_string(),
        prefix: row.secret.chars().take(8).collect(),
        created_at: Some(timestamp(row.created_at)),
        revoked_at: row.revoked_at.map(timestamp),
    }
}

/// A link's five sub-ids as the API carries them (empty where none).
fn sub_ids(subs: [&Option<String>; 5]) -> pb::SubIds {
    let [sub1, sub2, sub3, sub4, sub5] = subs.map(|s| s.clone().unwrap_or_default());
    pb::SubIds {
        sub1,
        sub2,
        sub3,
        sub4,
        sub5,
    }
}

pub fn link(row: &LinkRow) -> pb::TrackingLink {
    pb::TrackingLink {
        id: row.id.to_string(),
        code: row.code.clone(),
        campaign_id: row.campaign_id.to_string(),
        creator_id: row.creator_id.to_string(),
        sub_ids: Some(sub_ids([
            &row.sub1, &row.sub2, &row.sub3, &row.sub4, &row.sub5,
        ])),
        deep_link: row.deep_link.clone().unwrap_or_default(),
        disabled: row.disabled_at.is_some(),
        created_at: Some(timestamp(row.created_at)),
        disabled_at: row.disabled_at.map(timestamp),
        version: row.version,
    }
}

/// The `commission.calculate.command.v1` a purchase sends to the commission service: about the
/// tracking event (its id is the message key), in the same workflow (same correlation id), caused
/// by the purchase's `tracking_event.created.v1` message `caused_by`. `None` for a view or a
/// click, which carry no amount.
pub fn calculate_command(
    ctx: &CommandContext,
    row: &TrackingEventRow,
    caused_by: Uuid,
    occurred_at: DateTime<Utc>,
) -> Option<OutboxMessage> {
    let (Some(amount_minor), Some(currency)) = (row.amount_minor, &row.currency) else {
        return None;
    };
    let ctx = CommandContext {
        causation_id: Some(caused_by.to_string()),
        ..ctx.clone()
    };
    let subject = Subject::new(TRACKING_EVENT, row.id, VERSION);
    let command = Command::Calculate(CalculateCommissionRequest {
        tracking_event_id: row.id.to_string(),
        campaign_id: row.campaign_id.to_string(),
        creator_id: row.creator_id.to_string(),
        purchase_amount: Some(Money {
            amount_minor,
            currency: currency.clone(),
        }),
    });
    Some(outbox::command::<CommissionCommand>(
        &ctx,
        subject,
        occurred_at,
        command,
    ))
}

/// The `commission.reverse.command.v1` a refund sends to the commission service: about the
/// refunded conversion's purchase `tracking_event_id` (the message key, as its calculate command
/// was), caused by the refund's `conversion.refunded.v1` message `caused_by`, carrying this
/// refund's amount alone.
pub fn reverse_command(
    ctx: &CommandContext,
    tracking_event_id: Uuid,
    refund: &RefundRow,
    caused_by: Uuid,
    occurred_at: DateTime<Utc>,
) -> OutboxMessage {
    let ctx = CommandContext {
        causation_id: Some(caused_by.to_string()),
        ..ctx.clone()
    };
    let subject = Subject::new(TRACKING_EVENT, tracking_event_id, VERSION);
    let command = Command::Reverse(ReverseCommissionRequest {
        tracking_event_id: tracking_event_id.to_string(),
        refund_id: refund.refund_id.clone(),
        refunded_amount: Some(Money {
            amount_minor: refund.amount_minor,
            currency: refund.currency.clone(),
        }),
        kind: refund.kind.clone(),
        reason: refund.reason.clone().unwrap_or_default(),
    });
    outbox::command::<CommissionCommand>(&ctx, subject, occurred_at, command)
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    fn row(kind: EventKind, amount: Option<(i64, &str)>) -> TrackingEventRow {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        TrackingEventRow {
            id: Uuid::now_v7(),
            campaign_id: Uuid::now_v7(),
            creator_id: Uuid::now_v7(),
            kind: kind.as_str().to_owned(),
            amount_minor: amount.map(|(minor, _)| minor),
            currency: amount.map(|(_, currency)| currency.to_owned()),
            product_id: None,
            occurred_at: at,
            recorded_at: at,
        }
    }

    #[test]
    fn a_purchase_sends_a_calculate_command_keyed_by_the_event_and_caused_by_its_message() {
        let ctx = CommandContext {
            causation_id: Some("the-request".into()),
            ..CommandContext::new()
        };
        let purchase = row(EventKind::Purchase, Some((1_000, "USD")));
        let caused_by = Uuid::now_v7();
        let message = calculate_command(&ctx, &purchase, caused_by, purchase.recorded_at);
        let message = message.unwrap_or_else(|| panic!("a purchase sends a command"));
        assert_eq!(message.topic, "commission-commands");
        assert_eq!(message.message_type, CALCULATE_COMMAND);
        assert_eq!(
            (message.aggregate_type.as_str(), message.aggregate_id),
            (TRACKING_EVENT, purchase.id)
        );
        assert_eq!(message.correlation_id, ctx.correlation_id);
        assert_eq!(message.causation_id, Some(caused_by.to_string()));
        let envelope = CommissionCommand::decode(message.payload.as_slice()).unwrap_or_default();
        let metadata = envelope.metadata.unwrap_or_default();
        assert_eq!(metadata.message_id, message.message_id.to_string());
        assert_eq!(metadata.causation_id, caused_by.to_string());
        assert_eq!(metadata.aggregate_version, VERSION);
        assert_eq!(
            envelope.command,
            Some(Command::Calculate(CalculateCommissionRequest {
                tracking_event_id: purchase.id.to_string(),
                campaign_id: purchase.campaign_id.to_string(),
                creator_id: purchase.creator_id.to_string(),
                purchase_amount: Some(Money {
                    amount_minor: 1_000,
                    currency: "USD".into()
                }),
            }))
        );
    }

    #[test]
    fn views_and_clicks_send_no_command() {
        let ctx = CommandContext::new();
        for kind in [EventKind::View, EventKind::Click] {
            let event = row(kind, None);
            assert_eq!(
                calculate_command(&ctx, &event, Uuid::now_v7(), event.recorded_at),
                None
            );
        }
    }

    #[test]
    fn unspecified_and_unknown_kinds_have_no_domain_kind() {
        assert_eq!(
            event_kind_from_proto(pb::TrackingEventKind::Purchase.into()),
            Some(EventKind::Purchase)
        );
        assert_eq!(
            event_kind_from_proto(pb::TrackingEventKind::Unspecified.into()),
            None
        );
        assert_eq!(event_kind_from_proto(99), None);
        assert_eq!(
            evidence_kind_from_proto(pb::EvidenceKind::Link.into()),
            Some(EvidenceKind::Link)
        );
        assert_eq!(
            evidence_kind_from_proto(pb::EvidenceKind::Unspecified.into()),
            None
        );
        assert_eq!(evidence_kind_from_proto(-1), None);
    }

    #[test]
    fn rows_become_api_messages_with_the_amount_only_on_purchases() {
        let purchase = row(EventKind::Purchase, Some((250, "EUR")));
        let message = tracking_event(&purchase);
        assert_eq!(message.kind(), pb::TrackingEventKind::Purchase);
        assert_eq!(
            message.amount,
            Some(Money {
                amount_minor: 250,
                currency: "EUR".into()
            })
        );
        let view = tracking_event(&row(EventKind::View, None));
        assert_eq!(
            (view.kind(), view.amount),
            (pb::TrackingEventKind::View, None)
        );
    }
}
