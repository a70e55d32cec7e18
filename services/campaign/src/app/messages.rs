//! Turning rows into API messages, and state changes into outbox messages (event envelopes).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use affiliate_proto::campaign::{self as pb, campaign_event::Event};
use affiliate_proto::common::Money;
use service_runtime::context::CommandContext;
use service_runtime::outbox::{self, OutboxMessage, Subject};

use crate::adapters::repository::{AcceptanceRow, CampaignRow, VideoRow};
use crate::domain::{CampaignStatus, PauseReason, TrackingSettings};

/// The service's name: topics are `campaign-events` and `campaign-commands`.
pub const SERVICE: &str = "campaign";
/// Aggregate type in message metadata.
pub const AGGREGATE: &str = "campaign";

pub use service_runtime::time::{duration_secs, now, timestamp};

pub fn status_to_proto(status: Option<CampaignStatus>) -> pb::CampaignStatus {
    match status {
        Some(CampaignStatus::Active) => pb::CampaignStatus::Active,
        Some(CampaignStatus::Paused) => pb::CampaignStatus::Paused,
        Some(CampaignStatus::Closed) => pb::CampaignStatus::Closed,
        None => pb::CampaignStatus::Unspecified,
    }
}

pub fn campaign(row: &CampaignRow) -> pb::Campaign {
    pb::Campaign {
        id: row.id.to_string(),
        advertiser_id: row.advertiser_id.to_string(),
        name: row.name.clone(),
        description: row.description.clone(),
        commission_rate_bps: u32::try_from(row.commission_rate_bps).unwrap_or(0),
        budget: Some(Money {
            amount_minor: row.budget_minor,
            currency: row.currency.clone(),
        }),
        status: status_to_proto(row.status()).into(),
        version: row.version,
        created_at: Some(timestamp(row.created_at)),
        updated_at: Some(timestamp(row.updated_at)),
        pause_reason: match row.pause_reason() {
            Some(PauseReason::BudgetExhausted) => pb::PauseReason::BudgetExhausted,
            Some(PauseReason::Advertiser) | None => pb::PauseReason::Unspecified,
        }
        .into(),
        tracking: row.tracking().map(|t| tracking(&t)),
        hold_period: Some(duration_secs(row.hold_period_secs)),
    }
}

/// Normalized tracking settings as the API returns them: every default spelled out.
pub fn tracking(settings: &TrackingSettings) -> pb::TrackingSettings {
    pb::TrackingSettings {
        landing_url: settings.landing_url.clone(),
        landing_domains: settings.landing_domains.clone(),
        click_id_param: settings.click_id_param.clone(),
        attribution_window: Some(duration_secs(settings.attribution_window_secs)),
        min_click_to_conversion: Some(duration_secs(settings.min_click_to_conversion_secs)),
        fallback_url: settings.fallback_url.clone().unwrap_or_default(),
    }
}

pub fn video(row: &VideoRow) -> pb::Video {
    pb::Video {
        id: row.id.to_string(),
        campaign_id: row.campaign_id.to_string(),
        url: row.url.clone(),
        title: row.title.clone(),
        added_at: Some(timestamp(row.added_at)),
    }
}

pub fn acceptance(row: &AcceptanceRow) -> pb::Acceptance {
    pb::Acceptance {
        campaign_id: row.campaign_id.to_string(),
        creator_id: row.creator_id.to_string(),
        accepted_at: Some(timestamp(row.accepted_at)),
    }
}

/// The outbox message for one domain event of campaign `aggregate_id` at `version`.
pub fn event_message(
    ctx: &CommandContext,
    aggregate_id: Uuid,
    version: i64,
    occurred_at: DateTime<Utc>,
    event: Event,
) -> OutboxMessage {
    let subject = Subject::new(AGGREGATE, aggregate_id, version);
    outbox::event::<pb::CampaignEvent>(ctx, subject, occurred_at, event)
}
