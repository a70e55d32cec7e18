//! The OpenAPI 3.1 document, generated from the handlers' annotations as the router registers
//! them ([`crate::routes::api`]), and the docs page.
//!
//! Every operation declares the problem+json errors the edge can answer with, and every
//! `/api/v1` operation the bearer security scheme.

use axum::Router;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::AppState;
use crate::problem::{FieldError, PROBLEM_JSON, Problem};
use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Affiliate platform API",
        description = "The REST/JSON edge of the affiliate platform: campaigns, creators, tracking, commissions, payouts, notifications, webhooks and statistics. Bodies follow proto3 JSON style: camelCase names, int64 as strings, enums by name, RFC 3339 timestamps in UTC. Every `/api/v1` route needs `Authorization: Bearer <JWT>`, except the server-to-server conversions, authenticated by a postback key; errors are RFC 9457 problem+json.",
    ),
    components(schemas(Problem, FieldError)),
    tags(
        (name = "campaigns", description = "Advertisers' campaigns; creators browse active ones"),
        (name = "creators", description = "A creator's acceptances, evidence, commissions, balance, statements and payouts"),
        (name = "commissions", description = "Advertisers list their campaigns' commissions, and approve or decline the pending ones"),
        (name = "tracking", description = "Views, clicks and purchases"),
        (name = "links", description = "Creators' tracking links, served by the redirect edge"),
        (name = "conversions", description = "Sales reported server to server (postback keys), their review, and the keys"),
        (name = "notifications", description = "Per-user notifications, listed or live"),
        (name = "webhooks", description = "Advertisers' and creators' webhook endpoints (Standard Webhooks): register, rotate secrets, follow deliveries and attempts, resend and recover"),
        (name = "analytics", description = "Campaign and creator statistics by day"),
        (name = "admin", description = "Operations: dead letters, workflows and aggregate histories (the audit trail)"),
        (name = "health", description = "Liveness of the BFF and the services"),
    )
)]
pub struct ApiDoc;

/// The bearer scheme and the error responses of every operation.
struct Edge;

/// The problem+json responses the edge may give, by status.
const ERRORS: [(&str, &str); 12] = [
    (
        "400",
        "Invalid request: malformed JSON, unknown or mistyped fields, or field violations (`errors`)",
    ),
    (
        "401",
        "Missing, malformed, expired or otherwise invalid bearer token",
    ),
    ("403", "The caller's role or identity does not allow this"),
    ("404", "No such resource"),
    (
        "409",
        "Conflicts with the current state (already exists, or not allowed in this state)",
    ),
    ("413", "Request body too large"),
    (
        "422",
        "Valid, but refused by a rule the client acts on: `reason` names it (e.g. `UNKNOWN_CLICK`)",
    ),
    ("415", "Request body is not application/json"),
    ("429", "Rate limit exceeded; see Retry-After"),
    ("500", "Unexpected failure"),
    ("503", "A service is unavailable; retry later"),
    ("504", "A service did not answer in time"),
];

fn add_errors(operation: &mut Operation) {
    for (status, description) in ERRORS {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| {
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        PROBLEM_JSON,
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("Problem")))
                            .build(),
                    )
                    .build()
                    .into()
            });
    }
}

impl Modify for Edge {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some(
                            "A JWT with `sub` (user UUID), `role` (advertiser, creator or admin), `iss`, `aud`, `exp` and `nbf`. Mint a development one with `bff token --sub <uuid> --role <role>`.",
                        ))
                        .build(),
                ),
            );
            components.add_security_scheme(
                "postbackKey",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "X-Postback-Key",
                    "An advertiser's postback key secret (`pbk_…`), for server-to-server conversions; `GET /postback` also takes it as `key=` in the URL.",
                ))),
            );
            components.add_security_scheme(
                "postbackSignature",
                SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                    "sig",
                    "`GET /postback` signed instead of carrying the secret: `key_id`, `ts` (Unix seconds) and `sig` = hex(HMAC-SHA256(secret, the query string without its `sig` pair)).",
                ))),
            );
        }
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                item.get.as_mut(),
                item.post.as_mut(),
                item.put.as_mut(),
                item.patch.as_mut(),
                item.delete.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                add_errors(operation);
            }
        }
    }
}

/// The routes and the document that describes them: [`ApiDoc`], the paths the routes declare,
/// then the bearer scheme and the error responses on every operation.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::api())
        .split_for_parts();
    Edge.modify(&mut document);
    (router, document)
}

/// `/openapi.json` and the Swagger UI at `/docs` (assets built in: it works offline).
pub fn docs(document: utoipa::openapi::OpenApi) -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", document))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_declares_security_and_errors_on_every_operation() {
        let doc = serde_json::to_value(api().1).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.len() >= 18, "{} paths", paths.len());
        for (path, item) in paths {
            for (method, operation) in item.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                for (status, _) in ERRORS {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} lacks {status}"
                    );
                }
                if path == "/api/v1/conversions"
                    || path == "/api/v1/conversions/{orderId}/refund"
                    || path == "/postback"
                {
                    assert_eq!(
                        operation["security"][0]["postbackKey"],
                        serde_json::json!([]),
                        "{method} {path}: server to server, by postback key"
                    );
                } else if path.starts_with("/api/v1") {
                    assert_eq!(
                        operation["security"][0]["bearer"],
                        serde_json::json!([]),
                        "{method} {path}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_link_and_conversion_routes_are_documented_with_their_doors() {
        let doc = serde_json::to_value(api().1).unwrap();
        let paths = &doc["paths"];
        for (path, method) in [
            ("/api/v1/creators/{creatorId}/links", "post"),
            ("/api/v1/creators/{creatorId}/links", "get"),
            ("/api/v1/creators/{creatorId}/links/{linkId}", "get"),
            (
                "/api/v1/creators/{creatorId}/links/{linkId}/disable",
                "post",
            ),
            ("/api/v1/campaigns/{campaignId}/links", "get"),
            ("/api/v1/advertisers/{advertiserId}/postback-keys", "post"),
            ("/api/v1/advertisers/{advertiserId}/postback-keys", "get"),
            (
                "/api/v1/advertisers/{advertiserId}/postback-keys/{keyId}",
                "delete",
            ),
            ("/api/v1/conversions", "post"),
            ("/postback", "get"),
            ("/api/v1/conversions/{conversionId}", "get"),
            ("/api/v1/conversions/{conversionId}/review", "post"),
            ("/api/v1/conversions/{orderId}/refund", "post"),
        ] {
            assert!(paths[path][method].is_object(), "{method} {path}");
        }
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["postbackKey"]["name"], "X-Postback-Key");
        assert_eq!(schemes["postbackKey"]["in"], "header");
        let post = &paths["/api/v1/conversions"]["post"];
        for status in ["200", "201", "401", "422"] {
            assert!(post["responses"][status].is_object(), "{status}");
        }
        let params: Vec<&str> = paths["/postback"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        for name in [
            "click_id", "order_id", "amount", "currency", "key", "key_id", "ts", "sig", "status",
        ] {
            assert!(params.contains(&name), "{name} in {params:?}");
        }
        assert!(params.contains(&"refund_id"), "refund_id in {params:?}");
        let schemas = &doc["components"]["schemas"];
        assert!(schemas["TrackingLink"]["properties"]["url"].is_object());
        assert!(schemas["Problem"]["properties"]["reason"].is_object());
    }

    #[test]
    fn the_webhook_routes_are_documented_with_their_bodies_and_answers() {
        let doc = serde_json::to_value(api().1).unwrap();
        let paths = &doc["paths"];
        let endpoint = "/api/v1/webhooks/endpoints/{endpointId}";
        for (path, method, status, body) in [
            (
                "/api/v1/webhooks/endpoints",
                "post",
                "201",
                Some("CreatedWebhookEndpoint"),
            ),
            (
                "/api/v1/webhooks/endpoints",
                "get",
                "200",
                Some("WebhookEndpointPage"),
            ),
            (endpoint, "get", "200", Some("WebhookEndpoint")),
            (endpoint, "patch", "200", Some("WebhookEndpoint")),
            (endpoint, "delete", "204", None),
            (
                "/api/v1/webhooks/endpoints/{endpointId}/rotate-secret",
                "post",
                "200",
                Some("RotatedWebhookSecret"),
            ),
            (
                "/api/v1/webhooks/endpoints/{endpointId}/deliveries",
                "get",
                "200",
                Some("WebhookDeliveryPage"),
            ),
            (
                "/api/v1/webhooks/endpoints/{endpointId}/attempts",
                "get",
                "200",
                Some("WebhookAttemptPage"),
            ),
            (
                "/api/v1/webhooks/endpoints/{endpointId}/messages/{messageId}/resend",
                "post",
                "202",
                Some("QueuedWebhookDelivery"),
            ),
            (
                "/api/v1/webhooks/endpoints/{endpointId}/recover",
                "post",
                "202",
                Some("RecoveredWebhookMessages"),
            ),
            (
                "/api/v1/webhooks/endpoints/{endpointId}/test",
                "post",
                "202",
                Some("QueuedWebhookDelivery"),
            ),
        ] {
            let operation = &paths[path][method];
            assert_eq!(operation["tags"][0], "webhooks", "{method} {path}");
            let answer = &operation["responses"][status];
            match body {
                Some(schema) => assert_eq!(
                    answer["content"]["application/json"]["schema"]["$ref"],
                    format!("#/components/schemas/{schema}"),
                    "{method} {path}"
                ),
                None => assert!(answer["content"].is_null(), "{method} {path}"),
            }
        }
        for (method, schema) in [
            ("post", "CreateWebhookEndpoint"),
            ("patch", "UpdateWebhookEndpoint"),
        ] {
            let path = if method == "post" {
                "/api/v1/webhooks/endpoints"
            } else {
                endpoint
            };
            assert_eq!(
                paths[path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
                format!("#/components/schemas/{schema}")
            );
        }
        let filter: Vec<&serde_json::Value> =
            paths["/api/v1/webhooks/endpoints/{endpointId}/deliveries"]["get"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["name"] == "status")
                .collect();
        assert_eq!(
            filter[0]["schema"]["enum"],
            serde_json::json!(["pending", "succeeded", "failed"]),
            "{filter:?}"
        );
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["CreateWebhookEndpoint"]["required"],
            serde_json::json!(["url"]),
            "the owner is the caller, never a field"
        );
        assert!(schemas["WebhookEndpoint"]["properties"]["secret"].is_null());
        assert_eq!(
            schemas["DeliveryStatus"]["enum"][1],
            "DELIVERY_STATUS_PENDING"
        );
    }

    #[test]
    fn the_tracking_settings_route_and_bodies_are_documented() {
        let doc = serde_json::to_value(api().1).unwrap();
        let put = &doc["paths"]["/api/v1/campaigns/{campaignId}/tracking"]["put"];
        assert_eq!(
            put["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/UpdateTracking"
        );
        let schemas = &doc["components"]["schemas"];
        for (schema, required) in [
            ("TrackingSettingsInput", vec!["landingUrl"]),
            (
                "TrackingSettings",
                vec![
                    "landingUrl",
                    "landingDomains",
                    "clickIdParam",
                    "attributionWindowSeconds",
                    "minClickToConversionSeconds",
                    "fallbackUrl",
                ],
            ),
        ] {
            assert_eq!(
                schemas[schema]["required"],
                serde_json::json!(required),
                "{schema}"
            );
        }
        assert!(
            schemas["Campaign"]["properties"]["tracking"].is_object(),
            "campaigns carry their tracking settings"
        );
        assert!(
            schemas["CreateCampaign"]["properties"]["tracking"].is_object(),
            "a campaign may be created with them"
        );
        let hold = &schemas["CreateCampaign"]["properties"]["holdPeriodSeconds"];
        assert_eq!(
            (&hold["minimum"], &hold["maximum"]),
            (&serde_json::json!(0), &serde_json::json!(31_536_000)),
            "a campaign may be created with a hold period"
        );
        assert!(
            schemas["Campaign"]["required"]
                .as_array()
                .is_some_and(|r| r.contains(&serde_json::json!("holdPeriodSeconds"))),
            "campaigns show their hold period"
        );
    }
}
