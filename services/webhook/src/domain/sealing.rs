//! Endpoints' signing secrets sealed at rest: a copy of the database (a backup, a replica, a
//! leaked dump) must not let anyone sign webhooks as the platform.
//!
//! Each secret is stored as `v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`: AES-256-GCM
//! (ring) under a key derived with HKDF-SHA256 from one of `WEBHOOK_SECRET_KEYS`, a fresh random
//! 96-bit nonce per seal (a key seals a few secrets per endpoint, far below GCM's bound for random
//! nonces), and the endpoint's id as associated data, so a sealed secret moved to another
//! endpoint's row does not open. The key id (8 hex digits, also derived with HKDF) names the key
//! without revealing it. The first key seals; every key listed opens, so keys rotate by putting a
//! new one first: the service reseals what an older key sealed, and what was stored in the clear
//! before sealing existed, when it starts.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use uuid::Uuid;

use super::signature;

/// The fewest bytes a key may have (they are HKDF's input keying material).
pub const MIN_KEY_BYTES: usize = 32;
/// The stored form's version.
const VERSION: &str = "v1";
/// HKDF's salt: what these keys are for.
const SALT: &[u8] = b"affiliate-platform webhook endpoint secrets";
/// HKDF's info for the AES key and for the key id.
const INFO_KEY: &[u8] = b"aes-256-gcm key";
const INFO_ID: &[u8] = b"key id";

/// An HKDF output length (ring asks for a type that knows its length).
struct Length(usize);

impl hkdf::KeyType for Length {
    fn len(&self) -> usize {
        self.0
    }
}

/// One key: its id and the AES-256-GCM key.
struct Key {
    id: String,
    aead: LessSafeKey,
}

impl Key {
    fn derive(material: &[u8]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(material);
        // Both lengths are within HKDF-SHA256's 255 × 32 bytes, so expanding cannot fail.
        let aead = prk
            .expand(&[INFO_KEY], &AES_256_GCM)
            .map(UnboundKey::from)
            .map(LessSafeKey::new)
            .unwrap_or_else(|_| unreachable!("HKDF-SHA256 yields 32 bytes"));
        let mut id = [0u8; 4];
        prk.expand(&[INFO_ID], Length(id.len()))
            .and_then(|okm| okm.fill(&mut id))
            .unwrap_or_else(|_| unreachable!("HKDF-SHA256 yields 4 bytes"));
        Self {
            id: id.iter().map(|b| format!("{b:02x}")).collect(),
            aead,
        }
    }
}

/// What a stored secret needs from the keys now configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Sealed with the first key: nothing.
    Current,
    /// In the clear (stored before sealing existed): to seal.
    Clear,
    /// Sealed with another key that is listed: to reseal with the first.
    Older,
    /// Sealed with a key that is not listed: it cannot be opened.
    Unknown(String),
    /// Neither a secret nor a sealed one.
    Malformed,
}

/// Why a stored secret did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("sealed with key {0}, which is not among WEBHOOK_SECRET_KEYS")]
    UnknownKey(String),
    #[error("not a sealed secret")]
    Malformed,
    #[error("does not open: altered, or sealed for another endpoint")]
    Altered,
}

/// The configured keys, the first of which seals.
pub struct Keys(Vec<Key>);

impl fmt::Debug for Keys {
    /// The key ids only, never a key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|k| &k.id))
            .finish()
    }
}

impl Keys {
    /// `list`: keys separated by commas, each at least [`MIN_KEY_BYTES`] bytes, the first sealing.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut keys: Vec<Key> = Vec::new();
        for (i, material) in list.split(',').map(str::trim).enumerate() {
            if material.len() < MIN_KEY_BYTES {
                return Err(format!(
                    "key {} has {} bytes; each needs at least {MIN_KEY_BYTES} (e.g. `openssl rand -base64 32`)",
                    i + 1,
                    material.len()
                ));
            }
            let key = Key::derive(material.as_bytes());
            if keys.iter().any(|k| k.id == key.id) {
                return Err(format!("key {} is listed twice", i + 1));
            }
            keys.push(key);
        }
        Ok(Self(keys))
    }

    /// The sealing key's id.
    pub fn current_id(&self) -> &str {
        &self.0[0].id
    }

    /// The ids of every key, the sealing one first.
    pub fn ids(&self) -> Vec<&str> {
        self.0.iter().map(|k| k.id.as_str()).collect()
    }

    /// `secret` sealed for `endpoint` with the first key.
    pub fn seal(&self, endpoint: Uuid, secret: &str) -> String {
        let key = &self.0[0];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut sealed = secret.as_bytes().to_vec();
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(endpoint.as_bytes()),
                &mut sealed,
            )
            .unwrap_or_else(|_| unreachable!("a secret is far below GCM's length limit"));
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        format!("{VERSION}:{}:{}", key.id, URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The key id and the bytes of a stored sealed secret.
    fn split(stored: &str) -> Option<(&str, &str)> {
        let rest = stored.strip_prefix(VERSION)?.strip_prefix(':')?;
        rest.split_once(':')
    }

    /// What `stored` needs.
    pub fn state(&self, stored: &str) -> Stored {
        if signature::key(stored).is_some() {
            return Stored::Clear;
        }
        match Self::split(stored) {
            None => Stored::Malformed,
            Some((id, _)) if id == self.current_id() => Stored::Current,
            Some((id, _)) if self.0.iter().any(|k| k.id == id) => Stored::Older,
            Some((id, _)) => Stored::Unknown(id.to_owned()),
        }
    }

    /// The secret `stored` holds for `endpoint`: opened if sealed, as it is if in the clear.
    pub fn open(&self, endpoint: Uuid, stored: &str) -> Result<String, OpenError> {
        if signature::key(stored).is_some() {
            return Ok(stored.to_owned());
        }
        let (id, encoded) = Self::split(stored).ok_or(OpenError::Malformed)?;
        let key = self
            .0
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| OpenError::UnknownKey(id.to_owned()))?;
        let mut bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| OpenError::Malformed)?;
        if bytes.len() < NONCE_LEN {
            return Err(OpenError::Malformed);
        }
        let mut sealed = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| OpenError::Malformed)?;
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(endpoint.as_bytes()), &mut sealed)
            .map_err(|_| OpenError::Altered)?;
        String::from_utf8(plain.to_vec()).map_err(|_| OpenError::Altered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "first-key-0123456789abcdefghijklmnop";
    const B: &str = "second-key-0123456789abcdefghijklmno";

    #[test]
    fn a_sealed_secret_opens_for_its_endpoint_and_hides_the_secret() {
        let keys = Keys::parse(A).unwrap();
        let endpoint = Uuid::now_v7();
        let secret = signature::new_secret();
        let sealed = keys.seal(endpoint, &secret);
        assert!(sealed.starts_with(&format!("v1:{}:", keys.current_id())));
        let key_part = secret.strip_prefix(signature::PREFIX).unwrap();
        assert!(!sealed.contains(key_part), "{sealed}");
        assert_eq!(keys.open(endpoint, &sealed).unwrap(), secret);
        // a fresh nonce each time
        assert_ne!(keys.seal(endpoint, &secret), sealed);
        assert_eq!(keys.state(&sealed), Stored::Current);
    }

    #[test]
    fn a_sealed_secret_does_not_open_for_another_endpoint_or_altered() {
        let keys = Keys::parse(A).unwrap();
        let endpoint = Uuid::now_v7();
        let sealed = keys.seal(endpoint, &signature::new_secret());
        assert_eq!(keys.open(Uuid::now_v7(), &sealed), Err(OpenError::Altered));
        let (head, body) = sealed.rsplit_once(':').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(body).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let altered = format!("{head}:{}", URL_SAFE_NO_PAD.encode(bytes));
        assert_eq!(keys.open(endpoint, &altered), Err(OpenError::Altered));
        assert_eq!(keys.open(endpoint, "v1:abc"), Err(OpenError::Malformed));
        let id = keys.current_id();
        assert_eq!(
            keys.open(endpoint, &format!("v1:{id}:%%")),
            Err(OpenError::Malformed)
        );
        assert_eq!(
            keys.open(endpoint, &format!("v1:{id}:AAAA")),
            Err(OpenError::Malformed)
        );
        assert_eq!(
            keys.open(endpoint, "v1:abc:AAAA"),
            Err(OpenError::UnknownKey("abc".into()))
        );
        assert_eq!(keys.open(endpoint, "nonsense"), Err(OpenError::Malformed));
        assert_eq!(keys.state("nonsense"), Stored::Malformed);
    }

    #[test]
    fn keys_rotate_by_putting_a_new_one_first() {
        let old = Keys::parse(A).unwrap();
        let both = Keys::parse(&format!("{B}, {A}")).unwrap();
        let new = Keys::parse(B).unwrap();
        let endpoint = Uuid::now_v7();
        let secret = signature::new_secret();
        let sealed = old.seal(endpoint, &secret);
        assert_eq!(both.state(&sealed), Stored::Older);
        assert_eq!(both.open(endpoint, &sealed).unwrap(), secret);
        let resealed = both.seal(endpoint, &secret);
        assert_eq!(both.state(&resealed), Stored::Current);
        assert_eq!(new.open(endpoint, &resealed).unwrap(), secret);
        assert_eq!(
            new.open(endpoint, &sealed),
            Err(OpenError::UnknownKey(old.current_id().to_owned()))
        );
        assert_eq!(
            new.state(&sealed),
            Stored::Unknown(old.current_id().to_owned())
        );
        assert_eq!(both.ids(), vec![new.current_id(), old.current_id()]);
    }

    #[test]
    fn a_secret_in_the_clear_is_read_as_it_is_and_is_to_be_sealed() {
        let keys = Keys::parse(A).unwrap();
        let secret = signature::new_secret();
        assert_eq!(keys.state(&secret), Stored::Clear);
        assert_eq!(keys.open(Uuid::now_v7(), &secret).unwrap(), secret);
    }

    #[test]
    fn short_repeated_or_missing_keys_are_refused_and_never_printed() {
        assert!(Keys::parse("").unwrap_err().contains("at least 32"));
        assert!(
            Keys::parse("short")
                .unwrap_err()
                .contains("key 1 has 5 bytes")
        );
        assert!(
            Keys::parse(&format!("{A},{A}"))
                .unwrap_err()
                .contains("listed twice")
        );
        let keys = Keys::parse(&format!("{A},{B}")).unwrap();
        let printed = format!("{keys:?}");
        assert!(!printed.contains(A) && !printed.contains(B), "{printed}");
        assert!(printed.contains(keys.current_id()));
    }
}
