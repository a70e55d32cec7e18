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
        oauth2: Default::default(),
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

/// A local OAuth2 issuer (client credentials only): its OpenID discovery document and a token
/// endpoint that, for the right client id and secret, answers an access token the broker accepts
/// (an HS256 JWT for the role `platform`, signed with the broker's token secret key, as an
/// identity provider configured for Pulsar would sign it). Returns its base URL.
async fn oauth2_issuer(client_id: &'static str, client_secret: &'static str) -> String {
    use axum::routing::{get, post};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let key = std::fs::read(tls_dir().join("secret.key")).unwrap();
    // An issuer with a path: openidconnect compares the document's issuer with the parsed URL
    // (a bare host gains a `/`) and fetches `{issuer}/.well-known/openid-configuration`.
    let issuer = format!("{base}/oauth");
    let discovery = serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "grant_types_supported": ["client_credentials"],
    });
    let token = move |axum::Form(form): axum::Form<std::collections::HashMap<String, String>>| {
        let key = key.clone();
        async move {
            let authorized = form.get("grant_type").map(String::as_str)
                == Some("client_credentials")
                && form.get("client_id").map(String::as_str) == Some(client_id)
                && form.get("client_secret").map(String::as_str) == Some(client_secret);
            if !authorized {
                return (
                    axum::http::StatusCode::UNAUTHORIZED,
                    axum::Json(serde_json::json!({"error": "invalid_client"})),
                );
            }
            let exp = chrono::Utc::now().timestamp() + 3600;
            let jwt = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &serde_json::json!({"sub": "platform", "exp": exp}),
                &jsonwebtoken::EncodingKey::from_secret(&key).unwrap(),
            )
            .unwrap();
            (
                axum::http::StatusCode::OK,
                axum::Json(serde_json::json!({
                    "access_token": jwt, "token_type": "Bearer", "expires_in": 3600,
                })),
            )
        }
    };
    let app = axum::Router::new()
        .route(
            "/oauth/.well-known/openid-configuration",
            get(move || async move { axum::Json(discovery) }),
        )
        // discovery fetches the key set too; the access token is for the broker, not verified here
        .route(
            "/jwks",
            get(|| async { axum::Json(serde_json::json!({"keys": []})) }),
        )
        .route("/token", post(token));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    issuer
}

/// PulsarArgs with OAuth2 client credentials for `issuer` from a credentials file.
fn oauth2_args(issuer: &str, client_id: &str, client_secret: &str) -> (PulsarArgs, PathBuf) {
    let file = std::env::temp_dir().join(format!("oauth2-{}.json", Uuid::new_v4()));
    std::fs::write(
        &file,
        serde_json::json!({"client_id": client_id, "client_secret": client_secret}).to_string(),
    )
    .unwrap();
    let mut args = args(url(), true, None);
    args.oauth2.issuer_url = Some(issuer.to_owned());
    args.oauth2.credentials_file = Some(file.clone());
    (args, file)
}

#[tokio::test]
async fn with_oauth2_client_credentials_a_client_produces_and_is_refused_with_a_wrong_secret() {
    service_runtime::tls::install_crypto_provider();
    let issuer = oauth2_issuer("platform-client", "s3cret").await;

    let (right, file) = oauth2_args(&issuer, "platform-client", "s3cret");
    let client = messaging::connect_once(&right)
        .await
        .unwrap_or_else(|e| panic!("connect with OAuth2 client credentials: {e:#}; {START_HINT}"));
    let topic = right.topic(&format!("oauth2-probe-{}", Uuid::new_v4().simple()));
    client
        .send(
            &topic,
            pulsar::producer::Message {
                payload: b"over OAuth2".to_vec(),
                ..Default::default()
            },
        )
        .await
        .expect("the role of the OAuth2 token may produce")
        .await
        .expect("the broker's receipt");
    // The admin API takes the same OAuth2 client: the role may list its namespace's topics
    // (anonymous callers get 401), and the probe topic is there.
    let admin_url = std::env::var("TEST_SECURE_PULSAR_ADMIN_URL")
        .unwrap_or_else(|_| "https://127.0.0.1:8443".into());
    let admin = messaging::admin::Admin::new(
        &admin_url,
        right.tls_ca_file.as_deref(),
        messaging::admin::Token::of(&right).unwrap(),
    )
    .unwrap();
    let list = format!("/admin/v2/persistent/{}/{}", right.tenant, right.namespace);
    let (status, body) = admin.request("GET", &list, "").await.unwrap();
    assert_eq!(status, 200, "list topics with the OAuth2 token: {body}");
    assert!(body.contains(&topic), "{topic} in {body}");
    let anonymous =
        messaging::admin::Admin::new(&admin_url, right.tls_ca_file.as_deref(), None).unwrap();
    assert_eq!(anonymous.request("GET", &list, "").await.unwrap().0, 401);
    // Leave the broker as we found it (superuser token).
    let superuser = messaging::admin::Admin::new(
        &admin_url,
        right.tls_ca_file.as_deref(),
        Some(messaging::admin::Token::File(tls_dir().join("admin.token"))),
    )
    .unwrap();
    drop(client);
    let path = topic.trim_start_matches("persistent://");
    let (status, body) = superuser
        .request(
            "DELETE",
            &format!("/admin/v2/persistent/{path}?force=true"),
            "",
        )
        .await
        .unwrap();
    assert!(
        matches!(status, 200 | 204),
        "delete the probe topic: HTTP {status} {body}"
    );
    std::fs::remove_file(file).unwrap();
    println!("produced over {} with an OAuth2 access token", right.url);

    let (wrong, file) = oauth2_args(&issuer, "platform-client", "wrong");
    let message = refused("OAuth2 with a wrong client secret", &wrong).await;
    assert!(message.contains("OAuth2"), "{message}");
    std::fs::remove_file(file).unwrap();
}
