//! Tracking's copy of the campaigns (status and acceptances), fed by `campaign-events` through
//! `messaging::campaign_copy` (at most once per event, never rolled back by an older one). Each
//! applied change wakes the requests waiting for the copy (see `app::Attribution`).

use std::sync::Arc;
use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use uuid::Uuid;

use affiliate_proto::campaign::{CampaignStatus as Status, TrackingSettings};
use messaging::campaign_copy::{CampaignCopy, CampaignFeed, Change};
use service_runtime::time::{from_timestamp, now};

use crate::adapters::{links, repository as repo};
use crate::domain::{CampaignStatus, LinkSettings};

/// The `campaigns` and `acceptances` tables, the copy.
#[derive(Debug, Clone)]
pub struct Campaigns {
    pool: PgPool,
    changed: Arc<Notify>,
}

/// The feed of the copy; `changed` is notified after each change.
pub fn feed(pool: PgPool, changed: Arc<Notify>) -> CampaignFeed<Campaigns> {
    CampaignFeed(Campaigns { pool, changed })
}

/// The copy's form of a campaign's tracking settings; `None` without a landing URL. Absent
/// durations take the campaign service's defaults (it always fills them in).
fn link_settings(t: &TrackingSettings) -> Option<LinkSettings> {
    let secs = |d: Option<&pbjson_types::Duration>, default: u64| {
        d.map_or(Duration::from_secs(default), |d| {
            Duration::from_secs(u64::try_from(d.seconds).unwrap_or_default())
        })
    };
    (!t.landing_url.is_empty()).then(|| LinkSettings {
        landing_url: t.landing_url.clone(),
        landing_domains: t.landing_domains.clone(),
        click_id_param: if t.click_id_param.is_empty() {
            "click_id".to_owned()
        } else {
            t.click_id_param.clone()
        },
        attribution_window: secs(t.attribution_window.as_ref(), 30 * 86_400),
        min_click_to_conversion: secs(t.min_click_to_conversion.as_ref(), 10),
        fallback_url: (!t.fallback_url.is_empty()).then(|| t.fallback_url.clone()),
    })
}

fn status(status: i32) -> CampaignStatus {
    match Status::try_from(status) {
        Ok(Status::Paused) => CampaignStatus::Paused,
        Ok(Status::Closed) => CampaignStatus::Closed,
        _ => CampaignStatus::Active,
    }
}

impl CampaignCopy for Campaigns {
    const CONSUMER: &'static str = "tracking/campaign-events";

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
                repo::upsert_campaign(tx, id, status(c.status), version).await?;
                let settings = c.tracking.as_ref().and_then(link_settings);
                let advertiser = Uuid::parse_str(&c.advertiser_id).ok();
                let currency = c.budget.as_ref().map(|b| b.currency.as_str());
                links::set_link_settings(
                    tx,
                    id,
                    version,
                    (advertiser, currency),
                    settings.as_ref(),
                )
                .await?;
                Ok(true)
            }
            Change::Accepted(a) => {
                if !repo::touch_campaign(tx, id, version).await? {
                    return Ok(false);
                }
                let Ok(creator) = Uuid::parse_str(&a.creator_id) else {
                    return Ok(true); // the campaign service never sends one; nothing to record
                };
                let at = a
                    .accepted_at
                    .as_ref()
                    .and_then(from_timestamp)
                    .unwrap_or_else(now);
                repo::insert_acceptance(tx, id, creator, at).await?;
                Ok(true)
            }
            Change::Touched => repo::touch_campaign(tx, id, version).await,
        }
    }

    fn changed(&self) {
        self.changed.notify_waiters();
    }
}
