//! Money rules shared by every service: ISO-4217 currency codes in circulation (list 1, 2025 edition; funds and precious metals
//! excluded except the national fund codes some markets still quote), their minor units, and
//! amounts written for people.

/// Sorted, so membership is a binary search.
const CODES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
    "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUC", "CUP",
    "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP",
    "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS",
    "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW",
    "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD",
    "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN",
    "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR",
    "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS",
    "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD",
    "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES", "VND",
    "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

/// Whether `code` is an active ISO-4217 alphabetic code (upper case).
pub fn is_iso_4217(code: &str) -> bool {
    CODES.binary_search(&code).is_ok()
}

/// Codes whose minor unit is not the hundredth (ISO-4217 list 1, column "minor unit"), sorted.
const EXPONENTS: &[(&str, u32)] = &[
    ("BHD", 3),
    ("BIF", 0),
    ("CLF", 4),
    ("CLP", 0),
    ("DJF", 0),
    ("GNF", 0),
    ("IQD", 3),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KMF", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("LYD", 3),
    ("OMR", 3),
    ("PYG", 0),
    ("RWF", 0),
    ("TND", 3),
    ("UGX", 0),
    ("UYI", 0),
    ("UYW", 4),
    ("VND", 0),
    ("VUV", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("XPF", 0),
];

/// How many decimal digits the minor unit of `code` has: 2 unless ISO-4217 says otherwise
/// (0 for JPY, 3 for KWD, ...).
pub fn minor_digits(code: &str) -> u32 {
    EXPONENTS
        .binary_search_by(|(c, _)| (*c).cmp(code))
        .map_or(2, |i| EXPONENTS[i].1)
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
    fn list_is_sorted_and_unique() {
        assert!(CODES.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn knows_common_codes_and_refuses_others() {
        for code in ["USD", "EUR", "JPY", "GBP", "BRL"] {
            assert!(is_iso_4217(code), "{code}");
        }
        for code in ["usd", "US", "XXX", "ABC", "EURO", ""] {
            assert!(!is_iso_4217(code), "{code}");
        }
    }

    #[test]
    fn exponents_are_sorted_and_name_known_codes() {
        assert!(EXPONENTS.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(EXPONENTS.iter().all(|(code, _)| is_iso_4217(code)));
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
}
