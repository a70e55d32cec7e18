//! The application handlers: each command validates its request, then writes its row and names
//! its messages inside one unit of work (`service_runtime::unit_of_work`). The gRPC server and the
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
use service_runtime::outbox::{self, Subject};
use service_runtime::paging::next_page_token;
use service_runtime::unit_of_work::{Decision, execute};
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
        execute(
            &self.pool,
            ctx,
            "tracking.create_event",
            &request,
            async |tx| {
                let now = messages::now();
                let row = repo::insert_event(tx, Uuid::now_v7(), &new, now).await?;
                let event = messages::tracking_event(&row);
                let created = outbox::event::<pb::TrackingEventEnvelope>(
                    ctx,
                    Subject::new(messages::TRACKING_EVENT, row.id, messages::VERSION),
                    now,
                    Event::TrackingEventCreated(TrackingEventCreated {
                        event: Some(event.clone()),
                    }),
                );
                let calculate = messages::calculate_command(ctx, &row, created.message_id, now);
                Ok(Decision::with_all(
                    pb::CreateEventResponse { event: Some(event) },
                    std::iter::once(created).chain(calculate),
                ))
            },
        )
        .await
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
        let new = domain::validate_new_evidence(SubmitEvidenceInput {
            campaign_id: &request.campaign_id,
            creator_id: &request.creator_id,
            kind: messages::evidence_kind_from_proto(request.kind),
            url: &request.url,
            note: &request.note,
        })?;
        execute(
            &self.pool,
            ctx,
            "tracking.submit_evidence",
            &request,
            async |tx| {
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
            },
        )
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
