//! Conversions: a sale an advertiser reports for a click, and whether it is attributed (no I/O).
//!
//! A click id names one click, so "last click wins" is the click the shop kept. The conversion
//! is attributed to that click's link, creator and campaign when the click is a person's, its
//! campaign belongs to the advertiser reporting and is active, its creator still accepted, and
//! the sale came within the campaign's attribution window after the click. One sooner than the
//! campaign's minimum click-to-conversion time is held as suspected fraud.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use service_runtime::validation::{FieldViolation, Violations, parse_id, text};

use super::{Amount, CampaignStatus, is_iso_4217};

/// Longest order id, in characters.
pub const MAX_ORDER_ID: usize = 128;
/// Largest amount of one conversion, in minor units (a billion major units of a 2-digit
/// currency): far above any sale, far below what sums could overflow.
pub const MAX_AMOUNT_MINOR: i64 = 100_000_000_000;
/// How far ahead of this clock a reported conversion time may be (clock skew).
pub const MAX_AHEAD: Duration = Duration::from_secs(300);

/// A click id as the landing page got it (32 hex digits) or as a UUID.
pub fn parse_click_id(field: &str, value: &str) -> Result<Uuid, FieldViolation> {
    let value = value.trim();
    if value.len() == 32
        && value.bytes().all(|b| b.is_ascii_hexdigit())
        && let Ok(id) = Uuid::try_parse(value)
    {
        return Ok(id);
    }
    parse_id(field, value)
        .map_err(|_| FieldViolation::new(field, "must be a click id (32 hex digits)"))
}

/// A validated RecordConversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConversion {
    pub advertiser_id: Uuid,
    pub click_id: Uuid,
    pub order_id: String,
    pub amount: Amount,
    pub converted_at: DateTime<Utc>,
}

/// The raw fields of a RecordConversion.
#[derive(Debug, Clone, Copy)]
pub struct RecordConversionInput<'a> {
    pub advertiser_id: &'a str,
    pub click_id: &'a str,
    pub order_id: &'a str,
    pub amount: Option<(i64, &'a str)>,
    pub converted_at: Option<DateTime<Utc>>,
}

/// Checks every field and reports every problem at once.
pub fn validate_conversion(
    input: RecordConversionInput<'_>,
    now: DateTime<Utc>,
) -> Result<NewConversion, Vec<FieldViolation>> {
    let mut v = Violations::new();
    let advertiser_id = v.check(parse_id("advertiser_id", input.advertiser_id));
    let click_id = v.check(parse_click_id("click_id", input.click_id));
    let order_id = v.check(one_line("order_id", input.order_id, true));
    let amount = match input.amount {
        None => {
            v.push(FieldViolation::new("amount", "is required"));
            None
        }
        Some((minor, currency)) => {
            let mut ok = true;
            if minor <= 0 {
                v.push(FieldViolation::new(
                    "amount.amount_minor",
                    "must be positive",
                ));
                ok = false;
            } else if minor > MAX_AMOUNT_MINOR {
                v.push(FieldViolation::new(
                    "amount.amount_minor",
                    format!("must be at most {MAX_AMOUNT_MINOR}"),
                ));
                ok = false;
            }
            if !is_iso_4217(currency) {
                v.push(FieldViolation::new(
                    "amount.currency",
                    "must be an ISO-4217 currency code in circulation",
                ));
                ok = false;
            }
            ok.then(|| Amount {
                minor,
                currency: currency.to_owned(),
            })
        }
    };
    let converted_at = match input.converted_at {
        Some(at) if at > now + MAX_AHEAD => {
            v.push(FieldViolation::new(
                "converted_at",
                "must not be more than 5 minutes in the future",
            ));
            None
        }
        Some(at) => Some(at),
        None => Some(now),
    };
    let new = match (advertiser_id, click_id, order_id, amount, converted_at) {
        (Some(advertiser_id), Some(click_id), Some(order_id), Some(amount), Some(converted_at)) => {
            Some(NewConversion {
                advertiser_id,
                click_id,
                order_id,
                amount,
                converted_at,
            })
        }
        _ => None,
    };
    v.finish(new)
}

/// What tracking knows of a conversion's click and its campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickFacts {
    pub clicked_at: DateTime<Utc>,
    pub bot: bool,
    /// The campaign's advertiser, if the copy knows it.
    pub advertiser_id: Option<Uuid>,
    pub status: CampaignStatus,
    pub accepted: bool,
    pub currency: Option<String>,
    pub attribution_window: Duration,
    pub min_click_to_conversion: Duration,
}

/// Why a conversion is not attributed: a reason code clients act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no click of this advertiser's campaigns has this click id")]
    UnknownClick,
    #[error("the click was a bot's: it is never attributed")]
    BotClick,
    #[error("the sale came after the campaign's attribution window")]
    OutsideWindow,
    #[error("the campaign is not active")]
    CampaignNotActive,
    #[error("the creator no longer takes part in the campaign")]
    CreatorNotAccepted,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Self::UnknownClick => "UNKNOWN_CLICK",
            Self::BotClick => "BOT_CLICK",
            Self::OutsideWindow => "OUTSIDE_WINDOW",
            Self::CampaignNotActive => "CAMPAIGN_NOT_ACTIVE",
            Self::CreatorNotAccepted => "CREATOR_NOT_ACCEPTED",
        }
    }
}

/// An attributed conversion: credited at once, or held for review (and why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attributed {
    Credit,
    Hold(String),
}

/// The attribution rules, in order. A wrong currency is the request's fault (a field
/// violation), checked by the caller after this.
pub fn attribute(new: &NewConversion, click: Option<&ClickFacts>) -> Result<Attributed, Refusal> {
    let click = click
        .filter(|c| c.advertiser_id == Some(new.advertiser_id))
        .ok_or(Refusal::UnknownClick)?;
    if click.bot {
        return Err(Refusal::BotClick);
    }
    let delay = new.converted_at - click.clicked_at;
    let window =
        chrono::Duration::from_std(click.attribution_window).unwrap_or(chrono::Duration::MAX);
    if delay > window {
        return Err(Refusal::OutsideWindow);
    }
    if click.status != CampaignStatus::Active {
        return Err(Refusal::CampaignNotActive);
    }
    if !click.accepted {
        return Err(Refusal::CreatorNotAccepted);
    }
    let min =
        chrono::Duration::from_std(click.min_click_to_conversion).unwrap_or(chrono::Duration::MAX);
    if delay < min {
        let secs = delay.num_milliseconds() as f64 / 1000.0;
        return Ok(Attributed::Hold(format!(
            "converted {secs:.1} s after its click, sooner than the campaign's minimum of {} s: \
             suspected fraud, held for review",
            click.min_click_to_conversion.as_secs()
        )));
    }
    Ok(Attributed::Credit)
}

/// Longest refund id, in characters.
pub const MAX_REFUND_ID: usize = 128;
/// The refund id an empty one stands for: the one full refund an order can have.
pub const FULL_REFUND: &str = "full";
/// Longest refund reason, in characters.
pub const MAX_REFUND_REASON: usize = 500;

/// What kind of money an advertiser gave back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundKind {
    /// The shop refunded the order (the default).
    Refund,
    /// The buyer's bank took the money back.
    Chargeback,
}

impl RefundKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refund => "refund",
            Self::Chargeback => "chargeback",
        }
    }

    /// A request's kind: empty means a refund.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "refund" => Some(Self::Refund),
            "chargeback" => Some(Self::Chargeback),
            _ => None,
        }
    }
}

/// A validated RefundConversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefund {
    pub advertiser_id: Uuid,
    pub order_id: String,
    /// The advertiser's id of the refund; [`FULL_REFUND`] when the request had none.
    pub refund_id: String,
    /// `None`: all that is left of the sale.
    pub amount: Option<Amount>,
    pub kind: RefundKind,
    pub reason: Option<String>,
}

/// The raw fields of a RefundConversion.
#[derive(Debug, Clone, Copy)]
pub struct RefundInput<'a> {
    pub advertiser_id: &'a str,
    pub order_id: &'a str,
    pub refund_id: &'a str,
    pub amount: Option<(i64, &'a str)>,
    pub kind: &'a str,
    pub reason: &'a str,
}

/// An order id or a refund id: at most 128 characters on one line, no control characters.
fn one_line(field: &str, value: &str, required: bool) -> Result<String, FieldViolation> {
    text(field, value, MAX_ORDER_ID, required).and_then(|o| {
        if o.contains(['\n', '\t']) {
            Err(FieldViolation::new(field, "must be one line"))
        } else {
            Ok(o)
        }
    })
}

/// Checks every field of a refund and reports every problem at once. Whether the amount is the
/// conversion's currency and within what is left of the sale is for the caller, which knows the
/// conversion.
pub fn validate_refund(input: RefundInput<'_>) -> Result<NewRefund, Vec<FieldViolation>> {
    let mut v = Violations::new();
    let advertiser_id = v.check(parse_id("advertiser_id", input.advertiser_id));
    let order_id = v.check(one_line("order_id", input.order_id, true));
    let refund_id = v.check(one_line("refund_id", input.refund_id, false).map(|id| {
        if id.is_empty() {
            FULL_REFUND.to_owned()
        } else {
            id
        }
    }));
    let amount = match input.amount {
        None => Some(None),
        Some((minor, currency)) => {
            let before = v.len();
            if minor <= 0 {
                v.push(FieldViolation::new(
                    "amount.amount_minor",
                    "must be positive",
                ));
            } else if minor > MAX_AMOUNT_MINOR {
                v.push(FieldViolation::new(
                    "amount.amount_minor",
                    format!("must be at most {MAX_AMOUNT_MINOR}"),
                ));
            }
            if !is_iso_4217(currency) {
                v.push(FieldViolation::new(
                    "amount.currency",
                    "must be an ISO-4217 currency code in circulation",
                ));
            }
            (v.len() == before).then(|| {
                Some(Amount {
                    minor,
                    currency: currency.to_owned(),
                })
            })
        }
    };
    let kind = v.check(
        RefundKind::parse(input.kind.trim())
            .ok_or_else(|| FieldViolation::new("kind", "must be `refund` or `chargeback`")),
    );
    let reason = v.check(text("reason", input.reason, MAX_REFUND_REASON, false));
    let new = match (advertiser_id, order_id, refund_id, amount, kind, reason) {
        (
            Some(advertiser_id),
            Some(order_id),
            Some(refund_id),
            Some(amount),
            Some(kind),
            Some(reason),
        ) => Some(NewRefund {
            advertiser_id,
            order_id,
            refund_id,
            amount,
            kind,
            reason: (!reason.is_empty()).then_some(reason),
        }),
        _ => None,
    };
    v.finish(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADVERTISER: &str = "0193a9e0-0000-7000-8000-0000000000ad";

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_750_000_000, 0).unwrap_or_default()
    }

    fn input() -> RecordConversionInput<'static> {
        RecordConversionInput {
            advertiser_id: ADVERTISER,
            click_id: "0193a9e0000070008000000000000c1c",
            order_id: " order-1 ",
            amount: Some((4_999, "EUR")),
            converted_at: None,
        }
    }

    fn click(seconds_before: i64) -> ClickFacts {
        ClickFacts {
            clicked_at: now() - chrono::Duration::seconds(seconds_before),
            bot: false,
            advertiser_id: Uuid::parse_str(ADVERTISER).ok(),
            status: CampaignStatus::Active,
            accepted: true,
            currency: Some("EUR".into()),
            attribution_window: Duration::from_secs(86_400),
            min_click_to_conversion: Duration::from_secs(10),
        }
    }

    #[test]
    fn a_conversion_reports_every_problem_at_once() {
        let new = validate_conversion(input(), now()).unwrap();
        assert_eq!(new.order_id, "order-1");
        assert_eq!(new.converted_at, now());
        assert_eq!(
            new.click_id,
            Uuid::parse_str("0193a9e0-0000-7000-8000-000000000c1c").unwrap()
        );
        let errors = validate_conversion(
            RecordConversionInput {
                advertiser_id: "x",
                click_id: "not-a-click",
                order_id: "",
                amount: Some((-5, "EURO")),
                converted_at: Some(now() + chrono::Duration::hours(1)),
            },
            now(),
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "advertiser_id",
                "click_id",
                "order_id",
                "amount.amount_minor",
                "amount.currency",
                "converted_at"
            ]
        );
        let too_much = RecordConversionInput {
            amount: Some((MAX_AMOUNT_MINOR + 1, "EUR")),
            ..input()
        };
        assert!(validate_conversion(too_much, now()).is_err());
    }

    #[test]
    fn attribution_refuses_with_a_reason_and_holds_what_is_too_quick() {
        let new = validate_conversion(input(), now()).unwrap();
        assert_eq!(attribute(&new, Some(&click(60))), Ok(Attributed::Credit));
        assert!(matches!(
            attribute(&new, Some(&click(3))),
            Ok(Attributed::Hold(_))
        ));
        assert_eq!(attribute(&new, None), Err(Refusal::UnknownClick));
        let other = ClickFacts {
            advertiser_id: Some(Uuid::nil()),
            ..click(60)
        };
        assert_eq!(attribute(&new, Some(&other)), Err(Refusal::UnknownClick));
        let bot = ClickFacts {
            bot: true,
            ..click(60)
        };
        assert_eq!(attribute(&new, Some(&bot)), Err(Refusal::BotClick));
        assert_eq!(
            attribute(&new, Some(&click(86_401))),
            Err(Refusal::OutsideWindow)
        );
        let paused = ClickFacts {
            status: CampaignStatus::Paused,
            ..click(60)
        };
        assert_eq!(
            attribute(&new, Some(&paused)),
            Err(Refusal::CampaignNotActive)
        );
        let left = ClickFacts {
            accepted: false,
            ..click(60)
        };
        assert_eq!(
            attribute(&new, Some(&left)),
            Err(Refusal::CreatorNotAccepted)
        );
        // a sale reported before its click (clock skew or worse) is held, not credited
        assert!(matches!(
            attribute(&new, Some(&click(-30))),
            Ok(Attributed::Hold(_))
        ));
    }
    #[test]
    fn a_refund_reports_every_problem_at_once_and_an_empty_id_is_the_full_refund() {
        let input = RefundInput {
            advertiser_id: ADVERTISER,
            order_id: " order-1 ",
            refund_id: "",
            amount: None,
            kind: "",
            reason: "",
        };
        let full = validate_refund(input).unwrap();
        assert_eq!(
            (full.order_id.as_str(), full.refund_id.as_str()),
            ("order-1", FULL_REFUND)
        );
        assert_eq!(
            (full.amount, full.kind, full.reason),
            (None, RefundKind::Refund, None)
        );
        let partial = validate_refund(RefundInput {
            refund_id: "r-1",
            amount: Some((500, "EUR")),
            kind: "chargeback",
            reason: "disputed",
            ..input
        })
        .unwrap();
        assert_eq!(partial.refund_id, "r-1");
        assert_eq!(partial.kind, RefundKind::Chargeback);
        assert_eq!(partial.reason.as_deref(), Some("disputed"));
        let errors = validate_refund(RefundInput {
            advertiser_id: "x",
            order_id: "",
            refund_id: "a\u{7}b",
            amount: Some((0, "EURO")),
            kind: "return",
            reason: &"x".repeat(501),
        })
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "advertiser_id",
                "order_id",
                "refund_id",
                "amount.amount_minor",
                "amount.currency",
                "kind",
                "reason"
            ]
        );
        let long = "r".repeat(MAX_REFUND_ID + 1);
        assert!(
            validate_refund(RefundInput {
                refund_id: &long,
                ..input
            })
            .is_err()
        );
    }
}
