//! Recording tracking events set-based: many CreateEvent commands in one transaction of a
//! handful of statements, whichever door they came through. The gRPC door queues concurrent
//! calls and writes whatever is waiting as one set ([`EventWriter`], a group commit); the
//! command topic's door runs its batch as one set.
//!
//! Per set: every idempotency key claimed in one statement, every (campaign, creator) standing
//! read in one, every event inserted in one, every outbox row appended in one, every response
//! stored in one. A command that is invalid or not attributed writes nothing; the others go on.

use std::collections::HashMap;

use sqlx::PgConnection;
use uuid::Uuid;

use affiliate_proto::tracking::{self as pb, TrackingEventCreated, tracking_event_envelope::Event};
use service_runtime::context::CommandContext;
use service_runtime::group_commit::SetWriter;
use service_runtime::outbox::{self, Subject};
use service_runtime::unit_of_work::{Decision, execute_set};

use super::{Attribution, Error, messages};
use crate::adapters::repository as repo;
use crate::domain::{self, CreateEventInput, NewEvent, Unattributed};

/// The idempotency record's operation name.
pub const OPERATION: &str = "tracking.create_event";

/// One CreateEvent command: the context it came with and its request.
pub type CreateEvent = (CommandContext, pb::CreateEventRequest);

/// Checks a request in memory (no database): the event it would record, or every problem.
pub fn validate(request: &pb::CreateEventRequest) -> Result<NewEvent, Error> {
    Ok(domain::validate_new_event(
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
    )?)
}

/// Records every event of `set` in the caller's transaction: one outcome per command, in order.
/// `Err` only when the database failed (the transaction is then unusable).
pub async fn create_events(
    conn: &mut PgConnection,
    attribution: &Attribution,
    set: &[CreateEvent],
) -> Result<Vec<Result<pb::CreateEventResponse, Error>>, Error> {
    execute_set(conn, OPERATION, set, async |conn, run| {
        let mut decisions: Vec<Option<Result<Decision<pb::CreateEventResponse>, Error>>> =
            run.iter().map(|_| None).collect();
        let mut valid: Vec<(usize, NewEvent)> = Vec::with_capacity(run.len());
        for (n, &i) in run.iter().enumerate() {
            match validate(&set[i].1) {
                Ok(new) => valid.push((n, new)),
                Err(e) => decisions[n] = Some(Err(e)),
            }
        }
        let pairs: Vec<(Uuid, Uuid)> = valid
            .iter()
            .map(|(_, new)| (new.campaign_id, new.creator_id))
            .collect();
        let standings = if pairs.is_empty() {
            HashMap::new()
        } else {
            repo::standings(conn, &pairs).await?
        };
        let now = messages::now();
        let mut rows = Vec::with_capacity(valid.len());
        let mut recorded = Vec::with_capacity(valid.len());
        for (n, new) in valid {
            let ctx = &set[run[n]].0;
            let standing = standings.get(&(new.campaign_id, new.creator_id)).copied();
            match domain::check_attribution(standing) {
                Ok(()) => {
                    rows.push((Uuid::now_v7(), new));
                    recorded.push(n);
                }
                Err(why) => {
                    decisions[n] = Some(Err(unattributed_error(
                        attribution,
                        ctx,
                        new.campaign_id,
                        new.creator_id,
                        why,
                    )));
                }
            }
        }
        let ids: Vec<Uuid> = rows.iter().map(|(id, _)| *id).collect();
        let mut inserted: HashMap<Uuid, repo::TrackingEventRow> =
            repo::insert_events(conn, &rows, now)
                .await?
                .into_iter()
                .map(|row| (row.id, row))
                .collect();
        for (n, id) in recorded.into_iter().zip(ids) {
            let Some(row) = inserted.remove(&id) else {
                decisions[n] = Some(Err(Error::Internal(anyhow::anyhow!(
                    "event {id} was not inserted"
                ))));
                continue;
            };
            let ctx = &set[run[n]].0;
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
            decisions[n] = Some(Ok(Decision::with_all(
                pb::CreateEventResponse { event: Some(event) },
                std::iter::once(created).chain(calculate),
            )));
        }
        Ok(decisions
            .into_iter()
            .map(|d| d.unwrap_or_else(|| Err(Error::Internal(anyhow::anyhow!("left undecided")))))
            .collect())
    })
    .await
}

/// The error of an event or a link the copy does not attribute: "not yet" while the copy may be
/// behind, then NOT_FOUND for an unknown campaign and FAILED_PRECONDITION for the rest.
pub(super) fn unattributed_error(
    attribution: &Attribution,
    ctx: &CommandContext,
    campaign_id: Uuid,
    creator_id: Uuid,
    why: Unattributed,
) -> Error {
    if !attribution.patience(ctx).is_zero() {
        return Error::NotYet(format!(
            "campaign {campaign_id}: {why} (yet; tracking's copy of the campaigns may be behind)"
        ));
    }
    match why {
        Unattributed::UnknownCampaign => Error::NotFound {
            what: "campaign",
            id: campaign_id.to_string(),
        },
        Unattributed::NotAccepted => Error::Precondition(format!(
            "creator {creator_id} has not accepted campaign {campaign_id}"
        )),
        Unattributed::NotActive(_) => Error::Precondition(format!("campaign {campaign_id}: {why}")),
    }
}

/// The gRPC door's group commit: concurrent CreateEvent calls written as one set.
#[derive(Debug, Clone)]
pub struct EventWriter {
    pub attribution: Attribution,
}

impl SetWriter for EventWriter {
    type Item = CreateEvent;
    type Output = pb::CreateEventResponse;
    const OPERATION: &'static str = OPERATION;

    fn key((ctx, _): &CreateEvent) -> Option<&str> {
        ctx.idempotency_key.as_deref()
    }

    async fn write_set(
        &self,
        conn: &mut PgConnection,
        items: &[CreateEvent],
    ) -> Result<Vec<Result<pb::CreateEventResponse, Error>>, Error> {
        create_events(conn, &self.attribution, items).await
    }
}
