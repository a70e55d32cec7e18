//! Tracking ingestion: the views, clicks and purchases an advertiser's shop (or an admin)
//! reports for a campaign and creator, and their listing.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use affiliate_proto::tracking as pb;

use super::Paging;
use super::campaigns::owned;
use crate::AppState;
use crate::auth::Role;
use crate::dto::{RecordTrackingEvent, TrackingEvent, TrackingEventPage};
use crate::edge::{Answer as _, ApiJson, ApiQuery, Caller, carried};
use crate::problem::Problem;
use service_runtime::time::timestamp;

/// Record a view, click or purchase on one of your campaigns. A purchase becomes a commission.
#[utoipa::path(post, path = "/api/v1/tracking-events", tag = "tracking",
    params(("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the first result")),
    request_body = RecordTrackingEvent,
    responses((status = 201, description = "Recorded", body = TrackingEvent)),
    security(("bearer" = [])))]
pub async fn record(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<RecordTrackingEvent>,
) -> Result<(StatusCode, Json<TrackingEvent>), Problem> {
    caller.require(&[Role::Advertiser])?;
    owned(&state, &caller, body.campaign_id).await?;
    let recorded = state
        .clients
        .tracking
        .clone()
        .create_event(caller.grpc(pb::CreateEventRequest {
            campaign_id: body.campaign_id.to_string(),
            creator_id: body.creator_id.to_string(),
            kind: body.kind.0 as i32,
            amount: body.amount.map(Into::into),
            product_id: body.product_id,
            occurred_at: body.occurred_at.map(timestamp),
        }))
        .await
        .or_problem("tracking")?;
    let event: TrackingEvent = carried(recorded.event)?;
    Ok((StatusCode::CREATED, Json(event)))
}

/// Filters of the tracking-event list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct EventFilter {
    /// Required for advertisers (one of their campaigns).
    pub campaign_id: Option<Uuid>,
    /// Creators see only their own events.
    pub creator_id: Option<Uuid>,
}

/// List tracking events newest first: an advertiser's campaign's, a creator's own, any for admins.
#[utoipa::path(get, path = "/api/v1/tracking-events", tag = "tracking",
    params(Paging, EventFilter),
    responses((status = 200, description = "One page", body = TrackingEventPage)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(paging): ApiQuery<Paging>,
    ApiQuery(filter): ApiQuery<EventFilter>,
) -> Result<Json<TrackingEventPage>, Problem> {
    let creator_id = match caller.role() {
        Role::Admin => filter.creator_id,
        Role::Creator => {
            if let Some(id) = filter.creator_id {
                caller.require_self(id)?;
            }
            Some(caller.id())
        }
        Role::Advertiser => {
            let campaign_id = filter.campaign_id.ok_or_else(|| {
                Problem::invalid_field(
                    "campaignId",
                    "advertisers list the events of one of their campaigns",
                )
            })?;
            owned(&state, &caller, campaign_id).await?;
            filter.creator_id
        }
    };
    let page = state
        .clients
        .tracking
        .clone()
        .list_events(
            caller.grpc(pb::ListEventsRequest {
                page_size: paging.size(),
                page_token: paging.token(),
                campaign_id: filter
                    .campaign_id
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
                creator_id: creator_id.map(|id| id.to_string()).unwrap_or_default(),
            }),
        )
        .await
        .or_problem("tracking")?;
    Ok(Json(TrackingEventPage {
        events: page.events.into_iter().map(TrackingEvent::from).collect(),
        next_page_token: page.next_page_token,
    }))
}
