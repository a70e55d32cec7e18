//! `platform load`: a load generator against a running platform. It creates a campaign that
//! `--creators` creators accept, subscribes to `commission-events`, sends purchases on an
//! open-loop timetable (fixed rate or linear ramp) from concurrent clients, waits until every
//! acknowledged purchase has its commission, optionally pays every creator out, and reports
//! rates, latencies (acknowledgement and purchase → commission), missing and duplicate
//! commissions and the drain time, as text or JSON. It exits non-zero when a commission is missing.
//!
//! It does not wait for the commission service to learn of the new campaign before sending: a
//! calculation for a campaign it does not know yet is retried by the service itself, so at worst
//! the first commissions arrive a back-off later (and their latencies say so).

mod args;
mod clicks;
mod commissions;
mod cost;
mod driver;
mod histogram;
mod progress;
mod report;
mod retry;
mod schedule;
mod setup;
mod tally;
mod webhooks;
mod workflow;

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use affiliate_proto::common::Money;

pub use args::LoadArgs;
use report::{Commissions, Drain, Purchases, Report};
use setup::Run;
use tally::Tally;

/// The tally, even if a task panicked while holding it (its counts are still the best we have).
fn lock(tally: &Mutex<Tally>) -> MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the load; `stop` (Ctrl-C) ends sending and waiting early, and the report still prints.
pub async fn run(args: LoadArgs, stop: CancellationToken) -> anyhow::Result<()> {
    if args.mode == args::Mode::Clicks {
        return clicks::run(args, stop).await;
    }
    args.check()?;
    let schedule = args.schedule()?;
    let retry = args.retry();
    let run = Run::new();

    // Pulsar first: nothing is written to the platform when its events cannot be watched.
    let subscription = commissions::subscribe(&args.pulsar).await?;
    let clients = setup::connect(&args.services, args.workflow).await?;
    let mut campaign_ids = Vec::with_capacity(args.campaigns);
    for n in 0..args.campaigns {
        campaign_ids.push(setup::create_campaign(&clients, &args, &run, retry, n).await?);
    }
    let creators = setup::accept(
        &clients,
        &campaign_ids,
        args.creators,
        &run,
        retry,
        args.concurrency,
    )
    .await?;
    eprintln!(
        "{} {}, each accepted by {} creators; watching {}; sending {} ({} purchases)",
        if campaign_ids.len() == 1 {
            "campaign"
        } else {
            "campaigns"
        },
        campaign_ids.join(", "),
        creators.len(),
        subscription.topic(),
        schedule.describe(),
        schedule.planned()
    );

    let hooks = if args.webhooks > 0 {
        let hooks =
            webhooks::Hooks::start(&args.services.webhook, &creators, args.webhooks).await?;
        eprintln!(
            "{} webhook endpoints registered ({} per creator)",
            creators.len() * args.webhooks as usize,
            args.webhooks
        );
        Some(hooks)
    } else {
        None
    };
    let tally = Arc::new(Mutex::new(Tally::new()?));
    let changed = Arc::new(Notify::new());
    let mut watcher = tokio::spawn(commissions::watch(
        subscription,
        campaign_ids.iter().cloned().collect(),
        tally.clone(),
        changed.clone(),
    ));
    let draining = Arc::new(AtomicBool::new(false));
    let progress_stop = stop.child_token();
    let progress = tokio::spawn(progress::every_second(
        tally.clone(),
        schedule,
        Instant::now(),
        draining.clone(),
        progress_stop.clone(),
    ));

    let purchases = driver::Purchases {
        client: clients.tracking.clone(),
        run: run.clone(),
        campaign_ids: campaign_ids.clone(),
        creators: creators.clone(),
        amount: Money {
            amount_minor: args.amount_minor,
            currency: args.currency.clone(),
        },
        retry,
    };
    let cost_before = cost::Snapshot::take();
    let sending_ended = driver::drive(
        purchases,
        schedule,
        args.concurrency,
        tally.clone(),
        stop.clone(),
    )
    .await;
    draining.store(true, Ordering::Relaxed);
    let drain = drain(
        &tally,
        &changed,
        &mut watcher,
        sending_ended,
        args.drain_timeout,
        &stop,
    )
    .await;
    progress_stop.cancel();
    let _ = progress.await;
    // the deliveries of the last commissions are part of the run's cost
    let webhooks = match hooks {
        Some(hooks) => {
            let (commissions, last) = {
                let t = lock(&tally);
                (t.commissions, t.last_commission)
            };
            Some(
                hooks
                    .finish(commissions, last, args.webhooks, args.drain_timeout, &stop)
                    .await,
            )
        }
        None => None,
    };
    let cost = cost::between(&cost_before, &cost::Snapshot::take(), lock(&tally).sent);

    let payouts = if args.workflow && !stop.is_cancelled() {
        eprintln!("requesting a payout for every creator with a balance");
        Some(
            workflow::payouts(
                &clients,
                &run,
                retry,
                &creators,
                &args.currency,
                args.payout_timeout,
                &stop,
            )
            .await,
        )
    } else {
        None
    };
    watcher.abort();

    let mut report = build_report(
        &lock(&tally),
        &campaign_ids,
        &creators,
        &schedule,
        stop.is_cancelled(),
        drain,
        payouts,
    );
    report.cost = cost;
    report.webhooks = webhooks;
    let text = if args.json {
        report.json()? + "\n"
    } else {
        report.text()
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("write the report to stdout")?;
    let problems = report.problems();
    anyhow::ensure!(problems.is_empty(), "{}", problems.join("; "));
    Ok(())
}

/// Waits until every acknowledged purchase has its commission (or rejection), at most `timeout`
/// after the sending ended, or until `stop` or the watcher ends.
async fn drain(
    tally: &Mutex<Tally>,
    changed: &Notify,
    watcher: &mut JoinHandle<anyhow::Result<()>>,
    sending_ended: Instant,
    timeout: Duration,
    stop: &CancellationToken,
) -> Drain {
    let deadline = sending_ended + timeout;
    let ended = |drained: bool| {
        let t = lock(tally);
        let seconds = drained.then(|| {
            t.last_commission.map_or(0.0, |last| {
                last.saturating_duration_since(sending_ended).as_secs_f64()
            })
        });
        Drain {
            drained,
            seconds,
            timeout_seconds: timeout.as_secs_f64(),
            outstanding: t.outstanding(),
        }
    };
    loop {
        if lock(tally).outstanding() == 0 {
            return ended(true);
        }
        tokio::select! {
            () = changed.notified() => {}
            () = tokio::time::sleep_until(deadline) => return ended(false),
            () = stop.cancelled() => return ended(false),
            result = &mut *watcher => {
                let why = match result {
                    Ok(Ok(())) => "it ended".to_owned(),
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(e) => e.to_string(),
                };
                eprintln!("stopped watching commission-events: {why}");
                return ended(false);
            }
        }
    }
}

fn build_report(
    t: &Tally,
    campaign_ids: &[String],
    creators: &[String],
    schedule: &schedule::Schedule,
    interrupted: bool,
    drain: Drain,
    payouts: Option<report::Payouts>,
) -> Report {
    let send_seconds = match (t.first_send, t.last_send) {
        (Some(first), Some(last)) => (last - first).as_secs_f64(),
        _ => 0.0,
    };
    // n sends span n − 1 gaps.
    let achieved_rate = if t.sent > 1 && send_seconds > 0.0 {
        (t.sent - 1) as f64 / send_seconds
    } else {
        0.0
    };
    Report {
        campaign_id: campaign_ids.first().cloned().unwrap_or_default(),
        campaign_ids: campaign_ids.to_vec(),
        creators: creators.len(),
        schedule: schedule.describe(),
        planned: schedule.planned(),
        interrupted,
        purchases: Purchases {
            sent: t.sent,
            acknowledged: t.acknowledged,
            failed: t.failures(),
            failed_by_code: t
                .failed
                .iter()
                .map(|(code, n)| ((*code).to_owned(), *n))
                .collect(),
            retries: t.retries,
            late_sends: t.late,
            max_send_lag_ms: t.max_lag.as_secs_f64() * 1000.0,
        },
        send_seconds,
        achieved_rate,
        ack_latency: (&t.ack_latency).into(),
        commission_latency: (&t.commission_latency).into(),
        commissions: Commissions {
            calculated: t.commissions,
            missing: t.missing(),
            rejected: t.rejections,
            rejected_by_reason: t.rejection_reasons(),
            duplicates: t.duplicates,
            unacknowledged: t.unacknowledged(),
        },
        drain,
        payouts,
        cost: cost::Cost::default(),
        webhooks: None,
    }
}
