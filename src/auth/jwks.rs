//! JSON Web Key Sets (`"source": "jwks"`, PROTOCOL §1): parsing a fetched document into a
//! bounded [`KeySet`], and the [`JwksCache`] that workers read and the fetcher fills.
//!
//! Responsibility: turn JWKS bytes into verification keys — RSA (`RS*`/`PS*`), EC P-256,
//! P-384, P-521 (`ES256`/`ES384`/`ES512`) and OKP Ed25519 (`EdDSA`) — picked by `kid`; hold
//! the current set behind an `Arc` snapshot; ring the fetcher's doorbell when a token names
//! a `kid` the set lacks.
//!
//! Must not: do I/O, read the clock or log: `runtime::jwks` fetches over HTTP(S), decides
//! when (Cache-Control `max-age`, the 30 s unknown-`kid` limit, backoff) and logs. Nothing
//! here waits: a handshake reads the snapshot once and never blocks on a fetch.
//!
//! Invariants: a set holds at most [`MAX_JWKS_KEYS`] usable keys (further keys are ignored
//! and counted in [`ParsedKeySet::ignored`]); a document over [`MAX_JWKS_DOCUMENT_BYTES`] is
//! refused whole; a key that cannot be used (other `kty`/`crv`, `use` other than `sig`, bad
//! coordinates, oversized `kid`) is skipped and counted, never fatal for its neighbours;
//! private members (`d`, …) are never read; keys never appear in `Debug` or errors; a JWKS URL
//! is shown only through [`redact_url`] (no userinfo, query or fragment).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use sha2::Digest as _;

use crate::auth::algorithm::Algorithm;
use crate::auth::key::VerificationKey;

/// Usable keys kept from one document. Identity providers publish 1–5 keys (current, next,
/// previous); 32 leaves room for several issuers behind one URL while bounding the linear
/// `kid` search and the memory a hostile endpoint can make us hold.
pub const MAX_JWKS_KEYS: usize = 32;

/// The largest JWKS document accepted. A 4096-bit RSA JWK is under 1 KiB; 256 KiB holds
/// certificate chains (`x5c`) for dozens of keys. Larger: the fetch fails, the old set stays.
pub const MAX_JWKS_DOCUMENT_BYTES: usize = 256 * 1024;

/// The longest `kid` kept; keys with a longer one are skipped (real ones are ≤ 64 bytes).
pub const MAX_KID_BYTES: usize = 256;

/// What stands for a URL's userinfo (`user:password@`) and for other secret parts of a JWKS
/// URL wherever one is shown (logs, `/metrics` labels, errors, `Debug`).
pub const REDACTED: &str = "***";

/// A JWKS URL as it may be shown: the userinfo replaced by [`REDACTED`] (so
/// `https://user:password@host/jwks?k=v` shows as `https://***@host/jwks`), the query and the
/// fragment dropped (an operator may have put a credential there). The fetch still uses the
/// whole URL (`ureq` sends the userinfo as `Authorization: Basic`).
///
/// Everything between `://` and the *last* `@` counts as userinfo, wherever that `@` is: a
/// password with an unencoded `/`, `?` or `#` (not a valid URL, but pasted ones happen) stays
/// hidden too, at the price of a misleading label for the rare URL with an `@` in its path
/// or query (it still reveals nothing).
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url
        .find("://")
        .map_or(("", url), |at| url.split_at(at + "://".len()));
    let (userinfo, rest) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    match userinfo {
        Some(_) => format!("{scheme}{REDACTED}@{}", &rest[..end]),
        None => format!("{scheme}{}", &rest[..end]),
    }
}

/// `text` (an HTTP client's error message, say) with every secret part of `url` replaced:
/// the URL itself by [`redact_url`], then any remaining copy of its userinfo, password,
/// query or fragment by [`REDACTED`].
pub fn redact_url_in(text: &str, url: &str) -> String {
    let mut text = text.replace(url, &redact_url(url));
    let after_scheme = url.find("://").map_or(url, |at| &url[at + "://".len()..]);
    let userinfo = after_scheme.rfind('@').map(|at| &after_scheme[..at]);
    let password = userinfo.and_then(|userinfo| userinfo.split_once(':').map(|(_, p)| p));
    let host_and_path = after_scheme
        .rfind('@')
        .map_or(after_scheme, |at| &after_scheme[at + 1..]);
    let query = host_and_path
        .find(['?', '#'])
        .map(|at| &host_and_path[at + 1..]);
    for secret in [userinfo, password, query].into_iter().flatten() {
        if !secret.is_empty() {
            text = text.replace(secret, REDACTED);
        }
    }
    text
}

/// Why a document was refused whole (the previous set stays in use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Over [`MAX_JWKS_DOCUMENT_BYTES`].
    #[error("JWKS document larger than {MAX_JWKS_DOCUMENT_BYTES} bytes")]
    TooLarge,
    /// Not a JSON object with a `keys` array.
    #[error("not a JWKS document (a JSON object with a \"keys\" array)")]
    NotJwks,
    /// The jsonwebtoken build has no crypto provider.
    #[error("no jsonwebtoken crypto provider is available in this build")]
    NoCryptoProvider,
}

/// The kind of a usable key, which decides the algorithms it verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// `kty: RSA`: RS256/384/512 and PS256/384/512.
    Rsa,
    /// `kty: EC, crv: P-256`: ES256.
    P256,
    /// `kty: EC, crv: P-384`: ES384.
    P384,
    /// `kty: EC, crv: P-521`: ES512.
    P521,
    /// `kty: OKP, crv: Ed25519`: EdDSA.
    Ed25519,
}

impl KeyFamily {
    /// Whether a key of this family verifies `algorithm`.
    pub fn fits(self, algorithm: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyFamily::Rsa => matches!(algorithm, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyFamily::P256 => algorithm == ES256,
            KeyFamily::P384 => algorithm == ES384,
            KeyFamily::P521 => algorithm == ES512,
            KeyFamily::Ed25519 => algorithm == EdDSA,
        }
    }
}

/// One usable key of a set.
struct SetKey {
    /// `kid`, when the JWK has one.
    key_id: Option<String>,
    /// The JWK's `alg`, when present: the only algorithm it may verify.
    algorithm: Option<Algorithm>,
    /// What it verifies.
    family: KeyFamily,
    /// The parsed key.
    key: VerificationKey,
}

/// An immutable, bounded set of verification keys from one JWKS document.
#[derive(Default)]
pub struct KeySet {
    /// At most [`MAX_JWKS_KEYS`].
    keys: Vec<SetKey>,
    /// SHA-256 of the document it was parsed from: a refetch of the same document is no
    /// key change.
    fingerprint: [u8; 32],
    /// Its key generation (`auth::token_cache`), given by [`JwksCache::install`]; 0 for the
    /// empty set before the first fetch.
    version: u64,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<(&str, KeyFamily)> = self
            .keys
            .iter()
            .map(|key| (key.key_id.as_deref().unwrap_or("<no kid>"), key.family))
            .collect();
        formatter
            .debug_struct("KeySet")
            .field("keys", &ids)
            .finish()
    }
}

/// The outcome of looking a token's key up in a set.
pub(crate) enum KeyLookup<'a> {
    /// The key to check the signature with.
    Found(&'a VerificationKey),
    /// A key with this `kid` exists but cannot verify the token's `alg`: refuse, no refetch.
    WrongAlgorithm,
    /// No key with this `kid` (or, without `kid`, not exactly one fitting key): refetch.
    Unknown,
}

impl KeySet {
    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no usable key (before the first successful fetch).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key generation of this set (`auth::token_cache::KeyGeneration::key_set`).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The `kid`s, in document order (keys without one are left out).
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().filter_map(|key| key.key_id.as_deref())
    }

    /// Whether a key `key` fits `algorithm` (family and, when present, the JWK's `alg`).
    fn fits(key: &SetKey, algorithm: Algorithm) -> bool {
        key.family.fits(algorithm) && key.algorithm.is_none_or(|only| only == algorithm)
    }

    /// The key for a token with `key_id` and `algorithm`. Without a `kid`, the set's only
    /// key fitting the algorithm is used, if there is exactly one.
    pub(crate) fn lookup(&self, key_id: Option<&str>, algorithm: Algorithm) -> KeyLookup<'_> {
        match key_id {
            Some(key_id) => {
                let mut named = self
                    .keys
                    .iter()
                    .filter(|key| key.key_id.as_deref() == Some(key_id))
                    .peekable();
                if named.peek().is_none() {
                    return KeyLookup::Unknown;
                }
                match named.find(|key| Self::fits(key, algorithm)) {
                    Some(key) => KeyLookup::Found(&key.key),
                    None => KeyLookup::WrongAlgorithm,
                }
            }
            None => {
                let mut fitting = self.keys.iter().filter(|key| Self::fits(key, algorithm));
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => KeyLookup::Found(&key.key),
                    _ => KeyLookup::Unknown,
                }
            }
        }
    }
}

/// A parsed document: the set, and how many keys were skipped or ignored.
#[derive(Debug)]
pub struct ParsedKeySet {
    /// The usable keys.
    pub set: KeySet,
    /// Keys skipped as unusable (other key types or curves, encryption keys, bad values).
    pub skipped: usize,
    /// Usable keys ignored beyond [`MAX_JWKS_KEYS`].
    pub ignored: usize,
}

/// The members of a JWK this module reads; every other member (`d`, `x5c`, …) is ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

/// `{"keys": [...]}`; each entry is parsed on its own, so one odd key spoils nothing.
#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

/// Parses a JWKS document into a bounded set.
pub fn parse_key_set(document: &[u8]) -> Result<ParsedKeySet, JwksError> {
    if document.len() > MAX_JWKS_DOCUMENT_BYTES {
        return Err(JwksError::TooLarge);
    }
    let provider = CryptoProvider::try_get_default().ok_or(JwksError::NoCryptoProvider)?;
    let raw: RawJwks = serde_json::from_slice(document).map_err(|_| JwksError::NotJwks)?;
    let mut parsed = ParsedKeySet {
        set: KeySet {
            fingerprint: sha2::Sha256::digest(document).into(),
            ..KeySet::default()
        },
        skipped: 0,
        ignored: 0,
    };
    for value in raw.keys {
        let key = serde_json::from_value::<RawJwk>(value)
            .ok()
            .and_then(|jwk| parse_jwk(provider, &jwk));
        match key {
            None => parsed.skipped += 1,
            Some(_) if parsed.set.keys.len() >= MAX_JWKS_KEYS => parsed.ignored += 1,
            Some(key) => parsed.set.keys.push(key),
        }
    }
    Ok(parsed)
}

/// Decodes a base64url member and checks its length.
fn coordinate(value: &Option<String>, length: usize) -> Option<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD.decode(value.as_deref()?).ok()?;
    (bytes.len() == length).then_some(bytes)
}

/// One JWK into a usable key, or `None` to skip it.
fn parse_jwk(provider: &'static CryptoProvider, jwk: &RawJwk) -> Option<SetKey> {
    if jwk.usage.as_deref().is_some_and(|usage| usage != "sig") {
        return None;
    }
    if jwk
        .kid
        .as_ref()
        .is_some_and(|kid| kid.len() > MAX_KID_BYTES)
    {
        return None;
    }
    let algorithm = match jwk.alg.as_deref() {
        None => None,
        Some(name) => Some(Algorithm::parse(name)?),
    };
    let (family, key) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => {
            let (modulus, exponent) = (jwk.n.as_deref()?, jwk.e.as_deref()?);
            let n = URL_SAFE_NO_PAD.decode(modulus).ok()?;
            let e = URL_SAFE_NO_PAD.decode(exponent).ok()?;
            // Validate once here (size and exponent bounds), as the PEM path does; the
            // library rebuilds the key per verification.
            rsa::PublicKey::new(
                rsa::BoxedUint::from_be_slice_vartime(&n),
                rsa::BoxedUint::from_be_slice_vartime(&e),
            )
            .ok()?;
            let key = DecodingKey::from_rsa_components(modulus, exponent).ok()?;
            (
                KeyFamily::Rsa,
                VerificationKey::library(provider, Algorithm::RS256, key)?,
            )
        }
        ("EC", Some("P-256")) => (
            KeyFamily::P256,
            ec_key(provider, jwk, 32, Algorithm::ES256)?,
        ),
        ("EC", Some("P-384")) => (
            KeyFamily::P384,
            ec_key(provider, jwk, 48, Algorithm::ES384)?,
        ),
        ("EC", Some("P-521")) => {
            let mut point = vec![0x04];
            point.extend(coordinate(&jwk.x, 66)?);
            point.extend(coordinate(&jwk.y, 66)?);
            let key = p521::ecdsa::VerifyingKey::from_sec1_bytes(&point).ok()?;
            (KeyFamily::P521, VerificationKey::P521(Box::new(key)))
        }
        ("OKP", Some("Ed25519")) => {
            coordinate(&jwk.x, 32)?;
            let key = DecodingKey::from_ed_components(jwk.x.as_deref()?).ok()?;
            (
                KeyFamily::Ed25519,
                VerificationKey::library(provider, Algorithm::EdDSA, key)?,
            )
        }
        _ => return None,
    };
    if algorithm.is_some_and(|algorithm| !family.fits(algorithm)) {
        return None;
    }
    Some(SetKey {
        key_id: jwk.kid.clone(),
        algorithm,
        family,
        key,
    })
}

/// A P-256/P-384 key from `x`/`y` of `length` bytes each, checked to be on the curve.
fn ec_key(
    provider: &'static CryptoProvider,
    jwk: &RawJwk,
    length: usize,
    algorithm: Algorithm,
) -> Option<VerificationKey> {
    coordinate(&jwk.x, length)?;
    coordinate(&jwk.y, length)?;
    let key = DecodingKey::from_ec_components(jwk.x.as_deref()?, jwk.y.as_deref()?).ok()?;
    VerificationKey::library(provider, algorithm, key)
}

/// The doorbell of the fetcher: a cache rings it with its index.
pub type Doorbell = crossbeam_channel::Sender<usize>;

/// The shared, current key set of one JWKS URL. Created when the configuration is compiled
/// (empty), filled by the fetcher, read once per handshake.
pub struct JwksCache {
    /// The JWKS URL, credentials included: used only to fetch and to match configurations.
    url: String,
    /// [`redact_url`] of `url`: the only form that is shown (logs, metrics, `Debug`).
    shown_url: String,
    /// The current set, swapped whole by [`JwksCache::install`].
    current: RwLock<Arc<KeySet>>,
    /// A refetch is asked for and not yet taken by the fetcher (deduplicates rings).
    refresh_requested: AtomicBool,
    /// The fetcher's doorbell and this cache's index there; set when a fetcher starts
    /// (again after a configuration reload, which starts a fetcher for the new set of URLs).
    doorbell: Mutex<Option<(Doorbell, usize)>>,
    /// When the fetcher plans the next fetch after a successful one (kept across fetcher
    /// restarts by a configuration reload, so a kept URL is not fetched again at once).
    refresh_due: Mutex<Option<std::time::Instant>>,
    /// Fetches that installed a set / that failed (kept the previous set); for `/metrics`.
    pub fetches_ok: std::sync::atomic::AtomicU64,
    pub fetches_failed: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for JwksCache {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("JwksCache")
            .field("url", &self.url_for_logs())
            .field("keys", &self.snapshot().len())
            .finish()
    }
}

impl JwksCache {
    /// An empty cache for `url`; tokens are refused until the fetcher installs a set.
    pub fn new(url: &str) -> JwksCache {
        JwksCache {
            url: url.to_string(),
            shown_url: redact_url(url),
            current: RwLock::new(Arc::new(KeySet::default())),
            refresh_requested: AtomicBool::new(false),
            doorbell: Mutex::new(None),
            refresh_due: Mutex::new(None),
            fetches_ok: std::sync::atomic::AtomicU64::new(0),
            fetches_failed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The URL to fetch (credentials included: never show it, show [`Self::url_for_logs`]).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL as it may be shown: [`redact_url`] (no userinfo, query or fragment).
    pub fn url_for_logs(&self) -> &str {
        &self.shown_url
    }

    /// The current set (one read lock and a reference-count bump).
    pub fn snapshot(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replaces the current set (fetcher only) and says whether the keys changed: a
    /// document identical to the current one's keeps the current set (and its version, so
    /// cached verifications stay valid); another one gets a new version.
    pub fn install(&self, mut set: KeySet) -> bool {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if current.version != 0 && current.fingerprint == set.fingerprint {
            return false;
        }
        set.version = crate::auth::token_cache::next_key_generation();
        *current = Arc::new(set);
        true
    }

    /// Records the next planned fetch (fetcher only).
    pub fn remember_refresh(&self, due: std::time::Instant) {
        *self
            .refresh_due
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(due);
    }

    /// The next planned fetch, if a fetch ever succeeded.
    pub fn remembered_refresh(&self) -> Option<std::time::Instant> {
        *self
            .refresh_due
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Connects the cache to a fetcher (replacing an earlier one).
    pub fn attach(&self, doorbell: Doorbell, index: usize) {
        *self
            .doorbell
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((doorbell, index));
    }

    /// Asks the fetcher for a refetch: never blocks. While one request is pending, further
    /// ones are merged into it; a full doorbell drops the ring (the flag is cleared, so the
    /// next unknown `kid` rings again). The fetcher applies the 30 s limit.
    pub fn request_refresh(&self) {
        if self.refresh_requested.swap(true, Ordering::AcqRel) {
            return;
        }
        let sent = self
            .doorbell
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .is_some_and(|(doorbell, index)| doorbell.try_send(*index).is_ok());
        if !sent {
            self.refresh_requested.store(false, Ordering::Release);
        }
    }

    /// Takes the pending request (fetcher only): `true` if one was pending.
    pub fn take_refresh_request(&self) -> bool {
        self.refresh_requested.swap(false, Ordering::AcqRel)
    }
}

#[cfg(test)]
#[path = "jwks_tests.rs"]
mod tests;
