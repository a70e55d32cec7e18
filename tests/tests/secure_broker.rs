//! The platform's Pulsar client against a secured broker: TLS only, token authentication and
//! authorization on (`PULSAR_SECURE=1 deploy/local/pulsar.sh up`, which `tests/run.sh` starts on
//! its own ports beside the plain one). With the broker's CA and the platform role's token file a
//! client produces and consumes; a missing, expired or wrongly signed token, a plain `pulsar://`
//! client on the TLS port and a client that does not trust the CA are all refused at connect.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Duration;

use futures::TryStreamExt as _;
use secrecy::SecretString;
use service_runtime::config::PulsarArgs;
use uuid::Uuid;

const START_HINT: &str = "start the secured broker with `PULSAR_SECURE=1 deploy/local/pulsar.sh up` \
     and set TEST_SECURE_PULSAR_URL and TEST_SECURE_PULSAR_TLS_DIR (tests/run.sh does)";

fn url() -> String {
    std::env::var("TEST_SECURE_PULSAR_URL").unwrap_or_else(|_| panic!("{START_HINT}"))
}

fn tls_dir() -> PathBuf {
    let dir = PathBuf::from(
        std::env::var("TEST_SECURE_PULSAR_TLS_DIR").unwrap_or_else(|_| panic!("{START_HINT}")),
    );
    assert!(
        dir.join("ca.crt").exists(),
        "no ca.crt in {}: {START_HINT}",
        dir.display()
    );
    dir
}

fn args(url: String, ca: bool, token_file: Option<&str>) -> PulsarArgs {
    PulsarArgs {
        url,
        tenant: "affiliate".into(),
        namespace: "platform".into(),
        connect_timeout: Duration::from_secs(20),
        tls_ca_file: ca.then(|| tls_dir().join("ca.crt")),
        token: None,
        token_file: token_file.map(|f| tls_dir().join(f)),
    }
}

/// Connects with `args`; returns the error's whole chain, or panics if it connected.
async fn refused(what: &str, args: &PulsarArgs) -> String {
    match messaging::connect_once(args).await {
        Ok(_) => panic!("{what}: connected, but should have been refused"),
        Err(e) => {
            let message = format!("{e:#}");
            println!("{what}: refused: {message}");
            message
        }
    }
}

#[tokio::test]
async fn with_the_ca_and_its_token_file_a_client_produces_and_consumes() {
    service_runtime::tls::install_crypto_provider();
    let args = args(url(), true, Some("platform.token"));
    let client = messaging::connect(&args).await.unwrap_or_else(|e| {
        panic!("connect over TLS with the platform token: {e:#}; {START_HINT}")
    });
    let topic = args.topic(&format!("secure-probe-{}", Uuid::new_v4().simple()));
    let mut consumer = messaging::watch(
        &client,
        &topic,
        "secure-probe",
        pulsar::consumer::InitialPosition::Earliest,
    )
    .await
    .expect("the platform role may consume");
    let payload = format!("over TLS {}", Uuid::now_v7());
    client
        .send(
            &topic,
            pulsar::producer::Message {
                payload: payload.clone().into_bytes(),
                ..Default::default()
            },
        )
        .await
        .expect("the platform role may produce")
        .await
        .expect("the broker's receipt");
    let message = tokio::time::timeout(Duration::from_secs(20), consumer.try_next())
        .await
        .expect("a message within 20 s")
        .unwrap()
        .unwrap();
    assert_eq!(message.payload.data, payload.as_bytes());
    consumer.ack(&message).await.unwrap();
    println!(
        "produced and consumed over {} with the platform token",
        args.url
    );

    // Leave the broker as we found it: delete the probe topic (HTTPS, superuser token).
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(tls_dir().join("ca.crt")).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let admin = std::env::var("TEST_SECURE_PULSAR_ADMIN_URL")
        .unwrap_or_else(|_| "https://127.0.0.1:8443".into());
    let token = std::fs::read_to_string(tls_dir().join("admin.token")).unwrap();
    drop(consumer);
    let path = topic.trim_start_matches("persistent://");
    let response = http
        .delete(format!("{admin}/admin/v2/persistent/{path}?force=true"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "delete the probe topic: {}",
        response.status()
    );
    // Without a token the admin API refuses.
    let response = http
        .get(format!("{admin}/admin/v2/tenants"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "the admin API without a token");
}

#[tokio::test]
async fn a_missing_expired_or_wrongly_signed_token_is_refused() {
    service_runtime::tls::install_crypto_provider();
    let message = refused("no token", &args(url(), true, None)).await;
    assert!(message.contains("authentication"), "{message}");
    // The expired token was made with a 1 s expiry when the broker's material was made.
    refused("expired token", &args(url(), true, Some("expired.token"))).await;
    refused(
        "token signed with another key",
        &args(url(), true, Some("forged.token")),
    )
    .await;
    let mut bad = args(url(), true, None);
    bad.token = Some(SecretString::from("not.a.jwt"));
    refused("garbage token", &bad).await;
    let missing = refused(
        "token file missing",
        &args(url(), true, Some("no-such.token")),
    )
    .await;
    assert!(missing.contains("no-such.token"), "{missing}");
}

#[tokio::test]
async fn the_tls_port_refuses_a_plain_client_and_an_untrusted_ca() {
    service_runtime::tls::install_crypto_provider();
    let plain = url().replace("pulsar+ssl://", "pulsar://");
    let mut args_plain = args(plain, false, Some("platform.token"));
    args_plain.connect_timeout = Duration::from_secs(10);
    refused("plain pulsar:// to the TLS port", &args_plain).await;
    refused(
        "TLS without the broker's CA",
        &args(url(), false, Some("platform.token")),
    )
    .await;
}
