//! `platform tail`: print a topic's messages as JSON lines (key, properties, decoded envelope).
//! Each envelope is decoded by the schema registry (the message's own schema version, as a client
//! in another language would); a message written without a schema is decoded by the compiled
//! types of its topic.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use futures::TryStreamExt as _;

use service_runtime::config::{PulsarArgs, parse_duration};

use crate::registry::{AdminUrl, Registry, version};
use messaging::decode;

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
    #[command(flatten)]
    admin: AdminUrl,
}

pub async fn run(args: TailArgs) -> anyhow::Result<()> {
    let topic = args.pulsar.topic(&args.topic);
    let mut registry = Registry::new(args.admin.admin(&args.pulsar)?, &topic);
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
        let payload = &message.payload.data;
        let written_with = message
            .metadata()
            .schema_version
            .as_deref()
            .and_then(version);
        let by_registry = match written_with {
            Some(v) => registry.decode(v, payload).await?,
            None => None,
        };
        let (schema, envelope) = match by_registry {
            Some(envelope) => (
                serde_json::json!({ "registry_version": written_with }),
                envelope,
            ),
            None => (
                serde_json::json!("compiled"),
                decode::envelope(&args.topic, payload),
            ),
        };
        let line = serde_json::json!({
            "topic": topic,
            "key": message.key(),
            "properties": properties,
            "schema": schema,
            "envelope": envelope,
        });
        writeln!(stdout, "{line}").context("write stdout")?;
        seen += 1;
    }
    Ok(())
}
