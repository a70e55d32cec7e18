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
pub mod consumer;
pub mod door;
pub mod health;
pub mod inbox;

use anyhow::Context as _;
use pulsar::{Pulsar, TokioExecutor};
use service_runtime::config::PulsarArgs;

pub use consumer::{Delivery, Failure, Handler, Subscription, run_consumer};

/// Pending sends allowed per producer before `send_non_blocking` waits.
const OUTBOUND_QUEUE: usize = 1000;

/// Connects the Pulsar client, giving up after the configured timeout (the client itself would
/// retry the first connection for minutes).
pub async fn connect(args: &PulsarArgs) -> anyhow::Result<Pulsar<TokioExecutor>> {
    service_runtime::tls::install_crypto_provider();
    let mut builder =
        Pulsar::builder(args.url.clone(), TokioExecutor).with_outbound_channel_size(OUTBOUND_QUEUE);
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
    }
    let build = builder.build();
    tokio::time::timeout(args.connect_timeout, build)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "no answer from Pulsar at {} within {:?} (is it running? `deploy/local/infra.sh up` starts it)",
                args.url,
                args.connect_timeout
            )
        })?
        .with_context(|| {
            let secured = args.tls_ca_file.is_some() || args.token.is_some() || args.token_file.is_some();
            if secured || args.url.starts_with("pulsar+ssl://") {
                // pulsar-rs reports a refused certificate and a refused token alike.
                format!(
                    "connect to Pulsar at {} (a TLS or authentication failure: check the URL's scheme and port, \
                     PULSAR_TLS_CA_FILE, the token and its expiry; the broker's log says which)",
                    args.url
                )
            } else {
                format!("connect to Pulsar at {}", args.url)
            }
        })
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
}
