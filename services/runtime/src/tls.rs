//! One rustls crypto provider per process. Several crates of the stack compile rustls with both
//! `ring` (pulsar, sqlx) and `aws-lc-rs` (reqwest, jsonwebtoken); with two providers compiled in
//! and none installed, rustls cannot choose and panics at the first TLS connection ("Could not
//! automatically determine the process-level CryptoProvider"). Every binary installs ring at
//! start; the first call wins and later ones change nothing.

/// Installs ring as the process's default rustls provider, once.
pub fn install_crypto_provider() {
    // Err means a provider is installed already (an earlier call): nothing to do.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_provider_is_installed_once_and_calls_after_it_are_harmless() {
        super::install_crypto_provider();
        super::install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
