//! Bearer-token authentication: who the caller is and in which role.
//!
//! A token is accepted only if its header names the one algorithm family the BFF is configured
//! for (HS256 with a shared secret, or RS256/ES256 with JWKS public keys), its signature
//! verifies, and `exp`, `nbf`, `iss` and `aud` hold. `alg: none` never parses; an HS256 token is
//! refused when the BFF expects RS256/ES256 (the algorithm-confusion attack) and vice versa.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, RwLock};
use uuid::Uuid;

use crate::config::AuthArgs;

/// The shortest HS256 secret accepted (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;

/// What a caller may do: advertisers own campaigns, creators act for themselves, admins do all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Advertiser,
    Creator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Advertiser => "advertiser",
            Self::Creator => "creator",
            Self::Admin => "admin",
        }
    }
}

/// The claims the BFF reads and `bff token` writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id (a UUID).
    pub sub: String,
    pub role: Role,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
}

impl Claims {
    /// Claims valid from now for `ttl`.
    pub fn new(sub: Uuid, role: Role, issuer: &str, audience: &str, ttl: Duration) -> Self {
        let now = unix_now();
        Self {
            sub: sub.to_string(),
            role,
            iss: issuer.to_owned(),
            aud: audience.to_owned(),
            iat: now,
            nbf: now,
            exp: now + ttl.as_secs(),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub id: Uuid,
    pub role: Role,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Why a token was refused. The message is safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send `Authorization: Bearer <JWT>`")]
    Missing,
    #[error("the token is malformed or uses an algorithm that is not accepted")]
    Malformed,
    #[error("the token's algorithm is not accepted here")]
    Algorithm,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued for another audience")]
    Audience,
    #[error("the token was issued by an unknown issuer")]
    Issuer,
    #[error("the token's claims are invalid: {0}")]
    Claims(&'static str),
}

enum Keys {
    Hs256(DecodingKey),
    Jwks {
        set: RwLock<JwkSet>,
        url: Option<String>,
        last_fetch: Mutex<Instant>,
        refresh_interval: Duration,
    },
}

/// Verifies bearer tokens against the configured keys and claims.
#[derive(Clone)]
pub struct Verifier {
    keys: Arc<Keys>,
    issuer: String,
    audience: String,
    leeway: Duration,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = match &*self.keys {
            Keys::Hs256(_) => "hs256",
            Keys::Jwks { .. } => "jwks",
        };
        f.debug_struct("Verifier")
            .field("keys", &keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl Verifier {
    /// Builds the verifier from configuration; exactly one key source must be given.
    pub async fn from_args(args: &AuthArgs) -> anyhow::Result<Self> {
        let keys = match (&args.hs256_secret, &args.jwks_file, &args.jwks_url) {
            (Some(secret), None, None) => Keys::Hs256(
                DecodingKey::from_secret(checked_secret(secret)?.as_bytes())
                    .context("use the HS256 secret")?,
            ),
            (None, Some(path), None) => {
                let text = tokio::fs::read_to_string(path)
                    .await
                    .with_context(|| format!("read the JWKS file {}", path.display()))?;
                Keys::Jwks {
                    set: RwLock::new(parse_jwks(&text)?),
                    url: None,
                    last_fetch: Mutex::new(Instant::now()),
                    refresh_interval: args.jwks_refresh_interval,
                }
            }
            (None, None, Some(url)) => Keys::Jwks {
                set: RwLock::new(fetch_jwks(url).await?),
                url: Some(url.clone()),
                last_fetch: Mutex::new(Instant::now()),
                refresh_interval: args.jwks_refresh_interval,
            },
            _ => anyhow::bail!(
                "configure exactly one token key source: JWT_HS256_SECRET (development), JWT_JWKS_FILE or JWT_JWKS_URL"
            ),
        };
        Ok(Self {
            keys: Arc::new(keys),
            issuer: args.issuer.clone(),
            audience: args.audience.clone(),
            leeway: args.leeway,
        })
    }

    /// Verifies `token` and returns its caller.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        let key = match &*self.keys {
            Keys::Hs256(key) => {
                if header.alg != Algorithm::HS256 {
                    return Err(AuthError::Algorithm);
                }
                key.clone()
            }
            Keys::Jwks {
                set,
                url,
                last_fetch,
                refresh_interval,
            } => {
                if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
                    return Err(AuthError::Algorithm);
                }
                let found = find_key(&*set.read().await, header.alg, header.kid.as_deref());
                let found = match (found, url) {
                    (Some(key), _) => Some(key),
                    (None, Some(url)) => {
                        // Keys rotate: fetch the set again, but not more often than the interval.
                        let mut last = last_fetch.lock().await;
                        if last.elapsed() >= *refresh_interval {
                            *last = Instant::now();
                            match fetch_jwks(url).await {
                                Ok(fresh) => *set.write().await = fresh,
                                Err(e) => {
                                    tracing::warn!(error = format!("{e:#}"), "JWKS refresh failed")
                                }
                            }
                        }
                        find_key(&*set.read().await, header.alg, header.kid.as_deref())
                    }
                    (None, None) => None,
                };
                found.ok_or(AuthError::Signature)?
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = self.leeway.as_secs();
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidSignature => AuthError::Signature,
                K::ExpiredSignature => AuthError::Expired,
                K::ImmatureSignature => AuthError::NotYetValid,
                K::InvalidAudience => AuthError::Audience,
                K::InvalidIssuer => AuthError::Issuer,
                K::InvalidAlgorithm | K::InvalidAlgorithmName => AuthError::Algorithm,
                K::MissingRequiredClaim(_) => {
                    AuthError::Claims("exp, nbf, iss, aud and sub are required")
                }
                K::Json(_) => AuthError::Claims(
                    "sub must be a string and role one of advertiser, creator, admin",
                ),
                _ => AuthError::Malformed,
            }
        })?;
        let id = Uuid::parse_str(&data.claims.sub)
            .map_err(|_| AuthError::Claims("sub must be a UUID"))?;
        Ok(Principal {
            id,
            role: data.claims.role,
        })
    }
}

fn checked_secret(secret: &SecretString) -> anyhow::Result<&str> {
    let secret = secret.expose_secret();
    anyhow::ensure!(
        secret.len() >= MIN_SECRET_BYTES,
        "JWT_HS256_SECRET must be at least {MIN_SECRET_BYTES} bytes"
    );
    Ok(secret)
}

/// Mints an HS256 token (development: `bff token`, tests).
pub fn mint_hs256(claims: &Claims, secret: &SecretString) -> anyhow::Result<String> {
    let key = EncodingKey::from_secret(checked_secret(secret)?.as_bytes())
        .context("use the HS256 secret")?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).context("sign the token")
}

fn parse_jwks(text: &str) -> anyhow::Result<JwkSet> {
    let set: JwkSet = serde_json::from_str(text).context("parse the JWKS")?;
    anyhow::ensure!(
        set.keys.iter().any(|k| usable(k).is_some()),
        "the JWKS holds no RS256 or ES256 (P-256) public key"
    );
    Ok(set)
}

async fn fetch_jwks(url: &str) -> anyhow::Result<JwkSet> {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .with_context(|| format!("fetch the JWKS from {url}"))?
        .error_for_status()
        .with_context(|| format!("fetch the JWKS from {url}"))?;
    parse_jwks(&response.text().await.context("read the JWKS")?)
}

/// The algorithm a JWK can verify, from its key type (and its `alg`, if it names one).
fn usable(jwk: &Jwk) -> Option<Algorithm> {
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(by_type),
        Some(alg) if alg.to_string() == format!("{by_type:?}") => Some(by_type),
        Some(_) => None,
    }
}

fn find_key(set: &JwkSet, alg: Algorithm, kid: Option<&str>) -> Option<DecodingKey> {
    set.keys
        .iter()
        .filter(|k| usable(k) == Some(alg))
        .filter(|k| kid.is_none() || k.common.key_id.as_deref() == kid)
        .find_map(|k| DecodingKey::from_jwk(k).ok())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
