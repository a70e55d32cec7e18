//! Exponential back-off: the delay before the `attempt`-th retry (from 1) is `first` doubled per
//! earlier attempt, never more than `max`. One formula for every retry loop of the platform.

use std::time::Duration;

/// `first`, `2 × first`, `4 × first`, … capped at `max`; attempt 0 counts as 1.
pub fn doubling(first: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    first.saturating_mul(factor).min(max)
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
