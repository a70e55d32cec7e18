//! A campaign's tracking settings: where its links send visitors and how their clicks turn into
//! conversions. Checked field by field (every violation at once) and normalized: defaults filled
//! in, deep-link domains lower-cased and sorted.

use std::collections::BTreeSet;

use service_runtime::validation::{FieldViolation, Violations, parse_id, parse_redirect_url};
use uuid::Uuid;

const DAY_SECS: i64 = 86_400;

/// Most deep-link domains a campaign may allow.
pub const MAX_LANDING_DOMAINS: usize = 20;
/// Longest click id parameter name, in bytes.
pub const MAX_CLICK_ID_PARAM_LEN: usize = 64;
/// The click id parameter when none is given.
pub const DEFAULT_CLICK_ID_PARAM: &str = "click_id";
/// The attribution window when none is given: 30 days.
pub const DEFAULT_ATTRIBUTION_WINDOW_SECS: i64 = 30 * DAY_SECS;
/// Shortest and longest attribution window: 1 s and 400 days.
pub const MIN_ATTRIBUTION_WINDOW_SECS: i64 = 1;
pub const MAX_ATTRIBUTION_WINDOW_SECS: i64 = 400 * DAY_SECS;
/// The click-to-conversion minimum when none is given: 10 s.
pub const DEFAULT_MIN_CLICK_TO_CONVERSION_SECS: i64 = 10;
/// Longest click-to-conversion minimum: 1 day.
pub const MAX_MIN_CLICK_TO_CONVERSION_SECS: i64 = DAY_SECS;
/// Longest host name (RFC 1035), and longest label of one.
const MAX_HOST_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// Validated, normalized tracking settings: what is stored and returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingSettings {
    pub landing_url: String,
    /// Lower case, sorted, no duplicates.
    pub landing_domains: Vec<String>,
    pub click_id_param: String,
    pub attribution_window_secs: i64,
    pub min_click_to_conversion_secs: i64,
    /// `None`: a plain page of the platform's.
    pub fallback_url: Option<String>,
}

/// A protobuf `Duration` as the request carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationInput {
    pub seconds: i64,
    pub nanos: i32,
}

/// The raw fields of a request's tracking settings.
#[derive(Debug, Clone, Copy)]
pub struct TrackingInput<'a> {
    pub landing_url: &'a str,
    pub landing_domains: &'a [String],
    pub click_id_param: &'a str,
    /// `None` when the request leaves it out (the default applies).
    pub attribution_window: Option<DurationInput>,
    pub min_click_to_conversion: Option<DurationInput>,
    pub fallback_url: &'a str,
}

/// A validated UpdateTrackingSettings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingUpdate {
    pub campaign_id: Uuid,
    pub tracking: TrackingSettings,
}

/// UpdateTrackingSettings' fields: a campaign id and the whole new settings (required).
pub fn validate_tracking_update(
    campaign_id: &str,
    tracking: Option<TrackingInput<'_>>,
) -> Result<TrackingUpdate, Vec<FieldViolation>> {
    let mut violations = Violations::new();
    let campaign_id = violations.check(parse_id("campaign_id", campaign_id));
    let tracking = match tracking {
        Some(input) => check_tracking("tracking", input, &mut violations),
        None => {
            violations.push(FieldViolation::new("tracking", "is required"));
            None
        }
    };
    violations.finish(
        campaign_id
            .zip(tracking)
            .map(|(campaign_id, tracking)| TrackingUpdate {
                campaign_id,
                tracking,
            }),
    )
}

/// Checks tracking settings whose fields are named `{field}.landing_url` and so on, recording
/// every violation; the normalized settings if there was none.
pub fn check_tracking(
    field: &str,
    input: TrackingInput<'_>,
    violations: &mut Violations,
) -> Option<TrackingSettings> {
    let before = violations.len();
    let landing_url = violations.check(parse_redirect_url(
        &format!("{field}.landing_url"),
        input.landing_url,
    ));
    let landing_domains = landing_domains(
        &format!("{field}.landing_domains"),
        input.landing_domains,
        violations,
    );
    let click_id_param = violations.check(click_id_param(
        &format!("{field}.click_id_param"),
        input.click_id_param,
    ));
    let attribution_window_secs = violations.check(seconds(
        &format!("{field}.attribution_window"),
        input.attribution_window,
        DEFAULT_ATTRIBUTION_WINDOW_SECS,
        (MIN_ATTRIBUTION_WINDOW_SECS, MAX_ATTRIBUTION_WINDOW_SECS),
        "between 1 second and 400 days",
    ));
    let min_click_to_conversion_secs = violations.check(seconds(
        &format!("{field}.min_click_to_conversion"),
        input.min_click_to_conversion,
        DEFAULT_MIN_CLICK_TO_CONVERSION_SECS,
        (0, MAX_MIN_CLICK_TO_CONVERSION_SECS),
        "between 0 and 1 day",
    ));
    let fallback_url = match input.fallback_url {
        "" => Some(None),
        url => violations
            .check(parse_redirect_url(&format!("{field}.fallback_url"), url))
            .map(Some),
    };
    if violations.len() > before {
        return None;
    }
    Some(TrackingSettings {
        landing_url: landing_url?,
        landing_domains: landing_domains?,
        click_id_param: click_id_param?,
        attribution_window_secs: attribution_window_secs?,
        min_click_to_conversion_secs: min_click_to_conversion_secs?,
        fallback_url: fallback_url?,
    })
}

/// At most [`MAX_LANDING_DOMAINS`] host names (`shop.example.com`) or wildcards of one
/// (`*.example.com`), lower-cased, each once; sorted.
fn landing_domains(
    field: &str,
    domains: &[String],
    violations: &mut Violations,
) -> Option<Vec<String>> {
    if domains.len() > MAX_LANDING_DOMAINS {
        violations.push(FieldViolation::new(
            field,
            format!("must hold at most {MAX_LANDING_DOMAINS} domains"),
        ));
        return None;
    }
    let mut seen = BTreeSet::new();
    let mut ok = true;
    for (i, domain) in domains.iter().enumerate() {
        let item = format!("{field}[{i}]");
        let domain = domain.to_ascii_lowercase();
        match landing_domain(&item, &domain) {
            Err(violation) => {
                violations.push(violation);
                ok = false;
            }
            Ok(()) if !seen.insert(domain) => {
                violations.push(FieldViolation::new(item, "is listed twice"));
                ok = false;
            }
            Ok(()) => {}
        }
    }
    ok.then(|| seen.into_iter().collect())
}

/// A lower-case host name of at least two labels (`shop.example.com`), or `*.` and one
/// (`*.example.com`: every subdomain of it). No scheme, port, path or IP address.
fn landing_domain(field: &str, domain: &str) -> Result<(), FieldViolation> {
    if domain.contains(['/', ':', '?', '#', '@']) {
        return Err(FieldViolation::new(
            field,
            "must be a host name alone, without scheme, port or path",
        ));
    }
    let host = domain.strip_prefix("*.").unwrap_or(domain);
    let labels: Vec<&str> = host.split('.').collect();
    let label_ok = |label: &&str| {
        !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let top_is_name = labels
        .last()
        .is_some_and(|top| !top.bytes().all(|b| b.is_ascii_digit()));
    if host.len() > MAX_HOST_LEN || labels.len() < 2 || !labels.iter().all(label_ok) || !top_is_name
    {
        return Err(FieldViolation::new(
            field,
            "must be a host name such as shop.example.com, or *.example.com for its subdomains",
        ));
    }
    Ok(())
}

/// 1..=[`MAX_CLICK_ID_PARAM_LEN`] of `[A-Za-z0-9_-]`; empty means [`DEFAULT_CLICK_ID_PARAM`].
fn click_id_param(field: &str, value: &str) -> Result<String, FieldViolation> {
    if value.is_empty() {
        return Ok(DEFAULT_CLICK_ID_PARAM.to_owned());
    }
    let ok = value.len() <= MAX_CLICK_ID_PARAM_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(value.to_owned())
    } else {
        Err(FieldViolation::new(
            field,
            format!("must be 1 to {MAX_CLICK_ID_PARAM_LEN} of A-Z, a-z, 0-9, _ and -"),
        ))
    }
}

/// A duration in whole seconds within `min..=max` (`range` says it in words); absent means
/// `default`. An invalid protobuf `Duration` (nanos out of range or of the other sign) is refused.
pub(super) fn seconds(
    field: &str,
    value: Option<DurationInput>,
    default: i64,
    (min, max): (i64, i64),
    range: &str,
) -> Result<i64, FieldViolation> {
    let Some(DurationInput { seconds, nanos }) = value else {
        return Ok(default);
    };
    let valid = nanos.unsigned_abs() < 1_000_000_000
        && !(seconds > 0 && nanos < 0)
        && !(seconds < 0 && nanos > 0);
    if !valid {
        return Err(FieldViolation::new(field, "is not a valid duration"));
    }
    if seconds < 0 || nanos < 0 {
        return Err(FieldViolation::new(field, "must not be negative"));
    }
    if nanos != 0 {
        return Err(FieldViolation::new(
            field,
            "must be a whole number of seconds",
        ));
    }
    if !(min..=max).contains(&seconds) {
        return Err(FieldViolation::new(field, format!("must be {range}")));
    }
    Ok(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAMPAIGN: &str = "0193a9e0-0000-7000-8000-000000000001";

    fn input(domains: &[String]) -> TrackingInput<'_> {
        TrackingInput {
            landing_url: "https://shop.example.com/spring",
            landing_domains: domains,
            click_id_param: "",
            attribution_window: None,
            min_click_to_conversion: None,
            fallback_url: "",
        }
    }

    fn secs(seconds: i64) -> Option<DurationInput> {
        Some(DurationInput { seconds, nanos: 0 })
    }

    fn check(input: TrackingInput<'_>) -> Result<TrackingSettings, Vec<FieldViolation>> {
        let mut violations = Violations::new();
        let settings = check_tracking("tracking", input, &mut violations);
        violations.finish(settings)
    }

    fn fields(result: Result<impl std::fmt::Debug, Vec<FieldViolation>>) -> Vec<String> {
        result
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.field)
            .collect()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn absent_settings_get_their_defaults() {
        assert_eq!(
            check(input(&[])),
            Ok(TrackingSettings {
                landing_url: "https://shop.example.com/spring".to_owned(),
                landing_domains: Vec::new(),
                click_id_param: "click_id".to_owned(),
                attribution_window_secs: 30 * 86_400,
                min_click_to_conversion_secs: 10,
                fallback_url: None,
            })
        );
    }

    #[test]
    fn given_settings_are_kept_and_domains_lower_cased_and_sorted() {
        let domains = strings(&["Shop.Example.com", "*.example.org", "a.example.net"]);
        let settings = check(TrackingInput {
            click_id_param: "aff-Click_1",
            attribution_window: secs(7 * 86_400),
            min_click_to_conversion: secs(0),
            fallback_url: "http://example.com/closed",
            ..input(&domains)
        });
        assert_eq!(
            settings,
            Ok(TrackingSettings {
                landing_url: "https://shop.example.com/spring".to_owned(),
                landing_domains: strings(&["*.example.org", "a.example.net", "shop.example.com"]),
                click_id_param: "aff-Click_1".to_owned(),
                attribution_window_secs: 7 * 86_400,
                min_click_to_conversion_secs: 0,
                fallback_url: Some("http://example.com/closed".to_owned()),
            })
        );
    }

    #[test]
    fn urls_are_absolute_http_without_user_info() {
        for bad in [
            "",
            "shop.example.com",
            "ftp://shop.example.com/",
            "https://user:pw@shop.example.com/",
            "https:///path",
        ] {
            assert_eq!(
                fields(check(TrackingInput {
                    landing_url: bad,
                    ..input(&[])
                })),
                ["tracking.landing_url"],
                "{bad}"
            );
        }
        let long = format!("https://shop.example.com/{}", "x".repeat(2048));
        assert_eq!(
            fields(check(TrackingInput {
                fallback_url: &long,
                ..input(&[])
            })),
            ["tracking.fallback_url"]
        );
        assert_eq!(
            fields(check(TrackingInput {
                fallback_url: "https://a@b.example.com",
                ..input(&[])
            })),
            ["tracking.fallback_url"]
        );
    }

    #[test]
    fn domains_are_host_names_or_wildcards_of_one() {
        let ok = strings(&["shop.example.com", "*.example.com", "x-1.example.co.uk"]);
        assert!(check(input(&ok)).is_ok());
        for bad in [
            "example.com:443",
            "https://example.com",
            "example.com/path",
            "localhost",
            "*.com",
            "*",
            "**.example.com",
            "shop.*.example.com",
            "-a.example.com",
            "a..example.com",
            "exa mple.com",
            "1.2.3.4",
            "ünï.example.com",
            "",
        ] {
            let domains = strings(&["ok.example.com", bad]);
            assert_eq!(
                fields(check(input(&domains))),
                ["tracking.landing_domains[1]"],
                "{bad}"
            );
        }
        let long_label = format!("{}.example.com", "a".repeat(64));
        assert!(check(input(&[long_label])).is_err());
    }

    #[test]
    fn domains_are_listed_once_and_at_most_twenty() {
        let twice = strings(&["shop.example.com", "SHOP.example.com"]);
        assert_eq!(
            fields(check(input(&twice))),
            ["tracking.landing_domains[1]"]
        );
        let many: Vec<String> = (0..=MAX_LANDING_DOMAINS)
            .map(|i| format!("s{i}.example.com"))
            .collect();
        assert!(check(input(&many[..MAX_LANDING_DOMAINS])).is_ok());
        assert_eq!(fields(check(input(&many))), ["tracking.landing_domains"]);
    }

    #[test]
    fn the_click_id_param_is_a_short_plain_name() {
        let long = "a".repeat(MAX_CLICK_ID_PARAM_LEN);
        assert!(
            check(TrackingInput {
                click_id_param: &long,
                ..input(&[])
            })
            .is_ok()
        );
        let too_long = "a".repeat(MAX_CLICK_ID_PARAM_LEN + 1);
        for bad in [too_long.as_str(), "click id", "click.id", "a=b", "ü"] {
            assert_eq!(
                fields(check(TrackingInput {
                    click_id_param: bad,
                    ..input(&[])
                })),
                ["tracking.click_id_param"],
                "{bad}"
            );
        }
    }

    #[test]
    fn durations_stay_in_their_bounds() {
        let window = |d| TrackingInput {
            attribution_window: d,
            ..input(&[])
        };
        let minimum = |d| TrackingInput {
            min_click_to_conversion: d,
            ..input(&[])
        };
        for ok in [1, 400 * 86_400] {
            assert!(check(window(secs(ok))).is_ok(), "{ok}");
        }
        for ok in [0, 86_400] {
            assert!(check(minimum(secs(ok))).is_ok(), "{ok}");
        }
        for bad in [0, -1, 400 * 86_400 + 1] {
            assert_eq!(
                fields(check(window(secs(bad)))),
                ["tracking.attribution_window"],
                "{bad}"
            );
        }
        for bad in [-1, 86_401] {
            assert_eq!(
                fields(check(minimum(secs(bad)))),
                ["tracking.min_click_to_conversion"],
                "{bad}"
            );
        }
    }

    #[test]
    fn negative_fractional_and_invalid_durations_are_refused() {
        let with = |seconds, nanos| {
            let result = check(TrackingInput {
                min_click_to_conversion: Some(DurationInput { seconds, nanos }),
                ..input(&[])
            });
            result.unwrap_err().remove(0).description
        };
        assert_eq!(with(0, -5), "must not be negative");
        assert_eq!(with(-3, -5), "must not be negative");
        assert_eq!(with(1, 500_000_000), "must be a whole number of seconds");
        assert_eq!(with(1, -1), "is not a valid duration");
        assert_eq!(with(-1, 1), "is not a valid duration");
        assert_eq!(with(0, 1_000_000_000), "is not a valid duration");
    }

    #[test]
    fn every_violation_is_reported_at_once() {
        let domains = strings(&["bad domain", "ok.example.com", "ok.example.com"]);
        let bad = TrackingInput {
            landing_url: "nope",
            landing_domains: &domains,
            click_id_param: "a b",
            attribution_window: secs(0),
            min_click_to_conversion: secs(-1),
            fallback_url: "ftp://x",
        };
        assert_eq!(
            fields(validate_tracking_update("x", Some(bad))),
            [
                "campaign_id",
                "tracking.landing_url",
                "tracking.landing_domains[0]",
                "tracking.landing_domains[2]",
                "tracking.click_id_param",
                "tracking.attribution_window",
                "tracking.min_click_to_conversion",
                "tracking.fallback_url",
            ]
        );
    }

    #[test]
    fn an_update_needs_a_campaign_and_settings() {
        assert_eq!(
            fields(validate_tracking_update(CAMPAIGN, None)),
            ["tracking"]
        );
        assert_eq!(
            fields(validate_tracking_update(
                CAMPAIGN,
                Some(TrackingInput {
                    landing_url: "",
                    ..input(&[])
                })
            )),
            ["tracking.landing_url"]
        );
        let update = validate_tracking_update(CAMPAIGN, Some(input(&[])));
        assert_eq!(
            update.map(|u| u.campaign_id.to_string()),
            Ok(CAMPAIGN.to_owned())
        );
    }
}
