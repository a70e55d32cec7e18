//! The REST routes, one module per audience. Every route under `/api/v1` takes a [`Caller`]
//! (authenticated, rate limited) before its body is read; the server-to-server postbacks
//! (`POST /api/v1/conversions`, `GET /postback`) take a [`Postback`] instead (a postback key,
//! rate limited per client address).
//!
//! [`Caller`]: crate::edge::Caller
//! [`Postback`]: conversions::Postback

pub mod admin;
pub mod analytics;
pub mod campaigns;
pub mod commissions;
pub mod conversions;
pub mod creators;
pub mod health;
pub mod links;
pub mod notifications;
pub mod tracking;
pub mod webhooks;

use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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

/// Every route, each declared once: `routes!` takes the handlers of one path (their methods and
/// the path come from their `#[utoipa::path]`), so the router and the OpenAPI document's paths are
/// built from the same declarations.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health::health))
        .routes(routes!(health::services))
        .routes(routes!(campaigns::create, campaigns::list))
        .routes(routes!(campaigns::get))
        .routes(routes!(campaigns::add_video))
        .routes(routes!(campaigns::pause))
        .routes(routes!(campaigns::resume))
        .routes(routes!(campaigns::close))
        .routes(routes!(campaigns::update_budget))
        .routes(routes!(campaigns::update_tracking))
        .routes(routes!(creators::accept))
        .routes(routes!(creators::submit_evidence))
        .routes(routes!(creators::commissions))
        .routes(routes!(creators::balance))
        .routes(routes!(creators::request_payout, creators::payouts))
        .routes(routes!(creators::payout))
        .routes(routes!(commissions::statement))
        .routes(routes!(commissions::approve))
        .routes(routes!(commissions::decline))
        .routes(routes!(commissions::of_campaign))
        .routes(routes!(tracking::record, tracking::list))
        .routes(routes!(links::create, links::list))
        .routes(routes!(links::get))
        .routes(routes!(links::disable))
        .routes(routes!(links::of_campaign))
        .routes(routes!(conversions::create))
        .routes(routes!(conversions::by_url))
        .routes(routes!(conversions::get))
        .routes(routes!(conversions::review))
        .routes(routes!(conversions::refund))
        .routes(routes!(conversions::create_key, conversions::keys))
        .routes(routes!(conversions::revoke_key))
        .routes(routes!(notifications::list))
        .routes(routes!(notifications::stream))
        .routes(routes!(notifications::mark_read))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::get, webhooks::update, webhooks::delete))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::attempts))
        .routes(routes!(webhooks::resend))
        .routes(routes!(webhooks::recover))
        .routes(routes!(webhooks::send_test))
        .routes(routes!(admin::dead_letter_topics))
        .routes(routes!(admin::dead_letters))
        .routes(routes!(analytics::campaign_stats))
        .routes(routes!(analytics::creator_stats))
        .routes(routes!(analytics::workflow))
        .routes(routes!(analytics::aggregate_history))
}
