//! One app of the configuration (`apps[]`, PROTOCOL.md §1): its keys, source-address
//! lists, flags, limit overrides and anonymous tokens, and the [`LimitsConfig`] its
//! overrides resolve to.
//!
//! Responsibility: the serde shape of an app, with secrets redacted in `Debug`. Must not:
//! compile keys or address lists (`broker::apps` does) or check values
//! (`config::validate` does).

use serde::Deserialize;
use std::fmt;

/// Source-address lists hold at most this many entries (PROTOCOL.md §1).
pub const MAX_SOURCE_ENTRIES: usize = 10;

/// Resolved limits of one app. Zero means unlimited except where stated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Open WebSocket connections per app; beyond: 429 before upgrade. 0 = unlimited.
    pub max_connections: u64,
    /// Open connections per subject per app; beyond: 429. 0 = unlimited.
    pub max_connections_per_subject: u64,
    /// Open connections per client address per app (after `trustedProxies` resolution;
    /// IPv4 per address, IPv6 per /64, every unknown source under one key); beyond: 429.
    /// 0 = unlimited.
    pub max_connections_per_address: u64,
    /// Subscriptions per connection, implicit ones included; beyond: close 1008. 0 = unlimited.
    pub max_subscriptions_per_connection: u64,
    /// Inbound frame and message size; beyond: close 1009. 0 is not allowed.
    pub max_message_bytes: u64,
    /// Inbound messages per second per connection; beyond: close 1008. 0 = unlimited.
    pub max_messages_per_second: u64,
    /// Outbound bytes queued per connection; beyond: close 4008. 0 is not allowed.
    pub max_pending_bytes: u64,
}

/// One application, in exactly the shape of PROTOCOL.md §1 plus optional limit overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppConfig {
    pub app_id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Verifies WebSocket clients' tokens.
    pub auth_key: KeyConfig,
    /// Verifies HTTP API callers' tokens. Absent = the HTTP API refuses this app (401).
    #[serde(default)]
    pub admin_key: Option<KeyConfig>,
    /// Absent = allow from anywhere.
    #[serde(default)]
    pub admin_source_address: Option<Vec<String>>,
    /// Absent = allow from anywhere.
    #[serde(default)]
    pub client_source_address: Option<Vec<String>>,
    #[serde(default, rename = "enableWebSocketInboundTopic")]
    pub enable_web_socket_inbound_topic: bool,
    #[serde(default = "default_true", rename = "enableWebSocketInboundAck")]
    pub enable_web_socket_inbound_ack: bool,
    /// TEST ONLY (WebSocket conformance runs, e.g. Autobahn): every data message a client
    /// sends is echoed back to it unchanged instead of being read as a command. Off by
    /// default; never enable it for a real app.
    #[serde(default)]
    pub echo_for_conformance_tests: bool,
    #[serde(default)]
    pub max_connections: Option<u64>,
    #[serde(default)]
    pub max_connections_per_subject: Option<u64>,
    #[serde(default)]
    pub max_connections_per_address: Option<u64>,
    #[serde(default)]
    pub max_subscriptions_per_connection: Option<u64>,
    #[serde(default)]
    pub max_message_bytes: Option<u64>,
    #[serde(default)]
    pub max_messages_per_second: Option<u64>,
    #[serde(default)]
    pub max_pending_bytes: Option<u64>,
    /// Anonymous tokens (`POST /token/anonymous/{appId}`); absent = the endpoint answers 404.
    #[serde(default)]
    pub anonymous: Option<AnonymousConfig>,
}

/// Default lifetime of an anonymous token: five minutes, enough to open a connection (an
/// open connection is not cut when its token expires, PROTOCOL §2).
pub const DEFAULT_ANONYMOUS_TTL_SECONDS: u64 = 300;
/// Default anonymous tokens per source address per minute (beyond: 429 + `Retry-After`).
/// A page load needs one; 30 leaves room for reconnects and several tabs behind one NAT.
pub const DEFAULT_ANONYMOUS_TOKENS_PER_MINUTE: u64 = 30;

/// An app's `anonymous` section: who may get a token without credentials, and what it grants.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnonymousConfig {
    /// Off = the endpoint answers 404 for this app, as if the section were absent.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Permission strings put into every anonymous token (PROTOCOL §2). Empty = none.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Token lifetime, 1..=86400 seconds.
    #[serde(default = "default_anonymous_ttl")]
    pub ttl_seconds: u64,
    /// HS* secret or PKCS#8/PKCS#1/SEC1 private key PEM that signs the tokens; must match
    /// `authKey` (checked at load). Absent: the `authKey` secret (HS* apps only).
    #[serde(default)]
    pub signing_key: Option<String>,
    /// Tokens per source address (IPv4 address, IPv6 /64) per minute; 0 is not allowed.
    #[serde(default = "default_anonymous_rate")]
    pub max_tokens_per_minute: u64,
}

fn default_anonymous_ttl() -> u64 {
    DEFAULT_ANONYMOUS_TTL_SECONDS
}

fn default_anonymous_rate() -> u64 {
    DEFAULT_ANONYMOUS_TOKENS_PER_MINUTE
}

impl fmt::Debug for AnonymousConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnonymousConfig")
            .field("enabled", &self.enabled)
            .field("permissions", &self.permissions)
            .field("ttl_seconds", &self.ttl_seconds)
            .field(
                "signing_key",
                &self.signing_key.as_ref().map(|_| "<redacted>"),
            )
            .field("max_tokens_per_minute", &self.max_tokens_per_minute)
            .finish()
    }
}

fn default_true() -> bool {
    true
}

impl AppConfig {
    /// The app's limits: its overrides over the server defaults.
    pub fn limits(&self, defaults: &LimitsConfig) -> LimitsConfig {
        LimitsConfig {
            max_connections: self.max_connections.unwrap_or(defaults.max_connections),
            max_connections_per_subject: self
                .max_connections_per_subject
                .unwrap_or(defaults.max_connections_per_subject),
            max_connections_per_address: self
                .max_connections_per_address
                .unwrap_or(defaults.max_connections_per_address),
            max_subscriptions_per_connection: self
                .max_subscriptions_per_connection
                .unwrap_or(defaults.max_subscriptions_per_connection),
            max_message_bytes: self.max_message_bytes.unwrap_or(defaults.max_message_bytes),
            max_messages_per_second: self
                .max_messages_per_second
                .unwrap_or(defaults.max_messages_per_second),
            max_pending_bytes: self.max_pending_bytes.unwrap_or(defaults.max_pending_bytes),
        }
    }
}

/// `audience`: a string or a list of strings.
#[derive(Clone, Deserialize, PartialEq, Eq, Debug)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Audience::One(one) => vec![one.clone()],
            Audience::Many(many) => many.clone(),
        }
    }
}

/// A verification key (`authKey` / `adminKey`).
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyConfig {
    /// `raw` (inline key) or `jwks` (`key` is then the JWKS URL, README "JWKS keys").
    pub source: String,
    /// `raw`: HS*: the secret string (its UTF-8 bytes); others: SPKI PEM public key.
    /// `jwks`: the `https://` (or `http://`) URL of the key set.
    pub key: String,
    pub algorithms: Vec<String>,
    #[serde(default)]
    pub issuer: Vec<String>,
    #[serde(default)]
    pub audience: Option<Audience>,
}

impl fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyConfig")
            .field("source", &self.source)
            .field("key", &"<redacted>")
            .field("algorithms", &self.algorithms)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}
