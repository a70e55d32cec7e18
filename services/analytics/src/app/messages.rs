//! Rows as API messages.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use affiliate_proto::analytics as pb;
use service_runtime::time::timestamp;

use crate::adapters::repository::{AmountRow, AuditRow, DayRow};
use crate::domain;

fn counts(c: &domain::Counts) -> pb::Counts {
    pb::Counts {
        views: c.views,
        clicks: c.clicks,
        purchases: c.purchases,
        commissions: c.commissions,
        commissions_refused: c.commissions_refused,
        click_through_rate: c.click_through_rate(),
        conversion_rate: c.conversion_rate(),
        unique_clicks: c.unique_clicks,
        bot_clicks: c.bot_clicks,
        conversions: c.conversions,
    }
}

fn amounts(currency: &str, a: &domain::Amounts) -> pb::Amounts {
    pb::Amounts {
        currency: currency.to_owned(),
        revenue_minor: a.revenue_minor,
        earned_minor: a.earned_minor,
        reserved_minor: a.reserved_minor,
        released_minor: a.released_minor,
        paid_minor: a.paid_minor,
    }
}

/// One entry per day that has counters or money, oldest first.
pub fn days(days: Vec<DayRow>, money: Vec<AmountRow>) -> Vec<pb::DayStats> {
    let mut by_day: BTreeMap<NaiveDate, pb::DayStats> = BTreeMap::new();
    let entry = |by_day: &mut BTreeMap<NaiveDate, pb::DayStats>, day: NaiveDate| {
        by_day.entry(day).or_insert_with(|| pb::DayStats {
            date: day.format("%Y-%m-%d").to_string(),
            counts: Some(counts(&domain::Counts::default())),
            amounts: Vec::new(),
        });
    };
    for d in days {
        entry(&mut by_day, d.day);
        if let Some(s) = by_day.get_mut(&d.day) {
            s.counts = Some(counts(&d.counts));
        }
    }
    for a in money {
        entry(&mut by_day, a.day);
        if let Some(s) = by_day.get_mut(&a.day) {
            s.amounts.push(amounts(&a.currency, &a.amounts));
        }
    }
    by_day.into_values().collect()
}

/// The sums over every day.
pub fn totals(days: &[DayRow], money: &[AmountRow]) -> pb::Totals {
    let mut sum = domain::Counts::default();
    for d in days {
        sum.add(&d.counts);
    }
    let mut by_currency: BTreeMap<&str, domain::Amounts> = BTreeMap::new();
    for a in money {
        by_currency.entry(&a.currency).or_default().add(&a.amounts);
    }
    pb::Totals {
        counts: Some(counts(&sum)),
        amounts: by_currency
            .into_iter()
            .map(|(currency, a)| amounts(currency, &a))
            .collect(),
    }
}

fn kind(kind: &str) -> pb::MessageKind {
    match kind {
        "command" => pb::MessageKind::Command,
        "event" => pb::MessageKind::Event,
        _ => pb::MessageKind::Unspecified,
    }
}

/// One message of the trail, its envelope decoded to proto3 JSON.
pub fn entry(row: &AuditRow) -> pb::AuditEntry {
    pb::AuditEntry {
        message_id: row.message_id.clone(),
        kind: kind(&row.kind).into(),
        message_type: row.message_type.clone(),
        topic: row.topic.clone(),
        correlation_id: row.correlation_id.clone(),
        causation_id: row.causation_id.clone(),
        aggregate_type: row.aggregate_type.clone(),
        aggregate_id: row.aggregate_id.clone(),
        aggregate_version: row.aggregate_version,
        occurred_at: Some(timestamp(row.occurred_at)),
        trace_id: row.trace_id.clone(),
        payload_json: messaging::decode::envelope(&row.topic, &row.payload).to_string(),
    }
}
