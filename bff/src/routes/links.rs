//! Tracking links: a creator's links for the campaigns they accepted (create, list, read,
//! disable), and the links on an advertiser's campaign. Every link carries its public URL on the
//! redirect edge (`REDIRECT_PUBLIC_URL` + `/c/{code}`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use affiliate_proto::tracking as pb;

use super::Paging;
use super::campaigns::owned;
use super::creators::creator;
use crate::AppState;
use crate::auth::Role;
use crate::dto::{CreateLink, TrackingLink, TrackingLinkPage};
use crate::edge::{Answer as _, ApiJson, ApiPath, ApiQuery, Caller, uuid_field};
use crate::problem::Problem;

const SERVICE: &str = "tracking";

fn rest(state: &AppState, link: Option<pb::TrackingLink>) -> Result<TrackingLink, Problem> {
    link.map(|l| TrackingLink::new(l, &state.config.redirect_public_url))
        .ok_or_else(Problem::internal)
}

/// How long a list waits for its links' figures before it answers without them.
const FIGURES_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A page of links, each with its figures (the analytics service asked for all of them at once;
/// a link whose figures do not come in time is listed without them).
async fn page(state: &AppState, caller: &Caller, page: pb::ListLinksResponse) -> TrackingLinkPage {
    let figures = page.links.iter().map(|l| {
        let mut analytics = state.clients.analytics.clone();
        let request = caller.grpc(affiliate_proto::analytics::GetLinkStatsRequest {
            link_id: l.id.clone(),
            ..Default::default()
        });
        async move {
            let answer =
                tokio::time::timeout(FIGURES_WAIT, analytics.get_link_stats(request)).await;
            match answer {
                Ok(Ok(stats)) => Some(super::analytics::totals(stats.into_inner().totals)),
                _ => None,
            }
        }
    });
    let figures = futures::future::join_all(figures).await;
    TrackingLinkPage {
        links: page
            .links
            .into_iter()
            .zip(figures)
            .map(|(l, figures)| TrackingLink {
                figures,
                ..TrackingLink::new(l, &state.config.redirect_public_url)
            })
            .collect(),
        next_page_token: page.next_page_token,
    }
}

/// Reads the creator's link; another creator's is as if it did not exist.
async fn own_link(
    state: &AppState,
    caller: &Caller,
    creator_id: Uuid,
    link_id: Uuid,
) -> Result<pb::TrackingLink, Problem> {
    let found = state
        .clients
        .tracking
        .clone()
        .get_link(caller.grpc(pb::GetLinkRequest {
            link_id: link_id.to_string(),
        }))
        .await
        .or_problem(SERVICE)?;
    let link = found.link.ok_or_else(Problem::internal)?;
    if link.creator_id != creator_id.to_string() {
        return Err(Problem::not_found(format!("link {link_id} not found")));
    }
    Ok(link)
}

/// Create a tracking link for a campaign you accepted (active, with a landing URL), optionally
/// to a deep link on the campaign's hosts.
#[utoipa::path(post, path = "/api/v1/creators/{creatorId}/links", tag = "links",
    params(("creatorId" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the first result")),
    request_body = CreateLink,
    responses((status = 201, description = "Created", body = TrackingLink)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(creator_id): ApiPath<String>,
    ApiJson(body): ApiJson<CreateLink>,
) -> Result<(StatusCode, Json<TrackingLink>), Problem> {
    let creator_id = creator(&caller, &creator_id)?;
    let created = state
        .clients
        .tracking
        .clone()
        .create_link(caller.grpc(pb::CreateLinkRequest {
            campaign_id: body.campaign_id.to_string(),
            creator_id: creator_id.to_string(),
            sub_ids: Some(body.sub_ids.into()),
            deep_link: body.deep_link,
        }))
        .await
        .or_problem(SERVICE)?;
    Ok((StatusCode::CREATED, Json(rest(&state, created.link)?)))
}

/// Filter of a creator's link list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct LinkFilter {
    /// Only the links for this campaign.
    pub campaign_id: Option<Uuid>,
}

/// List your tracking links, newest first.
#[utoipa::path(get, path = "/api/v1/creators/{creatorId}/links", tag = "links",
    params(("creatorId" = Uuid, Path), Paging, LinkFilter),
    responses((status = 200, description = "One page", body = TrackingLinkPage)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(creator_id): ApiPath<String>,
    ApiQuery(paging): ApiQuery<Paging>,
    ApiQuery(filter): ApiQuery<LinkFilter>,
) -> Result<Json<TrackingLinkPage>, Problem> {
    let creator_id = creator(&caller, &creator_id)?;
    let found = state
        .clients
        .tracking
        .clone()
        .list_links(
            caller.grpc(pb::ListLinksRequest {
                page_size: paging.size(),
                page_token: paging.token(),
                campaign_id: filter
                    .campaign_id
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
                creator_id: creator_id.to_string(),
            }),
        )
        .await
        .or_problem(SERVICE)?;
    Ok(Json(page(&state, &caller, found).await))
}

/// One of your tracking links.
#[utoipa::path(get, path = "/api/v1/creators/{creatorId}/links/{linkId}", tag = "links",
    params(("creatorId" = Uuid, Path), ("linkId" = Uuid, Path)),
    responses((status = 200, description = "The link", body = TrackingLink)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((creator_id, link_id)): ApiPath<(String, String)>,
) -> Result<Json<TrackingLink>, Problem> {
    let creator_id = creator(&caller, &creator_id)?;
    let link_id = uuid_field("linkId", &link_id)?;
    let link = own_link(&state, &caller, creator_id, link_id).await?;
    Ok(Json(rest(&state, Some(link))?))
}

/// Disable one of your tracking links for good: its visitors go to the campaign's fallback and
/// no click is recorded. Disabling a disabled link changes nothing.
#[utoipa::path(post, path = "/api/v1/creators/{creatorId}/links/{linkId}/disable", tag = "links",
    params(("creatorId" = Uuid, Path), ("linkId" = Uuid, Path)),
    responses((status = 200, description = "Disabled", body = TrackingLink)),
    security(("bearer" = [])))]
pub async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((creator_id, link_id)): ApiPath<(String, String)>,
) -> Result<Json<TrackingLink>, Problem> {
    let creator_id = creator(&caller, &creator_id)?;
    let link_id = uuid_field("linkId", &link_id)?;
    own_link(&state, &caller, creator_id, link_id).await?;
    let disabled = state
        .clients
        .tracking
        .clone()
        .disable_link(caller.grpc(pb::DisableLinkRequest {
            link_id: link_id.to_string(),
        }))
        .await
        .or_problem(SERVICE)?;
    Ok(Json(rest(&state, disabled.link)?))
}

/// The creators' tracking links on one of your campaigns, newest first.
#[utoipa::path(get, path = "/api/v1/campaigns/{campaignId}/links", tag = "links",
    params(("campaignId" = Uuid, Path), Paging),
    responses((status = 200, description = "One page", body = TrackingLinkPage)),
    security(("bearer" = [])))]
pub async fn of_campaign(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(campaign_id): ApiPath<String>,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<Json<TrackingLinkPage>, Problem> {
    caller.require(&[Role::Advertiser])?;
    let campaign_id = uuid_field("campaignId", &campaign_id)?;
    owned(&state, &caller, campaign_id).await?;
    let found = state
        .clients
        .tracking
        .clone()
        .list_links(caller.grpc(pb::ListLinksRequest {
            page_size: paging.size(),
            page_token: paging.token(),
            campaign_id: campaign_id.to_string(),
            creator_id: String::new(),
        }))
        .await
        .or_problem(SERVICE)?;
    Ok(Json(page(&state, &caller, found).await))
}
