//! [`AppsSnapshot`]: the numbers of the configuration in force — per app, per JWKS URL, its
//! generation — as plain data, read once per scrape.
//!
//! Responsibility: the shape `/metrics` ([`crate::metrics::render`]) and `/stats`
//! ([`crate::stats`]) render. Must not: know where the numbers come from. The caller fills
//! it in from the broker's registry (`http_api::monitoring`), summing each app's per-worker
//! counters with relaxed loads, so `metrics` never imports `broker`.

/// The configuration generation in force and its per-app and per-JWKS-URL numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppsSnapshot {
    /// Configuration generation in force (1 at start, +1 per reload).
    pub generation: u64,
    /// Every configured app, in configuration order.
    pub apps: Vec<AppSnapshot>,
    /// Every JWKS URL the configuration uses, in registry order.
    pub jwks: Vec<JwksSnapshot>,
    /// The node's verified-token cache.
    pub token_cache: TokenCacheSnapshot,
}

/// The verified-token cache's lookups and size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCacheSnapshot {
    /// Handshakes whose token was found (no signature check).
    pub hits: u64,
    /// Handshakes whose token was verified (not cached, expired, or the cache is off).
    pub misses: u64,
    /// Entries held now.
    pub entries: u64,
}

/// One app's numbers, summed over the workers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppSnapshot {
    /// `appId`.
    pub id: String,
    /// The configured `name`, when there is one.
    pub name: Option<String>,
    /// Open WebSocket connections (a gauge).
    pub connections: u64,
    /// WebSocket client commands received.
    pub messages_in: u64,
    /// Messages published through the HTTP API (not in `messages_in`).
    pub http_publications: u64,
    /// Frames queued to subscribers.
    pub deliveries: u64,
    /// `POST /token/anonymous` answers; `None` when anonymous tokens are off for the app
    /// (then no series is shown for it).
    pub anonymous: Option<AnonymousSnapshot>,
}

/// An app's anonymous-token answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnonymousSnapshot {
    /// Tokens issued.
    pub issued: u64,
    /// Requests answered 429 (over the per-address rate).
    pub rate_limited: u64,
}

/// One JWKS URL's fetches and keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwksSnapshot {
    /// The URL as it may be shown (`auth::jwks::redact_url`: no credentials or query).
    pub shown_url: String,
    /// Fetches that installed a key set.
    pub fetches_ok: u64,
    /// Fetches that failed (the previous keys stay in use).
    pub fetches_failed: u64,
    /// Usable keys in the current set.
    pub keys: u64,
}
