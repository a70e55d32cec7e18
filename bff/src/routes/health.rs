//! Health of the BFF itself, and of every service it calls (gRPC health, checked in parallel).

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use utoipa::ToSchema;

use crate::AppState;

/// The BFF's own health.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` while the BFF serves.
    pub status: String,
}

/// Whether the BFF is up (no authentication).
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "The BFF serves", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}

/// One service's health.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceHealth {
    pub name: String,
    /// SERVING, NOT_SERVING, UNKNOWN or UNREACHABLE.
    pub status: String,
    /// How long the check took.
    pub latency_ms: u64,
    /// Why it is not serving, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The health of every service.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServicesHealth {
    /// SERVING when every service is, DEGRADED otherwise.
    pub status: String,
    pub services: Vec<ServiceHealth>,
}

/// Every service's gRPC health, checked in parallel with a timeout (no authentication).
/// 200 when all serve, 503 otherwise.
#[utoipa::path(get, path = "/health/services", tag = "health",
    responses((status = 200, description = "Every service serves", body = ServicesHealth),
        (status = 503, description = "Some service does not serve", body = ServicesHealth)))]
pub async fn services(State(state): State<AppState>) -> (StatusCode, Json<ServicesHealth>) {
    let timeout = state.config.services.health_timeout;
    let checks = state.clients.health.iter().map(|(name, client)| {
        let mut client = client.clone();
        async move {
            let started = Instant::now();
            let mut request = tonic::Request::new(HealthCheckRequest {
                service: String::new(),
            });
            request.set_timeout(timeout);
            let result = tokio::time::timeout(timeout, client.check(request)).await;
            let (status, detail) = match result {
                Ok(Ok(response)) => {
                    let status = ServingStatus::try_from(response.into_inner().status)
                        .unwrap_or(ServingStatus::Unknown);
                    (status.as_str_name().to_owned(), None)
                }
                Ok(Err(status)) => (
                    "UNREACHABLE".to_owned(),
                    Some(crate::problem::code_name(status.code()).to_owned()),
                ),
                Err(_) => ("UNREACHABLE".to_owned(), Some("timed out".to_owned())),
            };
            ServiceHealth {
                name: (*name).to_owned(),
                status,
                latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                detail,
            }
        }
    });
    let services = futures::future::join_all(checks).await;
    let all_serving = services.iter().all(|s| s.status == "SERVING");
    let code = if all_serving {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(ServicesHealth {
            status: if all_serving { "SERVING" } else { "DEGRADED" }.to_owned(),
            services,
        }),
    )
}
