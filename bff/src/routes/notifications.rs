//! A user's notifications: list, mark read, and a live Server-Sent-Events stream that resumes
//! after `Last-Event-ID` without loss.

use std::convert::Infallible;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use affiliate_proto::notification as pb;

use super::Paging;
use crate::AppState;
use crate::dto::{Notification, NotificationPage};
use crate::edge::{Answer as _, ApiPath, ApiQuery, Caller, carried, uuid_field};
use crate::problem::Problem;

const SERVICE: &str = "notification";

/// Filters of the notification list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct NotificationFilter {
    /// Only unread notifications.
    pub unread_only: Option<bool>,
    /// Admins only: another user's notifications.
    pub user_id: Option<Uuid>,
}

fn user(caller: &Caller, requested: Option<Uuid>) -> Result<Uuid, Problem> {
    match requested {
        Some(id) => {
            caller.require_self(id)?;
            Ok(id)
        }
        None => Ok(caller.id()),
    }
}

/// List your notifications, newest first.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "notifications",
    params(Paging, NotificationFilter),
    responses((status = 200, description = "One page", body = NotificationPage)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(paging): ApiQuery<Paging>,
    ApiQuery(filter): ApiQuery<NotificationFilter>,
) -> Result<Json<NotificationPage>, Problem> {
    let user_id = user(&caller, filter.user_id)?;
    let page = state
        .clients
        .notification
        .clone()
        .list_notifications(caller.grpc(pb::ListNotificationsRequest {
            user_id: user_id.to_string(),
            page_size: paging.size(),
            page_token: paging.token(),
            unread_only: filter.unread_only.unwrap_or(false),
        }))
        .await
        .or_problem(SERVICE)?;
    Ok(Json(NotificationPage {
        notifications: page
            .notifications
            .into_iter()
            .map(Notification::from)
            .collect(),
        next_page_token: page.next_page_token,
        unread_count: page.unread_count.to_string(),
    }))
}

/// Mark one of your notifications read (again is harmless).
#[utoipa::path(post, path = "/api/v1/notifications/{notificationId}/read", tag = "notifications",
    params(("notificationId" = Uuid, Path)),
    responses((status = 200, description = "Marked read", body = Notification)),
    security(("bearer" = [])))]
pub async fn mark_read(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(notification_id): ApiPath<String>,
) -> Result<Json<Notification>, Problem> {
    let notification_id = uuid_field("notificationId", &notification_id)?;
    let marked = state
        .clients
        .notification
        .clone()
        .mark_read(caller.grpc(pb::MarkReadRequest {
            user_id: caller.id().to_string(),
            notification_id: notification_id.to_string(),
        }))
        .await
        .or_problem(SERVICE)?;
    carried::<Notification, _>(marked.notification).map(Json)
}

/// Where a stream starts.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Resume after this sequence (what `Last-Event-ID` says, for clients that cannot set it).
    #[param(minimum = 0)]
    pub after: Option<i64>,
}

/// Your notifications, live, as Server-Sent Events (`event: notification`, `id:` the sequence,
/// `data:` a Notification). First every one after `Last-Event-ID` (or `after`), then each new one.
#[utoipa::path(get, path = "/api/v1/notifications/stream", tag = "notifications",
    params(StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The last sequence received; the stream resumes after it")),
    responses((status = 200, description = "An event stream", content_type = "text/event-stream", body = String)),
    security(("bearer" = [])))]
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    let after = match headers.get("last-event-id") {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|v| *v >= 0)
            .ok_or_else(|| {
                Problem::invalid_field("Last-Event-ID", "must be a sequence number (0 or more)")
            })?,
        None => query.after.unwrap_or(0),
    };
    if after < 0 {
        return Err(Problem::invalid_field("after", "must be 0 or more"));
    }
    let upstream = state
        .clients
        .notification
        .clone()
        .subscribe(caller.grpc_streaming(pb::SubscribeRequest {
            user_id: caller.id().to_string(),
            after_sequence: after,
        }))
        .await
        .or_problem(SERVICE)?;
    let events = futures::stream::unfold(Some(upstream), |upstream| async move {
        let mut upstream = upstream?;
        match upstream.message().await {
            Ok(Some(message)) => {
                let notification = message.notification.map(Notification::from)?;
                let event = Event::default()
                    .event("notification")
                    .id(notification.sequence.clone())
                    .json_data(&notification)
                    .unwrap_or_else(|_| Event::default().comment("unencodable notification"));
                Some((Ok(event), Some(upstream)))
            }
            Ok(None) => None,
            Err(status) => {
                // Tell the client why the stream ends; it reconnects with Last-Event-ID.
                let problem = Problem::from_status(&status, SERVICE);
                let event = Event::default()
                    .event("error")
                    .json_data(&problem)
                    .unwrap_or_else(|_| Event::default().event("error"));
                Some((Ok(event), None))
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(state.config.edge.sse_keep_alive)))
}
