//! The service kit: a service declares what it is ([`Declaration`]: its name, its migrations,
//! its configuration, and a [`Wiring`] of the API it serves, its command door, the feeds it
//! consumes and the loops it runs) and the kit does the rest, once for every service: the
//! flags every service shares ([`ServiceFlags`]), [`Application::build`] and
//! [`Application::run_until_stopped`], the `Service` impl the process and the tests run, and the
//! process's `main`.

use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;

use futures::future::BoxFuture;
use messaging::Handler;
use messaging::door::{CommandDoor, Door};
use service_runtime::app::Service;
use service_runtime::config::{
    ConsumerArgs, DatabaseArgs, GrpcArgs, LogArgs, Mode, PulsarArgs, RetentionArgs,
};
use service_runtime::outbox::commands_topic;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::service::Routes;

use crate::{Host, Running, ServiceArgs};

/// The flags every service takes, flattened into its `Config` (`#[command(flatten)]`); each also
/// reads its environment variable. A service changes a default with clap's `mut_arg` (e.g.
/// `mut_arg("mode", |a| a.default_value("hybrid"))`).
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceFlags {
    /// Which doors to open: grpc (the API), events (the service's command topic) or hybrid (both).
    #[arg(long, env = "MODE", value_enum, default_value = "grpc")]
    pub mode: Mode,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub grpc: GrpcArgs,
    #[command(flatten)]
    pub pulsar: PulsarArgs,
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// A service's configuration: the flags every service takes and its own (`F`, [`NoFlags`] when
/// it has none). Its command line is [`command`]: this, named and defaulted by the declaration.
#[derive(Debug, Clone, clap::Parser)]
pub struct Config<F: clap::Args> {
    #[command(flatten)]
    pub service: ServiceFlags,
    #[command(flatten)]
    pub own: F,
}

/// The own flags of a service that has none.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct NoFlags {}

/// What a service is. Its `lib.rs` implements this on a unit type and names the result
/// `pub type Application = service_host::kit::Application<ThatType>;`.
pub trait Declaration: Send + Sync + 'static {
    /// The process name, e.g. `campaign-service` (logs, status, traces, `--help`).
    const NAME: &'static str;
    /// The short name its topics are named after: `{SERVICE}-commands`, `{SERVICE}-events`.
    const SERVICE: &'static str;
    /// What it does, in a line (`--help`).
    const ABOUT: &'static str;
    /// Where its gRPC server listens unless told otherwise (`--grpc-listen`).
    const LISTEN: &'static str;
    /// The mode it runs in unless told otherwise, and what the modes mean for it (`--mode`).
    const MODE: (Mode, Option<&'static str>) = (Mode::Grpc, None);
    /// Its own tables (the platform tables come from the runtime): `&sqlx::migrate!(...)`.
    const MIGRATOR: &'static Migrator;
    /// Its own flags, beside [`ServiceFlags`]: a `clap::Args` struct, or [`NoFlags`].
    type Flags: clap::Args + Clone + Send + Sync + 'static;
    /// Whether the process connects to Pulsar in `mode`: by default when it consumes its
    /// command topic; a service that consumes feeds or runs its door in every mode says so.
    fn needs_pulsar(mode: Mode) -> bool {
        mode.consumes_commands()
    }
    /// The topic the dependency checks look up on the broker: its command topic by default.
    fn check_topic() -> String {
        commands_topic(Self::SERVICE)
    }
    /// Its parts, built on its database pool.
    fn wire(config: &Config<Self::Flags>, kit: &Kit) -> anyhow::Result<Wiring>;
}

/// The command line of service `D`: [`Config`] under the declared name, description and defaults.
pub fn command<D: Declaration>() -> clap::Command {
    use clap::CommandFactory as _;
    let (mode, mode_help) = D::MODE;
    Config::<D::Flags>::command()
        .name(D::NAME)
        .bin_name(D::NAME)
        .about(D::ABOUT)
        .mut_arg("listen", |arg| arg.default_value(D::LISTEN))
        .mut_arg("mode", |arg| {
            let arg = arg.default_value(mode.as_str());
            match mode_help {
                Some(help) => arg.help(help),
                None => arg,
            }
        })
}

/// For a service's unit tests: its command line passes clap's consistency checks, and with only a
/// database URL it comes out in the declared default mode, listening on the declared address.
///
/// # Panics
///
/// When either does not hold (it is a test).
pub fn check_declaration<D: Declaration>() {
    check_declaration_with::<D>(&[]);
}

/// [`check_declaration`] for a service with flags of its own that have no default: `required`
/// gives them (e.g. `["--secret-keys", "…"]`).
///
/// # Panics
///
/// As [`check_declaration`].
pub fn check_declaration_with<D: Declaration>(required: &[&str]) {
    command::<D>().debug_assert();
    let mut args = vec![D::NAME, "--database-url", "postgres://x@h/db"];
    args.extend_from_slice(required);
    let config = parse_from::<D, _, _>(args).unwrap_or_else(|e| panic!("{}: {e}", D::NAME));
    assert_eq!(
        (config.service.mode, config.service.grpc.listen.to_string()),
        (D::MODE.0, D::LISTEN.to_owned()),
        "{}",
        D::NAME
    );
}

/// Parses the command line `args` (the first is the program's name) of service `D`.
pub fn parse_from<D: Declaration, I, T>(args: I) -> Result<Config<D::Flags>, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::FromArgMatches as _;
    let matches = command::<D>().try_get_matches_from(args)?;
    Config::from_arg_matches(&matches)
}

/// What a service gets to build its parts from.
#[derive(Debug, Clone)]
pub struct Kit {
    pub pool: PgPool,
    pub mode: Mode,
    /// Cancelled when the process stops.
    pub shutdown: CancellationToken,
    /// The process's status board (what `GetStatus` answers).
    pub board: service_runtime::status::StatusBoard,
}

type Attach = Box<dyn FnOnce(&mut Running) -> anyhow::Result<()> + Send>;
type AttachDoor = Box<dyn FnOnce(&mut Running, &'static str, PgPool) -> anyhow::Result<()> + Send>;
type Task = Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, anyhow::Result<()>> + Send>;

/// A service's parts: the API, the command door, the feeds and the loops.
#[derive(Default)]
#[must_use]
pub struct Wiring {
    api: Option<(Routes, &'static str)>,
    door: Option<(DoorOpen, AttachDoor)>,
    feeds: Vec<Attach>,
    loops: Vec<(&'static str, Task)>,
}

/// When the command door consumes its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DoorOpen {
    /// In `events` and `hybrid` mode.
    ByMode,
    /// In every mode (other services address this one through it).
    Always,
}

impl Wiring {
    pub fn new() -> Self {
        Self::default()
    }

    /// The gRPC API, served unless the mode is `events`.
    pub fn api<S>(mut self, server: S) -> Self
    where
        S: tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.api = Some((Routes::new(server), S::NAME));
        self
    }

    /// The command door on `{SERVICE}-commands` (subscription `{SERVICE}`), consumed in `events`
    /// and `hybrid` mode.
    pub fn door<D: CommandDoor>(self, door: D) -> Self {
        self.with_door(DoorOpen::ByMode, door)
    }

    /// The command door, consumed in every mode.
    pub fn door_in_every_mode<D: CommandDoor>(self, door: D) -> Self {
        self.with_door(DoorOpen::Always, door)
    }

    fn with_door<D: CommandDoor>(mut self, open: DoorOpen, door: D) -> Self {
        let attach: AttachDoor = Box::new(move |running, service, pool| {
            let subscription = running.subscription(&commands_topic(service), service);
            running.consume("command consumer", subscription, Door::new(door, pool))
        });
        self.door = Some((open, attach));
        self
    }

    /// A feed: `handler` consumes the short `topic` as the subscription `subscription`, in every
    /// mode, as the part named `part`.
    pub fn feed<H: Handler>(
        mut self,
        part: &'static str,
        topic: &str,
        subscription: &'static str,
        handler: H,
    ) -> Self {
        let topic = topic.to_owned();
        self.feeds.push(Box::new(move |running| {
            let subscription = running.subscription(&topic, subscription);
            running.consume(part, subscription, handler)
        }));
        self
    }

    /// A loop of the service's own, given the token it stops on, as the part named `part`.
    pub fn run<F, Fut>(mut self, part: &'static str, task: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.loops
            .push((part, Box::new(move |token| Box::pin(task(token)))));
        self
    }
}

/// A built service: database migrated, gRPC listener bound; Pulsar is connected in the
/// background once serving, when the mode needs it.
pub struct Application<D: Declaration> {
    host: Host,
    config: Config<D::Flags>,
    declared: PhantomData<D>,
}

impl<D: Declaration> Application<D> {
    /// Connects and migrates the database and binds the gRPC listener.
    pub async fn build(config: Config<D::Flags>) -> anyhow::Result<Self> {
        let flags = &config.service;
        let args = ServiceArgs {
            name: D::NAME,
            mode: flags.mode,
            database: &flags.database,
            grpc: &flags.grpc,
            pulsar: &flags.pulsar,
            consumer: &flags.consumer,
            retention: &flags.retention,
        };
        let host = Host::start(args, D::MIGRATOR, D::needs_pulsar(flags.mode)).await?;
        Ok(Self {
            host,
            config,
            declared: PhantomData,
        })
    }

    /// The bound gRPC address (health, status and reflection in every mode; the API unless
    /// `events`).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.host.grpc_addr()
    }

    /// Serves until `shutdown` is cancelled or a part fails, then stops every part: the gRPC
    /// server drains within the configured grace, the consumers stop between messages.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mode = self.config.service.mode;
        let kit = Kit {
            pool: self.host.pool.clone(),
            mode,
            shutdown: shutdown.clone(),
            board: self.host.board.clone(),
        };
        let wiring = D::wire(&self.config, &kit)?;
        let api = if mode.serves_grpc() { wiring.api } else { None };
        let mut running = self.host.serve(api, &D::check_topic(), shutdown);
        if let Some((open, attach)) = wiring.door
            && (open == DoorOpen::Always || mode.consumes_commands())
        {
            attach(&mut running, D::SERVICE, kit.pool.clone())?;
        }
        for attach in wiring.feeds {
            attach(&mut running)?;
        }
        for (part, task) in wiring.loops {
            let token = running.token();
            running.spawn(part, task(token));
        }
        running.supervise().await
    }
}

impl<D: Declaration> Service for Application<D> {
    fn grpc_addr(&self) -> SocketAddr {
        Application::grpc_addr(self)
    }

    async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        Application::run_until_stopped(self, shutdown).await
    }
}

/// The whole of a service's `main`: parse the command line (`--version` says `version`,
/// `build_info::VERSION` in the binary), then logs, build, serve until SIGINT/SIGTERM.
pub async fn main<D: Declaration>(version: &'static str) -> anyhow::Result<()> {
    let config: Config<D::Flags> = service_runtime::app::parse_command(command::<D>(), version);
    let log = config.service.log.clone();
    service_runtime::app::main(D::NAME, &log, Application::<D>::build(config)).await
}
