//! Conversions: the sales advertisers' shops report server to server (authenticated by a
//! postback key, not a token), the advertiser's review of held ones, and the postback keys.
//!
//! A postback authenticates with the secret (`X-Postback-Key`, or `key=` in a `GET /postback`
//! URL) or, in the URL form, with an HMAC-SHA256 signature of the query (`key_id`, `ts`, `sig`).
//! The tracking service says which advertiser the credential belongs to; the conversion is then
//! recorded for that advertiser. Postbacks are rate limited per client address. Secrets never
//! reach a log line or a span: the edge logs the path, never the query or these headers.
//!
//! Refunds and chargebacks of an order come the same two ways: `POST
//! /api/v1/conversions/{orderId}/refund`, or the `GET /postback` URL with `status=refunded` (or
//! `chargeback`).

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, Method, StatusCode};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use affiliate_proto::{common, tracking as pb};
use pb::authenticate_postback_request::Credential;
use service_runtime::money::parse_major;
use service_runtime::time::timestamp;

use crate::AppState;
use crate::auth::{Principal, Role};
use crate::dto::{
    Conversion, CreatedPostbackKey, PostbackKey, PostbackKeyList, RecordConversion,
    RecordedConversion, Refund, RefundConversion, RefundedConversion, ReviewConversion,
};
use crate::edge::{
    Answer as _, ApiJson, ApiPath, ApiQuery, Caller, RequestIds, carried, uuid_field,
};
use crate::problem::Problem;

const SERVICE: &str = "tracking";

/// The header a shop's server sends its postback key in.
pub const POSTBACK_KEY: HeaderName = HeaderName::from_static("x-postback-key");

/// An advertiser authenticated by a postback credential, rate limited by client address. The
/// credential is the `X-Postback-Key` header; on `GET` also the query's `key`, or its signature
/// (`key_id`, `ts`, `sig`).
pub struct Postback(pub Caller);

impl FromRequestParts<AppState> for Postback {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        // Before anything else: a flood from one client is refused without slowing the others.
        if let Some(ip) = client_ip(parts) {
            state
                .postbacks
                .check(ip)
                .map_err(Problem::too_many_requests)?;
        }
        let credential = credential(parts)?;
        let ids = parts
            .extensions
            .get::<RequestIds>()
            .cloned()
            .unwrap_or_else(|| RequestIds {
                request_id: Uuid::new_v4().to_string(),
                correlation_id: Uuid::new_v4().to_string(),
            });
        let mut request = tonic::Request::new(pb::AuthenticatePostbackRequest {
            credential: Some(credential),
        });
        request.set_timeout(state.deadline);
        if let Ok(value) = ids.request_id.parse() {
            request.metadata_mut().insert("x-request-id", value);
        }
        let found = match state
            .clients
            .tracking
            .clone()
            .authenticate_postback(request)
            .await
        {
            Ok(found) => found.into_inner(),
            Err(status) if status.code() == tonic::Code::Unauthenticated => {
                return Err(Problem::postback_unauthenticated(
                    "the postback key is unknown or revoked, or the signature does not verify",
                ));
            }
            Err(status) => return Err(Problem::from_status(&status, SERVICE)),
        };
        let advertiser = Uuid::parse_str(&found.advertiser_id).map_err(|_| Problem::internal())?;
        tracing::Span::current().record("user_id", tracing::field::display(advertiser));
        let principal = Principal {
            id: advertiser,
            role: Role::Advertiser,
        };
        Ok(Self(Caller::authenticated(principal, ids, state.deadline)))
    }
}

fn client_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

fn missing() -> Problem {
    Problem::postback_unauthenticated(
        "missing postback key: send `X-Postback-Key`, or `key` (or a signature: `key_id`, `ts`, `sig`) in the URL",
    )
}

/// The credential a postback carries: the header, else (on `GET`) the query's key or signature.
fn credential(parts: &Parts) -> Result<Credential, Problem> {
    if let Some(value) = parts.headers.get(&POSTBACK_KEY) {
        let secret = value.to_str().map_err(|_| missing())?.trim();
        if secret.is_empty() {
            return Err(missing());
        }
        return Ok(Credential::Secret(secret.to_owned()));
    }
    if parts.method != Method::GET {
        return Err(missing());
    }
    let raw = parts.uri.query().unwrap_or_default();
    let pairs: Vec<(String, SecretString)> =
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|q| {
                q.0.into_iter()
                    .map(|(k, v)| (k, SecretString::from(v)))
                    .collect()
            })
            .map_err(|_| missing())?;
    let one = |name: &str| -> Result<Option<&SecretString>, Problem> {
        let mut found = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        match (found.next(), found.next()) {
            (Some(_), Some(_)) => Err(Problem::postback_unauthenticated(format!(
                "`{name}` appears more than once in the query"
            ))),
            (value, _) => Ok(value),
        }
    };
    if let Some(key) = one("key")? {
        return Ok(Credential::Secret(key.expose_secret().to_owned()));
    }
    one("sig")?.ok_or_else(missing)?;
    let (signed, signature) = split_signature(raw).ok_or_else(missing)?;
    let key_id = one("key_id")?
        .map(|v| v.expose_secret().to_owned())
        .ok_or_else(|| Problem::postback_unauthenticated("a signed postback names its `key_id`"))?;
    let timestamp = one("ts")?
        .and_then(|v| v.expose_secret().parse::<i64>().ok())
        .ok_or_else(|| {
            Problem::postback_unauthenticated("a signed postback carries `ts` in Unix seconds")
        })?;
    Ok(Credential::Signature(pb::PostbackSignature {
        key_id,
        timestamp,
        signature,
        signed,
    }))
}

/// The query as its signature covers it, and the signature: the raw query exactly as received
/// with its one `sig=…` pair taken out (the other pairs unchanged, in their order). `None`
/// without exactly one `sig` pair.
pub(crate) fn split_signature(raw: &str) -> Option<(String, String)> {
    let mut signature = None;
    let mut kept = Vec::new();
    for pair in raw.split('&') {
        match pair.split_once('=') {
            Some(("sig", value)) => {
                if signature.replace(value).is_some() {
                    return None;
                }
            }
            _ => kept.push(pair),
        }
    }
    signature.map(|sig| (kept.join("&"), sig.to_owned()))
}

/// Records the conversion for the authenticated advertiser: 201 for a new one, 200 for a repeat
/// of the order.
async fn record(
    state: &AppState,
    caller: &Caller,
    request: pb::RecordConversionRequest,
) -> Result<(StatusCode, Json<RecordedConversion>), tonic::Status> {
    let recorded = state
        .clients
        .tracking
        .clone()
        .record_conversion(caller.grpc(request))
        .await?
        .into_inner();
    let status = if recorded.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let conversion = recorded
        .conversion
        .map(Conversion::from)
        .ok_or_else(|| tonic::Status::internal("the answer carries no conversion"))?;
    Ok((
        status,
        Json(RecordedConversion {
            conversion,
            duplicate: recorded.duplicate,
        }),
    ))
}

/// Report a sale for a click, server to server. Authenticated by your postback key in
/// `X-Postback-Key` (no bearer token). Idempotent on the order id: a repeat answers 200 with the
/// first conversion and `duplicate: true`. A sale that cannot be attributed is refused with 422
/// and a `reason`: `UNKNOWN_CLICK`, `BOT_CLICK`, `OUTSIDE_WINDOW`, `CAMPAIGN_NOT_ACTIVE` or
/// `CREATOR_NOT_ACCEPTED`.
#[utoipa::path(post, path = "/api/v1/conversions", tag = "conversions",
    params(("X-Postback-Key" = String, Header, description = "Your postback key's secret (`pbk_…`)")),
    request_body = RecordConversion,
    responses(
        (status = 201, description = "Recorded", body = RecordedConversion),
        (status = 200, description = "The order was reported before: the first conversion", body = RecordedConversion),
        (status = 422, description = "Refused; `reason` says why", body = Problem, content_type = "application/problem+json"),
    ),
    security(("postbackKey" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Postback(caller): Postback,
    ApiJson(body): ApiJson<RecordConversion>,
) -> Result<(StatusCode, Json<RecordedConversion>), Problem> {
    let request = pb::RecordConversionRequest {
        advertiser_id: caller.id().to_string(),
        click_id: body.click_id,
        order_id: body.order_id,
        amount: Some(body.amount.into()),
        converted_at: body.converted_at.map(timestamp),
    };
    record(&state, &caller, request)
        .await
        .map_err(|status| Problem::from_status(&status, SERVICE))
}

/// Records a refund of one of the authenticated advertiser's orders: 201 for a new one, 200 for
/// a repeat of its refund id.
async fn refund_order(
    state: &AppState,
    caller: &Caller,
    request: pb::RefundConversionRequest,
) -> Result<(StatusCode, Json<RefundedConversion>), tonic::Status> {
    let refunded = state
        .clients
        .tracking
        .clone()
        .refund_conversion(caller.grpc(request))
        .await?
        .into_inner();
    let status = if refunded.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let (Some(conversion), Some(refund)) = (refunded.conversion, refunded.refund) else {
        return Err(tonic::Status::internal(
            "the answer carries no conversion or refund",
        ));
    };
    Ok((
        status,
        Json(RefundedConversion {
            conversion: Conversion::from(conversion),
            refund: Refund::from(refund),
            duplicate: refunded.duplicate,
        }),
    ))
}

/// Report a refund or chargeback of an order, full or partial, server to server. Authenticated
/// by your postback key in `X-Postback-Key` (no bearer token). Idempotent on the refund id: a
/// repeat answers 200 with the first refund and `duplicate: true`; without a refund id it is the
/// order's one full refund. More than what is left of the sale is 400 (`amount.amountMinor`
/// says how much is left); an unknown order 404; refused with 422 and a `reason`:
/// `CONVERSION_NOT_ACCEPTED` (held or declined: no purchase to refund), `ALREADY_REFUNDED`, or
/// `REFUND_ID_REUSED` (the refund id was reported with another amount). The creator's commission
/// is taken back in proportion.
#[utoipa::path(post, path = "/api/v1/conversions/{orderId}/refund", tag = "conversions",
    params(("orderId" = String, Path, description = "Your order id, as reported with the sale"),
        ("X-Postback-Key" = String, Header, description = "Your postback key's secret (`pbk_…`)")),
    request_body = RefundConversion,
    responses(
        (status = 201, description = "Recorded", body = RefundedConversion),
        (status = 200, description = "The refund was reported before: the first one", body = RefundedConversion),
        (status = 422, description = "Refused; `reason` says why", body = Problem, content_type = "application/problem+json"),
    ),
    security(("postbackKey" = [])))]
pub async fn refund(
    State(state): State<AppState>,
    Postback(caller): Postback,
    ApiPath(order_id): ApiPath<String>,
    ApiJson(body): ApiJson<RefundConversion>,
) -> Result<(StatusCode, Json<RefundedConversion>), Problem> {
    let request = pb::RefundConversionRequest {
        advertiser_id: caller.id().to_string(),
        order_id,
        refund_id: body.refund_id,
        amount: body.amount.map(common::Money::from),
        kind: body.kind,
        reason: body.reason,
    };
    refund_order(&state, &caller, request)
        .await
        .map_err(|status| Problem::from_status(&status, SERVICE))
}

/// The sale a `GET /postback` URL reports.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PostbackQuery {
    /// The click id the landing page received.
    #[serde(default)]
    pub click_id: String,
    /// Your order id: one conversion per order.
    #[serde(default)]
    pub order_id: String,
    /// In major units, e.g. `49.99`: at most as many decimals as the currency has.
    #[param(example = "49.99", pattern = "^[0-9]+(\\.[0-9]+)?$")]
    pub amount: Option<String>,
    /// ISO-4217, the campaign's currency.
    #[serde(default)]
    #[param(example = "EUR", pattern = "^[A-Z]{3}$")]
    pub currency: String,
    /// When the sale happened (RFC 3339); defaults to now.
    pub converted_at: Option<String>,
    /// Absent for a sale; `refunded` (or `chargeback`) reports a refund of the order instead:
    /// then `amount` (and `currency`) is what was given back, all that is left when absent.
    #[param(example = "refunded", pattern = "^(refunded|chargeback)$")]
    pub status: Option<String>,
    /// Refunds: your id of the refund (a repeat answers the first); absent, the order's one
    /// full refund.
    pub refund_id: Option<String>,
    /// Refunds: why, at most 500 characters (the creator sees it).
    pub reason: Option<String>,
}

/// What a `GET /postback` answers: the conversion of a sale, or the refund of an order.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum PostbackAnswer {
    Sale(RecordedConversion),
    Refund(RefundedConversion),
}

/// The service's field paths as the `GET /postback` query names them.
const QUERY_FIELDS: [(&str, &str); 7] = [
    ("clickId", "click_id"),
    ("orderId", "order_id"),
    ("amount.amountMinor", "amount"),
    ("amount.currency", "currency"),
    ("convertedAt", "converted_at"),
    ("refundId", "refund_id"),
    ("kind", "status"),
];

/// What a postback URL's `status` asks for: a sale (absent), or a refund of this kind.
fn refund_kind(status: Option<&str>) -> Result<Option<&'static str>, Problem> {
    match status {
        None | Some("") => Ok(None),
        Some("refunded") => Ok(Some("refund")),
        Some("chargeback") => Ok(Some("chargeback")),
        Some(_) => Err(Problem::invalid_field(
            "status",
            "must be `refunded` or `chargeback` (or absent, for a sale)",
        )),
    }
}

/// Report a sale by URL, as shop plugins fire it. Authenticated by `key` (your postback key's
/// secret) or by a signature instead: `key_id`, `ts` (Unix seconds, within 5 minutes) and `sig`
/// = hex(HMAC-SHA256(secret, the query string without its `sig` pair)). Answers as
/// `POST /api/v1/conversions` does. With `status=refunded` (or `chargeback`) it reports a refund
/// of `order_id` instead (`amount` and `currency` optional, `refund_id`, `reason`), and answers
/// as `POST /api/v1/conversions/{orderId}/refund` does.
#[utoipa::path(get, path = "/postback", tag = "conversions",
    params(PostbackQuery,
        ("key" = Option<String>, Query, description = "Your postback key's secret (`pbk_…`), unless the query is signed"),
        ("key_id" = Option<String>, Query, description = "Signed form: the postback key's id"),
        ("ts" = Option<i64>, Query, description = "Signed form: Unix seconds, within 5 minutes of now"),
        ("sig" = Option<String>, Query, description = "Signed form: hex HMAC-SHA256 of the query without `sig`")),
    responses(
        (status = 201, description = "Recorded: the conversion, or the refund", body = PostbackAnswer),
        (status = 200, description = "The order (or the refund) was reported before: the first one", body = PostbackAnswer),
        (status = 422, description = "Refused; `reason` says why", body = Problem, content_type = "application/problem+json"),
    ),
    security(("postbackKey" = []), ("postbackSignature" = [])))]
pub async fn by_url(
    State(state): State<AppState>,
    Postback(caller): Postback,
    ApiQuery(query): ApiQuery<PostbackQuery>,
) -> Result<(StatusCode, Json<PostbackAnswer>), Problem> {
    if let Some(kind) = refund_kind(query.status.as_deref())? {
        let (status, Json(refunded)) = refund_by_url(&state, &caller, query, kind).await?;
        return Ok((status, Json(PostbackAnswer::Refund(refunded))));
    }
    let amount = query
        .amount
        .as_deref()
        .ok_or_else(|| Problem::invalid_field("amount", "required"))?;
    let amount_minor =
        parse_major(amount, &query.currency).map_err(|e| Problem::invalid_field("amount", e))?;
    let converted_at = query
        .converted_at
        .as_deref()
        .map(|at| {
            DateTime::parse_from_rfc3339(at)
                .map(|at| timestamp(at.with_timezone(&Utc)))
                .map_err(|_| {
                    Problem::invalid_field("converted_at", "must be an RFC 3339 timestamp")
                })
        })
        .transpose()?;
    let request = pb::RecordConversionRequest {
        advertiser_id: caller.id().to_string(),
        click_id: query.click_id,
        order_id: query.order_id,
        amount: Some(common::Money {
            amount_minor,
            currency: query.currency,
        }),
        converted_at,
    };
    let (status, Json(recorded)) = record(&state, &caller, request)
        .await
        .map_err(|status| Problem::from_status(&status, SERVICE).renaming_fields(&QUERY_FIELDS))?;
    Ok((status, Json(PostbackAnswer::Sale(recorded))))
}

/// A postback URL's refund of `order_id`: `amount` in major units of `currency` (both, or
/// neither: all that is left).
async fn refund_by_url(
    state: &AppState,
    caller: &Caller,
    query: PostbackQuery,
    kind: &str,
) -> Result<(StatusCode, Json<RefundedConversion>), Problem> {
    let amount = match query.amount.as_deref() {
        None => None,
        Some(_) if query.currency.is_empty() => {
            return Err(Problem::invalid_field(
                "currency",
                "is required with `amount`",
            ));
        }
        Some(amount) => Some(common::Money {
            amount_minor: parse_major(amount, &query.currency)
                .map_err(|e| Problem::invalid_field("amount", e))?,
            currency: query.currency,
        }),
    };
    let request = pb::RefundConversionRequest {
        advertiser_id: caller.id().to_string(),
        order_id: query.order_id,
        refund_id: query.refund_id.unwrap_or_default(),
        amount,
        kind: kind.to_owned(),
        reason: query.reason.unwrap_or_default(),
    };
    refund_order(state, caller, request)
        .await
        .map_err(|status| Problem::from_status(&status, SERVICE).renaming_fields(&QUERY_FIELDS))
}

/// Reads a conversion the caller may see: the owning advertiser's, the creator's it credits,
/// any for admins; another's is as if it did not exist.
async fn visible(
    state: &AppState,
    caller: &Caller,
    conversion_id: Uuid,
) -> Result<pb::Conversion, Problem> {
    let found = state
        .clients
        .tracking
        .clone()
        .get_conversion(caller.grpc(pb::GetConversionRequest {
            conversion_id: conversion_id.to_string(),
        }))
        .await
        .or_problem(SERVICE)?;
    let conversion = found.conversion.ok_or_else(Problem::internal)?;
    let me = caller.id().to_string();
    let allowed = match caller.role() {
        Role::Admin => true,
        Role::Advertiser => conversion.advertiser_id == me,
        Role::Creator => conversion.creator_id == me,
    };
    if !allowed {
        return Err(Problem::not_found(format!(
            "conversion {conversion_id} not found"
        )));
    }
    Ok(conversion)
}

/// A conversion: for the advertiser who reported it or the creator it credits.
#[utoipa::path(get, path = "/api/v1/conversions/{conversionId}", tag = "conversions",
    params(("conversionId" = Uuid, Path)),
    responses((status = 200, description = "The conversion", body = Conversion)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(conversion_id): ApiPath<String>,
) -> Result<Json<Conversion>, Problem> {
    let conversion_id = uuid_field("conversionId", &conversion_id)?;
    let conversion = visible(&state, &caller, conversion_id).await?;
    Ok(Json(Conversion::from(conversion)))
}

/// Approve (then a purchase and its commission) or decline one of your held conversions.
#[utoipa::path(post, path = "/api/v1/conversions/{conversionId}/review", tag = "conversions",
    params(("conversionId" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the first result")),
    request_body = ReviewConversion,
    responses((status = 200, description = "Reviewed", body = Conversion)),
    security(("bearer" = [])))]
pub async fn review(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(conversion_id): ApiPath<String>,
    ApiJson(body): ApiJson<ReviewConversion>,
) -> Result<Json<Conversion>, Problem> {
    caller.require(&[Role::Advertiser])?;
    let conversion_id = uuid_field("conversionId", &conversion_id)?;
    let advertiser_id = if caller.is_admin() {
        visible(&state, &caller, conversion_id).await?.advertiser_id
    } else {
        caller.id().to_string()
    };
    let reviewed = state
        .clients
        .tracking
        .clone()
        .review_conversion(caller.grpc(pb::ReviewConversionRequest {
            conversion_id: conversion_id.to_string(),
            advertiser_id,
            approve: body.approve,
            reason: body.reason,
        }))
        .await
        .or_problem(SERVICE)?;
    carried::<Conversion, _>(reviewed.conversion).map(Json)
}

/// The advertiser named in the path, if the caller may act for them.
fn advertiser(caller: &Caller, advertiser_id: &str) -> Result<Uuid, Problem> {
    caller.require(&[Role::Advertiser])?;
    let advertiser_id = uuid_field("advertiserId", advertiser_id)?;
    caller.require_self(advertiser_id)?;
    Ok(advertiser_id)
}

/// Create a postback key (at most two unrevoked at once, so that one can be rotated without
/// downtime). The secret is in this answer only.
#[utoipa::path(post, path = "/api/v1/advertisers/{advertiserId}/postback-keys", tag = "conversions",
    params(("advertiserId" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the first result")),
    responses((status = 201, description = "Created; the secret is shown once", body = CreatedPostbackKey)),
    security(("bearer" = [])))]
pub async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(advertiser_id): ApiPath<String>,
) -> Result<(StatusCode, Json<CreatedPostbackKey>), Problem> {
    let advertiser_id = advertiser(&caller, &advertiser_id)?;
    let created = state
        .clients
        .tracking
        .clone()
        .create_postback_key(caller.grpc(pb::CreatePostbackKeyRequest {
            advertiser_id: advertiser_id.to_string(),
        }))
        .await
        .or_problem(SERVICE)?;
    let key: PostbackKey = carried(created.key)?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedPostbackKey {
            key,
            secret: created.secret,
        }),
    ))
}

/// Your postback keys, revoked ones included (never their secrets).
#[utoipa::path(get, path = "/api/v1/advertisers/{advertiserId}/postback-keys", tag = "conversions",
    params(("advertiserId" = Uuid, Path)),
    responses((status = 200, description = "The keys", body = PostbackKeyList)),
    security(("bearer" = [])))]
pub async fn keys(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(advertiser_id): ApiPath<String>,
) -> Result<Json<PostbackKeyList>, Problem> {
    let advertiser_id = advertiser(&caller, &advertiser_id)?;
    let listed = state
        .clients
        .tracking
        .clone()
        .list_postback_keys(caller.grpc(pb::ListPostbackKeysRequest {
            advertiser_id: advertiser_id.to_string(),
        }))
        .await
        .or_problem(SERVICE)?;
    Ok(Json(PostbackKeyList {
        keys: listed.keys.into_iter().map(PostbackKey::from).collect(),
    }))
}

/// Revoke one of your postback keys for good: it authenticates nothing from now on.
#[utoipa::path(delete, path = "/api/v1/advertisers/{advertiserId}/postback-keys/{keyId}", tag = "conversions",
    params(("advertiserId" = Uuid, Path), ("keyId" = Uuid, Path)),
    responses((status = 200, description = "Revoked", body = PostbackKey)),
    security(("bearer" = [])))]
pub async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((advertiser_id, key_id)): ApiPath<(String, String)>,
) -> Result<Json<PostbackKey>, Problem> {
    let advertiser_id = advertiser(&caller, &advertiser_id)?;
    let key_id = uuid_field("keyId", &key_id)?;
    let revoked = state
        .clients
        .tracking
        .clone()
        .revoke_postback_key(caller.grpc(pb::RevokePostbackKeyRequest {
            advertiser_id: advertiser_id.to_string(),
            key_id: key_id.to_string(),
        }))
        .await
        .or_problem(SERVICE)?;
    carried::<PostbackKey, _>(revoked.key).map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postback_s_status_asks_for_a_sale_or_a_refund_of_a_kind() {
        assert_eq!(refund_kind(None).unwrap(), None);
        assert_eq!(refund_kind(Some("")).unwrap(), None);
        assert_eq!(refund_kind(Some("refunded")).unwrap(), Some("refund"));
        assert_eq!(refund_kind(Some("chargeback")).unwrap(), Some("chargeback"));
        for status in ["approved", "Refunded", "refund", "cancelled"] {
            let problem = refund_kind(Some(status)).unwrap_err();
            assert_eq!(problem.status, 400, "{status}");
        }
    }

    #[test]
    fn the_signed_query_is_the_raw_query_without_its_sig_pair() {
        let raw = "click_id=abc&amount=49.99&sig=00ff&key_id=k1&ts=1700000000&note=a%20b";
        assert_eq!(
            split_signature(raw),
            Some((
                "click_id=abc&amount=49.99&key_id=k1&ts=1700000000&note=a%20b".to_owned(),
                "00ff".to_owned()
            ))
        );
        // first, last, and the encoding kept exactly as sent
        assert_eq!(
            split_signature("sig=aa&x=%2F+y"),
            Some(("x=%2F+y".to_owned(), "aa".to_owned()))
        );
        assert_eq!(
            split_signature("x=1&sig="),
            Some(("x=1".to_owned(), String::new()))
        );
        // a parameter merely ending or starting in `sig` is not the signature
        assert_eq!(
            split_signature("xsig=1&sigma=2&sig=ab"),
            Some(("xsig=1&sigma=2".to_owned(), "ab".to_owned()))
        );
        assert_eq!(split_signature("x=1&y=2"), None);
        assert_eq!(split_signature("sig=aa&x=1&sig=bb"), None, "two signatures");
        assert_eq!(split_signature(""), None);
    }

    fn parts(method: Method, uri: &str, header: Option<&str>) -> Parts {
        let mut request = axum::http::Request::builder().method(method).uri(uri);
        if let Some(value) = header {
            request = request.header(POSTBACK_KEY, value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn a_postback_s_credential_is_the_header_the_key_or_the_signature() {
        let secret = |c: Credential| match c {
            Credential::Secret(s) => s,
            Credential::Signature(_) => panic!("a secret"),
        };
        let header = parts(Method::POST, "/api/v1/conversions?key=pbk_q", Some("pbk_h"));
        assert_eq!(secret(credential(&header).unwrap()), "pbk_h");
        let query = parts(Method::GET, "/postback?click_id=c&key=pbk_%2Fq", None);
        assert_eq!(secret(credential(&query).unwrap()), "pbk_/q");
        // the URL forms are for GET only
        let post = parts(Method::POST, "/api/v1/conversions?key=pbk_q", None);
        assert_eq!(credential(&post).unwrap_err().status, 401);
        let signed = parts(
            Method::GET,
            "/postback?click_id=c&amount=1.00&key_id=k-1&ts=1700000000&sig=beef",
            None,
        );
        match credential(&signed).unwrap() {
            Credential::Signature(s) => assert_eq!(
                s,
                pb::PostbackSignature {
                    key_id: "k-1".into(),
                    timestamp: 1_700_000_000,
                    signature: "beef".into(),
                    signed: "click_id=c&amount=1.00&key_id=k-1&ts=1700000000".into(),
                }
            ),
            Credential::Secret(_) => panic!("a signature"),
        }
        for refused in [
            "/postback?click_id=c",
            "/postback?click_id=c&key_id=k&sig=beef",
            "/postback?click_id=c&key_id=k&ts=soon&sig=beef",
            "/postback?click_id=c&ts=1&sig=beef",
            "/postback?key=a&key=b",
        ] {
            let problem = credential(&parts(Method::GET, refused, None)).unwrap_err();
            assert_eq!(problem.status, 401, "{refused}");
        }
    }
}
