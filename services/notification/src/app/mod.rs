//! The notification use cases: apply a domain event (one transaction: inbox, campaign copy,
//! numbered notifications), list a user's notifications, mark one read, and read a user's stream
//! after a sequence (for Subscribe).

pub mod messages;

use std::collections::{BTreeMap, HashMap, HashSet};

use uuid::Uuid;

use affiliate_proto::notification as pb;
use messaging::inbox;
use service_runtime::paging::next_page_token;
use service_runtime::validation::{
    FieldViolation, Violations, page_size, parse_id, parse_optional_id,
};
use sqlx::{PgConnection, PgPool};

use crate::adapters::repository::{self as repo, NotificationRow};
use crate::domain::{self, Draft, Fact, Need, UnknownCampaign};
pub use service_runtime::errors::Error;

/// One domain event as the feed hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The message id the inbox records.
    pub message_id: String,
    pub correlation_id: String,
    /// The aggregate's version after the event.
    pub version: i64,
    pub fact: Fact,
}

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The notifications it caused (none for most events).
    Stored(Vec<NotificationRow>),
    /// The consumer had processed this message before: nothing was written.
    Duplicate,
    /// The message is not its topic's event (why): recorded as refused.
    Refused(String),
}

/// The notification use cases over one database.
#[derive(Debug, Clone)]
pub struct Notifications {
    pool: PgPool,
}

impl Notifications {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The database, for the event feeds' batches.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies a batch of `consumer`'s messages in the caller's transaction, set-based, each
    /// `(message id, Ok(event) or Err(why it is refused))`: the campaigns they carry kept, the
    /// campaigns they need read in one query (an event whose campaign is not known yet is
    /// `NotYet` and leaves no trace), one inbox insert for the rest (duplicates go no further),
    /// the users' sequence rows advanced once each (ascending: one lock order) and every
    /// notification inserted in one statement. One outcome per message, in order.
    pub async fn apply_set(
        conn: &mut PgConnection,
        consumer: &str,
        messages: &[(&str, Result<Incoming, String>)],
    ) -> Result<Vec<Result<Applied, Error>>, Error> {
        let events = || messages.iter().filter_map(|(_, e)| e.as_ref().ok());
        for event in events() {
            if let Some(campaign) = event.fact.campaign() {
                repo::upsert_campaign(conn, campaign, event.version).await?;
            }
        }
        let mut needed: Vec<Uuid> = events()
            .filter_map(|e| e.fact.needs().map(|Need::Required(id)| id))
            .collect();
        needed.sort_unstable();
        needed.dedup();
        let known = repo::find_campaigns(conn, &needed).await?;
        let mut outcomes: Vec<Option<Result<Applied, Error>>> =
            messages.iter().map(|_| None).collect();
        let mut drafts: Vec<Option<Vec<Draft>>> = Vec::with_capacity(messages.len());
        let mut entries: Vec<(&str, Option<&str>)> = Vec::with_capacity(messages.len());
        for (i, (message_id, event)) in messages.iter().enumerate() {
            let event = match event {
                Ok(event) => event,
                Err(reason) => {
                    entries.push((message_id, Some(reason)));
                    outcomes[i] = Some(Ok(Applied::Refused(reason.clone())));
                    drafts.push(None);
                    continue;
                }
            };
            let campaign = match event.fact.needs() {
                Some(Need::Required(id)) => known.get(&id),
                None => None,
            };
            match domain::derive(&event.fact, campaign) {
                Ok(derived) => {
                    entries.push((message_id, None));
                    drafts.push(Some(derived));
                }
                Err(UnknownCampaign(id)) => {
                    outcomes[i] = Some(Err(Error::NotYet(format!(
                        "campaign {id} is not known yet; retry later"
                    ))));
                    drafts.push(None);
                }
            }
        }
        let mut new: HashSet<String> = inbox::record_set(conn, consumer, &entries)
            .await?
            .into_iter()
            .collect();
        let now = messages::now();
        let mut rows: Vec<(usize, NotificationRow)> = Vec::new();
        for (i, ((message_id, event), derived)) in messages.iter().zip(drafts).enumerate() {
            let (Ok(event), Some(derived)) = (event, derived) else {
                continue;
            };
            if !new.remove(*message_id) {
                outcomes[i] = Some(Ok(Applied::Duplicate));
                continue;
            }
            for draft in derived {
                rows.push((
                    i,
                    NotificationRow {
                        id: Uuid::now_v7(),
                        user_id: draft.user_id,
                        sequence: 0,
                        kind: draft.kind.as_str().to_owned(),
                        title: draft.title,
                        body: draft.body,
                        subject_type: draft.subject_type.to_owned(),
                        subject_id: draft.subject_id,
                        correlation_id: event.correlation_id.clone(),
                        read_at: None,
                        created_at: now,
                    },
                ));
            }
            outcomes[i] = Some(Ok(Applied::Stored(Vec::new())));
        }
        number(conn, &mut rows).await?;
        let message_ids: Vec<&str> = rows.iter().map(|(i, _)| messages[*i].0).collect();
        let stored: Vec<NotificationRow> = rows.into_iter().map(|(_, row)| row).collect();
        repo::insert_notifications(conn, &stored, &message_ids).await?;
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(Error::Internal(anyhow::anyhow!("no outcome")))))
            .collect())
    }

    /// A page of the user's notifications, newest first, and how many are unread.
    pub async fn list(
        &self,
        request: pb::ListNotificationsRequest,
    ) -> Result<pb::ListNotificationsResponse, Error> {
        let mut v = Violations::new();
        let user = v.check(parse_id("user_id", &request.user_id));
        let limit = v.check(page_size("page_size", request.page_size, 20, 100));
        let token = v.check(parse_optional_id("page_token", &request.page_token));
        let (user, limit, token) =
            v.finish(user.zip(limit).zip(token).map(|((u, l), t)| (u, l, t)))?;
        let mut conn = self.pool.acquire().await?;
        // The token is the last notification of the previous page; the next page starts below it.
        let before =
            match token {
                None => None,
                Some(id) => Some(repo::sequence_of(&mut conn, user, id).await?.ok_or_else(
                    || {
                        FieldViolation::new(
                            "page_token",
                            "is not a page token of this user's notifications",
                        )
                    },
                )?),
            };
        let mut rows = repo::list(&mut conn, user, before, request.unread_only, limit + 1).await?;
        let next_page_token = next_page_token(&mut rows, limit, |r| r.id);
        let unread_count = repo::unread_count(&mut conn, user).await?;
        Ok(pb::ListNotificationsResponse {
            notifications: rows.iter().map(messages::notification).collect(),
            next_page_token,
            unread_count,
        })
    }

    /// Marks the user's notification read (the first time it is marked stays); NOT_FOUND if the
    /// user has no such notification.
    pub async fn mark_read(
        &self,
        request: pb::MarkReadRequest,
    ) -> Result<pb::MarkReadResponse, Error> {
        let mut v = Violations::new();
        let user = v.check(parse_id("user_id", &request.user_id));
        let id = v.check(parse_id("notification_id", &request.notification_id));
        let (user, id) = v.finish(user.zip(id))?;
        let mut conn = self.pool.acquire().await?;
        let row = repo::mark_read(&mut conn, user, id, messages::now())
            .await?
            .ok_or_else(|| Error::not_found("notification", id))?;
        Ok(pb::MarkReadResponse {
            notification: Some(messages::notification(&row)),
        })
    }

    /// Checks a Subscribe request: the user and the sequence to resume after.
    pub fn subscription(request: &pb::SubscribeRequest) -> Result<(Uuid, i64), Error> {
        let mut v = Violations::new();
        let user = v.check(parse_id("user_id", &request.user_id));
        if request.after_sequence < 0 {
            v.push(FieldViolation::new("after_sequence", "must be 0 or more"));
        }
        Ok((v.finish(user)?, request.after_sequence))
    }

    /// Up to `limit` of the user's notifications after sequence `after`, in sequence order.
    pub async fn after(
        &self,
        user: Uuid,
        after: i64,
        limit: i64,
    ) -> Result<Vec<pb::Notification>, Error> {
        let mut conn = self.pool.acquire().await?;
        let rows = repo::after(&mut conn, user, after, limit).await?;
        Ok(rows.iter().map(messages::notification).collect())
    }
}

/// Numbers a batch's notifications: each user's next sequences, in the order given, from the
/// user's stream row advanced once by the batch's count (rows taken in ascending user order).
async fn number(
    conn: &mut PgConnection,
    rows: &mut [(usize, NotificationRow)],
) -> Result<(), Error> {
    let mut counts: BTreeMap<Uuid, i64> = BTreeMap::new();
    for (_, row) in rows.iter() {
        *counts.entry(row.user_id).or_default() += 1;
    }
    if counts.is_empty() {
        return Ok(());
    }
    let sorted: Vec<(Uuid, i64)> = counts.iter().map(|(u, c)| (*u, *c)).collect();
    let mut next: HashMap<Uuid, i64> = repo::advance_sequences(conn, &sorted)
        .await?
        .into_iter()
        .map(|(user, last)| (user, last - counts.get(&user).copied().unwrap_or(0) + 1))
        .collect();
    for (_, row) in rows.iter_mut() {
        let sequence = next.get_mut(&row.user_id).ok_or_else(|| {
            Error::Internal(anyhow::anyhow!("no sequence for user {}", row.user_id))
        })?;
        row.sequence = *sequence;
        *sequence += 1;
    }
    Ok(())
}
