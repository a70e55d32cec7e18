//! The commission handlers: each validates its request, then decides inside one unit of work
//! (`service_runtime::unit_of_work`: the transaction or a batch's savepoint, the idempotency key,
//! the outbox): lock what changes, check the rule, write, and name the event. Both doors call
//! these.

pub mod calculate;
mod error;
pub mod lifecycle;
pub mod messages;
pub mod reverse;
pub mod statement;

use prost::Message;
use sqlx::{Acquire, PgPool, Postgres};
use uuid::Uuid;

use affiliate_proto::commission::{
    self as pb, CommissionRejected, CommissionReleased, CommissionReserved, CommissionSettled,
    commission_event::Event,
};
use affiliate_proto::common::Money;
use service_runtime::context::CommandContext;
use service_runtime::money::display;
use service_runtime::outbox::{self, Subject};
use service_runtime::paging::next_page_token;
use service_runtime::unit_of_work::{Decision, execute};
use service_runtime::validation::{
    FieldViolation, Violations, page_size, parse_id, parse_optional_id,
};

use crate::adapters::ledger::{self, TransferRow};
use crate::adapters::repository::{self as repo, BalanceRow, ReservationRow};
use crate::domain::ledger::{Account, Life, Movement, Transfer};
use crate::domain::{self, Refusal};
pub use calculate::Calculation;
pub use error::Error;

/// A positive amount in an upper-case three-letter currency.
fn parse_money(field: &str, money: Option<&Money>) -> Result<(i64, String), FieldViolation> {
    let Some(money) = money else {
        return Err(FieldViolation::new(field, "is required"));
    };
    if money.amount_minor <= 0 {
        return Err(FieldViolation::new(
            format!("{field}.amount_minor"),
            "must be a positive amount in minor units",
        ));
    }
    if !service_runtime::money::is_iso_4217(&money.currency) {
        return Err(FieldViolation::new(
            format!("{field}.currency"),
            "must be an ISO-4217 currency code in upper case",
        ));
    }
    Ok((money.amount_minor, money.currency.clone()))
}

/// An optional filter on a commission's life: empty for any, else one of the `status` column's
/// values.
fn life_filter(field: &str, value: &str) -> Result<Option<Life>, FieldViolation> {
    if value.is_empty() {
        return Ok(None);
    }
    Life::parse(value).map(Some).ok_or_else(|| {
        FieldViolation::new(
            field,
            "must be pending, approved, declined or reversed (or empty for all)",
        )
    })
}

/// Why an amount is out of range: adding it to (or multiplying it into) what is there would pass
/// the largest amount 64-bit minor units hold.
fn past_the_largest(what: &str, currency: &str) -> String {
    format!(
        "{what} would pass {}, the largest amount there can be",
        display(i64::MAX, currency)
    )
}

/// The `commission.rejected.v1` event of a refused command: `rejected` names what was refused
/// (the tracking event or the payout, and the creator); the refusal gives the reason. It is the
/// first and only event of `aggregate`, so its version is 1.
fn refused(
    ctx: &CommandContext,
    aggregate_type: &str,
    aggregate: Uuid,
    now: chrono::DateTime<chrono::Utc>,
    refusal: &Refusal,
    rejected: CommissionRejected,
) -> service_runtime::outbox::OutboxMessage {
    let rejected = CommissionRejected {
        reason: refusal.code().to_owned(),
        message: refusal.message().to_owned(),
        ..rejected
    };
    outbox::event::<pb::CommissionEvent>(
        ctx,
        Subject::new(aggregate_type, aggregate, 1),
        now,
        Event::CommissionRejected(rejected),
    )
}

/// The ledger transfer of a payout's reservation, release or settlement.
async fn payout_transfer(
    conn: &mut sqlx::PgConnection,
    reservation: &ReservationRow,
    movement: Movement,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), Error> {
    let creator = reservation.creator_id;
    let (debit, credit) = match movement {
        Movement::Reserve => (Account::Available(creator), Account::Reserved(creator)),
        Movement::Release => (Account::Reserved(creator), Account::Available(creator)),
        _ => (Account::Reserved(creator), Account::Paid(creator)),
    };
    let rows: Vec<TransferRow> = Transfer::of(movement, debit, credit, reservation.amount_minor)
        .map(|transfer| TransferRow {
            entry_id: Uuid::now_v7(),
            transfer,
            currency: reservation.currency.clone(),
            commission_id: None,
            payout_id: Some(reservation.payout_id),
            reference: None,
            at: now,
        })
        .into_iter()
        .collect();
    ledger::insert_transfers(conn, &rows).await?;
    Ok(())
}

/// The commission use cases over one database.
#[derive(Debug, Clone)]
pub struct Commissions {
    pool: PgPool,
}

impl Commissions {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Computes a purchase's commission and credits the creator, or records why it earns none.
    /// A campaign not known yet is an error to retry, not a rejection.
    pub async fn calculate(
        &self,
        ctx: &CommandContext,
        request: pb::CalculateCommissionRequest,
    ) -> Result<pb::CalculateCommissionResponse, Error> {
        self.calculate_on(&self.pool, ctx, request).await
    }

    /// [`Commissions::calculate`] on `db`: a pool (a transaction of its own) or a connection in
    /// a transaction (a savepoint in it), as a set of one ([`calculate::calculate_set`]).
    pub async fn calculate_on<'c>(
        &self,
        db: impl Acquire<'c, Database = Postgres>,
        ctx: &CommandContext,
        request: pb::CalculateCommissionRequest,
    ) -> Result<pb::CalculateCommissionResponse, Error> {
        let mut tx = db.begin().await?;
        // What it writes continues the trace from here (the call's span), as any command does.
        let mut ctx = ctx.clone();
        if let Some((traceparent, tracestate)) = service_runtime::telemetry::current_trace_headers()
        {
            (ctx.traceparent, ctx.tracestate) = (Some(traceparent), tracestate);
        }
        let set = [Calculation { ctx, request }];
        let response = match calculate::calculate_set(&mut tx, &set).await {
            Ok(mut outcomes) => outcomes.pop().unwrap_or_else(|| {
                Err(Error::Internal(anyhow::anyhow!(
                    "the calculation gave no outcome"
                )))
            })?,
            // A concurrent calculation of the same purchase committed first.
            Err(Error::Unavailable(e) | Error::Internal(e))
                if e.downcast_ref::<sqlx::Error>()
                    .is_some_and(|e| repo::violates(e, "commissions_tracking_event_id_key")) =>
            {
                return Err(Error::AlreadyExists(format!(
                    "tracking event {} already has a commission",
                    set[0].request.tracking_event_id
                )));
            }
            Err(e) => return Err(e),
        };
        tx.commit().await?;
        Ok(response)
    }

    /// Holds `amount` of the creator's available balance for a payout, spread over the oldest
    /// commissions; refused (with an event) if the balance is too small.
    pub async fn reserve(
        &self,
        ctx: &CommandContext,
        request: pb::ReserveCommissionRequest,
    ) -> Result<pb::ReserveCommissionResponse, Error> {
        self.reserve_on(&self.pool, ctx, request).await
    }

    /// [`Commissions::reserve`] on `db` (a pool, or a connection in a transaction).
    pub async fn reserve_on<'c>(
        &self,
        db: impl Acquire<'c, Database = Postgres>,
        ctx: &CommandContext,
        request: pb::ReserveCommissionRequest,
    ) -> Result<pb::ReserveCommissionResponse, Error> {
        let mut v = Violations::new();
        let payout_id = v.check(parse_id("payout_id", &request.payout_id));
        let creator_id = v.check(parse_id("creator_id", &request.creator_id));
        let amount = v.check(parse_money("amount", request.amount.as_ref()));
        let (payout_id, creator_id, (amount, currency)) = v.finish(
            payout_id
                .zip(creator_id)
                .zip(amount)
                .map(|((a, b), c)| (a, b, c)),
        )?;

        execute(db, ctx, "commission.reserve", &request, async |tx| {
            if repo::lock_reservation(tx, payout_id).await?.is_some() {
                return Err(Error::AlreadyExists(format!(
                    "payout {payout_id} already has a reservation"
                )));
            }
            let balance = repo::lock_balance(tx, creator_id, &currency).await?;
            let now = messages::now();
            if balance.available_minor < amount {
                let refusal = Refusal::InsufficientBalance;
                let rejected = CommissionRejected {
                    payout_id: payout_id.to_string(),
                    creator_id: creator_id.to_string(),
                    ..Default::default()
                };
                let event = refused(ctx, messages::RESERVATION, payout_id, now, &refusal, rejected);
                let response = pb::ReserveCommissionResponse {
                    reservation: None,
                    balance: Some(messages::balance(&balance)),
                    rejection: refusal.code().to_owned(),
                };
                return Ok(Decision::with(response, event));
            }
            let overflow = || {
                Error::out_of_range(
                    "amount.amount_minor",
                    past_the_largest("the creator's reserved balance", &currency),
                )
            };
            if balance.reserved_minor.checked_add(amount).is_none() {
                return Err(overflow());
            }
            let open = repo::open_commissions(tx, creator_id, &currency).await?;
            let allocations = domain::allocate(amount, &open).ok_or_else(|| {
                Error::Internal(anyhow::anyhow!(
                    "balance of creator {creator_id} says {} {currency} available but its commissions hold less",
                    balance.available_minor
                ))
            })?;
            let reservation =
                repo::insert_reservation(tx, payout_id, creator_id, &currency, amount, now)
                    .await?;
            repo::insert_allocations(tx, payout_id, &allocations).await?;
            payout_transfer(tx, &reservation, Movement::Reserve, now).await?;
            let balance = repo::adjust_balance(tx, creator_id, &currency, -amount, amount, 0)
                .await
                .map_err(|e| match Error::from(e) {
                    Error::OutOfRange(_) => overflow(),
                    other => other,
                })?;
            let (reservation, balance) = (
                messages::reservation(&reservation),
                messages::balance(&balance),
            );
            let event = Event::CommissionReserved(CommissionReserved {
                reservation: Some(reservation.clone()),
                balance: Some(balance.clone()),
            });
            let event = outbox::event::<pb::CommissionEvent>(ctx, Subject::new(messages::RESERVATION, payout_id, 1), now, event);
            let response = pb::ReserveCommissionResponse {
                reservation: Some(reservation),
                balance: Some(balance),
                rejection: String::new(),
            };
            Ok(Decision::with(response, event))
        })
        .await
    }

    /// Gives a payout's reservation back to the available balance (saga compensation).
    pub async fn release(
        &self,
        ctx: &CommandContext,
        request: pb::ReleaseCommissionRequest,
    ) -> Result<pb::ReleaseCommissionResponse, Error> {
        self.release_on(&self.pool, ctx, request).await
    }

    /// [`Commissions::release`] on `db` (a pool, or a connection in a transaction).
    pub async fn release_on<'c>(
        &self,
        db: impl Acquire<'c, Database = Postgres>,
        ctx: &CommandContext,
        request: pb::ReleaseCommissionRequest,
    ) -> Result<pb::ReleaseCommissionResponse, Error> {
        let (reservation, balance) = self
            .end_reservation(
                db,
                ctx,
                "commission.release",
                &request,
                &request.payout_id,
                false,
            )
            .await?;
        Ok(pb::ReleaseCommissionResponse {
            reservation: Some(reservation),
            balance: Some(balance),
        })
    }

    /// Marks a payout's reservation paid.
    pub async fn settle(
        &self,
        ctx: &CommandContext,
        request: pb::SettleCommissionRequest,
    ) -> Result<pb::SettleCommissionResponse, Error> {
        self.settle_on(&self.pool, ctx, request).await
    }

    /// [`Commissions::settle`] on `db` (a pool, or a connection in a transaction).
    pub async fn settle_on<'c>(
        &self,
        db: impl Acquire<'c, Database = Postgres>,
        ctx: &CommandContext,
        request: pb::SettleCommissionRequest,
    ) -> Result<pb::SettleCommissionResponse, Error> {
        let (reservation, balance) = self
            .end_reservation(
                db,
                ctx,
                "commission.settle",
                &request,
                &request.payout_id,
                true,
            )
            .await?;
        Ok(pb::SettleCommissionResponse {
            reservation: Some(reservation),
            balance: Some(balance),
        })
    }

    /// Release (`paid == false`) or settle (`paid == true`) a reservation. Repeating the same end
    /// is answered with the current state and changes nothing; the other end is refused.
    async fn end_reservation<'c, Req: Message>(
        &self,
        db: impl Acquire<'c, Database = Postgres>,
        ctx: &CommandContext,
        operation: &'static str,
        request: &Req,
        payout_id: &str,
        paid: bool,
    ) -> Result<(pb::Reservation, pb::Balance), Error> {
        let payout_id = parse_id("payout_id", payout_id)?;
        // One stored response shape for both ends (they carry the same fields).
        let response: pb::SettleCommissionResponse =
            execute(db, ctx, operation, request, async |tx| {
                let current = repo::lock_reservation(tx, payout_id)
                    .await?
                    .ok_or_else(|| Error::NotFound {
                        what: "reservation of payout",
                        id: payout_id.to_string(),
                    })?;
                let (target, other) = if paid {
                    ("settled", "released")
                } else {
                    ("released", "settled")
                };
                if current.status == target {
                    let balance = repo::find_balance(tx, current.creator_id, &current.currency)
                        .await?
                        .unwrap_or_default();
                    return Ok(Decision::answer(pb::SettleCommissionResponse {
                        reservation: Some(messages::reservation(&current)),
                        balance: Some(messages::balance(&balance)),
                    }));
                }
                if current.status == other {
                    return Err(Error::Precondition(format!(
                        "the reservation of payout {payout_id} is already {other}"
                    )));
                }
                let locked = repo::lock_balance(tx, current.creator_id, &current.currency).await?;
                let amount = current.amount_minor;
                let (credited, to) = if paid {
                    (locked.paid_minor, "paid")
                } else {
                    (locked.available_minor, "available")
                };
                let overflow = || {
                    Error::out_of_range(
                        "payout_id",
                        past_the_largest(
                            &format!(
                                "the creator's {to} balance plus the reservation of {}",
                                display(amount, &current.currency)
                            ),
                            &current.currency,
                        ),
                    )
                };
                if credited.checked_add(amount).is_none() {
                    return Err(overflow());
                }
                repo::unreserve_allocations(tx, payout_id, paid).await?;
                let (available, paid_delta) = if paid { (0, amount) } else { (amount, 0) };
                let balance = repo::adjust_balance(
                    tx,
                    current.creator_id,
                    &current.currency,
                    available,
                    -amount,
                    paid_delta,
                )
                .await
                .map_err(|e| match Error::from(e) {
                    Error::OutOfRange(_) => overflow(),
                    other => other,
                })?;
                let now = messages::now();
                let row: ReservationRow =
                    repo::finish_reservation(tx, payout_id, target, now).await?;
                let movement = if paid {
                    Movement::Settle
                } else {
                    Movement::Release
                };
                payout_transfer(tx, &row, movement, now).await?;
                let (reservation, balance) =
                    (messages::reservation(&row), messages::balance(&balance));
                let event = if paid {
                    Event::CommissionSettled(CommissionSettled {
                        reservation: Some(reservation.clone()),
                        balance: Some(balance.clone()),
                    })
                } else {
                    Event::CommissionReleased(CommissionReleased {
                        reservation: Some(reservation.clone()),
                        balance: Some(balance.clone()),
                    })
                };
                let event = outbox::event::<pb::CommissionEvent>(
                    ctx,
                    Subject::new(messages::RESERVATION, payout_id, row.version),
                    now,
                    event,
                );
                let response = pb::SettleCommissionResponse {
                    reservation: Some(reservation),
                    balance: Some(balance),
                };
                Ok(Decision::with(response, event))
            })
            .await?;
        Ok((
            response.reservation.unwrap_or_default(),
            response.balance.unwrap_or_default(),
        ))
    }

    pub async fn get_commission(
        &self,
        request: pb::GetCommissionRequest,
    ) -> Result<pb::GetCommissionResponse, Error> {
        let id = parse_id("commission_id", &request.commission_id)?;
        let mut conn = self.pool.acquire().await?;
        let row = repo::find_commission(&mut conn, id)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "commission",
                id: id.to_string(),
            })?;
        Ok(pb::GetCommissionResponse {
            commission: Some(messages::commission(&row)),
        })
    }

    pub async fn list_commissions(
        &self,
        request: pb::ListCommissionsRequest,
    ) -> Result<pb::ListCommissionsResponse, Error> {
        let mut v = Violations::new();
        let limit = v.check(page_size("page_size", request.page_size, 20, 100));
        let before = v.check(parse_optional_id("page_token", &request.page_token));
        let creator = v.check(parse_optional_id("creator_id", &request.creator_id));
        let campaign = v.check(parse_optional_id("campaign_id", &request.campaign_id));
        let life = v.check(life_filter("status", &request.status));
        let ((((limit, before), creator), campaign), life) =
            v.finish(limit.zip(before).zip(creator).zip(campaign).zip(life))?;
        let filter = repo::CommissionFilter {
            creator_id: creator,
            campaign_id: campaign,
            status: life.map(Life::code),
        };
        let mut conn = self.pool.acquire().await?;
        let mut rows = repo::list_commissions(&mut conn, &filter, before, limit + 1).await?;
        let next_page_token = next_page_token(&mut rows, limit, |r| r.id);
        Ok(pb::ListCommissionsResponse {
            commissions: rows.iter().map(messages::commission).collect(),
            next_page_token,
        })
    }

    pub async fn get_balance(
        &self,
        request: pb::GetBalanceRequest,
    ) -> Result<pb::GetBalanceResponse, Error> {
        let mut v = Violations::new();
        let creator_id = v.check(parse_id("creator_id", &request.creator_id));
        if !service_runtime::money::is_iso_4217(&request.currency) {
            v.push(FieldViolation::new(
                "currency",
                "must be an ISO-4217 currency code in upper case",
            ));
        }
        let creator_id = v.finish(creator_id)?;
        let mut conn = self.pool.acquire().await?;
        let row = repo::find_balance(&mut conn, creator_id, &request.currency)
            .await?
            .unwrap_or(BalanceRow {
                creator_id,
                currency: request.currency.clone(),
                ..BalanceRow::default()
            });
        Ok(pb::GetBalanceResponse {
            balance: Some(messages::balance(&row)),
        })
    }

    /// The pool, for the event consumers.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}
