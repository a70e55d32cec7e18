//! Payout rows as API messages; saga steps as outbox messages (payment events, and the commands
//! the saga sends to the commission service).

use chrono::{DateTime, Utc};

use affiliate_proto::commission::{
    self as commission_pb, CommissionCommand, commission_command::Command,
};
use affiliate_proto::common::Money;
use affiliate_proto::payment::{self as pb, payment_event::Event};
use service_runtime::context::CommandContext;
use service_runtime::outbox::{self, OutboxMessage, Subject};
pub use service_runtime::time::{now, timestamp};

use crate::adapters::repository::PayoutRow;
use crate::domain::{Method, State};

pub const SERVICE: &str = "payment";
pub const AGGREGATE: &str = "payout";

pub fn payout(row: &PayoutRow) -> pb::Payout {
    let status = match row.state() {
        Some(State::Requested) => pb::PayoutStatus::Requested,
        Some(State::Processing) => pb::PayoutStatus::Processing,
        Some(State::Settling) => pb::PayoutStatus::Settling,
        Some(State::Completed) => pb::PayoutStatus::Completed,
        Some(State::Releasing) => pb::PayoutStatus::Releasing,
        Some(State::Failed) => pb::PayoutStatus::Failed,
        Some(State::Rejected) => pb::PayoutStatus::Rejected,
        None => pb::PayoutStatus::Unspecified,
    };
    let method = match row.method() {
        Some(Method::BankTransfer) => pb::PayoutMethod::BankTransfer,
        Some(Method::Paypal) => pb::PayoutMethod::Paypal,
        None => pb::PayoutMethod::Unspecified,
    };
    pb::Payout {
        id: row.id.to_string(),
        creator_id: row.creator_id.to_string(),
        amount: Some(Money {
            amount_minor: row.amount_minor,
            currency: row.currency.clone(),
        }),
        method: method.into(),
        account_masked: row.account_masked.clone(),
        status: status.into(),
        provider_reference: row.provider_reference.clone().unwrap_or_default(),
        failure_reason: row.failure_reason.clone().unwrap_or_default(),
        version: row.version,
        created_at: Some(timestamp(row.created_at)),
        updated_at: Some(timestamp(row.updated_at)),
    }
}

fn subject(row: &PayoutRow) -> Subject<'static> {
    Subject::new(AGGREGATE, row.id, row.version)
}

/// The outbox message of a payment event about the payout in `row` (its version after the step).
pub fn event_message(
    ctx: &CommandContext,
    row: &PayoutRow,
    occurred_at: DateTime<Utc>,
    event: Event,
) -> OutboxMessage {
    event_about(ctx, subject(row), occurred_at, event)
}

/// The outbox message of a payment event about `subject`.
pub fn event_about(
    ctx: &CommandContext,
    subject: Subject<'_>,
    occurred_at: DateTime<Utc>,
    event: Event,
) -> OutboxMessage {
    outbox::event::<pb::PaymentEvent>(ctx, subject, occurred_at, event)
}

/// The event for a state a payout has just entered: every state announces itself, so a payout's
/// events carry versions 1, 2, 3… with no gap (a consumer can tell a gap from a loss).
pub fn event_for(row: &PayoutRow) -> Option<Event> {
    let p = Some(payout(row));
    Some(match row.state()? {
        State::Requested => Event::PayoutRequested(pb::PayoutRequested { payout: p }),
        State::Processing => Event::PayoutProcessing(pb::PayoutProcessing { payout: p }),
        State::Settling => Event::PaymentProcessed(pb::PaymentProcessed { payout: p }),
        State::Releasing => Event::PaymentFailed(pb::PaymentFailed { payout: p }),
        State::Rejected => Event::PayoutRejected(pb::PayoutRejected { payout: p }),
        State::Completed => Event::PayoutCompleted(pb::PayoutCompleted { payout: p }),
        State::Failed => Event::PayoutFailed(pb::PayoutFailed { payout: p }),
    })
}

/// The command the saga sends to the commission service on entering a state, if any.
pub fn command_for(row: &PayoutRow) -> Option<Command> {
    let payout_id = row.id.to_string();
    match row.state()? {
        State::Requested => Some(Command::Reserve(commission_pb::ReserveCommissionRequest {
            payout_id,
            creator_id: row.creator_id.to_string(),
            amount: Some(Money {
                amount_minor: row.amount_minor,
                currency: row.currency.clone(),
            }),
        })),
        State::Settling => Some(Command::Settle(commission_pb::SettleCommissionRequest {
            payout_id,
        })),
        State::Releasing => Some(Command::Release(commission_pb::ReleaseCommissionRequest {
            payout_id,
        })),
        _ => None,
    }
}

/// The outbox message of a command to the commission service about the payout in `row`.
pub fn command_message(
    ctx: &CommandContext,
    row: &PayoutRow,
    occurred_at: DateTime<Utc>,
    command: Command,
) -> OutboxMessage {
    outbox::command::<CommissionCommand>(ctx, subject(row), occurred_at, command)
}

/// Everything a payout entering the state in `row` publishes: its event and its command.
pub fn step_messages(
    ctx: &CommandContext,
    row: &PayoutRow,
    at: DateTime<Utc>,
) -> Vec<OutboxMessage> {
    let event = event_for(row).map(|e| event_message(ctx, row, at, e));
    // The command is the event's consequence: its cause, so a workflow's trail links them.
    let caused = event.as_ref().map(|e| CommandContext {
        causation_id: Some(e.message_id.to_string()),
        ..ctx.clone()
    });
    let command =
        command_for(row).map(|c| command_message(caused.as_ref().unwrap_or(ctx), row, at, c));
    event.into_iter().chain(command).collect()
}
