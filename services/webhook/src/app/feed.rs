//! Applying the platform's events: each event partners receive becomes a message and one
//! delivery per enabled endpoint of its owners that wants its type and was registered when the
//! event happened (an endpoint hears what happens from its registration on, as Svix's do), all in
//! the feed's transaction with the inbox (so once). Events older than every endpoint (a new
//! subscription reading a topic's history) are recorded and skipped without looking up anyone. The first undelivered message of a lane (endpoint and
//! aggregate) is pending, later ones wait blocked until the one before them ends.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use messaging::inbox;
use service_runtime::errors::Error;

use crate::adapters::repository::{self as repo, NewDelivery, NewMessage};
use crate::domain::event::{self, Parties};

/// One event as the feed hands it over.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// The `webhook-id`: `msg_` and the event's message id.
    pub webhook_id: String,
    pub event_type: String,
    /// `aggregate-type/aggregate-id`.
    pub aggregate: String,
    pub occurred_at: DateTime<Utc>,
    /// The event's proto3 JSON.
    pub data: Value,
    /// A campaign and its advertiser, when the event carries the campaign's state.
    pub campaign_owner: Option<(Uuid, Uuid)>,
}

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Deliveries queued (none for most events).
    Queued(usize),
    /// Applied before: nothing written.
    Duplicate,
    /// Not its topic's event (why): recorded as refused.
    Refused(String),
}

/// Applies a batch of `consumer`'s messages in the caller's transaction: the campaign owners
/// they carry kept, the owners of the rest read in one query (an event about a campaign not
/// known yet is `NotYet` and leaves no trace), one inbox insert, the owners' endpoints read in
/// one query, then the messages, lanes and deliveries in one statement each. One outcome per
/// message, in order.
pub async fn apply_set(
    conn: &mut PgConnection,
    consumer: &str,
    messages: &[(&str, Result<Incoming, String>)],
) -> Result<Vec<Result<Applied, Error>>, Error> {
    let events = || messages.iter().filter_map(|(_, e)| e.as_ref().ok());
    for event in events() {
        if let Some((campaign, advertiser)) = event.campaign_owner {
            repo::upsert_campaign(conn, campaign, advertiser).await?;
        }
    }
    let oldest = repo::oldest_endpoint(conn).await?;
    let parties: Vec<Option<Parties>> = messages
        .iter()
        .map(|(_, e)| match e {
            Ok(e)
                if event::delivered(&e.event_type)
                    && oldest.is_some_and(|at| at <= e.occurred_at) =>
            {
                Some(Parties::of(&e.data))
            }
            _ => None,
        })
        .collect();
    let mut needed: Vec<Uuid> = parties
        .iter()
        .flatten()
        .filter(|p| p.advertiser.is_none())
        .filter_map(|p| p.campaign)
        .collect();
    needed.sort_unstable();
    needed.dedup();
    let known = repo::campaign_owners(conn, &needed).await?;

    let mut outcomes: Vec<Option<Result<Applied, Error>>> = messages.iter().map(|_| None).collect();
    let mut owners: Vec<Option<Vec<Uuid>>> = Vec::with_capacity(messages.len());
    let mut entries: Vec<(&str, Option<&str>)> = Vec::with_capacity(messages.len());
    for (i, ((message_id, event), parties)) in messages.iter().zip(&parties).enumerate() {
        if let Err(reason) = event {
            entries.push((message_id, Some(reason)));
            outcomes[i] = Some(Ok(Applied::Refused(reason.clone())));
            owners.push(None);
            continue;
        }
        match parties {
            Some(p)
                if p.advertiser.is_none()
                    && p.campaign.is_some_and(|c| !known.contains_key(&c)) =>
            {
                outcomes[i] = Some(Err(Error::NotYet(format!(
                    "campaign {} is not known yet; retry later",
                    p.campaign.unwrap_or_default()
                ))));
                owners.push(None);
            }
            Some(p) => {
                entries.push((message_id, None));
                owners.push(Some(
                    p.owners(p.campaign.and_then(|c| known.get(&c).copied())),
                ));
            }
            None => {
                entries.push((message_id, None));
                owners.push(Some(Vec::new()));
            }
        }
    }
    let mut new: HashSet<String> = inbox::record_set(conn, consumer, &entries)
        .await?
        .into_iter()
        .collect();

    let mut all_owners: Vec<Uuid> = owners.iter().flatten().flatten().copied().collect();
    all_owners.sort_unstable();
    all_owners.dedup();
    let mut by_owner: HashMap<Uuid, Vec<repo::Subscriber>> = HashMap::new();
    for s in repo::subscribers(conn, &all_owners).await? {
        by_owner.entry(s.owner_id).or_default().push(s);
    }

    let mut stored: Vec<NewMessage> = Vec::new();
    // deliveries in event order per lane: (endpoint, aggregate) -> message ids
    let mut lanes: BTreeMap<(Uuid, String), Vec<String>> = BTreeMap::new();
    for (i, ((message_id, event), owners)) in messages.iter().zip(owners).enumerate() {
        let (Ok(event), Some(owners)) = (event, owners) else {
            continue;
        };
        if !new.remove(*message_id) {
            outcomes[i] = Some(Ok(Applied::Duplicate));
            continue;
        }
        let mut queued = 0;
        for owner in owners {
            for endpoint in by_owner.get(&owner).into_iter().flatten() {
                if endpoint.created_at <= event.occurred_at
                    && event::wanted(&endpoint.event_types, &event.event_type)
                {
                    lanes
                        .entry((endpoint.id, event.aggregate.clone()))
                        .or_default()
                        .push(event.webhook_id.clone());
                    queued += 1;
                }
            }
        }
        if queued > 0 {
            stored.push(NewMessage {
                id: event.webhook_id.clone(),
                event_type: event.event_type.clone(),
                aggregate: event.aggregate.clone(),
                payload: event::body(&event.event_type, event.occurred_at, &event.data),
                created_at: event.occurred_at,
            });
        }
        outcomes[i] = Some(Ok(Applied::Queued(queued)));
    }
    repo::insert_messages(conn, &stored).await?;
    if !lanes.is_empty() {
        let counts: Vec<(Uuid, String, i32)> = lanes
            .iter()
            .map(|((e, a), ids)| (*e, a.clone(), i32::try_from(ids.len()).unwrap_or(i32::MAX)))
            .collect();
        let before = repo::queue(conn, &counts).await?;
        let mut deliveries = Vec::new();
        for (((endpoint, aggregate), ids), before) in lanes.into_iter().zip(before) {
            for (n, id) in ids.into_iter().enumerate() {
                deliveries.push(NewDelivery {
                    message_id: id,
                    endpoint_id: endpoint,
                    aggregate: aggregate.clone(),
                    status: if before == 0 && n == 0 {
                        "pending"
                    } else {
                        "blocked"
                    },
                });
            }
        }
        if repo::insert_deliveries(conn, &deliveries).await? {
            repo::wake(conn).await?;
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Ok(Applied::Duplicate)))
        .collect())
}
