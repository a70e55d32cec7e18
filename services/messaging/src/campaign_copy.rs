//! A service's copy of the campaigns, fed by `campaign-events`: the one way a consumer of those
//! events reads them. Each event is applied at most once (the inbox, in the same transaction) and
//! a campaign's state only when newer than what is stored (the aggregate version), so redelivery
//! and reordering cannot roll the copy back. The service says where the copy lives
//! ([`CampaignCopy`]); [`CampaignFeed`] does the rest.

use std::future::Future;

use prost::Message as _;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use affiliate_proto::campaign::{Acceptance, Campaign, CampaignEvent, campaign_event::Event};

use crate::{Delivery, Failure, Handler, inbox};

/// What a campaign event changes in a copy of its campaign.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The campaign's state after the event (created, status changed, budget or tracking
    /// settings updated).
    State(Box<Campaign>),
    /// A creator accepted the campaign.
    Accepted(Acceptance),
    /// Nothing the copies keep changed, but the campaign reached the event's version (a video).
    Touched,
}

/// Where a service keeps its copy; each method runs inside the feed's transaction.
pub trait CampaignCopy: Send + Sync + 'static {
    /// The inbox consumer name, e.g. `commission/campaign-events`.
    const CONSUMER: &'static str;

    fn pool(&self) -> &PgPool;

    /// Applies `change` to campaign `id` at aggregate `version`. `Ok(false)`: the campaign is not
    /// in the copy yet (its created event has not arrived), so the event is retried later.
    fn apply(
        &self,
        tx: &mut PgConnection,
        id: Uuid,
        version: i64,
        change: &Change,
    ) -> impl Future<Output = sqlx::Result<bool>> + Send;

    /// Called after a change committed (e.g. to wake requests waiting for the copy).
    fn changed(&self) {}
}

/// The change an envelope carries and its campaign id; `None` for events about no campaign (a
/// refused command).
pub fn change_of(envelope: CampaignEvent) -> Result<Option<(Uuid, i64, Change)>, String> {
    let version = envelope
        .metadata
        .as_ref()
        .map_or(0, |m| m.aggregate_version);
    let (id, change) = match envelope.event {
        Some(Event::CampaignCreated(e)) => match e.campaign {
            Some(c) => (c.id.clone(), Change::State(Box::new(c))),
            None => (String::new(), Change::Touched),
        },
        Some(Event::CampaignStatusChanged(e)) => match e.campaign {
            Some(c) => (e.campaign_id, Change::State(Box::new(c))),
            None => (e.campaign_id, Change::Touched),
        },
        Some(Event::BudgetUpdated(e)) => match e.campaign {
            Some(c) => (c.id.clone(), Change::State(Box::new(c))),
            None => (String::new(), Change::Touched),
        },
        Some(Event::TrackingUpdated(e)) => match e.campaign {
            Some(c) => (c.id.clone(), Change::State(Box::new(c))),
            None => (String::new(), Change::Touched),
        },
        Some(Event::VideoAdded(e)) => (
            e.video.map(|v| v.campaign_id).unwrap_or_default(),
            Change::Touched,
        ),
        Some(Event::CampaignAccepted(e)) => match e.acceptance {
            Some(a) => (a.campaign_id.clone(), Change::Accepted(a)),
            None => (String::new(), Change::Touched),
        },
        Some(Event::CommandRejected(_)) | None => return Ok(None),
    };
    let id = Uuid::parse_str(&id)
        .map_err(|_| "campaign event without a valid campaign id".to_owned())?;
    Ok(Some((id, version, change)))
}

/// The `campaign-events` handler over a service's copy.
#[derive(Debug, Clone)]
pub struct CampaignFeed<C>(pub C);

fn transient(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Transient(e.into())
}

impl<C: CampaignCopy> Handler for CampaignFeed<C> {
    #[tracing::instrument(name = "db.transaction", skip_all, fields(otel.kind = "internal", db.system = "postgresql", operation = "handle"))]
    async fn handle(&self, delivery: &Delivery) -> Result<(), Failure> {
        let envelope = CampaignEvent::decode(delivery.payload.as_slice())
            .map_err(|e| Failure::Rejected(format!("not a campaign event envelope: {e}")))?;
        let Some((id, version, change)) = change_of(envelope).map_err(Failure::Rejected)? else {
            return Ok(());
        };
        let mut tx = self.0.pool().begin().await.map_err(transient)?;
        if !inbox::record(&mut tx, C::CONSUMER, &delivery.message_id)
            .await
            .map_err(transient)?
        {
            return Ok(()); // a duplicate: already applied
        }
        if !self
            .0
            .apply(&mut tx, id, version, &change)
            .await
            .map_err(transient)?
        {
            return Err(transient(anyhow::anyhow!("campaign {id} not known yet")));
        }
        tx.commit().await.map_err(transient)?;
        self.0.changed();
        Ok(())
    }
}
