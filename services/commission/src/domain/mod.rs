//! The commission domain, with no I/O: how much a purchase earns, whether a campaign lets it, how a
//! payout's amount is spread over a creator's commissions, and a commission's status.

pub mod ledger;

use uuid::Uuid;

pub use service_runtime::validation::FieldViolation;

/// 100 % in basis points.
pub const FULL_RATE_BPS: i64 = 10_000;

/// The commission on `purchase_minor` at `rate_bps`: purchase × rate / 10 000, rounded half away
/// from zero to the minor unit (so 0.5 cent rounds up to 1 cent). Exact in 128-bit integers (an
/// `i64` times a `u32` always fits); `None` if the commission does not fit 64-bit minor units
/// (only a rate above 100 % can make it so).
pub fn commission_amount(purchase_minor: i64, rate_bps: u32) -> Option<i64> {
    let product = i128::from(purchase_minor).checked_mul(i128::from(rate_bps))?;
    let full = i128::from(FULL_RATE_BPS);
    let half = full / 2;
    let rounded = if product >= 0 {
        product.checked_add(half)? / full
    } else {
        product.checked_sub(half)? / full
    };
    i64::try_from(rounded).ok()
}

/// What the commission service knows of a campaign (fed by campaign events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignTerms {
    pub rate_bps: u32,
    pub currency: String,
    pub closed: bool,
    /// The campaign's budget in minor units of `currency`; `None` while not known (terms from
    /// before budgets were kept, until the campaign's next event): nothing is enforced.
    pub budget_minor: Option<i64>,
    /// What the campaign's commissions have taken of it so far.
    pub committed_minor: i64,
    /// The exhaustion of this budget has been published (once per budget).
    pub exhausted_announced: bool,
    /// The campaign's aggregate version these terms are at.
    pub version: i64,
    /// The advertiser who owns it (approves and declines its commissions); `None` for terms
    /// from before holds, until the campaign's next event.
    pub advertiser_id: Option<Uuid>,
    /// Seconds a new commission stays pending; `None` (terms from before holds) or 0: approved
    /// at once.
    pub hold_seconds: Option<i64>,
}

impl CampaignTerms {
    /// Gives `amount` back to the budget (a decline or a refund): a budget no longer spent is
    /// announced again when it next is.
    pub fn give_back(&mut self, amount: i64) {
        self.committed_minor -= amount;
        if self
            .budget_minor
            .is_some_and(|budget| self.committed_minor < budget)
        {
            self.exhausted_announced = false;
        }
    }
}

/// What a commission takes of its campaign's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// The commission: as computed, or capped to what is left of the budget.
    pub amount_minor: i64,
    /// It takes the rest of the budget: the budget is spent.
    pub spends_budget: bool,
}

/// The share of the budget a commission of `amount_minor` takes: all of it while the budget
/// holds it, else what is left (capped: the budget is a ceiling spent to the cent, and the last
/// purchase before it still earns); refused once nothing is left.
pub fn budget_share(terms: &CampaignTerms, amount_minor: i64) -> Result<Share, Refusal> {
    let Some(budget) = terms.budget_minor else {
        return Ok(Share {
            amount_minor,
            spends_budget: false,
        });
    };
    let left = budget.saturating_sub(terms.committed_minor);
    if left <= 0 {
        return Err(Refusal::BudgetExhausted);
    }
    let amount_minor = amount_minor.min(left);
    Ok(Share {
        amount_minor,
        spends_budget: amount_minor == left,
    })
}

/// Why a purchase or payout earns or reserves nothing. These are outcomes, published as
/// `commission.rejected.v1`, not errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    CampaignClosed,
    CurrencyMismatch,
    InsufficientBalance,
    BudgetExhausted,
}

impl Refusal {
    /// The machine-readable reason in `commission.rejected.v1`.
    pub fn code(self) -> &'static str {
        match self {
            Self::CampaignClosed => "CAMPAIGN_CLOSED",
            Self::CurrencyMismatch => "CURRENCY_MISMATCH",
            Self::InsufficientBalance => "INSUFFICIENT_BALANCE",
            Self::BudgetExhausted => "BUDGET_EXHAUSTED",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::CampaignClosed => "the campaign is closed: purchases earn no commission",
            Self::CurrencyMismatch => "the purchase is not in the campaign's currency",
            Self::InsufficientBalance => "the available balance is smaller than the payout",
            Self::BudgetExhausted => {
                "the campaign's budget is spent: purchases earn no commission until it is raised"
            }
        }
    }
}

/// Whether a purchase in `currency` earns a commission on a campaign with `terms`.
pub fn check_purchase(terms: &CampaignTerms, currency: &str) -> Result<(), Refusal> {
    if terms.closed {
        Err(Refusal::CampaignClosed)
    } else if terms.currency != currency {
        Err(Refusal::CurrencyMismatch)
    } else {
        Ok(())
    }
}

/// A commission's share of open (not yet reserved or paid) money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open {
    pub commission_id: Uuid,
    pub open_minor: i64,
}

/// Spreads `amount` over commissions oldest first; `None` if they hold less than `amount`.
pub fn allocate(amount: i64, commissions: &[Open]) -> Option<Vec<(Uuid, i64)>> {
    let mut left = amount;
    let mut taken = Vec::new();
    for c in commissions {
        if left == 0 {
            break;
        }
        let take = c.open_minor.min(left);
        if take > 0 {
            taken.push((c.commission_id, take));
            left -= take;
        }
    }
    (left == 0).then_some(taken)
}

/// An approved commission's status from its amounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Available,
    Reserved,
    Paid,
}

/// Of `amount`, what refunds have not taken back before payment (`reversed`) is what payouts can
/// take. Never overflows: every amount is at least 0 and `reserved + paid + reversed <= amount`.
pub fn status(amount: i64, reserved: i64, paid: i64, reversed: i64) -> Status {
    let amount = amount - reversed;
    if paid >= amount {
        Status::Paid
    } else if reserved >= amount.saturating_sub(paid) {
        Status::Reserved
    } else {
        Status::Available
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commission_is_amount_times_rate_rounded_half_away_from_zero() {
        assert_eq!(commission_amount(10_000, 1_000), Some(1_000)); // 100.00 at 10 % = 10.00
        assert_eq!(commission_amount(1_999, 1_250), Some(250)); // 19.99 at 12.5 % = 2.49875 → 2.50
        assert_eq!(commission_amount(4, 1_250), Some(1)); // 0.04 at 12.5 % = 0.005 → 0.01
        assert_eq!(commission_amount(3, 1_250), Some(0)); // 0.0375 → 0.00
        assert_eq!(commission_amount(12_345, 0), Some(0));
        assert_eq!(commission_amount(12_345, 10_000), Some(12_345));
        assert_eq!(commission_amount(i64::MAX, 10_000), Some(i64::MAX));
    }

    #[test]
    fn a_commission_that_does_not_fit_64_bit_minor_units_is_none_never_saturated() {
        // purchase × rate fits 128 bits; the commission does not fit 64.
        assert_eq!(commission_amount(i64::MAX, 10_001), None);
        assert_eq!(commission_amount(i64::MAX, u32::MAX), None);
        assert_eq!(commission_amount(i64::MIN, u32::MAX), None);
        // The largest purchase that still fits at 200 %, rounding included.
        assert_eq!(commission_amount(i64::MAX / 2, 20_000), Some(i64::MAX - 1));
    }

    fn terms(budget_minor: Option<i64>, committed_minor: i64) -> CampaignTerms {
        CampaignTerms {
            rate_bps: 500,
            currency: "EUR".into(),
            closed: false,
            budget_minor,
            committed_minor,
            exhausted_announced: false,
            version: 1,
            advertiser_id: None,
            hold_seconds: None,
        }
    }

    #[test]
    fn a_commission_takes_the_budget_whole_then_capped_to_what_is_left_then_nothing() {
        let share = |budget, committed, amount| budget_share(&terms(budget, committed), amount);
        let full = |amount_minor, spends_budget| {
            Ok(Share {
                amount_minor,
                spends_budget,
            })
        };
        assert_eq!(share(Some(5_000), 0, 100), full(100, false));
        assert_eq!(share(Some(5_000), 4_900, 100), full(100, true));
        assert_eq!(share(Some(5_000), 4_950, 100), full(50, true));
        assert_eq!(
            share(Some(5_000), 5_000, 100),
            Err(Refusal::BudgetExhausted)
        );
        // A budget lowered below what was committed.
        assert_eq!(share(Some(4_000), 5_000, 1), Err(Refusal::BudgetExhausted));
        // A commission of nothing (a 0 % rate) spends nothing.
        assert_eq!(share(Some(5_000), 0, 0), full(0, false));
        // No budget known: nothing enforced.
        assert_eq!(share(None, i64::MAX, 100), full(100, false));
    }

    #[test]
    fn money_given_back_reopens_a_spent_budget_to_be_announced_again() {
        let mut spent = CampaignTerms {
            exhausted_announced: true,
            ..terms(Some(5_000), 5_000)
        };
        spent.give_back(0);
        assert!(spent.exhausted_announced, "still spent");
        spent.give_back(100);
        assert_eq!(spent.committed_minor, 4_900);
        assert!(!spent.exhausted_announced);
    }

    #[test]
    fn purchases_on_closed_campaigns_or_in_other_currencies_earn_nothing() {
        let open = terms(None, 0);
        assert_eq!(check_purchase(&open, "EUR"), Ok(()));
        assert_eq!(check_purchase(&open, "USD"), Err(Refusal::CurrencyMismatch));
        let closed = CampaignTerms {
            closed: true,
            ..open
        };
        assert_eq!(check_purchase(&closed, "EUR"), Err(Refusal::CampaignClosed));
    }

    #[test]
    fn payouts_are_spread_over_the_oldest_commissions_first() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        let c = Uuid::from_u128(3);
        let open = [
            Open {
                commission_id: a,
                open_minor: 300,
            },
            Open {
                commission_id: b,
                open_minor: 0,
            },
            Open {
                commission_id: c,
                open_minor: 500,
            },
        ];
        assert_eq!(allocate(300, &open), Some(vec![(a, 300)]));
        assert_eq!(allocate(450, &open), Some(vec![(a, 300), (c, 150)]));
        assert_eq!(allocate(800, &open), Some(vec![(a, 300), (c, 500)]));
        assert_eq!(allocate(801, &open), None);
    }

    #[test]
    fn status_follows_reserved_and_paid_amounts() {
        assert_eq!(status(100, 0, 0, 0), Status::Available);
        assert_eq!(status(100, 40, 0, 0), Status::Available);
        assert_eq!(status(100, 60, 40, 0), Status::Reserved);
        assert_eq!(status(100, 0, 100, 0), Status::Paid);
        assert_eq!(
            status(100, 0, 75, 25),
            Status::Paid,
            "the rest was refunded"
        );
        assert_eq!(
            status(i64::MAX, i64::MAX - 1, 1, 0),
            Status::Reserved,
            "no overflow"
        );
    }
}
