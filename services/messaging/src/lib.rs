//! Consuming Pulsar topics effectively once.
//!
//! A [`Handler`] gets each [`Delivery`] and applies it in ONE database transaction that also
//! records the message id (the [`inbox`], or the idempotency record for commands), so a
//! redelivered message is skipped. The [`consumer`] loop sorts failures: a message that can
//! never succeed is acknowledged (the handler has recorded it and published a rejection);
//! a transient failure is negatively acknowledged after a back-off; after N redeliveries the
//! message goes to the subscription's dead-letter topic, where `platform dlq` finds it.

pub mod admin;
pub mod auth;
pub mod campaign_copy;
pub mod consumer;
pub mod decode;
pub mod door;
pub mod health;
pub mod inbox;
pub mod schema;

use std::time::Duration;

use anyhow::Context as _;
use pulsar::{Pulsar, TokioExecutor};
use service_runtime::config::PulsarArgs;
use tokio_util::sync::CancellationToken;

pub use consumer::{Delivery, Failure, Handler, Subscription, run_consumer};

/// Pending sends allowed per producer before `send_non_blocking` waits.
const OUTBOUND_QUEUE: usize = 1000;

/// How the client retries a broker connection that failed: 50 ms doubling up to 1 s, 8 tries
/// (about 4.5 s), where pulsar-rs's default is 12 tries doubling up to 30 s (about 41 s). A
/// consumer or producer whose broker died retries only the address its last lookup gave (a
/// lookup made while the dead broker still owned the topic); once these tries are spent, the
/// consumer loop subscribes again and the relay makes a new producer, each with a fresh lookup
/// that finds the broker which took the topic over. With the default, that took 41 s.
fn connection_retry() -> pulsar::ConnectionRetryOptions {
    pulsar::ConnectionRetryOptions {
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(1),
        max_retries: 8,
        ..Default::default()
    }
}

/// How the client retries an operation the broker answered "not ready" (a lookup or subscribe
/// while a topic's new owner is still loading it after a failover): every 250 ms, where the
/// default waits 5 s, so a consumer resumes as soon as the topic is served again.
fn operation_retry() -> pulsar::OperationRetryOptions {
    pulsar::OperationRetryOptions {
        retry_delay: Duration::from_millis(250),
        ..Default::default()
    }
}

fn builder(args: &PulsarArgs) -> anyhow::Result<pulsar::PulsarBuilder<TokioExecutor>> {
    let mut builder = Pulsar::builder(args.url.clone(), TokioExecutor)
        .with_outbound_channel_size(OUTBOUND_QUEUE)
        .with_connection_retry_options(connection_retry())
        .with_operation_retry_options(operation_retry());
    if let Some(ca) = &args.tls_ca_file {
        builder = builder
            .with_certificate_chain_file(ca)
            .with_context(|| format!("read the broker's CA certificates from {}", ca.display()))?;
    }
    if let Some(token) = &args.token {
        use secrecy::ExposeSecret as _;
        builder = builder.with_auth(pulsar::Authentication {
            name: "token".into(),
            data: token.expose_secret().trim().as_bytes().to_vec(),
        });
    } else if let Some(path) = &args.token_file {
        // Read once now, so that a missing or empty file is a clear error at start.
        auth::TokenFile::read(path)?;
        builder = builder.with_auth_provider(Box::new(auth::TokenFile::new(path.clone())));
    } else if let Some(oauth2) = auth::oauth2(&args.oauth2)? {
        builder = builder.with_auth_provider(oauth2);
    }
    Ok(builder)
}

/// One attempt to connect the Pulsar client, bounded by the connect timeout; the error says what
/// to check.
pub async fn connect_once(args: &PulsarArgs) -> anyhow::Result<Pulsar<TokioExecutor>> {
    service_runtime::tls::install_crypto_provider();
    let error = match tokio::time::timeout(args.connect_timeout, builder(args)?.build()).await {
        Ok(Ok(client)) => return Ok(client),
        Ok(Err(error)) => error,
        Err(_) => anyhow::bail!(
            "no answer from Pulsar at {} within {:?} (is it running? `deploy/local/infra.sh up` starts it)",
            args.url,
            args.connect_timeout
        ),
    };
    let secured = args.tls_ca_file.is_some()
        || args.token.is_some()
        || args.token_file.is_some()
        || args.oauth2.issuer_url.is_some();
    Err(anyhow::Error::new(error)).with_context(|| {
        if secured || args.url.starts_with("pulsar+ssl://") {
            // pulsar-rs reports a refused certificate and a refused token alike.
            format!(
                "connect to Pulsar at {} (a TLS or authentication failure: check the URL's scheme and port, \
                 PULSAR_TLS_CA_FILE, the token and its expiry or the OAuth2 issuer and credentials; the \
                 broker's log says which)",
                args.url
            )
        } else {
            format!("connect to Pulsar at {}", args.url)
        }
    })
}

/// Connects the Pulsar client, trying again every second until the connect timeout (a broker
/// that is starting refuses connections for a while); then the last error. For tools that should
/// give up.
pub async fn connect(args: &PulsarArgs) -> anyhow::Result<Pulsar<TokioExecutor>> {
    let deadline = tokio::time::Instant::now() + args.connect_timeout;
    loop {
        let attempt = PulsarArgs {
            connect_timeout: deadline.saturating_duration_since(tokio::time::Instant::now()),
            ..args.clone()
        };
        match connect_once(&attempt).await {
            Ok(client) => return Ok(client),
            Err(error) if tokio::time::Instant::now() + Duration::from_secs(1) >= deadline => {
                return Err(error);
            }
            Err(error) => {
                tracing::debug!(url = %args.url, error = format!("{error:#}"), "Pulsar connection failed; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The longest wait between two connection attempts of a long-running process.
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// The waits between connection attempts: 1 s doubling to 15 s, each plus a random part of up to
/// as much again (backon's jitter), so at most [`RECONNECT_MAX`]; every process of the platform
/// reconnecting after the same broker restart does not knock at the same instant.
pub fn reconnect_delays() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder as _;
    backon::ExponentialBuilder::new()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(RECONNECT_MAX / 2)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Connects the Pulsar client for a long-running process: tries again after each failure
/// ([`reconnect_delays`]: 1 s doubling to 15–30 s) for as long as it takes, so a broker that is down or refuses the
/// credentials never makes the process exit and restart in a loop. Each failure is logged with
/// what to check and handed to `failed` (a status board shows it). `None` at shutdown.
pub async fn connect_persistently(
    args: &PulsarArgs,
    shutdown: &CancellationToken,
    mut failed: impl FnMut(&anyhow::Error),
) -> Option<Pulsar<TokioExecutor>> {
    let mut failures = 0u32;
    let mut delays = reconnect_delays();
    loop {
        let attempt = tokio::select! {
            attempt = connect_once(args) => attempt,
            () = shutdown.cancelled() => return None,
        };
        let error = match attempt {
            Ok(client) => {
                if failures > 0 {
                    tracing::info!(url = %args.url, failures, "connected to Pulsar");
                }
                return Some(client);
            }
            Err(error) => error,
        };
        failures = failures.saturating_add(1);
        let delay = delays.next().unwrap_or(RECONNECT_MAX);
        tracing::error!(
            url = %args.url,
            error = format!("{error:#}"),
            attempt = failures,
            retry_in_ms = delay.as_millis() as u64,
            "cannot connect to Pulsar; trying again"
        );
        failed(&error);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return None,
        }
    }
}

/// A watcher's consumer on `topic`: a non-durable Exclusive subscription of its own (named
/// `{name}-{uuid}`, gone when it closes), starting at `start`. Tools and tests that look at a
/// topic without taking part in its work use it (`platform tail`, `platform load`).
pub async fn watch(
    client: &Pulsar<TokioExecutor>,
    topic: &str,
    name: &str,
    start: pulsar::consumer::InitialPosition,
) -> Result<pulsar::Consumer<Vec<u8>, TokioExecutor>, pulsar::Error> {
    client
        .consumer()
        .with_topic(topic)
        .with_subscription(format!("{name}-{}", uuid::Uuid::new_v4().simple()))
        .with_subscription_type(pulsar::SubType::Exclusive)
        .with_options(pulsar::ConsumerOptions {
            durable: Some(false),
            initial_position: start,
            ..Default::default()
        })
        .build()
        .await
}

/// Message property names shared by the relay (which sets them) and consumers.
pub mod properties {
    pub const MESSAGE_TYPE: &str = "message-type";
    pub const MESSAGE_ID: &str = "message-id";
    pub const CORRELATION_ID: &str = "correlation-id";
    pub const CAUSATION_ID: &str = "causation-id";
    pub const AGGREGATE_TYPE: &str = "aggregate-type";
    pub const AGGREGATE_VERSION: &str = "aggregate-version";
    pub const TRACEPARENT: &str = "traceparent";
    pub const TRACESTATE: &str = "tracestate";
    /// Set by the client when it moves a message to a dead-letter topic: where it came from.
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    /// Set by the client when it moves a message to a dead-letter topic: its id there.
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";

    use pulsar::consumer::Message;

    /// Every property of a received message, by name (in a `HashMap`, or a `BTreeMap` to list
    /// them in order).
    pub fn all<C: FromIterator<(String, String)>>(message: &Message<Vec<u8>>) -> C {
        message
            .metadata()
            .properties
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect()
    }

    /// One property of a received message.
    pub fn get(message: &Message<Vec<u8>>, name: &str) -> Option<String> {
        message
            .metadata()
            .properties
            .iter()
            .find(|kv| kv.key == name)
            .map(|kv| kv.value.clone())
    }
}
