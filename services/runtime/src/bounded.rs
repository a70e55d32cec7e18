//! Bounded waits: a step on a dependency (the database, the broker) that may never answer, given
//! a time limit, so that a frozen dependency turns into an error and a retry, not a stuck task.

use std::future::Future;
use std::time::Duration;

/// Runs `step` for at most `limit`; past it, fails with what was being done. The step's future is
/// dropped on time-out: use it only where dropping half-way is harmless (a connection whose
/// statement is abandoned is closed, not reused).
pub async fn within<T>(
    limit: Duration,
    what: &str,
    step: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(limit, step).await {
        Ok(result) => result,
        Err(_) => Err(anyhow::anyhow!("{what}: no answer within {limit:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_step_that_never_answers_fails_at_its_limit() {
        let never = std::future::pending::<anyhow::Result<()>>();
        let error = within(Duration::from_millis(20), "claim outbox rows", never)
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "claim outbox rows: no answer within 20ms"
        );
        let quick = within(Duration::from_secs(3), "x", async { Ok(7) }).await;
        assert_eq!(quick.unwrap(), 7);
    }
}
