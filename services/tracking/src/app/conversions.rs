//! Conversions reported server to server, and the postback keys that authenticate them.
//!
//! RecordConversion is idempotent on (advertiser, order id) by its own table, whatever door or
//! key it came with: a repeat answers the first conversion with `duplicate: true` and writes
//! nothing. An attributed conversion becomes a purchase through the same set handler as
//! CreateEvent (so `tracking_event.created.v1` and `commission.calculate.command.v1` follow as
//! for any purchase), in the same transaction, under the click's correlation id (the click id):
//! the audit trail shows click → conversion → commission → payout as one workflow.
//!
//! RefundConversion is idempotent on (advertiser, order id, refund id) by the `refunds` table's
//! key: the order's conversion is locked, so its refunds are applied one at a time against what
//! is left of the sale, and each sends `commission.reverse.command.v1` for the purchase in the
//! same transaction as its `conversion.refunded.v1`.

use std::collections::HashMap;

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use affiliate_proto::common::Money;
use affiliate_proto::tracking::{
    self as pb, ConversionRecorded, ConversionRefunded, ConversionReviewed,
    authenticate_postback_request::Credential, tracking_event_envelope::Event,
};
use service_runtime::context::CommandContext;
use service_runtime::group_commit::SetWriter;
use service_runtime::outbox::{self, Subject};
use service_runtime::unit_of_work::{Decision, execute, execute_set};
use service_runtime::validation::{FieldViolation, text};

use super::{Error, Tracking, create, messages};
use crate::adapters::conversions::{self as repo, ClickTarget};
use crate::domain::conversions::{
    self as rules, Attributed, NewConversion, NewRefund, RecordConversionInput, RefundInput,
};
use crate::domain::{self};

/// How far a signed postback's timestamp may be from this clock.
const SIGNATURE_SKEW_SECS: i64 = 300;
/// Longest decline reason, in characters.
const MAX_REASON: usize = 500;

fn unauthenticated() -> Error {
    Error::Unauthenticated("missing, unknown, revoked or wrongly signed postback credential".into())
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The context a conversion's messages carry: the caller's, continuing the click's workflow.
fn in_click_workflow(ctx: &CommandContext, click_id: Uuid) -> CommandContext {
    CommandContext {
        correlation_id: click_id.simple().to_string(),
        ..ctx.clone()
    }
}

/// The idempotency record's operation name of RecordConversion.
pub const OPERATION: &str = "tracking.record_conversion";

/// One RecordConversion command: the context it came with and its request.
pub type RecordConversion = (CommandContext, pb::RecordConversionRequest);

/// Checks a request in memory: the conversion it would record, or every problem.
pub fn validate(request: &pb::RecordConversionRequest) -> Result<NewConversion, Error> {
    Ok(rules::validate_conversion(
        RecordConversionInput {
            advertiser_id: &request.advertiser_id,
            click_id: &request.click_id,
            order_id: &request.order_id,
            amount: request
                .amount
                .as_ref()
                .map(|a| (a.amount_minor, a.currency.as_str())),
            converted_at: request
                .converted_at
                .as_ref()
                .and_then(service_runtime::time::from_timestamp),
        },
        messages::now(),
    )?)
}

/// What one conversion of a set comes to before it is written.
enum Planned {
    /// Answered already (invalid, refused, or a repeat of an order recorded before).
    Done(Box<Result<Decision<pb::RecordConversionResponse>, Error>>),
    /// A repeat of an order earlier in the same set: answered with that one's conversion.
    SameAs(usize),
    /// To insert, as `status`, with its purchase (credited) at `purchase` in the purchase set.
    Insert {
        new: NewConversion,
        target: ClickTarget,
        status: &'static str,
        reason: Option<String>,
        purchase: Option<usize>,
    },
}

/// Records the conversions of `set` in the caller's transaction, set-based: every known order
/// read in one query, every click in one, the credited ones' purchases through the CreateEvent
/// set handler in one set, every conversion inserted in one statement, read back in one, their
/// outbox rows appended in one. One outcome per command, in order.
pub async fn record_conversions(
    conn: &mut sqlx::PgConnection,
    attribution: &super::Attribution,
    set: &[RecordConversion],
) -> Result<Vec<Result<pb::RecordConversionResponse, Error>>, Error> {
    execute_set(conn, OPERATION, set, async |conn, run| {
        let now = messages::now();
        let valid: Vec<Result<NewConversion, Error>> =
            run.iter().map(|&i| validate(&set[i].1)).collect();
        let orders: Vec<(Uuid, String)> = valid
            .iter()
            .flatten()
            .map(|n| (n.advertiser_id, n.order_id.clone()))
            .collect();
        let known: HashMap<(Uuid, String), repo::ConversionRow> = if orders.is_empty() {
            HashMap::new()
        } else {
            repo::find_by_orders(conn, &orders)
                .await?
                .into_iter()
                .map(|row| ((row.advertiser_id, row.order_id.clone()), row))
                .collect()
        };
        let click_ids: Vec<Uuid> = valid.iter().flatten().map(|n| n.click_id).collect();
        let facts = if click_ids.is_empty() {
            HashMap::new()
        } else {
            repo::click_facts_many(conn, &click_ids).await?
        };
        let mut first_of_order: HashMap<(Uuid, String), usize> = HashMap::new();
        let mut purchases: Vec<create::CreateEvent> = Vec::new();
        let mut plans: Vec<Planned> = Vec::with_capacity(run.len());
        for (n, valid) in valid.into_iter().enumerate() {
            let new = match valid {
                Ok(new) => new,
                Err(e) => {
                    plans.push(Planned::Done(Box::new(Err(e))));
                    continue;
                }
            };
            let order = (new.advertiser_id, new.order_id.clone());
            if let Some(first) = known.get(&order) {
                plans.push(Planned::Done(Box::new(Ok(Decision::with_all(
                    duplicate(first),
                    [],
                )))));
                continue;
            }
            if let Some(&earlier) = first_of_order.get(&order) {
                plans.push(Planned::SameAs(earlier));
                continue;
            }
            let found = facts.get(&new.click_id);
            let plan = match plan_one(&new, found) {
                Err(e) => Planned::Done(Box::new(Err(e))),
                Ok((target, Attributed::Hold(why))) => Planned::Insert {
                    new,
                    target,
                    status: "held",
                    reason: Some(why),
                    purchase: None,
                },
                Ok((target, Attributed::Credit)) => {
                    let ctx = in_click_workflow(&set[run[n]].0, new.click_id);
                    purchases.push(purchase_request(&ctx, &new, target));
                    Planned::Insert {
                        new,
                        target,
                        status: "accepted",
                        reason: None,
                        purchase: Some(purchases.len() - 1),
                    }
                }
            };
            if matches!(plan, Planned::Insert { .. }) {
                first_of_order.insert(order, n);
            }
            plans.push(plan);
        }
        // The credited conversions' purchases, as one CreateEvent set (no keys of their own: the
        // conversion's order is what makes each happen once).
        let made = if purchases.is_empty() {
            Vec::new()
        } else {
            create::create_events(conn, attribution, &purchases).await?
        };
        let mut event_ids: Vec<Option<Uuid>> = Vec::with_capacity(made.len());
        for outcome in made {
            let response = outcome?;
            event_ids.push(
                response
                    .event
                    .as_ref()
                    .and_then(|e| Uuid::parse_str(&e.id).ok()),
            );
        }
        let mut ids: Vec<Option<Uuid>> = vec![None; plans.len()];
        let mut rows = Vec::new();
        for (n, plan) in plans.iter().enumerate() {
            if let Planned::Insert {
                new,
                target,
                status,
                reason,
                purchase,
            } = plan
            {
                let id = Uuid::now_v7();
                ids[n] = Some(id);
                rows.push(repo::ConversionInsert {
                    id,
                    new,
                    target: *target,
                    status,
                    tracking_event_id: purchase.and_then(|p| event_ids.get(p).copied().flatten()),
                    reason: reason.clone(),
                });
            }
        }
        if !rows.is_empty() {
            let inserted = repo::insert_conversions(conn, &rows, now).await?;
            if inserted.len() != rows.len() {
                // An order recorded by a concurrent call meanwhile: the set is rolled back (its
                // purchases with it) and written again one call at a time, which answers it as
                // the repeat it is.
                return Err(Error::Precondition(
                    "an order of the set was recorded concurrently".into(),
                ));
            }
        }
        let written: Vec<Uuid> = ids.iter().flatten().copied().collect();
        let read: HashMap<Uuid, repo::ConversionRow> = if written.is_empty() {
            HashMap::new()
        } else {
            repo::find_conversions(conn, &written)
                .await?
                .into_iter()
                .map(|row| (row.id, row))
                .collect()
        };
        let mut answers: Vec<Option<pb::Conversion>> = vec![None; plans.len()];
        let mut decisions = Vec::with_capacity(plans.len());
        for (n, plan) in plans.into_iter().enumerate() {
            let decision = match plan {
                Planned::Done(done) => *done,
                Planned::SameAs(earlier) => match &answers[earlier] {
                    Some(conversion) => Ok(Decision::with_all(
                        pb::RecordConversionResponse {
                            conversion: Some(conversion.clone()),
                            duplicate: true,
                        },
                        [],
                    )),
                    None => Err(Error::Internal(anyhow::anyhow!(
                        "a repeat before its order"
                    ))),
                },
                Planned::Insert { .. } => {
                    let row = ids[n].and_then(|id| read.get(&id)).ok_or_else(|| {
                        Error::Internal(anyhow::anyhow!("a conversion was not read back"))
                    })?;
                    let conversion = messages::conversion(row);
                    answers[n] = Some(conversion.clone());
                    let ctx = in_click_workflow(&set[run[n]].0, row.click_id);
                    let recorded = outbox::event::<pb::TrackingEventEnvelope>(
                        &ctx,
                        Subject::new(messages::CONVERSION, row.id, row.version),
                        now,
                        Event::ConversionRecorded(ConversionRecorded {
                            conversion: Some(conversion.clone()),
                        }),
                    );
                    Ok(Decision::with(
                        pb::RecordConversionResponse {
                            conversion: Some(conversion),
                            duplicate: false,
                        },
                        recorded,
                    ))
                }
            };
            decisions.push(decision);
        }
        Ok(decisions)
    })
    .await
}

/// Attribution and the currency rule for one conversion: where it goes and whether it is
/// credited or held, or why it is refused.
fn plan_one(
    new: &NewConversion,
    found: Option<&(ClickTarget, rules::ClickFacts)>,
) -> Result<(ClickTarget, Attributed), Error> {
    let attributed =
        rules::attribute(new, found.map(|(_, f)| f)).map_err(|why| Error::Refused {
            reason: why.reason(),
            message: format!("conversion for order {}: {why}", new.order_id),
        })?;
    let Some((target, facts)) = found else {
        return Err(Error::Internal(anyhow::anyhow!(
            "attributed without a click"
        )));
    };
    if facts.currency.as_deref() != Some(new.amount.currency.as_str()) {
        return Err(Error::Invalid(vec![FieldViolation::new(
            "amount.currency",
            format!(
                "must be the campaign's currency ({})",
                facts.currency.as_deref().unwrap_or("unknown yet")
            ),
        )]));
    }
    Ok((*target, attributed))
}

/// The CreateEvent command of a credited conversion's purchase.
fn purchase_request(
    ctx: &CommandContext,
    new: &NewConversion,
    target: ClickTarget,
) -> create::CreateEvent {
    let request = pb::CreateEventRequest {
        campaign_id: target.campaign_id.to_string(),
        creator_id: target.creator_id.to_string(),
        kind: pb::TrackingEventKind::Purchase.into(),
        amount: Some(Money {
            amount_minor: new.amount.minor,
            currency: new.amount.currency.clone(),
        }),
        product_id: String::new(),
        occurred_at: Some(messages::timestamp(new.converted_at)),
    };
    let ctx = CommandContext {
        idempotency_key: None,
        ..ctx.clone()
    };
    (ctx, request)
}

/// The gRPC door's group commit: concurrent RecordConversion calls written as one set.
#[derive(Debug, Clone)]
pub struct ConversionWriter {
    pub attribution: super::Attribution,
}

impl SetWriter for ConversionWriter {
    type Item = RecordConversion;
    type Output = pb::RecordConversionResponse;
    const OPERATION: &'static str = OPERATION;

    fn key((ctx, _): &RecordConversion) -> Option<&str> {
        ctx.idempotency_key.as_deref()
    }

    async fn write_set(
        &self,
        conn: &mut sqlx::PgConnection,
        items: &[RecordConversion],
    ) -> Result<Vec<Result<pb::RecordConversionResponse, Error>>, Error> {
        record_conversions(conn, &self.attribution, items).await
    }
}

impl Tracking {
    /// Records a conversion (see the module's documentation and the RPC's): concurrent calls are
    /// written together ([`ConversionWriter`]); the answer comes once this one committed.
    pub async fn record_conversion(
        &self,
        ctx: &CommandContext,
        request: pb::RecordConversionRequest,
    ) -> Result<pb::RecordConversionResponse, Error> {
        validate(&request)?;
        let mut ctx = ctx.clone();
        if let Some((traceparent, tracestate)) = service_runtime::telemetry::current_trace_headers()
        {
            ctx.traceparent = Some(traceparent);
            ctx.tracestate = tracestate;
        }
        let traceparent = ctx.traceparent.clone();
        self.conversions.submit((ctx, request), traceparent).await
    }

    /// Records many RecordConversion commands in the caller's transaction (the command topic's
    /// door runs its batches so).
    pub async fn record_conversions(
        &self,
        conn: &mut sqlx::PgConnection,
        set: &[RecordConversion],
    ) -> Result<Vec<Result<pb::RecordConversionResponse, Error>>, Error> {
        record_conversions(conn, &self.attribution, set).await
    }

    /// Records a credited conversion's purchase through the CreateEvent set handler, in `tx`.
    async fn purchase(
        &self,
        tx: &mut sqlx::PgConnection,
        ctx: &CommandContext,
        new: &NewConversion,
        target: ClickTarget,
    ) -> Result<Uuid, Error> {
        let mut outcomes =
            create::create_events(tx, &self.attribution, &[purchase_request(ctx, new, target)])
                .await?;
        let response = outcomes
            .pop()
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("no purchase outcome")))??;
        response
            .event
            .as_ref()
            .and_then(|e| Uuid::parse_str(&e.id).ok())
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("a purchase without an id")))
    }

    /// Approves (a purchase follows) or declines a held conversion.
    pub async fn review_conversion(
        &self,
        ctx: &CommandContext,
        request: pb::ReviewConversionRequest,
    ) -> Result<pb::ReviewConversionResponse, Error> {
        self.review_conversion_in(&self.pool, ctx, request).await
    }

    pub async fn review_conversion_in<'c>(
        &self,
        db: impl sqlx::Acquire<'c, Database = sqlx::Postgres>,
        ctx: &CommandContext,
        request: pb::ReviewConversionRequest,
    ) -> Result<pb::ReviewConversionResponse, Error> {
        let mut v = domain::Violations::new();
        let id = v.check(domain::parse_id("conversion_id", &request.conversion_id));
        let advertiser = v.check(domain::parse_id("advertiser_id", &request.advertiser_id));
        let reason = v.check(text(
            "reason",
            &request.reason,
            MAX_REASON,
            !request.approve,
        ));
        let (id, advertiser, reason) = v.finish(match (id, advertiser, reason) {
            (Some(i), Some(a), Some(r)) => Some((i, a, r)),
            _ => None,
        })?;
        execute(
            db,
            ctx,
            "tracking.review_conversion",
            &request,
            async |tx| {
                let status = repo::lock_conversion(tx, id).await?;
                let row = match status {
                    Some(_) => repo::find_conversion(tx, id).await?,
                    None => None,
                }
                .filter(|row| row.advertiser_id == advertiser)
                .ok_or_else(|| Error::not_found("conversion", id))?;
                if row.status != "held" {
                    return Err(Error::Precondition(format!(
                        "conversion {id} is {}: only a held conversion is reviewed",
                        row.status
                    )));
                }
                let ctx = in_click_workflow(ctx, row.click_id);
                let reason = (!reason.is_empty()).then_some(reason.as_str());
                if request.approve {
                    let new = NewConversion {
                        advertiser_id: row.advertiser_id,
                        click_id: row.click_id,
                        order_id: row.order_id.clone(),
                        amount: domain::Amount {
                            minor: row.amount_minor,
                            currency: row.currency.clone(),
                        },
                        converted_at: row.converted_at,
                    };
                    let target = ClickTarget {
                        link_id: row.link_id,
                        campaign_id: row.campaign_id,
                        creator_id: row.creator_id,
                    };
                    let event_id = self.purchase(tx, &ctx, &new, target).await?;
                    repo::review(tx, id, "accepted", Some(event_id), reason).await?;
                } else {
                    repo::review(tx, id, "declined", None, reason).await?;
                }
                let row = repo::find_conversion(tx, id)
                    .await?
                    .ok_or_else(|| Error::not_found("conversion", id))?;
                let conversion = messages::conversion(&row);
                Ok(Decision::with(
                    pb::ReviewConversionResponse {
                        conversion: Some(conversion.clone()),
                    },
                    outbox::event::<pb::TrackingEventEnvelope>(
                        &ctx,
                        Subject::new(messages::CONVERSION, row.id, row.version),
                        messages::now(),
                        Event::ConversionReviewed(ConversionReviewed {
                            conversion: Some(conversion),
                        }),
                    ),
                ))
            },
        )
        .await
    }

    pub async fn get_conversion(
        &self,
        request: pb::GetConversionRequest,
    ) -> Result<pb::GetConversionResponse, Error> {
        let id = domain::parse_id("conversion_id", &request.conversion_id)?;
        let mut conn = self.pool.acquire().await?;
        let row = repo::find_conversion(&mut conn, id)
            .await?
            .ok_or_else(|| Error::not_found("conversion", id))?;
        Ok(pb::GetConversionResponse {
            conversion: Some(messages::conversion(&row)),
        })
    }

    /// Records a refund or chargeback of an accepted conversion's order (see the module's
    /// documentation and the RPC's).
    pub async fn refund_conversion(
        &self,
        ctx: &CommandContext,
        request: pb::RefundConversionRequest,
    ) -> Result<pb::RefundConversionResponse, Error> {
        self.refund_conversion_in(&self.pool, ctx, request).await
    }

    /// [`Tracking::refund_conversion`] on `db`: a pool (its own transaction) or a connection in a
    /// transaction (a savepoint in it, as the command door's sets run it).
    pub async fn refund_conversion_in<'c>(
        &self,
        db: impl sqlx::Acquire<'c, Database = sqlx::Postgres>,
        ctx: &CommandContext,
        request: pb::RefundConversionRequest,
    ) -> Result<pb::RefundConversionResponse, Error> {
        let new = validate_refund(&request)?;
        execute(db, ctx, REFUND_OPERATION, &request, async |tx| {
            refund(tx, ctx, &new).await
        })
        .await
    }

    // ---- postback keys ----

    /// A new key for an advertiser (at most two unrevoked); the secret is answered once.
    pub async fn create_postback_key(
        &self,
        ctx: &CommandContext,
        request: pb::CreatePostbackKeyRequest,
    ) -> Result<pb::CreatePostbackKeyResponse, Error> {
        let advertiser = domain::parse_id("advertiser_id", &request.advertiser_id)?;
        execute(
            &self.pool,
            ctx,
            "tracking.create_postback_key",
            &request,
            async |tx| {
                let mut bytes = [0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                let secret = format!(
                    "pbk_{}",
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
                );
                let row = repo::insert_key(
                    tx,
                    Uuid::now_v7(),
                    advertiser,
                    &secret,
                    &sha256_hex(&secret),
                    messages::now(),
                )
                .await?
                .ok_or_else(|| {
                    Error::Precondition(format!(
                        "advertiser {advertiser} has two postback keys already: revoke one first"
                    ))
                })?;
                Ok(Decision::with_all(
                    pb::CreatePostbackKeyResponse {
                        key: Some(messages::postback_key(&row)),
                        secret,
                    },
                    [],
                ))
            },
        )
        .await
    }

    pub async fn list_postback_keys(
        &self,
        request: pb::ListPostbackKeysRequest,
    ) -> Result<pb::ListPostbackKeysResponse, Error> {
        let advertiser = domain::parse_id("advertiser_id", &request.advertiser_id)?;
        let mut conn = self.pool.acquire().await?;
        let rows = repo::list_keys(&mut conn, advertiser).await?;
        Ok(pb::ListPostbackKeysResponse {
            keys: rows.iter().map(messages::postback_key).collect(),
        })
    }

    pub async fn revoke_postback_key(
        &self,
        request: pb::RevokePostbackKeyRequest,
    ) -> Result<pb::RevokePostbackKeyResponse, Error> {
        let mut v = domain::Violations::new();
        let advertiser = v.check(domain::parse_id("advertiser_id", &request.advertiser_id));
        let key = v.check(domain::parse_id("key_id", &request.key_id));
        let (advertiser, key) = v.finish(advertiser.zip(key))?;
        let mut conn = self.pool.acquire().await?;
        let row = repo::revoke_key(&mut conn, advertiser, key, messages::now())
            .await?
            .ok_or_else(|| Error::not_found("postback key", key))?;
        Ok(pb::RevokePostbackKeyResponse {
            key: Some(messages::postback_key(&row)),
        })
    }

    /// The advertiser a postback's credential belongs to.
    pub async fn authenticate_postback(
        &self,
        request: pb::AuthenticatePostbackRequest,
    ) -> Result<pb::AuthenticatePostbackResponse, Error> {
        let mut conn = self.pool.acquire().await?;
        let row = match request.credential {
            Some(Credential::Secret(secret))
                if secret.starts_with("pbk_") && secret.len() <= 64 =>
            {
                repo::key_by_secret(&mut conn, &sha256_hex(&secret)).await?
            }
            Some(Credential::Signature(s)) => {
                let Ok(key_id) = Uuid::parse_str(&s.key_id) else {
                    return Err(unauthenticated());
                };
                let skew = (chrono::Utc::now().timestamp() - s.timestamp).abs();
                let signed_ts = s
                    .signed
                    .split('&')
                    .any(|pair| pair == format!("ts={}", s.timestamp));
                if skew > SIGNATURE_SKEW_SECS || !signed_ts {
                    return Err(unauthenticated());
                }
                let key = repo::key_by_id(&mut conn, key_id).await?;
                key.filter(|k| signature_matches(&k.secret, &s.signed, &s.signature))
            }
            _ => None,
        };
        let row = row.ok_or_else(unauthenticated)?;
        Ok(pb::AuthenticatePostbackResponse {
            advertiser_id: row.advertiser_id.to_string(),
            key_id: row.id.to_string(),
        })
    }
}

/// The idempotency record's operation name of RefundConversion.
const REFUND_OPERATION: &str = "tracking.refund_conversion";

/// Checks a refund request in memory: the refund it would record, or every problem.
fn validate_refund(request: &pb::RefundConversionRequest) -> Result<NewRefund, Error> {
    Ok(rules::validate_refund(RefundInput {
        advertiser_id: &request.advertiser_id,
        order_id: &request.order_id,
        refund_id: &request.refund_id,
        amount: request
            .amount
            .as_ref()
            .map(|a| (a.amount_minor, a.currency.as_str())),
        kind: &request.kind,
        reason: &request.reason,
    })?)
}

/// RefundConversion's body: decides on the locked conversion of the order, records the refund
/// and names its two messages (the event, and the reverse command it causes).
async fn refund(
    tx: &mut sqlx::PgConnection,
    ctx: &CommandContext,
    new: &NewRefund,
) -> Result<Decision<pb::RefundConversionResponse>, Error> {
    let order = new.order_id.as_str();
    let row = match repo::lock_order(tx, new.advertiser_id, order).await? {
        Some(id) => repo::find_conversion(tx, id).await?,
        None => None,
    }
    .ok_or_else(|| Error::not_found("order", order))?;
    if row.status != "accepted" {
        let instead = if row.status == "held" {
            ": decline it instead"
        } else {
            ""
        };
        return Err(Error::Refused {
            reason: "CONVERSION_NOT_ACCEPTED",
            message: format!(
                "the conversion of order {order} is {}: there is no purchase to refund{instead}",
                row.status
            ),
        });
    }
    if let Some(first) = repo::find_refund(tx, new.advertiser_id, order, &new.refund_id).await? {
        let same = new
            .amount
            .as_ref()
            .is_none_or(|a| a.minor == first.amount_minor && a.currency == first.currency);
        if !same {
            return Err(Error::Refused {
                reason: "REFUND_ID_REUSED",
                message: format!(
                    "refund {} of order {order} was recorded for {} {} already: a refund id \
                     names one refund",
                    first.refund_id, first.amount_minor, first.currency
                ),
            });
        }
        return Ok(Decision::answer(pb::RefundConversionResponse {
            conversion: Some(messages::conversion(&row)),
            refund: Some(messages::refund(&first)),
            duplicate: true,
        }));
    }
    if let Some(amount) = &new.amount
        && amount.currency != row.currency
    {
        return Err(Error::Invalid(vec![FieldViolation::new(
            "amount.currency",
            format!("must be the conversion's currency ({})", row.currency),
        )]));
    }
    let left = row.amount_minor - row.refunded_minor;
    if left <= 0 {
        return Err(Error::Refused {
            reason: "ALREADY_REFUNDED",
            message: format!("order {order} is already refunded in full"),
        });
    }
    let amount_minor = match &new.amount {
        None => left,
        Some(a) if a.minor > left => {
            return Err(Error::Invalid(vec![FieldViolation::new(
                "amount.amount_minor",
                format!(
                    "must be at most {left}, what is left of the sale ({} of {} {} refunded \
                     already)",
                    row.refunded_minor, row.amount_minor, row.currency
                ),
            )]));
        }
        Some(a) => a.minor,
    };
    let now = messages::now();
    let recorded = repo::insert_refund(
        tx,
        repo::RefundInsert {
            conversion_id: row.id,
            advertiser_id: new.advertiser_id,
            order_id: order,
            refund_id: &new.refund_id,
            amount_minor,
            currency: &row.currency,
            kind: new.kind.as_str(),
            reason: new.reason.as_deref(),
        },
        now,
    )
    .await
    .map_err(refund_refused)?
    .ok_or_else(|| {
        // The conversion is locked, so only a bug gets here.
        Error::Internal(anyhow::anyhow!(
            "refund {} of order {order} appeared under the conversion's lock",
            new.refund_id
        ))
    })?;
    let row = repo::find_conversion(tx, row.id)
        .await?
        .ok_or_else(|| Error::not_found("order", order))?;
    let purchase = row.tracking_event_id.ok_or_else(|| {
        Error::Internal(anyhow::anyhow!(
            "an accepted conversion without its purchase"
        ))
    })?;
    let ctx = in_click_workflow(ctx, row.click_id);
    let conversion = messages::conversion(&row);
    let refund = messages::refund(&recorded);
    let refunded = outbox::event::<pb::TrackingEventEnvelope>(
        &ctx,
        Subject::new(messages::CONVERSION, row.id, row.version),
        now,
        Event::ConversionRefunded(ConversionRefunded {
            conversion: Some(conversion.clone()),
            refund: Some(refund.clone()),
        }),
    );
    let reverse = messages::reverse_command(&ctx, purchase, &recorded, refunded.message_id, now);
    Ok(Decision::with_all(
        pb::RefundConversionResponse {
            conversion: Some(conversion),
            refund: Some(refund),
            duplicate: false,
        },
        [refunded, reverse],
    ))
}

/// The constraint that keeps refunds within the sale, as the domain error it stands for (the
/// lock makes it unreachable; the check stays the last word).
fn refund_refused(error: sqlx::Error) -> Error {
    let within = error
        .as_database_error()
        .and_then(|e| e.constraint())
        .is_some_and(|c| c == "conversions_refunded_within_amount");
    if within {
        Error::Invalid(vec![FieldViolation::new(
            "amount.amount_minor",
            "must be at most what is left of the sale",
        )])
    } else {
        error.into()
    }
}

/// The first conversion of a repeated order, as a duplicate's answer.
fn duplicate(row: &repo::ConversionRow) -> pb::RecordConversionResponse {
    pb::RecordConversionResponse {
        conversion: Some(messages::conversion(row)),
        duplicate: true,
    }
}

/// Whether `signature` (hex) is HMAC-SHA256(secret, signed), compared in constant time.
pub fn signature_matches(secret: &str, signed: &str, signature: &str) -> bool {
    let Some(bytes) = hex(signature) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(signed.as_bytes());
    mac.verify_slice(&bytes).is_ok()
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_the_signed_query() {
        let secret = "pbk_test";
        let signed = "click_id=abc&order_id=1&amount=10.00&currency=EUR&key_id=k&ts=1750000000";
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
        mac.update(signed.as_bytes());
        let good: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(signature_matches(secret, signed, &good));
        assert!(!signature_matches("pbk_other", signed, &good));
        assert!(!signature_matches(
            secret,
            &signed.replace("10.00", "99.00"),
            &good
        ));
        assert!(!signature_matches(secret, signed, "zz"));
        assert!(!signature_matches(secret, signed, ""));
    }
}
