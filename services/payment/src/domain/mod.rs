//! The payout domain, with no I/O: what a valid payout request is, how account details are
//! masked, and the saga's state machine (which message moves a payout from which state to which).

use std::collections::BTreeMap;

pub use service_runtime::validation::FieldViolation;
use service_runtime::validation::{Violations, parse_id};
use uuid::Uuid;

/// A payout method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    BankTransfer,
    Paypal,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BankTransfer => "bank_transfer",
            Self::Paypal => "paypal",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "bank_transfer" => Some(Self::BankTransfer),
            "paypal" => Some(Self::Paypal),
            _ => None,
        }
    }
}

/// Account details: never printed, never published; only [`mask`] leaves the service.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountDetails(String);

impl AccountDetails {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccountDetails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccountDetails(redacted)")
    }
}

/// The last four characters behind asterisks, e.g. `****1234`.
pub fn mask(details: &AccountDetails) -> String {
    let chars: Vec<char> = details.0.chars().collect();
    let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
    format!("****{tail}")
}

/// A validated RequestPayout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayout {
    pub creator_id: Uuid,
    pub amount_minor: i64,
    pub currency: String,
    pub method: Method,
    pub account: AccountDetails,
}

/// The raw fields of a RequestPayout.
#[derive(Debug, Clone, Copy)]
pub struct PayoutInput<'a> {
    pub creator_id: &'a str,
    pub amount: Option<(i64, &'a str)>,
    pub method: Option<Method>,
    pub account_details: &'a str,
}

pub fn validate_payout(input: PayoutInput<'_>) -> Result<NewPayout, Vec<FieldViolation>> {
    let mut v = Violations::new();
    let creator_id = v.check(parse_id("creator_id", input.creator_id));
    let amount = match input.amount {
        None => {
            v.push(FieldViolation::new("amount", "is required"));
            None
        }
        Some((minor, currency)) => {
            let ok_amount = minor > 0;
            if !ok_amount {
                v.push(FieldViolation::new(
                    "amount.amount_minor",
                    "must be a positive amount in minor units",
                ));
            }
            let ok_currency = service_runtime::money::is_iso_4217(currency);
            if !ok_currency {
                v.push(FieldViolation::new(
                    "amount.currency",
                    "must be an ISO-4217 currency code in upper case",
                ));
            }
            (ok_amount && ok_currency).then(|| (minor, currency.to_owned()))
        }
    };
    let method = match input.method {
        Some(m) => Some(m),
        None => {
            v.push(FieldViolation::new(
                "method",
                "must be BANK_TRANSFER or PAYPAL",
            ));
            None
        }
    };
    let account = input.account_details.trim();
    let account_ok = match method {
        Some(Method::BankTransfer) => is_iban_like(account),
        Some(Method::Paypal) => is_email_like(account),
        None => !account.is_empty(),
    };
    if !account_ok {
        let description = match method {
            Some(Method::BankTransfer) => {
                "must be an IBAN: 2 letters, 2 digits, then 11 to 30 letters or digits"
            }
            Some(Method::Paypal) => "must be the PayPal account's e-mail address",
            None => "is required",
        };
        v.push(FieldViolation::new("account_details", description));
    }
    let value = creator_id.zip(amount).zip(method).map(
        |((creator_id, (amount_minor, currency)), method)| NewPayout {
            creator_id,
            amount_minor,
            currency,
            method,
            account: AccountDetails::new(account.to_owned()),
        },
    );
    v.finish(value)
}

fn is_iban_like(s: &str) -> bool {
    let b = s.as_bytes();
    (15..=34).contains(&b.len())
        && b[..2].iter().all(u8::is_ascii_uppercase)
        && b[2..4].iter().all(u8::is_ascii_digit)
        && b[4..].iter().all(u8::is_ascii_alphanumeric)
}

fn is_email_like(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && s.len() <= 254
                && !s.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// The smallest payout per currency, in minor units (`--payout-minimums`): a payout request
/// below its currency's minimum is refused; a currency without one takes any positive amount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayoutMinimums(BTreeMap<String, i64>);

impl PayoutMinimums {
    /// Reads `EUR=10.00,USD=25.00`: ISO-4217 codes, each once, with a positive amount in major
    /// units with at most the currency's decimals (`JPY=1000`, `KWD=5.125`). Empty means none.
    /// The error says which entry is wrong and how.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut minimums = BTreeMap::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (currency, amount) = entry
                .split_once('=')
                .ok_or_else(|| format!("`{entry}` is not CURRENCY=AMOUNT, e.g. EUR=10.00"))?;
            let (currency, amount) = (currency.trim(), amount.trim());
            if !service_runtime::money::is_iso_4217(currency) {
                return Err(format!(
                    "`{entry}`: `{currency}` is not an ISO-4217 currency code in upper case"
                ));
            }
            let minor = service_runtime::money::parse_major(amount, currency)
                .map_err(|why| format!("`{entry}`: the amount {why}"))?;
            if minor <= 0 {
                return Err(format!("`{entry}`: the amount must be positive"));
            }
            if minimums.insert(currency.to_owned(), minor).is_some() {
                return Err(format!("{currency} is given twice"));
            }
        }
        Ok(Self(minimums))
    }

    /// The minimum of `currency` in minor units, if it has one.
    pub fn of(&self, currency: &str) -> Option<i64> {
        self.0.get(currency).copied()
    }

    /// The minimum a payout of `amount_minor` `currency` falls short of, if it does.
    pub fn short_of(&self, amount_minor: i64, currency: &str) -> Option<i64> {
        self.of(currency).filter(|minimum| amount_minor < *minimum)
    }
}

/// Where a payout is in the saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Reserve command sent.
    Requested,
    /// Reserved; paying through the provider.
    Processing,
    /// Paid; settle command sent.
    Settling,
    Completed,
    /// The provider failed; release command sent.
    Releasing,
    Failed,
    /// Not enough balance; nothing reserved.
    Rejected,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Processing => "processing",
            Self::Settling => "settling",
            Self::Completed => "completed",
            Self::Releasing => "releasing",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Requested,
            Self::Processing,
            Self::Settling,
            Self::Completed,
            Self::Releasing,
            Self::Failed,
            Self::Rejected,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }
}

/// What happened to a payout, as the saga learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Reserved,
    ReservationRefused,
    ProviderPaid,
    ProviderDeclined,
    Settled,
    Released,
}

/// The state a step leads to from `from`, or `None` if the step does not apply there (a
/// duplicate or stale message: the saga ignores it).
pub fn transition(from: State, step: &Step) -> Option<State> {
    use State::*;
    match (from, step) {
        (Requested, Step::Reserved) => Some(Processing),
        (Requested, Step::ReservationRefused) => Some(Rejected),
        (Processing, Step::ProviderPaid) => Some(Settling),
        (Processing, Step::ProviderDeclined) => Some(Releasing),
        (Settling, Step::Settled) => Some(Completed),
        (Releasing, Step::Released) => Some(Failed),
        _ => None,
    }
}

/// The payment provider's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderOutcome {
    Paid { reference: String },
    Declined { reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> PayoutInput<'static> {
        PayoutInput {
            creator_id: "0193a9e0-0000-7000-8000-000000000001",
            amount: Some((5000, "EUR")),
            method: Some(Method::BankTransfer),
            account_details: "DE89370400440532013000",
        }
    }

    fn fields(r: Result<NewPayout, Vec<FieldViolation>>) -> Vec<String> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.field)
            .collect()
    }

    #[test]
    fn a_valid_request_passes() {
        assert!(validate_payout(input()).is_ok());
        let paypal = PayoutInput {
            method: Some(Method::Paypal),
            account_details: "ana@example.com",
            ..input()
        };
        assert!(validate_payout(paypal).is_ok());
    }

    #[test]
    fn every_problem_is_reported() {
        let bad = PayoutInput {
            creator_id: "x",
            amount: Some((0, "eur")),
            method: None,
            account_details: "",
        };
        assert_eq!(
            fields(validate_payout(bad)),
            [
                "creator_id",
                "amount.amount_minor",
                "amount.currency",
                "method",
                "account_details"
            ]
        );
        let iban = PayoutInput {
            account_details: "ana@example.com",
            ..input()
        };
        assert_eq!(fields(validate_payout(iban)), ["account_details"]);
        let mail = PayoutInput {
            method: Some(Method::Paypal),
            account_details: "DE89370400440532013000",
            ..input()
        };
        assert_eq!(fields(validate_payout(mail)), ["account_details"]);
    }

    #[test]
    fn account_details_are_masked_and_never_debug_printed() {
        let account = AccountDetails::new("DE89370400440532013000".into());
        assert_eq!(mask(&account), "****3000");
        assert!(!format!("{account:?}").contains("3704"));
        assert_eq!(mask(&AccountDetails::new("ab".into())), "****ab");
    }

    #[test]
    fn payout_minimums_are_read_in_major_units_with_each_currency_s_decimals() {
        let minimums = PayoutMinimums::parse("EUR=10.00, USD=25,JPY=1000,KWD=5.125").unwrap();
        assert_eq!(
            ["EUR", "USD", "JPY", "KWD", "GBP"].map(|c| minimums.of(c)),
            [Some(1000), Some(2500), Some(1000), Some(5125), None]
        );
        assert_eq!(minimums.short_of(999, "EUR"), Some(1000));
        assert_eq!(minimums.short_of(1000, "EUR"), None);
        assert_eq!(minimums.short_of(1, "GBP"), None);
        assert_eq!(
            PayoutMinimums::parse("").unwrap(),
            PayoutMinimums::default()
        );
        assert_eq!(
            PayoutMinimums::parse(" ").unwrap(),
            PayoutMinimums::default()
        );
    }

    #[test]
    fn a_bad_payout_minimum_is_refused_saying_which_and_why() {
        for (text, why) in [
            ("EUR", "is not CURRENCY=AMOUNT"),
            ("eur=10", "not an ISO-4217 currency code"),
            ("XXX=10", "not an ISO-4217 currency code"),
            ("EUR=10.001", "has 3 decimals; EUR has 2"),
            ("JPY=10.5", "has 1 decimals; JPY has 0"),
            ("EUR=-1", "must not be negative"),
            ("EUR=1e3", "must be a decimal number"),
            ("EUR=10.", "must be a decimal number"),
            ("EUR=", "must be a decimal number"),
            ("EUR=0.00", "must be positive"),
            ("EUR=99999999999999999999", "is too large"),
            ("EUR=1,EUR=2", "EUR is given twice"),
        ] {
            let error = PayoutMinimums::parse(text).unwrap_err();
            assert!(error.contains(why), "{text}: {error}");
        }
    }

    #[test]
    fn the_saga_moves_forward_only() {
        use State::*;
        assert_eq!(transition(Requested, &Step::Reserved), Some(Processing));
        assert_eq!(
            transition(Requested, &Step::ReservationRefused),
            Some(Rejected)
        );
        assert_eq!(transition(Processing, &Step::ProviderPaid), Some(Settling));
        assert_eq!(
            transition(Processing, &Step::ProviderDeclined),
            Some(Releasing)
        );
        assert_eq!(transition(Settling, &Step::Settled), Some(Completed));
        assert_eq!(transition(Releasing, &Step::Released), Some(Failed));
        // duplicates and stale messages change nothing
        assert_eq!(transition(Processing, &Step::Reserved), None);
        assert_eq!(transition(Completed, &Step::Settled), None);
        assert_eq!(transition(Failed, &Step::ProviderPaid), None);
        assert_eq!(transition(Rejected, &Step::Reserved), None);
        for s in [
            Requested, Processing, Settling, Completed, Releasing, Failed, Rejected,
        ] {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
    }
}
