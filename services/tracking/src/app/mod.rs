//! The application handlers: each command validates its request, then writes its row and names
//! its messages inside one unit of work (`service_runtime::unit_of_work`). The gRPC server and the
//! command-topic consumer both call these, so a command has the same effect whichever door it
//! came through.

mod conversions;
pub use conversions::RecordConversion;
mod create;
mod error;
mod links;
pub mod messages;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;

use affiliate_proto::tracking::{self as pb, EvidenceSubmitted, tracking_event_envelope::Event};
use service_runtime::context::CommandContext;
use service_runtime::group_commit::{GroupCommit, Tuning};
use service_runtime::outbox::{self, Subject};
use service_runtime::paging::next_page_token;
use service_runtime::unit_of_work::{Decision, execute};
use service_runtime::validation::parse_optional_id;

use crate::adapters::repository::{self as repo, Page};
use crate::domain::{self, SubmitEvidenceInput, Violations};
pub use create::CreateEvent;
use create::EventWriter;
pub use error::Error;

/// Default and largest page of ListEvents and ListEvidence.
pub const DEFAULT_PAGE_SIZE: i32 = 20;
pub const MAX_PAGE_SIZE: i32 = 100;
/// How often a request waiting for the copy of the campaigns looks again without a wake-up.
const ATTRIBUTION_POLL: Duration = Duration::from_millis(100);

/// How tracking waits for its copy of the campaigns, which the campaign events feed: a
/// campaign created or accepted a moment ago may not be in it yet. While a command is younger
/// than `grace` (or the process started less than `grace` ago, its copy catching up), a failed
/// attribution check is "not yet": the gRPC door waits for the copy to change and checks again,
/// the command topic's door retries the message with back-off. After that the refusal is final.
#[derive(Debug, Clone)]
pub struct Attribution {
    pub grace: Duration,
    started: Instant,
    /// Notified by the feed after each change of the copy.
    pub changed: Arc<Notify>,
}

impl Attribution {
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            started: Instant::now(),
            changed: Arc::new(Notify::new()),
        }
    }

    /// How long `ctx`'s command may still wait for the copy; zero once its check is final.
    fn patience(&self, ctx: &CommandContext) -> Duration {
        // Issued at an unknown time: only the start-up window applies. A little ahead of this
        // clock: young.
        let age = ctx.issued_at.map_or(Duration::MAX, |at| {
            (chrono::Utc::now() - at).to_std().unwrap_or_default()
        });
        let since_start = self.started.elapsed();
        self.grace.saturating_sub(age.min(since_start))
    }
}

/// The tracking use cases over one database.
#[derive(Debug, Clone)]
pub struct Tracking {
    pool: PgPool,
    attribution: Attribution,
    /// The gRPC door's CreateEvent calls, written in sets.
    events: GroupCommit<EventWriter>,
    /// The gRPC door's RecordConversion calls, written in sets.
    conversions: GroupCommit<conversions::ConversionWriter>,
}

impl Tracking {
    /// Starts the group commit's writers (so it must run inside a tokio runtime).
    pub fn new(pool: PgPool, attribution: Attribution) -> Self {
        let events = GroupCommit::start(
            EventWriter {
                attribution: attribution.clone(),
            },
            pool.clone(),
            Tuning::default(),
        );
        let conversions = GroupCommit::start(
            conversions::ConversionWriter {
                attribution: attribution.clone(),
            },
            pool.clone(),
            Tuning::default(),
        );
        Self {
            pool,
            attribution,
            events,
            conversions,
        }
    }

    /// Records the events of many CreateEvent commands in the caller's transaction, one outcome
    /// per command (the command topic's door runs its batches so).
    pub async fn create_events(
        &self,
        conn: &mut sqlx::PgConnection,
        set: &[create::CreateEvent],
    ) -> Result<Vec<Result<pb::CreateEventResponse, Error>>, Error> {
        create::create_events(conn, &self.attribution, set).await
    }

    /// [`Tracking::create_event`], waiting while the copy of the campaigns may still be behind
    /// (see [`Attribution`]): for the gRPC door, whose caller waits for the answer.
    pub async fn create_event_waiting(
        &self,
        ctx: &CommandContext,
        request: pb::CreateEventRequest,
    ) -> Result<pb::CreateEventResponse, Error> {
        self.waiting(ctx, || self.create_event(ctx, request.clone()))
            .await
    }

    /// Runs `attempt` until it is not "not yet" or `ctx`'s patience is spent, waking when the
    /// copy of the campaigns changes (or polling: another replica's feed may fill it).
    async fn waiting<T, F>(&self, ctx: &CommandContext, attempt: impl Fn() -> F) -> Result<T, Error>
    where
        F: Future<Output = Result<T, Error>>,
    {
        loop {
            // Registered before the attempt, so a change during it is not missed.
            let changed = self.attribution.changed.notified();
            match attempt().await {
                Err(Error::NotYet(reason)) => {
                    let patience = self.attribution.patience(ctx);
                    if patience.is_zero() {
                        return Err(Error::NotYet(reason));
                    }
                    let poll = patience.min(ATTRIBUTION_POLL);
                    let _ = tokio::time::timeout(poll, changed).await;
                }
                other => return other,
            }
        }
    }

    /// Records a view, click or purchase and publishes `tracking_event.created.v1`; a purchase
    /// also sends `commission.calculate.command.v1`, in the same transaction. Concurrent calls
    /// are written together ([`create::EventWriter`]); the answer comes once this one committed.
    pub async fn create_event(
        &self,
        ctx: &CommandContext,
        request: pb::CreateEventRequest,
    ) -> Result<pb::CreateEventResponse, Error> {
        // Refused before it queues: an invalid request never waits for a set.
        create::validate(&request)?;
        // What this call writes continues this call's trace (its span, not the caller's).
        let mut ctx = ctx.clone();
        if let Some((traceparent, tracestate)) = service_runtime::telemetry::current_trace_headers()
        {
            ctx.traceparent = Some(traceparent);
            ctx.tracestate = tracestate;
        }
        let traceparent = ctx.traceparent.clone();
        self.events.submit((ctx, request), traceparent).await
    }

    /// One tracking event.
    pub async fn get_event(
        &self,
        request: pb::GetEventRequest,
    ) -> Result<pb::GetEventResponse, Error> {
        let id = domain::parse_id("event_id", &request.event_id)?;
        let mut conn = self.pool.acquire().await?;
        let row = repo::find_event(&mut conn, id)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "tracking event",
                id: id.to_string(),
            })?;
        Ok(pb::GetEventResponse {
            event: Some(messages::tracking_event(&row)),
        })
    }

    /// A page of tracking events, newest first, by campaign and/or creator.
    pub async fn list_events(
        &self,
        request: pb::ListEventsRequest,
    ) -> Result<pb::ListEventsResponse, Error> {
        let page = page(
            request.page_size,
            &request.page_token,
            &request.campaign_id,
            &request.creator_id,
        )?;
        let mut conn = self.pool.acquire().await?;
        let mut rows = repo::list_events(&mut conn, page).await?;
        let next_page_token = next_page_token(&mut rows, page.limit - 1, |r| r.id);
        Ok(pb::ListEventsResponse {
            events: rows.iter().map(messages::tracking_event).collect(),
            next_page_token,
        })
    }

    /// Records a creator's evidence and publishes `evidence.submitted.v1`.
    pub async fn submit_evidence(
        &self,
        ctx: &CommandContext,
        request: pb::SubmitEvidenceRequest,
    ) -> Result<pb::SubmitEvidenceResponse, Error> {
        self.submit_evidence_in(&self.pool, ctx, request).await
    }

    /// [`Tracking::submit_evidence`] on `db`: a pool (its own transaction) or a connection in a
    /// transaction (a savepoint in it, as the command door's sets run it).
    pub async fn submit_evidence_in<'c>(
        &self,
        db: impl sqlx::Acquire<'c, Database = sqlx::Postgres>,
        ctx: &CommandContext,
        request: pb::SubmitEvidenceRequest,
    ) -> Result<pb::SubmitEvidenceResponse, Error> {
        let new = domain::validate_new_evidence(SubmitEvidenceInput {
            campaign_id: &request.campaign_id,
            creator_id: &request.creator_id,
            kind: messages::evidence_kind_from_proto(request.kind),
            url: &request.url,
            note: &request.note,
        })?;
        execute(db, ctx, "tracking.submit_evidence", &request, async |tx| {
            let now = messages::now();
            let row = repo::insert_evidence(tx, Uuid::now_v7(), &new, now).await?;
            let evidence = messages::evidence(&row);
            let event = Event::EvidenceSubmitted(EvidenceSubmitted {
                evidence: Some(evidence.clone()),
            });
            Ok(Decision::with(
                pb::SubmitEvidenceResponse {
                    evidence: Some(evidence),
                },
                outbox::event::<pb::TrackingEventEnvelope>(
                    ctx,
                    Subject::new(messages::EVIDENCE, row.id, messages::VERSION),
                    now,
                    event,
                ),
            ))
        })
        .await
    }

    /// A page of evidence, newest first, by campaign and/or creator.
    pub async fn list_evidence(
        &self,
        request: pb::ListEvidenceRequest,
    ) -> Result<pb::ListEvidenceResponse, Error> {
        let page = page(
            request.page_size,
            &request.page_token,
            &request.campaign_id,
            &request.creator_id,
        )?;
        let mut conn = self.pool.acquire().await?;
        let mut rows = repo::list_evidence(&mut conn, page).await?;
        let next_page_token = next_page_token(&mut rows, page.limit - 1, |r| r.id);
        Ok(pb::ListEvidenceResponse {
            evidence: rows.iter().map(messages::evidence).collect(),
            next_page_token,
        })
    }
}

/// Checks a list request's paging and filters (every problem at once). The page's limit asks
/// for one extra row, which tells whether another page exists.
fn page(
    page_size: i32,
    page_token: &str,
    campaign_id: &str,
    creator_id: &str,
) -> Result<Page, Error> {
    let mut v = Violations::new();
    let size = v.check(domain::page_size(
        "page_size",
        page_size,
        DEFAULT_PAGE_SIZE,
        MAX_PAGE_SIZE,
    ));
    let before = v.check(parse_optional_id("page_token", page_token));
    let campaign_id = v.check(parse_optional_id("campaign_id", campaign_id));
    let creator_id = v.check(parse_optional_id("creator_id", creator_id));
    let page = match (size, before, campaign_id, creator_id) {
        (Some(size), Some(before), Some(campaign_id), Some(creator_id)) => Some(Page {
            campaign_id,
            creator_id,
            before,
            limit: size + 1,
        }),
        _ => None,
    };
    Ok(v.finish(page)?)
}
