//! Running a service process: the shape every `main.rs` shares (logs, build, serve until a
//! signal) and the supervision of a process's parts (gRPC server, consumers, loops).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::config::LogArgs;
use crate::{shutdown, telemetry};

/// A built service, ready to serve.
pub trait Service: Sized + Send + 'static {
    /// The bound gRPC address.
    fn grpc_addr(&self) -> SocketAddr;
    /// Serves until `shutdown` is cancelled or a part fails.
    fn run_until_stopped(
        self,
        shutdown: CancellationToken,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The whole of a service's `main`: logs, build, serve until SIGINT/SIGTERM; failures logged
/// with their cause chain.
pub async fn main<S, B>(name: &str, log: &LogArgs, build: B) -> anyhow::Result<()>
where
    S: Service,
    B: Future<Output = anyhow::Result<S>>,
{
    crate::tls::install_crypto_provider();
    telemetry::init(log)?;
    let service = match build.await {
        Ok(service) => service,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "{name} failed to start");
            return Err(e);
        }
    };
    tracing::info!(grpc = %service.grpc_addr(), "{name} started");
    let result = service.run_until_stopped(shutdown::on_signal()).await;
    if let Err(e) = &result {
        tracing::error!(error = format!("{e:#}"), "{name} stopped with an error");
    }
    telemetry::shutdown();
    if let Err(e) = &result
        && e.is::<ForcedShutdown>()
    {
        // Returning would drop the runtime, which waits for its blocking threads (a DNS lookup of
        // a broker that is gone, say) for as long as they take.
        std::process::exit(1);
    }
    result
}

/// Parses the process's command line with `version` as its `--version` (the binary's
/// `build_info::VERSION`, which names the git revision); exits with clap's message on bad flags,
/// `--help` and `--version`.
pub fn parse<C: clap::Parser>(version: &'static str) -> C {
    parse_command(C::command(), version)
}

/// [`parse`] with the command line `command` describes (one built at run time, e.g. the service
/// kit's).
pub fn parse_command<C: clap::FromArgMatches>(command: clap::Command, version: &'static str) -> C {
    let matches = command.version(version).get_matches();
    C::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// The concurrent parts of one process. When any part ends, all are told to stop; the first
/// failure is returned once every part has ended. Once told to stop, the parts get at most the
/// shutdown grace to end: whatever still runs then (a consumer closing on a broker that is gone,
/// a transaction waiting for a database that is gone) is abandoned, so a process asked to stop
/// always stops, whatever its dependencies do. Nothing committed is lost: what was not
/// acknowledged is redelivered to whoever consumes next, and a transaction not committed rolls
/// back.
pub struct Parts {
    set: JoinSet<(&'static str, anyhow::Result<()>)>,
    names: HashMap<Id, &'static str>,
    shutdown: CancellationToken,
    grace: Duration,
}

/// The parts did not all end within the shutdown grace; those still running were abandoned.
#[derive(Debug, thiserror::Error)]
#[error(
    "shutdown forced: {running:?} still running {grace:?} after the stop was requested; abandoned \
     (what they had not acknowledged is redelivered)"
)]
pub struct ForcedShutdown {
    pub grace: Duration,
    /// The parts still running, by name.
    pub running: Vec<&'static str>,
}

impl Parts {
    /// Parts that stop on `shutdown` and get at most `grace` to end once it is cancelled.
    pub fn new(shutdown: CancellationToken, grace: Duration) -> Self {
        Self {
            set: JoinSet::new(),
            names: HashMap::new(),
            shutdown,
            grace,
        }
    }

    /// The token parts should stop on.
    pub fn token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub fn spawn<F>(&mut self, name: &'static str, part: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let handle = self.set.spawn(async move { (name, part.await) });
        self.names.insert(handle.id(), name);
    }

    /// Waits for every part; logs which one ended first and why. Once the token is cancelled
    /// (by the caller, or here when a part ends), waits at most the grace, then abandons the parts
    /// still running and returns [`ForcedShutdown`].
    pub async fn supervise(mut self) -> anyhow::Result<()> {
        let mut result = Ok(());
        let (shutdown, grace) = (self.shutdown.clone(), self.grace);
        let deadline = async move {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::pin!(deadline);
        loop {
            let joined = tokio::select! {
                joined = self.set.join_next_with_id() => match joined {
                    Some(joined) => joined,
                    None => break,
                },
                () = &mut deadline => {
                    let mut running: Vec<&'static str> = self.names.values().copied().collect();
                    running.sort_unstable();
                    let forced = ForcedShutdown { grace, running };
                    tracing::error!(
                        grace_secs = grace.as_secs_f64(),
                        parts = ?forced.running,
                        "shutdown forced: parts still running after the grace period are abandoned \
                         (their unacknowledged messages are redelivered)"
                    );
                    self.set.abort_all();
                    return Err(forced.into());
                }
            };
            let (id, (part, outcome)) = joined.context("a service task panicked")?;
            self.names.remove(&id);
            if !self.shutdown.is_cancelled() {
                tracing::error!(part, "stopped unexpectedly; shutting the service down");
                self.shutdown.cancel();
            }
            if let Err(e) = outcome {
                tracing::error!(part, error = format!("{e:#}"), "failed");
                if result.is_ok() {
                    result = Err(e.context(format!("{part} failed")));
                }
            }
        }
        tracing::info!("every part stopped");
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_part_stops_the_others_and_is_reported() {
        let token = CancellationToken::new();
        let mut parts = Parts::new(token.clone(), Duration::from_secs(10));
        let t = parts.token();
        parts.spawn("waits", async move {
            t.cancelled().await;
            Ok(())
        });
        parts.spawn("fails", async { anyhow::bail!("boom") });
        let err = parts.supervise().await.err().map(|e| format!("{e:#}"));
        assert_eq!(err.as_deref(), Some("fails failed: boom"));
        assert!(token.is_cancelled());
    }

    #[tokio::test]
    async fn a_part_that_does_not_stop_is_abandoned_after_the_grace() {
        let token = CancellationToken::new();
        let mut parts = Parts::new(token.clone(), Duration::from_millis(100));
        let t = parts.token();
        parts.spawn("stops", async move {
            t.cancelled().await;
            Ok(())
        });
        parts.spawn("hangs", std::future::pending());
        token.cancel();
        let started = std::time::Instant::now();
        let err = parts.supervise().await.err();
        assert!(started.elapsed() < Duration::from_secs(5));
        let forced = err
            .as_ref()
            .and_then(|e| e.downcast_ref::<ForcedShutdown>());
        assert_eq!(forced.map(|f| f.running.clone()), Some(vec!["hangs"]));
    }

    #[tokio::test]
    async fn shutdown_ends_every_part_cleanly() {
        let token = CancellationToken::new();
        let mut parts = Parts::new(token.clone(), Duration::from_secs(10));
        for name in ["a", "b"] {
            let t = parts.token();
            parts.spawn(name, async move {
                t.cancelled().await;
                Ok(())
            });
        }
        token.cancel();
        assert!(parts.supervise().await.is_ok());
    }
}
