//! The read side: a campaign's statistics (its advertiser and admins), a creator's (the creator
//! and admins), and for admins the audit trail: one workflow in causal order, one aggregate's
//! history. All answered by the analytics service, which projects them from the topics.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use affiliate_proto::analytics as pb;

use super::campaigns::owned;
use super::creators::creator;
use crate::AppState;
use crate::auth::Role;
use crate::dto::{int64_as_string, rfc3339};
use crate::edge::{Answer as _, ApiPath, ApiQuery, Caller, uuid_field};
use crate::problem::Problem;

const SERVICE: &str = "analytics";

/// The days to list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct DateRange {
    /// First day (UTC, YYYY-MM-DD); the first day with activity when absent.
    #[param(example = "2026-12-01")]
    pub from: Option<String>,
    /// Last day (UTC, YYYY-MM-DD); the last day with activity when absent.
    #[param(example = "2026-12-31")]
    pub to: Option<String>,
}

/// Counters of a day or of every day.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    #[serde(serialize_with = "int64_as_string")]
    #[schema(value_type = String)]
    pub views: i64,
    #[serde(serialize_with = "int64_as_string")]
    #[schema(value_type = String)]
    pub clicks: i64,
    #[serde(serialize_with = "int64_as_string")]
    #[schema(value_type = String)]
    pub purchases: i64,
    /// Commissions earned.
    #[serde(serialize_with = "int64_as_string")]
    #[schema(value_type = String)]
    pub commissions: i64,
    /// Purchases whose commission was refused (creators only).
    #[serde(serialize_with = "int64_as_string")]
    #[schema(value_type = String)]
    pub commissions_refused: i64,
    /// Tracking links' clicks by a visitor new to the link within the duplicate window.
    #[serde(serialize_with = "int64_as_string")]
    #[schema(value_type = String)]
    pub unique_clicks: i64,
    /// Tracking links' clicks by crawlers and the like (not in `clicks`).
    #[serde(serialize_with = "int64_as_string")]
    #[schema(value_type = String)]
    pub bot_clicks: i64,
    /// Conversions reported by the advertiser (accepted or held).
    #[serde(serialize_with = "int64_as_string")]
    #[schema(value_type = String)]
    pub conversions: i64,
    /// clicks / views; 0 without views.
    pub click_through_rate: f64,
    /// purchases / clicks; 0 without clicks.
    pub conversion_rate: f64,
}

impl From<pb::Counts> for Counts {
    fn from(c: pb::Counts) -> Self {
        Self {
            views: c.views,
            clicks: c.clicks,
            purchases: c.purchases,
            commissions: c.commissions,
            commissions_refused: c.commissions_refused,
            unique_clicks: c.unique_clicks,
            bot_clicks: c.bot_clicks,
            conversions: c.conversions,
            click_through_rate: c.click_through_rate,
            conversion_rate: c.conversion_rate,
        }
    }
}

/// Money in one currency, minor units.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Amounts {
    #[schema(example = "EUR")]
    pub currency: String,
    /// The purchases' amounts.
    #[serde(serialize_with = "int64_as_string")]
    #[schema(value_type = String)]
    pub revenue_minor: i64,
    /// Commissions earned.
    #[serde(serialize_with = "int64_as_string")]
    #[schema(value_type = String)]
    pub earned_minor: i64,
    /// Reserved for payouts (creators only).
    #[serde(serialize_with = "int64_as_string")]
    #[schema(value_type = String)]
    pub reserved_minor: i64,
    /// Released after failed payouts (creators only).
    #[serde(serialize_with = "int64_as_string")]
    #[schema(value_type = String)]
    pub released_minor: i64,
    /// Paid out (creators only).
    #[serde(serialize_with = "int64_as_string")]
    #[schema(value_type = String)]
    pub paid_minor: i64,
}

impl From<pb::Amounts> for Amounts {
    fn from(a: pb::Amounts) -> Self {
        Self {
            currency: a.currency,
            revenue_minor: a.revenue_minor,
            earned_minor: a.earned_minor,
            reserved_minor: a.reserved_minor,
            released_minor: a.released_minor,
            paid_minor: a.paid_minor,
        }
    }
}

/// One day (UTC) with activity.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayStats {
    #[schema(example = "2026-12-01")]
    pub date: String,
    pub counts: Counts,
    /// One per currency money moved in.
    pub amounts: Vec<Amounts>,
}

/// The sums over every day.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub counts: Counts,
    pub amounts: Vec<Amounts>,
}

fn counts(c: Option<pb::Counts>) -> Counts {
    c.unwrap_or_default().into()
}

fn days(days: Vec<pb::DayStats>) -> Vec<DayStats> {
    days.into_iter()
        .map(|d| DayStats {
            date: d.date,
            counts: counts(d.counts),
            amounts: d.amounts.into_iter().map(Into::into).collect(),
        })
        .collect()
}

pub fn totals(t: Option<pb::Totals>) -> Totals {
    let t = t.unwrap_or_default();
    Totals {
        counts: counts(t.counts),
        amounts: t.amounts.into_iter().map(Into::into).collect(),
    }
}

/// A campaign's budget and what is left of it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    pub currency: String,
    #[serde(serialize_with = "int64_as_string")]
    #[schema(value_type = String)]
    pub budget_minor: i64,
    /// The budget less the commissions earned; never below zero.
    #[serde(serialize_with = "int64_as_string")]
    #[schema(value_type = String)]
    pub left_minor: i64,
}

/// A campaign's statistics.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignStats {
    pub campaign_id: Uuid,
    /// Absent until the analytics service has seen the campaign's events.
    pub budget: Option<Budget>,
    /// The listed days, oldest first.
    pub days: Vec<DayStats>,
    pub totals: Totals,
}

/// A creator's statistics.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatorStats {
    pub creator_id: Uuid,
    /// The listed days, oldest first.
    pub days: Vec<DayStats>,
    pub totals: Totals,
}

/// A campaign's statistics by day: views, clicks, purchases, rates, revenue, commissions and
/// the budget left. Its advertiser and admins only.
#[utoipa::path(get, path = "/api/v1/campaigns/{campaignId}/stats", tag = "analytics",
    params(("campaignId" = Uuid, Path), DateRange),
    responses((status = 200, description = "The campaign's statistics", body = CampaignStats)),
    security(("bearer" = [])))]
pub async fn campaign_stats(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(campaign_id): ApiPath<String>,
    ApiQuery(range): ApiQuery<DateRange>,
) -> Result<Json<CampaignStats>, Problem> {
    caller.require(&[Role::Advertiser])?;
    let campaign_id = uuid_field("campaignId", &campaign_id)?;
    owned(&state, &caller, campaign_id).await?;
    let stats = state
        .clients
        .analytics
        .clone()
        .get_campaign_stats(caller.grpc(pb::GetCampaignStatsRequest {
            campaign_id: campaign_id.to_string(),
            from_date: range.from.unwrap_or_default(),
            to_date: range.to.unwrap_or_default(),
        }))
        .await
        .or_problem(SERVICE)?;
    Ok(Json(CampaignStats {
        campaign_id,
        budget: stats.budget.map(|b| Budget {
            currency: b.currency,
            budget_minor: b.budget_minor,
            left_minor: b.left_minor,
        }),
        days: days(stats.days),
        totals: totals(stats.totals),
    }))
}

/// A creator's statistics by day: what their audience did and what they earned, had reserved
/// and were paid. The creator and admins only.
#[utoipa::path(get, path = "/api/v1/creators/{creatorId}/stats", tag = "analytics",
    params(("creatorId" = Uuid, Path), DateRange),
    responses((status = 200, description = "The creator's statistics", body = CreatorStats)),
    security(("bearer" = [])))]
pub async fn creator_stats(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(creator_id): ApiPath<String>,
    ApiQuery(range): ApiQuery<DateRange>,
) -> Result<Json<CreatorStats>, Problem> {
    let creator_id = creator(&caller, &creator_id)?;
    let stats = state
        .clients
        .analytics
        .clone()
        .get_creator_stats(caller.grpc(pb::GetCreatorStatsRequest {
            creator_id: creator_id.to_string(),
            from_date: range.from.unwrap_or_default(),
            to_date: range.to.unwrap_or_default(),
        }))
        .await
        .or_problem(SERVICE)?;
    Ok(Json(CreatorStats {
        creator_id,
        days: days(stats.days),
        totals: totals(stats.totals),
    }))
}

/// One command or event as it travelled.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub message_id: String,
    /// `command` or `event`.
    #[schema(example = "event")]
    pub kind: String,
    #[schema(example = "commission.calculated.v1")]
    pub message_type: String,
    /// The short topic name.
    #[schema(example = "commission-events")]
    pub topic: String,
    pub correlation_id: String,
    /// The message that caused it; empty for a first command.
    pub causation_id: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    #[serde(serialize_with = "int64_as_string")]
    #[schema(value_type = String)]
    pub aggregate_version: i64,
    /// When it was issued or happened (RFC 3339).
    pub occurred_at: Option<String>,
    /// The W3C trace id; empty if it carried none.
    pub trace_id: String,
    /// The trace in the trace viewer; absent without a trace id.
    pub trace_url: Option<String>,
    /// The envelope, decoded, as proto3 JSON.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// A workflow: every kept command and event with one correlation id.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workflow {
    pub correlation_id: String,
    /// In causal order: each message after the one that caused it.
    pub entries: Vec<AuditEntry>,
}

/// One aggregate's events.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AggregateHistory {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// By version.
    pub entries: Vec<AuditEntry>,
}

fn entries(state: &AppState, entries: Vec<pb::AuditEntry>) -> Vec<AuditEntry> {
    let viewer = state.config.trace_viewer_url.trim_end_matches('/');
    entries
        .into_iter()
        .map(|e| AuditEntry {
            kind: match pb::MessageKind::try_from(e.kind) {
                Ok(pb::MessageKind::Command) => "command",
                Ok(pb::MessageKind::Event) => "event",
                _ => "unspecified",
            }
            .to_owned(),
            trace_url: (!e.trace_id.is_empty()).then(|| format!("{viewer}/trace/{}", e.trace_id)),
            payload: serde_json::from_str(&e.payload_json)
                .unwrap_or(serde_json::Value::String(e.payload_json)),
            occurred_at: rfc3339(e.occurred_at),
            message_id: e.message_id,
            message_type: e.message_type,
            topic: e.topic,
            correlation_id: e.correlation_id,
            causation_id: e.causation_id,
            aggregate_type: e.aggregate_type,
            aggregate_id: e.aggregate_id,
            aggregate_version: e.aggregate_version,
            trace_id: e.trace_id,
        })
        .collect()
}

/// A whole workflow, from its first command to its last event, each message after its cause,
/// decoded, with a link to its trace. Admins only.
#[utoipa::path(get, path = "/api/v1/admin/workflows/{correlationId}", tag = "admin",
    params(("correlationId" = String, Path)),
    responses((status = 200, description = "The workflow", body = Workflow)),
    security(("bearer" = [])))]
pub async fn workflow(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(correlation_id): ApiPath<String>,
) -> Result<Json<Workflow>, Problem> {
    caller.require(&[Role::Admin])?;
    let found = state
        .clients
        .analytics
        .clone()
        .get_workflow(caller.grpc(pb::GetWorkflowRequest { correlation_id }))
        .await
        .or_problem(SERVICE)?;
    Ok(Json(Workflow {
        correlation_id: found.correlation_id,
        entries: entries(&state, found.entries),
    }))
}

/// One aggregate's events by version, decoded. Admins only.
#[utoipa::path(get, path = "/api/v1/admin/aggregates/{aggregateType}/{aggregateId}/history", tag = "admin",
    params(("aggregateType" = String, Path, example = "payout"), ("aggregateId" = String, Path)),
    responses((status = 200, description = "The aggregate's events", body = AggregateHistory)),
    security(("bearer" = [])))]
pub async fn aggregate_history(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((aggregate_type, aggregate_id)): ApiPath<(String, String)>,
) -> Result<Json<AggregateHistory>, Problem> {
    caller.require(&[Role::Admin])?;
    let found = state
        .clients
        .analytics
        .clone()
        .get_aggregate_history(caller.grpc(pb::GetAggregateHistoryRequest {
            aggregate_type: aggregate_type.clone(),
            aggregate_id: aggregate_id.clone(),
        }))
        .await
        .or_problem(SERVICE)?;
    Ok(Json(AggregateHistory {
        aggregate_type,
        aggregate_id,
        entries: entries(&state, found.entries),
    }))
}
