//! Hosting a service process, the same way for every service: connect and migrate its database,
//! bind the gRPC server, keep a status board with dependency checks, then serve the API (when the
//! mode opens that door), connect Pulsar in the background when it needs it, prune the dedup
//! tables (in every mode), and run the consumers and loops the service adds, all supervised so
//! one failing part stops the process.
//!
//! The broker connection is made, and made again after each failure (back-off up to 30 s), for
//! as long as it takes: a broker that is down at start or refuses the credentials leaves the
//! process up, its consumers waiting, its gRPC health NOT_SERVING and the reason in `GetStatus`
//! and the log, never a crash loop.

pub mod kit;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use messaging::{Handler, Subscription};
use pulsar::{Pulsar, TokioExecutor};
use service_runtime::app::Parts;
use service_runtime::config::{
    ConsumerArgs, DatabaseArgs, GrpcArgs, Mode, PulsarArgs, RetentionArgs,
};
use service_runtime::grpc::GrpcServer;
use service_runtime::status::StatusBoard;
use service_runtime::{db, retention};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

/// What a service passes to [`Host::start`]: its name and its configuration pieces.
#[derive(Debug, Clone, Copy)]
pub struct ServiceArgs<'a> {
    /// e.g. `campaign-service`
    pub name: &'static str,
    pub mode: Mode,
    pub database: &'a DatabaseArgs,
    pub grpc: &'a GrpcArgs,
    pub pulsar: &'a PulsarArgs,
    pub consumer: &'a ConsumerArgs,
    pub retention: &'a RetentionArgs,
}

/// A started, not yet serving, service process.
pub struct Host {
    pub name: &'static str,
    pub mode: Mode,
    pub pool: PgPool,
    pulsar: Option<Link>,
    board: StatusBoard,
    server: GrpcServer,
    pulsar_args: PulsarArgs,
    consumer_args: ConsumerArgs,
    retention_args: RetentionArgs,
    grace: Duration,
    health_interval: Duration,
}

impl Host {
    /// Connects and migrates the database (platform tables plus `migrator`'s) and binds the gRPC
    /// listener; Pulsar, if `needs_pulsar`, is connected once serving (see the module's doc).
    pub async fn start(
        args: ServiceArgs<'_>,
        migrator: &Migrator,
        needs_pulsar: bool,
    ) -> anyhow::Result<Self> {
        let board = StatusBoard::new(args.name, args.mode.as_str());
        let started = std::time::Instant::now();
        let pool = db::connect(args.database).await?;
        db::migrate(&pool, migrator).await?;
        board.set_database(Ok(started.elapsed()));
        let pulsar = needs_pulsar.then(|| {
            board.set_pulsar(Err("connecting".into()));
            Link::new()
        });
        let server = GrpcServer::bind(args.grpc.listen)
            .await?
            .with_max_in_flight(args.grpc.max_in_flight)
            .with_call_timeout(args.grpc.call_timeout);
        Ok(Self {
            name: args.name,
            mode: args.mode,
            pool,
            pulsar,
            board,
            server,
            pulsar_args: args.pulsar.clone(),
            consumer_args: args.consumer.clone(),
            retention_args: args.retention.clone(),
            grace: args.grpc.shutdown_grace,
            health_interval: args.grpc.health_interval,
        })
    }

    /// The bound gRPC address (health, status and reflection in every mode; the API when served).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Starts serving: the gRPC server (with `api`, the service and its health name, if given),
    /// the dependency checks (looking up `check_topic` on Pulsar) and the pruning of the dedup
    /// tables. Add consumers and loops to the returned [`Running`], then supervise it.
    pub fn serve(
        self,
        api: Option<(Routes, &'static str)>,
        check_topic: &str,
        shutdown: CancellationToken,
    ) -> Running {
        tracing::info!(mode = self.mode.as_str(), "{} running", self.name);
        let mut parts = Parts::new(shutdown.clone(), self.grace);
        if let Some(link) = &self.pulsar {
            let (args, board, token) = (
                self.pulsar_args.clone(),
                self.board.clone(),
                shutdown.clone(),
            );
            let link = link.clone();
            parts.spawn("Pulsar connection", async move {
                let started = std::time::Instant::now();
                let connected = messaging::connect_persistently(&args, &token, |error| {
                    board.set_pulsar(Err(format!("{error:#}")));
                })
                .await;
                if let Some(client) = connected {
                    board.set_pulsar(Ok(started.elapsed()));
                    link.connected(client);
                    // Checked from now on by the dependency checks.
                    token.cancelled().await;
                }
                Ok(())
            });
        }
        let pulsar_check = self
            .pulsar
            .clone()
            .map(|link| (link.0, self.pulsar_args.topic(check_topic)));
        let (board, pool, token) = (self.board.clone(), self.pool.clone(), shutdown.clone());
        let every = self.health_interval;
        parts.spawn("dependency checks", async move {
            messaging::health::watch_dependencies(board, pool, pulsar_check, every, token).await
        });
        parts.spawn(
            "record pruning",
            retention::run(self.pool.clone(), self.retention_args, shutdown.clone()),
        );
        let (routes, names) = match api {
            Some((routes, name)) => (routes, vec![name]),
            None => (Routes::default(), Vec::new()),
        };
        let (server, board, token, grace) = (
            self.server,
            self.board.clone(),
            shutdown.clone(),
            self.grace,
        );
        parts.spawn("gRPC server", async move {
            server.serve(routes, &names, board, token, grace).await
        });
        Running {
            parts,
            pulsar: self.pulsar,
            pulsar_args: self.pulsar_args,
            consumer_args: self.consumer_args,
            board: self.board,
            shutdown,
        }
    }
}

/// The broker connection of a process, once made: consumers wait for it.
#[derive(Clone)]
struct Link(
    tokio::sync::watch::Receiver<Option<Pulsar<TokioExecutor>>>,
    Arc<tokio::sync::watch::Sender<Option<Pulsar<TokioExecutor>>>>,
);

impl Link {
    fn new() -> Self {
        let (tx, rx) = tokio::sync::watch::channel(None);
        Self(rx, Arc::new(tx))
    }

    fn connected(&self, client: Pulsar<TokioExecutor>) {
        self.1.send_replace(Some(client));
    }

    /// The client once connected; `None` at shutdown.
    async fn ready(mut self, shutdown: &CancellationToken) -> Option<Pulsar<TokioExecutor>> {
        tokio::select! {
            client = self.0.wait_for(Option::is_some) => client.ok().and_then(|c| c.clone()),
            () = shutdown.cancelled() => None,
        }
    }
}

/// A serving process to which consumers and loops are added.
pub struct Running {
    parts: Parts,
    pulsar: Option<Link>,
    pulsar_args: PulsarArgs,
    consumer_args: ConsumerArgs,
    board: StatusBoard,
    shutdown: CancellationToken,
}

impl Running {
    /// A subscription `name` on the short topic, configured from the consumer flags and reporting
    /// to the status board.
    pub fn subscription(&self, short_topic: &str, name: &str) -> Subscription {
        Subscription::configured(
            vec![self.pulsar_args.topic(short_topic)],
            name,
            &self.consumer_args,
            &self.board,
        )
    }

    /// Runs `handler` on `subscription` as the part named `part`.
    pub fn consume<H: Handler>(
        &mut self,
        part: &'static str,
        subscription: Subscription,
        handler: H,
    ) -> anyhow::Result<()> {
        let link = self.pulsar.clone().ok_or_else(|| {
            anyhow::anyhow!("{part} needs Pulsar, but the service was started without it")
        })?;
        let token = self.shutdown.clone();
        self.parts.spawn(part, async move {
            let Some(pulsar) = link.ready(&token).await else {
                return Ok(());
            };
            messaging::run_consumer(pulsar, subscription, Arc::new(handler), token).await
        });
        Ok(())
    }

    /// Runs a loop of the service's own as the part named `part`.
    pub fn spawn<F>(&mut self, part: &'static str, task: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.parts.spawn(part, task);
    }

    /// The token loops should stop on.
    pub fn token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits for every part; the first failure stops the others and is returned.
    pub async fn supervise(self) -> anyhow::Result<()> {
        self.parts.supervise().await
    }
}
