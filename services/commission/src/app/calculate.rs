//! Calculating commissions set-based: a purchase's commission credited to its creator, or the
//! reason it earns none, for many purchases in a handful of statements, whichever door they came
//! through (a gRPC call is a set of one).
//!
//! Every lock is taken first, in one global order: the campaigns' terms (ascending), then the
//! creators' balances (ascending). Then each purchase is decided in memory, in the order given,
//! against running copies of its campaign's budget and its creator's balance; then each changed
//! row is written once. A purchase that fails (invalid, out of range, already calculated, its
//! campaign not known yet, its key reused) writes nothing: its claimed idempotency key is given
//! back, and the others go on.

use std::collections::{HashMap, HashSet};

use prost::Message as _;
use sqlx::PgConnection;
use uuid::Uuid;

use affiliate_proto::commission::{
    self as pb, CommissionCalculated, CommissionRejected, commission_event::Event,
};
use service_runtime::context::CommandContext;
use service_runtime::money::display;
use service_runtime::outbox::{self, OutboxMessage, Subject};
use service_runtime::unit_of_work::{claim_keys, settle_keys};
use service_runtime::validation::{Violations, parse_id};

use super::{Error, messages, parse_money, past_the_largest, refused};
use crate::adapters::ledger::{self, TransferRow};
use crate::adapters::repository::{self as repo, BalanceRow, CommissionRow};
use crate::domain::ledger::{Account, Life, Movement, Transfer};
use crate::domain::{self, CampaignTerms, Refusal};

/// The idempotency record's operation name.
const OPERATION: &str = "commission.calculate";

/// One purchase to calculate, with the context of the command that asked.
#[derive(Debug, Clone)]
pub struct Calculation {
    pub ctx: CommandContext,
    pub request: pb::CalculateCommissionRequest,
}

/// A request that passed validation.
#[derive(Debug, Clone)]
struct Purchase {
    tracking_event_id: Uuid,
    campaign_id: Uuid,
    creator_id: Uuid,
    purchase_minor: i64,
    currency: String,
}

fn validate(request: &pb::CalculateCommissionRequest) -> Result<Purchase, Error> {
    let mut v = Violations::new();
    let tracking_event_id = v.check(parse_id("tracking_event_id", &request.tracking_event_id));
    let campaign_id = v.check(parse_id("campaign_id", &request.campaign_id));
    let creator_id = v.check(parse_id("creator_id", &request.creator_id));
    let purchase = v.check(parse_money(
        "purchase_amount",
        request.purchase_amount.as_ref(),
    ));
    let (((tracking_event_id, campaign_id), creator_id), (purchase_minor, currency)) = v.finish(
        tracking_event_id
            .zip(campaign_id)
            .zip(creator_id)
            .zip(purchase),
    )?;
    Ok(Purchase {
        tracking_event_id,
        campaign_id,
        creator_id,
        purchase_minor,
        currency,
    })
}

/// What the set writes, gathered while deciding.
#[derive(Default)]
struct Writes {
    commissions: Vec<CommissionRow>,
    transfers: Vec<TransferRow>,
    messages: Vec<OutboxMessage>,
    campaigns: HashSet<Uuid>,
    balances: HashSet<(Uuid, String)>,
}

/// Calculates every purchase of `set` in the caller's transaction; one outcome per purchase,
/// in order. `Err` only when the database failed (the transaction is then unusable).
pub async fn calculate_set(
    conn: &mut PgConnection,
    set: &[Calculation],
) -> Result<Vec<Result<pb::CalculateCommissionResponse, Error>>, Error> {
    let mut outcomes: Vec<Option<Result<pb::CalculateCommissionResponse, Error>>> =
        set.iter().map(|_| None).collect();
    let mut purchases: Vec<Option<Purchase>> = Vec::with_capacity(set.len());
    for (i, c) in set.iter().enumerate() {
        match validate(&c.request) {
            Ok(purchase) => purchases.push(Some(purchase)),
            Err(e) => {
                outcomes[i] = Some(Err(e));
                purchases.push(None);
            }
        }
    }
    // The campaigns' terms, then the balances: the global lock order.
    let mut campaign_ids: Vec<Uuid> = purchases.iter().flatten().map(|p| p.campaign_id).collect();
    campaign_ids.sort_unstable();
    campaign_ids.dedup();
    let mut terms: HashMap<Uuid, CampaignTerms> = if campaign_ids.is_empty() {
        HashMap::new()
    } else {
        repo::lock_terms(conn, &campaign_ids).await?
    };
    for (i, purchase) in purchases.iter_mut().enumerate() {
        if let Some(p) = purchase
            && !terms.contains_key(&p.campaign_id)
        {
            let campaign_id = p.campaign_id;
            outcomes[i] = Some(Err(Error::NotYet(format!(
                "campaign {campaign_id} is not known yet; retry later"
            ))));
            *purchase = None;
        }
    }
    let keys: Vec<(Uuid, String)> = purchases
        .iter()
        .flatten()
        .map(|p| (p.creator_id, p.currency.clone()))
        .collect();
    let mut balances: HashMap<(Uuid, String), BalanceRow> = if keys.is_empty() {
        HashMap::new()
    } else {
        repo::lock_balances(conn, &keys).await?
    };
    let claimed = claim(conn, set, &mut purchases, &mut outcomes).await?;
    already_calculated(conn, &mut purchases, &mut outcomes).await?;

    let now = messages::now();
    let mut writes = Writes::default();
    for (i, purchase) in purchases.iter().enumerate() {
        let Some(p) = purchase else { continue };
        let ctx = &set[i].ctx;
        let Some(t) = terms.get_mut(&p.campaign_id) else {
            continue;
        };
        let balance = balances.get_mut(&(p.creator_id, p.currency.clone()));
        outcomes[i] = Some(decide(ctx, p, t, balance, now, &mut writes));
    }

    let committed: Vec<(Uuid, i64, bool)> = writes
        .campaigns
        .iter()
        .filter_map(|id| {
            terms
                .get(id)
                .map(|t| (*id, t.committed_minor, t.exhausted_announced))
        })
        .collect();
    repo::set_committed(conn, &committed).await?;
    repo::insert_commissions(conn, &writes.commissions).await?;
    ledger::insert_transfers(conn, &writes.transfers).await?;
    let changed: Vec<&BalanceRow> = writes
        .balances
        .iter()
        .filter_map(|key| balances.get(key))
        .collect();
    repo::set_balances(conn, &changed).await?;
    outbox::append_set(conn, &writes.messages)
        .await
        .map_err(Error::Internal)?;
    // Responses stored under the keys claimed now; keys of purchases that failed given back.
    let contexts: Vec<&CommandContext> = set.iter().map(|c| &c.ctx).collect();
    settle_keys(conn, &contexts, &outcomes, &claimed).await?;
    Ok(outcomes
        .into_iter()
        .map(|outcome| {
            outcome.unwrap_or_else(|| {
                Err(Error::Internal(anyhow::anyhow!(
                    "a purchase of the set was left undecided"
                )))
            })
        })
        .collect())
}

/// Claims the keys of the purchases still to decide ([`claim_keys`]); a purchase whose key ran
/// before, or came twice in this set, is answered and taken out. Returns the keys claimed now.
async fn claim(
    conn: &mut PgConnection,
    set: &[Calculation],
    purchases: &mut [Option<Purchase>],
    outcomes: &mut [Option<Result<pb::CalculateCommissionResponse, Error>>],
) -> Result<HashSet<String>, Error> {
    let keyed = set
        .iter()
        .enumerate()
        .filter(|(i, _)| purchases[*i].is_some())
        .filter_map(|(i, c)| {
            Some((
                i,
                c.ctx.idempotency_key.as_deref()?,
                c.request.encode_to_vec(),
            ))
        })
        .collect();
    let claimed = claim_keys(conn, OPERATION, keyed, outcomes).await?;
    for (purchase, outcome) in purchases.iter_mut().zip(outcomes.iter()) {
        if outcome.is_some() {
            *purchase = None;
        }
    }
    Ok(claimed)
}

/// Takes out the purchases whose tracking event has a commission already (stored, or earlier in
/// this set).
async fn already_calculated(
    conn: &mut PgConnection,
    purchases: &mut [Option<Purchase>],
    outcomes: &mut [Option<Result<pb::CalculateCommissionResponse, Error>>],
) -> Result<(), Error> {
    let ids: Vec<Uuid> = purchases
        .iter()
        .flatten()
        .map(|p| p.tracking_event_id)
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let mut taken = repo::with_commission(conn, &ids).await?;
    for (purchase, outcome) in purchases.iter_mut().zip(outcomes.iter_mut()) {
        if let Some(p) = purchase
            && !taken.insert(p.tracking_event_id)
        {
            *outcome = Some(Err(Error::AlreadyExists(format!(
                "tracking event {} already has a commission",
                p.tracking_event_id
            ))));
            *purchase = None;
        }
    }
    Ok(())
}

/// Decides one purchase against the running terms of its campaign and balance of its creator
/// (both updated when it earns), adding what it writes to `writes`.
fn decide(
    ctx: &CommandContext,
    p: &Purchase,
    terms: &mut CampaignTerms,
    balance: Option<&mut BalanceRow>,
    now: chrono::DateTime<chrono::Utc>,
    writes: &mut Writes,
) -> Result<pb::CalculateCommissionResponse, Error> {
    let refuse = |refusal: Refusal, writes: &mut Writes| {
        let rejected = CommissionRejected {
            tracking_event_id: p.tracking_event_id.to_string(),
            creator_id: p.creator_id.to_string(),
            campaign_id: p.campaign_id.to_string(),
            ..Default::default()
        };
        writes.messages.push(refused(
            ctx,
            messages::COMMISSION,
            p.tracking_event_id,
            now,
            &refusal,
            rejected,
        ));
        pb::CalculateCommissionResponse {
            commission: None,
            rejection: refusal.code().to_owned(),
        }
    };
    if let Err(refusal) = domain::check_purchase(terms, &p.currency) {
        return Ok(refuse(refusal, writes));
    }
    let field = "purchase_amount.amount_minor";
    let computed =
        domain::commission_amount(p.purchase_minor, terms.rate_bps).ok_or_else(|| {
            Error::out_of_range(
                field,
                past_the_largest(
                    &format!("its commission at {} bps", terms.rate_bps),
                    &p.currency,
                ),
            )
        })?;
    let share = match domain::budget_share(terms, computed) {
        Ok(share) => share,
        Err(refusal) => {
            let response = refuse(refusal, writes);
            if !terms.exhausted_announced {
                // Spent by a lowered budget, or announced before a crash: announce now.
                announce_exhausted(ctx, p.campaign_id, terms, now, writes);
            }
            return Ok(response);
        }
    };
    let amount_minor = share.amount_minor;
    let balance = balance.ok_or_else(|| {
        Error::Internal(anyhow::anyhow!(
            "the balance of creator {} in {} was not locked",
            p.creator_id,
            p.currency
        ))
    })?;
    // Pending for the campaign's hold; approved at once without one.
    let hold = terms.hold_seconds.filter(|&s| s > 0);
    let held = if hold.is_some() {
        balance.pending_minor
    } else {
        balance.available_minor
    };
    let credited = held.checked_add(amount_minor).ok_or_else(|| {
        Error::out_of_range(
            field,
            past_the_largest(
                &format!(
                    "its commission of {} credited to the creator's balance",
                    display(amount_minor, &p.currency)
                ),
                &p.currency,
            ),
        )
    })?;
    if hold.is_some() {
        balance.pending_minor = credited;
    } else {
        balance.available_minor = credited;
    }
    writes.balances.insert((p.creator_id, p.currency.clone()));
    let announce = share.spends_budget && !terms.exhausted_announced;
    terms.committed_minor = terms.committed_minor.saturating_add(amount_minor);
    writes.campaigns.insert(p.campaign_id);
    let row = CommissionRow {
        id: Uuid::now_v7(),
        tracking_event_id: p.tracking_event_id,
        campaign_id: p.campaign_id,
        creator_id: p.creator_id,
        purchase_minor: p.purchase_minor,
        currency: p.currency.clone(),
        commission_rate_bps: i32::try_from(terms.rate_bps).unwrap_or(0),
        amount_minor,
        reserved_minor: 0,
        paid_minor: 0,
        created_at: now,
        status: if hold.is_some() {
            Life::Pending
        } else {
            Life::Approved
        }
        .code()
        .to_owned(),
        hold_until: hold.map(|s| now + chrono::TimeDelta::seconds(s)),
        decided_at: hold.is_none().then_some(now),
        decline_reason: None,
        refunded_minor: 0,
        reversed_minor: 0,
        clawed_back_minor: 0,
        version: 1,
    };
    let entry_id = Uuid::now_v7();
    let transfer = |transfer: Transfer| TransferRow {
        entry_id,
        transfer,
        currency: p.currency.clone(),
        commission_id: Some(row.id),
        payout_id: None,
        reference: None,
        at: now,
    };
    // Committed from the budget to the creator's pending money, or straight to available.
    let credit = if hold.is_some() {
        Account::Pending(p.creator_id)
    } else {
        Account::Available(p.creator_id)
    };
    let budget = Account::Budget(p.campaign_id);
    writes
        .transfers
        .extend(Transfer::of(Movement::Commission, budget, credit, amount_minor).map(transfer));
    let commission = messages::commission(&row);
    writes.messages.push(outbox::event::<pb::CommissionEvent>(
        ctx,
        Subject::new(messages::COMMISSION, row.id, 1),
        now,
        Event::CommissionCalculated(CommissionCalculated {
            commission: Some(commission.clone()),
            balance: Some(messages::balance(balance)),
        }),
    ));
    writes.commissions.push(row);
    if announce {
        announce_exhausted(ctx, p.campaign_id, terms, now, writes);
    }
    Ok(pb::CalculateCommissionResponse {
        commission: Some(commission),
        rejection: String::new(),
    })
}

/// Announces that the campaign's budget is spent (its event and the pause command), once: the
/// running terms record it, to be written with the set.
fn announce_exhausted(
    ctx: &CommandContext,
    campaign_id: Uuid,
    terms: &mut CampaignTerms,
    now: chrono::DateTime<chrono::Utc>,
    writes: &mut Writes,
) {
    terms.exhausted_announced = true;
    writes.campaigns.insert(campaign_id);
    writes.messages.extend(messages::budget_exhausted(
        ctx,
        campaign_id,
        terms,
        terms.committed_minor,
        now,
    ));
}
