//! Admins' dead-letter inspection: which dead-letter topics hold messages, and what they hold,
//! read through Pulsar's admin API without consuming anything.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Role;
use crate::edge::{ApiPath, ApiQuery, Caller};
use crate::problem::Problem;

/// The suffix of every dead-letter topic (`{topic}-{subscription}-DLQ`).
const DLQ_SUFFIX: &str = "-DLQ";
/// The most messages one inspection returns.
const MAX_LIMIT: u32 = 100;

/// A dead-letter topic and how many messages reached it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterTopic {
    /// Short topic name, e.g. `campaign-commands-campaign-DLQ`.
    pub topic: String,
    /// Messages published to it since it was created (int64 as a string).
    pub messages: String,
}

/// One dead-lettered message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// 1-based position in the topic, oldest first.
    pub position: u32,
    /// The broker's message id.
    pub message_id: String,
    /// When it was dead-lettered (RFC 3339).
    pub publish_time: String,
    /// Message properties (message-type, message-id, correlation-id, …).
    pub properties: BTreeMap<String, String>,
    /// The payload, base64.
    pub payload_base64: String,
}

struct Admin<'a> {
    state: &'a AppState,
}

impl Admin<'_> {
    fn path(&self, path: &str) -> String {
        let a = &self.state.config.pulsar_admin;
        format!(
            "/admin/v2/persistent/{}/{}{path}",
            a.pulsar_tenant, a.pulsar_namespace
        )
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response, Problem> {
        let response = self
            .state
            .admin
            .send(reqwest::Method::GET, &self.path(path), "")
            .await
            .map_err(|e| {
                tracing::warn!(error = format!("{e:#}"), "Pulsar admin API unreachable");
                Problem::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "the message broker's admin API is unavailable; retry later",
                )
            })?;
        match response.status().as_u16() {
            200..=299 => Ok(response),
            404 => Err(Problem::not_found("no such dead-letter topic or message")),
            status => {
                tracing::warn!(status, path, "Pulsar admin API refused a request");
                Err(Problem::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "the message broker's admin API failed; retry later",
                ))
            }
        }
    }

    async fn published(&self, topic: &str) -> Result<i64, Problem> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Stats {
            #[serde(default)]
            msg_in_counter: i64,
        }
        let stats: Stats = self
            .get(&format!("/{topic}/stats"))
            .await?
            .json()
            .await
            .map_err(broker_failed)?;
        Ok(stats.msg_in_counter)
    }
}

/// A response of the broker's admin API that could not be read to its end (the connection broke,
/// e.g. the broker went down mid-answer) or did not parse: the broker's trouble, worth a retry.
fn broker_failed(error: reqwest::Error) -> Problem {
    tracing::warn!(error = %error, "Pulsar admin API answer unreadable");
    Problem::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "the message broker's admin API failed; retry later",
    )
}

/// List the dead-letter topics and their message counts.
#[utoipa::path(get, path = "/api/v1/admin/dead-letters", tag = "admin",
    responses((status = 200, description = "Dead-letter topics", body = [DeadLetterTopic])),
    security(("bearer" = [])))]
pub async fn dead_letter_topics(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<DeadLetterTopic>>, Problem> {
    caller.require(&[Role::Admin])?;
    let admin = Admin { state: &state };
    let topics: Vec<String> = admin.get("").await?.json().await.map_err(broker_failed)?;
    let mut found = Vec::new();
    for full in topics {
        let short = full.rsplit('/').next().unwrap_or_default().to_owned();
        if short.ends_with(DLQ_SUFFIX) && !short.contains("-partition-") {
            let messages = admin.published(&short).await?;
            found.push(DeadLetterTopic {
                topic: short,
                messages: messages.to_string(),
            });
        }
    }
    found.sort_by(|a, b| a.topic.cmp(&b.topic));
    Ok(Json(found))
}

/// How many dead letters to show.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// 1..=100, default 20: the oldest ones first.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// Show the oldest messages of a dead-letter topic (nothing is consumed).
#[utoipa::path(get, path = "/api/v1/admin/dead-letters/{topic}", tag = "admin",
    params(("topic" = String, Path, description = "A dead-letter topic's short name, ending in -DLQ", pattern = "^[A-Za-z0-9._-]{1,251}-DLQ$"), DeadLetterQuery),
    responses((status = 200, description = "The messages", body = [DeadLetter])),
    security(("bearer" = [])))]
pub async fn dead_letters(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(topic): ApiPath<String>,
    ApiQuery(query): ApiQuery<DeadLetterQuery>,
) -> Result<Json<Vec<DeadLetter>>, Problem> {
    caller.require(&[Role::Admin])?;
    let valid = topic.ends_with(DLQ_SUFFIX)
        && topic.len() <= 255
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !valid {
        return Err(Problem::invalid_field(
            "topic",
            "must be a dead-letter topic's short name, ending in -DLQ",
        ));
    }
    let limit = query.limit.unwrap_or(20);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Problem::invalid_field(
            "limit",
            format!("must be 1 to {MAX_LIMIT}"),
        ));
    }
    let admin = Admin { state: &state };
    let count = admin.published(&topic).await?;
    let shown = u32::try_from(count.clamp(0, i64::from(limit))).unwrap_or(limit);
    let mut letters = Vec::new();
    for position in 1..=shown {
        let response = admin
            .get(&format!(
                "/{topic}/examinemessage?initialPosition=earliest&messagePosition={position}"
            ))
            .await?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        // The broker sends every property in one header, as a JSON object.
        let properties: BTreeMap<String, String> =
            serde_json::from_str(&header("x-pulsar-property")).unwrap_or_default();
        let (message_id, publish_time) = (
            header("x-pulsar-message-id"),
            header("x-pulsar-publish-time"),
        );
        let payload = response.bytes().await.map_err(broker_failed)?;
        letters.push(DeadLetter {
            position,
            message_id,
            publish_time,
            properties,
            payload_base64: base64::engine::general_purpose::STANDARD.encode(&payload),
        });
    }
    Ok(Json(letters))
}
