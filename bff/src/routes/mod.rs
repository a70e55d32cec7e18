//! The REST routes, one module per audience. Every route under `/api/v1` takes a [`Caller`]
//! (authenticated, rate limited) before its body is read.
//!
//! [`Caller`]: crate::edge::Caller

pub mod admin;
pub mod campaigns;
pub mod creators;
pub mod health;
pub mod notifications;
pub mod tracking;

use axum::Router;
use axum::routing::{get, post};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;

/// Paging parameters of list routes.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// 1..=100; the default is 20.
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<i32>,
    /// The `nextPageToken` of the previous page.
    pub page_token: Option<String>,
}

impl Paging {
    pub fn size(&self) -> i32 {
        self.page_size.unwrap_or(0)
    }

    pub fn token(&self) -> String {
        self.page_token.clone().unwrap_or_default()
    }
}

pub fn api() -> Router<AppState> {
    Router::new()
        .route("/health", get(health::health))
        .route("/health/services", get(health::services))
        .route(
            "/api/v1/campaigns",
            post(campaigns::create).get(campaigns::list),
        )
        .route("/api/v1/campaigns/{campaignId}", get(campaigns::get))
        .route(
            "/api/v1/campaigns/{campaignId}/videos",
            post(campaigns::add_video),
        )
        .route(
            "/api/v1/campaigns/{campaignId}/pause",
            post(campaigns::pause),
        )
        .route(
            "/api/v1/campaigns/{campaignId}/resume",
            post(campaigns::resume),
        )
        .route(
            "/api/v1/campaigns/{campaignId}/close",
            post(campaigns::close),
        )
        .route(
            "/api/v1/creators/{creatorId}/acceptances",
            post(creators::accept),
        )
        .route(
            "/api/v1/creators/{creatorId}/evidence",
            post(creators::submit_evidence),
        )
        .route(
            "/api/v1/creators/{creatorId}/commissions",
            get(creators::commissions),
        )
        .route(
            "/api/v1/creators/{creatorId}/balance",
            get(creators::balance),
        )
        .route(
            "/api/v1/creators/{creatorId}/payouts",
            post(creators::request_payout).get(creators::payouts),
        )
        .route(
            "/api/v1/creators/{creatorId}/payouts/{payoutId}",
            get(creators::payout),
        )
        .route(
            "/api/v1/tracking-events",
            post(tracking::record).get(tracking::list),
        )
        .route("/api/v1/notifications", get(notifications::list))
        .route("/api/v1/notifications/stream", get(notifications::stream))
        .route(
            "/api/v1/notifications/{notificationId}/read",
            post(notifications::mark_read),
        )
        .route("/api/v1/admin/dead-letters", get(admin::dead_letter_topics))
        .route(
            "/api/v1/admin/dead-letters/{topic}",
            get(admin::dead_letters),
        )
}
