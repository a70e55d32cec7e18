//! Authentication to the broker beyond a fixed token: a token file that is read again for every
//! new connection (pulsar-rs's own token authentication sends the bytes it was given, forever),
//! so a token rotated in the file is used from the next connection on without a restart; and
//! OAuth2 client credentials (pulsar-rs's own OAuth2 client, which fetches and refreshes the
//! access token).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use pulsar::authentication::oauth2::{OAuth2Authentication, OAuth2Params};
use pulsar::error::AuthenticationError;
use service_runtime::config::OAuth2Args;

/// The OAuth2 client-credentials authentication `args` ask for, if any. The credentials file is
/// checked now, so that a missing or unreadable one is a clear error at start.
pub fn oauth2(
    args: &OAuth2Args,
) -> anyhow::Result<Option<Box<dyn pulsar::authentication::Authentication>>> {
    let (Some(issuer), Some(credentials)) = (&args.issuer_url, &args.credentials_file) else {
        return Ok(None);
    };
    let content = std::fs::read_to_string(credentials)
        .with_context(|| format!("read the OAuth2 credentials file {}", credentials.display()))?;
    let fields: serde_json::Value = serde_json::from_str(&content).with_context(|| {
        format!(
            "the OAuth2 credentials file {} is not JSON",
            credentials.display()
        )
    })?;
    for field in ["client_id", "client_secret"] {
        anyhow::ensure!(
            fields.get(field).and_then(|v| v.as_str()).is_some(),
            "the OAuth2 credentials file {} has no `{field}`",
            credentials.display()
        );
    }
    let path = std::path::absolute(credentials)
        .with_context(|| format!("the path {}", credentials.display()))?;
    Ok(Some(OAuth2Authentication::client_credentials(
        OAuth2Params {
            issuer_url: issuer.clone(),
            credentials_url: format!("file://{}", path.display()),
            audience: args.audience.clone(),
            scope: args.scope.clone(),
        },
    )))
}

/// `token` authentication whose token is the content of a file.
#[derive(Debug, Clone)]
pub struct TokenFile {
    path: PathBuf,
}

impl TokenFile {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// The token in `path`, without surrounding white space; an error if it is missing or empty.
    pub fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
        let content = std::fs::read_to_string(path)
            .with_context(|| format!("read the Pulsar token file {}", path.display()))?;
        let token = content.trim();
        anyhow::ensure!(
            !token.is_empty(),
            "the Pulsar token file {} is empty",
            path.display()
        );
        Ok(token.as_bytes().to_vec())
    }
}

#[async_trait::async_trait]
impl pulsar::authentication::Authentication for TokenFile {
    fn auth_method_name(&self) -> String {
        "token".into()
    }

    async fn initialize(&mut self) -> Result<(), AuthenticationError> {
        Ok(())
    }

    async fn auth_data(&mut self) -> Result<Vec<u8>, AuthenticationError> {
        // The path may be logged, never the token.
        Self::read(&self.path).map_err(|e| AuthenticationError::Retriable(format!("{e:#}")))
    }
}

#[cfg(test)]
mod tests {
    use pulsar::authentication::Authentication as _;

    use super::*;

    #[tokio::test]
    async fn the_token_is_read_again_for_every_connection() {
        let dir = std::env::temp_dir().join(format!("token-file-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "first.token.value\n").unwrap();
        let mut auth = TokenFile::new(path.clone());
        assert_eq!(auth.auth_method_name(), "token");
        assert_eq!(auth.auth_data().await.unwrap(), b"first.token.value");
        std::fs::write(&path, "rotated.token.value").unwrap();
        assert_eq!(auth.auth_data().await.unwrap(), b"rotated.token.value");
        std::fs::write(&path, "  \n").unwrap();
        assert!(auth.auth_data().await.is_err(), "an empty file is refused");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(TokenFile::read(&path).is_err(), "a missing file is refused");
    }
}
