//! A progress line on stderr once a second while sending and draining.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::lock;
use super::schedule::Schedule;
use super::tally::Tally;

/// Counts of the moment, as the progress line shows them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    pub elapsed: Duration,
    pub sent: u64,
    pub acknowledged: u64,
    pub failed: u64,
    pub retries: u64,
    pub commissions: u64,
    pub waiting: u64,
    /// Sends per second since the previous line, and the rate due now (none while draining).
    pub rate: f64,
    pub due: Option<f64>,
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{:>5.1}s] sent {}  acknowledged {}  failed {}  retries {}  commissions {} (waiting {})  rate {:.0}/s",
            self.elapsed.as_secs_f64(),
            self.sent,
            self.acknowledged,
            self.failed,
            self.retries,
            self.commissions,
            self.waiting,
            self.rate
        )?;
        match self.due {
            Some(due) => write!(f, " (due {due:.0}/s)"),
            None => write!(f, "  draining"),
        }
    }
}

/// Prints a [`Line`] every second from `start` until `stop`.
pub async fn every_second(
    tally: Arc<Mutex<Tally>>,
    schedule: Schedule,
    start: Instant,
    draining: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let (mut last_sent, mut last_at) = (0, start);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let now = Instant::now();
        let elapsed = now - start;
        let line = {
            let t = lock(&tally);
            let since = (now - last_at).as_secs_f64();
            let line = Line {
                elapsed,
                sent: t.sent,
                acknowledged: t.acknowledged,
                failed: t.failures(),
                retries: t.retries,
                commissions: t.commissions,
                waiting: t.outstanding(),
                rate: if since > 0.0 {
                    (t.sent - last_sent) as f64 / since
                } else {
                    0.0
                },
                due: (!draining.load(Ordering::Relaxed)).then(|| schedule.rate_at(elapsed)),
            };
            last_sent = t.sent;
            line
        };
        last_at = now;
        eprintln!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_shows_counts_rate_and_phase() {
        let mut line = Line {
            elapsed: Duration::from_secs(5),
            sent: 1000,
            acknowledged: 998,
            failed: 1,
            retries: 3,
            commissions: 950,
            waiting: 48,
            rate: 200.4,
            due: Some(200.0),
        };
        assert_eq!(
            line.to_string(),
            "[  5.0s] sent 1000  acknowledged 998  failed 1  retries 3  commissions 950 (waiting 48)  rate 200/s (due 200/s)"
        );
        line.due = None;
        assert!(line.to_string().ends_with("rate 200/s  draining"));
    }
}
