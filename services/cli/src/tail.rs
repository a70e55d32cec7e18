//! `platform tail`: print a topic's messages as JSON lines (key, properties, decoded envelope).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use futures::TryStreamExt as _;

use service_runtime::config::{PulsarArgs, parse_duration};

use crate::decode;

#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// Short topic name, e.g. campaign-events or campaign-commands.
    #[arg(long)]
    topic: String,
    /// Start from the oldest retained message instead of the next new one.
    #[arg(long)]
    from_earliest: bool,
    /// Stop after this many messages (0 = never).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Stop after this long without the requested count (e.g. 30s; default: wait forever).
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    #[command(flatten)]
    pulsar: PulsarArgs,
}

pub async fn run(args: TailArgs) -> anyhow::Result<()> {
    let topic = args.pulsar.topic(&args.topic);
    let client = messaging::connect(&args.pulsar).await?;
    let start = if args.from_earliest {
        pulsar::consumer::InitialPosition::Earliest
    } else {
        pulsar::consumer::InitialPosition::Latest
    };
    let mut consumer = messaging::watch(&client, &topic, "platform-tail", start)
        .await
        .with_context(|| format!("subscribe to {topic}"))?;
    eprintln!("subscribed to {topic}");
    let deadline = args.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut seen = 0u64;
    let mut stdout = std::io::stdout().lock();
    while args.count == 0 || seen < args.count {
        let next = consumer.try_next();
        let message = match deadline {
            Some(at) => tokio::time::timeout_at(at, next)
                .await
                .map_err(|_| anyhow::anyhow!("timed out after {seen} message(s) on {topic}"))?,
            None => next.await,
        }
        .context("receive")?
        .ok_or_else(|| anyhow::anyhow!("subscription to {topic} ended"))?;
        consumer.ack(&message).await.context("ack")?;
        let properties: BTreeMap<String, String> = messaging::properties::all(&message);
        let line = serde_json::json!({
            "topic": topic,
            "key": message.key(),
            "properties": properties,
            "envelope": decode::envelope(&args.topic, &message.payload.data),
        });
        writeln!(stdout, "{line}").context("write stdout")?;
        seen += 1;
    }
    Ok(())
}
