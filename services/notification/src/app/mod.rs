//! The notification use cases: apply a domain event (one transaction: inbox, campaign copy,
//! numbered notifications), list a user's notifications, mark one read, and read a user's stream
//! after a sequence (for Subscribe).

pub mod messages;

use uuid::Uuid;

use affiliate_proto::notification as pb;
use messaging::inbox;
use service_runtime::paging::next_page_token;
use service_runtime::validation::{
    FieldViolation, Violations, page_size, parse_id, parse_optional_id,
};
use sqlx::{Acquire, PgPool, Postgres};

use crate::adapters::repository::{self as repo, NotificationRow};
use crate::domain::{self, Fact, Need, UnknownCampaign};
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

    /// Applies `event` once for `consumer`: records it in the inbox, keeps the campaign it
    /// carries, and stores the notifications it causes, each with the next sequence of its user,
    /// all in one transaction. An event about a campaign not known yet is `NotYet` (retry).
    pub async fn apply(&self, consumer: &str, event: &Incoming) -> Result<Applied, Error> {
        self.apply_on(&self.pool, consumer, event).await
    }

    /// [`Notifications::apply`] on `db`: a pool (a transaction of its own) or a connection in a
    /// transaction (a savepoint in it, for a consumer's batch).
    #[tracing::instrument(name = "db.transaction", skip_all, fields(otel.kind = "internal", db.system = "postgresql", operation = "apply"))]
    pub async fn apply_on<'c>(
        &self,
        db: impl Acquire<'c, Database = Postgres>,
        consumer: &str,
        event: &Incoming,
    ) -> Result<Applied, Error> {
        let mut tx = db.begin().await?;
        if !inbox::record(&mut tx, consumer, &event.message_id).await? {
            return Ok(Applied::Duplicate);
        }
        if let Some(campaign) = event.fact.campaign() {
            repo::upsert_campaign(&mut tx, campaign, event.version).await?;
        }
        let known = match event.fact.needs() {
            Some(Need::Required(id)) => repo::find_campaign(&mut tx, id).await?,
            None => None,
        };
        let drafts =
            domain::derive(&event.fact, known.as_ref()).map_err(|UnknownCampaign(id)| {
                Error::NotYet(format!("campaign {id} is not known yet; retry later"))
            })?;
        let now = messages::now();
        let mut stored = Vec::with_capacity(drafts.len());
        for draft in drafts {
            let row = NotificationRow {
                id: Uuid::now_v7(),
                user_id: draft.user_id,
                sequence: repo::next_sequence(&mut tx, draft.user_id).await?,
                kind: draft.kind.as_str().to_owned(),
                title: draft.title,
                body: draft.body,
                subject_type: draft.subject_type.to_owned(),
                subject_id: draft.subject_id,
                correlation_id: event.correlation_id.clone(),
                read_at: None,
                created_at: now,
            };
            repo::insert_notification(&mut tx, &row, &event.message_id).await?;
            stored.push(row);
        }
        tx.commit().await?;
        Ok(Applied::Stored(stored))
    }

    /// Records that `consumer` refused `message_id` (it can never be applied).
    pub async fn reject(
        &self,
        consumer: &str,
        message_id: &str,
        reason: &str,
    ) -> Result<(), Error> {
        self.reject_on(&self.pool, consumer, message_id, reason)
            .await
    }

    /// [`Notifications::reject`] on `db` (a pool, or a connection in a transaction).
    #[tracing::instrument(name = "db.transaction", skip_all, fields(otel.kind = "internal", db.system = "postgresql", operation = "reject"))]
    pub async fn reject_on<'c>(
        &self,
        db: impl Acquire<'c, Database = Postgres>,
        consumer: &str,
        message_id: &str,
        reason: &str,
    ) -> Result<(), Error> {
        let mut tx = db.begin().await?;
        inbox::reject(&mut tx, consumer, message_id, reason).await?;
        tx.commit().await?;
        Ok(())
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
