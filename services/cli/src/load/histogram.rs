//! Latency distributions: an HDR histogram in microseconds, its percentiles, and a compact text
//! histogram on 1-2-5 bucket bounds.

use std::time::Duration;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde::Serialize;

/// The longest latency recorded exactly; longer ones count as this (one hour).
const HIGHEST_MICROS: u64 = 3_600_000_000;

/// Recorded latencies.
#[derive(Debug, Clone)]
pub struct Latency {
    micros: Histogram<u64>,
}

/// Percentiles of a distribution, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// One bar of the text histogram: how many latencies were at most `le_ms` (and above the
/// previous bound).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bucket {
    pub le_ms: f64,
    pub count: u64,
}

impl Latency {
    /// An empty distribution from 1 µs to an hour at three significant digits.
    pub fn new() -> anyhow::Result<Self> {
        let micros = Histogram::new_with_bounds(1, HIGHEST_MICROS, 3)
            .context("create a latency histogram")?;
        Ok(Self { micros })
    }

    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.micros.saturating_record(micros.max(1));
    }

    pub fn summary(&self) -> Summary {
        let ms = |micros: u64| micros as f64 / 1000.0;
        if self.micros.is_empty() {
            return Summary {
                count: 0,
                p50_ms: 0.0,
                p90_ms: 0.0,
                p99_ms: 0.0,
                max_ms: 0.0,
                mean_ms: 0.0,
            };
        }
        Summary {
            count: self.micros.len(),
            p50_ms: ms(self.micros.value_at_quantile(0.50)),
            p90_ms: ms(self.micros.value_at_quantile(0.90)),
            p99_ms: ms(self.micros.value_at_quantile(0.99)),
            max_ms: ms(self.micros.max()),
            mean_ms: self.micros.mean() / 1000.0,
        }
    }

    /// Counts per 1-2-5 bound (100 µs, 200 µs, 500 µs, 1 ms, …), from the first bucket that holds
    /// a latency to the last.
    pub fn buckets(&self) -> Vec<Bucket> {
        let bounds = bounds_micros();
        let mut counts = vec![0u64; bounds.len()];
        for value in self.micros.iter_recorded() {
            // The bottom of the value's equivalence range: a latency right on a bound stays in it.
            let micros = self.micros.lowest_equivalent(value.value_iterated_to());
            let slot = bounds
                .iter()
                .position(|&bound| micros <= bound)
                .unwrap_or(bounds.len() - 1);
            counts[slot] += value.count_at_value();
        }
        let first = counts.iter().position(|&c| c > 0);
        let last = counts.iter().rposition(|&c| c > 0);
        match (first, last) {
            (Some(first), Some(last)) => (first..=last)
                .map(|i| Bucket {
                    le_ms: bounds[i] as f64 / 1000.0,
                    count: counts[i],
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// 100 µs, 200 µs, 500 µs, 1 ms, 2 ms, 5 ms, … up to an hour.
fn bounds_micros() -> Vec<u64> {
    let mut bounds = Vec::new();
    let mut decade = 100u64;
    while decade < HIGHEST_MICROS {
        for step in [1, 2, 5] {
            bounds.push(decade * step);
        }
        decade *= 10;
    }
    bounds.push(HIGHEST_MICROS);
    bounds
}

/// A latency in milliseconds, written short: `850us`, `4.21ms`, `120ms`, `2.50s`.
pub fn format_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0}us", ms * 1000.0)
    } else if ms < 10.0 {
        format!("{ms:.2}ms")
    } else if ms < 100.0 {
        format!("{ms:.1}ms")
    } else if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{:.2}s", ms / 1000.0)
    }
}

/// The summary on one line: `p50 4.21ms  p90 7.90ms  p99 21.3ms  max 120ms`.
pub fn summary_line(summary: &Summary) -> String {
    if summary.count == 0 {
        return "no samples".to_owned();
    }
    format!(
        "p50 {}  p90 {}  p99 {}  max {}  ({} samples)",
        format_ms(summary.p50_ms),
        format_ms(summary.p90_ms),
        format_ms(summary.p99_ms),
        format_ms(summary.max_ms),
        summary.count
    )
}

/// One line per bucket: its bound, count, share and a bar scaled to the fullest bucket.
pub fn render(buckets: &[Bucket], width: usize) -> String {
    let total: u64 = buckets.iter().map(|b| b.count).sum();
    let fullest = buckets.iter().map(|b| b.count).max().unwrap_or(0);
    let mut out = String::new();
    for bucket in buckets {
        let bar = if fullest == 0 {
            0
        } else {
            // At least one mark for a bucket that holds anything.
            let scaled = (bucket.count as f64 / fullest as f64 * width as f64).round() as usize;
            if bucket.count > 0 { scaled.max(1) } else { 0 }
        };
        let share = if total == 0 {
            0.0
        } else {
            bucket.count as f64 * 100.0 / total as f64
        };
        out.push_str(&format!(
            "  <= {:>7} {:>8} {:>5.1}% {}\n",
            format_ms(bucket.le_ms),
            bucket.count,
            share,
            "#".repeat(bar)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(millis: impl IntoIterator<Item = u64>) -> Latency {
        let mut latency = Latency::new().unwrap();
        for ms in millis {
            latency.record(Duration::from_millis(ms));
        }
        latency
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b * 0.001 + 1e-9
    }

    #[test]
    fn percentiles_of_one_to_a_hundred_milliseconds() {
        let s = recorded(1..=100).summary();
        assert_eq!(s.count, 100);
        assert!(close(s.p50_ms, 50.0), "{s:?}");
        assert!(close(s.p90_ms, 90.0), "{s:?}");
        assert!(close(s.p99_ms, 99.0), "{s:?}");
        assert!(close(s.max_ms, 100.0), "{s:?}");
        assert!(close(s.mean_ms, 50.5), "{s:?}");
    }

    #[test]
    fn an_empty_distribution_has_zero_percentiles_and_no_buckets() {
        let empty = Latency::new().unwrap();
        assert_eq!(empty.summary().count, 0);
        assert_eq!(empty.summary().max_ms, 0.0);
        assert!(empty.buckets().is_empty());
        assert_eq!(summary_line(&empty.summary()), "no samples");
        assert_eq!(render(&[], 40), "");
    }

    #[test]
    fn buckets_run_from_the_first_to_the_last_filled_bound() {
        let buckets = recorded([3, 4, 4, 15, 900]).buckets();
        let bounds: Vec<f64> = buckets.iter().map(|b| b.le_ms).collect();
        assert_eq!(bounds, [5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]);
        let counts: Vec<u64> = buckets.iter().map(|b| b.count).collect();
        assert_eq!(counts, [3, 0, 1, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn bars_are_scaled_to_the_fullest_bucket_and_never_hide_a_sample() {
        let text = render(
            &[
                Bucket {
                    le_ms: 1.0,
                    count: 1,
                },
                Bucket {
                    le_ms: 2.0,
                    count: 1000,
                },
                Bucket {
                    le_ms: 5.0,
                    count: 0,
                },
            ],
            40,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with("  <=  1.00ms        1   0.1% #"),
            "{text}"
        );
        assert!(
            lines[1].ends_with(&format!(" {}", "#".repeat(40))),
            "{text}"
        );
        assert!(lines[1].contains(" 99.9% "), "{text}");
        assert!(lines[2].ends_with("0.0% "), "{text}");
    }

    #[test]
    fn latencies_are_written_short() {
        assert_eq!(format_ms(0.85), "850us");
        assert_eq!(format_ms(4.214), "4.21ms");
        assert_eq!(format_ms(21.34), "21.3ms");
        assert_eq!(format_ms(120.2), "120ms");
        assert_eq!(format_ms(2500.0), "2.50s");
    }

    #[test]
    fn a_latency_beyond_the_range_counts_as_the_highest() {
        let mut latency = Latency::new().unwrap();
        latency.record(Duration::from_secs(10 * 3600));
        latency.record(Duration::ZERO);
        assert_eq!(latency.summary().count, 2);
        assert!(latency.summary().max_ms >= 3_600_000.0);
    }
}
