//! The commission service's copy of each campaign's terms (rate, currency, status and budget),
//! fed by `campaign-events` through `messaging::campaign_copy` (at most once per event, never
//! rolled back by an older one).

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use affiliate_proto::campaign::CampaignStatus;
use messaging::campaign_copy::{CampaignCopy, CampaignFeed, Change};

use crate::adapters::repository::{self as repo, TermsUpdate};

/// `campaign_terms`, the copy.
#[derive(Debug, Clone)]
pub struct Terms {
    pool: PgPool,
}

/// The feed of `campaign_terms`.
pub fn feed(pool: PgPool) -> CampaignFeed<Terms> {
    CampaignFeed(Terms { pool })
}

fn status_text(status: i32) -> &'static str {
    match CampaignStatus::try_from(status) {
        Ok(CampaignStatus::Paused) => "paused",
        Ok(CampaignStatus::Closed) => "closed",
        _ => "active",
    }
}

impl CampaignCopy for Terms {
    const CONSUMER: &'static str = "commission/campaign-events";

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        id: Uuid,
        version: i64,
        change: &Change,
    ) -> sqlx::Result<bool> {
        match change {
            Change::State(c) => {
                let budget = c.budget.as_ref();
                repo::upsert_campaign_terms(
                    tx,
                    id,
                    TermsUpdate {
                        rate_bps: i32::try_from(c.commission_rate_bps).unwrap_or(i32::MAX),
                        currency: budget.map_or("", |b| b.currency.as_str()),
                        status: status_text(c.status),
                        budget_minor: budget.map(|b| b.amount_minor).filter(|&b| b > 0),
                        version,
                        advertiser_id: Uuid::parse_str(&c.advertiser_id).ok(),
                        hold_seconds: c.hold_period.as_ref().map(|d| d.seconds.max(0)),
                    },
                )
                .await?;
                Ok(true)
            }
            Change::Accepted(_) | Change::Touched => {
                repo::touch_campaign_terms(tx, id, version).await
            }
        }
    }
}
