//! The progress watchdog of one subscription: decides, from what the consumer loop sees, whether
//! the subscription is idle, busy, or stalled, and what to do about a stall. No I/O: the loop
//! feeds it observations and carries out its decisions, so every decision is unit-tested here.
//!
//! Progress is a message received or finished (acknowledged). A subscription is stalled when
//! messages wait (held by the process, or kept by the broker beyond what the process holds) and
//! no progress came for `stall_after`. What it does then depends on where the messages wait:
//!
//! - the process holds messages and runs transactions for them: the work is slow (lock waits, a
//!   database that does not answer). Every transaction is bounded by the batch time-out, so the
//!   watchdog only reports the stall (health NOT_SERVING) and lets the bounds act;
//! - the process holds messages but none runs or is due (no retry, no dead-lettering pending):
//!   nothing inside the process can move them, so it subscribes again (the broker redelivers
//!   every unacknowledged message to the new consumer and the inbox skips what was applied);
//! - the process has room and receives nothing: it asks the broker for the subscription's stats
//!   through the consumer's own connection (a probe). A probe that fails or does not answer, or
//!   one that shows messages the broker keeps beyond those the process holds, means the broker
//!   is not delivering to this consumer (pulsar-rs exposes no way to re-send permits or ask for
//!   redelivery of everything, so subscribing again is how the permits and the redelivery are
//!   requested anew): it subscribes again.

use std::time::{Duration, Instant};

/// How long nothing may arrive before the consumer's connection is pinged (a cheap liveness
/// check that runs whatever the backlog, as before the watchdog).
pub const QUIET: Duration = Duration::from_secs(5);

/// What the loop sees at one tick.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    /// Messages held: received and not yet finished (queued, running or waiting for a retry).
    pub held: usize,
    /// Transactions (or messages) running now.
    pub running: usize,
    /// Keys whose head may run now.
    pub ready: usize,
    /// Timers pending: retries due later and dead-letterings in flight.
    pub pending: usize,
    /// Whether the loop takes messages from the broker (it holds fewer than its maximum).
    pub receiving: bool,
    /// When the last message arrived (or the subscription was made).
    pub last_received: Instant,
    /// When the last progress came: a message received or finished.
    pub last_progress: Instant,
}

/// What the loop should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Ping the consumer's connection (nothing arrived for [`QUIET`]).
    CheckConnection,
    /// Ask the broker for the subscription's stats through the consumer and report the result
    /// with [`Watchdog::probed`].
    Probe,
    /// Subscribe again, for this reason.
    Resubscribe(String),
}

/// The broker's view of the subscription, from a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerView {
    /// Messages of the subscription not acknowledged yet (delivered or not).
    pub backlog: u64,
    /// Permits the broker holds for this consumer.
    pub permits: u64,
}

/// The watchdog's memory between ticks.
#[derive(Debug)]
pub struct Watchdog {
    stall_after: Duration,
    last_check: Instant,
    /// The last probe's answer and when it came, while the stall it was made for lasts; older
    /// than `stall_after`, it is asked again.
    probe: Option<(Instant, Result<BrokerView, String>)>,
}

impl Watchdog {
    pub fn new(stall_after: Duration, now: Instant) -> Self {
        Self {
            stall_after,
            last_check: now,
            probe: None,
        }
    }

    /// How long the subscription has been stalled at `now`: the time since its last progress
    /// while messages wait (held, or kept by the broker as the last probe showed); zero when it
    /// progresses within `stall_after` or nothing waits.
    pub fn stalled_for(&self, o: &Observation, now: Instant) -> Duration {
        let quiet = now.saturating_duration_since(o.last_progress);
        let broker_keeps = match &self.probe {
            Some((_, Ok(view))) => view.backlog > o.held as u64,
            Some((_, Err(_))) => true,
            None => false,
        };
        if quiet >= self.stall_after && (o.held > 0 || broker_keeps) {
            quiet
        } else {
            Duration::ZERO
        }
    }

    /// Decides what to do at `now`.
    pub fn decide(&mut self, o: &Observation, now: Instant) -> Action {
        let quiet = now.saturating_duration_since(o.last_progress);
        if quiet < self.stall_after {
            self.probe = None;
            return self.maybe_check(o, now);
        }
        let secs = quiet.as_secs();
        if !o.receiving || o.running > 0 || o.pending > 0 || o.ready > 0 {
            if o.held > 0 && o.running == 0 && o.ready == 0 && o.pending == 0 {
                return Action::Resubscribe(format!(
                    "{} messages held for {secs} s, none running, ready or due for a retry",
                    o.held
                ));
            }
            // Busy: bounded work will end, in progress or in failure; only reported.
            return Action::Nothing;
        }
        // Room to receive and nothing arrives: what does the broker say?
        if self
            .probe
            .as_ref()
            .is_none_or(|(when, _)| now.saturating_duration_since(*when) >= self.stall_after)
        {
            return Action::Probe;
        }
        match self.probe.as_ref().map(|(_, result)| result) {
            None => Action::Probe,
            Some(Err(error)) => Action::Resubscribe(format!(
                "no progress for {secs} s and the broker did not answer the consumer's stats request: {error}"
            )),
            Some(Ok(view)) if view.backlog > o.held as u64 => Action::Resubscribe(format!(
                "no progress for {secs} s while the broker keeps {} messages for the subscription \
                 ({} held here, {} permits)",
                view.backlog, o.held, view.permits
            )),
            Some(Ok(_)) if o.held > 0 => Action::Resubscribe(format!(
                "{} messages held for {secs} s, none running, ready or due for a retry",
                o.held
            )),
            // Nothing waits anywhere: idle, not stalled.
            Some(Ok(_)) => self.maybe_check(o, now),
        }
    }

    /// The result of the probe [`Watchdog::decide`] asked for.
    pub fn probed(&mut self, result: Result<BrokerView, String>, now: Instant) {
        self.probe = Some((now, result));
    }

    /// The subscription was made again: start afresh.
    pub fn reset(&mut self, now: Instant) {
        self.probe = None;
        self.last_check = now;
    }

    fn maybe_check(&mut self, o: &Observation, now: Instant) -> Action {
        let quiet_receive = now.saturating_duration_since(o.last_received);
        if o.receiving
            && quiet_receive >= QUIET
            && now.saturating_duration_since(self.last_check) >= QUIET
        {
            self.last_check = now;
            Action::CheckConnection
        } else {
            Action::Nothing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALL: Duration = Duration::from_secs(20);

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    /// Idle: nothing held, nothing running, receiving, last activity at `start`.
    fn idle(start: Instant) -> Observation {
        Observation {
            held: 0,
            running: 0,
            ready: 0,
            pending: 0,
            receiving: true,
            last_received: start,
            last_progress: start,
        }
    }

    #[test]
    fn a_quiet_subscription_pings_its_connection_every_quiet_period() {
        let start = Instant::now();
        let mut w = Watchdog::new(STALL, start);
        let o = idle(start);
        assert_eq!(w.decide(&o, at(start, 1)), Action::Nothing);
        assert_eq!(w.decide(&o, at(start, 5)), Action::CheckConnection);
        assert_eq!(
            w.decide(&o, at(start, 6)),
            Action::Nothing,
            "once per period"
        );
        assert_eq!(w.decide(&o, at(start, 10)), Action::CheckConnection);
        let full = Observation {
            receiving: false,
            held: 4000,
            running: 4,
            ..o
        };
        assert_eq!(
            w.decide(&full, at(start, 16)),
            Action::Nothing,
            "a loop that holds its maximum receives nothing by choice: no ping (the consumer's \
             engine waits for the loop to read, so a ping could not be answered)"
        );
    }

    #[test]
    fn slow_work_is_reported_as_a_stall_but_left_to_its_bounds() {
        let start = Instant::now();
        let mut w = Watchdog::new(STALL, start);
        let o = Observation {
            held: 4000,
            running: 4,
            ready: 28,
            receiving: false,
            ..idle(start)
        };
        assert_eq!(w.stalled_for(&o, at(start, 19)), Duration::ZERO);
        assert_eq!(w.decide(&o, at(start, 25)), Action::Nothing);
        assert_eq!(w.stalled_for(&o, at(start, 25)), Duration::from_secs(25));
        let retrying = Observation {
            running: 0,
            ready: 0,
            pending: 3,
            ..o
        };
        assert_eq!(
            w.decide(&retrying, at(start, 40)),
            Action::Nothing,
            "retries are due later"
        );
    }

    #[test]
    fn held_messages_that_nothing_can_move_are_redelivered() {
        let start = Instant::now();
        let mut w = Watchdog::new(STALL, start);
        let wedged = Observation {
            held: 8,
            receiving: false,
            ..idle(start)
        };
        assert_eq!(w.decide(&wedged, at(start, 19)), Action::Nothing);
        assert!(matches!(
            w.decide(&wedged, at(start, 21)),
            Action::Resubscribe(reason) if reason.starts_with("8 messages held for 21 s")
        ));
    }

    #[test]
    fn a_broker_that_keeps_messages_from_a_consumer_with_room_is_asked_then_left() {
        let start = Instant::now();
        let mut w = Watchdog::new(STALL, start);
        let o = Observation {
            held: 2,
            running: 0,
            ..idle(start)
        };
        assert_eq!(
            w.decide(&o, at(start, 21)),
            Action::Probe,
            "first ask the broker"
        );
        w.probed(
            Ok(BrokerView {
                backlog: 17_910,
                permits: 0,
            }),
            at(start, 21),
        );
        assert_eq!(w.stalled_for(&o, at(start, 22)), Duration::from_secs(22));
        assert!(matches!(
            w.decide(&o, at(start, 22)),
            Action::Resubscribe(reason) if reason.contains("keeps 17910 messages") && reason.contains("0 permits")
        ));
        w.reset(at(start, 22));
        let fresh = Observation {
            last_received: at(start, 22),
            last_progress: at(start, 22),
            held: 0,
            ..o
        };
        assert_eq!(w.decide(&fresh, at(start, 23)), Action::Nothing);
        assert_eq!(w.stalled_for(&fresh, at(start, 23)), Duration::ZERO);
    }

    #[test]
    fn a_probe_that_fails_means_subscribing_again() {
        let start = Instant::now();
        let mut w = Watchdog::new(STALL, start);
        let o = idle(start);
        assert_eq!(w.decide(&o, at(start, 30)), Action::Probe);
        w.probed(Err("no answer within 5s".into()), at(start, 30));
        assert!(
            w.stalled_for(&o, at(start, 31)) > Duration::ZERO,
            "unknown backlog counts as waiting"
        );
        assert!(matches!(
            w.decide(&o, at(start, 31)),
            Action::Resubscribe(reason) if reason.contains("did not answer")
        ));
    }

    #[test]
    fn an_empty_broker_is_idle_not_stalled() {
        let start = Instant::now();
        let mut w = Watchdog::new(STALL, start);
        let o = idle(start);
        assert_eq!(w.decide(&o, at(start, 60)), Action::Probe);
        w.probed(
            Ok(BrokerView {
                backlog: 0,
                permits: 1000,
            }),
            at(start, 60),
        );
        assert_eq!(w.stalled_for(&o, at(start, 61)), Duration::ZERO);
        assert_eq!(w.decide(&o, at(start, 61)), Action::CheckConnection);
        assert_eq!(w.decide(&o, at(start, 62)), Action::Nothing);
        let progress = Observation {
            last_progress: at(start, 63),
            last_received: at(start, 63),
            ..o
        };
        assert_eq!(w.decide(&progress, at(start, 64)), Action::Nothing);
        assert_eq!(
            w.decide(&o, at(start, 100)),
            Action::Probe,
            "progress forgot the old probe; a new stall asks again"
        );
        w.probed(
            Ok(BrokerView {
                backlog: 0,
                permits: 1000,
            }),
            at(start, 100),
        );
        assert_eq!(w.decide(&o, at(start, 110)), Action::CheckConnection);
        assert_eq!(
            w.decide(&o, at(start, 121)),
            Action::Probe,
            "an idle subscription asks again once its last answer is older than the stall time"
        );
    }
}
