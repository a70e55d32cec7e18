//! Refunds and chargebacks: a purchase's commission taken back in proportion to the money refunded
//! (`domain::ledger::refund`): what is unpaid is reversed to the campaign's budget, what is
//! reserved or paid is clawed back (the creator's available balance goes negative and nets against
//! the next payouts). Never an edit of a paid amount: new transfers only.
//!
//! A refund whose purchase has no commission yet (its calculate command is still on its way, or
//! retrying) is kept, and applied by the service's hold loop once the commission exists
//! ([`apply_waiting`]): the loop, not the calculation, so that no race between the two commands
//! can leave a refund behind.

use sqlx::{Acquire, PgConnection, Postgres};
use uuid::Uuid;

use affiliate_proto::commission::{self as pb, CommissionReversed, commission_event::Event};
use service_runtime::context::CommandContext;
use service_runtime::money::display;
use service_runtime::outbox::{self, OutboxMessage, Subject};
use service_runtime::unit_of_work::{Decision, execute};
use service_runtime::validation::{FieldViolation, Violations, parse_id};

use super::{Commissions, Error, messages, parse_money};
use crate::adapters::ledger::{self, TransferRow};
use crate::adapters::repository::{self as repo, CommissionRow, RefundRow};
use crate::domain::ledger::{self as rules, Amounts, Life, RefundError};

const MAX_REFUND_ID: usize = 128;
const MAX_REASON: usize = 500;

fn validate(request: &pb::ReverseCommissionRequest) -> Result<RefundRow, Error> {
    let mut v = Violations::new();
    let tracking_event_id = v.check(parse_id("tracking_event_id", &request.tracking_event_id));
    let money = v.check(parse_money(
        "refunded_amount",
        request.refunded_amount.as_ref(),
    ));
    let refund_id = request.refund_id.as_str();
    if refund_id.is_empty()
        || refund_id.chars().count() > MAX_REFUND_ID
        || refund_id.chars().any(char::is_control)
    {
        v.push(FieldViolation::new(
            "refund_id",
            format!("must be 1 to {MAX_REFUND_ID} characters, no control characters"),
        ));
    }
    let kind = match request.kind.as_str() {
        "" | "refund" => "refund",
        "chargeback" => "chargeback",
        _ => {
            v.push(FieldViolation::new(
                "kind",
                "must be \"refund\" or \"chargeback\"",
            ));
            "refund"
        }
    };
    if request.reason.chars().count() > MAX_REASON
        || request.reason.chars().any(|c| c.is_control() && c != '\n')
    {
        v.push(FieldViolation::new(
            "reason",
            format!("must be at most {MAX_REASON} characters, no control characters"),
        ));
    }
    let (tracking_event_id, (refunded_minor, currency)) = v.finish(tracking_event_id.zip(money))?;
    Ok(RefundRow {
        tracking_event_id,
        refund_id: refund_id.to_owned(),
        refunded_minor,
        currency,
        kind: kind.to_owned(),
        reason: request.reason.clone(),
        applied: false,
    })
}

/// What applying a refund did.
struct Applied {
    commission: CommissionRow,
    reversed: i64,
    clawed_back: i64,
    message: OutboxMessage,
}

/// Applies `refund` to the commission of its purchase, `found` (read unlocked): locks its
/// campaign's terms, the creator's balance and the commission, in the service's order, and writes
/// the commission, the balance, the budget and the transfers. The event is returned, not written.
async fn apply(
    conn: &mut PgConnection,
    ctx: &CommandContext,
    found: &CommissionRow,
    refund: &RefundRow,
) -> Result<Applied, Error> {
    let mut terms = repo::lock_terms(conn, &[found.campaign_id]).await?;
    let key = (found.creator_id, found.currency.clone());
    let mut balances = repo::lock_balances(conn, std::slice::from_ref(&key)).await?;
    let mut row = repo::lock_commissions(conn, &[found.id])
        .await?
        .pop()
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("commission {} vanished", found.id)))?;
    if refund.currency != row.currency {
        return Err(Error::Invalid(vec![FieldViolation::new(
            "refunded_amount.currency",
            format!("must be the purchase's currency, {}", row.currency),
        )]));
    }
    let before = Life::parse(&row.status)
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("commission status {}", row.status)))?;
    let amounts = Amounts {
        life: before,
        purchase_minor: row.purchase_minor,
        amount_minor: row.amount_minor,
        reserved_minor: row.reserved_minor,
        paid_minor: row.paid_minor,
        refunded_minor: row.refunded_minor,
        reversed_minor: row.reversed_minor,
        clawed_back_minor: row.clawed_back_minor,
    };
    let outcome = rules::refund(&amounts, refund.refunded_minor).map_err(|e| match e {
        RefundError::TooLarge { left } => Error::Invalid(vec![FieldViolation::new(
            "refunded_amount.amount_minor",
            format!(
                "is more than what is left of the purchase to refund: {}",
                display(left, &row.currency)
            ),
        )]),
    })?;
    let now = messages::now();
    let balance = balances
        .get_mut(&key)
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("balance not locked")))?;
    if before == Life::Pending {
        balance.pending_minor -= outcome.reversed_minor;
    } else {
        balance.available_minor -= outcome.reversed_minor;
    }
    balance.available_minor -= outcome.clawed_back_minor;
    let taken = outcome.reversed_minor + outcome.clawed_back_minor;
    let mut committed = Vec::new();
    if let Some(t) = terms.get_mut(&row.campaign_id) {
        t.give_back(taken);
        committed.push((row.campaign_id, t.committed_minor, t.exhausted_announced));
    }
    row.refunded_minor = outcome.refunded_minor;
    row.reversed_minor += outcome.reversed_minor;
    row.clawed_back_minor += outcome.clawed_back_minor;
    if outcome.life != before {
        row.status = outcome.life.code().to_owned();
        row.decided_at = Some(now);
    }
    row.version += 1;
    let entry_id = Uuid::now_v7();
    let transfers: Vec<TransferRow> =
        rules::refund_transfers(before, row.campaign_id, row.creator_id, &outcome)
            .into_iter()
            .map(|transfer| TransferRow {
                entry_id,
                transfer,
                currency: row.currency.clone(),
                commission_id: Some(row.id),
                payout_id: None,
                reference: Some(refund.refund_id.clone()),
                at: now,
            })
            .collect();
    repo::save_commissions(conn, &[&row]).await?;
    ledger::insert_transfers(conn, &transfers).await?;
    repo::set_balances(conn, &[&*balance]).await?;
    repo::set_committed(conn, &committed).await?;
    let money = |minor| messages::money(minor, &row.currency);
    let message = outbox::event::<pb::CommissionEvent>(
        ctx,
        Subject::new(messages::COMMISSION, row.id, row.version),
        now,
        Event::CommissionReversed(CommissionReversed {
            commission: Some(messages::commission(&row)),
            balance: Some(messages::balance(balance)),
            refund_id: refund.refund_id.clone(),
            kind: refund.kind.clone(),
            reason: refund.reason.clone(),
            reversed: money(outcome.reversed_minor),
            clawed_back: money(outcome.clawed_back_minor),
            refunded: money(refund.refunded_minor),
        }),
    );
    Ok(Applied {
        commission: row,
        reversed: outcome.reversed_minor,
        clawed_back: outcome.clawed_back_minor,
        message,
    })
}

impl Commissions {
    /// Takes back a purchase's commission for a refund of it, or keeps the refund until the
    /// purchase has a commission.
    pub async fn reverse(
        &self,
        ctx: &CommandContext,
        request: pb::ReverseCommissionRequest,
    ) -> Result<pb::ReverseCommissionResponse, Error> {
        self.reverse_on(self.pool(), ctx, request).await
    }

    /// [`Commissions::reverse`] on `db` (a pool, or a connection in a transaction).
    pub async fn reverse_on<'c>(
        &self,
        db: impl Acquire<'c, Database = Postgres>,
        ctx: &CommandContext,
        request: pb::ReverseCommissionRequest,
    ) -> Result<pb::ReverseCommissionResponse, Error> {
        let refund = validate(&request)?;
        execute(db, ctx, "commission.reverse", &request, async |tx| {
            let zero = |currency: &str| messages::money(0, currency);
            if let Some(first) =
                repo::find_refund(tx, refund.tracking_event_id, &refund.refund_id).await?
            {
                if first.refunded_minor != refund.refunded_minor
                    || first.currency != refund.currency
                {
                    return Err(Error::Precondition(format!(
                        "refund {} of purchase {} was reported before with another amount ({})",
                        refund.refund_id,
                        refund.tracking_event_id,
                        display(first.refunded_minor, &first.currency)
                    )));
                }
                let commission = repo::commission_of(tx, refund.tracking_event_id).await?;
                return Ok(Decision::answer(pb::ReverseCommissionResponse {
                    commission: commission.as_ref().map(messages::commission),
                    reversed: zero(&refund.currency),
                    clawed_back: zero(&refund.currency),
                    deferred: !first.applied,
                }));
            }
            let Some(found) = repo::commission_of(tx, refund.tracking_event_id).await? else {
                // Kept until its purchase has a commission.
                repo::insert_refund(tx, &refund, messages::now()).await?;
                return Ok(Decision::answer(pb::ReverseCommissionResponse {
                    commission: None,
                    reversed: zero(&refund.currency),
                    clawed_back: zero(&refund.currency),
                    deferred: true,
                }));
            };
            let applied = apply(tx, ctx, &found, &refund).await?;
            let recorded = RefundRow {
                applied: true,
                ..refund.clone()
            };
            if !repo::insert_refund(tx, &recorded, messages::now()).await? {
                return Err(Error::Unavailable(anyhow::anyhow!(
                    "refund {} of purchase {} was recorded concurrently; retry",
                    refund.refund_id,
                    refund.tracking_event_id
                )));
            }
            let currency = applied.commission.currency.clone();
            let response = pb::ReverseCommissionResponse {
                commission: Some(messages::commission(&applied.commission)),
                reversed: messages::money(applied.reversed, &currency),
                clawed_back: messages::money(applied.clawed_back, &currency),
                deferred: false,
            };
            Ok(Decision::with(response, applied.message))
        })
        .await
    }
}

/// Applies up to `limit` kept refunds whose purchase has a commission now, each in a transaction
/// of its own; returns how many it applied. A refund that cannot be applied (more than what is
/// left of the purchase, another currency) is marked applied with nothing moved and logged: it
/// was accepted when it came, and only the order of arrival made it fail.
pub async fn apply_waiting(commissions: &Commissions, limit: i64) -> Result<usize, Error> {
    let pool = commissions.pool();
    let waiting = {
        let mut conn = pool.acquire().await?;
        repo::applicable_refunds(&mut conn, limit).await?
    };
    let mut applied = 0;
    for (tracking_event_id, refund_id) in waiting {
        let mut tx = pool.begin().await?;
        let Some(found) = repo::commission_of(&mut tx, tracking_event_id).await? else {
            continue;
        };
        // The refund's row is locked before the terms, balance and commission `apply` locks:
        // no transaction waits for a kept refund's row while holding those (a refund command
        // for it answers from the row without locking it).
        let ctx = CommandContext {
            correlation_id: found.id.simple().to_string(),
            ..CommandContext::new()
        };
        let mut savepoint = tx.begin().await?;
        let Some(refund) =
            repo::lock_waiting_refund(&mut savepoint, tracking_event_id, &refund_id).await?
        else {
            continue;
        };
        match apply(&mut savepoint, &ctx, &found, &refund).await {
            Ok(done) => {
                outbox::append_set(&mut savepoint, &[done.message])
                    .await
                    .map_err(Error::Internal)?;
                savepoint.commit().await?;
            }
            Err(Error::Invalid(violations)) => {
                savepoint.rollback().await?;
                tracing::warn!(
                    %tracking_event_id, refund_id, ?violations,
                    "a kept refund does not fit its commission: recorded, nothing taken back"
                );
            }
            Err(e) => return Err(e),
        }
        repo::mark_refund_applied(&mut tx, tracking_event_id, &refund_id).await?;
        tx.commit().await?;
        applied += 1;
    }
    Ok(applied)
}
