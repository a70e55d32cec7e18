//! Campaign values and the rules that guard them.

use uuid::Uuid;

use super::is_iso_4217;
use super::tracking::{DurationInput, TrackingInput, TrackingSettings, check_tracking, seconds};

/// Longest campaign name or video title, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest campaign description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 5000;
/// 100 % in basis points.
pub const MAX_RATE_BPS: u32 = 10_000;
/// How long a campaign's commissions stay pending when its creation names no hold period: 30 days.
pub const DEFAULT_HOLD_PERIOD_SECS: i64 = 30 * 86_400;
/// Longest hold period: 365 days (0, approval at once, is the shortest).
pub const MAX_HOLD_PERIOD_SECS: i64 = 365 * 86_400;

pub use service_runtime::validation::{FieldViolation, parse_id};
use service_runtime::validation::{Violations, parse_http_url, text};

/// Lifecycle state of a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignStatus {
    Active,
    Paused,
    Closed,
}

impl CampaignStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "paused" => Some(Self::Paused),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }
}

/// Why a valid request cannot be applied to the campaign as it is now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("campaign is {}, only active campaigns can be accepted", .0.as_str())]
    NotAcceptable(CampaignStatus),
    #[error("campaign is closed, no videos can be added")]
    Closed,
    #[error("a {} campaign cannot be {}", .from.as_str(), .change.past_tense())]
    InvalidTransition {
        from: CampaignStatus,
        change: StatusChange,
    },
    #[error("campaign is closed, its budget cannot change")]
    BudgetOfClosed,
    #[error("the campaign's budget is in {campaign}, not {requested}")]
    CurrencyMismatch { campaign: String, requested: String },
    #[error("the campaign's budget has changed since it was spent; it is not paused")]
    BudgetChanged,
    #[error("campaign is closed, its tracking settings cannot change")]
    TrackingOfClosed,
}

/// Why a campaign is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseReason {
    /// Its advertiser paused it.
    Advertiser,
    /// The commission service paused it: its budget is spent. A larger budget resumes it.
    BudgetExhausted,
}

impl PauseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Advertiser => "advertiser",
            Self::BudgetExhausted => "budget_exhausted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "advertiser" => Some(Self::Advertiser),
            "budget_exhausted" => Some(Self::BudgetExhausted),
            _ => None,
        }
    }
}

/// A validated UpdateBudget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetUpdate {
    pub campaign_id: Uuid,
    pub budget_minor: i64,
    pub currency: String,
}

/// UpdateBudget's fields: a campaign id and a positive budget in a real currency.
pub fn validate_budget_update(
    campaign_id: &str,
    budget: Option<(i64, &str)>,
) -> Result<BudgetUpdate, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    let campaign_id = collect(parse_id("campaign_id", campaign_id), &mut violations);
    let budget = parse_budget("budget", budget, &mut violations);
    match (campaign_id, budget) {
        (Some(campaign_id), Some((budget_minor, currency))) if violations.is_empty() => {
            Ok(BudgetUpdate {
                campaign_id,
                budget_minor,
                currency,
            })
        }
        _ => Err(violations),
    }
}

/// A campaign as a budget change sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetState<'a> {
    pub status: CampaignStatus,
    pub pause_reason: Option<PauseReason>,
    pub budget_minor: i64,
    pub currency: &'a str,
}

/// The status after `update`: the budget of a closed campaign never changes, the currency stays
/// the campaign's, and a campaign paused for a spent budget is resumed by a larger one (an
/// advertiser's pause stays).
pub fn check_budget_update(
    campaign: &BudgetState<'_>,
    update: &BudgetUpdate,
) -> Result<CampaignStatus, Rejection> {
    if campaign.status == CampaignStatus::Closed {
        return Err(Rejection::BudgetOfClosed);
    }
    if campaign.currency != update.currency {
        return Err(Rejection::CurrencyMismatch {
            campaign: campaign.currency.to_owned(),
            requested: update.currency.clone(),
        });
    }
    let resumes = campaign.status == CampaignStatus::Paused
        && campaign.pause_reason == Some(PauseReason::BudgetExhausted)
        && update.budget_minor > campaign.budget_minor;
    Ok(if resumes {
        CampaignStatus::Active
    } else {
        campaign.status
    })
}

/// A pause for a spent budget applies only to an active campaign whose budget is still the one
/// that was spent (`exhausted` = (amount, currency)): one raised meanwhile keeps it running.
pub fn check_budget_pause(
    campaign: &BudgetState<'_>,
    exhausted: (i64, &str),
) -> Result<CampaignStatus, Rejection> {
    let next = check_status_change(campaign.status, StatusChange::Pause)?;
    if (campaign.budget_minor, campaign.currency) != exhausted {
        return Err(Rejection::BudgetChanged);
    }
    Ok(next)
}

/// An advertiser's change of a campaign's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    Pause,
    Resume,
    Close,
}

impl StatusChange {
    fn past_tense(self) -> &'static str {
        match self {
            Self::Pause => "paused",
            Self::Resume => "resumed",
            Self::Close => "closed",
        }
    }
}

/// The status after `change`: active ⇄ paused, active or paused → closed; closed is final and
/// a change to the state the campaign is already in is refused.
pub fn check_status_change(
    from: CampaignStatus,
    change: StatusChange,
) -> Result<CampaignStatus, Rejection> {
    use CampaignStatus::{Active, Closed, Paused};
    match (from, change) {
        (Active, StatusChange::Pause) => Ok(Paused),
        (Paused, StatusChange::Resume) => Ok(Active),
        (Active | Paused, StatusChange::Close) => Ok(Closed),
        _ => Err(Rejection::InvalidTransition { from, change }),
    }
}

/// A validated CreateCampaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCampaign {
    pub advertiser_id: Uuid,
    pub name: String,
    pub description: String,
    pub commission_rate_bps: u32,
    pub budget_minor: i64,
    pub currency: String,
    /// `None`: the campaign has no tracking settings yet.
    pub tracking: Option<TrackingSettings>,
    /// How long its commissions stay pending before they are approved, in whole seconds.
    pub hold_period_secs: i64,
}

/// The raw fields of a CreateCampaign request.
#[derive(Debug, Clone, Copy)]
pub struct CreateCampaignInput<'a> {
    pub advertiser_id: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    pub commission_rate_bps: u32,
    /// (amount in minor units, currency); `None` when the request has no budget.
    pub budget: Option<(i64, &'a str)>,
    /// Optional; when given, checked like UpdateTrackingSettings' (`tracking.…` fields).
    pub tracking: Option<TrackingInput<'a>>,
    /// `None` when the request leaves it out: [`DEFAULT_HOLD_PERIOD_SECS`].
    pub hold_period: Option<DurationInput>,
}

/// Checks every field and reports every problem at once.
pub fn validate_new_campaign(
    input: CreateCampaignInput<'_>,
) -> Result<NewCampaign, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    let advertiser_id = collect(
        parse_id("advertiser_id", input.advertiser_id),
        &mut violations,
    );
    let name = collect(
        text("name", input.name, MAX_NAME_CHARS, true),
        &mut violations,
    );
    let description = collect(
        text(
            "description",
            input.description,
            MAX_DESCRIPTION_CHARS,
            false,
        ),
        &mut violations,
    );
    if input.commission_rate_bps > MAX_RATE_BPS {
        violations.push(FieldViolation::new(
            "commission_rate_bps",
            format!("must be between 0 and {MAX_RATE_BPS} basis points (0 % to 100 %)"),
        ));
    }
    let budget = parse_budget("budget", input.budget, &mut violations);
    let tracking = match input.tracking {
        None => Some(None),
        Some(tracking) => {
            let mut checked = Violations::new();
            let settings = check_tracking("tracking", tracking, &mut checked);
            match checked.finish(settings) {
                Ok(settings) => Some(Some(settings)),
                Err(found) => {
                    violations.extend(found);
                    None
                }
            }
        }
    };
    let hold_period_secs = collect(
        seconds(
            "hold_period",
            input.hold_period,
            DEFAULT_HOLD_PERIOD_SECS,
            (0, MAX_HOLD_PERIOD_SECS),
            "between 0 and 365 days",
        ),
        &mut violations,
    );
    match (
        advertiser_id,
        name,
        description,
        budget,
        tracking,
        hold_period_secs,
    ) {
        (
            Some(advertiser_id),
            Some(name),
            Some(description),
            Some((budget_minor, currency)),
            Some(tracking),
            Some(hold_period_secs),
        ) if violations.is_empty() => Ok(NewCampaign {
            advertiser_id,
            name,
            description,
            commission_rate_bps: input.commission_rate_bps,
            budget_minor,
            currency,
            tracking,
            hold_period_secs,
        }),
        _ => Err(violations),
    }
}

/// A validated AddVideo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVideo {
    pub campaign_id: Uuid,
    pub url: String,
    pub title: String,
}

pub fn validate_new_video(
    campaign_id: &str,
    url: &str,
    title: &str,
) -> Result<NewVideo, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    let campaign_id = collect(parse_id("campaign_id", campaign_id), &mut violations);
    let url = collect(parse_http_url("url", url), &mut violations);
    let title = collect(text("title", title, MAX_NAME_CHARS, true), &mut violations);
    match (campaign_id, url, title) {
        (Some(campaign_id), Some(url), Some(title)) if violations.is_empty() => Ok(NewVideo {
            campaign_id,
            url,
            title,
        }),
        _ => Err(violations),
    }
}

/// A validated AcceptCampaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewAcceptance {
    pub campaign_id: Uuid,
    pub creator_id: Uuid,
}

pub fn validate_acceptance(
    campaign_id: &str,
    creator_id: &str,
    accepted_terms: bool,
) -> Result<NewAcceptance, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    let campaign_id = collect(parse_id("campaign_id", campaign_id), &mut violations);
    let creator_id = collect(parse_id("creator_id", creator_id), &mut violations);
    if !accepted_terms {
        violations.push(FieldViolation::new(
            "accepted_terms",
            "the campaign's terms must be accepted",
        ));
    }
    match (campaign_id, creator_id) {
        (Some(campaign_id), Some(creator_id)) if violations.is_empty() => Ok(NewAcceptance {
            campaign_id,
            creator_id,
        }),
        _ => Err(violations),
    }
}

/// A creator may accept only an active campaign.
pub fn check_can_accept(status: CampaignStatus) -> Result<(), Rejection> {
    match status {
        CampaignStatus::Active => Ok(()),
        other => Err(Rejection::NotAcceptable(other)),
    }
}

/// Videos may be added to active and paused campaigns, not closed ones.
pub fn check_can_add_video(status: CampaignStatus) -> Result<(), Rejection> {
    match status {
        CampaignStatus::Closed => Err(Rejection::Closed),
        _ => Ok(()),
    }
}

/// Tracking settings may change while a campaign is active or paused, not once it is closed.
pub fn check_can_update_tracking(status: CampaignStatus) -> Result<(), Rejection> {
    match status {
        CampaignStatus::Closed => Err(Rejection::TrackingOfClosed),
        CampaignStatus::Active | CampaignStatus::Paused => Ok(()),
    }
}

/// A required budget: a positive amount in minor units in an ISO-4217 currency.
fn parse_budget(
    field: &str,
    budget: Option<(i64, &str)>,
    violations: &mut Vec<FieldViolation>,
) -> Option<(i64, String)> {
    let Some((amount, currency)) = budget else {
        violations.push(FieldViolation::new(field, "is required"));
        return None;
    };
    if amount <= 0 {
        violations.push(FieldViolation::new(
            format!("{field}.amount_minor"),
            "must be a positive amount in minor units",
        ));
    }
    let currency = collect(
        parse_currency(&format!("{field}.currency"), currency),
        violations,
    );
    currency.map(|c| (amount, c))
}

fn parse_currency(field: &str, value: &str) -> Result<String, FieldViolation> {
    if is_iso_4217(value) {
        Ok(value.to_owned())
    } else {
        Err(FieldViolation::new(
            field,
            "must be an ISO-4217 currency code in upper case, e.g. USD",
        ))
    }
}

fn collect<T>(
    result: Result<T, FieldViolation>,
    violations: &mut Vec<FieldViolation>,
) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(violation) => {
            violations.push(violation);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADVERTISER: &str = "0193a9e0-0000-7000-8000-000000000001";

    fn input() -> CreateCampaignInput<'static> {
        CreateCampaignInput {
            advertiser_id: ADVERTISER,
            name: "  Summer launch ",
            description: "Shoes",
            commission_rate_bps: 1250,
            budget: Some((100_000, "USD")),
            tracking: None,
            hold_period: None,
        }
    }

    fn fields(result: Result<impl std::fmt::Debug, Vec<FieldViolation>>) -> Vec<String> {
        result
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.field)
            .collect()
    }

    #[test]
    fn a_valid_campaign_is_accepted_and_trimmed() {
        let campaign = validate_new_campaign(input());
        assert_eq!(campaign.map(|c| c.name), Ok("Summer launch".to_owned()));
    }

    #[test]
    fn an_empty_name_is_refused() {
        assert_eq!(
            fields(validate_new_campaign(CreateCampaignInput {
                name: "   ",
                ..input()
            })),
            ["name"]
        );
    }

    #[test]
    fn an_overlong_name_is_refused() {
        let long = "x".repeat(MAX_NAME_CHARS + 1);
        assert_eq!(
            fields(validate_new_campaign(CreateCampaignInput {
                name: &long,
                ..input()
            })),
            ["name"]
        );
    }

    #[test]
    fn rate_bounds_are_zero_and_one_hundred_percent() {
        for ok in [0, 1, MAX_RATE_BPS] {
            assert!(
                validate_new_campaign(CreateCampaignInput {
                    commission_rate_bps: ok,
                    ..input()
                })
                .is_ok()
            );
        }
        let over = CreateCampaignInput {
            commission_rate_bps: MAX_RATE_BPS + 1,
            ..input()
        };
        assert_eq!(fields(validate_new_campaign(over)), ["commission_rate_bps"]);
    }

    #[test]
    fn budget_must_be_positive_in_a_real_currency() {
        assert_eq!(
            fields(validate_new_campaign(CreateCampaignInput {
                budget: Some((0, "USD")),
                ..input()
            })),
            ["budget.amount_minor"]
        );
        assert_eq!(
            fields(validate_new_campaign(CreateCampaignInput {
                budget: Some((-5, "USD")),
                ..input()
            })),
            ["budget.amount_minor"]
        );
        assert_eq!(
            fields(validate_new_campaign(CreateCampaignInput {
                budget: Some((5, "usd")),
                ..input()
            })),
            ["budget.currency"]
        );
        assert_eq!(
            fields(validate_new_campaign(CreateCampaignInput {
                budget: None,
                ..input()
            })),
            ["budget"]
        );
    }

    #[test]
    fn every_violation_is_reported_at_once() {
        let bad = CreateCampaignInput {
            advertiser_id: "nope",
            name: "",
            description: "ok",
            commission_rate_bps: 20_000,
            budget: Some((0, "ZZZ")),
            tracking: Some(TrackingInput {
                landing_url: "",
                landing_domains: &[],
                click_id_param: "",
                attribution_window: None,
                min_click_to_conversion: None,
                fallback_url: "",
            }),
            hold_period: Some(DurationInput {
                seconds: -1,
                nanos: 0,
            }),
        };
        assert_eq!(
            fields(validate_new_campaign(bad)),
            [
                "advertiser_id",
                "name",
                "commission_rate_bps",
                "budget.amount_minor",
                "budget.currency",
                "tracking.landing_url",
                "hold_period"
            ]
        );
    }

    #[test]
    fn a_campaign_may_be_created_with_or_without_tracking_settings() {
        assert_eq!(validate_new_campaign(input()).map(|c| c.tracking), Ok(None));
        let domains = ["Shop.Example.com".to_owned()];
        let with = validate_new_campaign(CreateCampaignInput {
            tracking: Some(TrackingInput {
                landing_url: "https://shop.example.com/",
                landing_domains: &domains,
                click_id_param: "",
                attribution_window: None,
                min_click_to_conversion: None,
                fallback_url: "",
            }),
            ..input()
        });
        let tracking = with.ok().and_then(|c| c.tracking);
        assert_eq!(
            tracking.map(|t| (t.landing_domains, t.click_id_param)),
            Some((vec!["shop.example.com".to_owned()], "click_id".to_owned()))
        );
    }

    #[test]
    fn the_hold_period_is_thirty_days_unless_given_and_at_most_a_year_of_whole_seconds() {
        let hold = |seconds, nanos| {
            validate_new_campaign(CreateCampaignInput {
                hold_period: Some(DurationInput { seconds, nanos }),
                ..input()
            })
        };
        assert_eq!(
            validate_new_campaign(input()).map(|c| c.hold_period_secs),
            Ok(30 * 86_400)
        );
        for ok in [0, 1, 14 * 86_400, MAX_HOLD_PERIOD_SECS] {
            assert_eq!(hold(ok, 0).map(|c| c.hold_period_secs), Ok(ok), "{ok}");
        }
        for (seconds, nanos) in [
            (-1, 0),
            (0, -1),
            (MAX_HOLD_PERIOD_SECS + 1, 0),
            (1, 500_000_000),
            (1, -1),
        ] {
            assert_eq!(
                fields(hold(seconds, nanos)),
                ["hold_period"],
                "{seconds}s {nanos}ns"
            );
        }
    }

    #[test]
    fn tracking_settings_change_until_the_campaign_is_closed() {
        assert_eq!(check_can_update_tracking(CampaignStatus::Active), Ok(()));
        assert_eq!(check_can_update_tracking(CampaignStatus::Paused), Ok(()));
        assert_eq!(
            check_can_update_tracking(CampaignStatus::Closed),
            Err(Rejection::TrackingOfClosed)
        );
    }

    #[test]
    fn control_characters_are_refused() {
        assert_eq!(
            fields(validate_new_campaign(CreateCampaignInput {
                name: "a\u{0}b",
                ..input()
            })),
            ["name"]
        );
    }

    #[test]
    fn videos_need_an_http_url_and_a_title() {
        let id = ADVERTISER;
        assert!(validate_new_video(id, "https://cdn.example.com/v/1.mp4", "Teaser").is_ok());
        assert!(validate_new_video(id, "http://example.com", "Teaser").is_ok());
        for bad in [
            "ftp://x/y",
            "https://",
            "https:///path",
            "example.com/v",
            "https://exa mple.com",
            "",
        ] {
            assert_eq!(fields(validate_new_video(id, bad, "t")), ["url"], "{bad}");
        }
        assert_eq!(
            fields(validate_new_video("x", "https://a.b", "")),
            ["campaign_id", "title"]
        );
    }

    #[test]
    fn acceptance_needs_ids_and_accepted_terms() {
        assert!(validate_acceptance(ADVERTISER, ADVERTISER, true).is_ok());
        assert_eq!(
            fields(validate_acceptance(ADVERTISER, ADVERTISER, false)),
            ["accepted_terms"]
        );
        assert_eq!(
            fields(validate_acceptance("", "bad", true)),
            ["campaign_id", "creator_id"]
        );
    }

    #[test]
    fn only_active_campaigns_can_be_accepted() {
        assert_eq!(check_can_accept(CampaignStatus::Active), Ok(()));
        assert_eq!(
            check_can_accept(CampaignStatus::Paused),
            Err(Rejection::NotAcceptable(CampaignStatus::Paused))
        );
        assert_eq!(
            check_can_accept(CampaignStatus::Closed),
            Err(Rejection::NotAcceptable(CampaignStatus::Closed))
        );
    }

    #[test]
    fn closed_campaigns_get_no_videos() {
        assert_eq!(check_can_add_video(CampaignStatus::Paused), Ok(()));
        assert_eq!(
            check_can_add_video(CampaignStatus::Closed),
            Err(Rejection::Closed)
        );
    }

    #[test]
    fn status_changes_follow_the_lifecycle() {
        use CampaignStatus::{Active, Closed, Paused};
        assert_eq!(check_status_change(Active, StatusChange::Pause), Ok(Paused));
        assert_eq!(
            check_status_change(Paused, StatusChange::Resume),
            Ok(Active)
        );
        assert_eq!(check_status_change(Active, StatusChange::Close), Ok(Closed));
        assert_eq!(check_status_change(Paused, StatusChange::Close), Ok(Closed));
        for (from, change) in [
            (Active, StatusChange::Resume),
            (Paused, StatusChange::Pause),
            (Closed, StatusChange::Pause),
            (Closed, StatusChange::Resume),
            (Closed, StatusChange::Close),
        ] {
            assert_eq!(
                check_status_change(from, change),
                Err(Rejection::InvalidTransition { from, change })
            );
        }
    }

    #[test]
    fn status_round_trips_through_its_text_form() {
        for s in [
            CampaignStatus::Active,
            CampaignStatus::Paused,
            CampaignStatus::Closed,
        ] {
            assert_eq!(CampaignStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(CampaignStatus::parse("ACTIVE"), None);
    }

    fn state(status: CampaignStatus, reason: Option<PauseReason>) -> BudgetState<'static> {
        BudgetState {
            status,
            pause_reason: reason,
            budget_minor: 5_000,
            currency: "USD",
        }
    }

    fn update(budget_minor: i64, currency: &str) -> BudgetUpdate {
        BudgetUpdate {
            campaign_id: Uuid::nil(),
            budget_minor,
            currency: currency.to_owned(),
        }
    }

    #[test]
    fn a_budget_update_needs_a_campaign_and_a_positive_budget() {
        assert_eq!(
            fields(validate_budget_update("nope", Some((0, "usd")))),
            ["campaign_id", "budget.amount_minor", "budget.currency"]
        );
        assert_eq!(fields(validate_budget_update(ADVERTISER, None)), ["budget"]);
        assert!(validate_budget_update(ADVERTISER, Some((1, "EUR"))).is_ok());
    }

    #[test]
    fn a_larger_budget_resumes_only_a_campaign_paused_for_its_budget() {
        use CampaignStatus::{Active, Closed, Paused};
        let budget = Some(PauseReason::BudgetExhausted);
        let advertiser = Some(PauseReason::Advertiser);
        assert_eq!(
            check_budget_update(&state(Paused, budget), &update(5_001, "USD")),
            Ok(Active)
        );
        assert_eq!(
            check_budget_update(&state(Paused, budget), &update(5_000, "USD")),
            Ok(Paused)
        );
        assert_eq!(
            check_budget_update(&state(Paused, advertiser), &update(9_000, "USD")),
            Ok(Paused)
        );
        assert_eq!(
            check_budget_update(&state(Active, None), &update(1, "USD")),
            Ok(Active)
        );
        assert_eq!(
            check_budget_update(&state(Closed, None), &update(9_000, "USD")),
            Err(Rejection::BudgetOfClosed)
        );
        assert!(matches!(
            check_budget_update(&state(Active, None), &update(9_000, "EUR")),
            Err(Rejection::CurrencyMismatch { .. })
        ));
    }

    #[test]
    fn a_budget_pause_needs_the_spent_budget_to_be_the_current_one() {
        use CampaignStatus::{Active, Paused};
        assert_eq!(
            check_budget_pause(&state(Active, None), (5_000, "USD")),
            Ok(Paused)
        );
        assert_eq!(
            check_budget_pause(&state(Active, None), (4_000, "USD")),
            Err(Rejection::BudgetChanged)
        );
        assert!(matches!(
            check_budget_pause(&state(Paused, None), (5_000, "USD")),
            Err(Rejection::InvalidTransition { .. })
        ));
    }

    #[test]
    fn pause_reasons_round_trip_through_their_text_form() {
        for reason in [PauseReason::Advertiser, PauseReason::BudgetExhausted] {
            assert_eq!(PauseReason::parse(reason.as_str()), Some(reason));
        }
    }
}
