//! Money rules shared by every service: ISO-4217 currency codes in circulation and their minor
//! units (from the `iso_currency` crate's copy of the standard's list 1), and amounts written for
//! people.

use iso_currency::Currency;

/// The currency of `code` if it is in circulation: a current ISO-4217 alphabetic code (upper
/// case), national fund codes included; superseded codes (`BGN` since the euro, `HRK`) and the
/// special ones without a minor unit (precious metals `XAU`, `XDR`, `XXX`, ...) are not.
fn in_circulation(code: &str) -> Option<Currency> {
    Currency::from_code(code)
        .filter(|c| c.is_superseded().is_none() && !c.is_special() && c.exponent().is_some())
}

/// Whether `code` is an active ISO-4217 alphabetic code (upper case).
pub fn is_iso_4217(code: &str) -> bool {
    in_circulation(code).is_some()
}

/// How many decimal digits the minor unit of `code` has: ISO-4217's (0 for JPY, 3 for KWD,
/// ...), and 2 for a code not in circulation.
pub fn minor_digits(code: &str) -> u32 {
    in_circulation(code)
        .and_then(Currency::exponent)
        .map_or(2, u32::from)
}

/// An amount in major units as people and shops write it (`49.99`), in minor units of `currency`
/// (4999 for EUR): digits, optionally a point and at most as many decimals as the currency has.
/// The error describes what is wrong, to be said of the field it came in.
pub fn parse_major(amount: &str, currency: &str) -> Result<i64, String> {
    let digits = minor_digits(currency) as usize;
    if amount.starts_with('-') {
        return Err("must not be negative".to_owned());
    }
    let (whole, fraction) = amount.split_once('.').unwrap_or((amount, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let fraction_ok = !amount.contains('.') || (!fraction.is_empty() && all_digits(fraction));
    if whole.is_empty() || !all_digits(whole) || !fraction_ok {
        return Err("must be a decimal number in major units, e.g. 49.99".to_owned());
    }
    if fraction.len() > digits {
        return Err(format!(
            "has {} decimals; {currency} has {digits}",
            fraction.len()
        ));
    }
    format!("{whole}{fraction:0<digits$}")
        .parse::<i64>()
        .map_err(|_| "is too large".to_owned())
}

/// An amount in minor units written for people: `1234` `USD` → `12.34 USD`, `500` `JPY` →
/// `500 JPY`, `-5` `KWD` → `-0.005 KWD`. Exact: integer arithmetic only.
pub fn display(amount_minor: i64, currency: &str) -> String {
    let digits = minor_digits(currency);
    let sign = if amount_minor < 0 { "-" } else { "" };
    let magnitude = amount_minor.unsigned_abs();
    if digits == 0 {
        return format!("{sign}{magnitude} {currency}");
    }
    let unit = 10u64.pow(digits);
    let width = digits as usize;
    format!(
        "{sign}{}.{:0width$} {currency}",
        magnitude / unit,
        magnitude % unit
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_common_codes_and_refuses_others() {
        for code in ["USD", "EUR", "JPY", "GBP", "BRL"] {
            assert!(is_iso_4217(code), "{code}");
        }
        for code in [
            "usd", "US", "XXX", "XAU", "XDR", "ABC", "EURO", "", "HRK", "BGN",
        ] {
            assert!(!is_iso_4217(code), "{code}");
        }
    }

    #[test]
    fn minor_units_follow_iso_4217() {
        let digits = |code| minor_digits(code);
        assert_eq!(
            ["EUR", "JPY", "KWD", "CLF", "UYI", "XOF"].map(digits),
            [2, 0, 3, 4, 0, 0]
        );
    }

    #[test]
    fn amounts_are_written_with_the_currency_s_minor_unit() {
        assert_eq!(display(1234, "USD"), "12.34 USD");
        assert_eq!(display(5, "EUR"), "0.05 EUR");
        assert_eq!(display(500, "JPY"), "500 JPY");
        assert_eq!(display(1500, "KWD"), "1.500 KWD");
        assert_eq!(display(-5, "BHD"), "-0.005 BHD");
        assert_eq!(display(i64::MIN, "USD"), "-92233720368547758.08 USD");
    }

    #[test]
    fn amounts_in_major_units_become_minor_units_of_their_currency() {
        assert_eq!(parse_major("49.99", "EUR"), Ok(4999));
        assert_eq!(parse_major("49.9", "EUR"), Ok(4990));
        assert_eq!(parse_major("49", "EUR"), Ok(4900));
        assert_eq!(parse_major("0.01", "USD"), Ok(1));
        assert_eq!(parse_major("0", "USD"), Ok(0));
        assert_eq!(parse_major("500", "JPY"), Ok(500));
        assert_eq!(parse_major("1.005", "KWD"), Ok(1005));
        assert_eq!(parse_major("007.50", "EUR"), Ok(750));
    }

    #[test]
    fn amounts_with_too_many_decimals_a_sign_or_no_number_are_refused() {
        for (amount, currency) in [("49.999", "EUR"), ("1.5", "JPY"), ("1.0001", "KWD")] {
            let error = parse_major(amount, currency).unwrap_err();
            assert!(error.contains("decimals"), "{amount} {currency}: {error}");
        }
        assert_eq!(
            parse_major("-1.00", "EUR").unwrap_err(),
            "must not be negative"
        );
        for amount in [
            "", "abc", "1,50", "1.", ".5", "+1", " 1", "1e3", "1.2.3", "NaN", "0x10", "1.-5",
        ] {
            let error = parse_major(amount, "EUR").unwrap_err();
            assert!(
                error.starts_with("must be a decimal number"),
                "{amount:?}: {error}"
            );
        }
        assert_eq!(
            parse_major("92233720368547758.08", "EUR").unwrap_err(),
            "is too large"
        );
        assert_eq!(parse_major("92233720368547758.07", "EUR"), Ok(i64::MAX));
    }
}
