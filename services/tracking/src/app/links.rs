//! Tracking links: created by a creator who accepted an active campaign with a landing URL,
//! listed, disabled. Each change publishes its event (`link.created.v1`, `link.disabled.v1`);
//! the redirect edge reads the links themselves from this database.

use uuid::Uuid;

use affiliate_proto::tracking::{
    self as pb, LinkCreated, LinkDisabled, tracking_event_envelope::Event,
};
use service_runtime::context::CommandContext;
use service_runtime::outbox::{self, Subject};
use service_runtime::paging::next_page_token;
use service_runtime::unit_of_work::{Decision, execute};
use service_runtime::validation::FieldViolation;

use super::{Error, Tracking, create::unattributed_error, messages, page};
use crate::adapters::links::{self as repo, LinkRow};
use crate::domain;
use crate::domain::links::{self, CreateLinkInput};

/// How many times a new link draws a code when the one drawn is taken (59 random bits: never,
/// in practice).
const CODE_DRAWS: usize = 3;

impl Tracking {
    /// [`Tracking::create_link`], waiting while the copy of the campaigns may still be behind.
    pub async fn create_link_waiting(
        &self,
        ctx: &CommandContext,
        request: pb::CreateLinkRequest,
    ) -> Result<pb::CreateLinkResponse, Error> {
        self.waiting(ctx, || self.create_link(ctx, request.clone()))
            .await
    }

    /// Creates a creator's link for a campaign and publishes `link.created.v1`.
    pub async fn create_link(
        &self,
        ctx: &CommandContext,
        request: pb::CreateLinkRequest,
    ) -> Result<pb::CreateLinkResponse, Error> {
        self.create_link_in(&self.pool, ctx, request).await
    }

    /// [`Tracking::create_link`] on `db` (a pool, or a connection in the command door's set).
    pub async fn create_link_in<'c>(
        &self,
        db: impl sqlx::Acquire<'c, Database = sqlx::Postgres>,
        ctx: &CommandContext,
        request: pb::CreateLinkRequest,
    ) -> Result<pb::CreateLinkResponse, Error> {
        let subs = request.sub_ids.clone().unwrap_or_default();
        let new = links::validate_new_link(CreateLinkInput {
            campaign_id: &request.campaign_id,
            creator_id: &request.creator_id,
            sub_ids: [&subs.sub1, &subs.sub2, &subs.sub3, &subs.sub4, &subs.sub5],
            deep_link: &request.deep_link,
        })?;
        execute(db, ctx, "tracking.create_link", &request, async |tx| {
            let found = repo::campaign_for_link(tx, new.campaign_id, new.creator_id).await?;
            let standing = found.as_ref().map(|(s, _)| *s);
            if let Err(why) = domain::check_attribution(standing) {
                return Err(unattributed_error(
                    &self.attribution,
                    ctx,
                    new.campaign_id,
                    new.creator_id,
                    why,
                ));
            }
            let Some(settings) = found.and_then(|(_, settings)| settings) else {
                return Err(Error::Precondition(format!(
                    "campaign {} has no landing URL yet: its advertiser sets one \
                     (UpdateTrackingSettings) before creators make links",
                    new.campaign_id
                )));
            };
            if let Some(deep_link) = &new.deep_link {
                links::allowed_destination(deep_link, &settings).map_err(|why| {
                    Error::Invalid(vec![FieldViolation::new("deep_link", why.to_string())])
                })?;
            }
            let now = messages::now();
            let mut inserted = None;
            for _ in 0..CODE_DRAWS {
                let code = links::new_code();
                inserted = repo::insert_link(tx, Uuid::now_v7(), &code, &new, now).await?;
                if inserted.is_some() {
                    break;
                }
            }
            let row = inserted.ok_or_else(|| {
                Error::Unavailable(anyhow::anyhow!("no free link code in {CODE_DRAWS} draws"))
            })?;
            let link = messages::link(&row);
            Ok(Decision::with(
                pb::CreateLinkResponse {
                    link: Some(link.clone()),
                },
                outbox::event::<pb::TrackingEventEnvelope>(
                    ctx,
                    Subject::new(messages::LINK, row.id, row.version),
                    now,
                    Event::LinkCreated(LinkCreated { link: Some(link) }),
                ),
            ))
        })
        .await
    }

    /// Disables a link for good and publishes `link.disabled.v1` (once: disabling a disabled
    /// link answers it as it is and publishes nothing).
    pub async fn disable_link(
        &self,
        ctx: &CommandContext,
        request: pb::DisableLinkRequest,
    ) -> Result<pb::DisableLinkResponse, Error> {
        self.disable_link_in(&self.pool, ctx, request).await
    }

    /// [`Tracking::disable_link`] on `db`.
    pub async fn disable_link_in<'c>(
        &self,
        db: impl sqlx::Acquire<'c, Database = sqlx::Postgres>,
        ctx: &CommandContext,
        request: pb::DisableLinkRequest,
    ) -> Result<pb::DisableLinkResponse, Error> {
        let id = domain::parse_id("link_id", &request.link_id)?;
        execute(db, ctx, "tracking.disable_link", &request, async |tx| {
            let now = messages::now();
            let (row, changed) = repo::disable_link(tx, id, now)
                .await?
                .ok_or_else(|| Error::not_found("link", id))?;
            let link = messages::link(&row);
            let response = pb::DisableLinkResponse {
                link: Some(link.clone()),
            };
            if !changed {
                return Ok(Decision::with_all(response, []));
            }
            Ok(Decision::with(
                response,
                outbox::event::<pb::TrackingEventEnvelope>(
                    ctx,
                    Subject::new(messages::LINK, row.id, row.version),
                    now,
                    Event::LinkDisabled(LinkDisabled { link: Some(link) }),
                ),
            ))
        })
        .await
    }

    pub async fn get_link(
        &self,
        request: pb::GetLinkRequest,
    ) -> Result<pb::GetLinkResponse, Error> {
        let id = domain::parse_id("link_id", &request.link_id)?;
        let mut conn = self.pool.acquire().await?;
        let row = repo::find_link(&mut conn, id)
            .await?
            .ok_or_else(|| Error::not_found("link", id))?;
        Ok(pb::GetLinkResponse {
            link: Some(messages::link(&row)),
        })
    }

    /// A page of links, newest first, by campaign and/or creator.
    pub async fn list_links(
        &self,
        request: pb::ListLinksRequest,
    ) -> Result<pb::ListLinksResponse, Error> {
        let page = page(
            request.page_size,
            &request.page_token,
            &request.campaign_id,
            &request.creator_id,
        )?;
        let mut conn = self.pool.acquire().await?;
        let mut rows: Vec<LinkRow> = repo::list_links(&mut conn, page).await?;
        let next_page_token = next_page_token(&mut rows, page.limit - 1, |r| r.id);
        Ok(pb::ListLinksResponse {
            links: rows.iter().map(messages::link).collect(),
            next_page_token,
        })
    }
}
