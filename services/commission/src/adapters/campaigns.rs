//! The campaign-event feed: keeps the commission service's copy of each campaign's rate,
//! currency and status. Each event is applied at most once (the inbox) and only if newer than
//! what is stored (the aggregate version), so redelivery and reordering are harmless.

use prost::Message as _;
use sqlx::PgPool;
use uuid::Uuid;

use affiliate_proto::campaign::{Campaign, CampaignEvent, CampaignStatus, campaign_event::Event};
use messaging::{Delivery, Failure, Handler, inbox};

use crate::adapters::repository as repo;

/// The inbox consumer name of the feed.
pub const CONSUMER: &str = "commission/campaign-events";

/// Applies campaign events to `campaign_terms`.
#[derive(Debug, Clone)]
pub struct CampaignFeed {
    pool: PgPool,
}

impl CampaignFeed {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

fn status_text(status: i32) -> &'static str {
    match CampaignStatus::try_from(status) {
        Ok(CampaignStatus::Paused) => "paused",
        Ok(CampaignStatus::Closed) => "closed",
        _ => "active",
    }
}

fn transient(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Transient(e.into())
}

impl Handler for CampaignFeed {
    #[tracing::instrument(name = "db.transaction", skip_all, fields(otel.kind = "internal", db.system = "postgresql", operation = "handle"))]
    async fn handle(&self, delivery: &Delivery) -> Result<(), Failure> {
        let envelope = CampaignEvent::decode(delivery.payload.as_slice())
            .map_err(|e| Failure::Rejected(format!("not a campaign event envelope: {e}")))?;
        let version = envelope
            .metadata
            .as_ref()
            .map_or(0, |m| m.aggregate_version);
        // The campaign carried by the event, if it carries one (terms-changing events do).
        let (campaign_id, campaign): (Option<String>, Option<Campaign>) = match envelope.event {
            Some(Event::CampaignCreated(e)) => {
                (e.campaign.as_ref().map(|c| c.id.clone()), e.campaign)
            }
            Some(Event::CampaignStatusChanged(e)) => (Some(e.campaign_id), e.campaign),
            Some(Event::VideoAdded(e)) => (e.video.map(|v| v.campaign_id), None),
            Some(Event::CampaignAccepted(e)) => (e.acceptance.map(|a| a.campaign_id), None),
            Some(Event::CommandRejected(_)) | None => return Ok(()),
        };
        let campaign_id = campaign_id
            .and_then(|id| Uuid::parse_str(&id).ok())
            .ok_or_else(|| {
                Failure::Rejected("campaign event without a valid campaign id".to_owned())
            })?;

        let mut tx = self.pool.begin().await.map_err(transient)?;
        if !inbox::record(&mut tx, CONSUMER, &delivery.message_id)
            .await
            .map_err(transient)?
        {
            return Ok(()); // a duplicate: already applied
        }
        match campaign {
            Some(c) => {
                let (amount_currency, rate) = (
                    c.budget.map(|b| b.currency).unwrap_or_default(),
                    c.commission_rate_bps,
                );
                repo::upsert_campaign_terms(
                    &mut tx,
                    campaign_id,
                    i32::try_from(rate).unwrap_or(i32::MAX),
                    &amount_currency,
                    status_text(c.status),
                    version,
                )
                .await
                .map_err(transient)?;
            }
            None => {
                if !repo::touch_campaign_terms(&mut tx, campaign_id, version)
                    .await
                    .map_err(transient)?
                {
                    // An event about a campaign whose created event has not arrived: later.
                    return Err(transient(anyhow::anyhow!(
                        "campaign {campaign_id} not known yet"
                    )));
                }
            }
        }
        tx.commit().await.map_err(transient)?;
        Ok(())
    }
}
