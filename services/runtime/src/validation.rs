//! Request validation shared by the services' domains (pure, no I/O): field violations with
//! dotted paths, collected so a request reports every problem at once.

use uuid::Uuid;

/// One reason a request field is unacceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Dotted path of the request field, e.g. `budget.currency`.
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Collects violations while a request is checked field by field.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the value, or records the violation and returns `None`.
    pub fn check<T>(&mut self, result: Result<T, FieldViolation>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(violation) => {
                self.0.push(violation);
                None
            }
        }
    }

    pub fn push(&mut self, violation: FieldViolation) {
        self.0.push(violation);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many violations have been recorded so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `Ok(value)` if nothing was recorded (and the value is there), else every violation.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, Vec<FieldViolation>> {
        match value {
            Some(value) if self.0.is_empty() => Ok(value),
            _ => Err(self.0),
        }
    }
}

/// Longest URL a request may carry, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Trims `value`; it must fit `max_chars`, hold no control characters (but newlines and tabs),
/// and (if `required`) not be empty.
pub fn text(
    field: &str,
    value: &str,
    max_chars: usize,
    required: bool,
) -> Result<String, FieldViolation> {
    let trimmed = value.trim();
    if required && trimmed.is_empty() {
        return Err(FieldViolation::new(field, "must not be empty"));
    }
    if trimmed.chars().count() > max_chars {
        return Err(FieldViolation::new(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    if trimmed
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(FieldViolation::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// An absolute http(s) URL with a host (and, if given, a numeric port), no whitespace, at most
/// [`MAX_URL_LEN`] bytes.
pub fn parse_http_url(field: &str, value: &str) -> Result<String, FieldViolation> {
    check_http_url(field, value, true)
}

/// [`parse_http_url`] for a URL the platform sends visitors to (a campaign's landing page): it
/// must not carry user info (`user:password@`), which would leak credentials to every visitor and
/// can disguise the real host (`https://shop.example.com@evil.example/`).
pub fn parse_redirect_url(field: &str, value: &str) -> Result<String, FieldViolation> {
    check_http_url(field, value, false)
}

fn check_http_url(field: &str, value: &str, userinfo: bool) -> Result<String, FieldViolation> {
    let invalid =
        || FieldViolation::new(field, "must be an absolute http or https URL with a host");
    if value.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    if value.len() > MAX_URL_LEN {
        return Err(FieldViolation::new(
            field,
            format!("must be at most {MAX_URL_LEN} bytes"),
        ));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (scheme, rest) = value.split_once("://").ok_or_else(invalid)?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(invalid());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if !userinfo && authority.contains('@') {
        return Err(FieldViolation::new(
            field,
            "must not carry user info (`user@` before the host)",
        ));
    }
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = match host_port.strip_prefix('[') {
        // An IPv6 literal: `[::1]` or `[::1]:8080`.
        Some(literal) => {
            let (address, after) = literal.split_once(']').ok_or_else(invalid)?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(invalid)?),
            };
            (address, port)
        }
        None => match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    if host.is_empty() || !port_ok {
        return Err(invalid());
    }
    Ok(value.to_owned())
}

/// A required UUID field.
pub fn parse_id(field: &str, value: &str) -> Result<Uuid, FieldViolation> {
    if value.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    Uuid::parse_str(value).map_err(|_| FieldViolation::new(field, "must be a UUID"))
}

/// An optional UUID field (empty means absent).
pub fn parse_optional_id(field: &str, value: &str) -> Result<Option<Uuid>, FieldViolation> {
    if value.is_empty() {
        Ok(None)
    } else {
        parse_id(field, value).map(Some)
    }
}

/// A page size: 0 means `default`, otherwise 1..=`max`.
pub fn page_size(field: &str, value: i32, default: i32, max: i32) -> Result<i64, FieldViolation> {
    match value {
        0 => Ok(i64::from(default)),
        n if (1..=max).contains(&n) => Ok(i64::from(n)),
        _ => Err(FieldViolation::new(
            field,
            format!("must be between 0 and {max}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_present_uuids() {
        assert!(parse_id("id", "0193a9e0-0000-7000-8000-000000000001").is_ok());
        assert_eq!(parse_id("id", "").unwrap_err().description, "is required");
        assert_eq!(
            parse_id("id", "x").unwrap_err().description,
            "must be a UUID"
        );
        assert_eq!(parse_optional_id("id", ""), Ok(None));
    }

    #[test]
    fn page_sizes_default_and_cap() {
        assert_eq!(page_size("page_size", 0, 20, 100), Ok(20));
        assert_eq!(page_size("page_size", 100, 20, 100), Ok(100));
        assert!(page_size("page_size", 101, 20, 100).is_err());
        assert!(page_size("page_size", -1, 20, 100).is_err());
    }

    #[test]
    fn redirect_urls_are_http_urls_without_user_info() {
        for ok in [
            "https://shop.example.com/spring?x=1",
            "http://[::1]:8080/",
            "https://shop.example.com/p?u=a@b",
        ] {
            assert_eq!(parse_redirect_url("u", ok).as_deref(), Ok(ok));
            assert!(parse_http_url("u", ok).is_ok());
        }
        for bad in [
            "https://user:pw@shop.example.com/",
            "https://a@b",
            "https://@b",
        ] {
            assert!(parse_http_url("u", bad).is_ok(), "{bad}");
            assert_eq!(
                parse_redirect_url("u", bad).unwrap_err().description,
                "must not carry user info (`user@` before the host)",
                "{bad}"
            );
        }
        let long = format!("https://a.b/{}", "x".repeat(MAX_URL_LEN));
        assert!(parse_redirect_url("u", &long).is_err());
        assert!(parse_redirect_url("u", "ftp://a.b/").is_err());
        assert_eq!(
            parse_redirect_url("u", "").unwrap_err().description,
            "is required"
        );
    }

    #[test]
    fn violations_collect_every_problem() {
        let mut v = Violations::new();
        let a = v.check(parse_id("a", ""));
        let b = v.check(parse_id("b", "nope"));
        assert_eq!(v.finish(a.zip(b)).unwrap_err().len(), 2);
    }
}
