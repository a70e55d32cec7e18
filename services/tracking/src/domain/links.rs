//! Tracking links: a creator's short code for a campaign, and where it may send a visitor.
//!
//! A link sends visitors to the campaign's landing URL or to a deep link on a host the campaign
//! allows. The host check is made on the URL as a browser reads it (WHATWG parsing, the `url`
//! crate), at creation and again by the redirect edge, so no input can make the edge redirect
//! off the campaign's hosts (an open redirect).

use std::time::Duration;

use url::Url;
use uuid::Uuid;

use service_runtime::validation::{FieldViolation, MAX_URL_LEN, Violations, parse_id, text};

/// Characters of a link's code.
pub const CODE_LEN: usize = 10;
/// Longest sub-id, in characters.
pub const MAX_SUB_ID_CHARS: usize = 100;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A fresh, unguessable code: 10 characters of [0-9A-Za-z] drawn from a random (v4) UUID's 122
/// random bits (about 59.5 bits of them).
pub fn new_code() -> String {
    let mut n = Uuid::new_v4().as_u128();
    (0..CODE_LEN)
        .map(|_| {
            let c = ALPHABET[(n % 62) as usize];
            n /= 62;
            char::from(c)
        })
        .collect()
}

/// Whether `code` has a code's shape (checked before any lookup).
pub fn is_code(code: &str) -> bool {
    code.len() == CODE_LEN && code.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The five sub-ids; `None` where the creator left one empty.
pub type SubIds = [Option<String>; 5];

/// How a campaign's links behave, as tracking's copy of the campaign knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSettings {
    pub landing_url: String,
    /// Exact hosts, or `*.` + a host for its subdomains.
    pub landing_domains: Vec<String>,
    pub click_id_param: String,
    pub attribution_window: Duration,
    pub min_click_to_conversion: Duration,
    pub fallback_url: Option<String>,
}

/// Why a destination is not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Destination {
    #[error("must be an absolute http or https URL with a host and no user info")]
    Malformed,
    #[error("must be on the campaign's landing URL's host or one of its landing domains")]
    OffDomain,
}

/// Parses `value` as a browser would and checks that it stays on the campaign's hosts.
pub fn allowed_destination(value: &str, settings: &LinkSettings) -> Result<Url, Destination> {
    let url = web_url(value).ok_or(Destination::Malformed)?;
    let host = url.host_str().ok_or(Destination::Malformed)?;
    let landing_host = web_url(&settings.landing_url)
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let allowed = host == landing_host
        || settings
            .landing_domains
            .iter()
            .any(|d| host_matches(host, d));
    if allowed {
        Ok(url)
    } else {
        Err(Destination::OffDomain)
    }
}

/// An absolute http(s) URL with a host and no user info, as WHATWG parsing reads it.
pub fn web_url(value: &str) -> Option<Url> {
    if value.len() > MAX_URL_LEN {
        return None;
    }
    let url = Url::parse(value).ok()?;
    let ok = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some_and(|h| !h.is_empty())
        && url.username().is_empty()
        && url.password().is_none();
    ok.then_some(url)
}

/// `host` is `domain`, or `domain` is `*.parent` and `host` is a subdomain of `parent`.
fn host_matches(host: &str, domain: &str) -> bool {
    match domain.strip_prefix("*.") {
        Some(parent) => host
            .strip_suffix(parent)
            .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        None => host.eq_ignore_ascii_case(domain),
    }
}

/// Where a click goes: the link's deep link (if still on the campaign's hosts) or the landing
/// URL, with the click id set as the campaign's parameter (replacing one already there).
/// `None` when neither is a valid destination (the edge then answers its fallback).
pub fn click_destination(
    deep_link: Option<&str>,
    settings: &LinkSettings,
    click_id: &str,
) -> Option<Url> {
    let mut url = match deep_link {
        Some(link) => allowed_destination(link, settings).ok()?,
        None => allowed_destination(&settings.landing_url, settings).ok()?,
    };
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != settings.click_id_param.as_str())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut pairs = url.query_pairs_mut();
        pairs.clear();
        for (k, v) in &kept {
            pairs.append_pair(k, v);
        }
        pairs.append_pair(&settings.click_id_param, click_id);
    }
    Some(url)
}

/// A validated CreateLink (the destination is checked against the campaign later, when its
/// settings are read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLink {
    pub campaign_id: Uuid,
    pub creator_id: Uuid,
    pub sub_ids: SubIds,
    pub deep_link: Option<String>,
}

/// The raw fields of a CreateLink request.
#[derive(Debug, Clone, Copy)]
pub struct CreateLinkInput<'a> {
    pub campaign_id: &'a str,
    pub creator_id: &'a str,
    pub sub_ids: [&'a str; 5],
    pub deep_link: &'a str,
}

/// Checks every field of a CreateLink and reports every problem at once.
pub fn validate_new_link(input: CreateLinkInput<'_>) -> Result<NewLink, Vec<FieldViolation>> {
    let mut v = Violations::new();
    let campaign_id = v.check(parse_id("campaign_id", input.campaign_id));
    let creator_id = v.check(parse_id("creator_id", input.creator_id));
    let mut sub_ids: SubIds = Default::default();
    for (i, raw) in input.sub_ids.iter().enumerate() {
        let field = format!("sub_ids.sub{}", i + 1);
        if let Some(t) = v.check(text(&field, raw, MAX_SUB_ID_CHARS, false)) {
            if t.contains(['\n', '\t']) {
                v.push(FieldViolation::new(field, "must be one line"));
            } else if !t.is_empty() {
                sub_ids[i] = Some(t);
            }
        }
    }
    let deep_link = input.deep_link.trim();
    let deep_link = if deep_link.is_empty() {
        Some(None)
    } else if web_url(deep_link).is_some() {
        Some(Some(deep_link.to_owned()))
    } else {
        v.push(FieldViolation::new(
            "deep_link",
            format!("{} (at most {MAX_URL_LEN} bytes)", Destination::Malformed),
        ));
        None
    };
    let link = match (campaign_id, creator_id, deep_link) {
        (Some(campaign_id), Some(creator_id), Some(deep_link)) => Some(NewLink {
            campaign_id,
            creator_id,
            sub_ids,
            deep_link,
        }),
        _ => None,
    };
    v.finish(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LinkSettings {
        LinkSettings {
            landing_url: "https://shop.example.com/welcome?utm_source=aff".into(),
            landing_domains: vec!["*.example.org".into(), "deals.example.net".into()],
            click_id_param: "click_id".into(),
            attribution_window: Duration::from_secs(30 * 86_400),
            min_click_to_conversion: Duration::from_secs(10),
            fallback_url: None,
        }
    }

    #[test]
    fn codes_are_ten_alphanumerics_and_do_not_repeat() {
        let codes: std::collections::HashSet<String> = (0..10_000).map(|_| new_code()).collect();
        assert_eq!(codes.len(), 10_000);
        assert!(codes.iter().all(|c| is_code(c)));
        assert!(!is_code("short"));
        assert!(!is_code("abcdefghi/"));
        assert!(!is_code("abcdefghijk"));
    }

    #[test]
    fn deep_links_stay_on_the_campaigns_hosts() {
        let s = settings();
        for ok in [
            "https://shop.example.com/p/42",
            "http://shop.example.com:8443/p/42?x=1#top",
            "https://a.example.org/",
            "https://a.b.example.org/x",
            "https://deals.example.net/today",
            "https://SHOP.example.com/p", // hosts are lower-cased by parsing
        ] {
            assert!(
                allowed_destination(ok, &s).is_ok(),
                "{ok} should be allowed"
            );
        }
        for off in [
            "https://example.org/",                       // the parent itself is not `*.`
            "https://evil.com/?https://shop.example.com", // the host decides, not the text
            "https://shop.example.com.evil.com/",
            "https://evilexample.org/",
            "https://www.deals.example.net/", // exact hosts are exact
            "https://shop.example.com@evil.com/",
            "https://evil.com\\@shop.example.com/",
            "https://evil.com%2f@shop.example.com",
            "https:///evil.com",     // browsers read this as https://evil.com/
            "https:\\\\evil.com\\x", // and this too
        ] {
            assert!(
                allowed_destination(off, &s).is_err(),
                "{off} must be refused"
            );
        }
        for malformed in [
            "javascript:alert(1)",
            "//evil.com/x",
            "/relative",
            "ftp://shop.example.com/",
            "data:text/html,hi",
            "https://user:pw@shop.example.com/",
        ] {
            assert_eq!(
                allowed_destination(malformed, &s).err(),
                Some(Destination::Malformed),
                "{malformed}"
            );
        }
    }

    #[test]
    fn the_click_id_is_set_once_on_the_destination() {
        let s = settings();
        let url = click_destination(None, &s, "c1").unwrap();
        assert_eq!(
            url.as_str(),
            "https://shop.example.com/welcome?utm_source=aff&click_id=c1"
        );
        let url = click_destination(
            Some("https://a.example.org/p?click_id=forged&q=a+b"),
            &s,
            "c2",
        )
        .unwrap();
        assert_eq!(url.as_str(), "https://a.example.org/p?q=a+b&click_id=c2");
        // a deep link the campaign no longer allows gives no destination
        assert!(click_destination(Some("https://other.example.com/"), &s, "c3").is_none());
    }

    #[test]
    fn a_new_link_reports_every_problem_at_once() {
        let long = "x".repeat(MAX_SUB_ID_CHARS + 1);
        let errors = validate_new_link(CreateLinkInput {
            campaign_id: "nope",
            creator_id: "",
            sub_ids: ["ok", &long, "", "two\nlines", ""],
            deep_link: "javascript:alert(1)",
        })
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "campaign_id",
                "creator_id",
                "sub_ids.sub2",
                "sub_ids.sub4",
                "deep_link"
            ]
        );
        let link = validate_new_link(CreateLinkInput {
            campaign_id: "0193a9e0-0000-7000-8000-000000000001",
            creator_id: "0193a9e0-0000-7000-8000-000000000002",
            sub_ids: [" video-1 ", "", "", "", "end"],
            deep_link: "",
        })
        .unwrap();
        assert_eq!(
            link.sub_ids,
            [Some("video-1".into()), None, None, None, Some("end".into())]
        );
        assert_eq!(link.deep_link, None);
    }
}
