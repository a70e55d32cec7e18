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
    /// broker answered its last check) when the process uses Pulsar, and [`COMMAND_DOOR_HEALTH`]
    /// (the broker answers and every subscription on a command topic is consuming) when it
    /// has a command door.
    pub fn components(&self) -> Vec<(String, bool)> {
        let s = self.lock();
        let mut parts = Vec::new();
        let Some(pulsar) = &s.pulsar else {
            return parts;
        };
        parts.push((PULSAR_HEALTH.to_owned(), pulsar.reachable));
        let doors: Vec<&SubscriptionStatus> = s
            .subscriptions
            .iter()
            .filter(|sub| sub.topics.iter().any(|t| t.ends_with("-commands")))
            .collect();
        if !doors.is_empty() {
            let consuming = doors.iter().all(|d| d.state == "consuming");
            parts.push((
                COMMAND_DOOR_HEALTH.to_owned(),
                pulsar.reachable && consuming,
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
}
