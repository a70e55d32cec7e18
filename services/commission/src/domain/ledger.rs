//! The double-entry ledger's rules, with no I/O: the accounts, the transfers each movement of money
//! makes, and how a refund splits into a reversal (unpaid money back to the budget) and a clawback
//! (money already reserved or paid, owed by the creator).

use std::fmt;

use uuid::Uuid;

/// An account of the ledger, per currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Account {
    /// What a campaign's commissions have committed of its budget (debit-normal).
    Budget(Uuid),
    /// A creator's commissions in their hold.
    Pending(Uuid),
    /// A creator's approved, payable money (negative: a clawback debt).
    Available(Uuid),
    /// A creator's money held by payouts in flight.
    Reserved(Uuid),
    /// What left the platform to the creator through the payment provider.
    Paid(Uuid),
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, owner) = match self {
            Self::Budget(id) => ("budget", id),
            Self::Pending(id) => ("pending", id),
            Self::Available(id) => ("available", id),
            Self::Reserved(id) => ("reserved", id),
            Self::Paid(id) => ("paid", id),
        };
        write!(f, "{kind}/{owner}")
    }
}

/// Why money moved; the ledger's `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Movement {
    /// A purchase's commission committed from the budget to the creator's pending money.
    Commission,
    /// A commission's hold ended (or the advertiser approved it): pending to available.
    Approval,
    /// The advertiser declined a pending commission: back to the budget.
    Decline,
    /// A refund took back unpaid commission: back to the budget.
    Reversal,
    /// A refund took back reserved or paid commission: the creator owes it.
    Clawback,
    Reserve,
    Release,
    Settle,
}

impl Movement {
    pub fn code(self) -> &'static str {
        match self {
            Self::Commission => "commission",
            Self::Approval => "approval",
            Self::Decline => "decline",
            Self::Reversal => "reversal",
            Self::Clawback => "clawback",
            Self::Reserve => "reserve",
            Self::Release => "release",
            Self::Settle => "settle",
        }
    }
}

/// One transfer: `amount` (positive) from `debit` to `credit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub movement: Movement,
    pub debit: Account,
    pub credit: Account,
    pub amount_minor: i64,
}

impl Transfer {
    /// `None` for a transfer of nothing (the ledger holds positive amounts only).
    pub fn of(movement: Movement, debit: Account, credit: Account, amount: i64) -> Option<Self> {
        (amount > 0).then_some(Self {
            movement,
            debit,
            credit,
            amount_minor: amount,
        })
    }
}

/// A commission's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    Pending,
    Approved,
    Declined,
    Reversed,
}

impl Life {
    pub fn code(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Declined => "declined",
            Self::Reversed => "reversed",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Some(match code {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "declined" => Self::Declined,
            "reversed" => Self::Reversed,
            _ => return None,
        })
    }
}

/// A commission's amounts, as a refund sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amounts {
    pub life: Life,
    pub purchase_minor: i64,
    pub amount_minor: i64,
    pub reserved_minor: i64,
    pub paid_minor: i64,
    pub refunded_minor: i64,
    pub reversed_minor: i64,
    pub clawed_back_minor: i64,
}

impl Amounts {
    /// Money of the commission still with the creator, neither reserved nor paid nor taken back
    /// (in the pending account while pending, else in available).
    pub fn open(&self) -> i64 {
        self.amount_minor - self.reserved_minor - self.paid_minor - self.reversed_minor
    }
}

/// What a refund does to a commission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refund {
    /// Purchase money refunded after it, in all.
    pub refunded_minor: i64,
    /// Unpaid commission taken back now (back to the budget).
    pub reversed_minor: i64,
    /// Reserved or paid commission taken back now (owed by the creator).
    pub clawed_back_minor: i64,
    /// The commission's life after it: reversed once all of it is taken back.
    pub life: Life,
}

/// Why a refund cannot be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundError {
    /// More than what is left of the purchase; `left` is what is.
    TooLarge { left: i64 },
}

/// Applies a refund of `refund_minor` of the purchase: the commission's share taken back in all is
/// the commission × refunded / purchase, rounded half away from zero (so refunds in parts take back
/// exactly what one full refund would); of what is new, the open money first, then the reserved or
/// paid (a clawback). A declined commission keeps nothing to take back: only the refunded total
/// moves.
pub fn refund(a: &Amounts, refund_minor: i64) -> Result<Refund, RefundError> {
    let left = a.purchase_minor - a.refunded_minor;
    if refund_minor > left {
        return Err(RefundError::TooLarge { left });
    }
    let refunded = a.refunded_minor + refund_minor;
    if a.life == Life::Declined {
        return Ok(Refund {
            refunded_minor: refunded,
            reversed_minor: 0,
            clawed_back_minor: 0,
            life: Life::Declined,
        });
    }
    let share = proportion(a.amount_minor, refunded, a.purchase_minor);
    let taken = a.reversed_minor + a.clawed_back_minor;
    let now = (share - taken).max(0);
    let reversed = now.min(a.open().max(0));
    let clawed = now - reversed;
    let life = if a.amount_minor > 0 && taken + now >= a.amount_minor {
        Life::Reversed
    } else {
        a.life
    };
    Ok(Refund {
        refunded_minor: refunded,
        reversed_minor: reversed,
        clawed_back_minor: clawed,
        life,
    })
}

/// `amount × part / whole`, rounded half away from zero, in 128-bit integers (`part <= whole`).
fn proportion(amount: i64, part: i64, whole: i64) -> i64 {
    if whole <= 0 {
        return amount;
    }
    let (amount, part, whole) = (i128::from(amount), i128::from(part), i128::from(whole));
    let rounded = (2 * amount * part + whole) / (2 * whole);
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

/// The transfers of a refund on a commission of `campaign` and `creator` in `life` before it.
pub fn refund_transfers(
    before: Life,
    campaign: Uuid,
    creator: Uuid,
    refund: &Refund,
) -> Vec<Transfer> {
    let from = if before == Life::Pending {
        Account::Pending(creator)
    } else {
        Account::Available(creator)
    };
    let budget = Account::Budget(campaign);
    [
        Transfer::of(Movement::Reversal, from, budget, refund.reversed_minor),
        Transfer::of(
            Movement::Clawback,
            Account::Available(creator),
            budget,
            refund.clawed_back_minor,
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approved(amount: i64, reserved: i64, paid: i64) -> Amounts {
        Amounts {
            life: Life::Approved,
            purchase_minor: 10_000,
            amount_minor: amount,
            reserved_minor: reserved,
            paid_minor: paid,
            refunded_minor: 0,
            reversed_minor: 0,
            clawed_back_minor: 0,
        }
    }

    #[test]
    fn a_full_refund_of_an_unpaid_commission_reverses_all_of_it() {
        let r = refund(&approved(1_000, 0, 0), 10_000).unwrap();
        assert_eq!(
            r,
            Refund {
                refunded_minor: 10_000,
                reversed_minor: 1_000,
                clawed_back_minor: 0,
                life: Life::Reversed
            }
        );
    }

    #[test]
    fn a_refund_of_paid_money_is_clawed_back_after_the_open_money() {
        // 1 000 earned, 600 paid, 300 in a payout in flight, 100 open: a full refund reverses
        // the 100 and claws back the 900.
        let r = refund(&approved(1_000, 300, 600), 10_000).unwrap();
        assert_eq!((r.reversed_minor, r.clawed_back_minor), (100, 900));
        assert_eq!(r.life, Life::Reversed);
    }

    #[test]
    fn refunds_in_parts_take_back_what_one_refund_would_to_the_cent() {
        // 333 of a 1 000 purchase at 1/3 commission: rounding per part must not drift.
        let mut a = Amounts {
            purchase_minor: 1_000,
            ..approved(333, 0, 0)
        };
        let mut taken = 0;
        for part in [1, 1, 1, 333, 664] {
            let r = refund(&a, part).unwrap();
            taken += r.reversed_minor + r.clawed_back_minor;
            a.refunded_minor = r.refunded_minor;
            a.reversed_minor += r.reversed_minor;
            a.life = r.life;
        }
        assert_eq!(taken, 333);
        assert_eq!(a.life, Life::Reversed);
        assert_eq!(
            refund(&a, 1),
            Err(RefundError::TooLarge { left: 0 }),
            "nothing is left to refund"
        );
    }

    #[test]
    fn a_partial_refund_takes_back_its_share_and_leaves_the_commission_approved() {
        let r = refund(&approved(1_000, 0, 0), 2_500).unwrap();
        assert_eq!((r.reversed_minor, r.clawed_back_minor), (250, 0));
        assert_eq!(r.life, Life::Approved);
        assert_eq!(
            refund(&approved(1_000, 0, 0), 10_001),
            Err(RefundError::TooLarge { left: 10_000 })
        );
    }

    #[test]
    fn a_declined_commission_counts_the_refund_and_moves_no_money() {
        let a = Amounts {
            life: Life::Declined,
            ..approved(1_000, 0, 0)
        };
        let r = refund(&a, 10_000).unwrap();
        assert_eq!((r.reversed_minor, r.clawed_back_minor), (0, 0));
        assert_eq!(r.life, Life::Declined);
    }

    #[test]
    fn a_pending_commission_is_reversed_from_the_pending_account() {
        let creator = Uuid::from_u128(2);
        let campaign = Uuid::from_u128(1);
        let a = Amounts {
            life: Life::Pending,
            ..approved(1_000, 0, 0)
        };
        let r = refund(&a, 5_000).unwrap();
        assert_eq!(
            refund_transfers(Life::Pending, campaign, creator, &r),
            vec![Transfer {
                movement: Movement::Reversal,
                debit: Account::Pending(creator),
                credit: Account::Budget(campaign),
                amount_minor: 500
            }]
        );
        assert_eq!(
            Account::Pending(creator).to_string(),
            "pending/00000000-0000-0000-0000-000000000002"
        );
    }
}
