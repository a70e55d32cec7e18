//! A commission's life after its calculation: approved when its campaign's hold ends (a scheduled
//! transition, [`approve_due`]) or earlier by the advertiser, or declined by the advertiser.
//!
//! The hold's end is a due-time index polled by the service (`commissions_due_idx`), not delayed
//! messages: the transition is a conditional update in the same transaction as its ledger
//! transfers and events, so it survives restarts and applies once (a commission approved, declined
//! or reversed meanwhile is no longer pending); a backlog (a million due at midnight) is taken in
//! batches of thousands by one statement each, which delayed messages (one delivery, one
//! transaction per commission, held in the broker's memory) cannot match; and an early approval
//! needs no message cancelled.
//!
//! Locks follow the service's one order: campaigns' terms, then balances, then commissions, each
//! ascending.

use std::collections::HashMap;

use sqlx::{Acquire, PgConnection, PgPool, Postgres};
use uuid::Uuid;

use affiliate_proto::commission::{
    self as pb, CommissionApproved, CommissionDeclined, commission_event::Event,
};
use service_runtime::context::CommandContext;
use service_runtime::outbox::{self, OutboxMessage, Subject};
use service_runtime::unit_of_work::{Decision, execute};
use service_runtime::validation::{FieldViolation, Violations, parse_id};

use super::{Commissions, Error, messages};
use crate::adapters::ledger::{self, TransferRow};
use crate::adapters::repository::{self as repo, BalanceRow, CommissionRow};
use crate::domain::ledger::{Account, Life, Movement, Transfer};

/// Most commissions one approval or decline names.
pub const MAX_BULK: usize = 100;
/// Longest decline reason, in characters.
const MAX_REASON: usize = 500;

/// A bulk request's advertiser and distinct commission ids.
fn parse_bulk(
    v: &mut Violations,
    advertiser_id: &str,
    ids: &[String],
) -> Option<(Uuid, Vec<Uuid>)> {
    let advertiser = v.check(parse_id("advertiser_id", advertiser_id));
    if ids.is_empty() || ids.len() > MAX_BULK {
        v.push(FieldViolation::new(
            "commission_ids",
            format!("must name 1 to {MAX_BULK} commissions, not {}", ids.len()),
        ));
        return None;
    }
    let mut parsed = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let field = format!("commission_ids[{i}]");
        match v.check(parse_id(&field, id)) {
            Some(id) if parsed.contains(&id) => {
                v.push(FieldViolation::new(field, "names a commission twice"));
            }
            Some(id) => parsed.push(id),
            None => {}
        }
    }
    advertiser.map(|a| (a, parsed))
}

/// The ledger transfer of a commission's change of life.
fn transfer_row(row: &CommissionRow, transfer: Transfer, reference: Option<String>) -> TransferRow {
    TransferRow {
        entry_id: Uuid::now_v7(),
        transfer,
        currency: row.currency.clone(),
        commission_id: Some(row.id),
        payout_id: None,
        reference,
        at: row.decided_at.unwrap_or_else(messages::now),
    }
}

/// What a set of approvals or declines writes.
#[derive(Default)]
struct Changes {
    commissions: Vec<CommissionRow>,
    transfers: Vec<TransferRow>,
    messages: Vec<OutboxMessage>,
}

impl Changes {
    async fn write(
        self,
        conn: &mut PgConnection,
        balances: &HashMap<(Uuid, String), BalanceRow>,
    ) -> Result<Vec<CommissionRow>, Error> {
        let rows: Vec<&CommissionRow> = self.commissions.iter().collect();
        repo::save_commissions(conn, &rows).await?;
        ledger::insert_transfers(conn, &self.transfers).await?;
        let changed: Vec<&BalanceRow> = balances.values().collect();
        repo::set_balances(conn, &changed).await?;
        outbox::append_set(conn, &self.messages)
            .await
            .map_err(Error::Internal)?;
        Ok(self.commissions)
    }
}

/// Approves a locked pending commission: its open money from pending to available.
fn approve(
    ctx: &CommandContext,
    row: &mut CommissionRow,
    balance: &mut BalanceRow,
    early: bool,
    now: chrono::DateTime<chrono::Utc>,
    changes: &mut Changes,
) {
    let open = row.amount_minor - row.reversed_minor;
    row.status = Life::Approved.code().to_owned();
    row.decided_at = Some(now);
    row.version += 1;
    balance.pending_minor -= open;
    balance.available_minor += open;
    let creator = row.creator_id;
    changes.transfers.extend(
        Transfer::of(
            Movement::Approval,
            Account::Pending(creator),
            Account::Available(creator),
            open,
        )
        .map(|t| transfer_row(row, t, None)),
    );
    changes.messages.push(outbox::event::<pb::CommissionEvent>(
        ctx,
        Subject::new(messages::COMMISSION, row.id, row.version),
        now,
        Event::CommissionApproved(CommissionApproved {
            commission: Some(messages::commission(row)),
            balance: Some(messages::balance(balance)),
            early,
        }),
    ));
}

/// How many commissions one round of [`approve_due`] approved, and whether it found a full batch
/// due (more may be waiting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub approved: usize,
    pub full: bool,
}

/// Approves up to `limit` commissions whose hold ended by `now`, in one transaction: a handful of
/// statements whatever the batch's size.
pub async fn approve_due(
    pool: &PgPool,
    now: chrono::DateTime<chrono::Utc>,
    limit: i64,
) -> Result<Round, Error> {
    let mut tx = pool.begin().await?;
    let due = repo::due_commissions(&mut tx, now, limit).await?;
    let full = i64::try_from(due.len()).unwrap_or(i64::MAX) >= limit;
    if due.is_empty() {
        return Ok(Round { approved: 0, full });
    }
    let keys: Vec<(Uuid, String)> = due.iter().map(|(_, c, cur)| (*c, cur.clone())).collect();
    let mut balances = repo::lock_balances(&mut tx, &keys).await?;
    let ids: Vec<Uuid> = due.iter().map(|(id, _, _)| *id).collect();
    let rows = repo::lock_due(&mut tx, &ids, now).await?;
    let mut changes = Changes::default();
    for mut row in rows {
        let Some(balance) = balances.get_mut(&(row.creator_id, row.currency.clone())) else {
            continue;
        };
        // Each approval continues its commission's own story.
        let ctx = CommandContext {
            correlation_id: row.id.simple().to_string(),
            ..CommandContext::new()
        };
        approve(&ctx, &mut row, balance, false, now, &mut changes);
        changes.commissions.push(row);
    }
    let approved = changes.commissions.len();
    changes.write(&mut tx, &balances).await?;
    tx.commit().await?;
    Ok(Round { approved, full })
}

/// Approves commissions whose hold has ended, every `interval`, and at once again after a full
/// batch (a backlog drains at the batch's speed), until `token` is cancelled. Waiting refunds
/// whose commission has arrived are applied in the same loop.
pub async fn hold_loop(
    commissions: Commissions,
    interval: std::time::Duration,
    batch: i64,
    token: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let pool = commissions.pool().clone();
    loop {
        let mut busy = false;
        match approve_due(&pool, messages::now(), batch).await {
            Ok(round) => {
                if round.approved > 0 {
                    tracing::info!(
                        approved = round.approved,
                        "holds ended: commissions approved"
                    );
                }
                busy |= round.full;
            }
            Err(e) => {
                tracing::warn!(error = %e, "approving commissions whose hold ended failed; retrying")
            }
        }
        match super::reverse::apply_waiting(&commissions, 100).await {
            Ok(applied) => busy |= applied >= 100,
            Err(e) => tracing::warn!(error = %e, "applying waiting refunds failed; retrying"),
        }
        if busy {
            if token.is_cancelled() {
                return Ok(());
            }
            continue;
        }
        tokio::select! {
            () = token.cancelled() => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
    }
}

impl Commissions {
    /// Approves an advertiser's pending commissions before their hold ends; all or nothing.
    pub async fn approve_commissions(
        &self,
        ctx: &CommandContext,
        request: pb::ApproveCommissionsRequest,
    ) -> Result<pb::ApproveCommissionsResponse, Error> {
        self.approve_on(self.pool(), ctx, request).await
    }

    /// [`Commissions::approve_commissions`] on `db` (a pool, or a connection in a transaction).
    pub async fn approve_on<'c>(
        &self,
        db: impl Acquire<'c, Database = Postgres>,
        ctx: &CommandContext,
        request: pb::ApproveCommissionsRequest,
    ) -> Result<pb::ApproveCommissionsResponse, Error> {
        let mut v = Violations::new();
        let parsed = parse_bulk(&mut v, &request.advertiser_id, &request.commission_ids);
        let (advertiser, ids) = v.finish(parsed)?;
        let commissions = decide(
            db,
            ctx,
            "commission.approve",
            &request,
            advertiser,
            &ids,
            None,
        )
        .await?;
        Ok(pb::ApproveCommissionsResponse { commissions })
    }

    /// Declines an advertiser's pending commissions, with a reason; all or nothing.
    pub async fn decline_commissions(
        &self,
        ctx: &CommandContext,
        request: pb::DeclineCommissionsRequest,
    ) -> Result<pb::DeclineCommissionsResponse, Error> {
        self.decline_on(self.pool(), ctx, request).await
    }

    /// [`Commissions::decline_commissions`] on `db` (a pool, or a connection in a transaction).
    pub async fn decline_on<'c>(
        &self,
        db: impl Acquire<'c, Database = Postgres>,
        ctx: &CommandContext,
        request: pb::DeclineCommissionsRequest,
    ) -> Result<pb::DeclineCommissionsResponse, Error> {
        let mut v = Violations::new();
        let parsed = parse_bulk(&mut v, &request.advertiser_id, &request.commission_ids);
        let reason = request.reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON {
            v.push(FieldViolation::new(
                "reason",
                format!("is required: 1 to {MAX_REASON} characters the creator sees"),
            ));
        } else if reason.chars().any(|c| c.is_control() && c != '\n') {
            v.push(FieldViolation::new(
                "reason",
                "must not contain control characters",
            ));
        }
        let (advertiser, ids) = v.finish(parsed)?;
        let commissions = decide(
            db,
            ctx,
            "commission.decline",
            &request,
            advertiser,
            &ids,
            Some(reason),
        )
        .await?;
        Ok(pb::DeclineCommissionsResponse { commissions })
    }
}

/// Approves (`decline == None`) or declines the commissions `ids` of `advertiser`, all or nothing:
/// each must be the advertiser's, and pending (or already so decided: answered as it is).
async fn decide<'c, Req: prost::Message>(
    db: impl Acquire<'c, Database = Postgres>,
    ctx: &CommandContext,
    operation: &'static str,
    request: &Req,
    advertiser: Uuid,
    ids: &[Uuid],
    decline: Option<&str>,
) -> Result<Vec<pb::Commission>, Error> {
    let response: pb::ApproveCommissionsResponse =
        execute(db, ctx, operation, request, async |tx| {
            let found = repo::find_commissions(tx, ids).await?;
            let mut campaigns: Vec<Uuid> = found.iter().map(|c| c.campaign_id).collect();
            campaigns.sort_unstable();
            campaigns.dedup();
            let mut terms = repo::lock_terms(tx, &campaigns).await?;
            let owner: HashMap<Uuid, Uuid> = found.iter().map(|c| (c.id, c.campaign_id)).collect();
            for (i, id) in ids.iter().enumerate() {
                let theirs = owner
                    .get(id)
                    .and_then(|campaign| terms.get(campaign))
                    .is_some_and(|t| t.advertiser_id == Some(advertiser));
                if !theirs {
                    return Err(Error::NotFound {
                        what: "commission",
                        id: format!("{id} (commission_ids[{i}]) of advertiser {advertiser}"),
                    });
                }
            }
            let keys: Vec<(Uuid, String)> = found
                .iter()
                .map(|c| (c.creator_id, c.currency.clone()))
                .collect();
            let mut balances = repo::lock_balances(tx, &keys).await?;
            let rows = repo::lock_commissions(tx, ids).await?;
            let (target, verb) = match decline {
                None => (Life::Approved, "approved"),
                Some(_) => (Life::Declined, "declined"),
            };
            let now = messages::now();
            let mut changes = Changes::default();
            let mut answered = Vec::with_capacity(rows.len());
            for mut row in rows {
                let life = Life::parse(&row.status);
                if life == Some(target) {
                    answered.push(row);
                    continue;
                }
                if life != Some(Life::Pending) {
                    let i = ids.iter().position(|id| *id == row.id).unwrap_or(0);
                    return Err(Error::Precondition(format!(
                        "commission_ids[{i}]: commission {} is {}: only a pending commission can be {verb}",
                        row.id, row.status
                    )));
                }
                let balance = balances
                    .get_mut(&(row.creator_id, row.currency.clone()))
                    .ok_or_else(|| Error::Internal(anyhow::anyhow!("balance not locked")))?;
                match decline {
                    None => approve(ctx, &mut row, balance, true, now, &mut changes),
                    Some(reason) => {
                        let t = terms.get_mut(&row.campaign_id).ok_or_else(|| {
                            Error::Internal(anyhow::anyhow!("campaign terms not locked"))
                        })?;
                        decline_one(ctx, &mut row, balance, t, reason, now, &mut changes);
                    }
                }
                changes.commissions.push(row);
            }
            let committed: Vec<(Uuid, i64, bool)> = campaigns
                .iter()
                .filter_map(|id| terms.get(id).map(|t| (*id, t.committed_minor, t.exhausted_announced)))
                .collect();
            if decline.is_some() {
                repo::set_committed(tx, &committed).await?;
            }
            let messages = std::mem::take(&mut changes.messages);
            let mut written = changes.write(tx, &balances).await?;
            written.extend(answered);
            written.sort_by_key(|c| ids.iter().position(|id| *id == c.id));
            let response = pb::ApproveCommissionsResponse {
                commissions: written.iter().map(messages::commission).collect(),
            };
            Ok(Decision::with_all(response, messages))
        })
        .await?;
    Ok(response.commissions)
}

/// Declines a locked pending commission: what refunds left of it back to its campaign's budget.
fn decline_one(
    ctx: &CommandContext,
    row: &mut CommissionRow,
    balance: &mut BalanceRow,
    terms: &mut crate::domain::CampaignTerms,
    reason: &str,
    now: chrono::DateTime<chrono::Utc>,
    changes: &mut Changes,
) {
    let open = row.amount_minor - row.reversed_minor;
    row.status = Life::Declined.code().to_owned();
    row.decided_at = Some(now);
    row.decline_reason = Some(reason.to_owned());
    row.version += 1;
    balance.pending_minor -= open;
    terms.give_back(open);
    changes.transfers.extend(
        Transfer::of(
            Movement::Decline,
            Account::Pending(row.creator_id),
            Account::Budget(row.campaign_id),
            open,
        )
        .map(|t| transfer_row(row, t, Some(reason.to_owned()))),
    );
    changes.messages.push(outbox::event::<pb::CommissionEvent>(
        ctx,
        Subject::new(messages::COMMISSION, row.id, row.version),
        now,
        Event::CommissionDeclined(CommissionDeclined {
            commission: Some(messages::commission(row)),
            balance: Some(messages::balance(balance)),
            reason: reason.to_owned(),
        }),
    ));
}
