//! When a failed delivery is tried again: a schedule of delays after each failed attempt (Svix's
//! by default), stretched by the receiver's `Retry-After` on 429 and 503 up to a ceiling. After the
//! last delay's attempt fails, the message has failed.

use std::time::Duration;

/// Svix's schedule: at once, then after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h.
pub const DEFAULT: &str = "0s,5s,5m,30m,2h,5h,10h,10h";

/// The delays before each retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// `delays[i]`: how long after attempt `i + 1` failed attempt `i + 2` is made.
    delays: Vec<Duration>,
    /// The longest wait a `Retry-After` may ask for.
    max_retry_after: Duration,
}

/// What happens to a delivery after an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Tried again after this long.
    RetryIn(Duration),
    /// Every retry spent: the message failed.
    GiveUp,
}

impl Schedule {
    pub fn new(delays: Vec<Duration>, max_retry_after: Duration) -> Self {
        Self {
            delays,
            max_retry_after,
        }
    }

    /// Parses `0s,5s,5m,...` (the first attempt is immediate and not listed: each entry is a
    /// retry). An empty string: no retries.
    pub fn parse(text: &str, max_retry_after: Duration) -> Result<Self, String> {
        let delays = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(service_runtime::config::parse_duration)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(delays, max_retry_after))
    }

    /// Attempts a message gets at most.
    pub fn max_attempts(&self) -> usize {
        self.delays.len() + 1
    }

    /// After attempt number `attempts` (from 1) failed, with the answer's `Retry-After` if any.
    pub fn after_failure(&self, attempts: u32, retry_after: Option<Duration>) -> Next {
        let index = usize::try_from(attempts)
            .unwrap_or(usize::MAX)
            .saturating_sub(1);
        match self.delays.get(index) {
            None => Next::GiveUp,
            Some(&delay) => {
                let asked = retry_after.map_or(Duration::ZERO, |d| d.min(self.max_retry_after));
                Next::RetryIn(delay.max(asked))
            }
        }
    }
}

/// A `Retry-After` header: delay-seconds or an HTTP date, as a wait from `now`.
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svix() -> Schedule {
        Schedule::parse(DEFAULT, Duration::from_secs(3600)).unwrap()
    }

    #[test]
    fn follows_the_schedule_then_gives_up() {
        let s = svix();
        assert_eq!(s.max_attempts(), 9);
        assert_eq!(s.after_failure(1, None), Next::RetryIn(Duration::ZERO));
        assert_eq!(
            s.after_failure(2, None),
            Next::RetryIn(Duration::from_secs(5))
        );
        assert_eq!(
            s.after_failure(3, None),
            Next::RetryIn(Duration::from_secs(300))
        );
        assert_eq!(
            s.after_failure(8, None),
            Next::RetryIn(Duration::from_secs(36_000))
        );
        assert_eq!(s.after_failure(9, None), Next::GiveUp);
    }

    #[test]
    fn retry_after_stretches_a_delay_up_to_the_ceiling_but_never_shortens_it() {
        let s = svix();
        assert_eq!(
            s.after_failure(1, Some(Duration::from_secs(30))),
            Next::RetryIn(Duration::from_secs(30))
        );
        assert_eq!(
            s.after_failure(3, Some(Duration::from_secs(1))),
            Next::RetryIn(Duration::from_secs(300))
        );
        assert_eq!(
            s.after_failure(1, Some(Duration::from_secs(86_400))),
            Next::RetryIn(Duration::from_secs(3600))
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
        assert_eq!(retry_after(&later, now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn schedules_parse_and_refuse_garbage() {
        assert_eq!(
            Schedule::parse("", Duration::ZERO).unwrap().max_attempts(),
            1
        );
        assert!(Schedule::parse("1s,x", Duration::ZERO).is_err());
    }
}
