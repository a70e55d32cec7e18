//! Applying a set of messages of different keys: one transaction for all of them when the
//! handler batches, otherwise one handler call each. Each message is processed in a span that
//! continues the trace of whoever wrote it (the relay's publish span).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::PgPool;
use tracing::Instrument as _;

use super::{Delivery, Failure, Handler, Item};

/// The span a message is processed in, as the child of its writer's context.
fn span(subscription: &str, delivery: &Delivery) -> tracing::Span {
    let topic = delivery.short_topic();
    let span = tracing::info_span!(
        "pulsar.consume",
        otel.name = %format!("{topic} process"),
        otel.kind = "consumer",
        messaging.system = "pulsar",
        messaging.destination = %topic,
        messaging.subscription = %subscription,
        message_id = %delivery.message_id,
        message_type = delivery.message_type.as_deref().unwrap_or("?"),
        correlation_id = delivery.correlation_id.as_deref().unwrap_or_default(),
    );
    service_runtime::telemetry::set_remote_parent(
        &span,
        delivery.traceparent.as_deref(),
        delivery.tracestate.as_deref(),
    );
    span
}

/// Logs (at debug) that a message was processed, inside its span, and records how long it took.
fn processed(
    subscription: &str,
    delivery: &Delivery,
    span: &tracing::Span,
    outcome: &Result<(), Failure>,
    started: Instant,
) {
    metrics::histogram!(
        "consumer_processing_seconds",
        "subscription" => subscription.to_owned(),
        "topic" => delivery.short_topic().to_owned()
    )
    .record(started.elapsed().as_secs_f64());
    span.in_scope(|| {
        tracing::debug!(
            ok = outcome.is_ok(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "message processed"
        );
    });
}

fn transient(context: &'static str) -> impl Fn(sqlx::Error) -> Failure {
    move |e| Failure::Transient(anyhow::Error::new(e).context(context))
}

/// Applies `items`: in one transaction if the handler batches, else one by one; all within
/// `limit`. Work still running at the limit is abandoned (a transaction rolls back as its
/// connection is dropped) and every message of it fails transiently, to be retried: a database
/// that stopped answering (frozen, or a lock held by a stuck session) turns into retries, never
/// into a loop waiting forever.
pub(super) async fn run<H: Handler>(
    handler: &H,
    subscription: &str,
    mut items: Vec<Item>,
    limit: Duration,
) -> Vec<(Item, Result<(), Failure>)> {
    let started = Instant::now();
    let count = items.len();
    let applied = tokio::time::timeout(limit, async {
        match handler.batch_pool() {
            Some(pool) => in_one_transaction(handler, pool, subscription, &mut items).await,
            None => one_by_one(handler, None, subscription, &items).await,
        }
    })
    .await;
    let outcomes = match applied {
        Ok(outcomes) => outcomes,
        Err(_) => {
            tracing::warn!(
                subscription,
                messages = count,
                "a batch did not finish within {limit:?}; abandoned, its messages are retried"
            );
            metrics::counter!("consumer_batch_timeouts_total", "subscription" => subscription.to_owned())
                .increment(1);
            (0..count)
                .map(|_| {
                    Err(Failure::Transient(anyhow::anyhow!(
                        "not finished within the batch time-out of {limit:?}"
                    )))
                })
                .collect()
        }
    };
    let labels = [("subscription", subscription.to_owned())];
    metrics::histogram!("consumer_batch_seconds", &labels).record(started.elapsed().as_secs_f64());
    metrics::histogram!("consumer_batch_messages", &labels).record(count as f64);
    items.into_iter().zip(outcomes).collect()
}

/// One transaction for every item, each applied by `handle_in` in ascending `order_key` (the
/// items are sorted so; the outcomes follow that order); a message that fails leaves no trace
/// in it (the handler's contract), the others commit together. If the shared transaction cannot
/// begin, is left unusable or fails to commit, it rolls back and each item is applied again in a
/// transaction of its own, so whatever broke it fails alone and the others are not retried (nor
/// dead-lettered) with it.
async fn in_one_transaction<H: Handler>(
    handler: &H,
    pool: &PgPool,
    subscription: &str,
    items: &mut [Item],
) -> Vec<Result<(), Failure>> {
    items.sort_by_cached_key(|item| handler.order_key(&item.delivery));
    let result: anyhow::Result<Vec<Result<(), Failure>>> = async {
        let mut tx = pool.begin().await.context("begin a batch")?;
        let deliveries: Vec<&Delivery> = items.iter().map(|item| &item.delivery).collect();
        match handler.lock_batch(&mut tx, &deliveries).await {
            Ok(()) => {}
            Err(Failure::Transient(e)) => return Err(e.context("lock the batch's shared rows")),
            Err(Failure::Rejected(reason)) => {
                anyhow::bail!("lock the batch's shared rows: {reason}")
            }
        }
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items.iter() {
            let delivery = &item.delivery;
            let (span, started) = (span(subscription, delivery), Instant::now());
            let outcome = match &delivery.identity_problem {
                Some(problem) => Err(handler.refuse(delivery, problem.clone()).await),
                None => {
                    handler
                        .handle_in(&mut tx, delivery)
                        .instrument(span.clone())
                        .await
                }
            };
            processed(subscription, delivery, &span, &outcome, started);
            outcomes.push(outcome);
        }
        // A statement that failed outside a savepoint aborts the transaction, and COMMIT of an
        // aborted transaction rolls back without an error: ask before trusting the commit.
        sqlx::query!("select 1 as ok")
            .fetch_one(&mut *tx)
            .await
            .context("the batch's transaction is unusable")?;
        tx.commit().await.context("commit a batch")?;
        Ok(outcomes)
    }
    .await;
    match result {
        Ok(outcomes) => outcomes,
        Err(error) => {
            tracing::warn!(
                subscription,
                messages = items.len(),
                error = format!("{error:#}"),
                "batch rolled back; applying its messages one by one"
            );
            one_by_one(handler, Some(pool), subscription, items).await
        }
    }
}

/// Applies `items` one at a time, each in its span: with `handle`, or, given the pool of a
/// batching handler, each in a transaction of its own. A message whose identity is wrong is
/// refused instead.
async fn one_by_one<H: Handler>(
    handler: &H,
    pool: Option<&PgPool>,
    subscription: &str,
    items: &[Item],
) -> Vec<Result<(), Failure>> {
    let mut outcomes = Vec::with_capacity(items.len());
    for item in items {
        let (span, started) = (span(subscription, &item.delivery), Instant::now());
        let outcome = match &item.delivery.identity_problem {
            Some(problem) => Err(handler.refuse(&item.delivery, problem.clone()).await),
            None => match pool {
                Some(pool) => {
                    alone(handler, pool, &item.delivery)
                        .instrument(span.clone())
                        .await
                }
                None => {
                    handler
                        .handle(&item.delivery)
                        .instrument(span.clone())
                        .await
                }
            },
        };
        processed(subscription, &item.delivery, &span, &outcome, started);
        outcomes.push(outcome);
    }
    outcomes
}

/// Applies one message of a batching handler in a transaction of its own.
pub(super) async fn alone<H: Handler + ?Sized>(
    handler: &H,
    pool: &PgPool,
    delivery: &Delivery,
) -> Result<(), Failure> {
    let mut tx = pool.begin().await.map_err(transient("begin"))?;
    let outcome = handler.handle_in(&mut tx, delivery).await;
    if matches!(outcome, Err(Failure::Transient(_))) {
        return outcome;
    }
    sqlx::query!("select 1 as ok")
        .fetch_one(&mut *tx)
        .await
        .map_err(transient("the transaction is unusable"))?;
    tx.commit().await.map_err(transient("commit"))?;
    outcome
}
