//! `platform`: the operator's command line.
//!
//! `platform tail --topic campaign-events` subscribes to a topic and prints each message as one
//! JSON line: key, properties and the protobuf envelope decoded to proto3 JSON.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use futures::TryStreamExt as _;
use prost::Message as _;

use affiliate_proto::campaign::{CampaignCommand, CampaignEvent};
use service_runtime::config::{PulsarArgs, parse_duration};

#[derive(Debug, clap::Parser)]
#[command(name = "platform", version, about = "Operate the affiliate platform")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print messages of a topic as JSON lines (key, properties, decoded envelope).
    Tail(TailArgs),
}

#[derive(Debug, clap::Args)]
struct TailArgs {
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Tail(args) => tail(args).await,
    }
}

async fn tail(args: TailArgs) -> anyhow::Result<()> {
    let topic = args.pulsar.topic(&args.topic);
    let client = messaging::connect(&args.pulsar).await?;
    let mut consumer: pulsar::Consumer<Vec<u8>, _> = client
        .consumer()
        .with_topic(&topic)
        .with_subscription(format!("platform-tail-{}", uuid::Uuid::new_v4().simple()))
        .with_subscription_type(pulsar::SubType::Exclusive)
        .with_options(pulsar::ConsumerOptions {
            durable: Some(false),
            initial_position: if args.from_earliest {
                pulsar::consumer::InitialPosition::Earliest
            } else {
                pulsar::consumer::InitialPosition::Latest
            },
            ..Default::default()
        })
        .build()
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
        let properties: serde_json::Map<String, serde_json::Value> = message
            .metadata()
            .properties
            .iter()
            .map(|kv| (kv.key.clone(), serde_json::Value::String(kv.value.clone())))
            .collect();
        let line = serde_json::json!({
            "topic": topic,
            "key": message.key(),
            "properties": properties,
            "envelope": decode(&args.topic, &message.payload.data),
        });
        writeln!(stdout, "{line}").context("write stdout")?;
        seen += 1;
    }
    Ok(())
}

/// The envelope as proto3 JSON, by topic; undecodable payloads are shown as an error and size.
fn decode(short_topic: &str, payload: &[u8]) -> serde_json::Value {
    let decoded = match short_topic {
        "campaign-events" => CampaignEvent::decode(payload).map(|m| serde_json::to_value(m).ok()),
        "campaign-commands" => {
            CampaignCommand::decode(payload).map(|m| serde_json::to_value(m).ok())
        }
        _ => return serde_json::json!({ "undecoded_bytes": payload.len() }),
    };
    match decoded {
        Ok(Some(value)) => value,
        Ok(None) => serde_json::json!({ "error": "not representable as JSON" }),
        Err(e) => {
            serde_json::json!({ "error": format!("not a valid envelope: {e}"), "bytes": payload.len() })
        }
    }
}
