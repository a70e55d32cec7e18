//! A creator's journeys: accept a campaign, submit evidence, see commissions and balance,
//! request payouts and follow them. Creators act only as themselves; admins for anyone.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use affiliate_proto::{campaign, commission, payment, tracking};

use super::Paging;
use crate::AppState;
use crate::auth::Role;
use crate::dto::{
    AcceptCampaign, Acceptance, Balance, Commission, CommissionPage, Evidence, Payout, PayoutPage,
    RequestPayout, SubmitEvidence,
};
use crate::edge::{Answer as _, ApiJson, ApiPath, ApiQuery, Caller, carried, uuid_field};
use crate::problem::Problem;

/// The creator named in the path, if the caller may act for them.
pub(crate) fn creator(caller: &Caller, creator_id: &str) -> Result<Uuid, Problem> {
    caller.require(&[Role::Creator])?;
    let creator_id = uuid_field("creatorId", creator_id)?;
    caller.require_self(creator_id)?;
    Ok(creator_id)
}

/// Accept a campaign's terms.
#[utoipa::path(post, path = "/api/v1/creators/{creatorId}/acceptances", tag = "creators",
    params(("creatorId" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the first result")),
    request_body = AcceptCampaign,
    responses((status = 201, description = "Accepted", body = Acceptance)),
    security(("bearer" = [])))]
pub async fn accept(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(creator_id): ApiPath<String>,
    ApiJson(body): ApiJson<AcceptCampaign>,
) -> Result<(StatusCode, Json<Acceptance>), Problem> {
    let creator_id = creator(&caller, &creator_id)?;
    let accepted = state
        .clients
        .campaign
        .clone()
        .accept_campaign(caller.grpc(campaign::AcceptCampaignRequest {
            campaign_id: body.campaign_id.to_string(),
            creator_id: creator_id.to_string(),
            accepted_terms: body.accepted_terms,
        }))
        .await
        .or_problem("campaign")?;
    let acceptance: Acceptance = carried(accepted.acceptance)?;
    Ok((StatusCode::CREATED, Json(acceptance)))
}

/// Submit evidence of published content.
#[utoipa::path(post, path = "/api/v1/creators/{creatorId}/evidence", tag = "creators",
    params(("creatorId" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the first result")),
    request_body = SubmitEvidence,
    responses((status = 201, description = "Recorded", body = Evidence)),
    security(("bearer" = [])))]
pub async fn submit_evidence(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(creator_id): ApiPath<String>,
    ApiJson(body): ApiJson<SubmitEvidence>,
) -> Result<(StatusCode, Json<Evidence>), Problem> {
    let creator_id = creator(&caller, &creator_id)?;
    let submitted = state
        .clients
        .tracking
        .clone()
        .submit_evidence(caller.grpc(tracking::SubmitEvidenceRequest {
            campaign_id: body.campaign_id.to_string(),
            creator_id: creator_id.to_string(),
            kind: body.kind.0 as i32,
            url: body.url,
            note: body.note,
        }))
        .await
        .or_problem("tracking")?;
    let evidence: Evidence = carried(submitted.evidence)?;
    Ok((StatusCode::CREATED, Json(evidence)))
}

/// Filter of the commission list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct CommissionFilter {
    /// Only commissions earned on this campaign.
    pub campaign_id: Option<Uuid>,
}

/// List a creator's commissions, newest first.
#[utoipa::path(get, path = "/api/v1/creators/{creatorId}/commissions", tag = "creators",
    params(("creatorId" = Uuid, Path), Paging, CommissionFilter),
    responses((status = 200, description = "One page", body = CommissionPage)),
    security(("bearer" = [])))]
pub async fn commissions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(creator_id): ApiPath<String>,
    ApiQuery(paging): ApiQuery<Paging>,
    ApiQuery(filter): ApiQuery<CommissionFilter>,
) -> Result<Json<CommissionPage>, Problem> {
    let creator_id = creator(&caller, &creator_id)?;
    let page = state
        .clients
        .commission
        .clone()
        .list_commissions(
            caller.grpc(commission::ListCommissionsRequest {
                page_size: paging.size(),
                page_token: paging.token(),
                creator_id: creator_id.to_string(),
                campaign_id: filter
                    .campaign_id
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
                status: String::new(),
            }),
        )
        .await
        .or_problem("commission")?;
    Ok(Json(CommissionPage {
        commissions: page.commissions.into_iter().map(Commission::from).collect(),
        next_page_token: page.next_page_token,
    }))
}

/// The currency of a balance.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BalanceQuery {
    /// ISO-4217 code, e.g. USD.
    #[param(pattern = "^[A-Z]{3}$", example = "USD")]
    pub currency: String,
}

/// A creator's balance in one currency.
#[utoipa::path(get, path = "/api/v1/creators/{creatorId}/balance", tag = "creators",
    params(("creatorId" = Uuid, Path), BalanceQuery),
    responses((status = 200, description = "The balance", body = Balance)),
    security(("bearer" = [])))]
pub async fn balance(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(creator_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<BalanceQuery>,
) -> Result<Json<Balance>, Problem> {
    let creator_id = creator(&caller, &creator_id)?;
    let found = state
        .clients
        .commission
        .clone()
        .get_balance(caller.grpc(commission::GetBalanceRequest {
            creator_id: creator_id.to_string(),
            currency: query.currency,
        }))
        .await
        .or_problem("commission")?;
    carried::<Balance, _>(found.balance).map(Json)
}

/// Request a payout from the available balance. The saga runs on: follow it with GET.
#[utoipa::path(post, path = "/api/v1/creators/{creatorId}/payouts", tag = "creators",
    params(("creatorId" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the first result")),
    request_body = RequestPayout,
    responses((status = 202, description = "Requested; the saga runs on", body = Payout)),
    security(("bearer" = [])))]
pub async fn request_payout(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(creator_id): ApiPath<String>,
    ApiJson(body): ApiJson<RequestPayout>,
) -> Result<(StatusCode, Json<Payout>), Problem> {
    let creator_id = creator(&caller, &creator_id)?;
    let requested = state
        .clients
        .payment
        .clone()
        .request_payout(caller.grpc(payment::RequestPayoutRequest {
            creator_id: creator_id.to_string(),
            amount: Some(body.amount.into()),
            method: body.method.0 as i32,
            account_details: body.account_details,
        }))
        .await
        .or_problem("payment")?;
    let payout: Payout = carried(requested.payout)?;
    Ok((StatusCode::ACCEPTED, Json(payout)))
}

/// List a creator's payouts, newest first.
#[utoipa::path(get, path = "/api/v1/creators/{creatorId}/payouts", tag = "creators",
    params(("creatorId" = Uuid, Path), Paging),
    responses((status = 200, description = "One page", body = PayoutPage)),
    security(("bearer" = [])))]
pub async fn payouts(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(creator_id): ApiPath<String>,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<Json<PayoutPage>, Problem> {
    let creator_id = creator(&caller, &creator_id)?;
    let page = state
        .clients
        .payment
        .clone()
        .list_payouts(caller.grpc(payment::ListPayoutsRequest {
            page_size: paging.size(),
            page_token: paging.token(),
            creator_id: creator_id.to_string(),
        }))
        .await
        .or_problem("payment")?;
    Ok(Json(PayoutPage {
        payouts: page.payouts.into_iter().map(Payout::from).collect(),
        next_page_token: page.next_page_token,
    }))
}

/// Follow one payout.
#[utoipa::path(get, path = "/api/v1/creators/{creatorId}/payouts/{payoutId}", tag = "creators",
    params(("creatorId" = Uuid, Path), ("payoutId" = Uuid, Path)),
    responses((status = 200, description = "The payout", body = Payout)),
    security(("bearer" = [])))]
pub async fn payout(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((creator_id, payout_id)): ApiPath<(String, String)>,
) -> Result<Json<Payout>, Problem> {
    let creator_id = creator(&caller, &creator_id)?;
    let payout_id = uuid_field("payoutId", &payout_id)?;
    let found = state
        .clients
        .payment
        .clone()
        .get_payout(caller.grpc(payment::GetPayoutRequest {
            payout_id: payout_id.to_string(),
        }))
        .await
        .or_problem("payment")?;
    let payout = found.payout.ok_or_else(Problem::internal)?;
    if payout.creator_id != creator_id.to_string() {
        // Another creator's payout: as if it did not exist.
        return Err(Problem::not_found(format!("payout {payout_id} not found")));
    }
    Ok(Json(Payout::from(payout)))
}
