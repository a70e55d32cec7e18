//! Tracking events and evidence, and the rules that guard them.

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use service_runtime::validation::{parse_http_url, text};

use super::{FieldViolation, Violations, is_iso_4217, parse_id};

/// Longest product id, in characters.
pub const MAX_PRODUCT_ID_CHARS: usize = 200;
/// Longest evidence note, in characters.
pub const MAX_NOTE_CHARS: usize = 1000;
/// How far ahead of our clock a reported `occurred_at` may be: the reporter's clock may run a
/// little fast, but an event cannot have happened later than that.
pub const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::minutes(5);
/// The range of a protobuf `Timestamp`: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

/// What the audience did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    View,
    Click,
    /// Carries an amount and becomes a commission.
    Purchase,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::Click => "click",
            Self::Purchase => "purchase",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "view" => Some(Self::View),
            "click" => Some(Self::Click),
            "purchase" => Some(Self::Purchase),
            _ => None,
        }
    }
}

/// What a piece of evidence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceKind {
    Photo,
    Video,
    Link,
}

impl EvidenceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Photo => "photo",
            Self::Video => "video",
            Self::Link => "link",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "photo" => Some(Self::Photo),
            "video" => Some(Self::Video),
            "link" => Some(Self::Link),
            _ => None,
        }
    }
}

/// A purchase amount: positive integer minor units of an ISO-4217 currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amount {
    pub minor: i64,
    pub currency: String,
}

/// A validated CreateEvent: `amount` is present exactly when `kind` is a purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub campaign_id: Uuid,
    pub creator_id: Uuid,
    pub kind: EventKind,
    pub amount: Option<Amount>,
    pub product_id: Option<String>,
    /// As reported (whole microseconds); `None` means "when it is recorded".
    pub occurred_at: Option<DateTime<Utc>>,
}

/// The raw fields of a CreateEvent request.
#[derive(Debug, Clone, Copy)]
pub struct CreateEventInput<'a> {
    pub campaign_id: &'a str,
    pub creator_id: &'a str,
    /// `None` when the request's kind is unspecified or unknown.
    pub kind: Option<EventKind>,
    /// (amount in minor units, currency); `None` when the request has no amount.
    pub amount: Option<(i64, &'a str)>,
    pub product_id: &'a str,
    /// (seconds, nanos) of the request's timestamp; `None` when it has none.
    pub occurred_at: Option<(i64, i32)>,
}

/// Checks every field of a CreateEvent against the clock reading `now` and reports every
/// problem at once.
pub fn validate_new_event(
    input: CreateEventInput<'_>,
    now: DateTime<Utc>,
) -> Result<NewEvent, Vec<FieldViolation>> {
    let mut v = Violations::new();
    let campaign_id = v.check(parse_id("campaign_id", input.campaign_id));
    let creator_id = v.check(parse_id("creator_id", input.creator_id));
    let kind = v.check(input.kind.ok_or_else(|| {
        FieldViolation::new(
            "kind",
            "must be TRACKING_EVENT_KIND_VIEW, _CLICK or _PURCHASE",
        )
    }));
    let amount = check_amount(input.kind, input.amount, &mut v);
    let product_id = v.check(text(
        "product_id",
        input.product_id,
        MAX_PRODUCT_ID_CHARS,
        false,
    ));
    let occurred_at = v.check(parse_occurred_at("occurred_at", input.occurred_at, now));
    let event = match (
        campaign_id,
        creator_id,
        kind,
        amount,
        product_id,
        occurred_at,
    ) {
        (
            Some(campaign_id),
            Some(creator_id),
            Some(kind),
            Some(amount),
            Some(product_id),
            Some(occurred_at),
        ) => Some(NewEvent {
            campaign_id,
            creator_id,
            kind,
            amount,
            product_id: Some(product_id).filter(|p| !p.is_empty()),
            occurred_at,
        }),
        _ => None,
    };
    v.finish(event)
}

/// A purchase needs a positive amount in a real currency; views and clicks carry none. With an
/// unknown kind, a given amount is still checked so every problem is reported. `None` means a
/// violation was recorded; `Some(None)` a rightly absent amount.
fn check_amount(
    kind: Option<EventKind>,
    amount: Option<(i64, &str)>,
    v: &mut Violations,
) -> Option<Option<Amount>> {
    match (kind, amount) {
        (Some(EventKind::Purchase), None) => {
            v.push(FieldViolation::new("amount", "is required for a purchase"));
            None
        }
        (Some(EventKind::View | EventKind::Click), Some(_)) => {
            v.push(FieldViolation::new(
                "amount",
                "must be absent for views and clicks",
            ));
            None
        }
        (_, None) => Some(None),
        (_, Some((minor, currency))) => {
            let mut valid = true;
            if minor <= 0 {
                v.push(FieldViolation::new(
                    "amount.amount_minor",
                    "must be a positive amount in minor units",
                ));
                valid = false;
            }
            if !is_iso_4217(currency) {
                v.push(FieldViolation::new(
                    "amount.currency",
                    "must be an ISO-4217 currency code in upper case, e.g. USD",
                ));
                valid = false;
            }
            valid.then(|| {
                Some(Amount {
                    minor,
                    currency: currency.to_owned(),
                })
            })
        }
    }
}

/// An optional timestamp no later than `now` plus the allowed clock skew, truncated to whole
/// microseconds (what PostgreSQL keeps) so the response equals what is read back later.
fn parse_occurred_at(
    field: &str,
    value: Option<(i64, i32)>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, FieldViolation> {
    let Some((seconds, nanos)) = value else {
        return Ok(None);
    };
    let at = u32::try_from(nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .filter(|_| (MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&seconds))
        .and_then(|n| DateTime::from_timestamp(seconds, n))
        .ok_or_else(|| {
            FieldViolation::new(field, "must be a valid timestamp between years 1 and 9999")
        })?;
    let at = DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at);
    if at.signed_duration_since(now) > MAX_CLOCK_SKEW {
        return Err(FieldViolation::new(
            field,
            format!(
                "must not be more than {} minutes in the future",
                MAX_CLOCK_SKEW.num_minutes()
            ),
        ));
    }
    Ok(Some(at))
}

/// A validated SubmitEvidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvidence {
    pub campaign_id: Uuid,
    pub creator_id: Uuid,
    pub kind: EvidenceKind,
    pub url: String,
    pub note: String,
}

/// The raw fields of a SubmitEvidence request.
#[derive(Debug, Clone, Copy)]
pub struct SubmitEvidenceInput<'a> {
    pub campaign_id: &'a str,
    pub creator_id: &'a str,
    /// `None` when the request's kind is unspecified or unknown.
    pub kind: Option<EvidenceKind>,
    pub url: &'a str,
    pub note: &'a str,
}

/// Checks every field of a SubmitEvidence and reports every problem at once.
pub fn validate_new_evidence(
    input: SubmitEvidenceInput<'_>,
) -> Result<NewEvidence, Vec<FieldViolation>> {
    let mut v = Violations::new();
    let campaign_id = v.check(parse_id("campaign_id", input.campaign_id));
    let creator_id = v.check(parse_id("creator_id", input.creator_id));
    let kind = v.check((input.kind).ok_or_else(|| {
        FieldViolation::new("kind", "must be EVIDENCE_KIND_PHOTO, _VIDEO or _LINK")
    }));
    let url = v.check(parse_http_url("url", input.url));
    let note = v.check(text("note", input.note, MAX_NOTE_CHARS, false));
    let evidence = match (campaign_id, creator_id, kind, url, note) {
        (Some(campaign_id), Some(creator_id), Some(kind), Some(url), Some(note)) => {
            Some(NewEvidence {
                campaign_id,
                creator_id,
                kind,
                url,
                note,
            })
        }
        _ => None,
    };
    v.finish(evidence)
}

#[cfg(test)]
mod tests {
    use service_runtime::validation::MAX_URL_LEN;

    use super::*;

    const CAMPAIGN: &str = "0193a9e0-0000-7000-8000-000000000001";
    const CREATOR: &str = "0193a9e0-0000-7000-8000-000000000002";

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_750_000_000, 0).unwrap_or_default()
    }

    fn purchase() -> CreateEventInput<'static> {
        CreateEventInput {
            campaign_id: CAMPAIGN,
            creator_id: CREATOR,
            kind: Some(EventKind::Purchase),
            amount: Some((4_999, "EUR")),
            product_id: " sku-42 ",
            occurred_at: None,
        }
    }

    fn view() -> CreateEventInput<'static> {
        CreateEventInput {
            kind: Some(EventKind::View),
            amount: None,
            product_id: "",
            ..purchase()
        }
    }

    fn evidence() -> SubmitEvidenceInput<'static> {
        SubmitEvidenceInput {
            campaign_id: CAMPAIGN,
            creator_id: CREATOR,
            kind: Some(EvidenceKind::Link),
            url: "https://social.example/p/123",
            note: "  posted at noon ",
        }
    }

    fn fields<T: std::fmt::Debug>(result: Result<T, Vec<FieldViolation>>) -> Vec<String> {
        result
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.field)
            .collect()
    }

    fn event_fields(input: CreateEventInput<'_>) -> Vec<String> {
        fields(validate_new_event(input, now()))
    }

    #[test]
    fn a_valid_purchase_keeps_its_amount_and_trims_the_product() {
        let event = validate_new_event(purchase(), now()).unwrap();
        assert_eq!(event.kind, EventKind::Purchase);
        assert_eq!(
            event.amount,
            Some(Amount {
                minor: 4_999,
                currency: "EUR".into()
            })
        );
        assert_eq!(event.product_id.as_deref(), Some("sku-42"));
        assert_eq!(event.occurred_at, None);
    }

    #[test]
    fn views_and_clicks_are_valid_without_an_amount() {
        for kind in [EventKind::View, EventKind::Click] {
            let event = validate_new_event(
                CreateEventInput {
                    kind: Some(kind),
                    ..view()
                },
                now(),
            )
            .unwrap();
            assert_eq!(
                (event.kind, event.amount, event.product_id),
                (kind, None, None)
            );
        }
    }

    #[test]
    fn ids_are_required_uuids() {
        assert_eq!(
            event_fields(CreateEventInput {
                campaign_id: "",
                creator_id: "creator-7",
                ..view()
            }),
            ["campaign_id", "creator_id"]
        );
    }

    #[test]
    fn the_kind_must_be_specified() {
        assert_eq!(
            event_fields(CreateEventInput {
                kind: None,
                ..view()
            }),
            ["kind"]
        );
    }

    #[test]
    fn a_purchase_needs_an_amount() {
        assert_eq!(
            event_fields(CreateEventInput {
                amount: None,
                ..purchase()
            }),
            ["amount"]
        );
    }

    #[test]
    fn a_purchase_amount_is_positive_in_a_real_currency() {
        for minor in [0, -1] {
            assert_eq!(
                event_fields(CreateEventInput {
                    amount: Some((minor, "EUR")),
                    ..purchase()
                }),
                ["amount.amount_minor"]
            );
        }
        for currency in ["eur", "XXX", "EURO", ""] {
            assert_eq!(
                event_fields(CreateEventInput {
                    amount: Some((100, currency)),
                    ..purchase()
                }),
                ["amount.currency"],
                "{currency}"
            );
        }
    }

    #[test]
    fn views_and_clicks_must_not_carry_an_amount() {
        for kind in [EventKind::View, EventKind::Click] {
            assert_eq!(
                event_fields(CreateEventInput {
                    kind: Some(kind),
                    amount: Some((100, "USD")),
                    ..view()
                }),
                ["amount"]
            );
        }
    }

    #[test]
    fn an_amount_with_an_unknown_kind_is_still_checked() {
        assert_eq!(
            event_fields(CreateEventInput {
                kind: None,
                amount: Some((0, "usd")),
                ..view()
            }),
            ["kind", "amount.amount_minor", "amount.currency"]
        );
    }

    #[test]
    fn product_ids_fit_two_hundred_characters() {
        let longest = "é".repeat(MAX_PRODUCT_ID_CHARS);
        assert!(
            validate_new_event(
                CreateEventInput {
                    product_id: &longest,
                    ..purchase()
                },
                now()
            )
            .is_ok()
        );
        let long = "p".repeat(MAX_PRODUCT_ID_CHARS + 1);
        assert_eq!(
            event_fields(CreateEventInput {
                product_id: &long,
                ..purchase()
            }),
            ["product_id"]
        );
        assert_eq!(
            event_fields(CreateEventInput {
                product_id: "a\u{7}b",
                ..purchase()
            }),
            ["product_id"]
        );
    }

    #[test]
    fn occurred_at_may_be_past_or_slightly_ahead_but_not_later() {
        let at = |seconds: i64| {
            validate_new_event(
                CreateEventInput {
                    occurred_at: Some((now().timestamp() + seconds, 0)),
                    ..view()
                },
                now(),
            )
        };
        assert_eq!(
            at(-86_400).unwrap().occurred_at,
            DateTime::from_timestamp(now().timestamp() - 86_400, 0)
        );
        assert!(at(300).is_ok(), "five minutes ahead is clock skew");
        assert_eq!(fields(at(301)), ["occurred_at"]);
        assert_eq!(fields(at(86_400)), ["occurred_at"]);
    }

    #[test]
    fn occurred_at_is_a_valid_timestamp_kept_to_microseconds() {
        let event = validate_new_event(
            CreateEventInput {
                occurred_at: Some((1_700_000_000, 123_456_789)),
                ..view()
            },
            now(),
        )
        .unwrap();
        assert_eq!(
            event.occurred_at,
            DateTime::from_timestamp(1_700_000_000, 123_456_000)
        );
        for bad in [
            (1_700_000_000, -1),
            (1_700_000_000, 1_000_000_000),
            (MIN_TIMESTAMP_SECONDS - 1, 0),
            (i64::MAX, 0),
        ] {
            assert_eq!(
                event_fields(CreateEventInput {
                    occurred_at: Some(bad),
                    ..view()
                }),
                ["occurred_at"],
                "{bad:?}"
            );
        }
    }

    #[test]
    fn every_event_violation_is_reported_at_once() {
        let long = "p".repeat(MAX_PRODUCT_ID_CHARS + 1);
        let bad = CreateEventInput {
            campaign_id: "nope",
            creator_id: "",
            kind: Some(EventKind::Purchase),
            amount: Some((-5, "dollars")),
            product_id: &long,
            occurred_at: Some((now().timestamp() + 3_600, 0)),
        };
        assert_eq!(
            event_fields(bad),
            [
                "campaign_id",
                "creator_id",
                "amount.amount_minor",
                "amount.currency",
                "product_id",
                "occurred_at"
            ]
        );
    }

    #[test]
    fn valid_evidence_is_accepted_with_a_trimmed_note() {
        let evidence = validate_new_evidence(evidence()).unwrap();
        assert_eq!(evidence.kind, EvidenceKind::Link);
        assert_eq!(evidence.note, "posted at noon");
        assert!(
            validate_new_evidence(SubmitEvidenceInput {
                note: "",
                ..self::evidence()
            })
            .is_ok(),
            "the note is optional"
        );
    }

    #[test]
    fn evidence_needs_ids_and_a_kind() {
        assert_eq!(
            fields(validate_new_evidence(SubmitEvidenceInput {
                campaign_id: "x",
                creator_id: "",
                kind: None,
                ..evidence()
            })),
            ["campaign_id", "creator_id", "kind"]
        );
    }

    #[test]
    fn evidence_urls_are_http_or_https_with_a_host() {
        for ok in [
            "https://cdn.example.com/v/1.mp4",
            "http://example.com",
            "HTTPS://Example.com/x?y=1#z",
            "https://user@example.com:8443/p",
            "https://[2001:db8::1]:8080/p",
            "https://[::1]",
        ] {
            let url = validate_new_evidence(SubmitEvidenceInput {
                url: ok,
                ..evidence()
            });
            assert_eq!(url.map(|e| e.url), Ok(ok.to_owned()));
        }
        for bad in [
            "",
            "ftp://example.com/file",
            "https://",
            "https:///path",
            "https://:80/",
            "https://example.com:port/",
            "https://[::1/",
            "https://[::1]x/",
            "example.com/p",
            "https://exa mple.com",
            "mailto:someone@example.com",
        ] {
            assert_eq!(
                fields(validate_new_evidence(SubmitEvidenceInput {
                    url: bad,
                    ..evidence()
                })),
                ["url"],
                "{bad}"
            );
        }
    }

    #[test]
    fn evidence_urls_fit_2048_bytes() {
        let prefix = "https://example.com/";
        let longest = format!("{prefix}{}", "a".repeat(MAX_URL_LEN - prefix.len()));
        assert!(
            validate_new_evidence(SubmitEvidenceInput {
                url: &longest,
                ..evidence()
            })
            .is_ok()
        );
        let long = format!("{longest}a");
        assert_eq!(
            fields(validate_new_evidence(SubmitEvidenceInput {
                url: &long,
                ..evidence()
            })),
            ["url"]
        );
    }

    #[test]
    fn notes_fit_a_thousand_characters() {
        let longest = "n".repeat(MAX_NOTE_CHARS);
        assert!(
            validate_new_evidence(SubmitEvidenceInput {
                note: &longest,
                ..evidence()
            })
            .is_ok()
        );
        let long = "n".repeat(MAX_NOTE_CHARS + 1);
        assert_eq!(
            fields(validate_new_evidence(SubmitEvidenceInput {
                note: &long,
                ..evidence()
            })),
            ["note"]
        );
        assert!(
            validate_new_evidence(SubmitEvidenceInput {
                note: "line one\nline\ttwo",
                ..evidence()
            })
            .is_ok(),
            "newlines and tabs are fine"
        );
    }

    #[test]
    fn every_evidence_violation_is_reported_at_once() {
        let long = "n".repeat(MAX_NOTE_CHARS + 1);
        assert_eq!(
            fields(validate_new_evidence(SubmitEvidenceInput {
                campaign_id: "",
                creator_id: "bad",
                kind: None,
                url: "ftp://x",
                note: &long,
            })),
            ["campaign_id", "creator_id", "kind", "url", "note"]
        );
    }

    #[test]
    fn kinds_round_trip_through_their_text_form() {
        for kind in [EventKind::View, EventKind::Click, EventKind::Purchase] {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        for kind in [EvidenceKind::Photo, EvidenceKind::Video, EvidenceKind::Link] {
            assert_eq!(EvidenceKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::parse("VIEW"), None);
        assert_eq!(EvidenceKind::parse(""), None);
    }
}
