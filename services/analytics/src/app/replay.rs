//! Rebuilding the projections from the topics, and telling how far behind them they are.
//!
//! A replay drops the statistics and the projections' inbox in one transaction (under locks
//! that wait for every transaction applying a message, so none is half in and half out) and
//! records the replay; then every `analytics` subscription's cursor is moved back to its topic's
//! earliest retained message through Pulsar's admin API, and the replay is marked done. A
//! message applied between the two steps is in the new inbox, so its redelivery is skipped; a
//! replay whose cursors could not all be moved (broker away, process killed) is finished by the
//! watcher, which tries again every interval. The audit trail is not dropped: a topic keeps its
//! messages for days, the trail for as long as `--audit-retention` says, and a replayed message
//! is already in it under its id.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use affiliate_proto::analytics as pb;
use messaging::admin::Admin;
use service_runtime::config::PulsarArgs;
use service_runtime::status::StatusBoard;
use service_runtime::time::timestamp;

use crate::SUBSCRIPTION;
use crate::adapters::repository as repo;
use crate::app::Error;
use crate::domain::TOPICS;

/// The inbox consumer names of the projections all start with this.
const CONSUMER_PREFIX: &str = "analytics/";

/// Replays and lag, through the broker's admin API.
#[derive(Debug, Clone)]
pub struct Replays {
    pool: PgPool,
    admin: Admin,
    /// `/admin/v2/persistent/{tenant}/{namespace}`
    namespace_path: String,
    board: StatusBoard,
}

/// One topic's backlog as the broker counts it; `None` when it could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backlog {
    pub topic: &'static str,
    pub backlog: Option<i64>,
}

impl Replays {
    pub fn new(
        pool: PgPool,
        admin_url: &str,
        pulsar: &PulsarArgs,
        board: StatusBoard,
    ) -> anyhow::Result<Self> {
        let admin = Admin::new(
            admin_url,
            pulsar.tls_ca_file.as_deref(),
            messaging::admin::Token::of(pulsar)?,
        )?
        .with_timeout(Duration::from_secs(10));
        Ok(Self {
            pool,
            admin,
            namespace_path: format!(
                "/admin/v2/persistent/{}/{}",
                pulsar.tenant, pulsar.namespace
            ),
            board,
        })
    }

    /// Drops the projections and moves every cursor back to the earliest message. An error
    /// after the drop leaves the replay to the watcher (UNAVAILABLE says so).
    pub async fn replay(&self) -> Result<pb::ReplayResponse, Error> {
        let mut tx = self.pool.begin().await?;
        let (id, started_at) = repo::drop_projections(&mut tx, CONSUMER_PREFIX).await?;
        tx.commit().await?;
        tracing::info!(
            replay = id,
            "projections dropped; moving the cursors to the earliest message"
        );
        self.reset_cursors(id).await.map_err(|e| {
            Error::Unavailable(e.context(
                "the projections were dropped but not every cursor could be moved; the service tries again every --lag-interval",
            ))
        })?;
        Ok(pb::ReplayResponse {
            subscriptions: TOPICS
                .iter()
                .map(|t| format!("{}/{SUBSCRIPTION}", t.short))
                .collect(),
            started_at: Some(timestamp(started_at)),
        })
    }

    /// Moves every subscription's cursor to the earliest retained message, then marks the
    /// replays up to `id` done.
    async fn reset_cursors(&self, id: i64) -> anyhow::Result<()> {
        for topic in TOPICS {
            let path = format!(
                "{}/{}/subscription/{SUBSCRIPTION}/resetcursor/0",
                self.namespace_path, topic.short
            );
            let (status, body) = self.admin.request("POST", &path, "").await?;
            match status {
                200 | 204 => {}
                // No topic or no subscription yet: it starts at the earliest message anyway.
                404 => tracing::debug!(topic = topic.short, "nothing to rewind: {body}"),
                _ => anyhow::bail!("reset the cursor of {}: HTTP {status} {body}", topic.short),
            }
        }
        let mut conn = self.pool.acquire().await.context("acquire a connection")?;
        repo::replay_cursors_reset(&mut conn, id)
            .await
            .context("mark the replay done")?;
        tracing::info!(
            replay = id,
            "every cursor moved to the earliest message: replaying"
        );
        Ok(())
    }

    /// Each followed topic's backlog on the `analytics` subscription, read now.
    pub async fn backlogs(&self) -> Vec<Backlog> {
        let mut backlogs = Vec::with_capacity(TOPICS.len());
        for topic in TOPICS {
            let path = format!("{}/{}/stats", self.namespace_path, topic.short);
            let backlog = match self.admin.request("GET", &path, "").await {
                // A topic nothing was published to yet: nothing to be behind on.
                Ok((404, _)) => Some(0),
                Ok((200, body)) => {
                    serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .map(|stats| {
                            stats["subscriptions"][SUBSCRIPTION]["msgBacklog"]
                                .as_i64()
                                .unwrap_or(0)
                        })
                }
                Ok((status, body)) => {
                    tracing::debug!(topic = topic.short, status, "topic stats: {body}");
                    None
                }
                Err(e) => {
                    tracing::debug!(topic = topic.short, error = format!("{e:#}"), "topic stats");
                    None
                }
            };
            backlogs.push(Backlog {
                topic: topic.short,
                backlog,
            });
        }
        backlogs
    }

    /// The backlogs, what each subscription applied, whether every replay is done and when the
    /// last began.
    pub async fn status(&self) -> Result<pb::GetReplayStatusResponse, Error> {
        let backlogs = self.backlogs().await;
        let mut conn = self.pool.acquire().await?;
        let unfinished = repo::unfinished_replays(&mut conn).await?;
        let last: Option<DateTime<Utc>> = repo::last_replay(&mut conn).await?;
        let snapshot = self.board.snapshot();
        let topics: Vec<pb::TopicLag> = backlogs
            .iter()
            .map(|b| pb::TopicLag {
                topic: b.topic.to_owned(),
                subscription: SUBSCRIPTION.to_owned(),
                backlog: b.backlog.unwrap_or(-1),
                applied: snapshot
                    .subscriptions
                    .iter()
                    .find(|s| {
                        s.topics
                            .iter()
                            .any(|t| t.ends_with(&format!("/{}", b.topic)))
                    })
                    .map_or(0, |s| s.applied),
            })
            .collect();
        Ok(pb::GetReplayStatusResponse {
            caught_up: unfinished.is_empty() && topics.iter().all(|t| t.backlog == 0),
            topics,
            last_replay_started_at: last.map(timestamp),
        })
    }

    /// Every `every`: finishes a replay whose cursors were not all moved, and reports each
    /// topic's backlog on the status board and as the gauge `analytics_backlog_messages`.
    pub async fn watch(self, every: Duration, shutdown: CancellationToken) -> anyhow::Result<()> {
        loop {
            match self.unfinished().await {
                Ok(Some(id)) => {
                    if let Err(e) = self.reset_cursors(id).await {
                        tracing::warn!(
                            replay = id,
                            error = format!("{e:#}"),
                            "replay not finished; trying again"
                        );
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = format!("{e:#}"), "read the unfinished replays"),
            }
            for b in self.backlogs().await {
                self.board.set_backlog(SUBSCRIPTION, b.topic, b.backlog);
                #[allow(clippy::cast_precision_loss)] // a gauge
                if let Some(n) = b.backlog {
                    metrics::gauge!("analytics_backlog_messages", "topic" => b.topic).set(n as f64);
                }
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.cancelled() => return Ok(()),
            }
        }
    }

    async fn unfinished(&self) -> anyhow::Result<Option<i64>> {
        let mut conn = self.pool.acquire().await?;
        Ok(repo::unfinished_replays(&mut conn).await?.last().copied())
    }
}
