//! What the run has seen so far, shared by the senders, the commission watcher and the progress
//! line: counts, latencies, and which acknowledged purchases have their commission. A purchase's
//! commission may arrive before its acknowledgement does; whichever comes second completes it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use super::histogram::Latency;

/// The run's counters and latencies (behind one mutex; no method waits).
#[derive(Debug)]
pub struct Tally {
    pub sent: u64,
    pub acknowledged: u64,
    pub retries: u64,
    /// Purchases that failed for good, by gRPC code name.
    pub failed: BTreeMap<&'static str, u64>,
    /// Sends that started later than due because no client was free to take them in time (all
    /// busy, or short of CPU), and the longest delay.
    pub late: u64,
    pub max_lag: Duration,
    /// When the first and the latest purchase were sent.
    pub first_send: Option<Instant>,
    pub last_send: Option<Instant>,
    /// Acknowledged purchases: tracking event id → when its clock started.
    purchases: HashMap<String, Instant>,
    /// commission.calculated.v1 receipts of the campaign: tracking event id → first receipt.
    calculated: HashMap<String, Instant>,
    /// commission.rejected.v1 reasons by tracking event id.
    rejected: HashMap<String, String>,
    /// Acknowledged purchases whose commission arrived, or was rejected.
    pub commissions: u64,
    pub rejections: u64,
    /// commission.calculated.v1 events for a tracking event already seen.
    pub duplicates: u64,
    /// The latest commission receipt of an acknowledged purchase.
    pub last_commission: Option<Instant>,
    pub ack_latency: Latency,
    pub commission_latency: Latency,
}

impl Tally {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            sent: 0,
            acknowledged: 0,
            retries: 0,
            failed: BTreeMap::new(),
            late: 0,
            max_lag: Duration::ZERO,
            first_send: None,
            last_send: None,
            purchases: HashMap::new(),
            calculated: HashMap::new(),
            rejected: HashMap::new(),
            commissions: 0,
            rejections: 0,
            duplicates: 0,
            last_commission: None,
            ack_latency: Latency::new()?,
            commission_latency: Latency::new()?,
        })
    }

    /// A purchase is being sent at `now`; `late_since` is when it was due if no client was free
    /// to take it in time.
    pub fn sending(&mut self, now: Instant, late_since: Option<Instant>) {
        self.sent += 1;
        self.first_send.get_or_insert(now);
        self.last_send = Some(self.last_send.map_or(now, |last| last.max(now)));
        if let Some(due) = late_since {
            self.late += 1;
            self.max_lag = self.max_lag.max(now.saturating_duration_since(due));
        }
    }

    /// The purchase `tracking_event_id`, whose clock started at `started`, was acknowledged at
    /// `now` after `retries` retries.
    pub fn acknowledged(
        &mut self,
        tracking_event_id: String,
        started: Instant,
        now: Instant,
        retries: u32,
    ) {
        self.acknowledged += 1;
        self.retries += u64::from(retries);
        self.ack_latency.record(now - started);
        if let Some(&received) = self.calculated.get(&tracking_event_id) {
            self.complete(started, received);
        } else if self.rejected.contains_key(&tracking_event_id) {
            self.rejections += 1;
        }
        self.purchases.insert(tracking_event_id, started);
    }

    /// A purchase failed for good with `code` after `retries` retries.
    pub fn failed(&mut self, code: &'static str, retries: u32) {
        self.retries += u64::from(retries);
        *self.failed.entry(code).or_default() += 1;
    }

    /// A commission.calculated.v1 of the campaign for `tracking_event_id` arrived at `now`.
    pub fn calculated(&mut self, tracking_event_id: String, now: Instant) {
        if self.calculated.contains_key(&tracking_event_id) {
            self.duplicates += 1;
            return;
        }
        if let Some(&started) = self.purchases.get(&tracking_event_id) {
            self.complete(started, now);
        }
        self.calculated.insert(tracking_event_id, now);
    }

    /// A commission.rejected.v1 for `tracking_event_id` (of any campaign) arrived.
    pub fn rejected(&mut self, tracking_event_id: String, reason: String) {
        if self.purchases.contains_key(&tracking_event_id)
            && !self.rejected.contains_key(&tracking_event_id)
        {
            self.rejections += 1;
        }
        self.rejected.entry(tracking_event_id).or_insert(reason);
    }

    fn complete(&mut self, started: Instant, received: Instant) {
        self.commissions += 1;
        self.commission_latency
            .record(received.saturating_duration_since(started));
        self.last_commission = Some(self.last_commission.map_or(received, |l| l.max(received)));
    }

    /// Acknowledged purchases still waiting for their commission (rejected ones wait no more).
    pub fn outstanding(&self) -> u64 {
        self.acknowledged
            .saturating_sub(self.commissions + self.rejections)
    }

    /// Acknowledged purchases without a commission.calculated.v1 (rejected ones included).
    pub fn missing(&self) -> u64 {
        self.acknowledged.saturating_sub(self.commissions)
    }

    /// Commissions of the campaign for purchases never acknowledged (the call failed or timed out
    /// on the client, yet the service had recorded it).
    pub fn unacknowledged(&self) -> u64 {
        self.calculated
            .keys()
            .filter(|id| !self.purchases.contains_key(*id))
            .count() as u64
    }

    /// Rejection reasons of acknowledged purchases, counted.
    pub fn rejection_reasons(&self) -> BTreeMap<String, u64> {
        let mut reasons = BTreeMap::new();
        for (id, reason) in &self.rejected {
            if self.purchases.contains_key(id) {
                *reasons.entry(reason.clone()).or_default() += 1;
            }
        }
        reasons
    }

    pub fn failures(&self) -> u64 {
        self.failed.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn a_commission_completes_its_purchase_whichever_arrives_first() {
        let t = Instant::now();
        let mut tally = Tally::new().unwrap();
        tally.sending(t, None);
        tally.acknowledged("a".into(), t, at(t, 5), 0);
        assert_eq!(tally.outstanding(), 1);
        tally.calculated("a".into(), at(t, 40));
        // The event of "b" overtakes its acknowledgement.
        tally.sending(at(t, 10), None);
        tally.calculated("b".into(), at(t, 30));
        tally.acknowledged("b".into(), at(t, 10), at(t, 35), 1);
        assert_eq!(
            (tally.commissions, tally.outstanding(), tally.missing()),
            (2, 0, 0)
        );
        assert_eq!(tally.retries, 1);
        assert_eq!(tally.commission_latency.summary().count, 2);
        assert!((tally.commission_latency.summary().max_ms - 40.0).abs() < 0.1);
        assert_eq!(tally.last_commission, Some(at(t, 40)));
    }

    #[test]
    fn duplicates_rejections_and_strangers_are_counted_apart() {
        let t = Instant::now();
        let mut tally = Tally::new().unwrap();
        tally.acknowledged("a".into(), t, t, 0);
        tally.acknowledged("r".into(), t, t, 0);
        tally.calculated("a".into(), at(t, 1));
        tally.calculated("a".into(), at(t, 2));
        tally.rejected("r".into(), "CAMPAIGN_CLOSED".into());
        tally.rejected("r".into(), "CAMPAIGN_CLOSED".into());
        tally.rejected("other-campaign".into(), "CURRENCY_MISMATCH".into());
        tally.calculated("gave-up".into(), at(t, 3));
        tally.failed("UNAVAILABLE", 5);
        assert_eq!(tally.duplicates, 1);
        assert_eq!(tally.rejections, 1);
        assert_eq!(tally.outstanding(), 0, "a rejected purchase waits no more");
        assert_eq!(tally.missing(), 1, "but it has no commission");
        assert_eq!(tally.unacknowledged(), 1);
        assert_eq!(
            tally.rejection_reasons(),
            BTreeMap::from([("CAMPAIGN_CLOSED".to_owned(), 1)])
        );
        assert_eq!(tally.failures(), 1);
        assert_eq!(tally.retries, 5);
    }

    #[test]
    fn sends_no_client_was_free_for_are_late() {
        let t = Instant::now();
        let mut tally = Tally::new().unwrap();
        tally.sending(t, None);
        tally.sending(at(t, 250), Some(at(t, 10)));
        assert_eq!((tally.sent, tally.late), (2, 1));
        assert_eq!(tally.max_lag, Duration::from_millis(240));
        assert_eq!(tally.first_send, Some(t));
        assert_eq!(tally.last_send, Some(at(t, 250)));
    }
}
