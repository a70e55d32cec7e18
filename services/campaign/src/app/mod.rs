//! The application handlers: each command validates its request, then decides inside one unit of
//! work (`service_runtime::unit_of_work`: the transaction, the idempotency key, the outbox): lock
//! the campaign, check the rule, write, and name the event. The gRPC server and the
//! command-topic consumer both call these, so a command has the same effect whichever door it
//! came through.

mod error;
pub mod messages;

use prost::Message;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use affiliate_proto::campaign::{
    self as pb, BudgetUpdated, CampaignAccepted, CampaignCreated, CampaignStatusChanged,
    TrackingSettingsUpdated, VideoAdded, campaign_event::Event,
};
use affiliate_proto::common::Money;
use service_runtime::context::CommandContext;
use service_runtime::paging::next_page_token;
use service_runtime::unit_of_work::{Decision, execute};

use crate::adapters::repository as repo;
use crate::domain::{
    self, CreateCampaignInput, DurationInput, FieldViolation, PauseReason, StatusChange,
    TrackingInput,
};
pub use error::Error;

/// Default and largest ListCampaigns page.
pub const DEFAULT_PAGE_SIZE: i32 = 20;
pub const MAX_PAGE_SIZE: i32 = 100;

/// The campaign use cases over one database.
#[derive(Debug, Clone)]
pub struct Campaigns {
    pool: PgPool,
}

impl Campaigns {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Creates an active campaign and publishes `campaign.created.v1`. Without a hold period its
    /// commissions stay pending for the default 30 days.
    pub async fn create_campaign(
        &self,
        ctx: &CommandContext,
        request: pb::CreateCampaignRequest,
    ) -> Result<pb::CreateCampaignResponse, Error> {
        let new = domain::validate_new_campaign(CreateCampaignInput {
            advertiser_id: &request.advertiser_id,
            name: &request.name,
            description: &request.description,
            commission_rate_bps: request.commission_rate_bps,
            budget: request
                .budget
                .as_ref()
                .map(|b| (b.amount_minor, b.currency.as_str())),
            tracking: request.tracking.as_ref().map(tracking_input),
            hold_period: request.hold_period.as_ref().map(|d| DurationInput {
                seconds: d.seconds,
                nanos: d.nanos,
            }),
        })?;
        execute(&self.pool, ctx, "campaign.create", &request, async |tx| {
            let now = messages::now();
            let row = repo::insert_campaign(tx, Uuid::now_v7(), &new, now).await?;
            let campaign = messages::campaign(&row);
            let event = Event::CampaignCreated(CampaignCreated {
                campaign: Some(campaign.clone()),
            });
            Ok(Decision::with(
                pb::CreateCampaignResponse {
                    campaign: Some(campaign),
                },
                messages::event_message(ctx, row.id, row.version, now, event),
            ))
        })
        .await
    }

    /// Attaches a video and publishes `video.added.v1`.
    pub async fn add_video(
        &self,
        ctx: &CommandContext,
        request: pb::AddVideoRequest,
    ) -> Result<pb::AddVideoResponse, Error> {
        let new = domain::validate_new_video(&request.campaign_id, &request.url, &request.title)?;
        execute(
            &self.pool,
            ctx,
            "campaign.add_video",
            &request,
            async |tx| {
                let current = locked(tx, new.campaign_id).await?;
                domain::check_can_add_video(status_of(&current)?)?;
                let now = messages::now();
                let row = repo::insert_video(tx, Uuid::now_v7(), &new, now).await?;
                let version = repo::bump_version(tx, new.campaign_id, now).await?;
                let video = messages::video(&row);
                let event = Event::VideoAdded(VideoAdded {
                    video: Some(video.clone()),
                });
                Ok(Decision::with(
                    pb::AddVideoResponse { video: Some(video) },
                    messages::event_message(ctx, new.campaign_id, version, now, event),
                ))
            },
        )
        .await
    }

    /// Records a creator's acceptance of an active campaign and publishes `campaign.accepted.v1`.
    pub async fn accept_campaign(
        &self,
        ctx: &CommandContext,
        request: pb::AcceptCampaignRequest,
    ) -> Result<pb::AcceptCampaignResponse, Error> {
        let new = domain::validate_acceptance(
            &request.campaign_id,
            &request.creator_id,
            request.accepted_terms,
        )?;
        execute(&self.pool, ctx, "campaign.accept", &request, async |tx| {
            let current = locked(tx, new.campaign_id).await?;
            domain::check_can_accept(status_of(&current)?)?;
            let now = messages::now();
            let row = match repo::insert_acceptance(tx, &new, now).await {
                Err(e) if repo::violates(&e, "acceptances_pkey") => {
                    return Err(Error::AlreadyExists(format!(
                        "creator {} has already accepted campaign {}",
                        new.creator_id, new.campaign_id
                    )));
                }
                other => other?,
            };
            let version = repo::bump_version(tx, new.campaign_id, now).await?;
            let accepted = messages::acceptance(&row);
            let event = Event::CampaignAccepted(CampaignAccepted {
                acceptance: Some(accepted.clone()),
            });
            Ok(Decision::with(
                pb::AcceptCampaignResponse {
                    acceptance: Some(accepted),
                },
                messages::event_message(ctx, new.campaign_id, version, now, event),
            ))
        })
        .await
    }

    /// Pauses an active campaign; publishes `campaign.status_changed.v1`. With reason
    /// `BUDGET_EXHAUSTED` (the commission service's command) only while the campaign's budget is
    /// still the one that was spent.
    pub async fn pause_campaign(
        &self,
        ctx: &CommandContext,
        request: pb::PauseCampaignRequest,
    ) -> Result<pb::PauseCampaignResponse, Error> {
        let reason = match pb::PauseReason::try_from(request.reason) {
            Ok(pb::PauseReason::Unspecified) => PauseReason::Advertiser,
            Ok(pb::PauseReason::BudgetExhausted) => PauseReason::BudgetExhausted,
            Err(_) => {
                return Err(Error::Invalid(vec![FieldViolation::new(
                    "reason",
                    "unknown pause reason",
                )]));
            }
        };
        let exhausted = match (reason, &request.exhausted_budget) {
            (PauseReason::Advertiser, _) => None,
            (PauseReason::BudgetExhausted, Some(b)) => Some((b.amount_minor, b.currency.clone())),
            (PauseReason::BudgetExhausted, None) => {
                return Err(Error::Invalid(vec![FieldViolation::new(
                    "exhausted_budget",
                    "is required with reason PAUSE_REASON_BUDGET_EXHAUSTED",
                )]));
            }
        };
        let campaign = self
            .change_status(
                ctx,
                "campaign.pause",
                &request,
                &request.campaign_id,
                |row| {
                    let next = match &exhausted {
                        None => domain::check_status_change(status_of(row)?, StatusChange::Pause)?,
                        Some((amount, currency)) => domain::check_budget_pause(
                            &budget_state(row)?,
                            (*amount, currency.as_str()),
                        )?,
                    };
                    Ok((next, Some(reason)))
                },
            )
            .await?;
        Ok(pb::PauseCampaignResponse {
            campaign: Some(campaign),
        })
    }

    /// Resumes a paused campaign; publishes `campaign.status_changed.v1`.
    pub async fn resume_campaign(
        &self,
        ctx: &CommandContext,
        request: pb::ResumeCampaignRequest,
    ) -> Result<pb::ResumeCampaignResponse, Error> {
        let campaign = self
            .change_status(
                ctx,
                "campaign.resume",
                &request,
                &request.campaign_id,
                |row| {
                    Ok((
                        domain::check_status_change(status_of(row)?, StatusChange::Resume)?,
                        None,
                    ))
                },
            )
            .await?;
        Ok(pb::ResumeCampaignResponse {
            campaign: Some(campaign),
        })
    }

    /// Closes an active or paused campaign; publishes `campaign.status_changed.v1`.
    pub async fn close_campaign(
        &self,
        ctx: &CommandContext,
        request: pb::CloseCampaignRequest,
    ) -> Result<pb::CloseCampaignResponse, Error> {
        let campaign = self
            .change_status(
                ctx,
                "campaign.close",
                &request,
                &request.campaign_id,
                |row| {
                    Ok((
                        domain::check_status_change(status_of(row)?, StatusChange::Close)?,
                        None,
                    ))
                },
            )
            .await?;
        Ok(pb::CloseCampaignResponse {
            campaign: Some(campaign),
        })
    }

    /// Sets a campaign's budget; publishes `campaign.budget_updated.v1`. A campaign paused for a
    /// spent budget is resumed by a larger one.
    pub async fn update_budget(
        &self,
        ctx: &CommandContext,
        request: pb::UpdateBudgetRequest,
    ) -> Result<pb::UpdateBudgetResponse, Error> {
        let update = domain::validate_budget_update(
            &request.campaign_id,
            request
                .budget
                .as_ref()
                .map(|b| (b.amount_minor, b.currency.as_str())),
        )?;
        execute(
            &self.pool,
            ctx,
            "campaign.update_budget",
            &request,
            async |tx| {
                let current = locked(tx, update.campaign_id).await?;
                let next = domain::check_budget_update(&budget_state(&current)?, &update)?;
                let now = messages::now();
                let row = repo::set_budget(tx, update.campaign_id, update.budget_minor, next, now)
                    .await?;
                let campaign = messages::campaign(&row);
                let event = Event::BudgetUpdated(BudgetUpdated {
                    campaign: Some(campaign.clone()),
                    previous_budget: Some(Money {
                        amount_minor: current.budget_minor,
                        currency: current.currency.clone(),
                    }),
                    resumed: current.status() != Some(next),
                });
                Ok(Decision::with(
                    pb::UpdateBudgetResponse {
                        campaign: Some(campaign),
                    },
                    messages::event_message(ctx, row.id, row.version, now, event),
                ))
            },
        )
        .await
    }

    /// Replaces the tracking settings of an active or paused campaign; publishes
    /// `campaign.tracking_updated.v1` with the campaign after the change.
    pub async fn update_tracking_settings(
        &self,
        ctx: &CommandContext,
        request: pb::UpdateTrackingSettingsRequest,
    ) -> Result<pb::UpdateTrackingSettingsResponse, Error> {
        let update = domain::validate_tracking_update(
            &request.campaign_id,
            request.tracking.as_ref().map(tracking_input),
        )?;
        execute(
            &self.pool,
            ctx,
            "campaign.update_tracking",
            &request,
            async |tx| {
                let current = locked(tx, update.campaign_id).await?;
                domain::check_can_update_tracking(status_of(&current)?)?;
                let now = messages::now();
                let row = repo::set_tracking(tx, update.campaign_id, &update.tracking, now).await?;
                let campaign = messages::campaign(&row);
                let event = Event::TrackingUpdated(TrackingSettingsUpdated {
                    campaign: Some(campaign.clone()),
                });
                Ok(Decision::with(
                    pb::UpdateTrackingSettingsResponse {
                        campaign: Some(campaign),
                    },
                    messages::event_message(ctx, row.id, row.version, now, event),
                ))
            },
        )
        .await
    }

    /// A status change: `rule` gives the status after it (and why it is paused, if it is) from the
    /// locked campaign, or refuses it.
    async fn change_status<Req: Message>(
        &self,
        ctx: &CommandContext,
        operation: &'static str,
        request: &Req,
        campaign_id: &str,
        rule: impl FnOnce(
            &repo::CampaignRow,
        ) -> Result<(domain::CampaignStatus, Option<PauseReason>), Error>,
    ) -> Result<pb::Campaign, Error> {
        let id = domain::parse_id("campaign_id", campaign_id)?;
        execute(&self.pool, ctx, operation, request, async |tx| {
            let current = locked(tx, id).await?;
            let previous = status_of(&current)?;
            let (next, reason) = rule(&current)?;
            let now = messages::now();
            let row = repo::set_status(tx, id, next, reason, now).await?;
            let campaign = messages::campaign(&row);
            let event = Event::CampaignStatusChanged(CampaignStatusChanged {
                campaign_id: id.to_string(),
                previous_status: messages::status_to_proto(Some(previous)).into(),
                campaign: Some(campaign.clone()),
            });
            Ok(Decision::with(
                campaign,
                messages::event_message(ctx, id, row.version, now, event),
            ))
        })
        .await
    }

    /// One campaign with its videos.
    pub async fn get_campaign(
        &self,
        request: pb::GetCampaignRequest,
    ) -> Result<pb::GetCampaignResponse, Error> {
        let id = domain::parse_id("campaign_id", &request.campaign_id)?;
        let mut conn = self.pool.acquire().await?;
        let row = repo::find_campaign(&mut conn, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let videos = repo::videos_of(&mut conn, id).await?;
        Ok(pb::GetCampaignResponse {
            campaign: Some(messages::campaign(&row)),
            videos: videos.iter().map(messages::video).collect(),
        })
    }

    /// A page of campaigns, newest first.
    pub async fn list_campaigns(
        &self,
        request: pb::ListCampaignsRequest,
    ) -> Result<pb::ListCampaignsResponse, Error> {
        let mut violations = Vec::new();
        let page_size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            _ => {
                violations.push(FieldViolation::new(
                    "page_size",
                    format!("must be between 0 and {MAX_PAGE_SIZE}"),
                ));
                DEFAULT_PAGE_SIZE
            }
        };
        let before = optional_id("page_token", &request.page_token, &mut violations);
        let advertiser = optional_id("advertiser_id", &request.advertiser_id, &mut violations);
        let status = match pb::CampaignStatus::try_from(request.status) {
            Ok(pb::CampaignStatus::Unspecified) => None,
            Ok(pb::CampaignStatus::Active) => Some(domain::CampaignStatus::Active),
            Ok(pb::CampaignStatus::Paused) => Some(domain::CampaignStatus::Paused),
            Ok(pb::CampaignStatus::Closed) => Some(domain::CampaignStatus::Closed),
            Err(_) => {
                violations.push(FieldViolation::new("status", "unknown campaign status"));
                None
            }
        };
        if !violations.is_empty() {
            return Err(Error::Invalid(violations));
        }
        let mut conn = self.pool.acquire().await?;
        // One extra row tells whether another page exists.
        let mut rows = repo::list_campaigns(
            &mut conn,
            advertiser,
            status,
            before,
            i64::from(page_size) + 1,
        )
        .await?;
        let next_page_token = next_page_token(&mut rows, i64::from(page_size), |r| r.id);
        Ok(pb::ListCampaignsResponse {
            campaigns: rows.iter().map(messages::campaign).collect(),
            next_page_token,
        })
    }
}

fn not_found(id: Uuid) -> Error {
    Error::NotFound {
        what: "campaign",
        id: id.to_string(),
    }
}

fn optional_id(field: &str, value: &str, violations: &mut Vec<FieldViolation>) -> Option<Uuid> {
    if value.is_empty() {
        return None;
    }
    match domain::parse_id(field, value) {
        Ok(id) => Some(id),
        Err(v) => {
            violations.push(v);
            None
        }
    }
}

async fn locked(conn: &mut PgConnection, id: Uuid) -> Result<repo::CampaignRow, Error> {
    repo::lock_campaign(conn, id)
        .await?
        .ok_or_else(|| not_found(id))
}

/// A request's tracking settings as the domain checks them.
fn tracking_input(t: &pb::TrackingSettings) -> TrackingInput<'_> {
    TrackingInput {
        landing_url: &t.landing_url,
        landing_domains: &t.landing_domains,
        click_id_param: &t.click_id_param,
        attribution_window: t.attribution_window.as_ref().map(|d| DurationInput {
            seconds: d.seconds,
            nanos: d.nanos,
        }),
        min_click_to_conversion: t.min_click_to_conversion.as_ref().map(|d| DurationInput {
            seconds: d.seconds,
            nanos: d.nanos,
        }),
        fallback_url: &t.fallback_url,
    }
}

fn budget_state(row: &repo::CampaignRow) -> Result<domain::BudgetState<'_>, Error> {
    Ok(domain::BudgetState {
        status: status_of(row)?,
        pause_reason: row.pause_reason(),
        budget_minor: row.budget_minor,
        currency: &row.currency,
    })
}

fn status_of(row: &repo::CampaignRow) -> Result<domain::CampaignStatus, Error> {
    row.status().ok_or_else(|| {
        Error::Internal(anyhow::anyhow!(
            "campaign {} has unknown status `{}`",
            row.id,
            row.status
        ))
    })
}
