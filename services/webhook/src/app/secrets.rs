//! Endpoints' secrets at rest: what is stored in the clear (from before sealing) or sealed with an
//! older key is sealed with the first of `WEBHOOK_SECRET_KEYS` when the service starts; a secret
//! no listed key opens stops the start, saying which key it needs.

use sqlx::PgPool;

use crate::adapters::endpoints::{self as repo, StoredSecret};
use crate::domain::sealing::{Keys, Stored};

/// What [`seal_stored`] changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sealed {
    /// Secrets that were in the clear.
    pub sealed: usize,
    /// Secrets sealed with an older key.
    pub resealed: usize,
}

/// Seals every stored secret with the first key, in one transaction (replicas starting together
/// wait for each other's). Fails, changing nothing, when a secret was sealed with a key that is
/// not listed or is not a secret at all.
pub async fn seal_stored(pool: &PgPool, keys: &Keys) -> anyhow::Result<Sealed> {
    let mut tx = pool.begin().await?;
    let mut done = Sealed::default();
    let mut changed = Vec::new();
    for stored in repo::lock_secrets(&mut tx).await? {
        match keys.state(&stored.secret) {
            Stored::Current => continue,
            Stored::Clear => done.sealed += 1,
            Stored::Older => done.resealed += 1,
            Stored::Unknown(id) => anyhow::bail!(
                "a stored secret of endpoint {} was sealed with key {id}, which is not among WEBHOOK_SECRET_KEYS (key ids {}): list that key too, after the new one",
                stored.endpoint_id,
                keys.ids().join(", ")
            ),
            Stored::Malformed => anyhow::bail!(
                "the stored secret of endpoint {} (created {}) is neither a secret nor a sealed one",
                stored.endpoint_id,
                stored.created_at
            ),
        }
        let secret = keys
            .open(stored.endpoint_id, &stored.secret)
            .map_err(|e| anyhow::anyhow!("endpoint {}'s secret: {e}", stored.endpoint_id))?;
        changed.push(StoredSecret {
            secret: keys.seal(stored.endpoint_id, &secret),
            ..stored
        });
    }
    if !changed.is_empty() {
        repo::replace_secrets(&mut tx, &changed).await?;
    }
    tx.commit().await?;
    Ok(done)
}
