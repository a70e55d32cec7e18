//! The analytics use cases: apply a batch of messages to the projections (set-based in the
//! consumer's transaction: inbox, audit trail, statistics summed per row), read a campaign's, a
//! creator's, a tracking link's or a sub-id's statistics, a workflow and an aggregate's history,
//! and drop the projections for a replay (`replay`).

pub mod messages;
pub mod replay;
pub mod retention;

use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool};

use affiliate_proto::analytics as pb;
use messaging::{Delivery, inbox};
use service_runtime::validation::{FieldViolation, Violations, parse_id, text};

use crate::adapters::repository::{self as repo, AuditRow};
use crate::domain::{self, Changes, Subject, Sums, Topic};
pub use service_runtime::errors::Error;

/// The most messages a workflow or a history lists.
pub const MAX_ENTRIES: i64 = 10_000;

/// What applying a message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// The projection had applied this message before: nothing was written.
    Duplicate,
    /// The message is not its topic's envelope (why): recorded as refused (and kept in the
    /// trail).
    Refused(String),
}

/// The analytics use cases over one database.
#[derive(Debug, Clone)]
pub struct Analytics {
    pool: PgPool,
}

impl Analytics {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies a batch of `topic`'s messages once each, in the caller's transaction, set-based:
    /// every message decoded in memory; then one inbox insert for all of them (the new ones go
    /// on), one insert of their audit rows, and their statistics summed per row and written once
    /// ([`repo::add_sums`]). A message that is not its topic's envelope is recorded as refused and
    /// kept in the trail as it came. One outcome per delivery, in order.
    #[tracing::instrument(name = "db.transaction", skip_all, fields(otel.kind = "internal", db.system = "postgresql", operation = "project", messages = deliveries.len()))]
    pub async fn apply_set(
        conn: &mut PgConnection,
        topic: &Topic,
        deliveries: &[&Delivery],
    ) -> Result<Vec<Applied>, Error> {
        let changes: Vec<Result<Changes, String>> = deliveries
            .iter()
            .map(|d| Changes::of(topic, &d.payload, occurred_at(d)))
            .collect();
        let entries: Vec<(&str, Option<&str>)> = deliveries
            .iter()
            .zip(&changes)
            .map(|(d, c)| (d.message_id.as_str(), c.as_ref().err().map(String::as_str)))
            .collect();
        let mut new: HashSet<String> = inbox::record_set(conn, topic.consumer, &entries)
            .await?
            .into_iter()
            .collect();
        let mut rows = Vec::with_capacity(new.len());
        let mut sums = Sums::default();
        let mut outcomes = Vec::with_capacity(deliveries.len());
        for (delivery, changes) in deliveries.iter().zip(changes) {
            // Taken out of the set, so a message given twice is applied once.
            if !new.remove(&delivery.message_id) {
                outcomes.push(Applied::Duplicate);
                continue;
            }
            rows.push(audit_row(topic, delivery));
            outcomes.push(match changes {
                Ok(changes) => {
                    sums.add(changes);
                    Applied::Applied
                }
                Err(reason) => Applied::Refused(reason),
            });
        }
        repo::keep_all(conn, &rows).await?;
        repo::add_sums(conn, &sums).await?;
        Ok(outcomes)
    }

    /// One campaign's statistics (and its budget, once its events are seen).
    pub async fn campaign_stats(
        &self,
        request: pb::GetCampaignStatsRequest,
    ) -> Result<pb::GetCampaignStatsResponse, Error> {
        let mut v = Violations::new();
        let id = v.check(parse_id("campaign_id", &request.campaign_id));
        let range = v.check(date_range(&request.from_date, &request.to_date));
        let (id, range) = v.finish(id.zip(range))?;
        let mut conn = self.pool.acquire().await?;
        let stats = stats(&mut conn, Subject::Campaign(id), range).await?;
        let campaign = repo::campaign(&mut conn, id).await?;
        let budget = campaign.as_ref().map(|c| {
            let earned = stats
                .totals
                .as_ref()
                .and_then(|t| t.amounts.iter().find(|a| a.currency == c.currency))
                .map_or(0, |a| a.earned_minor);
            pb::Budget {
                currency: c.currency.clone(),
                budget_minor: c.budget_minor,
                left_minor: domain::budget_left(c.budget_minor, earned),
            }
        });
        Ok(pb::GetCampaignStatsResponse {
            campaign_id: id.to_string(),
            advertiser_id: campaign
                .map(|c| c.advertiser_id.to_string())
                .unwrap_or_default(),
            budget,
            days: stats.days,
            totals: stats.totals,
        })
    }

    /// One creator's statistics.
    pub async fn creator_stats(
        &self,
        request: pb::GetCreatorStatsRequest,
    ) -> Result<pb::GetCreatorStatsResponse, Error> {
        let mut v = Violations::new();
        let id = v.check(parse_id("creator_id", &request.creator_id));
        let range = v.check(date_range(&request.from_date, &request.to_date));
        let (id, range) = v.finish(id.zip(range))?;
        let mut conn = self.pool.acquire().await?;
        let stats = stats(&mut conn, Subject::Creator(id), range).await?;
        Ok(pb::GetCreatorStatsResponse {
            creator_id: id.to_string(),
            days: stats.days,
            totals: stats.totals,
        })
    }

    /// One tracking link's statistics.
    pub async fn link_stats(
        &self,
        request: pb::GetLinkStatsRequest,
    ) -> Result<pb::GetLinkStatsResponse, Error> {
        let mut v = Violations::new();
        let id = v.check(parse_id("link_id", &request.link_id));
        let range = v.check(date_range(&request.from_date, &request.to_date));
        let (id, range) = v.finish(id.zip(range))?;
        let mut conn = self.pool.acquire().await?;
        let stats = stats(&mut conn, Subject::Link(id), range).await?;
        Ok(pb::GetLinkStatsResponse {
            link_id: id.to_string(),
            days: stats.days,
            totals: stats.totals,
        })
    }

    /// The statistics of one value of one of a creator's sub-ids.
    pub async fn sub_id_stats(
        &self,
        request: pb::GetSubIdStatsRequest,
    ) -> Result<pb::GetSubIdStatsResponse, Error> {
        let mut v = Violations::new();
        let creator = v.check(parse_id("creator_id", &request.creator_id));
        let sub = v.check(parse_sub(request.sub));
        let value = v.check(text("value", &request.value, MAX_SUB_ID, true));
        let range = v.check(date_range(&request.from_date, &request.to_date));
        let (creator, sub, value, range) = v.finish(match (creator, sub, value, range) {
            (Some(c), Some(s), Some(value), Some(r)) => Some((c, s, value, r)),
            _ => None,
        })?;
        let mut conn = self.pool.acquire().await?;
        let stats = stats(&mut conn, Subject::sub_id(creator, sub, &value), range).await?;
        Ok(pb::GetSubIdStatsResponse {
            creator_id: creator.to_string(),
            sub: u32::from(sub),
            value,
            days: stats.days,
            totals: stats.totals,
        })
    }

    /// Every kept message of one workflow, each after its cause.
    pub async fn workflow(
        &self,
        request: pb::GetWorkflowRequest,
    ) -> Result<pb::GetWorkflowResponse, Error> {
        let correlation_id = text("correlation_id", &request.correlation_id, 200, true)
            .map_err(|v| Error::Invalid(vec![v]))?;
        let mut conn = self.pool.acquire().await?;
        let rows = repo::workflow(&mut conn, &correlation_id, MAX_ENTRIES).await?;
        if rows.is_empty() {
            return Err(Error::not_found("workflow", correlation_id));
        }
        Ok(pb::GetWorkflowResponse {
            correlation_id,
            entries: domain::causal_order(rows)
                .iter()
                .map(messages::entry)
                .collect(),
        })
    }

    /// One aggregate's events, by version.
    pub async fn history(
        &self,
        request: pb::GetAggregateHistoryRequest,
    ) -> Result<pb::GetAggregateHistoryResponse, Error> {
        let mut v = Violations::new();
        let kind = v.check(text("aggregate_type", &request.aggregate_type, 100, true));
        let id = v.check(text("aggregate_id", &request.aggregate_id, 200, true));
        let (kind, id) = v.finish(kind.zip(id))?;
        let mut conn = self.pool.acquire().await?;
        let rows = repo::history(&mut conn, &kind, &id, MAX_ENTRIES).await?;
        Ok(pb::GetAggregateHistoryResponse {
            entries: rows.iter().map(messages::entry).collect(),
        })
    }
}

/// When the message happened: its envelope's time, else now.
fn occurred_at(delivery: &Delivery) -> DateTime<Utc> {
    delivery.occurred_at.unwrap_or_else(Utc::now)
}

/// The message as the audit trail keeps it: the envelope's metadata, else the properties'.
fn audit_row(topic: &Topic, delivery: &Delivery) -> AuditRow {
    let metadata = delivery.metadata().unwrap_or_default();
    let property = |name: &str| delivery.properties.get(name).map(String::as_str);
    AuditRow {
        message_id: delivery.message_id.clone(),
        topic: topic.short.to_owned(),
        kind: topic.kind.as_str().to_owned(),
        message_type: first(&metadata.message_type, delivery.message_type.as_deref()),
        correlation_id: first(&metadata.correlation_id, delivery.correlation_id.as_deref()),
        causation_id: first(
            &metadata.causation_id,
            property(messaging::properties::CAUSATION_ID),
        ),
        aggregate_type: first(
            &metadata.aggregate_type,
            property(messaging::properties::AGGREGATE_TYPE),
        ),
        aggregate_id: first(&metadata.aggregate_id, delivery.key.as_deref()),
        aggregate_version: metadata.aggregate_version,
        occurred_at: occurred_at(delivery),
        trace_id: domain::trace_id(delivery.traceparent.as_deref()),
        payload: delivery.payload.clone(),
    }
}

/// The envelope's value, or else the property's.
fn first(envelope: &str, property: Option<&str>) -> String {
    if envelope.is_empty() {
        property.unwrap_or_default().to_owned()
    } else {
        envelope.to_owned()
    }
}

/// The longest sub-id value, in characters (as the tracking service allows).
const MAX_SUB_ID: usize = 100;

/// Which sub-id: 1 to 5.
fn parse_sub(sub: u32) -> Result<u8, FieldViolation> {
    u8::try_from(sub)
        .ok()
        .filter(|s| (1..=domain::SUB_IDS).contains(s))
        .ok_or_else(|| FieldViolation::new("sub", "must be 1 to 5 (sub1 ... sub5)"))
}

/// The first and last day to list (inclusive).
type Range = (NaiveDate, NaiveDate);

fn date(field: &str, value: &str) -> Result<Option<NaiveDate>, FieldViolation> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| FieldViolation::new(field, "must be a date as YYYY-MM-DD, e.g. 2026-12-01"))
}

fn date_range(from: &str, to: &str) -> Result<Option<Range>, FieldViolation> {
    let from_day = date("from_date", from)?;
    let to_day = date("to_date", to)?;
    if let (Some(f), Some(t)) = (from_day, to_day)
        && f > t
    {
        return Err(FieldViolation::new(
            "to_date",
            "must not be before from_date",
        ));
    }
    if from_day.is_none() && to_day.is_none() {
        return Ok(None);
    }
    Ok(Some((
        from_day.unwrap_or(NaiveDate::MIN),
        to_day.unwrap_or(NaiveDate::MAX),
    )))
}

/// A subject's listed days and its totals over every day.
struct Stats {
    days: Vec<pb::DayStats>,
    totals: Option<pb::Totals>,
}

async fn stats(
    conn: &mut PgConnection,
    subject: Subject,
    range: Option<Range>,
) -> Result<Stats, Error> {
    // Every day of the subject (a few thousand at most), so that the totals cover them all.
    let days = repo::days(conn, subject).await?;
    let amounts = repo::amounts(conn, subject).await?;
    let totals = messages::totals(&days, &amounts);
    let listed = |day: NaiveDate| range.is_none_or(|(from, to)| from <= day && day <= to);
    Ok(Stats {
        days: messages::days(
            days.into_iter().filter(|d| listed(d.day)).collect(),
            amounts.into_iter().filter(|a| listed(a.day)).collect(),
        ),
        totals: Some(totals),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_ranges_are_checked() {
        assert_eq!(date_range("", ""), Ok(None));
        assert!(date_range("2026-13-01", "").is_err());
        assert!(date_range("2026-12-02", "2026-12-01").is_err());
        let (from, to) = date_range("2026-12-01", "").unwrap().unwrap();
        assert_eq!(from.to_string(), "2026-12-01");
        assert_eq!(to, NaiveDate::MAX);
    }

    #[test]
    fn a_sub_is_one_to_five() {
        assert!(parse_sub(0).is_err());
        assert_eq!(parse_sub(1), Ok(1));
        assert_eq!(parse_sub(5), Ok(5));
        assert!(parse_sub(6).is_err());
        assert!(parse_sub(256 + 1).is_err());
    }
}
