//! The send timetable: when each purchase is due, at a fixed rate or on a linear ramp, fixed
//! before the run starts so a slow server cannot slow the sending down (open loop).

use std::time::Duration;

/// How the rate moves over the run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    /// The same rate throughout (purchases per second).
    Fixed(f64),
    /// From `from` to `to` purchases per second, linearly over `over`.
    Ramp { from: f64, to: f64, over: Duration },
}

/// When each purchase of the run is due, and when the run ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    shape: Shape,
    duration: Option<Duration>,
    count: Option<u64>,
}

impl Schedule {
    /// `rate` per second until `duration` has passed or `count` purchases are due, whichever is
    /// first. The caller bounds it by at least one of the two.
    pub fn fixed(rate: f64, duration: Option<Duration>, count: Option<u64>) -> Self {
        Self {
            shape: Shape::Fixed(rate),
            duration,
            count,
        }
    }

    /// From `from` to `to` per second, linearly over `duration`, stopping early after `count`.
    pub fn ramp(from: f64, to: f64, duration: Duration, count: Option<u64>) -> Self {
        Self {
            shape: Shape::Ramp {
                from,
                to,
                over: duration,
            },
            duration: Some(duration),
            count,
        }
    }

    /// When purchase `i` (from 0) is due, from the start of the run; `None` once the run is over.
    pub fn send_at(&self, i: u64) -> Option<Duration> {
        if self.count.is_some_and(|count| i >= count) {
            return None;
        }
        let n = i as f64;
        let seconds = match self.shape {
            Shape::Fixed(rate) => n / rate,
            Shape::Ramp { from, to, over } => {
                // The number due by t is from·t + a·t² with a = (to − from) / 2T; solved for t
                // in the form that stays exact when a is (nearly) zero.
                let a = (to - from) / (2.0 * over.as_secs_f64());
                if i == 0 {
                    0.0
                } else if a.abs() < 1e-12 {
                    n / from
                } else {
                    2.0 * n / (from + (from * from + 4.0 * a * n).sqrt())
                }
            }
        };
        let within = self
            .duration
            .is_none_or(|duration| seconds < duration.as_secs_f64());
        (seconds.is_finite() && seconds >= 0.0 && within).then(|| Duration::from_secs_f64(seconds))
    }

    /// The rate due `elapsed` into the run (purchases per second).
    pub fn rate_at(&self, elapsed: Duration) -> f64 {
        match self.shape {
            Shape::Fixed(rate) => rate,
            Shape::Ramp { from, to, over } => {
                let progress = (elapsed.as_secs_f64() / over.as_secs_f64()).clamp(0.0, 1.0);
                from + (to - from) * progress
            }
        }
    }

    /// How many purchases the timetable holds.
    pub fn planned(&self) -> u64 {
        let by_time = self.duration.map(|duration| {
            let seconds = duration.as_secs_f64();
            let due = match self.shape {
                Shape::Fixed(rate) => rate * seconds,
                Shape::Ramp { from, to, .. } => (from + to) / 2.0 * seconds,
            };
            // The last slot strictly before the end, checked against `send_at` itself so the
            // two never disagree by a rounding step.
            let mut n = due.ceil().max(0.0) as u64;
            while n > 0 && self.send_at(n - 1).is_none() {
                n -= 1;
            }
            while self.send_at(n).is_some() {
                n += 1;
            }
            n
        });
        match (by_time, self.count) {
            (Some(t), Some(c)) => t.min(c),
            (Some(t), None) => t,
            (None, Some(c)) => c,
            (None, None) => u64::MAX,
        }
    }

    /// A one-line description, e.g. `200/s for 60s` or `50/s → 1000/s over 2m, at most 5000`.
    pub fn describe(&self) -> String {
        let rate = match self.shape {
            Shape::Fixed(rate) => format!("{rate}/s"),
            Shape::Ramp { from, to, .. } => format!("{from}/s -> {to}/s"),
        };
        let mut out = rate;
        if let Some(duration) = self.duration {
            let word = match self.shape {
                Shape::Fixed(_) => "for",
                Shape::Ramp { .. } => "over",
            };
            out.push_str(&format!(" {word} {}s", duration.as_secs_f64()));
        }
        if let Some(count) = self.count {
            out.push_str(&format!(", at most {count} purchases"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Option<Duration>) -> f64 {
        d.map_or(f64::NAN, |d| d.as_secs_f64())
    }

    #[test]
    fn a_fixed_rate_spaces_purchases_evenly_until_the_duration_ends() {
        let s = Schedule::fixed(50.0, Some(Duration::from_secs(3)), None);
        assert_eq!(s.send_at(0), Some(Duration::ZERO));
        assert!((secs(s.send_at(1)) - 0.02).abs() < 1e-9);
        assert!((secs(s.send_at(149)) - 2.98).abs() < 1e-9);
        assert_eq!(
            s.send_at(150),
            None,
            "the slot at exactly 3 s is past the end"
        );
        assert_eq!(s.planned(), 150);
    }

    #[test]
    fn a_count_ends_the_run_before_the_duration() {
        let s = Schedule::fixed(200.0, Some(Duration::from_secs(60)), Some(10));
        assert!(s.send_at(9).is_some());
        assert_eq!(s.send_at(10), None);
        assert_eq!(s.planned(), 10);
        let unbounded_in_time = Schedule::fixed(200.0, None, Some(100_000));
        assert!((secs(unbounded_in_time.send_at(99_999)) - 499.995).abs() < 1e-6);
        assert_eq!(unbounded_in_time.planned(), 100_000);
    }

    #[test]
    fn a_ramp_sends_the_area_under_its_rate_and_speeds_up_linearly() {
        let s = Schedule::ramp(100.0, 1000.0, Duration::from_secs(10), None);
        // (100 + 1000) / 2 × 10 s
        assert_eq!(s.planned(), 5500);
        assert_eq!(s.send_at(0), Some(Duration::ZERO));
        assert_eq!(s.send_at(5500), None);
        // Gaps shrink from 1/100 s to 1/1000 s.
        let gap = |i| secs(s.send_at(i + 1)) - secs(s.send_at(i));
        assert!((gap(0) - 0.01).abs() < 1e-4, "{}", gap(0));
        assert!((gap(5498) - 0.001).abs() < 1e-5, "{}", gap(5498));
        // Half way through time, the rate is half way too, and the area is 100·5 + 45·25 = 1625.
        assert!((s.rate_at(Duration::from_secs(5)) - 550.0).abs() < 1e-9);
        assert!((secs(s.send_at(1625)) - 5.0).abs() < 1e-6);
        assert!((s.rate_at(Duration::from_secs(99)) - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn a_ramp_down_and_a_flat_ramp_work_too() {
        let down = Schedule::ramp(1000.0, 100.0, Duration::from_secs(10), None);
        assert_eq!(down.planned(), 5500);
        let gap = |i| secs(down.send_at(i + 1)) - secs(down.send_at(i));
        assert!(gap(0) < gap(5000));
        let flat = Schedule::ramp(40.0, 40.0, Duration::from_secs(2), None);
        assert_eq!(flat.planned(), 80);
        assert!((secs(flat.send_at(40)) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn descriptions_name_the_shape_and_the_bounds() {
        assert_eq!(
            Schedule::fixed(200.0, Some(Duration::from_secs(60)), None).describe(),
            "200/s for 60s"
        );
        assert_eq!(
            Schedule::ramp(50.0, 1000.0, Duration::from_secs(120), Some(5000)).describe(),
            "50/s -> 1000/s over 120s, at most 5000 purchases"
        );
    }
}
