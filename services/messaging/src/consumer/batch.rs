//! Applying a set of messages of different keys: set-based in one transaction when the handler
//! applies sets (split in halves on failure), one transaction with a call per message when it
//! batches, otherwise one handler call each. Each message is processed in a span that
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
            Some(pool) if handler.applies_sets() => {
                in_sets(handler, pool, subscription, &items).await
            }
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

/// Applies `items` set-based ([`Handler::apply_set`]), in the order they came (a set takes its row
/// locks in its own global order, so the messages need no sorting): all of them in one
/// transaction; if that fails for a reason of its own (not the database being away or a lock
/// conflict, which retries them all), each half in a transaction of its own, halving again until
/// the message that breaks it stands alone and fails by itself (to be retried, refused or
/// dead-lettered by the loop's rules), while every other message commits once. No savepoint
/// per message: a batch that goes through costs a handful of statements whatever its size.
/// A message whose identity is wrong is refused first. Spans per message are made only for
/// messages whose writer's trace is sampled.
async fn in_sets<H: Handler>(
    handler: &H,
    pool: &PgPool,
    subscription: &str,
    items: &[Item],
) -> Vec<Result<(), Failure>> {
    let mut outcomes: Vec<Option<Result<(), Failure>>> = items.iter().map(|_| None).collect();
    let mut set = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match &item.delivery.identity_problem {
            Some(problem) => {
                outcomes[i] = Some(Err(handler.refuse(&item.delivery, problem.clone()).await));
            }
            None => set.push(i),
        }
    }
    let mut sets = vec![set];
    while let Some(set) = sets.pop() {
        if set.is_empty() {
            continue;
        }
        let started = Instant::now();
        let spans: Vec<Option<tracing::Span>> = set
            .iter()
            .map(|&i| {
                let delivery = &items[i].delivery;
                delivery
                    .traceparent
                    .as_deref()
                    .is_some_and(service_runtime::telemetry::is_sampled)
                    .then(|| span(subscription, delivery))
            })
            .collect();
        // A traced message reaches the handler as its processing span's child, so whatever it
        // causes (its outbox rows) continues the trace from that span.
        let traced: Vec<Option<Delivery>> = set
            .iter()
            .zip(&spans)
            .map(|(&i, span)| {
                let (traceparent, tracestate) =
                    service_runtime::telemetry::trace_headers_of(span.as_ref()?)?;
                Some(Delivery {
                    traceparent: Some(traceparent),
                    tracestate,
                    ..items[i].delivery.clone()
                })
            })
            .collect();
        let deliveries: Vec<&Delivery> = set
            .iter()
            .zip(&traced)
            .map(|(&i, traced)| traced.as_ref().unwrap_or(&items[i].delivery))
            .collect();
        match one_set(handler, pool, &deliveries).await {
            Ok(results) => {
                for ((&i, result), span) in set.iter().zip(results).zip(&spans) {
                    let delivery = &items[i].delivery;
                    if let Some(span) = span {
                        processed(subscription, delivery, span, &result, started);
                    }
                    outcomes[i] = Some(result);
                }
            }
            Err(failure) if set.len() == 1 => outcomes[set[0]] = Some(Err(failure)),
            // The database is away, or the set lost a lock conflict: no message is to blame, and
            // halves would only fail the same way. All of them are retried.
            Err(Failure::Transient(e)) if service_runtime::db::is_transient_cause(&e) => {
                let error = format!("{e:#}");
                tracing::warn!(
                    subscription,
                    messages = set.len(),
                    error,
                    "a batch failed on the database; its messages are retried"
                );
                for &i in &set {
                    outcomes[i] = Some(Err(Failure::Transient(anyhow::anyhow!("{error}"))));
                }
            }
            Err(failure) => {
                let error = match &failure {
                    Failure::Transient(e) => format!("{e:#}"),
                    Failure::Rejected(reason) => reason.clone(),
                };
                tracing::warn!(
                    subscription,
                    messages = set.len(),
                    error,
                    "a batch failed; applying its halves apart"
                );
                metrics::counter!("consumer_batch_splits_total", "subscription" => subscription.to_owned())
                    .increment(1);
                let (first, second) = set.split_at(set.len() / 2);
                sets.push(second.to_vec());
                sets.push(first.to_vec());
            }
        }
    }
    outcomes
        .into_iter()
        .map(|outcome| {
            outcome.unwrap_or_else(|| {
                Err(Failure::Transient(anyhow::anyhow!(
                    "the batch ended without this message's outcome"
                )))
            })
        })
        .collect()
}

/// One transaction applying `deliveries` with [`Handler::apply_set`]: its outcomes, or why the
/// whole set failed (it rolled back).
async fn one_set<H: Handler + ?Sized>(
    handler: &H,
    pool: &PgPool,
    deliveries: &[&Delivery],
) -> Result<Vec<Result<(), Failure>>, Failure> {
    let mut tx = pool.begin().await.map_err(transient("begin a batch"))?;
    let outcomes = handler.apply_set(&mut tx, deliveries).await?;
    if outcomes.len() != deliveries.len() {
        return Err(Failure::Transient(anyhow::anyhow!(
            "the handler gave {} outcomes for {} messages",
            outcomes.len(),
            deliveries.len()
        )));
    }
    tx.commit().await.map_err(transient("commit a batch"))?;
    Ok(outcomes)
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
    if handler.applies_sets() {
        return one_set(handler, pool, &[delivery])
            .await
            .and_then(|mut outcomes| outcomes.pop().unwrap_or(Ok(())));
    }
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
