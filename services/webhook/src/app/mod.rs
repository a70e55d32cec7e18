//! The webhook use cases: the endpoints API (each call checks the owner: another owner's endpoint
//! is NOT_FOUND), the delivery log and resends; the feed (`feed`) and the dispatcher
//! (`dispatch`).

pub mod dispatch;
pub mod feed;
pub mod secrets;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use affiliate_proto::webhook::{self as pb, webhook_event};
use service_runtime::context::CommandContext;
use service_runtime::errors::Error;
use service_runtime::outbox::{self, Subject};
use service_runtime::paging::{next_page_token, next_page_token_by};
use service_runtime::time::timestamp;
use service_runtime::validation::{
    FieldViolation, Violations, page_size, parse_http_url, parse_id, text,
};
use sqlx::{PgConnection, PgPool};

use crate::Settings;
use crate::adapters::deliveries::Disabled;
use crate::adapters::endpoints::{self as repo, AttemptRow, DeliveryRow, EndpointRow};
use crate::adapters::repository;
use crate::adapters::sender::Sender;
use crate::domain::{event, signature};

/// Endpoints one owner may register.
pub const MAX_ENDPOINTS_PER_OWNER: i64 = 20;
/// Event types one endpoint's filter may name.
const MAX_EVENT_TYPES: usize = 64;
const MAX_DESCRIPTION: usize = 500;
/// The highest rate limit an endpoint may ask for, in messages per second.
pub const MAX_RATE_LIMIT: u32 = 10_000;
const DEFAULT_PAGE: i32 = 20;
const MAX_PAGE: i32 = 100;

/// The webhook use cases over one database.
#[derive(Debug, Clone)]
pub struct Webhooks {
    pool: PgPool,
    settings: Arc<Settings>,
    /// Checks destinations (the dispatcher's policy) when registered.
    checker: Sender,
}

impl Webhooks {
    pub fn new(pool: PgPool, settings: Arc<Settings>, checker: Sender) -> Self {
        Self {
            pool,
            settings,
            checker,
        }
    }

    /// A URL's form, then (resolved now) every address of its host against the policy.
    async fn check_url(&self, field: &str, value: &str) -> Result<String, FieldViolation> {
        let url = parse_http_url(field, value.trim())?;
        self.checker
            .check_resolved(&url)
            .await
            .map_err(|e| FieldViolation::new(field, e))?;
        Ok(url)
    }

    pub async fn create_endpoint(
        &self,
        request: pb::CreateEndpointRequest,
    ) -> Result<pb::CreateEndpointResponse, Error> {
        let mut v = Violations::new();
        let owner = v.check(parse_id("owner_id", &request.owner_id));
        let description = v.check(text(
            "description",
            &request.description,
            MAX_DESCRIPTION,
            false,
        ));
        let event_types = v.check(event_types("event_types", request.event_types));
        let rate_limit = v.check(rate_limit(
            "rate_limit_per_second",
            request.rate_limit_per_second,
        ));
        let url = v.check(self.check_url("url", &request.url).await);
        let (owner, description, event_types, url, rate_limit) = v
            .finish(
                owner
                    .zip(description)
                    .zip(event_types)
                    .zip(url)
                    .zip(rate_limit),
            )
            .map(|((((o, d), e), u), r)| (o, d, e, u, r))?;
        let mut tx = self.pool.begin().await?;
        // One owner's registrations one at a time, so the count holds.
        sqlx::query("select pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(owner.to_string())
            .execute(&mut *tx)
            .await?;
        if repo::count_owned(&mut tx, owner).await? >= MAX_ENDPOINTS_PER_OWNER {
            return Err(Error::Precondition(format!(
                "an owner may register at most {MAX_ENDPOINTS_PER_OWNER} endpoints; delete one first"
            )));
        }
        let now = Utc::now();
        let row = EndpointRow {
            id: Uuid::now_v7(),
            owner_id: owner,
            url,
            description,
            event_types,
            enabled: true,
            disabled_reason: String::new(),
            consecutive_failures: 0,
            rate_limit,
            created_at: now,
            updated_at: now,
            previous_secret_expires_at: None,
        };
        let secret = signature::new_secret();
        repo::insert(&mut tx, &row, &self.settings.keys.seal(row.id, &secret)).await?;
        tx.commit().await?;
        tracing::info!(endpoint = %row.id, owner = %owner, "endpoint registered");
        Ok(pb::CreateEndpointResponse {
            endpoint: Some(endpoint_pb(row)),
            secret,
        })
    }

    async fn owned(
        &self,
        conn: &mut PgConnection,
        owner_id: &str,
        endpoint_id: &str,
    ) -> Result<EndpointRow, Error> {
        let mut v = Violations::new();
        let owner = v.check(parse_id("owner_id", owner_id));
        let id = v.check(parse_id("endpoint_id", endpoint_id));
        let (owner, id) = v.finish(owner.zip(id))?;
        repo::find(conn, owner, id)
            .await?
            .ok_or_else(|| Error::not_found("endpoint", id))
    }

    pub async fn get_endpoint(
        &self,
        request: pb::GetEndpointRequest,
    ) -> Result<pb::GetEndpointResponse, Error> {
        let mut conn = self.pool.acquire().await?;
        let row = self
            .owned(&mut conn, &request.owner_id, &request.endpoint_id)
            .await?;
        Ok(pb::GetEndpointResponse {
            endpoint: Some(endpoint_pb(row)),
        })
    }

    pub async fn list_endpoints(
        &self,
        request: pb::ListEndpointsRequest,
    ) -> Result<pb::ListEndpointsResponse, Error> {
        let mut v = Violations::new();
        let owner = v.check(parse_id("owner_id", &request.owner_id));
        let limit = v.check(page_size(
            "page_size",
            request.page_size,
            DEFAULT_PAGE,
            MAX_PAGE,
        ));
        let after = v.check(token_id("page_token", &request.page_token));
        let (owner, limit, after) = v
            .finish(owner.zip(limit).zip(after))
            .map(|((o, l), a)| (o, l, a))?;
        let mut conn = self.pool.acquire().await?;
        let mut rows = repo::list(&mut conn, owner, after, limit + 1).await?;
        let next_page_token = next_page_token(&mut rows, limit, |r| r.id);
        Ok(pb::ListEndpointsResponse {
            endpoints: rows.into_iter().map(endpoint_pb).collect(),
            next_page_token,
        })
    }

    pub async fn update_endpoint(
        &self,
        request: pb::UpdateEndpointRequest,
    ) -> Result<pb::UpdateEndpointResponse, Error> {
        let mut v = Violations::new();
        let url = match &request.url {
            Some(u) => v.check(self.check_url("url", u).await).map(Some),
            None => Some(None),
        };
        let description = match &request.description {
            Some(d) => v
                .check(text("description", d, MAX_DESCRIPTION, false))
                .map(Some),
            None => Some(None),
        };
        let types = match request.event_types {
            Some(t) => v
                .check(event_types("event_types.values", t.values))
                .map(Some),
            None => Some(None),
        };
        let rate = match request.rate_limit_per_second {
            Some(r) => v.check(rate_limit("rate_limit_per_second", r)).map(Some),
            None => Some(None),
        };
        let (url, description, types, rate) = v
            .finish(url.zip(description).zip(types).zip(rate))
            .map(|(((u, d), t), r)| (u, d, t, r))?;
        let mut tx = self.pool.begin().await?;
        let mut row = self
            .owned(&mut tx, &request.owner_id, &request.endpoint_id)
            .await?;
        sqlx::query("select 1 from endpoints where id = $1 for update")
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
        if let Some(url) = url {
            row.url = url;
        }
        if let Some(description) = description {
            row.description = description;
        }
        if let Some(types) = types {
            row.event_types = types;
        }
        if let Some(enabled) = request.enabled {
            row.enabled = enabled;
        }
        if let Some(rate) = rate {
            row.rate_limit = rate;
        }
        repo::update(&mut tx, &row).await?;
        let row = repo::find(&mut tx, row.owner_id, row.id)
            .await?
            .ok_or_else(|| Error::not_found("endpoint", row.id))?;
        repository::wake(&mut tx).await?;
        tx.commit().await?;
        Ok(pb::UpdateEndpointResponse {
            endpoint: Some(endpoint_pb(row)),
        })
    }

    pub async fn delete_endpoint(
        &self,
        request: pb::DeleteEndpointRequest,
    ) -> Result<pb::DeleteEndpointResponse, Error> {
        let mut v = Violations::new();
        let owner = v.check(parse_id("owner_id", &request.owner_id));
        let id = v.check(parse_id("endpoint_id", &request.endpoint_id));
        let (owner, id) = v.finish(owner.zip(id))?;
        let mut conn = self.pool.acquire().await?;
        if !repo::delete(&mut conn, owner, id).await? {
            return Err(Error::not_found("endpoint", id));
        }
        tracing::info!(endpoint = %id, owner = %owner, "endpoint deleted");
        Ok(pb::DeleteEndpointResponse {})
    }

    pub async fn rotate_secret(
        &self,
        request: pb::RotateSecretRequest,
    ) -> Result<pb::RotateSecretResponse, Error> {
        let mut tx = self.pool.begin().await?;
        let row = self
            .owned(&mut tx, &request.owner_id, &request.endpoint_id)
            .await?;
        sqlx::query("select 1 from endpoints where id = $1 for update")
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
        let secret = signature::new_secret();
        repo::rotate(
            &mut tx,
            row.id,
            &self.settings.keys.seal(row.id, &secret),
            self.settings.secret_overlap.as_secs_f64(),
        )
        .await?;
        let row = repo::find(&mut tx, row.owner_id, row.id)
            .await?
            .ok_or_else(|| Error::not_found("endpoint", row.id))?;
        tx.commit().await?;
        tracing::info!(endpoint = %row.id, "endpoint secret rotated");
        Ok(pb::RotateSecretResponse {
            endpoint: Some(endpoint_pb(row)),
            secret,
        })
    }

    pub async fn list_deliveries(
        &self,
        request: pb::ListDeliveriesRequest,
    ) -> Result<pb::ListDeliveriesResponse, Error> {
        let mut v = Violations::new();
        let limit = v.check(page_size(
            "page_size",
            request.page_size,
            DEFAULT_PAGE,
            MAX_PAGE,
        ));
        let before = v.check(token_seq("page_token", &request.page_token));
        let status = v.check(match pb::DeliveryStatus::try_from(request.status) {
            Ok(pb::DeliveryStatus::Unspecified) => Ok(None),
            Ok(pb::DeliveryStatus::Pending) => Ok(Some("pending")),
            Ok(pb::DeliveryStatus::Succeeded) => Ok(Some("succeeded")),
            Ok(pb::DeliveryStatus::Failed) => Ok(Some("failed")),
            Err(_) => Err(FieldViolation::new("status", "is not a delivery status")),
        });
        let (limit, before, status) = v
            .finish(limit.zip(before).zip(status))
            .map(|((l, b), s)| (l, b, s))?;
        let mut conn = self.pool.acquire().await?;
        let endpoint = self
            .owned(&mut conn, &request.owner_id, &request.endpoint_id)
            .await?;
        let mut rows = repo::deliveries(&mut conn, endpoint.id, status, before, limit + 1).await?;
        let next_page_token = next_page_token_by(&mut rows, limit, |r| r.seq.to_string());
        Ok(pb::ListDeliveriesResponse {
            deliveries: rows.into_iter().map(delivery_pb).collect(),
            next_page_token,
        })
    }

    pub async fn list_attempts(
        &self,
        request: pb::ListAttemptsRequest,
    ) -> Result<pb::ListAttemptsResponse, Error> {
        let mut v = Violations::new();
        let limit = v.check(page_size(
            "page_size",
            request.page_size,
            DEFAULT_PAGE,
            MAX_PAGE,
        ));
        let before = v.check(token_id("page_token", &request.page_token));
        let message = v.check(text("message_id", &request.message_id, 100, false));
        let (limit, before, message) = v
            .finish(limit.zip(before).zip(message))
            .map(|((l, b), m)| (l, b, m))?;
        let mut conn = self.pool.acquire().await?;
        let endpoint = self
            .owned(&mut conn, &request.owner_id, &request.endpoint_id)
            .await?;
        let message = (!message.is_empty()).then_some(message);
        let mut rows = repo::attempts(
            &mut conn,
            endpoint.id,
            message.as_deref(),
            before,
            limit + 1,
        )
        .await?;
        let next_page_token = next_page_token(&mut rows, limit, |r| r.id);
        Ok(pb::ListAttemptsResponse {
            attempts: rows.into_iter().map(attempt_pb).collect(),
            next_page_token,
        })
    }

    pub async fn resend_message(
        &self,
        request: pb::ResendMessageRequest,
    ) -> Result<pb::ResendMessageResponse, Error> {
        let message = text("message_id", &request.message_id, 100, true)
            .map_err(|v| Error::Invalid(vec![v]))?;
        let mut tx = self.pool.begin().await?;
        let endpoint = self
            .owned(&mut tx, &request.owner_id, &request.endpoint_id)
            .await?;
        if !repo::was_sent(&mut tx, endpoint.id, &message).await? {
            return Err(Error::not_found("message", message));
        }
        let seq = repo::insert_unlaned(&mut tx, endpoint.id, &message).await?;
        let row = repo::delivery(&mut tx, seq).await?;
        repository::wake(&mut tx).await?;
        tx.commit().await?;
        Ok(pb::ResendMessageResponse {
            delivery: Some(delivery_pb(row)),
        })
    }

    pub async fn recover_endpoint(
        &self,
        request: pb::RecoverEndpointRequest,
    ) -> Result<pb::RecoverEndpointResponse, Error> {
        let since = request
            .since
            .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
            .ok_or_else(|| Error::Invalid(vec![FieldViolation::new("since", "is required")]))?;
        let mut tx = self.pool.begin().await?;
        let endpoint = self
            .owned(&mut tx, &request.owner_id, &request.endpoint_id)
            .await?;
        let recovered = repo::recover(&mut tx, endpoint.id, since).await?;
        repository::wake(&mut tx).await?;
        tx.commit().await?;
        Ok(pb::RecoverEndpointResponse {
            recovered: i64::try_from(recovered).unwrap_or(i64::MAX),
        })
    }

    pub async fn send_test_event(
        &self,
        request: pb::SendTestEventRequest,
    ) -> Result<pb::SendTestEventResponse, Error> {
        let mut tx = self.pool.begin().await?;
        let endpoint = self
            .owned(&mut tx, &request.owner_id, &request.endpoint_id)
            .await?;
        let id = format!("msg_{}", Uuid::now_v7().simple());
        let data = serde_json::json!({
            "endpointId": endpoint.id.to_string(),
            "message": "a test event from the affiliate platform",
        });
        let payload = event::body(event::TEST_EVENT, Utc::now(), &data);
        repo::insert_message(&mut tx, &id, event::TEST_EVENT, &payload).await?;
        let seq = repo::insert_unlaned(&mut tx, endpoint.id, &id).await?;
        let row = repo::delivery(&mut tx, seq).await?;
        repository::wake(&mut tx).await?;
        tx.commit().await?;
        Ok(pb::SendTestEventResponse {
            delivery: Some(delivery_pb(row)),
        })
    }
}

/// An endpoint's rate limit: 0 (none) to [`MAX_RATE_LIMIT`] messages per second.
fn rate_limit(field: &str, value: u32) -> Result<i32, FieldViolation> {
    if value > MAX_RATE_LIMIT {
        return Err(FieldViolation::new(
            field,
            format!("must be 0 (no limit) to {MAX_RATE_LIMIT} messages per second"),
        ));
    }
    Ok(i32::try_from(value).unwrap_or(0))
}

/// An endpoint's filter: known types, no repeats, at most [`MAX_EVENT_TYPES`].
fn event_types(field: &str, types: Vec<String>) -> Result<Vec<String>, FieldViolation> {
    if types.len() > MAX_EVENT_TYPES {
        return Err(FieldViolation::new(
            field,
            format!("must name at most {MAX_EVENT_TYPES} event types"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, t) in types.iter().enumerate() {
        if !event::delivered(t) || t == event::TEST_EVENT {
            return Err(FieldViolation::new(
                format!("{field}[{i}]"),
                format!("`{t}` is not an event type partners receive"),
            ));
        }
        if !seen.insert(t) {
            return Err(FieldViolation::new(
                format!("{field}[{i}]"),
                "is named twice",
            ));
        }
    }
    Ok(types)
}

fn token_id(field: &str, token: &str) -> Result<Option<Uuid>, FieldViolation> {
    if token.is_empty() {
        return Ok(None);
    }
    Uuid::parse_str(token)
        .map(Some)
        .map_err(|_| FieldViolation::new(field, "is not a page token of this list"))
}

fn token_seq(field: &str, token: &str) -> Result<Option<i64>, FieldViolation> {
    if token.is_empty() {
        return Ok(None);
    }
    token
        .parse::<i64>()
        .map(Some)
        .map_err(|_| FieldViolation::new(field, "is not a page token of this list"))
}

fn endpoint_pb(row: EndpointRow) -> pb::Endpoint {
    pb::Endpoint {
        id: row.id.to_string(),
        owner_id: row.owner_id.to_string(),
        url: row.url,
        description: row.description,
        event_types: row.event_types,
        enabled: row.enabled,
        disabled_reason: row.disabled_reason,
        consecutive_failures: row.consecutive_failures,
        rate_limit_per_second: u32::try_from(row.rate_limit).unwrap_or(0),
        created_at: Some(timestamp(row.created_at)),
        updated_at: Some(timestamp(row.updated_at)),
        previous_secret_expires_at: row.previous_secret_expires_at.map(timestamp),
    }
}

fn delivery_pb(row: DeliveryRow) -> pb::Delivery {
    let status = match row.status.as_str() {
        "succeeded" => pb::DeliveryStatus::Succeeded,
        "failed" => pb::DeliveryStatus::Failed,
        _ => pb::DeliveryStatus::Pending,
    };
    pb::Delivery {
        message_id: row.message_id,
        endpoint_id: row.endpoint_id.to_string(),
        event_type: row.event_type,
        aggregate: row.aggregate,
        status: status as i32,
        attempts: row.attempts,
        next_attempt_at: (status == pb::DeliveryStatus::Pending)
            .then(|| timestamp(row.next_attempt_at)),
        created_at: Some(timestamp(row.created_at)),
        payload: row.payload,
    }
}

fn attempt_pb(row: AttemptRow) -> pb::Attempt {
    pb::Attempt {
        id: row.id.to_string(),
        message_id: row.message_id,
        endpoint_id: row.endpoint_id.to_string(),
        attempted_at: Some(timestamp(row.attempted_at)),
        status_code: row.status_code,
        latency_ms: row.latency_ms,
        response: row.response,
        error: row.error,
        success: row.success,
    }
}

/// Tells the owners of endpoints the dispatcher disabled: one `webhook.endpoint_disabled.v1`
/// each, in the recording transaction (the notification service follows `webhook-events`).
pub async fn notify_disabled(conn: &mut PgConnection, disabled: &[Disabled]) -> sqlx::Result<()> {
    if disabled.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = disabled.iter().map(|d| d.endpoint_id).collect();
    let rows = repo::find_many(conn, &ids).await?;
    let now = Utc::now();
    let ctx = CommandContext::new();
    let messages: Vec<_> = rows
        .into_iter()
        .map(|row| {
            let reason = row.disabled_reason.clone();
            let id = row.id;
            outbox::event::<pb::WebhookEvent>(
                &ctx,
                Subject::new("endpoint", id, 0),
                now,
                webhook_event::Event::EndpointDisabled(pb::EndpointDisabled {
                    endpoint: Some(endpoint_pb(row)),
                    reason,
                }),
            )
        })
        .collect();
    outbox::append(conn, &messages)
        .await
        .map_err(|e| sqlx::Error::Protocol(format!("{e:#}")))?;
    Ok(())
}

/// Deletes what is older than the retention.
pub async fn expire(pool: &PgPool, keep: std::time::Duration) -> sqlx::Result<u64> {
    let mut conn = pool.acquire().await?;
    repo::expire(&mut conn, keep.as_secs_f64()).await
}
