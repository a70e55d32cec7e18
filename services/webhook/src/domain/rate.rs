//! Endpoints' rate limits as token buckets: an endpoint limited to `rate` messages a second has a
//! bucket of `rate` tokens (a burst of a second's worth) refilled at `rate` a second; each
//! delivery claimed for it takes one. An endpoint without a bucket has a full one, so buckets
//! are kept only while they are not full.

use std::collections::HashMap;
use std::time::Instant;

use uuid::Uuid;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.at = now;
    }
}

/// The buckets of the rate-limited endpoints that sent lately.
#[derive(Debug, Default)]
pub struct Buckets(HashMap<Uuid, Bucket>);

impl Buckets {
    /// The whole tokens each endpoint with a bucket has at `now` (the others' buckets are full);
    /// full buckets are dropped.
    pub fn available(&mut self, now: Instant) -> Vec<(Uuid, i32)> {
        let mut out = Vec::with_capacity(self.0.len());
        self.0.retain(|id, bucket| {
            bucket.refill(now);
            if bucket.tokens >= bucket.rate {
                return false;
            }
            // Within i32: a bucket holds at most its rate, itself an i32.
            #[allow(clippy::cast_possible_truncation)]
            out.push((*id, bucket.tokens.floor().max(0.0) as i32));
            true
        });
        out
    }

    /// Takes a token from `endpoint`'s bucket (of `rate` a second) at `now`; `rate` 0: no limit.
    pub fn take(&mut self, endpoint: Uuid, rate: i32, now: Instant) {
        if rate <= 0 {
            self.0.remove(&endpoint);
            return;
        }
        let rate = f64::from(rate);
        let bucket = self.0.entry(endpoint).or_insert(Bucket {
            rate,
            tokens: rate,
            at: now,
        });
        bucket.refill(now);
        bucket.rate = rate;
        bucket.tokens = bucket.tokens.min(rate) - 1.0;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_of_the_rate_then_the_rate() {
        let mut buckets = Buckets::default();
        let endpoint = Uuid::now_v7();
        let start = Instant::now();
        assert!(buckets.available(start).is_empty(), "full: no bucket");
        for _ in 0..4 {
            buckets.take(endpoint, 4, start);
        }
        assert_eq!(buckets.available(start), vec![(endpoint, 0)]);
        // a quarter of a second gives one token back, half a second two
        assert_eq!(
            buckets.available(start + Duration::from_millis(250)),
            vec![(endpoint, 1)]
        );
        assert_eq!(
            buckets.available(start + Duration::from_millis(500)),
            vec![(endpoint, 2)]
        );
        // full again after a second: forgotten
        assert!(buckets.available(start + Duration::from_secs(2)).is_empty());
    }

    #[test]
    fn a_changed_rate_applies_at_the_next_take_and_zero_lifts_it() {
        let mut buckets = Buckets::default();
        let endpoint = Uuid::now_v7();
        let start = Instant::now();
        buckets.take(endpoint, 10, start);
        buckets.take(endpoint, 2, start);
        assert_eq!(buckets.available(start), vec![(endpoint, 1)]);
        buckets.take(endpoint, 0, start);
        assert!(buckets.available(start).is_empty());
    }
}
