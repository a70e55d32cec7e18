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
    loop {
        let started = Instant::now();
        let db = tokio::time::timeout(CHECK_TIMEOUT, sqlx::query("select 1").execute(&pool)).await;
        board.set_database(match db {
            Ok(Ok(_)) => Ok(started.elapsed()),
            Ok(Err(e)) => Err(format!("query failed: {e}")),
            Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
        });
        let client = pulsar
            .as_ref()
            .and_then(|(link, topic)| Some((link.borrow().clone()?, topic)));
        if let Some((client, topic)) = client {
            let started = Instant::now();
            let lookup =
                tokio::time::timeout(CHECK_TIMEOUT, client.lookup_topic(topic.clone())).await;
            board.set_pulsar(match lookup {
                Ok(Ok(_)) => Ok(started.elapsed()),
                Ok(Err(e)) => Err(format!("topic lookup failed: {e}")),
                Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
            });
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
    }
}
