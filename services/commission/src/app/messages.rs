//! Rows as API messages, and state changes as outbox messages (`CommissionEvent` envelopes).

use affiliate_proto::commission::{self as pb};
use affiliate_proto::common::Money;
pub use service_runtime::time::{now, timestamp};

use affiliate_proto::campaign::{
    CampaignCommand, PauseCampaignRequest, PauseReason, campaign_command,
};
use chrono::{DateTime, Utc};
use service_runtime::context::CommandContext;
use service_runtime::outbox::{self, OutboxMessage, Subject};
use uuid::Uuid;

use crate::adapters::repository::{BalanceRow, CommissionRow, ReservationRow};
use crate::domain::ledger::Life;
use crate::domain::{self, CampaignTerms, Status};

pub const SERVICE: &str = "commission";
/// Aggregate of a commission (and of a refused calculation: keyed by the tracking event).
pub const COMMISSION: &str = "commission";
/// Aggregate of a payout's reservation (keyed by the payout id).
pub const RESERVATION: &str = "payout_reservation";
/// Aggregate of a campaign's budget as the commission service spends it (keyed by the campaign
/// id; its version is the campaign's at the budget that was spent).
pub const CAMPAIGN_BUDGET: &str = "campaign_budget";

/// A campaign's budget is spent: `campaign.budget_exhausted.v1`, and the
/// `campaign.pause.command.v1` (reason BUDGET_EXHAUSTED, caused by that event) that has the
/// campaign service pause it. Both go into the outbox of the transaction that spent the budget,
/// the one saga step, so neither is published without the other.
pub fn budget_exhausted(
    ctx: &CommandContext,
    campaign_id: Uuid,
    terms: &CampaignTerms,
    committed_minor: i64,
    occurred_at: DateTime<Utc>,
) -> [OutboxMessage; 2] {
    let subject = Subject::new(CAMPAIGN_BUDGET, campaign_id, terms.version);
    let budget = money(terms.budget_minor.unwrap_or_default(), &terms.currency);
    let event = outbox::event::<pb::CommissionEvent>(
        ctx,
        subject,
        occurred_at,
        pb::commission_event::Event::BudgetExhausted(pb::BudgetExhausted {
            campaign_id: campaign_id.to_string(),
            budget: budget.clone(),
            committed: money(committed_minor, &terms.currency),
        }),
    );
    let caused = CommandContext {
        causation_id: Some(event.message_id.to_string()),
        ..ctx.clone()
    };
    let pause = outbox::command::<CampaignCommand>(
        &caused,
        subject,
        occurred_at,
        campaign_command::Command::PauseCampaign(PauseCampaignRequest {
            campaign_id: campaign_id.to_string(),
            reason: PauseReason::BudgetExhausted.into(),
            exhausted_budget: budget,
        }),
    );
    [event, pause]
}

pub fn money(amount_minor: i64, currency: &str) -> Option<Money> {
    Some(Money {
        amount_minor,
        currency: currency.to_owned(),
    })
}

pub fn commission(row: &CommissionRow) -> pb::Commission {
    let approved = || match domain::status(
        row.amount_minor,
        row.reserved_minor,
        row.paid_minor,
        row.reversed_minor,
    ) {
        Status::Available => pb::CommissionStatus::Available,
        Status::Reserved => pb::CommissionStatus::Reserved,
        Status::Paid => pb::CommissionStatus::Paid,
    };
    let status = match Life::parse(&row.status) {
        Some(Life::Pending) => pb::CommissionStatus::Pending,
        Some(Life::Declined) => pb::CommissionStatus::Declined,
        Some(Life::Reversed) => pb::CommissionStatus::Reversed,
        Some(Life::Approved) => approved(),
        None => pb::CommissionStatus::Unspecified,
    };
    pb::Commission {
        id: row.id.to_string(),
        tracking_event_id: row.tracking_event_id.to_string(),
        campaign_id: row.campaign_id.to_string(),
        creator_id: row.creator_id.to_string(),
        purchase_amount: money(row.purchase_minor, &row.currency),
        commission_rate_bps: u32::try_from(row.commission_rate_bps).unwrap_or(0),
        amount: money(row.amount_minor, &row.currency),
        status: status.into(),
        reserved_minor: row.reserved_minor,
        paid_minor: row.paid_minor,
        created_at: Some(timestamp(row.created_at)),
        hold_until: row.hold_until.map(timestamp),
        decided_at: row.decided_at.map(timestamp),
        decline_reason: row.decline_reason.clone().unwrap_or_default(),
        refunded_minor: row.refunded_minor,
        reversed_minor: row.reversed_minor,
        clawed_back_minor: row.clawed_back_minor,
    }
}

pub fn balance(row: &BalanceRow) -> pb::Balance {
    pb::Balance {
        creator_id: row.creator_id.to_string(),
        currency: row.currency.clone(),
        available_minor: row.available_minor,
        reserved_minor: row.reserved_minor,
        paid_minor: row.paid_minor,
        pending_minor: row.pending_minor,
    }
}

pub fn reservation(row: &ReservationRow) -> pb::Reservation {
    let status = match row.status.as_str() {
        "reserved" => pb::ReservationStatus::Reserved,
        "released" => pb::ReservationStatus::Released,
        "settled" => pb::ReservationStatus::Settled,
        _ => pb::ReservationStatus::Unspecified,
    };
    pb::Reservation {
        payout_id: row.payout_id.to_string(),
        creator_id: row.creator_id.to_string(),
        amount: money(row.amount_minor, &row.currency),
        status: status.into(),
    }
}
