//! The application handlers: one transaction per command (claim the idempotency key, write the
//! row, append its messages to the outbox, store the response, commit). The gRPC server and the
//! command-topic consumer both call these, so a command has the same effect whichever door it
//! came through.

mod error;
pub mod messages;

use sqlx::PgPool;
use uuid::Uuid;

use affiliate_proto::tracking::{
    self as pb, EvidenceSubmitted, TrackingEventCreated, tracking_event_envelope::Event,
};
use service_runtime::context::CommandContext;
use service_runtime::idempotency::{remember, replay};
use service_runtime::outbox;
use service_runtime::validation::parse_optional_id;

use crate::adapters::repository::{self as repo, Page};
use crate::domain::{self, CreateEventInput, SubmitEvidenceInput, Violations};
pub use error::Error;

/// Default and largest page of ListEvents and ListEvidence.
pub const DEFAULT_PAGE_SIZE: i32 = 20;
pub const MAX_PAGE_SIZE: i32 = 100;

/// The tracking use cases over one database.
#[derive(Debug, Clone)]
pub struct Tracking {
    pool: PgPool,
}

impl Tracking {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Records a view, click or purchase and publishes `tracking_event.created.v1`; a purchase
    /// also sends `commission.calculate.command.v1`, in the same transaction.
    #[tracing::instrument(name = "db.transaction", skip_all, fields(otel.kind = "internal", db.system = "postgresql", operation = "create_event"))]
    pub async fn create_event(
        &self,
        ctx: &CommandContext,
        request: pb::CreateEventRequest,
    ) -> Result<pb::CreateEventResponse, Error> {
        let new = domain::validate_new_event(
            CreateEventInput {
                campaign_id: &request.campaign_id,
                creator_id: &request.creator_id,
                kind: messages::event_kind_from_proto(request.kind),
                amount: request
                    .amount
                    .as_ref()
                    .map(|a| (a.amount_minor, a.currency.as_str())),
                product_id: &request.product_id,
                occurred_at: request.occurred_at.as_ref().map(|t| (t.seconds, t.nanos)),
            },
            messages::now(),
        )?;
        let mut tx = self.pool.begin().await?;
        if let Some(previous) = replay(&mut tx, ctx, "tracking.create_event", &request).await? {
            return Ok(previous);
        }
        let now = messages::now();
        let row = repo::insert_event(&mut tx, Uuid::now_v7(), &new, now).await?;
        let event = messages::tracking_event(&row);
        let created = messages::event_message(
            ctx,
            messages::TRACKING_EVENT,
            row.id,
            messages::VERSION,
            now,
            Event::TrackingEventCreated(TrackingEventCreated {
                event: Some(event.clone()),
            }),
        );
        let calculate = messages::calculate_command(ctx, &row, created.message_id, now);
        let outgoing: Vec<_> = std::iter::once(created).chain(calculate).collect();
        outbox::append(&mut tx, &outgoing)
            .await
            .map_err(Error::Internal)?;
        let response = pb::CreateEventResponse { event: Some(event) };
        remember(&mut tx, ctx, &response).await?;
        tx.commit().await?;
        Ok(response)
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
        let rows = repo::list_events(&mut conn, page).await?;
        let (rows, next_page_token) = split_page(rows, page, |r| r.id);
        Ok(pb::ListEventsResponse {
            events: rows.iter().map(messages::tracking_event).collect(),
            next_page_token,
        })
    }

    /// Records a creator's evidence and publishes `evidence.submitted.v1`.
    #[tracing::instrument(name = "db.transaction", skip_all, fields(otel.kind = "internal", db.system = "postgresql", operation = "submit_evidence"))]
    pub async fn submit_evidence(
        &self,
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
        let mut tx = self.pool.begin().await?;
        if let Some(previous) = replay(&mut tx, ctx, "tracking.submit_evidence", &request).await? {
            return Ok(previous);
        }
        let now = messages::now();
        let row = repo::insert_evidence(&mut tx, Uuid::now_v7(), &new, now).await?;
        let evidence = messages::evidence(&row);
        let event = Event::EvidenceSubmitted(EvidenceSubmitted {
            evidence: Some(evidence.clone()),
        });
        outbox::append(
            &mut tx,
            &[messages::event_message(
                ctx,
                messages::EVIDENCE,
                row.id,
                messages::VERSION,
                now,
                event,
            )],
        )
        .await
        .map_err(Error::Internal)?;
        let response = pb::SubmitEvidenceResponse {
            evidence: Some(evidence),
        };
        remember(&mut tx, ctx, &response).await?;
        tx.commit().await?;
        Ok(response)
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
        let rows = repo::list_evidence(&mut conn, page).await?;
        let (rows, next_page_token) = split_page(rows, page, |r| r.id);
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

/// Cuts the extra row off a page; the token of the next page is the last id kept, or empty if
/// this is the last page.
fn split_page<T>(mut rows: Vec<T>, page: Page, id: impl Fn(&T) -> Uuid) -> (Vec<T>, String) {
    let size = usize::try_from(page.limit - 1).unwrap_or(0);
    let more = rows.len() > size;
    rows.truncate(size);
    let next_page_token = match rows.last() {
        Some(last) if more => id(last).to_string(),
        _ => String::new(),
    };
    (rows, next_page_token)
}
