//! The payment handlers and the payout saga. RequestPayout writes the payout and sends the
//! reserve command in one transaction; each later step (from a commission event, or from the
//! provider's answer) moves the payout's state under a row lock and sends the next messages in the
//! same transaction. The provider is called outside any transaction; a payout left `processing`
//! by a crash is picked up by [`Payouts::resume`].

mod error;
pub mod messages;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use affiliate_proto::payment as pb;
use messaging::inbox;
use service_runtime::context::CommandContext;
use service_runtime::money::display;
use service_runtime::outbox;
use service_runtime::paging::next_page_token;
use service_runtime::unit_of_work::{Decision, execute};
use service_runtime::validation::{Violations, page_size, parse_id, parse_optional_id};

use crate::adapters::provider::{PaymentOrder, PaymentProvider};
use crate::adapters::repository::{self as repo};
use crate::domain::{self, Method, PayoutInput, PayoutMinimums, ProviderOutcome, State, Step};
pub use error::Error;

/// The inbox consumer name of the saga's commission-event feed.
pub const SAGA_CONSUMER: &str = "payment/commission-events";

/// The `google.rpc.ErrorInfo` reason of a payout request below its currency's minimum.
pub const BELOW_MINIMUM_PAYOUT: &str = "BELOW_MINIMUM_PAYOUT";

/// The payout use cases and saga over one database and one provider.
pub struct Payouts<P> {
    pool: PgPool,
    provider: Arc<P>,
    provider_timeout: Duration,
    minimums: Arc<PayoutMinimums>,
}

impl<P> Clone for Payouts<P> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            provider: self.provider.clone(),
            provider_timeout: self.provider_timeout,
            minimums: self.minimums.clone(),
        }
    }
}

impl<P: PaymentProvider> Payouts<P> {
    pub fn new(pool: PgPool, provider: Arc<P>, provider_timeout: Duration) -> Self {
        Self {
            pool,
            provider,
            provider_timeout,
            minimums: Arc::default(),
        }
    }

    /// Refuses payout requests below their currency's minimum.
    pub fn with_minimums(self, minimums: PayoutMinimums) -> Self {
        Self {
            minimums: Arc::new(minimums),
            ..self
        }
    }

    /// Starts a payout: `payout.requested.v1` and `commission.reserve.command.v1`, one transaction.
    /// One below its currency's minimum is refused (`BELOW_MINIMUM_PAYOUT`), nothing written;
    /// a retry of one accepted before is answered as it was.
    pub async fn request_payout(
        &self,
        ctx: &CommandContext,
        request: pb::RequestPayoutRequest,
    ) -> Result<pb::RequestPayoutResponse, Error> {
        let method = match pb::PayoutMethod::try_from(request.method) {
            Ok(pb::PayoutMethod::BankTransfer) => Some(Method::BankTransfer),
            Ok(pb::PayoutMethod::Paypal) => Some(Method::Paypal),
            _ => None,
        };
        let new = domain::validate_payout(PayoutInput {
            creator_id: &request.creator_id,
            amount: request
                .amount
                .as_ref()
                .map(|m| (m.amount_minor, m.currency.as_str())),
            method,
            account_details: &request.account_details,
        })?;
        let response = execute(
            &self.pool,
            ctx,
            "payment.request_payout",
            &request,
            async |tx| {
                self.check_minimum(&new)?;
                let now = messages::now();
                let account = domain::mask(&new.account);
                let row = repo::insert_payout(
                    tx,
                    Uuid::now_v7(),
                    &new,
                    &account,
                    &ctx.correlation_id,
                    now,
                )
                .await?;
                Ok(Decision::with_all(
                    pb::RequestPayoutResponse {
                        payout: Some(messages::payout(&row)),
                    },
                    messages::step_messages(ctx, &row, now),
                ))
            },
        )
        .await?;
        if let Some(payout) = &response.payout {
            tracing::info!(payout = %payout.id, creator = %payout.creator_id, "payout requested");
        }
        Ok(response)
    }

    fn check_minimum(&self, new: &domain::NewPayout) -> Result<(), Error> {
        match self.minimums.short_of(new.amount_minor, &new.currency) {
            None => Ok(()),
            Some(minimum) => Err(Error::Refused {
                reason: BELOW_MINIMUM_PAYOUT,
                message: format!(
                    "a payout of {} is below the minimum payout of {}",
                    display(new.amount_minor, &new.currency),
                    display(minimum, &new.currency)
                ),
            }),
        }
    }

    pub async fn get_payout(
        &self,
        request: pb::GetPayoutRequest,
    ) -> Result<pb::GetPayoutResponse, Error> {
        let id = parse_id("payout_id", &request.payout_id)?;
        let mut conn = self.pool.acquire().await?;
        let row = repo::find_payout(&mut conn, id)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "payout",
                id: id.to_string(),
            })?;
        Ok(pb::GetPayoutResponse {
            payout: Some(messages::payout(&row)),
        })
    }

    pub async fn list_payouts(
        &self,
        request: pb::ListPayoutsRequest,
    ) -> Result<pb::ListPayoutsResponse, Error> {
        let mut v = Violations::new();
        let limit = v.check(page_size("page_size", request.page_size, 20, 100));
        let before = v.check(parse_optional_id("page_token", &request.page_token));
        let creator = v.check(parse_optional_id("creator_id", &request.creator_id));
        let ((limit, before), creator) = v.finish(limit.zip(before).zip(creator))?;
        let mut conn = self.pool.acquire().await?;
        let mut rows = repo::list_payouts(&mut conn, creator, before, limit + 1).await?;
        let next_page_token = next_page_token(&mut rows, limit, |r| r.id);
        Ok(pb::ListPayoutsResponse {
            payouts: rows.iter().map(messages::payout).collect(),
            next_page_token,
        })
    }

    /// Applies a step the saga learned from message `message_id`, at most once (inbox), in one
    /// transaction with the messages the new state sends. A step that does not apply to the
    /// payout's state (a duplicate or stale message) changes nothing. Returns the new state.
    #[tracing::instrument(name = "db.transaction", skip_all, fields(otel.kind = "internal", db.system = "postgresql", operation = "apply_step"))]
    pub async fn apply_step(
        &self,
        ctx: &CommandContext,
        message_id: &str,
        payout_id: Uuid,
        step: Step,
        failure_reason: Option<&str>,
    ) -> Result<Option<State>, Error> {
        let mut tx = self.pool.begin().await?;
        if !inbox::record(&mut tx, SAGA_CONSUMER, message_id).await? {
            return Ok(None);
        }
        let Some(current) = repo::lock_payout(&mut tx, payout_id).await? else {
            tracing::debug!(payout = %payout_id, "commission event about a payout this service did not start; ignored");
            tx.commit().await?;
            return Ok(None);
        };
        let Some(next) = current
            .state()
            .and_then(|state| domain::transition(state, &step))
        else {
            tracing::info!(payout = %payout_id, status = %current.status, ?step, "step does not apply; ignored");
            tx.commit().await?;
            return Ok(None);
        };
        let now = messages::now();
        let row = repo::set_state(&mut tx, payout_id, next, None, failure_reason, now).await?;
        outbox::append(&mut tx, &messages::step_messages(ctx, &row, now))
            .await
            .map_err(Error::Internal)?;
        tx.commit().await?;
        tracing::info!(payout = %payout_id, from = %current.status, to = next.as_str(), "payout moved");
        Ok(Some(next))
    }

    /// Pays a `processing` payout through the provider, then records the answer and sends the
    /// next messages (settle, or release as compensation) in one transaction. Safe to repeat: the
    /// provider is idempotent by payout id and the state is re-checked under the row lock. The
    /// messages carry the payout's correlation id, name `causation` as their cause and continue
    /// the trace of `caused_by` (the step that made the payout `processing`; none when resumed).
    #[tracing::instrument(name = "db.transaction", skip_all, fields(otel.kind = "internal", db.system = "postgresql", operation = "pay"))]
    pub async fn pay(
        &self,
        payout_id: Uuid,
        causation: &str,
        caused_by: Option<&CommandContext>,
    ) -> Result<(), Error> {
        let row = {
            let mut conn = self.pool.acquire().await?;
            repo::find_payout(&mut conn, payout_id).await?
        };
        let Some(row) = row.filter(|r| r.state() == Some(State::Processing)) else {
            return Ok(());
        };
        let ctx = &CommandContext {
            correlation_id: row.correlation_id.clone(),
            causation_id: Some(causation.to_owned()),
            traceparent: caused_by.and_then(|c| c.traceparent.clone()),
            tracestate: caused_by.and_then(|c| c.tracestate.clone()),
            ..CommandContext::new()
        };
        let method = row.method().ok_or_else(|| {
            Error::Internal(anyhow::anyhow!(
                "payout {payout_id} has unknown method {}",
                row.method
            ))
        })?;
        let order = PaymentOrder {
            payout_id,
            amount_minor: row.amount_minor,
            currency: row.currency.clone(),
            method,
            account: row.account_details.0.clone(),
        };
        let outcome = tokio::time::timeout(self.provider_timeout, self.provider.pay(&order))
            .await
            .map_err(|_| {
                Error::Unavailable(anyhow::anyhow!(
                    "payment provider did not answer within {:?}",
                    self.provider_timeout
                ))
            })?
            .map_err(Error::Unavailable)?;
        let (step, reference, reason) = match &outcome {
            ProviderOutcome::Paid { reference } => {
                (Step::ProviderPaid, Some(reference.as_str()), None)
            }
            ProviderOutcome::Declined { reason } => {
                (Step::ProviderDeclined, None, Some(reason.as_str()))
            }
        };
        let mut tx = self.pool.begin().await?;
        let Some(current) = repo::lock_payout(&mut tx, payout_id).await? else {
            return Ok(());
        };
        let Some(next) = current
            .state()
            .and_then(|state| domain::transition(state, &step))
        else {
            return Ok(()); // another attempt recorded the answer first
        };
        let now = messages::now();
        let row = repo::set_state(&mut tx, payout_id, next, reference, reason, now).await?;
        outbox::append(&mut tx, &messages::step_messages(ctx, &row, now))
            .await
            .map_err(Error::Internal)?;
        tx.commit().await?;
        tracing::info!(payout = %payout_id, to = next.as_str(), "provider answered");
        Ok(())
    }

    /// Finishes payments a crash (or a provider outage) left `processing` for at least `min_age`.
    pub async fn resume(&self, min_age: Duration) -> Result<usize, Error> {
        let stuck = {
            let mut conn = self.pool.acquire().await?;
            repo::stuck_in_processing(&mut conn, min_age.as_secs_f64()).await?
        };
        let mut finished = 0;
        for payout_id in stuck {
            match self
                .pay(payout_id, &format!("resume:{payout_id}"), None)
                .await
            {
                Ok(()) => finished += 1,
                Err(e) => {
                    tracing::warn!(payout = %payout_id, error = %e, "resuming the payment failed; will retry")
                }
            }
        }
        Ok(finished)
    }
}
