//! Running a service process: the shape every `main.rs` shares (logs, build, serve until a
//! signal) and the supervision of a process's parts (gRPC server, consumers, loops).

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::task::JoinSet;
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
/// failure is returned once every part has ended.
pub struct Parts {
    set: JoinSet<(&'static str, anyhow::Result<()>)>,
    shutdown: CancellationToken,
}

impl Parts {
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            set: JoinSet::new(),
            shutdown,
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
        self.set.spawn(async move { (name, part.await) });
    }

    /// Waits for every part; logs which one ended first and why.
    pub async fn supervise(mut self) -> anyhow::Result<()> {
        let mut result = Ok(());
        while let Some(joined) = self.set.join_next().await {
            let (part, outcome) = joined.context("a service task panicked")?;
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
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_part_stops_the_others_and_is_reported() {
        let token = CancellationToken::new();
        let mut parts = Parts::new(token.clone());
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
    async fn shutdown_ends_every_part_cleanly() {
        let token = CancellationToken::new();
        let mut parts = Parts::new(token.clone());
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
