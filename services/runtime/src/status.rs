//! What a process knows about its own health: its mode, the last check of each dependency, and
//! each subscription's state and counters. The gRPC server serves it as
//! `affiliate.common.v1.StatusService/GetStatus` and derives `grpc.health.v1` from it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use affiliate_proto::common::{DependencyStatus, GetStatusResponse, SubscriptionStatus};

/// Health name of the broker connection.
pub const PULSAR_HEALTH: &str = "affiliate.common.v1.Pulsar";
/// Health name of the command door (the service's command topic consumer).
pub const COMMAND_DOOR_HEALTH: &str = "affiliate.common.v1.CommandDoor";

/// Prefix of a feed's health name ([`feed_health`]).
pub const FEED_HEALTH_PREFIX: &str = "affiliate.common.v1.Feed";

/// The shared status of one process.
#[derive(Debug, Clone)]
pub struct StatusBoard {
    inner: Arc<Mutex<GetStatusResponse>>,
    /// Whether the broker answered once since the process started.
    pulsar_reached: Arc<std::sync::atomic::AtomicBool>,
}

impl StatusBoard {
    pub fn new(service: &str, mode: &str) -> Self {
        let status = GetStatusResponse {
            service: service.to_owned(),
            mode: mode.to_owned(),
            database: Some(DependencyStatus {
                reachable: false,
                detail: "not checked yet".into(),
                latency_ms: 0,
            }),
            pulsar: None,
            subscriptions: Vec::new(),
        };
        Self {
            inner: Arc::new(Mutex::new(status)),
            pulsar_reached: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, GetStatusResponse> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the current status.
    pub fn snapshot(&self) -> GetStatusResponse {
        self.lock().clone()
    }

    /// Whether the process serves: the database answered its last check and, in a process that
    /// uses Pulsar, the broker has been reached since the start. A process that never reached its
    /// broker (down at start, or refusing its credentials) is not ready; a broker outage after
    /// that does not stop the API, which takes commands into the outbox, and is reported by
    /// [`StatusBoard::components`] instead.
    pub fn healthy(&self) -> bool {
        let s = self.lock();
        let database = s.database.as_ref().is_some_and(|d| d.reachable);
        let broker = s.pulsar.is_none()
            || self
                .pulsar_reached
                .load(std::sync::atomic::Ordering::Relaxed);
        database && broker
    }

    /// Health names of the process's parts with whether each serves: [`PULSAR_HEALTH`] (the
    /// broker answered its last check) when the process uses Pulsar, [`COMMAND_DOOR_HEALTH`]
    /// (the broker answers and every subscription on a command topic is consuming, none
    /// stalled) when it has a command door, and one [`feed_health`] name per subscription on
    /// event topics (the broker answers and it is consuming, not stalled).
    pub fn components(&self) -> Vec<(String, bool)> {
        let s = self.lock();
        let mut parts = Vec::new();
        let Some(pulsar) = &s.pulsar else {
            return parts;
        };
        parts.push((PULSAR_HEALTH.to_owned(), pulsar.reachable));
        let is_door =
            |sub: &&SubscriptionStatus| sub.topics.iter().any(|t| t.ends_with("-commands"));
        let doors: Vec<&SubscriptionStatus> = s.subscriptions.iter().filter(is_door).collect();
        if !doors.is_empty() {
            let consuming = doors.iter().all(|d| d.state == "consuming");
            parts.push((
                COMMAND_DOOR_HEALTH.to_owned(),
                pulsar.reachable && consuming,
            ));
        }
        for feed in s.subscriptions.iter().filter(|sub| !is_door(sub)) {
            parts.push((
                feed_health(&feed.subscription, &feed.topics),
                pulsar.reachable && feed.state == "consuming",
            ));
        }
        parts
    }

    pub fn set_database(&self, result: Result<Duration, String>) {
        self.lock().database = Some(dependency(result));
    }

    pub fn set_pulsar(&self, result: Result<Duration, String>) {
        if result.is_ok() {
            self.pulsar_reached
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.lock().pulsar = Some(dependency(result));
    }

    /// Sets the backlog of subscription `name` on the topic whose short name is `topic` (the
    /// entries of that name reading it); `None` when it could not be measured.
    pub fn set_backlog(&self, name: &str, topic: &str, backlog: Option<i64>) {
        let suffix = format!("/{topic}");
        for s in self.lock().subscriptions.iter_mut().filter(|s| {
            s.subscription == name && s.topics.iter().any(|t| t == topic || t.ends_with(&suffix))
        }) {
            s.backlog = backlog;
        }
    }

    /// Registers a subscription (state `starting`) and returns its handle.
    pub fn subscription(&self, name: &str, topics: &[String]) -> SubscriptionHandle {
        self.lock().subscriptions.push(SubscriptionStatus {
            subscription: name.to_owned(),
            topics: topics.to_vec(),
            state: "starting".into(),
            ..SubscriptionStatus::default()
        });
        SubscriptionHandle {
            board: self.clone(),
            name: name.to_owned(),
            topics: topics.to_vec(),
        }
    }
}

/// The health name of a feed (a subscription on event topics):
/// `affiliate.common.v1.Feed/<subscription>/<topics' short names, comma-separated>`.
pub fn feed_health(subscription: &str, topics: &[String]) -> String {
    let short: Vec<&str> = topics
        .iter()
        .map(|t| t.rsplit('/').next().unwrap_or(t))
        .collect();
    format!("{FEED_HEALTH_PREFIX}/{subscription}/{}", short.join(","))
}

fn dependency(result: Result<Duration, String>) -> DependencyStatus {
    match result {
        Ok(latency) => DependencyStatus {
            reachable: true,
            detail: String::new(),
            latency_ms: i64::try_from(latency.as_millis()).unwrap_or(i64::MAX),
        },
        Err(detail) => DependencyStatus {
            reachable: false,
            detail,
            latency_ms: 0,
        },
    }
}

/// One subscription's entry on the board.
#[derive(Debug, Clone)]
pub struct SubscriptionHandle {
    board: StatusBoard,
    name: String,
    topics: Vec<String>,
}

impl SubscriptionHandle {
    fn update(&self, change: impl FnOnce(&mut SubscriptionStatus)) {
        let mut status = self.board.lock();
        if let Some(s) = status
            .subscriptions
            .iter_mut()
            .find(|s| s.subscription == self.name && s.topics == self.topics)
        {
            change(s);
        }
    }

    pub fn consuming(&self) {
        self.update(|s| s.state = "consuming".into());
    }

    /// What the consumer holds now: `waiting` messages received and not finished, how long it
    /// has made no progress while they wait (zero when it progresses or nothing waits), and how
    /// long ago the oldest of them was published. A stall longer than `stall_after` turns the
    /// state to `stalled: …` (and health to NOT_SERVING) until progress resumes.
    pub fn progress(
        &self,
        waiting: usize,
        stalled_for: Duration,
        oldest_age: Duration,
        stall_after: Duration,
    ) {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.update(|s| {
            s.waiting = i64::try_from(waiting).unwrap_or(i64::MAX);
            s.stalled_for_ms = ms(stalled_for);
            s.oldest_waiting_age_ms = ms(oldest_age);
            let live = s.state == "consuming" || s.state.starts_with("stalled");
            if live {
                s.state = if stalled_for >= stall_after {
                    format!(
                        "stalled: no progress for {} s with {waiting} waiting",
                        stalled_for.as_secs()
                    )
                } else {
                    "consuming".into()
                };
            }
        });
    }

    /// The progress watchdog acted on a stall.
    pub fn stall_recovered(&self) {
        self.update(|s| s.stall_recoveries += 1);
    }

    pub fn stopped(&self, reason: &str) {
        self.update(|s| s.state = format!("stopped: {reason}"));
    }

    pub fn applied(&self) {
        self.update(|s| s.applied += 1);
    }

    pub fn rejected(&self) {
        self.update(|s| s.rejected += 1);
    }

    pub fn retried(&self) {
        self.update(|s| s.retried += 1);
    }

    pub fn dead_lettered(&self) {
        self.update(|s| s.dead_lettered += 1);
    }

    /// The subscription was lost (broker away, restarting, topic not there yet) and is being
    /// made again.
    pub fn reconnecting(&self, reason: &str) {
        self.update(|s| {
            s.state = format!("reconnecting: {reason}");
            s.reconnects += 1;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_follows_the_database_and_components_follow_the_broker() {
        let board = StatusBoard::new("svc", "hybrid");
        assert!(!board.healthy(), "unchecked is not healthy");
        assert!(board.components().is_empty(), "no Pulsar, no components");
        board.set_database(Ok(Duration::from_millis(2)));
        assert!(board.healthy());
        let door = board.subscription("svc", &["persistent://t/n/svc-commands".into()]);
        board.set_pulsar(Err("token refused".into()));
        assert!(
            !board.healthy(),
            "a process that never reached its broker does not serve"
        );
        board.set_pulsar(Ok(Duration::from_millis(1)));
        assert!(board.healthy());
        board.set_pulsar(Err("connection refused".into()));
        assert!(board.healthy(), "the API serves through a broker outage");
        assert_eq!(
            board.components(),
            [
                (PULSAR_HEALTH.into(), false),
                (COMMAND_DOOR_HEALTH.into(), false)
            ]
        );
        board.set_pulsar(Ok(Duration::from_millis(1)));
        door.consuming();
        assert_eq!(
            board.components(),
            [
                (PULSAR_HEALTH.into(), true),
                (COMMAND_DOOR_HEALTH.into(), true)
            ]
        );
        door.reconnecting("topic not found");
        assert_eq!(board.components()[1], (COMMAND_DOOR_HEALTH.into(), false));
        board.set_database(Err("down".into()));
        assert!(!board.healthy());
    }

    #[test]
    fn subscriptions_report_state_and_counters() {
        let board = StatusBoard::new("svc", "events");
        let sub = board.subscription("svc", &["persistent://t/n/svc-commands".into()]);
        sub.consuming();
        sub.applied();
        sub.applied();
        sub.retried();
        let s = &board.snapshot().subscriptions[0];
        assert_eq!(
            (s.state.as_str(), s.applied, s.rejected, s.retried),
            ("consuming", 2, 0, 1)
        );
        sub.stopped("shutdown");
        assert_eq!(board.snapshot().subscriptions[0].state, "stopped: shutdown");
    }

    #[test]
    fn a_stalled_door_or_feed_is_not_serving_and_serves_again_after_progress() {
        let board = StatusBoard::new("svc", "hybrid");
        board.set_database(Ok(Duration::from_millis(1)));
        board.set_pulsar(Ok(Duration::from_millis(1)));
        let door = board.subscription("svc", &["persistent://t/n/svc-commands".into()]);
        let feed = board.subscription("svc", &["persistent://t/n/other-events".into()]);
        door.consuming();
        feed.consuming();
        let names = |board: &StatusBoard| board.components();
        let feed_name = "affiliate.common.v1.Feed/svc/other-events".to_owned();
        assert_eq!(
            names(&board),
            [
                (PULSAR_HEALTH.into(), true),
                (COMMAND_DOOR_HEALTH.into(), true),
                (feed_name.clone(), true)
            ]
        );
        let after = Duration::from_secs(30);
        door.progress(12, Duration::from_secs(29), Duration::from_secs(40), after);
        assert_eq!(
            names(&board)[1],
            (COMMAND_DOOR_HEALTH.into(), true),
            "not stalled yet"
        );
        door.progress(12, Duration::from_secs(31), Duration::from_secs(42), after);
        feed.progress(3, Duration::from_secs(45), Duration::from_secs(50), after);
        assert_eq!(
            names(&board),
            [
                (PULSAR_HEALTH.into(), true),
                (COMMAND_DOOR_HEALTH.into(), false),
                (feed_name.clone(), false)
            ]
        );
        let s = board.snapshot();
        assert_eq!(
            s.subscriptions[0].state,
            "stalled: no progress for 31 s with 12 waiting"
        );
        assert_eq!(
            (
                s.subscriptions[0].waiting,
                s.subscriptions[0].stalled_for_ms,
                s.subscriptions[0].oldest_waiting_age_ms
            ),
            (12, 31_000, 42_000)
        );
        assert!(
            board.healthy(),
            "the API still serves while a consumer is stalled"
        );
        door.progress(11, Duration::ZERO, Duration::from_secs(1), after);
        feed.progress(0, Duration::ZERO, Duration::ZERO, after);
        assert_eq!(names(&board)[1], (COMMAND_DOOR_HEALTH.into(), true));
        assert_eq!(names(&board)[2], (feed_name, true));
        door.reconnecting("lost");
        door.progress(0, Duration::from_secs(60), Duration::ZERO, after);
        assert!(
            board.snapshot().subscriptions[0]
                .state
                .starts_with("reconnecting"),
            "progress reports do not hide a lost subscription"
        );
    }
}
