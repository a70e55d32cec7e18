//! What each message means to the read models, with no I/O: the topics followed, the counters and
//! amounts an event adds to ([`Changes::of`]), a campaign's owner and budget, the rates, and the
//! causal order of a workflow's messages ([`causal_order`]).

pub mod order;
pub mod topics;

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use prost::Message as _;
use uuid::Uuid;

use affiliate_proto::campaign::{self as campaign_pb, CampaignEvent, campaign_event};
use affiliate_proto::commission::{CommissionEvent, commission_event};
use affiliate_proto::common::Money;
use affiliate_proto::tracking::{
    self as tracking_pb, ClickVerdict, ConversionStatus, TrackingEventEnvelope, TrackingEventKind,
    tracking_event_envelope,
};
use service_runtime::time::from_timestamp;

pub use order::causal_order;
pub use topics::{Kind, TOPICS, Topic};

/// Whose statistics a row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    Campaign(Uuid),
    Creator(Uuid),
    /// A tracking link (its id).
    Link(Uuid),
    /// One value of one of a creator's sub-ids, over all the creator's links: the id is
    /// [`Subject::sub_id`]'s.
    SubId(Uuid),
}

/// How many sub-ids a link carries (sub1 ... sub5).
pub const SUB_IDS: u8 = 5;

impl Subject {
    /// The `subject_kind` column.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Campaign(_) => "campaign",
            Self::Creator(_) => "creator",
            Self::Link(_) => "link",
            Self::SubId(_) => "sub_id",
        }
    }

    pub fn id(self) -> Uuid {
        match self {
            Self::Campaign(id) | Self::Creator(id) | Self::Link(id) | Self::SubId(id) => id,
        }
    }

    /// The creator's sub-id `sub` (1 to 5) with `value`: a UUIDv5 in the creator's id as the
    /// namespace, of the name `sub{sub}={value}` (the digit and the `=` keep every (sub, value)
    /// pair apart), so the same triple always names the same rows and nothing needs storing to
    /// find them.
    pub fn sub_id(creator: Uuid, sub: u8, value: &str) -> Self {
        Self::SubId(Uuid::new_v5(
            &creator,
            format!("sub{sub}={value}").as_bytes(),
        ))
    }
}

/// The counters of one subject on one day, or what an event adds to them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub views: i64,
    pub clicks: i64,
    pub purchases: i64,
    pub commissions: i64,
    pub commissions_refused: i64,
    /// Link clicks judged unique (also in `clicks`).
    pub unique_clicks: i64,
    /// Link clicks judged bots (never in `clicks`).
    pub bot_clicks: i64,
    /// Conversions recorded (accepted or held).
    pub conversions: i64,
}

impl Counts {
    /// clicks / views; 0 without views.
    pub fn click_through_rate(&self) -> f64 {
        ratio(self.clicks, self.views)
    }

    /// purchases / clicks; 0 without clicks.
    pub fn conversion_rate(&self) -> f64 {
        ratio(self.purchases, self.clicks)
    }

    pub fn add(&mut self, other: &Self) {
        self.views = self.views.saturating_add(other.views);
        self.clicks = self.clicks.saturating_add(other.clicks);
        self.purchases = self.purchases.saturating_add(other.purchases);
        self.commissions = self.commissions.saturating_add(other.commissions);
        self.commissions_refused = self
            .commissions_refused
            .saturating_add(other.commissions_refused);
        self.unique_clicks = self.unique_clicks.saturating_add(other.unique_clicks);
        self.bot_clicks = self.bot_clicks.saturating_add(other.bot_clicks);
        self.conversions = self.conversions.saturating_add(other.conversions);
    }
}

#[allow(clippy::cast_precision_loss)] // a rate, not money: f64's 53 bits are plenty
fn ratio(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The money of one subject on one day in one currency, or what an event adds to it (minor units).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amounts {
    pub revenue_minor: i64,
    pub earned_minor: i64,
    pub reserved_minor: i64,
    pub released_minor: i64,
    pub paid_minor: i64,
}

impl Amounts {
    pub fn add(&mut self, other: &Self) {
        self.revenue_minor = self.revenue_minor.saturating_add(other.revenue_minor);
        self.earned_minor = self.earned_minor.saturating_add(other.earned_minor);
        self.reserved_minor = self.reserved_minor.saturating_add(other.reserved_minor);
        self.released_minor = self.released_minor.saturating_add(other.released_minor);
        self.paid_minor = self.paid_minor.saturating_add(other.paid_minor);
    }
}

/// A campaign's owner and budget as one of its events reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignState {
    pub campaign_id: Uuid,
    pub advertiser_id: Uuid,
    pub currency: String,
    pub budget_minor: i64,
    /// The campaign's aggregate version after the event.
    pub version: i64,
}

/// What one event changes in the statistics, keyed in the order the rows are locked (every
/// transaction takes its rows in this one order, so two never deadlock).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub counts: BTreeMap<(Subject, NaiveDate), Counts>,
    pub amounts: BTreeMap<(Subject, NaiveDate, String), Amounts>,
    pub campaign: Option<CampaignState>,
}

impl Changes {
    /// Nothing to change (a command, or an event the statistics do not count).
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.amounts.is_empty() && self.campaign.is_none()
    }

    fn count(&mut self, subjects: &[Subject], day: NaiveDate, add: Counts) {
        for subject in subjects {
            self.counts.entry((*subject, day)).or_default().add(&add);
        }
    }

    fn money(&mut self, subjects: &[Subject], day: NaiveDate, currency: &str, add: Amounts) {
        for subject in subjects {
            self.amounts
                .entry((*subject, day, currency.to_owned()))
                .or_default()
                .add(&add);
        }
    }

    /// What the message on `topic` changes; `occurred_at` is its envelope's time (the day of
    /// events that carry no time of their own). An error when the payload is not that topic's
    /// envelope or lacks what the statistics need.
    pub fn of(topic: &Topic, payload: &[u8], occurred_at: DateTime<Utc>) -> Result<Self, String> {
        let undecodable = |e: prost::DecodeError| format!("not a {} envelope: {e}", topic.short);
        let mut changes = Self::default();
        if topic.kind == Kind::Command {
            return Ok(changes);
        }
        let day = occurred_at.date_naive();
        match topic.service {
            "campaign" => {
                let envelope = CampaignEvent::decode(payload).map_err(undecodable)?;
                changes.campaign = campaign_state(envelope.event)?;
            }
            "tracking" => {
                let envelope = TrackingEventEnvelope::decode(payload).map_err(undecodable)?;
                tracking_changes(&mut changes, envelope.event, day)?;
            }
            "commission" => {
                let envelope = CommissionEvent::decode(payload).map_err(undecodable)?;
                commission_changes(&mut changes, envelope.event, day)?;
            }
            // Payment events move no money of their own: the commission service's reservations
            // and settlements do. They are kept in the audit trail only.
            _ => {}
        }
        Ok(changes)
    }
}

/// What a batch of messages changes: every message's [`Changes`] summed per row (counters per
/// subject and day, money per subject, day and currency) and the latest state of each campaign,
/// so each row is written once per batch, in the order the keys sort in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sums {
    pub counts: BTreeMap<(Subject, NaiveDate), Counts>,
    pub amounts: BTreeMap<(Subject, NaiveDate, String), Amounts>,
    pub campaigns: BTreeMap<Uuid, CampaignState>,
}

impl Sums {
    /// Adds one message's changes (a campaign's state is kept if its version is the highest).
    pub fn add(&mut self, changes: Changes) {
        for (key, counts) in changes.counts {
            self.counts.entry(key).or_default().add(&counts);
        }
        for (key, amounts) in changes.amounts {
            self.amounts.entry(key).or_default().add(&amounts);
        }
        if let Some(state) = changes.campaign {
            match self.campaigns.get(&state.campaign_id) {
                Some(kept) if kept.version >= state.version => {}
                _ => {
                    self.campaigns.insert(state.campaign_id, state);
                }
            }
        }
    }
}

fn tracking_changes(
    changes: &mut Changes,
    event: Option<tracking_event_envelope::Event>,
    day: NaiveDate,
) -> Result<(), String> {
    use tracking_event_envelope::Event;
    match event {
        Some(Event::TrackingEventCreated(created)) => {
            let e = created.event.ok_or("the tracking event is missing")?;
            let subjects = [
                Subject::Campaign(id("event.campaign_id", &e.campaign_id)?),
                Subject::Creator(id("event.creator_id", &e.creator_id)?),
            ];
            // The day the audience acted, as tracking recorded it.
            let day = day_of(e.occurred_at.as_ref().and_then(from_timestamp), day);
            let mut add = Counts::default();
            match TrackingEventKind::try_from(e.kind) {
                Ok(TrackingEventKind::View) => add.views = 1,
                Ok(TrackingEventKind::Click) => add.clicks = 1,
                Ok(TrackingEventKind::Purchase) => {
                    add.purchases = 1;
                    let amount = money("event.amount", e.amount)?;
                    changes.money(
                        &subjects,
                        day,
                        &amount.currency,
                        Amounts {
                            revenue_minor: amount.amount_minor,
                            ..Amounts::default()
                        },
                    );
                }
                _ => return Err(format!("tracking event kind {} is unknown", e.kind)),
            }
            changes.count(&subjects, day, add);
        }
        // A visit through a link, on the day it was clicked, for everyone it names.
        Some(Event::ClickRecorded(recorded)) => {
            let c = recorded.click.ok_or("the click is missing")?;
            let named = Named::of(
                "click",
                &c.campaign_id,
                &c.creator_id,
                &c.link_id,
                c.sub_ids.as_ref(),
            )?;
            let add = match ClickVerdict::try_from(c.verdict) {
                Ok(ClickVerdict::Unique) => Counts {
                    clicks: 1,
                    unique_clicks: 1,
                    ..Counts::default()
                },
                Ok(ClickVerdict::Duplicate) => Counts {
                    clicks: 1,
                    ..Counts::default()
                },
                Ok(ClickVerdict::Bot) => Counts {
                    bot_clicks: 1,
                    ..Counts::default()
                },
                _ => return Err(format!("click verdict {} is unknown", c.verdict)),
            };
            changes.count(
                &named.all(),
                day_of(c.clicked_at.as_ref().and_then(from_timestamp), day),
                add,
            );
        }
        // A conversion counts for everyone it names on the day of the sale. Its purchase (once
        // accepted) reaches the campaign and the creator as the tracking event it became, which
        // names no link: so only the link and the sub-ids take it from the conversion.
        Some(Event::ConversionRecorded(recorded)) => {
            let c = recorded.conversion.ok_or("the conversion is missing")?;
            let named = Named::conversion(&c)?;
            let day = day_of(c.converted_at.as_ref().and_then(from_timestamp), day);
            match ConversionStatus::try_from(c.status) {
                Ok(ConversionStatus::Accepted) => {
                    changes.count(
                        &named.all(),
                        day,
                        Counts {
                            conversions: 1,
                            ..Counts::default()
                        },
                    );
                    conversion_purchase(changes, &named.link, day, c.amount)?;
                }
                Ok(ConversionStatus::Held) => changes.count(
                    &named.all(),
                    day,
                    Counts {
                        conversions: 1,
                        ..Counts::default()
                    },
                ),
                // Never recorded so (only a review declines): nothing was recorded to count.
                Ok(ConversionStatus::Declined) => {}
                _ => return Err(format!("conversion status {} is unknown", c.status)),
            }
        }
        // Only a held conversion is reviewed: approved, it becomes a purchase now (on the day of
        // the sale, as its tracking event is); declined, it stays a recorded conversion.
        Some(Event::ConversionReviewed(reviewed)) => {
            let c = reviewed.conversion.ok_or("the conversion is missing")?;
            match ConversionStatus::try_from(c.status) {
                Ok(ConversionStatus::Accepted) => {
                    let named = Named::conversion(&c)?;
                    let day = day_of(c.converted_at.as_ref().and_then(from_timestamp), day);
                    conversion_purchase(changes, &named.link, day, c.amount)?;
                }
                Ok(ConversionStatus::Declined | ConversionStatus::Held) => {}
                _ => return Err(format!("conversion status {} is unknown", c.status)),
            }
        }
        // A refund of a conversion's sale is not counted (yet): the statistics keep counting what
        // was sold, and a refund takes nothing off the revenue.
        Some(
            Event::EvidenceSubmitted(_)
            | Event::CommandRejected(_)
            | Event::LinkCreated(_)
            | Event::LinkDisabled(_)
            | Event::ConversionRefunded(_),
        )
        | None => {}
    }
    Ok(())
}

/// The day of `at`, else `fallback` (the envelope's).
fn day_of(at: Option<DateTime<Utc>>, fallback: NaiveDate) -> NaiveDate {
    at.map_or(fallback, |at| at.date_naive())
}

/// Whom a click or a conversion counts for.
struct Named {
    /// The campaign and the creator (whom the purchases name too).
    owners: [Subject; 2],
    /// The link, then each sub-id with a value (whom no purchase names).
    link: Vec<Subject>,
}

impl Named {
    /// Of a click or a conversion (`what`, for the errors).
    fn of(
        what: &str,
        campaign_id: &str,
        creator_id: &str,
        link_id: &str,
        sub_ids: Option<&tracking_pb::SubIds>,
    ) -> Result<Self, String> {
        let creator = id(&format!("{what}.creator_id"), creator_id)?;
        let mut link = vec![Subject::Link(id(&format!("{what}.link_id"), link_id)?)];
        if let Some(s) = sub_ids {
            for (sub, value) in (1..=SUB_IDS).zip([&s.sub1, &s.sub2, &s.sub3, &s.sub4, &s.sub5]) {
                if !value.is_empty() {
                    link.push(Subject::sub_id(creator, sub, value));
                }
            }
        }
        Ok(Self {
            owners: [
                Subject::Campaign(id(&format!("{what}.campaign_id"), campaign_id)?),
                Subject::Creator(creator),
            ],
            link,
        })
    }

    fn conversion(c: &tracking_pb::Conversion) -> Result<Self, String> {
        Self::of(
            "conversion",
            &c.campaign_id,
            &c.creator_id,
            &c.link_id,
            c.sub_ids.as_ref(),
        )
    }

    /// Everyone.
    fn all(&self) -> Vec<Subject> {
        self.owners.iter().chain(&self.link).copied().collect()
    }
}

/// An accepted conversion's purchase and its amount as revenue, on `subjects` (the link and the
/// sub-ids).
fn conversion_purchase(
    changes: &mut Changes,
    subjects: &[Subject],
    day: NaiveDate,
    amount: Option<Money>,
) -> Result<(), String> {
    let amount = money("conversion.amount", amount)?;
    changes.count(
        subjects,
        day,
        Counts {
            purchases: 1,
            ..Counts::default()
        },
    );
    changes.money(
        subjects,
        day,
        &amount.currency,
        Amounts {
            revenue_minor: amount.amount_minor,
            ..Amounts::default()
        },
    );
    Ok(())
}

fn commission_changes(
    changes: &mut Changes,
    event: Option<commission_event::Event>,
    day: NaiveDate,
) -> Result<(), String> {
    use commission_event::Event;
    match event {
        Some(Event::CommissionCalculated(e)) => {
            let c = e.commission.ok_or("the commission is missing")?;
            let subjects = [
                Subject::Campaign(id("commission.campaign_id", &c.campaign_id)?),
                Subject::Creator(id("commission.creator_id", &c.creator_id)?),
            ];
            let amount = money("commission.amount", c.amount)?;
            changes.count(
                &subjects,
                day,
                Counts {
                    commissions: 1,
                    ..Counts::default()
                },
            );
            changes.money(
                &subjects,
                day,
                &amount.currency,
                Amounts {
                    earned_minor: amount.amount_minor,
                    ..Amounts::default()
                },
            );
        }
        // A purchase's commission refused (a payout's refused reservation is not a commission).
        // The campaign is named since the event carried it (older events name the creator only).
        Some(Event::CommissionRejected(e)) if !e.tracking_event_id.is_empty() => {
            let creator = Subject::Creator(id("creator_id", &e.creator_id)?);
            let campaign = if e.campaign_id.is_empty() {
                None
            } else {
                Some(Subject::Campaign(id("campaign_id", &e.campaign_id)?))
            };
            changes.count(
                &campaign.into_iter().chain([creator]).collect::<Vec<_>>(),
                day,
                Counts {
                    commissions_refused: 1,
                    ..Counts::default()
                },
            );
        }
        Some(Event::CommissionReserved(e)) => {
            reservation(changes, e.reservation, day, |a, m| a.reserved_minor = m)?;
        }
        Some(Event::CommissionReleased(e)) => {
            reservation(changes, e.reservation, day, |a, m| a.released_minor = m)?;
        }
        Some(Event::CommissionSettled(e)) => {
            reservation(changes, e.reservation, day, |a, m| a.paid_minor = m)?;
        }
        // A commission's lifecycle after it was calculated (approved after its hold, declined by
        // the advertiser, reversed by a refund) changes no statistic (yet): `earned` stays what
        // was calculated, whatever became of it.
        Some(
            Event::CommissionRejected(_)
            | Event::BudgetExhausted(_)
            | Event::CommandRejected(_)
            | Event::CommissionApproved(_)
            | Event::CommissionDeclined(_)
            | Event::CommissionReversed(_),
        )
        | None => {}
    }
    Ok(())
}

/// A reservation's amount, on its creator, in the field `set` names.
fn reservation(
    changes: &mut Changes,
    reservation: Option<affiliate_proto::commission::Reservation>,
    day: NaiveDate,
    set: impl FnOnce(&mut Amounts, i64),
) -> Result<(), String> {
    let r = reservation.ok_or("the reservation is missing")?;
    let creator = Subject::Creator(id("reservation.creator_id", &r.creator_id)?);
    let amount = money("reservation.amount", r.amount)?;
    let mut add = Amounts::default();
    set(&mut add, amount.amount_minor);
    changes.money(&[creator], day, &amount.currency, add);
    Ok(())
}

fn campaign_state(event: Option<campaign_event::Event>) -> Result<Option<CampaignState>, String> {
    use campaign_event::Event;
    let campaign = match event {
        Some(Event::CampaignCreated(e)) => e.campaign,
        Some(Event::CampaignStatusChanged(e)) => e.campaign,
        Some(Event::BudgetUpdated(e)) => e.campaign,
        Some(Event::TrackingUpdated(e)) => e.campaign,
        Some(Event::VideoAdded(_) | Event::CampaignAccepted(_) | Event::CommandRejected(_))
        | None => return Ok(None),
    };
    let c: campaign_pb::Campaign = campaign.ok_or("the campaign is missing")?;
    let budget = money("campaign.budget", c.budget)?;
    Ok(Some(CampaignState {
        campaign_id: id("campaign.id", &c.id)?,
        advertiser_id: id("campaign.advertiser_id", &c.advertiser_id)?,
        currency: budget.currency,
        budget_minor: budget.amount_minor,
        version: c.version,
    }))
}

fn id(field: &str, value: &str) -> Result<Uuid, String> {
    Uuid::parse_str(value).map_err(|_| format!("{field} `{value}` is not a UUID"))
}

fn money(field: &str, value: Option<Money>) -> Result<Money, String> {
    value.ok_or_else(|| format!("{field} is missing"))
}

/// What is left of a budget after `earned` (never below zero).
pub fn budget_left(budget_minor: i64, earned_minor: i64) -> i64 {
    budget_minor.saturating_sub(earned_minor).max(0)
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); empty if it is none.
pub fn trace_id(traceparent: Option<&str>) -> String {
    let Some(value) = traceparent else {
        return String::new();
    };
    let mut parts = value.split('-');
    match (parts.next(), parts.next()) {
        (Some(_version), Some(trace))
            if trace.len() == 32
                && trace.bytes().all(|b| b.is_ascii_hexdigit())
                && trace.bytes().any(|b| b != b'0') =>
        {
            trace.to_ascii_lowercase()
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use affiliate_proto::tracking::{TrackingEvent, TrackingEventCreated};

    fn purchase(campaign: Uuid, creator: Uuid, minor: i64) -> Vec<u8> {
        TrackingEventEnvelope {
            metadata: None,
            event: Some(tracking_event_envelope::Event::TrackingEventCreated(
                TrackingEventCreated {
                    event: Some(TrackingEvent {
                        campaign_id: campaign.to_string(),
                        creator_id: creator.to_string(),
                        kind: TrackingEventKind::Purchase.into(),
                        amount: Some(Money {
                            amount_minor: minor,
                            currency: "EUR".into(),
                        }),
                        occurred_at: Some(service_runtime::time::timestamp(
                            "2026-11-30T23:59:00Z".parse().unwrap(),
                        )),
                        ..Default::default()
                    }),
                },
            )),
        }
        .encode_to_vec()
    }

    fn topic(short: &str) -> &'static Topic {
        TOPICS.iter().find(|t| t.short == short).unwrap()
    }

    #[test]
    fn a_purchase_counts_for_its_campaign_and_creator_on_the_day_it_happened() {
        let (campaign, creator) = (Uuid::new_v4(), Uuid::new_v4());
        let received = "2026-12-01T00:01:00Z".parse().unwrap();
        let changes = Changes::of(
            topic("tracking-events"),
            &purchase(campaign, creator, 2500),
            received,
        )
        .unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        for subject in [Subject::Campaign(campaign), Subject::Creator(creator)] {
            assert_eq!(changes.counts[&(subject, day)].purchases, 1);
            assert_eq!(
                changes.amounts[&(subject, day, "EUR".into())].revenue_minor,
                2500
            );
        }
        assert_eq!(changes.counts.len(), 2);
    }

    /// A campaign, a creator and one of the creator's links with sub1 and sub3 set.
    struct Link {
        campaign: Uuid,
        creator: Uuid,
        link: Uuid,
    }

    impl Link {
        fn new() -> Self {
            Self {
                campaign: Uuid::new_v4(),
                creator: Uuid::new_v4(),
                link: Uuid::new_v4(),
            }
        }

        fn sub_ids() -> tracking_pb::SubIds {
            tracking_pb::SubIds {
                sub1: "video-42".into(),
                sub3: "pinned".into(),
                ..Default::default()
            }
        }

        fn sub1(&self) -> Subject {
            Subject::sub_id(self.creator, 1, "video-42")
        }

        fn sub3(&self) -> Subject {
            Subject::sub_id(self.creator, 3, "pinned")
        }

        fn campaign_and_creator(&self) -> [Subject; 2] {
            [
                Subject::Campaign(self.campaign),
                Subject::Creator(self.creator),
            ]
        }

        fn link_and_sub_ids(&self) -> [Subject; 3] {
            [Subject::Link(self.link), self.sub1(), self.sub3()]
        }

        fn click(&self, verdict: ClickVerdict) -> Vec<u8> {
            TrackingEventEnvelope {
                metadata: None,
                event: Some(tracking_event_envelope::Event::ClickRecorded(
                    tracking_pb::ClickRecorded {
                        click: Some(tracking_pb::Click {
                            id: Uuid::new_v4().to_string(),
                            link_id: self.link.to_string(),
                            campaign_id: self.campaign.to_string(),
                            creator_id: self.creator.to_string(),
                            sub_ids: Some(Self::sub_ids()),
                            clicked_at: Some(service_runtime::time::timestamp(
                                "2026-11-30T23:59:00Z".parse().unwrap(),
                            )),
                            verdict: verdict.into(),
                            ..Default::default()
                        }),
                    },
                )),
            }
            .encode_to_vec()
        }

        fn conversion(&self, status: ConversionStatus, minor: i64) -> tracking_pb::Conversion {
            tracking_pb::Conversion {
                id: Uuid::new_v4().to_string(),
                link_id: self.link.to_string(),
                campaign_id: self.campaign.to_string(),
                creator_id: self.creator.to_string(),
                sub_ids: Some(Self::sub_ids()),
                amount: Some(Money {
                    amount_minor: minor,
                    currency: "EUR".into(),
                }),
                converted_at: Some(service_runtime::time::timestamp(
                    "2026-11-30T23:59:00Z".parse().unwrap(),
                )),
                status: status.into(),
                ..Default::default()
            }
        }

        fn recorded(&self, status: ConversionStatus, minor: i64) -> Vec<u8> {
            TrackingEventEnvelope {
                metadata: None,
                event: Some(tracking_event_envelope::Event::ConversionRecorded(
                    tracking_pb::ConversionRecorded {
                        conversion: Some(self.conversion(status, minor)),
                    },
                )),
            }
            .encode_to_vec()
        }

        fn reviewed(&self, status: ConversionStatus, minor: i64) -> Vec<u8> {
            TrackingEventEnvelope {
                metadata: None,
                event: Some(tracking_event_envelope::Event::ConversionReviewed(
                    tracking_pb::ConversionReviewed {
                        conversion: Some(self.conversion(status, minor)),
                    },
                )),
            }
            .encode_to_vec()
        }
    }

    /// The day the tests' clicks and sales happened (received the day after).
    fn sale_day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()
    }

    fn tracking(payload: &[u8]) -> Changes {
        let received = "2026-12-01T00:01:00Z".parse().unwrap();
        Changes::of(topic("tracking-events"), payload, received).unwrap()
    }

    fn all(l: &Link) -> Vec<Subject> {
        l.campaign_and_creator()
            .into_iter()
            .chain(l.link_and_sub_ids())
            .collect()
    }

    #[test]
    fn a_unique_click_is_a_click_and_a_unique_click_for_everyone_it_names() {
        let l = Link::new();
        let changes = tracking(&l.click(ClickVerdict::Unique));
        let expected = Counts {
            clicks: 1,
            unique_clicks: 1,
            ..Counts::default()
        };
        for subject in all(&l) {
            assert_eq!(
                changes.counts[&(subject, sale_day())],
                expected,
                "{subject:?}"
            );
        }
        // The campaign, the creator, the link and the two sub-ids with a value.
        assert_eq!(changes.counts.len(), 5);
        assert!(changes.amounts.is_empty());
    }

    #[test]
    fn a_duplicate_click_is_a_click_but_not_a_unique_one() {
        let l = Link::new();
        let changes = tracking(&l.click(ClickVerdict::Duplicate));
        for subject in all(&l) {
            assert_eq!(
                changes.counts[&(subject, sale_day())],
                Counts {
                    clicks: 1,
                    ..Counts::default()
                }
            );
        }
    }

    #[test]
    fn a_bot_click_is_a_bot_click_only() {
        let l = Link::new();
        let changes = tracking(&l.click(ClickVerdict::Bot));
        for subject in all(&l) {
            assert_eq!(
                changes.counts[&(subject, sale_day())],
                Counts {
                    bot_clicks: 1,
                    ..Counts::default()
                }
            );
        }
    }

    #[test]
    fn a_click_without_a_verdict_is_refused() {
        let l = Link::new();
        let received = Utc::now();
        assert!(
            Changes::of(
                topic("tracking-events"),
                &l.click(ClickVerdict::Unspecified),
                received
            )
            .is_err()
        );
    }

    #[test]
    fn an_accepted_conversion_is_a_purchase_for_its_link_and_sub_ids_only() {
        let l = Link::new();
        let changes = tracking(&l.recorded(ConversionStatus::Accepted, 2500));
        for subject in l.campaign_and_creator() {
            // Their purchase comes as the tracking event the conversion became.
            assert_eq!(
                changes.counts[&(subject, sale_day())],
                Counts {
                    conversions: 1,
                    ..Counts::default()
                }
            );
            assert!(
                !changes
                    .amounts
                    .contains_key(&(subject, sale_day(), "EUR".into()))
            );
        }
        for subject in l.link_and_sub_ids() {
            assert_eq!(
                changes.counts[&(subject, sale_day())],
                Counts {
                    conversions: 1,
                    purchases: 1,
                    ..Counts::default()
                }
            );
            assert_eq!(
                changes.amounts[&(subject, sale_day(), "EUR".into())],
                Amounts {
                    revenue_minor: 2500,
                    ..Amounts::default()
                }
            );
        }
        assert_eq!(changes.amounts.len(), 3);
    }

    #[test]
    fn a_held_conversion_is_a_conversion_and_no_purchase() {
        let l = Link::new();
        let changes = tracking(&l.recorded(ConversionStatus::Held, 2500));
        for subject in all(&l) {
            assert_eq!(
                changes.counts[&(subject, sale_day())],
                Counts {
                    conversions: 1,
                    ..Counts::default()
                }
            );
        }
        assert!(changes.amounts.is_empty());
    }

    #[test]
    fn a_declined_conversion_adds_nothing() {
        let l = Link::new();
        assert!(
            tracking(&l.recorded(ConversionStatus::Declined, 2500)).is_empty(),
            "recorded declined"
        );
        assert!(
            tracking(&l.reviewed(ConversionStatus::Declined, 2500)).is_empty(),
            "held, then declined: it stays a recorded conversion"
        );
    }

    #[test]
    fn an_approved_held_conversion_becomes_a_purchase_for_its_link_and_sub_ids() {
        let l = Link::new();
        let changes = tracking(&l.reviewed(ConversionStatus::Accepted, 1200));
        for subject in l.link_and_sub_ids() {
            // Counted as a conversion when it was recorded held, not again.
            assert_eq!(
                changes.counts[&(subject, sale_day())],
                Counts {
                    purchases: 1,
                    ..Counts::default()
                }
            );
            assert_eq!(
                changes.amounts[&(subject, sale_day(), "EUR".into())].revenue_minor,
                1200
            );
        }
        assert_eq!(
            changes.counts.len(),
            3,
            "neither the campaign nor the creator"
        );
        assert_eq!(changes.amounts.len(), 3);
    }

    #[test]
    fn a_conversion_and_its_purchase_count_one_purchase_for_everyone() {
        let l = Link::new();
        let at = "2026-12-01T00:01:00Z".parse().unwrap();
        let tracking_events = topic("tracking-events");
        // Accepted at once: the conversion, then the purchase it became.
        let mut sums = Sums::default();
        for payload in [
            l.recorded(ConversionStatus::Accepted, 2500),
            purchase(l.campaign, l.creator, 2500),
        ] {
            sums.add(Changes::of(tracking_events, &payload, at).unwrap());
        }
        // Held, then approved: the held conversion, the review and the purchase it became.
        for payload in [
            l.recorded(ConversionStatus::Held, 700),
            l.reviewed(ConversionStatus::Accepted, 700),
            purchase(l.campaign, l.creator, 700),
        ] {
            sums.add(Changes::of(tracking_events, &payload, at).unwrap());
        }
        for subject in all(&l) {
            let counts = sums.counts[&(subject, sale_day())];
            assert_eq!(
                (counts.purchases, counts.conversions),
                (2, 2),
                "{subject:?}"
            );
            assert_eq!(
                sums.amounts[&(subject, sale_day(), "EUR".into())].revenue_minor,
                3200,
                "{subject:?}"
            );
        }
    }

    #[test]
    fn a_sub_id_is_the_same_subject_for_the_same_creator_sub_and_value_only() {
        let (creator, other) = (Uuid::new_v4(), Uuid::new_v4());
        let a = Subject::sub_id(creator, 1, "video-42");
        assert_eq!(a, Subject::sub_id(creator, 1, "video-42"));
        assert_eq!(a.kind(), "sub_id");
        assert_eq!(a.id().get_version_num(), 5);
        for different in [
            Subject::sub_id(other, 1, "video-42"),
            Subject::sub_id(creator, 2, "video-42"),
            Subject::sub_id(creator, 1, "video-43"),
            Subject::sub_id(creator, 1, "1=video-42"),
        ] {
            assert_ne!(a, different);
        }
    }

    #[test]
    fn link_events_count_nothing() {
        let l = Link::new();
        let created = TrackingEventEnvelope {
            metadata: None,
            event: Some(tracking_event_envelope::Event::LinkCreated(
                tracking_pb::LinkCreated {
                    link: Some(tracking_pb::TrackingLink {
                        id: l.link.to_string(),
                        ..Default::default()
                    }),
                },
            )),
        }
        .encode_to_vec();
        assert!(tracking(&created).is_empty());
    }

    #[test]
    fn a_refused_commission_counts_for_its_campaign_and_creator() {
        let (campaign, creator) = (Uuid::new_v4(), Uuid::new_v4());
        let rejected = |campaign_id: String| {
            CommissionEvent {
                metadata: None,
                event: Some(commission_event::Event::CommissionRejected(
                    affiliate_proto::commission::CommissionRejected {
                        tracking_event_id: Uuid::new_v4().to_string(),
                        creator_id: creator.to_string(),
                        campaign_id,
                        reason: "BUDGET_EXHAUSTED".into(),
                        ..Default::default()
                    },
                )),
            }
            .encode_to_vec()
        };
        let at: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().unwrap();
        let day = at.date_naive();
        let changes = Changes::of(
            topic("commission-events"),
            &rejected(campaign.to_string()),
            at,
        )
        .unwrap();
        for subject in [Subject::Campaign(campaign), Subject::Creator(creator)] {
            assert_eq!(changes.counts[&(subject, day)].commissions_refused, 1);
        }
        // An event written before it named the campaign still counts for the creator.
        let older = Changes::of(topic("commission-events"), &rejected(String::new()), at).unwrap();
        assert_eq!(older.counts.len(), 1);
    }

    #[test]
    fn a_batch_sums_each_row_once_and_keeps_each_campaigns_latest_state() {
        let (campaign, creator) = (Uuid::new_v4(), Uuid::new_v4());
        let at = "2026-12-01T00:01:00Z".parse().unwrap();
        let mut sums = Sums::default();
        for minor in [100, 250, 4000] {
            let purchase = purchase(campaign, creator, minor);
            sums.add(Changes::of(topic("tracking-events"), &purchase, at).unwrap());
        }
        let state = |version, budget_minor| CampaignState {
            campaign_id: campaign,
            advertiser_id: creator,
            currency: "EUR".into(),
            budget_minor,
            version,
        };
        for (version, budget) in [(3, 300), (5, 500), (4, 400)] {
            sums.add(Changes {
                campaign: Some(state(version, budget)),
                ..Changes::default()
            });
        }
        let day = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        assert_eq!(sums.counts.len(), 2);
        assert_eq!(
            sums.counts[&(Subject::Campaign(campaign), day)].purchases,
            3
        );
        assert_eq!(
            sums.amounts[&(Subject::Creator(creator), day, "EUR".into())].revenue_minor,
            4350
        );
        assert_eq!(sums.campaigns[&campaign], state(5, 500));
    }

    #[test]
    fn a_commission_s_approval_decline_or_reversal_is_taken_and_changes_no_statistic() {
        use affiliate_proto::commission as commission_pb;
        let commission = || {
            Some(commission_pb::Commission {
                id: Uuid::new_v4().to_string(),
                campaign_id: Uuid::new_v4().to_string(),
                creator_id: Uuid::new_v4().to_string(),
                amount: Some(Money {
                    amount_minor: 500,
                    currency: "EUR".into(),
                }),
                ..Default::default()
            })
        };
        let eur = |amount_minor| {
            Some(Money {
                amount_minor,
                currency: "EUR".into(),
            })
        };
        for event in [
            commission_event::Event::CommissionApproved(commission_pb::CommissionApproved {
                commission: commission(),
                early: true,
                ..Default::default()
            }),
            commission_event::Event::CommissionDeclined(commission_pb::CommissionDeclined {
                commission: commission(),
                reason: "the order was cancelled".into(),
                ..Default::default()
            }),
            commission_event::Event::CommissionReversed(commission_pb::CommissionReversed {
                commission: commission(),
                refund_id: "refund-1".into(),
                kind: "refund".into(),
                reversed: eur(200),
                clawed_back: eur(300),
                refunded: eur(5000),
                ..Default::default()
            }),
        ] {
            let payload = CommissionEvent {
                metadata: None,
                event: Some(event),
            }
            .encode_to_vec();
            let changes = Changes::of(topic("commission-events"), &payload, Utc::now());
            assert_eq!(changes, Ok(Changes::default()));
        }
    }

    #[test]
    fn commands_change_nothing_and_garbage_is_refused() {
        let now = Utc::now();
        assert!(
            Changes::of(topic("tracking-commands"), &[0xff], now)
                .unwrap()
                .is_empty()
        );
        assert!(Changes::of(topic("commission-events"), &[0xff, 0xff], now).is_err());
    }

    #[test]
    fn rates_are_zero_without_a_denominator() {
        let c = Counts {
            views: 4,
            clicks: 2,
            purchases: 1,
            ..Counts::default()
        };
        assert!((c.click_through_rate() - 0.5).abs() < 1e-12);
        assert!((c.conversion_rate() - 0.5).abs() < 1e-12);
        assert!(Counts::default().conversion_rate().abs() < 1e-12);
    }

    #[test]
    fn trace_ids_come_from_valid_traceparents_only() {
        assert_eq!(
            trace_id(Some(
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"
            )),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            trace_id(Some(
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
            )),
            ""
        );
        assert_eq!(trace_id(Some("garbage")), "");
        assert_eq!(trace_id(None), "");
    }

    #[test]
    fn a_budget_left_never_goes_below_zero() {
        assert_eq!(budget_left(5000, 1200), 3800);
        assert_eq!(budget_left(5000, 7000), 0);
    }
}
