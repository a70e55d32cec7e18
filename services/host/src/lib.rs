//! Hosting a service process, the same way for every service: connect and migrate its database,
//! connect Pulsar when it needs it, bind the gRPC server, keep a status board with dependency
//! checks, then serve the API (when the mode opens that door), prune the dedup tables (in every
//! mode), and run the consumers and loops the service adds, all supervised so one failing part
//! stops the process.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    pulsar: Option<Pulsar<TokioExecutor>>,
    board: StatusBoard,
    server: GrpcServer,
    pulsar_args: PulsarArgs,
    consumer_args: ConsumerArgs,
    retention_args: RetentionArgs,
    grace: Duration,
    health_interval: Duration,
}

impl Host {
    /// Connects and migrates the database (platform tables plus `migrator`'s), connects Pulsar if
    /// `needs_pulsar`, and binds the gRPC listener.
    pub async fn start(
        args: ServiceArgs<'_>,
        migrator: &Migrator,
        needs_pulsar: bool,
    ) -> anyhow::Result<Self> {
        let board = StatusBoard::new(args.name, args.mode.as_str());
        let started = Instant::now();
        let pool = db::connect(args.database).await?;
        db::migrate(&pool, migrator).await?;
        board.set_database(Ok(started.elapsed()));
        let pulsar = if needs_pulsar {
            let started = Instant::now();
            let client = messaging::connect(args.pulsar).await?;
            board.set_pulsar(Ok(started.elapsed()));
            Some(client)
        } else {
            None
        };
        let server = GrpcServer::bind(args.grpc.listen)
            .await?
            .with_max_in_flight(args.grpc.max_in_flight);
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
        let mut parts = Parts::new(shutdown.clone());
        let pulsar_check = self
            .pulsar
            .clone()
            .map(|p| (p, self.pulsar_args.topic(check_topic)));
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
            shutdown,
        }
    }
}

/// A serving process to which consumers and loops are added.
pub struct Running {
    parts: Parts,
    pulsar: Option<Pulsar<TokioExecutor>>,
    shutdown: CancellationToken,
}

impl Running {
    /// Runs `handler` on `subscription` as the part named `part`.
    pub fn consume<H: Handler>(
        &mut self,
        part: &'static str,
        subscription: Subscription,
        handler: H,
    ) -> anyhow::Result<()> {
        let pulsar = self.pulsar.clone().ok_or_else(|| {
            anyhow::anyhow!("{part} needs Pulsar, but the service was started without it")
        })?;
        let token = self.shutdown.clone();
        self.parts.spawn(part, async move {
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
