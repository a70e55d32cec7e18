//! Checks a process's dependencies (its database and, when it uses one, Pulsar) on an interval
//! and records the results on its status board, from which gRPC health follows.

use std::time::{Duration, Instant};

use pulsar::{Pulsar, TokioExecutor};
use service_runtime::status::StatusBoard;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long one check may take before the dependency counts as unreachable.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Checks now and then every `interval` until `shutdown`. `pulsar` is the client, once it is
/// connected (until then whoever connects it reports), and a topic to look up (a broker round
/// trip that creates nothing).
pub async fn watch_dependencies(
    board: StatusBoard,
    pool: PgPool,
    pulsar: Option<(watch::Receiver<Option<Pulsar<TokioExecutor>>>, String)>,
    interval: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut lookup: Option<(Instant, tokio::task::JoinHandle<_>)> = None;
    loop {
        let started = Instant::now();
        let db = tokio::time::timeout(
            CHECK_TIMEOUT,
            sqlx::query!("select 1 as ok").fetch_one(&pool),
        )
        .await;
        board.set_database(match db {
            Ok(Ok(_)) => Ok(started.elapsed()),
            Ok(Err(e)) => Err(format!("query failed: {e}")),
            Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
        });
        let client = pulsar
            .as_ref()
            .and_then(|(link, topic)| Some((link.borrow().clone()?, topic)));
        if let Some((client, topic)) = client {
            // The lookup runs as a task of its own and is never dropped half-way: pulsar-rs
            // 6.9.1's connection manager marks a broker `Connecting` while it connects and, if
            // that future is dropped (as a time-out does), leaves the mark for good, so that
            // every later request of the client for that broker waits forever (seen in CI: a
            // service's four subscriptions silent for minutes after a broker restart). A check
            // still running when the next is due is waited for, not started again.
            let check = match lookup.take() {
                Some(running) => running,
                None => {
                    let topic = topic.clone();
                    (
                        Instant::now(),
                        tokio::spawn(async move { client.lookup_topic(topic).await }),
                    )
                }
            };
            let (started, mut task) = check;
            match tokio::time::timeout(CHECK_TIMEOUT, &mut task).await {
                Ok(Ok(Ok(_))) => board.set_pulsar(Ok(started.elapsed())),
                Ok(Ok(Err(e))) => board.set_pulsar(Err(format!("topic lookup failed: {e}"))),
                Ok(Err(e)) => board.set_pulsar(Err(format!("topic lookup task failed: {e}"))),
                Err(_) => {
                    board.set_pulsar(Err(format!(
                        "no answer within {:?}",
                        started.elapsed().max(CHECK_TIMEOUT)
                    )));
                    lookup = Some((started, task));
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
    }
}
