//! [`TokenCache`]: verified client tokens, shared by every worker of a node, so that a
//! reconnecting client (which `SO_REUSEPORT` lands on any worker) skips the signature check
//! and the JSON parsing of a token the node already verified.
//!
//! Must not: store a token or any of its bytes (an entry is found by a keyed SHA-256 digest
//! of app, key generation and token: [`TokenDigest`]), read the clock (time is the
//! `now_unix_s` parameter), grow past its limit, or answer for keys other than the ones
//! that verified the entry.
//!
//! Invariants:
//! - The digest covers the app id, the verifier's key generation (a fresh number for every
//!   compiled key configuration that differs from the previous one, mixed with the JWKS set's
//!   version for a JWKS source) and the token, under a random per-process key: an entry
//!   can only be found with the same token under the same keys, and a key change (reload,
//!   JWKS rotation) makes every older entry unreachable at once; [`TokenCache::clear`] then
//!   frees them.
//! - An entry keeps the token's `exp`: past it (with [`LEEWAY_S`]) a lookup answers
//!   `Expired`, exactly what verification would. A token without `exp` is re-verified after
//!   [`NO_EXPIRY_TTL_S`].
//! - At most `capacity` entries: [`SHARDS`] mutex-guarded maps of `capacity / SHARDS`
//!   each. A full shard first drops its expired entries, then evicts the entry that expires
//!   soonest (the least useful one); a new entry is never refused.
//! - Only successful verifications are cached; a refusal is recomputed every time.
//!
//! Only what comes before the keys is skipped on a hit: source-address rules, connection
//! limits and the handshake rate limit are checked by the caller on every connect.

use crate::auth::claims::{Claims, LEEWAY_S};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Default of `server.tokenCacheEntries`: one entry per connection of a node holding
/// 65,536 distinct tokens, so a reconnect storm of that many clients verifies each token
/// once. An entry is a 16-byte digest, the `sub` and a permission list shared with the
/// other entries carrying it: ~180 bytes with its table slot (measured: README "Scale").
pub const DEFAULT_TOKEN_CACHE_ENTRIES: u64 = 65_536;

/// The largest `server.tokenCacheEntries` accepted: about a gigabyte of claims at a few
/// hundred bytes an entry, far above any node's connections.
pub const MAX_TOKEN_CACHE_ENTRIES: u64 = 4_194_304;

/// How long a token without `exp` stays cached, in seconds, before it is verified again:
/// bounds how long a cached verdict outlives nothing but a key change.
pub const NO_EXPIRY_TTL_S: u64 = 300;

/// Distinct permission lists the cache shares between its entries (tokens of one issuer
/// mostly carry one of a few lists); beyond it an entry keeps a list of its own.
pub const INTERNED_PERMISSION_LISTS: usize = 1024;

/// Shards of the cache: enough that workers (at most a few dozen threads) rarely meet on
/// one lock; each lock is held for one hash-map operation.
pub const SHARDS: usize = 64;

/// The cache key: the first 128 bits of SHA-256 of (per-process key, app, key generation,
/// token). Fixed size; no token byte is kept. 128 bits of a keyed hash: two tokens meet on
/// one digest with a probability of ~2^-96 among 65,536 entries, and no one can aim for it
/// without the per-process key.
pub type TokenDigest = [u8; 16];

/// Which keys verify a token: two numbers from [`next_key_generation`], both unchanged for
/// as long as the keys are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyGeneration {
    /// The verifier's compiled key configuration (kept by a reload that leaves it as is).
    pub configuration: u64,
    /// The JWKS key set in use (0 for a raw key); a refresh with other keys changes it.
    pub key_set: u64,
}

/// Hands out key generations: process-wide, so that two compiled configurations never
/// share one.
static NEXT_KEY_GENERATION: AtomicU64 = AtomicU64::new(1);

/// A key generation no other configuration or key set has had.
pub fn next_key_generation() -> u64 {
    NEXT_KEY_GENERATION.fetch_add(1, Ordering::Relaxed)
}

/// A cached verification: what the handshake needs of the claims, compactly (an entry is
/// per token, so per connection on a node of distinct users: ~180 bytes with its slot).
struct Entry {
    /// `sub`.
    subject: Option<Box<str>>,
    /// The permission list, shared by every entry with the same list
    /// ([`INTERNED_PERMISSION_LISTS`]).
    permissions: Arc<[String]>,
    /// The token's `exp` (checked as verification checks it); NaN: none.
    expires_at: f64,
    /// The entry is dropped after this instant (seconds): `exp` + leeway, or the TTL of a
    /// token without `exp`.
    keep_until_s: u32,
}

/// Hashes a [`TokenDigest`] by its first 8 bytes: the digest is already uniformly random.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // A `[u8; 32]` key is hashed as its length (a `usize`) then its bytes; keep the
        // first 8 bytes of the digest itself.
        if bytes.len() >= 8 {
            let mut first = [0u8; 8];
            first.copy_from_slice(&bytes[..8]);
            self.0 = u64::from_le_bytes(first);
        }
    }
    fn write_usize(&mut self, _length: usize) {}
}

type Shard = HashMap<TokenDigest, Entry, BuildHasherDefault<DigestHasher>>;

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Verified before with the same keys and still valid.
    Hit(Claims),
    /// Verified before, but `exp` has passed since: refuse as verification would.
    Expired,
    /// Not cached (or the cache is off): verify.
    Miss,
}

/// The node's verified-token cache (see the module documentation).
pub struct TokenCache {
    /// The random per-process key of the digest.
    secret: [u8; 32],
    /// Entries per shard; 0 turns the cache off.
    shard_capacity: usize,
    shards: Box<[Mutex<Shard>]>,
    /// The shared permission lists (at most [`INTERNED_PERMISSION_LISTS`]).
    permission_lists: Mutex<HashSet<Arc<[String]>>>,
    /// For `/metrics`: lookups that found a valid entry / that did not.
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TokenCache")
            .field("capacity", &self.capacity())
            .field("entries", &self.len())
            .finish()
    }
}

impl TokenCache {
    /// A cache of at most `entries` verified tokens (rounded down to a multiple of
    /// [`SHARDS`], at least one per shard); 0 turns it off.
    pub fn new(entries: u64) -> TokenCache {
        let entries = usize::try_from(entries).unwrap_or(usize::MAX);
        let shard_capacity = if entries == 0 {
            0
        } else {
            (entries / SHARDS).max(1)
        };
        let mut secret = [0u8; 32];
        rand::Rng::fill(&mut rand::thread_rng(), &mut secret[..]);
        TokenCache {
            secret,
            shard_capacity,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            permission_lists: Mutex::new(HashSet::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Whether the cache is off (`server.tokenCacheEntries: 0`).
    pub fn is_disabled(&self) -> bool {
        self.shard_capacity == 0
    }

    /// The most entries it holds.
    pub fn capacity(&self) -> usize {
        self.shard_capacity * SHARDS
    }

    /// The key of `token` of `app` under the keys of `key_generation` (the verifier's
    /// [`KeyGeneration`]).
    pub fn digest(&self, app: &str, key_generation: KeyGeneration, token: &str) -> TokenDigest {
        let mut hasher = Sha256::new();
        hasher.update(self.secret);
        hasher.update((app.len() as u64).to_le_bytes());
        hasher.update(app.as_bytes());
        hasher.update(key_generation.configuration.to_le_bytes());
        hasher.update(key_generation.key_set.to_le_bytes());
        hasher.update(token.as_bytes());
        let full: [u8; 32] = hasher.finalize().into();
        let mut digest = [0u8; 16];
        digest.copy_from_slice(&full[..16]);
        digest
    }

    fn shard(&self, digest: &TokenDigest) -> std::sync::MutexGuard<'_, Shard> {
        // The digest is uniformly random: its last byte spreads entries over the shards.
        self.shards[usize::from(digest[15]) % SHARDS]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Looks `digest` up as of `now_unix_s`; counts a hit or a miss.
    pub fn lookup(&self, digest: &TokenDigest, now_unix_s: u64) -> Lookup {
        if self.is_disabled() {
            return Lookup::Miss;
        }
        let found = {
            let mut shard = self.shard(digest);
            match shard.get(digest) {
                Some(entry) if expired(exp_of(entry), now_unix_s) => {
                    shard.remove(digest);
                    Lookup::Expired
                }
                Some(entry) if u64::from(entry.keep_until_s) < now_unix_s => {
                    shard.remove(digest);
                    Lookup::Miss
                }
                Some(entry) => Lookup::Hit(Claims {
                    subject: entry.subject.as_deref().map(String::from),
                    permissions: entry.permissions.to_vec(),
                }),
                None => Lookup::Miss,
            }
        };
        let counter = match found {
            Lookup::Hit(_) => &self.hits,
            Lookup::Expired | Lookup::Miss => &self.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Remembers that `digest` verified to `claims`, with `exp` = `expires_at`.
    pub fn insert(
        &self,
        digest: TokenDigest,
        claims: &Claims,
        expires_at: Option<f64>,
        now_unix_s: u64,
    ) {
        if self.is_disabled() {
            return;
        }
        let keep_until_s = match expires_at {
            // Saturating float-to-int conversion; `exp` values are far below 2^53.
            Some(expires_at) => (expires_at + LEEWAY_S as f64).max(0.0) as u64,
            None => now_unix_s.saturating_add(NO_EXPIRY_TTL_S),
        };
        let permissions = self.intern(&claims.permissions);
        let mut shard = self.shard(&digest);
        if shard.len() >= self.shard_capacity && !shard.contains_key(&digest) {
            shard.retain(|_, entry| u64::from(entry.keep_until_s) >= now_unix_s);
            if shard.len() >= self.shard_capacity {
                let soonest = shard
                    .iter()
                    .min_by_key(|(_, entry)| entry.keep_until_s)
                    .map(|(key, _)| *key);
                if let Some(soonest) = soonest {
                    shard.remove(&soonest);
                }
            }
        }
        shard.insert(
            digest,
            Entry {
                subject: claims.subject.as_deref().map(Box::from),
                permissions,
                expires_at: expires_at.unwrap_or(f64::NAN),
                // Unix seconds fit 32 bits until 2106; later ones are kept until then.
                keep_until_s: u32::try_from(keep_until_s).unwrap_or(u32::MAX),
            },
        );
    }

    /// The shared copy of `permissions` (a new one when it is not among the shared lists
    /// and they are full).
    fn intern(&self, permissions: &[String]) -> Arc<[String]> {
        let mut lists = self
            .permission_lists
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(shared) = lists.get(permissions) {
            return shared.clone();
        }
        let list: Arc<[String]> = permissions.into();
        if lists.len() < INTERNED_PERMISSION_LISTS {
            lists.insert(list.clone());
        }
        list
    }

    /// Drops every entry (a reload or a JWKS refresh changed keys).
    pub fn clear(&self) {
        self.permission_lists
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
        for shard in self.shards.iter() {
            shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clear();
        }
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .len()
            })
            .sum()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lookups that found a valid entry.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that did not (absent, expired, or the cache is off: verified instead).
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

/// An entry's `exp`, if it has one.
fn exp_of(entry: &Entry) -> Option<f64> {
    (!entry.expires_at.is_nan()).then_some(entry.expires_at)
}

/// Whether a token with `exp` = `expires_at` is expired at `now_unix_s` (the rule of
/// verification: more than [`LEEWAY_S`] past `exp`).
fn expired(expires_at: Option<f64>, now_unix_s: u64) -> bool {
    expires_at.is_some_and(|expires_at| now_unix_s as f64 > expires_at + LEEWAY_S as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generation(configuration: u64) -> KeyGeneration {
        KeyGeneration {
            configuration,
            key_set: 0,
        }
    }

    fn claims(subject: &str) -> Claims {
        Claims {
            subject: Some(subject.to_string()),
            permissions: vec!["subscribe:*".to_string()],
        }
    }

    #[test]
    fn a_verified_token_is_found_again_with_its_claims() {
        let cache = TokenCache::new(1024);
        let digest = cache.digest("app", generation(1), "header.claims.signature");
        assert_eq!(cache.lookup(&digest, 100), Lookup::Miss);
        cache.insert(digest, &claims("alice"), Some(1_000.0), 100);
        assert_eq!(cache.lookup(&digest, 200), Lookup::Hit(claims("alice")));
        assert_eq!((cache.hits(), cache.misses()), (1, 1));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn entries_share_permission_lists_up_to_the_bound() {
        let cache = TokenCache::new(64 * 1024);
        let with = |permissions: Vec<String>| Claims {
            subject: None,
            permissions,
        };
        let digest = |n: usize| cache.digest("app", generation(1), &format!("token-{n}"));
        for n in 0..10 {
            cache.insert(digest(n), &claims(&format!("user-{n}")), None, 0);
        }
        assert_eq!(
            cache.permission_lists.lock().unwrap().len(),
            1,
            "one shared list"
        );
        assert_eq!(cache.lookup(&digest(3), 0), Lookup::Hit(claims("user-3")));
        // Past the bound a list is kept by its entry alone, and still answered exactly.
        for n in 0..INTERNED_PERMISSION_LISTS + 10 {
            cache.insert(digest(100 + n), &with(vec![format!("p{n}")]), None, 0);
        }
        assert_eq!(
            cache.permission_lists.lock().unwrap().len(),
            INTERNED_PERMISSION_LISTS
        );
        let last = INTERNED_PERMISSION_LISTS + 9;
        assert_eq!(
            cache.lookup(&digest(100 + last), 0),
            Lookup::Hit(with(vec![format!("p{last}")]))
        );
        cache.clear();
        assert!(cache.permission_lists.lock().unwrap().is_empty());
    }

    #[test]
    fn an_expired_token_is_refused_even_when_cached() {
        let cache = TokenCache::new(1024);
        let digest = cache.digest("app", generation(1), "token");
        cache.insert(digest, &claims("alice"), Some(1_000.0), 100);
        // Within the leeway: still valid, as verification would say.
        assert!(matches!(
            cache.lookup(&digest, 1_000 + LEEWAY_S),
            Lookup::Hit(_)
        ));
        assert_eq!(cache.lookup(&digest, 1_001 + LEEWAY_S), Lookup::Expired);
        // The entry is gone: the next lookup verifies (and verification refuses).
        assert_eq!(cache.lookup(&digest, 1_001 + LEEWAY_S), Lookup::Miss);
    }

    #[test]
    fn a_token_without_exp_is_verified_again_after_the_ttl() {
        let cache = TokenCache::new(1024);
        let digest = cache.digest("app", generation(1), "token");
        cache.insert(digest, &claims("alice"), None, 100);
        assert!(matches!(
            cache.lookup(&digest, 100 + NO_EXPIRY_TTL_S),
            Lookup::Hit(_)
        ));
        assert_eq!(cache.lookup(&digest, 101 + NO_EXPIRY_TTL_S), Lookup::Miss);
    }

    #[test]
    fn another_key_generation_or_app_or_token_misses() {
        let cache = TokenCache::new(1024);
        let digest = cache.digest("app", generation(1), "token");
        cache.insert(digest, &claims("alice"), None, 100);
        for other in [
            cache.digest("app", generation(2), "token"),
            cache.digest("other", generation(1), "token"),
            cache.digest("app", generation(1), "token2"),
        ] {
            assert_ne!(other, digest);
            assert_eq!(cache.lookup(&other, 100), Lookup::Miss);
        }
        // The same inputs in another process (another secret) give another digest.
        assert_ne!(
            TokenCache::new(1024).digest("app", generation(1), "token"),
            digest
        );
    }

    #[test]
    fn clear_drops_every_entry() {
        let cache = TokenCache::new(1024);
        for index in 0..100u64 {
            let digest = cache.digest("app", generation(index), "token");
            cache.insert(digest, &claims("alice"), None, 100);
        }
        assert_eq!(cache.len(), 100);
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn the_bound_holds_and_the_soonest_expiring_entry_goes_first() {
        let cache = TokenCache::new(SHARDS as u64 * 2);
        assert_eq!(cache.capacity(), SHARDS * 2);
        let mut digests = Vec::new();
        for index in 0..10_000u64 {
            let digest = cache.digest("app", generation(1), &format!("token-{index}"));
            cache.insert(digest, &claims("alice"), Some(10_000.0 + index as f64), 100);
            digests.push(digest);
            assert!(cache.len() <= cache.capacity());
        }
        assert_eq!(cache.len(), cache.capacity());
        // The last token inserted is there: a new entry is never refused.
        let last = *digests.last().expect("inserted");
        assert!(matches!(cache.lookup(&last, 100), Lookup::Hit(_)));
        // The first (soonest to expire) were evicted.
        assert_eq!(cache.lookup(&digests[0], 100), Lookup::Miss);
    }

    #[test]
    fn a_full_shard_drops_expired_entries_before_live_ones() {
        let cache = TokenCache::new(SHARDS as u64);
        let mut by_shard: HashMap<u8, Vec<TokenDigest>> = HashMap::new();
        for index in 0..100_000u64 {
            let digest = cache.digest("app", generation(1), &format!("token-{index}"));
            let list = by_shard.entry(digest[15] % SHARDS as u8).or_default();
            list.push(digest);
            if list.len() == 2 {
                break;
            }
        }
        let pair = by_shard
            .values()
            .find(|list| list.len() == 2)
            .expect("two digests in one shard");
        // One place per shard: the first entry has expired by the time the second comes.
        cache.insert(pair[0], &claims("old"), Some(100.0), 100);
        cache.insert(pair[1], &claims("new"), None, 1_000);
        assert_eq!(cache.lookup(&pair[1], 1_000), Lookup::Hit(claims("new")));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_disabled_cache_holds_nothing() {
        let cache = TokenCache::new(0);
        assert!(cache.is_disabled());
        let digest = cache.digest("app", generation(1), "token");
        cache.insert(digest, &claims("alice"), None, 100);
        assert_eq!(cache.lookup(&digest, 100), Lookup::Miss);
        assert!(cache.is_empty());
    }

    /// One slot of a shard's table: a cached token costs this (times the table's load
    /// factor) plus its `sub`; 88 bytes before the entry was made compact.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_slot_stays_small() {
        assert!(std::mem::size_of::<(TokenDigest, Entry)>() <= 64);
    }

    #[test]
    fn a_far_future_exp_is_kept_and_answered() {
        let cache = TokenCache::new(1024);
        let digest = cache.digest("app", generation(1), "far");
        cache.insert(digest, &claims("alice"), Some(1e12), 100);
        // (2096: found; after 2106, where 32-bit seconds end, it is verified again.)
        assert_eq!(
            cache.lookup(&digest, 4_000_000_000),
            Lookup::Hit(claims("alice"))
        );
        assert_eq!(cache.lookup(&digest, 5_000_000_000), Lookup::Miss);
    }

    #[test]
    fn the_key_is_a_fixed_size_digest_without_token_bytes() {
        let cache = TokenCache::new(1024);
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
        let digest: TokenDigest = cache.digest("app", generation(1), token);
        assert_eq!(std::mem::size_of_val(&digest), 16);
        assert!(!digest
            .windows(8)
            .any(|window| token.as_bytes().windows(8).any(|part| part == window)));
    }
}
