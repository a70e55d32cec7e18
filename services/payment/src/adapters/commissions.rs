//! The saga's ears: commission events about payouts this service started move them on
//! (reserved → pay, refused → rejected, settled → completed, released → failed). A reserve
//! command the commission service rejected (e.g. OUT_OF_RANGE: the reservation would overflow
//! the creator's reserved balance) is a refusal too. Each event is applied at most once (the
//! inbox); events about other things are ignored.

use prost::Message as _;
use uuid::Uuid;

use affiliate_proto::commission::{
    CommissionEvent, commission_command::Command, commission_event::Event,
};
use messaging::{Delivery, Failure, Handler};
use service_runtime::context::CommandContext;

use crate::adapters::provider::PaymentProvider;
use crate::app::{Error, Payouts};
use crate::domain::{State, Step};

pub struct SagaFeed<P> {
    payouts: Payouts<P>,
}

impl<P: PaymentProvider> SagaFeed<P> {
    pub fn new(payouts: Payouts<P>) -> Self {
        Self { payouts }
    }
}

fn sort(error: Error) -> Failure {
    match error {
        Error::Unavailable(e) | Error::Internal(e) => Failure::Transient(e),
        other => Failure::Rejected(other.to_string()),
    }
}

/// The type name of the reserve command this service sends.
fn reserve_command_type() -> &'static str {
    Command::Reserve(Default::default()).message_type()
}

impl<P: PaymentProvider> Handler for SagaFeed<P> {
    async fn handle(&self, delivery: &Delivery) -> Result<(), Failure> {
        let envelope = CommissionEvent::decode(delivery.payload.as_slice())
            .map_err(|e| Failure::Rejected(format!("not a commission event envelope: {e}")))?;
        let (payout_id, step, reason) = match envelope.event {
            Some(Event::CommissionReserved(e)) => {
                (e.reservation.map(|r| r.payout_id), Step::Reserved, None)
            }
            Some(Event::CommissionRejected(e)) if !e.payout_id.is_empty() => (
                Some(e.payout_id),
                Step::ReservationRefused,
                Some(format!("{}: {}", e.reason, e.message)),
            ),
            Some(Event::CommissionSettled(e)) => {
                (e.reservation.map(|r| r.payout_id), Step::Settled, None)
            }
            Some(Event::CommissionReleased(e)) => {
                (e.reservation.map(|r| r.payout_id), Step::Released, None)
            }
            // The rejection is keyed by the command's target: the payout.
            Some(Event::CommandRejected(e)) if e.command_type == reserve_command_type() => (
                envelope.metadata.as_ref().map(|m| m.aggregate_id.clone()),
                Step::ReservationRefused,
                Some(format!("{}: {}", e.code, e.reason)),
            ),
            _ => return Ok(()),
        };
        let Some(payout_id) = payout_id.and_then(|id| Uuid::parse_str(&id).ok()) else {
            return Err(Failure::Rejected(
                "commission event without a valid payout id".into(),
            ));
        };
        let metadata = envelope.metadata.unwrap_or_default();
        let ctx = CommandContext {
            idempotency_key: None,
            correlation_id: if metadata.correlation_id.is_empty() {
                CommandContext::new().correlation_id
            } else {
                metadata.correlation_id
            },
            causation_id: Some(delivery.message_id.clone()),
            traceparent: delivery.traceparent.clone(),
            tracestate: delivery.tracestate.clone(),
            issued_at: delivery.occurred_at,
        };
        let next = self
            .payouts
            .apply_step(
                &ctx,
                &delivery.message_id,
                payout_id,
                step,
                reason.as_deref(),
            )
            .await
            .map_err(sort)?;
        if next == Some(State::Processing) {
            // The payment itself: if it fails now (provider down, crash), the resumer retries it.
            if let Err(e) = self
                .payouts
                .pay(payout_id, &delivery.message_id, Some(&ctx))
                .await
            {
                tracing::warn!(payout = %payout_id, error = %e, "payment not finished; the resumer will retry");
            }
        }
        Ok(())
    }
}
