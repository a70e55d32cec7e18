//! `platform dlq`: inspect and redrive dead letters.
//!
//! Every command reads a dead-letter topic through one durable subscription, `platform-dlq`,
//! starting at the oldest retained letter. `list` and `show` leave what they read unacknowledged,
//! so it is there next time; `redrive` republishes a letter to the topic it died on (same key,
//! payload and properties, so consumers still deduplicate it by its message id), waits for the
//! broker's receipt, and only then acknowledges it, so a redriven letter is neither lost nor listed
//! again.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use pulsar::consumer::Message;
use pulsar::{Consumer, Pulsar, TokioExecutor};

use messaging::properties::{
    CORRELATION_ID, MESSAGE_ID, MESSAGE_TYPE, ORIGIN_MESSAGE_ID, REAL_TOPIC,
};
use service_runtime::config::{PulsarArgs, parse_duration};

use crate::registry::AdminUrl;
use messaging::decode;
use messaging::properties::get as property;

/// The subscription through which operators read dead letters.
pub const SUBSCRIPTION: &str = "platform-dlq";

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// The dead-letter topics of the namespace.
    Topics(Common),
    /// One JSON line per dead letter waiting on a topic.
    List(Select),
    /// One dead letter in full, its envelope decoded.
    Show(Select),
    /// Republish dead letters to the topic they died on, then remove them from the dead-letter topic.
    Redrive(Select),
}

#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    #[command(flatten)]
    pulsar: PulsarArgs,
    #[command(flatten)]
    admin: AdminUrl,
    /// How long without a new letter means the end of the topic.
    #[arg(long, env = "DLQ_IDLE", default_value = "2s", value_parser = parse_duration)]
    idle: Duration,
    /// How long a letter waits for an operator once this tool has read its topic: the topic's
    /// message TTL, which expires letters the `platform-dlq` subscription holds (the namespace's
    /// retention then deletes them; it never deletes what a subscription holds).
    #[arg(long, env = "DLQ_LETTER_TTL", default_value = "7d", value_parser = parse_duration)]
    letter_ttl: Duration,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Select {
    /// The dead-letter topic, short (campaign-commands-campaign-DLQ) or full.
    #[arg(long)]
    topic: String,
    /// Only the letter with this `message-id` property (or broker id `ledger:entry`).
    #[arg(long)]
    message_id: Option<String>,
    /// Every letter (redrive only; list shows every letter anyway).
    #[arg(long, conflicts_with = "message_id")]
    all: bool,
    /// At most this many letters.
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    #[command(flatten)]
    common: Common,
}

pub async fn run(command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::Topics(common) => topics(&common).await,
        DlqCommand::List(select) => list(&select, false).await,
        DlqCommand::Show(select) => {
            anyhow::ensure!(select.message_id.is_some(), "show needs --message-id");
            list(&select, true).await
        }
        DlqCommand::Redrive(select) => {
            anyhow::ensure!(
                select.message_id.is_some() || select.all,
                "redrive needs --message-id ID or --all"
            );
            redrive(&select).await
        }
    }
}

impl Common {
    /// The admin API, with the broker's CA and the same token (or OAuth2 client) as the binary
    /// protocol.
    fn admin(&self) -> anyhow::Result<messaging::admin::Admin> {
        self.admin.admin(&self.pulsar)
    }
}

/// The dead-letter topics of the namespace (full names), from the admin API.
async fn dead_letter_topics(common: &Common) -> anyhow::Result<Vec<String>> {
    let path = format!(
        "/admin/v2/persistent/{}/{}",
        common.pulsar.tenant, common.pulsar.namespace
    );
    let (status, body) = common.admin()?.request("GET", &path, "").await?;
    anyhow::ensure!(status == 200, "listing topics failed: HTTP {status} {body}");
    let names: Vec<String> =
        serde_json::from_str(&body).with_context(|| format!("unexpected topic list: {body}"))?;
    Ok(names.into_iter().filter(|n| n.ends_with("-DLQ")).collect())
}

async fn topics(common: &Common) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    for name in dead_letter_topics(common).await? {
        writeln!(stdout, "{name}")?;
    }
    Ok(())
}

/// Sets the dead-letter topic's message TTL to `--letter-ttl`, so that the letters the
/// `platform-dlq` subscription holds do not wait forever.
async fn keep_letters_for(common: &Common, topic: &str) -> anyhow::Result<()> {
    let path = format!(
        "/admin/v2/persistent/{}/messageTTL?messageTTL={}",
        topic.trim_start_matches("persistent://"),
        common.letter_ttl.as_secs().max(1)
    );
    let (status, body) = common.admin()?.request("POST", &path, "").await?;
    anyhow::ensure!(
        matches!(status, 200 | 204),
        "setting the message TTL of {topic} failed: HTTP {status} {body}"
    );
    Ok(())
}

fn full_topic(select: &Select) -> String {
    if select.topic.contains("://") {
        select.topic.clone()
    } else {
        select.common.pulsar.topic(&select.topic)
    }
}

/// Reads up to `limit` letters (all, or only those matching `--message-id`) through the
/// `platform-dlq` subscription; the caller acknowledges or leaves them.
async fn read(
    select: &Select,
) -> anyhow::Result<(
    Pulsar<TokioExecutor>,
    Consumer<Vec<u8>, TokioExecutor>,
    Vec<Message<Vec<u8>>>,
)> {
    let topic = full_topic(select);
    // Subscribing would create a mistyped topic for good: refuse topics that do not exist.
    let known = dead_letter_topics(&select.common).await?;
    anyhow::ensure!(
        known.contains(&topic),
        "{topic} is not a dead-letter topic of this namespace (see `platform dlq topics`)"
    );
    keep_letters_for(&select.common, &topic).await?;
    let client = messaging::connect(&select.common.pulsar).await?;
    let mut consumer: Consumer<Vec<u8>, TokioExecutor> = client
        .consumer()
        .with_topic(&topic)
        .with_subscription(SUBSCRIPTION)
        .with_subscription_type(pulsar::SubType::Shared)
        .with_options(pulsar::ConsumerOptions {
            durable: Some(true),
            initial_position: pulsar::consumer::InitialPosition::Earliest,
            ..Default::default()
        })
        .build()
        .await
        .with_context(|| format!("subscribe `{SUBSCRIPTION}` to {topic}"))?;
    let mut letters = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while letters.len() < select.limit {
        use futures::TryStreamExt as _;
        let next = match tokio::time::timeout(select.common.idle, consumer.try_next()).await {
            Err(_) => break, // idle: the end of the topic
            Ok(next) => next.context("receive a dead letter")?,
        };
        let Some(message) = next else { break };
        let id = broker_id(&message);
        if !seen.insert(id.clone()) {
            break; // the subscription came round again
        }
        let matches = select.message_id.as_deref().is_none_or(|wanted| {
            wanted == id || property(&message, MESSAGE_ID).as_deref() == Some(wanted)
        });
        if matches {
            letters.push(message);
            if select.message_id.is_some() {
                break; // message ids are unique: no need to read on
            }
        }
    }
    Ok((client, consumer, letters))
}

fn broker_id(message: &Message<Vec<u8>>) -> String {
    let id = message.message_id();
    format!("{}:{}", id.ledger_id, id.entry_id)
}

fn summary(message: &Message<Vec<u8>>, full: bool) -> serde_json::Value {
    let properties: BTreeMap<String, String> = messaging::properties::all(message);
    let real_topic = property(message, REAL_TOPIC).unwrap_or_default();
    let mut line = serde_json::json!({
        "broker_id": broker_id(message),
        "message_id": property(message, MESSAGE_ID),
        "message_type": property(message, MESSAGE_TYPE),
        "key": message.key(),
        "real_topic": real_topic,
        "origin_message_id": property(message, ORIGIN_MESSAGE_ID),
        "correlation_id": property(message, CORRELATION_ID),
        "publish_time_ms": message.metadata().publish_time,
        "payload_bytes": message.payload.data.len(),
    });
    if full {
        line["properties"] = serde_json::json!(properties);
        line["envelope"] = decode::envelope(&real_topic, &message.payload.data);
    }
    line
}

async fn list(select: &Select, full: bool) -> anyhow::Result<()> {
    let (_client, consumer, letters) = read(select).await?;
    let mut stdout = std::io::stdout().lock();
    for letter in &letters {
        let line = summary(letter, full);
        if full {
            writeln!(stdout, "{}", serde_json::to_string_pretty(&line)?)?;
        } else {
            writeln!(stdout, "{line}")?;
        }
    }
    drop(consumer); // nothing acknowledged: the letters stay for next time
    if letters.is_empty() && select.message_id.is_some() {
        anyhow::bail!("no dead letter with that id on {}", full_topic(select));
    }
    Ok(())
}

async fn redrive(select: &Select) -> anyhow::Result<()> {
    let (client, mut consumer, letters) = read(select).await?;
    let dlq = full_topic(select);
    // Check every letter before republishing any, so a bad one cannot stop a redrive half-way.
    let targets: Vec<String> = letters
        .iter()
        .map(|l| {
            property(l, REAL_TOPIC)
                .with_context(|| format!("letter {} has no {REAL_TOPIC} property", broker_id(l)))
        })
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(!letters.is_empty(), "no matching dead letter on {dlq}");
    let result = async {
        let mut stdout = std::io::stdout().lock();
        for (letter, target) in letters.iter().zip(&targets) {
            let metadata = letter.metadata();
            let mut properties: HashMap<String, String> = messaging::properties::all(letter);
            properties.remove(REAL_TOPIC);
            properties.remove(ORIGIN_MESSAGE_ID);
            properties.insert("redriven-from".into(), dlq.clone());
            properties.insert("redriven-at-ms".into(), unix_ms().to_string());
            let copy = pulsar::producer::Message {
                payload: letter.payload.data.clone(),
                properties,
                partition_key: metadata.partition_key.clone(),
                partition_key_b64_encoded: metadata.partition_key_b64_encoded,
                ordering_key: metadata.ordering_key.clone(),
                event_time: metadata.event_time,
                ..Default::default()
            };
            client
                .send(target.as_str(), copy)
                .await
                .with_context(|| format!("republish to {target}"))?
                .await
                .with_context(|| format!("broker receipt from {target}"))?;
            consumer
                .ack(letter)
                .await
                .context("remove the redriven letter from the dead-letter topic")?;
            writeln!(
                stdout,
                "{}",
                serde_json::json!({ "redriven": summary(letter, false), "to": target })
            )?;
        }
        anyhow::Ok(())
    }
    .await;
    // Closing goes through the same connection after the acknowledgements, so they reach the
    // broker before the process exits, on success and on failure alike.
    let closed = consumer
        .close()
        .await
        .context("close the dead-letter subscription");
    result.and(closed.map(drop))
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}
