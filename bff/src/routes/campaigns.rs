//! Advertisers' campaigns: create, list, get, add videos, set the budget and the tracking
//! settings, pause, resume, close. Creators may list and read campaigns; an advertiser acts only
//! on their own.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use affiliate_proto::campaign as pb;

use super::Paging;
use crate::AppState;
use crate::auth::Role;
use crate::dto::{
    AddVideo, Campaign, CampaignDetail, CampaignPage, CampaignStatus, CreateCampaign, Rest,
    UpdateBudget, UpdateTracking, Video,
};
use crate::edge::{Answer as _, ApiJson, ApiPath, ApiQuery, Caller, carried, uuid_field};
use crate::problem::Problem;

const SERVICE: &str = "campaign";

/// The durations' field paths as the service names them and as the REST bodies do (in whole
/// seconds).
const SECONDS_FIELDS: [(&str, &str); 3] = [
    ("holdPeriod", "holdPeriodSeconds"),
    (
        "tracking.attributionWindow",
        "tracking.attributionWindowSeconds",
    ),
    (
        "tracking.minClickToConversion",
        "tracking.minClickToConversionSeconds",
    ),
];

/// Reads a campaign the caller may act on: any for admins, their own for advertisers.
pub async fn owned(
    state: &AppState,
    caller: &Caller,
    campaign_id: Uuid,
) -> Result<pb::GetCampaignResponse, Problem> {
    let found = state
        .clients
        .campaign
        .clone()
        .get_campaign(caller.grpc(pb::GetCampaignRequest {
            campaign_id: campaign_id.to_string(),
        }))
        .await
        .or_problem(SERVICE)?;
    let owner = found.campaign.as_ref().map(|c| c.advertiser_id.as_str());
    if caller.role() == Role::Advertiser && owner != Some(caller.id().to_string().as_str()) {
        return Err(Problem::forbidden(
            "the campaign belongs to another advertiser",
        ));
    }
    Ok(found)
}

/// Create a campaign.
#[utoipa::path(post, path = "/api/v1/campaigns", tag = "campaigns",
    request_body = CreateCampaign,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the first result")),
    responses((status = 201, description = "Created", body = Campaign)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateCampaign>,
) -> Result<(StatusCode, Json<Campaign>), Problem> {
    caller.require(&[Role::Advertiser])?;
    let advertiser_id = match body.advertiser_id {
        Some(id) => {
            caller.require_self(id)?;
            id
        }
        None if caller.is_admin() => {
            return Err(Problem::invalid_field(
                "advertiserId",
                "admins must name the advertiser",
            ));
        }
        None => caller.id(),
    };
    let request = pb::CreateCampaignRequest {
        advertiser_id: advertiser_id.to_string(),
        name: body.name,
        description: body.description,
        commission_rate_bps: body.commission_rate_bps,
        budget: Some(body.budget.into()),
        tracking: body.tracking.map(Into::into),
        hold_period: body
            .hold_period_seconds
            .map(|seconds| pbjson_types::Duration { seconds, nanos: 0 }),
    };
    let created = state
        .clients
        .campaign
        .clone()
        .create_campaign(caller.grpc(request))
        .await
        .or_problem(SERVICE)
        .map_err(|p| p.renaming_fields(&SECONDS_FIELDS))?;
    Ok((
        StatusCode::CREATED,
        Json(carried::<Campaign, _>(created.campaign)?),
    ))
}

/// Filters of the campaign list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct CampaignFilter {
    /// Only this advertiser's campaigns. Advertisers see only their own.
    pub advertiser_id: Option<Uuid>,
    /// Only campaigns in this status. Creators see only active ones.
    pub status: Option<CampaignStatus>,
}

/// List campaigns, newest first: an advertiser's own, the active ones for creators, any for admins.
#[utoipa::path(get, path = "/api/v1/campaigns", tag = "campaigns",
    params(Paging, CampaignFilter),
    responses((status = 200, description = "One page", body = CampaignPage)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(paging): ApiQuery<Paging>,
    ApiQuery(filter): ApiQuery<CampaignFilter>,
) -> Result<Json<CampaignPage>, Problem> {
    let (advertiser_id, status) = match caller.role() {
        Role::Admin => (filter.advertiser_id, filter.status),
        Role::Advertiser => {
            if let Some(id) = filter.advertiser_id {
                caller.require_self(id)?;
            }
            (Some(caller.id()), filter.status)
        }
        Role::Creator => {
            if filter
                .status
                .is_some_and(|s| s != Rest(pb::CampaignStatus::Active))
            {
                return Err(Problem::forbidden("creators see only active campaigns"));
            }
            (filter.advertiser_id, Some(Rest(pb::CampaignStatus::Active)))
        }
    };
    let page = state
        .clients
        .campaign
        .clone()
        .list_campaigns(caller.grpc(pb::ListCampaignsRequest {
            page_size: paging.size(),
            page_token: paging.token(),
            advertiser_id: advertiser_id.map(|id| id.to_string()).unwrap_or_default(),
            status: status.map_or(0, |s| s.0 as i32),
        }))
        .await
        .or_problem(SERVICE)?;
    Ok(Json(CampaignPage {
        campaigns: page.campaigns.into_iter().map(Campaign::from).collect(),
        next_page_token: page.next_page_token,
    }))
}

/// Get a campaign and its videos.
#[utoipa::path(get, path = "/api/v1/campaigns/{campaignId}", tag = "campaigns",
    params(("campaignId" = Uuid, Path)),
    responses((status = 200, description = "The campaign", body = CampaignDetail)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(campaign_id): ApiPath<String>,
) -> Result<Json<CampaignDetail>, Problem> {
    let campaign_id = uuid_field("campaignId", &campaign_id)?;
    let found = owned(&state, &caller, campaign_id).await?;
    Ok(Json(CampaignDetail {
        campaign: carried(found.campaign)?,
        videos: found.videos.into_iter().map(Video::from).collect(),
    }))
}

/// Attach a video to one of your campaigns.
#[utoipa::path(post, path = "/api/v1/campaigns/{campaignId}/videos", tag = "campaigns",
    params(("campaignId" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the first result")),
    request_body = AddVideo,
    responses((status = 201, description = "Added", body = Video)),
    security(("bearer" = [])))]
pub async fn add_video(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(campaign_id): ApiPath<String>,
    ApiJson(body): ApiJson<AddVideo>,
) -> Result<(StatusCode, Json<Video>), Problem> {
    caller.require(&[Role::Advertiser])?;
    let campaign_id = uuid_field("campaignId", &campaign_id)?;
    owned(&state, &caller, campaign_id).await?;
    let added = state
        .clients
        .campaign
        .clone()
        .add_video(caller.grpc(pb::AddVideoRequest {
            campaign_id: campaign_id.to_string(),
            url: body.url,
            title: body.title,
        }))
        .await
        .or_problem(SERVICE)?;
    let video: Video = carried(added.video)?;
    Ok((StatusCode::CREATED, Json(video)))
}

/// Set the budget of one of your campaigns; a campaign paused because its budget was spent is
/// resumed by a larger one.
#[utoipa::path(put, path = "/api/v1/campaigns/{campaignId}/budget", tag = "campaigns",
    params(("campaignId" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the first result")),
    request_body = UpdateBudget,
    responses((status = 200, description = "Updated", body = Campaign)),
    security(("bearer" = [])))]
pub async fn update_budget(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(campaign_id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateBudget>,
) -> Result<Json<Campaign>, Problem> {
    caller.require(&[Role::Advertiser])?;
    let campaign_id = uuid_field("campaignId", &campaign_id)?;
    owned(&state, &caller, campaign_id).await?;
    let updated = state
        .clients
        .campaign
        .clone()
        .update_budget(caller.grpc(pb::UpdateBudgetRequest {
            campaign_id: campaign_id.to_string(),
            budget: Some(body.budget.into()),
        }))
        .await
        .or_problem(SERVICE)?;
    Ok(Json(carried::<Campaign, _>(updated.campaign)?))
}

/// Set how the tracking links of one of your active or paused campaigns behave: the landing URL,
/// the domains deep links may point at, the click id parameter, the attribution window, the
/// click-to-conversion minimum and the fallback URL. The whole settings are replaced.
#[utoipa::path(put, path = "/api/v1/campaigns/{campaignId}/tracking", tag = "campaigns",
    params(("campaignId" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the first result")),
    request_body = UpdateTracking,
    responses((status = 200, description = "Updated", body = Campaign)),
    security(("bearer" = [])))]
pub async fn update_tracking(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(campaign_id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateTracking>,
) -> Result<Json<Campaign>, Problem> {
    caller.require(&[Role::Advertiser])?;
    let campaign_id = uuid_field("campaignId", &campaign_id)?;
    owned(&state, &caller, campaign_id).await?;
    let updated = state
        .clients
        .campaign
        .clone()
        .update_tracking_settings(caller.grpc(pb::UpdateTrackingSettingsRequest {
            campaign_id: campaign_id.to_string(),
            tracking: Some(body.tracking.into()),
        }))
        .await
        .or_problem(SERVICE)
        .map_err(|p| p.renaming_fields(&SECONDS_FIELDS))?;
    Ok(Json(carried::<Campaign, _>(updated.campaign)?))
}

#[derive(Debug, Clone, Copy)]
enum Change {
    Pause,
    Resume,
    Close,
}

async fn change(
    state: AppState,
    caller: Caller,
    campaign_id: String,
    change: Change,
) -> Result<Json<Campaign>, Problem> {
    caller.require(&[Role::Advertiser])?;
    let campaign_id = uuid_field("campaignId", &campaign_id)?;
    owned(&state, &caller, campaign_id).await?;
    let id = campaign_id.to_string();
    let mut client = state.clients.campaign.clone();
    let campaign = match change {
        Change::Pause => {
            client
                .pause_campaign(caller.grpc(pb::PauseCampaignRequest {
                    campaign_id: id,
                    ..Default::default()
                }))
                .await
                .or_problem(SERVICE)?
                .campaign
        }
        Change::Resume => {
            client
                .resume_campaign(caller.grpc(pb::ResumeCampaignRequest { campaign_id: id }))
                .await
                .or_problem(SERVICE)?
                .campaign
        }
        Change::Close => {
            client
                .close_campaign(caller.grpc(pb::CloseCampaignRequest { campaign_id: id }))
                .await
                .or_problem(SERVICE)?
                .campaign
        }
    };
    Ok(Json(carried::<Campaign, _>(campaign)?))
}

/// Pause one of your active campaigns.
#[utoipa::path(post, path = "/api/v1/campaigns/{campaignId}/pause", tag = "campaigns",
    params(("campaignId" = Uuid, Path)),
    responses((status = 200, description = "Paused", body = Campaign)),
    security(("bearer" = [])))]
pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Campaign>, Problem> {
    change(state, caller, id, Change::Pause).await
}

/// Resume one of your paused campaigns.
#[utoipa::path(post, path = "/api/v1/campaigns/{campaignId}/resume", tag = "campaigns",
    params(("campaignId" = Uuid, Path)),
    responses((status = 200, description = "Resumed", body = Campaign)),
    security(("bearer" = [])))]
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Campaign>, Problem> {
    change(state, caller, id, Change::Resume).await
}

/// Close one of your campaigns for good.
#[utoipa::path(post, path = "/api/v1/campaigns/{campaignId}/close", tag = "campaigns",
    params(("campaignId" = Uuid, Path)),
    responses((status = 200, description = "Closed", body = Campaign)),
    security(("bearer" = [])))]
pub async fn close(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Campaign>, Problem> {
    change(state, caller, id, Change::Close).await
}
