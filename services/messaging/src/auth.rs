//! Token authentication from a file that is read again for every new connection to the broker
//! (pulsar-rs's own token authentication sends the bytes it was given, forever), so a token
//! rotated in the file is used from the next connection on without a restart.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use pulsar::error::AuthenticationError;

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
