//! JWT verification for `authKey` / `adminKey` (PROTOCOL §1–§2).
//!
//! Responsibility: compile an app's key configuration once into a [`Verifier`], and turn a
//! compact JWS into the [`Claims`] ringcast uses, or a [`TokenError`] saying why not.
//!
//! Must not: read the clock (the current time is the `now_unix_s` parameter), do I/O (JWKS
//! fetching lives in `runtime::jwks`; this module only reads the shared [`JwksCache`]
//! snapshot and rings its doorbell), put a token or a key into an error or a `Debug`
//! output, or take the algorithm from anywhere but the configured allow-list.
//!
//! How: this module parses the JWS itself — size limit, three base64url parts, header,
//! allow-list, signature, claims — and asks a library only for the signature check
//! (`auth::key`, shared with the JWKS key sets): jsonwebtoken's crypto provider for every
//! algorithm but ES512 (aws-lc-rs by default, feature `jwt-aws-lc`; RustCrypto with
//! `jwt-rust-crypto`: docs/decisions/token-verification.md), the RustCrypto `p521` crate
//! for ES512 (jsonwebtoken 12 has no ES512). jsonwebtoken's own `decode`/`Validation` is
//! not used, so it never reads the clock, and every algorithm goes through the one claims
//! routine (`auth::claims`). [`Verifier::verify_cached`] answers a token verified before
//! from the node's `auth::token_cache`.
//!
//! Invariants:
//! - `alg: none` and any `alg` outside the configured list are refused before any crypto.
//! - An HS* algorithm is never used with a PEM key: refused at [`Verifier::new`], and
//!   HS* tokens are only checked against a secret at verify time.
//! - Tokens over [`MAX_TOKEN_BYTES`] are refused as malformed before any decoding.
//! - `exp`/`nbf` are checked with [`LEEWAY_S`] of leeway; an absent `exp` never expires.
//! - `kid` picks a key only for a JWKS source; with a raw key it is ignored (never a path,
//!   URL or key). `jku`/`x5u`/`jwk` headers are never followed.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::DecodingKey;
use p521::pkcs8::DecodePublicKey as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::auth::algorithm::Algorithm;
use crate::auth::claims::{validate_claims, RawClaims, Verified};
pub use crate::auth::claims::{Claims, TokenError, LEEWAY_S};
use crate::auth::jwks::KeySet;
use crate::auth::jwks::{JwksCache, KeyLookup};
use crate::auth::key::{SignatureError, VerificationKey};
use crate::auth::token_cache::{next_key_generation, KeyGeneration, Lookup, TokenCache};
use std::sync::Arc;

/// The largest token accepted, in bytes. Real tokens are well under 2 KiB; the limit bounds
/// the base64 and JSON work an unauthenticated peer can cause.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Length of an Ed25519 public key.
const ED25519_PUBLIC_KEY_BYTES: usize = 32;

/// The key part of an app's configuration (`authKey` / `adminKey` with `source: "raw"`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct VerifierConfig {
    /// HS*: the secret, used as its UTF-8 bytes (never base64-decoded).
    /// Otherwise: an SPKI PEM public key (`BEGIN RSA PUBLIC KEY` is accepted for RS*/PS*).
    pub key: String,
    /// Allowed JWS algorithm names; must not be empty.
    pub algorithms: Vec<String>,
    /// Accepted `iss` values; empty accepts any (and a missing) issuer.
    pub issuer: Vec<String>,
    /// Accepted `aud` values; empty means `aud` is not checked.
    pub audience: Vec<String>,
}

impl fmt::Debug for VerifierConfig {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("VerifierConfig")
            .field("key", &"[redacted]")
            .field("algorithms", &self.algorithms)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

/// Why a key configuration cannot be used. Never contains the key itself; the caller adds
/// the app id and which key (`authKey` / `adminKey`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// `algorithms` is empty; list at least one algorithm.
    #[error("the algorithm list is empty")]
    NoAlgorithms,
    /// An entry of `algorithms` is not a supported JWS algorithm (`none` never is).
    #[error("unknown or unsupported algorithm {name:?}")]
    UnknownAlgorithm {
        /// The configured name.
        name: String,
    },
    /// HS* algorithms are listed together with public-key algorithms; one key cannot be both.
    #[error("HMAC (HS*) and public-key algorithms cannot share one key")]
    MixedKeyKinds,
    /// An HS* algorithm is listed but the key is a PEM (algorithm-confusion guard).
    #[error("{algorithm} needs a shared secret, but the key is a PEM key")]
    HmacWithPemKey {
        /// The HMAC algorithm listed.
        algorithm: Algorithm,
    },
    /// An HS* algorithm is listed with an empty secret.
    #[error("{algorithm} needs a non-empty secret")]
    EmptySecret {
        /// The HMAC algorithm listed.
        algorithm: Algorithm,
    },
    /// A private key was configured where a public key belongs; configure the public half.
    #[error("the key for {algorithm} is a private key; configure the public key (SPKI PEM)")]
    PrivateKeyGiven {
        /// The algorithm the key was meant for.
        algorithm: Algorithm,
    },
    /// The key is not a PEM public key of the kind (RSA, curve, Ed25519) the algorithm needs.
    #[error("the key is not a PEM public key usable for {algorithm}")]
    UnusableKey {
        /// The algorithm the key was meant for.
        algorithm: Algorithm,
    },
    /// An HS* algorithm is listed with a JWKS source; a JWKS publishes public keys only.
    #[error("{algorithm} cannot be used with a JWKS source (JWKS keys are public keys)")]
    HmacWithJwks {
        /// The HMAC algorithm listed.
        algorithm: Algorithm,
    },
    /// The JWKS URL is not an `http://` or `https://` URL.
    #[error("the JWKS URL must start with https:// (or http://)")]
    BadJwksUrl,
    /// The build has no jsonwebtoken crypto provider (enable exactly one `jwt-*` feature).
    #[error("no jsonwebtoken crypto provider is available in this build")]
    NoCryptoProvider,
}

/// Where the keys come from.
#[derive(Clone)]
enum KeySource {
    /// `source: "raw"`: one parsed key per allowed algorithm, same order as `algorithms`.
    Raw(Vec<VerificationKey>),
    /// `source: "jwks"`: the shared, fetched key set of one URL, picked by `kid`.
    Jwks(Arc<JwksCache>),
}

/// A compiled key configuration; build once at config load, share between threads.
#[derive(Clone)]
pub struct Verifier {
    /// The allow-list, deduplicated, in configuration order; never empty.
    algorithms: Vec<Algorithm>,
    /// The keys.
    keys: KeySource,
    /// jsonwebtoken's provider, resolved once so that verification cannot panic on it.
    provider: &'static CryptoProvider,
    /// Accepted `iss` values; empty accepts any.
    issuers: Vec<String>,
    /// Accepted `aud` values; empty skips the check.
    audiences: Vec<String>,
    /// SHA-256 of the key configuration (source, key, algorithms, issuers, audiences): a
    /// reload keeps a verifier whose configuration is unchanged ([`Self::same_configuration`]).
    fingerprint: [u8; 32],
    /// This compiled configuration's key generation (`auth::token_cache`).
    key_generation: u64,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algorithms: Vec<Algorithm> = self.algorithms().collect();
        formatter
            .debug_struct("Verifier")
            .field("algorithms", &algorithms)
            .field(
                "key",
                &match &self.keys {
                    KeySource::Raw(_) => "[redacted]",
                    KeySource::Jwks(_) => "jwks",
                },
            )
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .finish()
    }
}

impl Verifier {
    /// Parses the key for every listed algorithm; any problem is a [`KeyError`].
    pub fn new(config: &VerifierConfig) -> Result<Verifier, KeyError> {
        let (algorithms, provider) = allowed_algorithms(config)?;
        let hmac_count = algorithms.iter().filter(|a| a.is_hmac()).count();
        if hmac_count != 0 && hmac_count != algorithms.len() {
            return Err(KeyError::MixedKeyKinds);
        }
        let mut keys = Vec::with_capacity(algorithms.len());
        for algorithm in &algorithms {
            keys.push(parse_key(provider, *algorithm, &config.key)?);
        }
        Ok(Verifier {
            algorithms,
            keys: KeySource::Raw(keys),
            provider,
            issuers: config.issuer.clone(),
            audiences: config.audience.clone(),
            fingerprint: fingerprint("raw", config),
            key_generation: next_key_generation(),
        })
    }

    /// A verifier whose keys come from `cache` (`source: "jwks"`; `config.key` is the URL
    /// the cache was made for). HS* algorithms are refused: a JWKS holds public keys.
    pub fn with_jwks(config: &VerifierConfig, cache: Arc<JwksCache>) -> Result<Verifier, KeyError> {
        let (algorithms, provider) = allowed_algorithms(config)?;
        if let Some(algorithm) = algorithms.iter().find(|a| a.is_hmac()) {
            return Err(KeyError::HmacWithJwks {
                algorithm: *algorithm,
            });
        }
        Ok(Verifier {
            algorithms,
            keys: KeySource::Jwks(cache),
            provider,
            issuers: config.issuer.clone(),
            audiences: config.audience.clone(),
            fingerprint: fingerprint("jwks", config),
            key_generation: next_key_generation(),
        })
    }

    /// The allowed algorithms, in configuration order.
    pub fn algorithms(&self) -> impl Iterator<Item = Algorithm> + '_ {
        self.algorithms.iter().copied()
    }

    /// The accepted `iss` values (empty: any).
    pub fn issuers(&self) -> &[String] {
        &self.issuers
    }

    /// The accepted `aud` values (empty: not checked).
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// Whether the keys come from a JWKS.
    pub fn uses_jwks(&self) -> bool {
        matches!(self.keys, KeySource::Jwks(_))
    }

    /// Verifies `token` (a compact JWS) as of `now_unix_s` and returns its claims.
    ///
    /// With a JWKS source, a `kid` missing from the current set answers
    /// [`TokenError::UnknownKey`] at once (the caller never waits) and asks the fetcher for
    /// a refetch, which it rate-limits.
    pub fn verify(&self, token: &str, now_unix_s: u64) -> Result<Claims, TokenError> {
        let set = self.key_set();
        self.verify_against(token, now_unix_s, set.as_deref())
            .map(|verified| verified.claims)
    }

    /// [`Self::verify`] through `cache`: a token of `app` this node verified before with the
    /// same keys is answered from the cache (no signature check, no JSON parsing), still
    /// refused once its `exp` has passed; a token verified now is remembered.
    pub fn verify_cached(
        &self,
        cache: &TokenCache,
        app: &str,
        token: &str,
        now_unix_s: u64,
    ) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        if cache.is_disabled() {
            return self.verify(token, now_unix_s);
        }
        // The set is read once: the generation in the digest is the one that verifies.
        let set = self.key_set();
        let generation = KeyGeneration {
            configuration: self.key_generation,
            key_set: set.as_ref().map_or(0, |set| set.version()),
        };
        let digest = cache.digest(app, generation, token);
        match cache.lookup(&digest, now_unix_s) {
            Lookup::Hit(claims) => Ok(claims),
            Lookup::Expired => Err(TokenError::Expired),
            Lookup::Miss => {
                let verified = self.verify_against(token, now_unix_s, set.as_deref())?;
                cache.insert(digest, &verified.claims, verified.expires_at, now_unix_s);
                Ok(verified.claims)
            }
        }
    }

    /// Whether `other` was compiled from the same key configuration (a reload keeps this
    /// verifier then, and with it its key generation and the cached tokens).
    pub fn same_configuration(&self, other: &Verifier) -> bool {
        self.fingerprint == other.fingerprint
    }

    /// This compiled configuration's key generation.
    pub fn key_generation(&self) -> u64 {
        self.key_generation
    }

    /// The current JWKS key set, for a JWKS source.
    fn key_set(&self) -> Option<Arc<KeySet>> {
        match &self.keys {
            KeySource::Raw(_) => None,
            KeySource::Jwks(cache) => Some(cache.snapshot()),
        }
    }

    /// Verifies `token` with the raw keys or, for a JWKS source, with `set`.
    fn verify_against(
        &self,
        token: &str,
        now_unix_s: u64,
        set: Option<&KeySet>,
    ) -> Result<Verified, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let (signing_input, signature_part) =
            token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (header_part, claims_part) =
            signing_input.split_once('.').ok_or(TokenError::Malformed)?;
        if claims_part.contains('.') {
            return Err(TokenError::Malformed);
        }
        let header: RawHeader = decode_json_part(header_part)?;
        if header.critical.is_some() {
            return Err(TokenError::Malformed);
        }
        let algorithm =
            Algorithm::parse(&header.algorithm).ok_or(TokenError::AlgorithmNotAllowed)?;
        let position = self
            .algorithms
            .iter()
            .position(|allowed| *allowed == algorithm)
            .ok_or(TokenError::AlgorithmNotAllowed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature_part)
            .map_err(|_| TokenError::Malformed)?;
        match &self.keys {
            KeySource::Raw(keys) => {
                let key = keys.get(position).ok_or(TokenError::AlgorithmNotAllowed)?;
                self.check_signature(algorithm, key, signing_input.as_bytes(), &signature)?;
            }
            KeySource::Jwks(cache) => {
                let set = set.ok_or(TokenError::UnknownKey)?;
                match set.lookup(header.key_id.as_deref(), algorithm) {
                    KeyLookup::Found(key) => {
                        self.check_signature(algorithm, key, signing_input.as_bytes(), &signature)?
                    }
                    KeyLookup::WrongAlgorithm => return Err(TokenError::AlgorithmNotAllowed),
                    KeyLookup::Unknown => {
                        cache.request_refresh();
                        return Err(TokenError::UnknownKey);
                    }
                }
            }
        }
        let claims: RawClaims = decode_json_part(claims_part)?;
        validate_claims(claims, &self.issuers, &self.audiences, now_unix_s)
    }

    /// Checks `signature` over `message` with `key` for `algorithm`.
    fn check_signature(
        &self,
        algorithm: Algorithm,
        key: &VerificationKey,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), TokenError> {
        key.check(self.provider, algorithm, message, signature)
            .map_err(|error| match error {
                SignatureError::WrongAlgorithm => TokenError::AlgorithmNotAllowed,
                SignatureError::Invalid => TokenError::BadSignature,
            })
    }
}

/// SHA-256 of a key configuration and its source: equal for equal configurations.
fn fingerprint(source: &str, config: &VerifierConfig) -> [u8; 32] {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(source.as_bytes());
    field(config.key.as_bytes());
    for list in [&config.algorithms, &config.issuer, &config.audience] {
        field(&(list.len() as u64).to_le_bytes());
        for entry in list {
            field(entry.as_bytes());
        }
    }
    hasher.finalize().into()
}

/// The deduplicated allow-list of `config` and the crypto provider.
fn allowed_algorithms(
    config: &VerifierConfig,
) -> Result<(Vec<Algorithm>, &'static CryptoProvider), KeyError> {
    if config.algorithms.is_empty() {
        return Err(KeyError::NoAlgorithms);
    }
    let mut algorithms: Vec<Algorithm> = Vec::with_capacity(config.algorithms.len());
    for name in &config.algorithms {
        let algorithm = Algorithm::parse(name.trim())
            .ok_or_else(|| KeyError::UnknownAlgorithm { name: name.clone() })?;
        if !algorithms.contains(&algorithm) {
            algorithms.push(algorithm);
        }
    }
    let provider = CryptoProvider::try_get_default().ok_or(KeyError::NoCryptoProvider)?;
    Ok((algorithms, provider))
}

/// Whether `key` is PEM text (of any kind).
fn looks_like_pem(key: &str) -> bool {
    key.contains("-----BEGIN")
}

/// Whether `key` is a PEM private key of any kind.
fn is_private_pem(key: &str) -> bool {
    key.lines()
        .any(|line| line.starts_with("-----BEGIN") && line.contains("PRIVATE KEY"))
}

/// Parses `key` for `algorithm` and proves it usable by building a verifier once.
fn parse_key(
    provider: &'static CryptoProvider,
    algorithm: Algorithm,
    key: &str,
) -> Result<VerificationKey, KeyError> {
    if algorithm.is_hmac() {
        if looks_like_pem(key) {
            return Err(KeyError::HmacWithPemKey { algorithm });
        }
        let secret = DecodingKey::from_secret(key.as_bytes())
            .map_err(|_| KeyError::EmptySecret { algorithm })?;
        return Ok(VerificationKey::Library(secret));
    }
    if is_private_pem(key) {
        return Err(KeyError::PrivateKeyGiven { algorithm });
    }
    let unusable = KeyError::UnusableKey { algorithm };
    let pem = key.trim().as_bytes();
    let decoding_key = match algorithm {
        Algorithm::ES512 => {
            let verifying_key =
                p521::ecdsa::VerifyingKey::from_public_key_pem(key.trim()).map_err(|_| unusable)?;
            return Ok(VerificationKey::P521(Box::new(verifying_key)));
        }
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => {
            let decoding_key = DecodingKey::from_rsa_pem(pem).map_err(|_| unusable.clone())?;
            // The RSA verifier parses its key per call; parse it once here to fail early.
            let der = decoding_key
                .try_get_as_bytes()
                .map_err(|_| unusable.clone())?;
            (provider.key_utils.rsa_pub_components_from_public_key)(der)
                .map_err(|_| unusable.clone())?;
            decoding_key
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            // The curve is checked here: the aws-lc backend accepts any EC point until the
            // first verification, which would then refuse every token.
            let curve_matches = match algorithm {
                Algorithm::ES256 => p256::PublicKey::from_public_key_pem(key.trim()).is_ok(),
                _ => p384::PublicKey::from_public_key_pem(key.trim()).is_ok(),
            };
            if !curve_matches {
                return Err(unusable);
            }
            DecodingKey::from_ec_pem(pem).map_err(|_| unusable.clone())?
        }
        Algorithm::EdDSA => {
            let decoding_key = DecodingKey::from_ed_pem(pem).map_err(|_| unusable.clone())?;
            // jsonwebtoken slices the first 32 bytes without a length check.
            let length = decoding_key
                .try_get_as_bytes()
                .map_err(|_| unusable.clone())?
                .len();
            if length != ED25519_PUBLIC_KEY_BYTES {
                return Err(unusable);
            }
            decoding_key
        }
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => return Err(unusable),
    };
    // Building the verifier parses EC and Ed keys and checks the curve matches.
    VerificationKey::library(provider, algorithm, decoding_key).ok_or(unusable)
}

/// The JOSE header fields this module reads.
#[derive(Deserialize)]
struct RawHeader {
    /// `alg`: required.
    #[serde(rename = "alg")]
    algorithm: String,
    /// `crit`: extensions the verifier must understand; ringcast understands none.
    #[serde(rename = "crit", default)]
    critical: Option<serde_json::Value>,
    /// `kid`: picks the key of a JWKS source; ignored for raw keys.
    #[serde(rename = "kid", default)]
    key_id: Option<String>,
}

/// Base64url-decodes one JWS part and parses it as JSON.
fn decode_json_part<T: DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    // RFC 7519 §7.2: the header and claims are UTF-8. serde would skip an ignored field's
    // invalid bytes without looking, so check the whole part first (found by fuzzing).
    std::str::from_utf8(&bytes).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}
