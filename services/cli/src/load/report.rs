//! The end-of-run report: what was sent and acknowledged, latencies, commissions missing or seen
//! twice, the drain, payouts; as text for people or as one JSON object for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::histogram::{self, Bucket, Latency, Summary};

/// Width of the longest histogram bar.
const BAR_WIDTH: usize = 40;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The first campaign (the only one unless `--campaigns`).
    pub campaign_id: String,
    /// Every campaign of the load.
    pub campaign_ids: Vec<String>,
    /// Creators, each of whom accepted every campaign.
    pub creators: usize,
    /// The timetable, e.g. `200/s for 60s`, and how many purchases it held.
    pub schedule: String,
    pub planned: u64,
    /// Whether the run was interrupted (Ctrl-C) before its end.
    pub interrupted: bool,
    pub purchases: Purchases,
    /// Seconds from the first send to the last.
    pub send_seconds: f64,
    /// Sends per second between the first send and the last.
    pub achieved_rate: f64,
    /// From just before a purchase's call to its acknowledgement, retries included. A send that
    /// no client was free to make in time counts from when it was due.
    pub ack_latency: LatencyReport,
    /// From the same start to the purchase's commission.calculated.v1 arriving.
    pub commission_latency: LatencyReport,
    pub commissions: Commissions,
    pub drain: Drain,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payouts: Option<Payouts>,
    /// CPU time of each platform process on this machine from the first send to the end of the
    /// drain, and per purchase sent.
    pub cost: super::cost::Cost,
    /// With --webhooks: what the load's endpoints received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<super::webhooks::WebhookReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Purchases {
    pub sent: u64,
    pub acknowledged: u64,
    pub failed: u64,
    pub failed_by_code: BTreeMap<String, u64>,
    pub retries: u64,
    /// Sends that started behind the timetable because no client was free to take them in time.
    pub late_sends: u64,
    pub max_send_lag_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyReport {
    #[serde(flatten)]
    pub summary: Summary,
    pub histogram: Vec<Bucket>,
}

impl From<&Latency> for LatencyReport {
    fn from(latency: &Latency) -> Self {
        Self {
            summary: latency.summary(),
            histogram: latency.buckets(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Commissions {
    /// Acknowledged purchases whose commission.calculated.v1 arrived.
    pub calculated: u64,
    /// Acknowledged purchases without one at the end (rejected ones included).
    pub missing: u64,
    /// Acknowledged purchases the commission service rejected, by reason.
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// commission.calculated.v1 events for a tracking event already seen.
    pub duplicates: u64,
    /// Commissions of the campaign for purchases the client never saw acknowledged.
    pub unacknowledged: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drain {
    /// Whether every acknowledged purchase had its commission (or rejection) in time.
    pub drained: bool,
    /// Seconds from the last send's end to the last commission (0 if none was left by then);
    /// absent when not drained.
    pub seconds: Option<f64>,
    pub timeout_seconds: f64,
    /// Acknowledged purchases still waiting when the drain ended.
    pub outstanding: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Payouts {
    pub requested: u64,
    /// Creators with nothing available to pay out.
    pub skipped_without_balance: u64,
    pub request_failed_by_code: BTreeMap<String, u64>,
    /// Requested payouts by their last status (PAYOUT_STATUS_…).
    pub by_status: BTreeMap<String, u64>,
    /// Requested payouts not in a terminal status when the wait ended.
    pub unfinished: u64,
    /// Seconds from the first request until every payout ended (or the wait did).
    pub seconds: f64,
}

impl Report {
    /// Whether every acknowledged purchase has its commission (and, with payouts, every payout
    /// ended): the run's exit status.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.commissions.missing > 0 {
            problems.push(format!(
                "{} acknowledged purchase(s) have no commission.calculated event",
                self.commissions.missing
            ));
        }
        if let Some(w) = &self.webhooks
            && w.delivered < w.expected
        {
            problems.push(format!(
                "{} of {} webhook messages were not delivered",
                w.expected - w.delivered,
                w.expected
            ));
        }
        if let Some(payouts) = &self.payouts
            && payouts.unfinished > 0
        {
            problems.push(format!(
                "{} payout(s) did not reach a terminal status",
                payouts.unfinished
            ));
        }
        problems
    }

    /// The report for people.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let p = &self.purchases;
        let c = &self.commissions;
        let _ = writeln!(
            out,
            "load on {} {}: {} creators, {} ({} planned){}",
            if self.campaign_ids.len() == 1 {
                "campaign"
            } else {
                "campaigns"
            },
            self.campaign_ids.join(", "),
            self.creators,
            self.schedule,
            self.planned,
            if self.interrupted {
                ", interrupted"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "purchases    sent {}  acknowledged {}  failed {}{}  retries {}",
            p.sent,
            p.acknowledged,
            p.failed,
            by_name(&p.failed_by_code),
            p.retries
        );
        let _ = writeln!(
            out,
            "send rate    {:.1}/s achieved over {:.2}s  late sends {} (at most {} behind)",
            self.achieved_rate,
            self.send_seconds,
            p.late_sends,
            histogram::format_ms(p.max_send_lag_ms)
        );
        for (name, latency) in [
            ("ack latency       ", &self.ack_latency),
            ("commission latency", &self.commission_latency),
        ] {
            let _ = writeln!(out, "{name} {}", histogram::summary_line(&latency.summary));
            out.push_str(&histogram::render(&latency.histogram, BAR_WIDTH));
        }
        let _ = writeln!(
            out,
            "commissions  calculated {}  missing {}  rejected {}{}  duplicates {}  for unacknowledged purchases {}",
            c.calculated,
            c.missing,
            c.rejected,
            by_name(&c.rejected_by_reason),
            c.duplicates,
            c.unacknowledged
        );
        let d = &self.drain;
        let _ = match d.seconds {
            Some(seconds) if d.drained => {
                writeln!(out, "drain        {seconds:.2}s after the last send")
            }
            _ => writeln!(
                out,
                "drain        not drained within {:.0}s: {} purchase(s) still waiting",
                d.timeout_seconds, d.outstanding
            ),
        };
        if let Some(payouts) = &self.payouts {
            let _ = writeln!(
                out,
                "payouts      requested {}{}  without balance {}  in {:.2}s: {}  unfinished {}",
                payouts.requested,
                match by_name(&payouts.request_failed_by_code) {
                    failed if failed.is_empty() => String::new(),
                    failed => format!("  refused{failed}"),
                },
                payouts.skipped_without_balance,
                payouts.seconds,
                listed(&payouts.by_status),
                payouts.unfinished
            );
        }
        if let Some(w) = &self.webhooks {
            let _ = writeln!(
                out,
                "webhooks     {} endpoints: delivered {} of {}  repeated {}  last {:.2}s after the last commission",
                w.endpoints, w.delivered, w.expected, w.repeated, w.lag_seconds
            );
            let _ = writeln!(
                out,
                "webhook latency    {}",
                histogram::summary_line(&w.latency.summary)
            );
        }
        if !self.cost.per_process.is_empty() {
            let each: Vec<String> = self
                .cost
                .per_process
                .iter()
                .map(|(name, c)| format!("{name} {:.2}", c.cpu_ms_per_purchase))
                .collect();
            let _ = writeln!(
                out,
                "cost         {:.2} CPU-ms per purchase ({:.0} CPU-ms in all): {}",
                self.cost.total_cpu_ms_per_purchase,
                self.cost.total_cpu_ms,
                each.join(", ")
            );
        }
        out
    }

    /// The report for scripts: one JSON object.
    pub fn json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string(self)?)
    }
}

/// `INTERNAL 1, UNAVAILABLE 2`.
fn listed(counts: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    parts.join(", ")
}

/// ` (INTERNAL 1, UNAVAILABLE 2)`, or nothing for no entries.
fn by_name(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        String::new()
    } else {
        format!(" ({})", listed(counts))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn report() -> Report {
        let mut ack = Latency::new().unwrap();
        let mut commission = Latency::new().unwrap();
        for ms in 1..=100 {
            ack.record(Duration::from_millis(ms));
            commission.record(Duration::from_millis(ms * 10));
        }
        Report {
            campaign_id: "c1".into(),
            campaign_ids: vec!["c1".into()],
            creators: 50,
            schedule: "50/s for 3s".into(),
            planned: 150,
            interrupted: false,
            purchases: Purchases {
                sent: 150,
                acknowledged: 148,
                failed: 2,
                failed_by_code: BTreeMap::from([("UNAVAILABLE".into(), 2)]),
                retries: 7,
                late_sends: 1,
                max_send_lag_ms: 12.5,
            },
            send_seconds: 2.98,
            achieved_rate: 50.0,
            ack_latency: (&ack).into(),
            commission_latency: (&commission).into(),
            commissions: Commissions {
                calculated: 148,
                missing: 0,
                rejected: 0,
                rejected_by_reason: BTreeMap::new(),
                duplicates: 0,
                unacknowledged: 1,
            },
            drain: Drain {
                drained: true,
                seconds: Some(0.42),
                timeout_seconds: 120.0,
                outstanding: 0,
            },
            payouts: None,
            cost: super::super::cost::Cost {
                per_process: BTreeMap::from([(
                    "relay".to_owned(),
                    super::super::cost::ProcessCost {
                        cpu_ms: 75.0,
                        cpu_ms_per_purchase: 0.5,
                    },
                )]),
                total_cpu_ms: 75.0,
                total_cpu_ms_per_purchase: 0.5,
            },
            webhooks: None,
        }
    }

    #[test]
    fn the_text_report_names_every_figure() {
        let text = report().text();
        for expected in [
            "load on campaign c1: 50 creators, 50/s for 3s (150 planned)",
            "cost         0.50 CPU-ms per purchase (75 CPU-ms in all): relay 0.50",
            "purchases    sent 150  acknowledged 148  failed 2 (UNAVAILABLE 2)  retries 7",
            "send rate    50.0/s achieved over 2.98s  late sends 1 (at most 12.5ms behind)",
            "ack latency        p50 50.0ms  p90 90.0ms  p99 99.0ms  max 100ms  (100 samples)",
            "commission latency p50 500ms  p90 900ms  p99 990ms  max 1.00s  (100 samples)",
            "commissions  calculated 148  missing 0  rejected 0  duplicates 0  for unacknowledged purchases 1",
            "drain        0.42s after the last send",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        // Both histograms: 1..=100 ms spreads over the ≤1 ms … ≤100 ms buckets.
        assert!(text.contains("  <=  1.00ms        1 "), "{text}");
        assert!(text.contains("  <=   100ms       50  50.0% "), "{text}");
        assert!(report().problems().is_empty());
    }

    #[test]
    fn missing_commissions_and_unfinished_payouts_are_problems() {
        let mut r = report();
        r.commissions.missing = 3;
        r.drain = Drain {
            drained: false,
            seconds: None,
            timeout_seconds: 120.0,
            outstanding: 3,
        };
        r.payouts = Some(Payouts {
            requested: 5,
            by_status: BTreeMap::from([
                ("PAYOUT_STATUS_COMPLETED".into(), 4),
                ("PAYOUT_STATUS_PROCESSING".into(), 1),
            ]),
            unfinished: 1,
            seconds: 2.5,
            ..Default::default()
        });
        let text = r.text();
        assert!(
            text.contains("drain        not drained within 120s: 3 purchase(s) still waiting"),
            "{text}"
        );
        assert!(
            text.contains("payouts      requested 5  without balance 0  in 2.50s: PAYOUT_STATUS_COMPLETED 4, PAYOUT_STATUS_PROCESSING 1  unfinished 1"),
            "{text}"
        );
        assert_eq!(r.problems().len(), 2, "{:?}", r.problems());
    }

    #[test]
    fn the_json_report_is_one_object_with_the_figures_at_stable_names() {
        let json = report().json().unwrap();
        assert!(!json.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["purchases"]["acknowledged"], 148);
        assert_eq!(v["purchases"]["failed_by_code"]["UNAVAILABLE"], 2);
        assert_eq!(v["commissions"]["missing"], 0);
        assert_eq!(v["commissions"]["duplicates"], 0);
        assert_eq!(v["drain"]["seconds"], 0.42);
        assert_eq!(v["ack_latency"]["count"], 100);
        let near = |value: &serde_json::Value, expected: f64| {
            value
                .as_f64()
                .is_some_and(|v| (v - expected).abs() < expected * 0.001)
        };
        assert!(near(&v["ack_latency"]["p99_ms"], 99.0), "{v}");
        assert!(near(&v["commission_latency"]["max_ms"], 1000.0), "{v}");
        assert!(
            v["ack_latency"]["histogram"]
                .as_array()
                .is_some_and(|h| !h.is_empty())
        );
        assert!(v.get("payouts").is_none());
    }
}
