//! Calls that may be retried: each attempt under a deadline; UNAVAILABLE, DEADLINE_EXCEEDED and
//! connection errors are tried again after a growing, jittered back-off (the caller reuses the
//! same idempotency key, so the service applies the command once); any other error is final.

use std::future::Future;
use std::time::Duration;

use rand::Rng as _;
use tonic::{Code, Status};

/// How often and how patiently a call is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first one.
    pub max_retries: u32,
    /// Deadline of each attempt; past it the attempt counts as DEADLINE_EXCEEDED.
    pub call_timeout: Duration,
    /// Back-off before the first retry; doubles per retry up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

/// The end of a call: its result and how many retries it took.
#[derive(Debug)]
pub struct Attempts<T> {
    pub result: Result<T, Status>,
    pub retries: u32,
}

/// Whether a failed call may be tried again with the same idempotency key: the service was
/// unreachable or overloaded, the attempt ran out of time, or the client's own transport failed
/// (a status the client made from a connection error carries that error as its source; statuses
/// sent by a server never do).
pub fn is_retryable(status: &Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
        || std::error::Error::source(status).is_some()
}

impl RetryPolicy {
    /// The back-off before retry `retry` (from 1), before jitter.
    pub fn backoff(&self, retry: u32) -> Duration {
        service_runtime::backoff::doubling(self.first_backoff, self.max_backoff, retry)
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries are used up.
    pub async fn call<T, F, Fut>(&self, mut attempt: F) -> Attempts<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut retries = 0;
        loop {
            let result = match tokio::time::timeout(self.call_timeout, attempt()).await {
                Ok(result) => result,
                Err(_) => Err(Status::deadline_exceeded(format!(
                    "no answer within {:?}",
                    self.call_timeout
                ))),
            };
            match result {
                Err(status) if is_retryable(&status) && retries < self.max_retries => {
                    retries += 1;
                    let full = self.backoff(retries);
                    // Half to all of the back-off, so clients that failed together spread out.
                    let jittered = full.mul_f64(rand::rng().random_range(0.5..=1.0));
                    tokio::time::sleep(jittered).await;
                }
                result => return Attempts { result, retries },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    // Real but tiny delays: paused time would need tokio's `test-util`, and that feature on a
    // dev-dependency makes `cargo test --workspace` rebuild the whole tree a second time.
    fn policy(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            call_timeout: Duration::from_millis(50),
            first_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
        }
    }

    #[derive(Debug)]
    struct Reset;
    impl std::fmt::Display for Reset {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connection reset")
        }
    }
    impl std::error::Error for Reset {}

    #[test]
    fn unavailable_deadlines_and_transport_errors_are_retried_other_codes_are_not() {
        assert!(is_retryable(&Status::unavailable("down")));
        assert!(is_retryable(&Status::deadline_exceeded("slow")));
        assert!(is_retryable(&Status::from_error(Box::new(Reset))));
        assert!(!is_retryable(&Status::invalid_argument("bad")));
        assert!(!is_retryable(&Status::internal("bug")));
        assert!(!is_retryable(&Status::unknown("from the server")));
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let policy = RetryPolicy {
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..policy(9)
        };
        let delays: Vec<u128> = (1..=6).map(|r| policy.backoff(r).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    }

    #[tokio::test]
    async fn a_call_is_retried_until_it_succeeds() {
        let calls = AtomicU32::new(0);
        let outcome = policy(5)
            .call(|| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 2 {
                        Err(Status::unavailable("starting"))
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        assert_eq!(outcome.result.ok(), Some(2));
        assert_eq!(outcome.retries, 2);
    }

    #[tokio::test]
    async fn retries_are_bounded_and_a_final_error_is_kept() {
        let calls = AtomicU32::new(0);
        let outcome: Attempts<()> = policy(3)
            .call(|| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(Status::unavailable("down")) }
            })
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(outcome.retries, 3);
        assert_eq!(
            outcome.result.err().map(|s| s.code()),
            Some(Code::Unavailable)
        );
    }

    #[tokio::test]
    async fn an_attempt_past_its_deadline_is_deadline_exceeded_and_retried() {
        let calls = AtomicU32::new(0);
        let outcome = policy(1)
            .call(|| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        std::future::pending::<()>().await;
                    }
                    Ok("answered")
                }
            })
            .await;
        assert_eq!(outcome.result.ok(), Some("answered"));
        assert_eq!(outcome.retries, 1);
        let given_up: Attempts<()> = policy(0).call(std::future::pending).await;
        assert_eq!(
            given_up.result.err().map(|s| s.code()),
            Some(Code::DeadlineExceeded)
        );
    }

    #[tokio::test]
    async fn a_rejection_is_final_at_once() {
        let calls = AtomicU32::new(0);
        let outcome: Attempts<()> = policy(5)
            .call(|| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(Status::invalid_argument("bad amount")) }
            })
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(outcome.retries, 0);
    }
}
