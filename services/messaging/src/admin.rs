//! A client of Pulsar's admin REST API over HTTP or HTTPS (reqwest, rustls), trusting the
//! broker's CA file when given and sending a token when given (a token file is read again for
//! every request, so a rotated token is used from the next request on). The CLI, the BFF and the
//! tests use it; the token never appears in a log or an error.
//!
//! pulsar-rs has an `admin-api` feature, but it covers a few topic policies and schemas only and
//! pulls native-tls (OpenSSL) into a rustls build, so the calls here are plain REST.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use pulsar::authentication::Authentication;
use secrecy::{ExposeSecret as _, SecretString};
use service_runtime::config::PulsarArgs;
use tokio::sync::Mutex;

use crate::auth::TokenFile;

/// How long one admin request may take, unless [`Admin::with_timeout`] says otherwise.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the admin API's token comes from.
#[derive(Clone)]
pub enum Token {
    /// A token given as such (`PULSAR_TOKEN`).
    Value(SecretString),
    /// A file holding the token (`PULSAR_TOKEN_FILE`), read for every request.
    File(PathBuf),
    /// An OAuth2 access token from the issuer (`PULSAR_OAUTH2_*`), fetched on the first request
    /// and again before it expires.
    OAuth2(Arc<Mutex<OAuth2Token>>),
}

/// pulsar-rs's OAuth2 client and whether it has read its credentials and found the issuer yet.
pub struct OAuth2Token {
    client: Box<dyn Authentication>,
    initialized: bool,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Value(_) => f.write_str("Token::Value(..)"),
            Self::File(path) => write!(f, "Token::File({})", path.display()),
            Self::OAuth2(_) => f.write_str("Token::OAuth2(..)"),
        }
    }
}

impl Token {
    /// The token from a value or a file, whichever is given (a value wins).
    pub fn from_parts(value: Option<&SecretString>, file: Option<&Path>) -> Option<Self> {
        match (value, file) {
            (Some(value), _) => Some(Self::Value(value.clone())),
            (None, Some(file)) => Some(Self::File(file.to_owned())),
            (None, None) => None,
        }
    }

    /// What the binary protocol's settings use: a token, a token file or OAuth2.
    pub fn of(args: &PulsarArgs) -> anyhow::Result<Option<Self>> {
        if let Some(token) = Self::from_parts(args.token.as_ref(), args.token_file.as_deref()) {
            return Ok(Some(token));
        }
        Ok(crate::auth::oauth2(&args.oauth2)?.map(|client| {
            Self::OAuth2(Arc::new(Mutex::new(OAuth2Token {
                client,
                initialized: false,
            })))
        }))
    }

    async fn current(&self) -> anyhow::Result<String> {
        match self {
            Self::Value(value) => Ok(value.expose_secret().trim().to_owned()),
            Self::File(path) => {
                Ok(String::from_utf8(TokenFile::read(path)?).with_context(|| {
                    format!("the Pulsar token file {} is not UTF-8", path.display())
                })?)
            }
            Self::OAuth2(oauth2) => {
                let mut oauth2 = oauth2.lock().await;
                if !oauth2.initialized {
                    oauth2
                        .client
                        .initialize()
                        .await
                        .map_err(|e| anyhow::anyhow!("OAuth2 for the Pulsar admin API: {e}"))?;
                    oauth2.initialized = true;
                }
                let token = oauth2.client.auth_data().await.map_err(|e| {
                    anyhow::anyhow!("an OAuth2 access token for the Pulsar admin API: {e}")
                })?;
                String::from_utf8(token).context("the OAuth2 access token is not UTF-8")
            }
        }
    }
}

/// The admin API of one broker or cluster.
#[derive(Debug, Clone)]
pub struct Admin {
    base: String,
    http: reqwest::Client,
    token: Option<Token>,
    timeout: Duration,
}

impl Admin {
    /// A client of `url` (`http://…` or `https://…`), trusting the PEM certificates in
    /// `tls_ca_file` besides the system's, authenticated with `token`.
    pub fn new(
        url: &str,
        tls_ca_file: Option<&Path>,
        token: Option<Token>,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            url.starts_with("http://") || url.starts_with("https://"),
            "the Pulsar admin URL `{url}` must start with http:// or https://"
        );
        service_runtime::tls::install_crypto_provider();
        let mut http = reqwest::Client::builder();
        if let Some(ca) = tls_ca_file {
            let pem = std::fs::read(ca).with_context(|| {
                format!("read the broker's CA certificates from {}", ca.display())
            })?;
            for certificate in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("parse the CA certificates in {}", ca.display()))?
            {
                http = http.add_root_certificate(certificate);
            }
        }
        Ok(Self {
            base: url.trim_end_matches('/').to_owned(),
            http: http.build().context("build the HTTP client")?,
            token,
            timeout: REQUEST_TIMEOUT,
        })
    }

    /// The same client, each request bounded by `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The base URL, e.g. `https://127.0.0.1:8443`.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Sends `method path` (with a JSON `body` unless it is empty); the response, whatever its
    /// status. An error only when there is no response (or no token to send).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &str,
    ) -> anyhow::Result<reqwest::Response> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .timeout(self.timeout);
        if !body.is_empty() {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_owned());
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.current().await?);
        }
        request
            .send()
            .await
            .with_context(|| format!("{method} {path} at the Pulsar admin API {}", self.base))
    }

    /// Sends `method path` with a JSON `body`; returns the status code and the body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> anyhow::Result<(u16, String)> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .with_context(|| format!("`{method}` is not an HTTP method"))?;
        let response = self.send(method, path, body).await?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .with_context(|| format!("read the answer to {path} from {}", self.base))?;
        Ok((status, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_urls_are_taken() {
        assert!(Admin::new("pulsar://127.0.0.1:6650", None, None).is_err());
        assert!(Admin::new("http://127.0.0.1:8080/", None, None).is_ok());
        assert_eq!(
            Admin::new("https://127.0.0.1:8443/", None, None)
                .unwrap()
                .url(),
            "https://127.0.0.1:8443"
        );
    }

    #[test]
    fn a_missing_ca_file_is_a_clear_error() {
        let error = Admin::new(
            "https://127.0.0.1:8443",
            Some(Path::new("/nonexistent/ca.crt")),
            None,
        )
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("/nonexistent/ca.crt"),
            "{error:#}"
        );
    }

    #[test]
    fn the_token_is_never_in_the_debug_output() {
        let token = Token::Value(SecretString::from("secret.token.value"));
        let admin = Admin::new("http://127.0.0.1:8080", None, Some(token)).unwrap();
        assert!(!format!("{admin:?}").contains("secret.token.value"));
    }
}
