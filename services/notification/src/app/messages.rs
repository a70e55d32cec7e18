//! Rows as API messages.

use affiliate_proto::notification::{self as pb, NotificationKind};
pub use service_runtime::time::{now, timestamp};

use crate::adapters::repository::NotificationRow;
use crate::domain::Kind;

pub fn kind(kind: Option<Kind>) -> NotificationKind {
    match kind {
        Some(Kind::CampaignCreated) => NotificationKind::CampaignCreated,
        Some(Kind::CampaignStatusChanged) => NotificationKind::CampaignStatusChanged,
        Some(Kind::CampaignAccepted) => NotificationKind::CampaignAccepted,
        Some(Kind::EvidenceSubmitted) => NotificationKind::EvidenceSubmitted,
        Some(Kind::CommissionEarned) => NotificationKind::CommissionEarned,
        Some(Kind::PayoutRequested) => NotificationKind::PayoutRequested,
        Some(Kind::PayoutCompleted) => NotificationKind::PayoutCompleted,
        Some(Kind::PayoutFailed) => NotificationKind::PayoutFailed,
        Some(Kind::PayoutRejected) => NotificationKind::PayoutRejected,
        Some(Kind::CommissionApproved) => NotificationKind::CommissionApproved,
        Some(Kind::CommissionDeclined) => NotificationKind::CommissionDeclined,
        Some(Kind::CommissionReversed) => NotificationKind::CommissionReversed,
        Some(Kind::WebhookEndpointDisabled) => NotificationKind::WebhookEndpointDisabled,
        None => NotificationKind::Unspecified,
    }
}

pub fn notification(row: &NotificationRow) -> pb::Notification {
    pb::Notification {
        id: row.id.to_string(),
        sequence: row.sequence,
        user_id: row.user_id.to_string(),
        kind: kind(Kind::parse(&row.kind)).into(),
        title: row.title.clone(),
        body: row.body.clone(),
        subject_type: row.subject_type.clone(),
        subject_id: row.subject_id.to_string(),
        correlation_id: row.correlation_id.clone(),
        read_at: row.read_at.map(timestamp),
        created_at: Some(timestamp(row.created_at)),
    }
}
