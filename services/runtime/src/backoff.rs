//! Exponential back-off without jitter, from backon: the delay before the `attempt`-th retry
//! (from 1) is `first` doubled per earlier attempt, never more than `max`. The retry loops whose
//! schedule must be exact (the consumer's per-key redelivery delays, the relay's restarts, the
//! load generator, which adds its own jitter) take it from here; the broker reconnects add backon's
//! jitter (`messaging::reconnect_delays`).

use std::time::Duration;

use backon::BackoffBuilder as _;

/// A sequence of delays (an iterator of `Duration`s).
pub type Delays = backon::ExponentialBackoff;

/// The delays `first`, `2 × first`, `4 × first`, … capped at `max`, without end.
pub fn exponential(first: Duration, max: Duration) -> Delays {
    backon::ExponentialBuilder::new()
        .with_min_delay(first)
        .with_max_delay(max)
        .without_max_times()
        .build()
}

/// The delay before the `attempt`-th retry of [`exponential`]; attempt 0 counts as 1.
pub fn doubling(first: Duration, max: Duration, attempt: u32) -> Duration {
    let index = attempt.saturating_sub(1).min(16) as usize;
    exponential(first, max).nth(index).unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_first_delay_up_to_the_maximum() {
        let ms = |a| doubling(Duration::from_millis(200), Duration::from_secs(10), a).as_millis();
        assert_eq!(
            (0..=8).map(ms).collect::<Vec<_>>(),
            [200, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]
        );
        assert_eq!(ms(u32::MAX), 10_000, "no overflow");
    }
}
