//! Tracking's copy of the campaigns (status and acceptances), fed by `campaign-events` through
//! `messaging::campaign_copy` (at most once per event, never rolled back by an older one). Each
//! applied change wakes the requests waiting for the copy (see `app::Attribution`).

use std::sync::Arc;

use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use uuid::Uuid;

use affiliate_proto::campaign::CampaignStatus as Status;
use messaging::campaign_copy::{CampaignCopy, CampaignFeed, Change};
use service_runtime::time::{from_timestamp, now};

use crate::adapters::repository as repo;
use crate::domain::CampaignStatus;

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
