//! Webhooks: the endpoints where an advertiser's or a creator's servers receive the platform's
//! events about them (Standard Webhooks v1: signed, retried, in order per aggregate), their
//! delivery log, and replays.
//!
//! The owner is always the caller (the token's subject), never a field of the request: an
//! endpoint of someone else's is as if it did not exist (404). Admins own no endpoints and act
//! for no one here (403). A secret is in the answer that makes it (create, rotate) and nowhere
//! else.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use affiliate_proto::webhook as pb;
use service_runtime::time::timestamp;

use super::Paging;
use crate::AppState;
use crate::auth::Role;
use crate::dto::{
    CreateWebhookEndpoint, CreatedWebhookEndpoint, QueuedWebhookDelivery, RecoverWebhookEndpoint,
    RecoveredWebhookMessages, RotatedWebhookSecret, UpdateWebhookEndpoint, WebhookAttempt,
    WebhookAttemptPage, WebhookDelivery, WebhookDeliveryPage, WebhookEndpoint, WebhookEndpointPage,
};
use crate::edge::{Answer as _, ApiJson, ApiPath, ApiQuery, Caller, carried, uuid_field};
use crate::problem::Problem;

const SERVICE: &str = "webhook";

/// The owner of the caller's endpoints: the advertiser or creator the token names.
fn owner(caller: &Caller) -> Result<String, Problem> {
    match caller.role() {
        Role::Advertiser | Role::Creator => Ok(caller.id().to_string()),
        Role::Admin => Err(Problem::forbidden(
            "the admin role may not do this: webhook endpoints belong to advertisers and creators",
        )),
    }
}

/// The owner and the endpoint named in the path (a UUID), if the caller may have endpoints.
fn owned(caller: &Caller, endpoint_id: &str) -> Result<(String, String), Problem> {
    let owner_id = owner(caller)?;
    let endpoint_id = uuid_field("endpointId", endpoint_id)?;
    Ok((owner_id, endpoint_id.to_string()))
}

/// The problem of an update's status: the service names the filter's entries
/// `event_types.values[i]`, the body `eventTypes[i]`.
fn update_problem(status: &tonic::Status) -> Problem {
    let mut problem = Problem::from_status(status, SERVICE);
    for error in &mut problem.errors {
        if let Some(rest) = error.field.strip_prefix("eventTypes.values") {
            error.field = format!("eventTypes{rest}");
        }
    }
    problem
}

/// Register an endpoint for your events. The answer carries its signing secret, which is never
/// shown again. At most 20 endpoints per owner (409 beyond).
#[utoipa::path(post, path = "/api/v1/webhooks/endpoints", tag = "webhooks",
    request_body = CreateWebhookEndpoint,
    responses((status = 201, description = "Registered; the secret is shown once", body = CreatedWebhookEndpoint)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateWebhookEndpoint>,
) -> Result<(StatusCode, Json<CreatedWebhookEndpoint>), Problem> {
    let owner_id = owner(&caller)?;
    let created = state
        .clients
        .webhook
        .clone()
        .create_endpoint(caller.grpc(pb::CreateEndpointRequest {
            owner_id,
            url: body.url,
            description: body.description,
            event_types: body.event_types,
            rate_limit_per_second: body.rate_limit_per_second,
        }))
        .await
        .or_problem(SERVICE)?;
    let endpoint: WebhookEndpoint = carried(created.endpoint)?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhookEndpoint {
            endpoint,
            secret: created.secret,
        }),
    ))
}

/// Your endpoints (never their secrets).
#[utoipa::path(get, path = "/api/v1/webhooks/endpoints", tag = "webhooks",
    params(Paging),
    responses((status = 200, description = "One page", body = WebhookEndpointPage)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<Json<WebhookEndpointPage>, Problem> {
    let owner_id = owner(&caller)?;
    let page = state
        .clients
        .webhook
        .clone()
        .list_endpoints(caller.grpc(pb::ListEndpointsRequest {
            owner_id,
            page_size: paging.size(),
            page_token: paging.token(),
        }))
        .await
        .or_problem(SERVICE)?;
    Ok(Json(WebhookEndpointPage {
        endpoints: page
            .endpoints
            .into_iter()
            .map(WebhookEndpoint::from)
            .collect(),
        next_page_token: page.next_page_token,
    }))
}

/// One of your endpoints (never its secret).
#[utoipa::path(get, path = "/api/v1/webhooks/endpoints/{endpointId}", tag = "webhooks",
    params(("endpointId" = Uuid, Path)),
    responses((status = 200, description = "The endpoint", body = WebhookEndpoint)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(endpoint_id): ApiPath<String>,
) -> Result<Json<WebhookEndpoint>, Problem> {
    let (owner_id, endpoint_id) = owned(&caller, &endpoint_id)?;
    let found = state
        .clients
        .webhook
        .clone()
        .get_endpoint(caller.grpc(pb::GetEndpointRequest {
            owner_id,
            endpoint_id,
        }))
        .await
        .or_problem(SERVICE)?;
    carried::<WebhookEndpoint, _>(found.endpoint).map(Json)
}

/// Change one of your endpoints: the fields present are set (`eventTypes: []` receives every
/// type again), the others stay. Enabling it resets its failure count and resumes its waiting
/// messages.
#[utoipa::path(patch, path = "/api/v1/webhooks/endpoints/{endpointId}", tag = "webhooks",
    params(("endpointId" = Uuid, Path)),
    request_body = UpdateWebhookEndpoint,
    responses((status = 200, description = "Changed", body = WebhookEndpoint)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(endpoint_id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateWebhookEndpoint>,
) -> Result<Json<WebhookEndpoint>, Problem> {
    let (owner_id, endpoint_id) = owned(&caller, &endpoint_id)?;
    let updated = state
        .clients
        .webhook
        .clone()
        .update_endpoint(caller.grpc(pb::UpdateEndpointRequest {
            owner_id,
            endpoint_id,
            url: body.url,
            description: body.description,
            event_types: body.event_types.map(|values| pb::EventTypes { values }),
            enabled: body.enabled,
            rate_limit_per_second: body.rate_limit_per_second,
        }))
        .await
        .map_err(|status| update_problem(&status))?
        .into_inner();
    carried::<WebhookEndpoint, _>(updated.endpoint).map(Json)
}

/// Delete one of your endpoints, its secrets and its waiting deliveries.
#[utoipa::path(delete, path = "/api/v1/webhooks/endpoints/{endpointId}", tag = "webhooks",
    params(("endpointId" = Uuid, Path)),
    responses((status = 204, description = "Deleted")),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(endpoint_id): ApiPath<String>,
) -> Result<StatusCode, Problem> {
    let (owner_id, endpoint_id) = owned(&caller, &endpoint_id)?;
    state
        .clients
        .webhook
        .clone()
        .delete_endpoint(caller.grpc(pb::DeleteEndpointRequest {
            owner_id,
            endpoint_id,
        }))
        .await
        .or_problem(SERVICE)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new signing secret for one of your endpoints, shown here once. The previous secret keeps
/// signing too (messages carry both signatures) until `endpoint.previousSecretExpiresAt`, so
/// your server can switch without losing a message.
#[utoipa::path(post, path = "/api/v1/webhooks/endpoints/{endpointId}/rotate-secret", tag = "webhooks",
    params(("endpointId" = Uuid, Path)),
    responses((status = 200, description = "Rotated; the new secret is shown once", body = RotatedWebhookSecret)),
    security(("bearer" = [])))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(endpoint_id): ApiPath<String>,
) -> Result<Json<RotatedWebhookSecret>, Problem> {
    let (owner_id, endpoint_id) = owned(&caller, &endpoint_id)?;
    let rotated = state
        .clients
        .webhook
        .clone()
        .rotate_secret(caller.grpc(pb::RotateSecretRequest {
            owner_id,
            endpoint_id,
        }))
        .await
        .or_problem(SERVICE)?;
    let endpoint: WebhookEndpoint = carried(rotated.endpoint)?;
    Ok(Json(RotatedWebhookSecret {
        endpoint,
        secret: rotated.secret,
    }))
}

/// Where a delivery stands, to list by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its next attempt (or for an earlier message about the same aggregate).
    Pending,
    Succeeded,
    /// Every retry spent, or the endpoint answered 410 Gone.
    Failed,
}

impl From<DeliveryState> for pb::DeliveryStatus {
    fn from(state: DeliveryState) -> Self {
        match state {
            DeliveryState::Pending => Self::Pending,
            DeliveryState::Succeeded => Self::Succeeded,
            DeliveryState::Failed => Self::Failed,
        }
    }
}

/// Filter of an endpoint's deliveries.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct DeliveryFilter {
    /// Only the deliveries in this state: `pending`, `succeeded` or `failed`. All otherwise.
    #[param(inline)]
    pub status: Option<DeliveryState>,
}

/// The messages sent (or to send) to one of your endpoints, newest first, optionally in one
/// state.
#[utoipa::path(get, path = "/api/v1/webhooks/endpoints/{endpointId}/deliveries", tag = "webhooks",
    params(("endpointId" = Uuid, Path), DeliveryFilter, Paging),
    responses((status = 200, description = "One page", body = WebhookDeliveryPage)),
    security(("bearer" = [])))]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(endpoint_id): ApiPath<String>,
    ApiQuery(filter): ApiQuery<DeliveryFilter>,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<Json<WebhookDeliveryPage>, Problem> {
    let (owner_id, endpoint_id) = owned(&caller, &endpoint_id)?;
    let status = filter
        .status
        .map_or(pb::DeliveryStatus::Unspecified, pb::DeliveryStatus::from);
    let page = state
        .clients
        .webhook
        .clone()
        .list_deliveries(caller.grpc(pb::ListDeliveriesRequest {
            owner_id,
            endpoint_id,
            status: status.into(),
            page_size: paging.size(),
            page_token: paging.token(),
        }))
        .await
        .or_problem(SERVICE)?;
    Ok(Json(WebhookDeliveryPage {
        deliveries: page
            .deliveries
            .into_iter()
            .map(WebhookDelivery::from)
            .collect(),
        next_page_token: page.next_page_token,
    }))
}

/// Filter of an endpoint's attempts.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct AttemptFilter {
    /// Only this message's attempts (its `messageId`, the `webhook-id` header).
    #[param(max_length = 100, example = "msg_0193a9e0000070008000000000000001")]
    pub message_id: Option<String>,
}

/// The HTTP requests made to one of your endpoints, newest first, optionally of one message:
/// the status each got, how long it took, the start of the answer or why there was none.
#[utoipa::path(get, path = "/api/v1/webhooks/endpoints/{endpointId}/attempts", tag = "webhooks",
    params(("endpointId" = Uuid, Path), AttemptFilter, Paging),
    responses((status = 200, description = "One page", body = WebhookAttemptPage)),
    security(("bearer" = [])))]
pub async fn attempts(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(endpoint_id): ApiPath<String>,
    ApiQuery(filter): ApiQuery<AttemptFilter>,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<Json<WebhookAttemptPage>, Problem> {
    let (owner_id, endpoint_id) = owned(&caller, &endpoint_id)?;
    let page = state
        .clients
        .webhook
        .clone()
        .list_attempts(caller.grpc(pb::ListAttemptsRequest {
            owner_id,
            endpoint_id,
            message_id: filter.message_id.unwrap_or_default(),
            page_size: paging.size(),
            page_token: paging.token(),
        }))
        .await
        .or_problem(SERVICE)?;
    Ok(Json(WebhookAttemptPage {
        attempts: page
            .attempts
            .into_iter()
            .map(WebhookAttempt::from)
            .collect(),
        next_page_token: page.next_page_token,
    }))
}

/// Send one message to one of your endpoints again, whatever became of it (the same
/// `webhook-id`, so your server can tell it has seen it). The message must have been sent to
/// this endpoint.
#[utoipa::path(post, path = "/api/v1/webhooks/endpoints/{endpointId}/messages/{messageId}/resend", tag = "webhooks",
    params(("endpointId" = Uuid, Path),
        ("messageId" = String, Path, description = "The message's id (`webhook-id`)", example = "msg_0193a9e0000070008000000000000001")),
    responses((status = 202, description = "Queued", body = QueuedWebhookDelivery)),
    security(("bearer" = [])))]
pub async fn resend(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((endpoint_id, message_id)): ApiPath<(String, String)>,
) -> Result<(StatusCode, Json<QueuedWebhookDelivery>), Problem> {
    let (owner_id, endpoint_id) = owned(&caller, &endpoint_id)?;
    let resent = state
        .clients
        .webhook
        .clone()
        .resend_message(caller.grpc(pb::ResendMessageRequest {
            owner_id,
            endpoint_id,
            message_id,
        }))
        .await
        .or_problem(SERVICE)?;
    let delivery: WebhookDelivery = carried(resent.delivery)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(QueuedWebhookDelivery { delivery }),
    ))
}

/// Send again every message that failed to one of your endpoints since a time (after an
/// outage of your server, say).
#[utoipa::path(post, path = "/api/v1/webhooks/endpoints/{endpointId}/recover", tag = "webhooks",
    params(("endpointId" = Uuid, Path)),
    request_body = RecoverWebhookEndpoint,
    responses((status = 202, description = "Queued again", body = RecoveredWebhookMessages)),
    security(("bearer" = [])))]
pub async fn recover(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(endpoint_id): ApiPath<String>,
    ApiJson(body): ApiJson<RecoverWebhookEndpoint>,
) -> Result<(StatusCode, Json<RecoveredWebhookMessages>), Problem> {
    let (owner_id, endpoint_id) = owned(&caller, &endpoint_id)?;
    let recovered = state
        .clients
        .webhook
        .clone()
        .recover_endpoint(caller.grpc(pb::RecoverEndpointRequest {
            owner_id,
            endpoint_id,
            since: Some(timestamp(body.since)),
        }))
        .await
        .or_problem(SERVICE)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RecoveredWebhookMessages {
            recovered: recovered.recovered.to_string(),
        }),
    ))
}

/// Send a `webhook.test.v1` message to one of your endpoints, to check your server receives
/// and verifies them; follow it in the endpoint's deliveries and attempts.
#[utoipa::path(post, path = "/api/v1/webhooks/endpoints/{endpointId}/test", tag = "webhooks",
    params(("endpointId" = Uuid, Path)),
    responses((status = 202, description = "Queued", body = QueuedWebhookDelivery)),
    security(("bearer" = [])))]
pub async fn send_test(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(endpoint_id): ApiPath<String>,
) -> Result<(StatusCode, Json<QueuedWebhookDelivery>), Problem> {
    let (owner_id, endpoint_id) = owned(&caller, &endpoint_id)?;
    let sent = state
        .clients
        .webhook
        .clone()
        .send_test_event(caller.grpc(pb::SendTestEventRequest {
            owner_id,
            endpoint_id,
        }))
        .await
        .or_problem(SERVICE)?;
    let delivery: WebhookDelivery = carried(sent.delivery)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(QueuedWebhookDelivery { delivery }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt as _};

    #[test]
    fn an_update_s_filter_violations_are_named_as_the_body_names_them() {
        let details = ErrorDetails::with_bad_request(vec![
            tonic_types::FieldViolation::new("event_types.values[1]", "is named twice"),
            tonic_types::FieldViolation::new("url", "must be an absolute http or https URL"),
        ]);
        let status = tonic::Status::with_error_details(
            tonic::Code::InvalidArgument,
            "invalid request",
            details,
        );
        let problem = update_problem(&status);
        let fields: Vec<&str> = problem.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["eventTypes[1]", "url"]);
    }

    #[test]
    fn a_patch_tells_an_empty_filter_from_none() {
        let set: UpdateWebhookEndpoint = serde_json::from_str(r#"{"eventTypes": []}"#).unwrap();
        assert_eq!(set.event_types, Some(Vec::new()));
        let unchanged: UpdateWebhookEndpoint =
            serde_json::from_str(r#"{"enabled": false}"#).unwrap();
        assert_eq!(unchanged.event_types, None);
        assert_eq!(unchanged.enabled, Some(false));
        assert!(serde_json::from_str::<UpdateWebhookEndpoint>(r#"{"ownerId": "x"}"#).is_err());
    }
}
