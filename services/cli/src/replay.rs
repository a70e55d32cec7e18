//! `platform replay analytics`: drop the analytics service's projections and rebuild them from
//! every topic's earliest retained message, then wait until it has caught up and say how long
//! the replay took and how many messages it processed.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use tonic::Request;

use affiliate_proto::analytics::analytics_service_client::AnalyticsServiceClient;
use affiliate_proto::analytics::{GetReplayStatusRequest, GetReplayStatusResponse, ReplayRequest};

/// What to replay.
#[derive(Debug, clap::Subcommand)]
pub enum ReplayCommand {
    /// The analytics service's statistics (the audit trail keeps what it has).
    Analytics(ReplayArgs),
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The analytics service's gRPC URL.
    #[arg(
        long,
        env = "ANALYTICS_GRPC_URL",
        default_value = "http://127.0.0.1:50056"
    )]
    pub analytics_url: String,
    /// How long to wait for it to catch up.
    #[arg(long, default_value = "10m", value_parser = service_runtime::config::parse_duration)]
    pub timeout: Duration,
    /// Do not wait: start the replay and return.
    #[arg(long)]
    pub no_wait: bool,
}

fn applied(status: &GetReplayStatusResponse) -> i64 {
    status.topics.iter().map(|t| t.applied).sum()
}

pub async fn run(command: ReplayCommand) -> anyhow::Result<()> {
    let ReplayCommand::Analytics(args) = command;
    let mut client = AnalyticsServiceClient::connect(args.analytics_url.clone())
        .await
        .with_context(|| format!("connect to the analytics service at {}", args.analytics_url))?;
    let before = client
        .get_replay_status(Request::new(GetReplayStatusRequest {}))
        .await
        .context("read the analytics service's status")?
        .into_inner();
    let started = Instant::now();
    let replay = client
        .replay(Request::new(ReplayRequest {}))
        .await
        .context("start the replay")?
        .into_inner();
    eprintln!(
        "replay started: projections dropped, {} subscriptions moved to their earliest message",
        replay.subscriptions.len()
    );
    if args.no_wait {
        return Ok(());
    }
    let deadline = started + args.timeout;
    // Give the broker a moment to count the rewound backlog before "caught up" can be believed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    loop {
        let status = client
            .get_replay_status(Request::new(GetReplayStatusRequest {}))
            .await
            .context("read the replay's status")?
            .into_inner();
        let behind: i64 = status.topics.iter().map(|t| t.backlog.max(0)).sum();
        if status.caught_up {
            let messages = applied(&status) - applied(&before);
            let took = started.elapsed();
            #[allow(clippy::cast_precision_loss)]
            let rate = messages as f64 / took.as_secs_f64().max(f64::EPSILON);
            let line = serde_json::json!({
                "replayed": "analytics",
                "messages_processed": messages,
                "seconds": (took.as_secs_f64() * 1000.0).round() / 1000.0,
                "messages_per_second": rate.round(),
            });
            #[allow(clippy::print_stdout)]
            {
                println!("{line}");
            }
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the analytics service has not caught up within {:?}: {behind} messages behind",
            args.timeout
        );
        eprintln!("replaying: {behind} messages behind");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
