//! The payment-provider port and its built-in sandbox adapter.
//!
//! The sandbox's outcomes are deterministic, so tests and demos can drive every path of the
//! payout saga:
//!
//! | account details contain | amount (minor units) | outcome |
//! |---|---|---|
//! | `invalid` (any case) | any | declined: "the provider rejected the account" |
//! | anything else | above the limit (default 1 000 000) | declined: "amount above the provider's per-payout limit" |
//! | `unavailable` | any | provider unreachable (a transient error: the saga retries) |
//! | `slow` | any | answers after a delay (default 3 s), then by the rules above |
//! | anything else | up to the limit | paid, reference `sbx_<payout id>` |
//!
//! The sandbox is idempotent by payout id (same input, same answer), as a real provider must be
//! made through its idempotency keys, so a resumed saga may safely ask again.

use std::future::Future;
use std::time::Duration;

use uuid::Uuid;

use crate::domain::{AccountDetails, Method, ProviderOutcome};

/// What the provider is asked to pay.
#[derive(Debug, Clone)]
pub struct PaymentOrder {
    pub payout_id: Uuid,
    pub amount_minor: i64,
    pub currency: String,
    pub method: Method,
    pub account: AccountDetails,
}

/// A payment provider. `Err` means it could not be reached or answered garbage: try again later.
pub trait PaymentProvider: Send + Sync + 'static {
    fn pay(
        &self,
        order: &PaymentOrder,
    ) -> impl Future<Output = anyhow::Result<ProviderOutcome>> + Send;
}

/// The built-in sandbox provider (see the module docs for its rules).
#[derive(Debug, Clone)]
pub struct SandboxProvider {
    pub limit_minor: i64,
    pub slow_delay: Duration,
}

impl Default for SandboxProvider {
    fn default() -> Self {
        Self {
            limit_minor: 1_000_000,
            slow_delay: Duration::from_secs(3),
        }
    }
}

impl PaymentProvider for SandboxProvider {
    async fn pay(&self, order: &PaymentOrder) -> anyhow::Result<ProviderOutcome> {
        let account = order.account.expose().to_ascii_lowercase();
        if account.contains("slow") {
            tokio::time::sleep(self.slow_delay).await;
        }
        if account.contains("unavailable") {
            anyhow::bail!("sandbox provider unavailable (account marked `unavailable`)");
        }
        if account.contains("invalid") {
            return Ok(ProviderOutcome::Declined {
                reason: "the provider rejected the account".into(),
            });
        }
        if order.amount_minor > self.limit_minor {
            return Ok(ProviderOutcome::Declined {
                reason: "amount above the provider's per-payout limit".into(),
            });
        }
        Ok(ProviderOutcome::Paid {
            reference: format!("sbx_{}", order.payout_id.simple()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(account: &str, amount_minor: i64) -> PaymentOrder {
        PaymentOrder {
            payout_id: Uuid::from_u128(7),
            amount_minor,
            currency: "EUR".into(),
            method: Method::BankTransfer,
            account: AccountDetails::new(account.into()),
        }
    }

    #[tokio::test]
    async fn the_sandbox_follows_its_documented_rules() {
        let sandbox = SandboxProvider {
            slow_delay: Duration::from_millis(1),
            ..SandboxProvider::default()
        };
        let paid = sandbox
            .pay(&order("DE89370400440532013000", 5000))
            .await
            .ok();
        assert_eq!(
            paid,
            Some(ProviderOutcome::Paid {
                reference: format!("sbx_{}", Uuid::from_u128(7).simple())
            })
        );
        assert!(matches!(
            sandbox.pay(&order("DE00INVALID000000000", 5000)).await,
            Ok(ProviderOutcome::Declined { .. })
        ));
        assert!(matches!(
            sandbox
                .pay(&order("DE89370400440532013000", 1_000_001))
                .await,
            Ok(ProviderOutcome::Declined { .. })
        ));
        assert!(
            sandbox
                .pay(&order("DE00UNAVAILABLE00000", 5000))
                .await
                .is_err()
        );
        assert!(matches!(
            sandbox.pay(&order("DE00SLOW000000000000", 5000)).await,
            Ok(ProviderOutcome::Paid { .. })
        ));
        // idempotent: the same order gets the same answer
        assert_eq!(
            sandbox
                .pay(&order("DE89370400440532013000", 5000))
                .await
                .ok(),
            paid
        );
    }
}
