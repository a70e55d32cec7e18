//! Rows as API messages, and state changes as outbox messages (`CommissionEvent` envelopes).

use affiliate_proto::commission::{self as pb};
use affiliate_proto::common::Money;
pub use service_runtime::time::{now, timestamp};

use crate::adapters::repository::{BalanceRow, CommissionRow, ReservationRow};
use crate::domain::{self, Status};

pub const SERVICE: &str = "commission";
/// Aggregate of a commission (and of a refused calculation: keyed by the tracking event).
pub const COMMISSION: &str = "commission";
/// Aggregate of a payout's reservation (keyed by the payout id).
pub const RESERVATION: &str = "payout_reservation";

pub fn money(amount_minor: i64, currency: &str) -> Option<Money> {
    Some(Money {
        amount_minor,
        currency: currency.to_owned(),
    })
}

pub fn commission(row: &CommissionRow) -> pb::Commission {
    let status = match domain::status(row.amount_minor, row.reserved_minor, row.paid_minor) {
        Status::Available => pb::CommissionStatus::Available,
        Status::Reserved => pb::CommissionStatus::Reserved,
        Status::Paid => pb::CommissionStatus::Paid,
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
    }
}

pub fn balance(row: &BalanceRow) -> pb::Balance {
    pb::Balance {
        creator_id: row.creator_id.to_string(),
        currency: row.currency.clone(),
        available_minor: row.available_minor,
        reserved_minor: row.reserved_minor,
        paid_minor: row.paid_minor,
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
