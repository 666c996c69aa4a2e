//! Configuration: the one serde tree read from `--config FILE`, and its validation.
//!
//! Responsibility: turn JSON text into a [`Config`] whose every field is checked, with
//! defaults filled in and zero-meanings documented. It must not compile keys or open
//! sockets: `broker::apps` compiles the validated tree into the runtime snapshot, and
//! reports key errors with the same [`ConfigError`] shape (app + field + message).
//!
//! Invariants: unknown fields are rejected everywhere (`deny_unknown_fields`); a
//! [`KeyConfig`]'s `Debug` never prints the key; every limit here has a server-wide default
//! that an app may override.

use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;

/// Default listen address: loopback, so a bare `ringcast` is never exposed by accident.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Server ping interval; a connection silent for two intervals is closed with 4001.
pub const DEFAULT_PING_INTERVAL_SECONDS: u64 = 30;
/// Inbound frame/message size (PROTOCOL.md §1 default).
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 64 * 1024;
/// Outbound bytes queued for one connection before it is closed as a slow consumer (4008).
/// 4 MiB holds ~40,000 100-byte publications: minutes of a busy topic for a phone on a
/// bad link, yet 1,000 stalled consumers cost at most 4 GiB. Never unlimited.
pub const DEFAULT_MAX_PENDING_BYTES: u64 = 4 * 1024 * 1024;
/// Per worker, the frame file's size (`zeroCopyFanoutBytes`): 32 chunks of 2 MiB. A chunk
/// is reused once no queue holds its frames, so this bounds the shmem pages a worker keeps
/// for in-flight fan-out (a stalled consumer can pin a chunk until it drains or is closed at
/// `maxPendingBytes`; when all are pinned, frames are copied as before).
pub const DEFAULT_ZERO_COPY_FANOUT_BYTES: u64 = 64 * 1024 * 1024;
/// Default `flushIntervalMicros`: chosen by measurement (README "Flushing").
pub const DEFAULT_FLUSH_INTERVAL_MICROS: u64 = 4000;
/// Largest `flushIntervalMicros`: it is added to delivery latency under load.
pub const MAX_FLUSH_INTERVAL_MICROS: u64 = 100_000;
/// Subscriptions one connection may hold (beyond: close 1008 `Too many subscriptions!`).
/// Bounds the per-connection subscription list and the topic tables it feeds.
pub const DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION: u64 = 1_000;
/// Largest HTTP API request body (beyond: 413). Publications are messages: 1 MiB is 16x
/// the default WebSocket message limit.
pub const DEFAULT_MAX_HTTP_BODY_BYTES: u64 = 1024 * 1024;
/// A connection that has not sent a complete HTTP request (head and body) in this time is
/// dropped.
pub const DEFAULT_HANDSHAKE_TIMEOUT_SECONDS: u64 = 10;
/// Per worker, connections in the HTTP phase (accepted, not upgraded to WebSocket: upgrades
/// in progress, HTTP API requests, idle keep-alive connections); at the limit the worker
/// stops accepting until one upgrades or ends (new connections wait in the listen backlog).
/// Each may buffer at most a request head (8 KiB) and 1 KiB of body before it is
/// authorised, so 1,024 bound that at ~10 MiB per worker. A 15,000-connection idle load test
/// reached ~2,000 at once (clients send their requests later than the kernel completes their
/// TCP handshakes): it waits a moment at the limit instead of failing.
pub const DEFAULT_MAX_HTTP_CONNECTIONS_PER_WORKER: u64 = 1_024;
/// Time a graceful shutdown may take before the process exits anyway.
pub const DEFAULT_SHUTDOWN_DEADLINE_SECONDS: u64 = 10;
/// Upper bound on worker threads: the interest map keeps a 64-bit mask per topic, 63
/// worker bits and the cluster bus's bit (connection ids carry the worker index in their
/// low byte).
pub const MAX_WORKERS: usize = 63;
/// Source-address lists hold at most this many entries (PROTOCOL.md §1).
pub const MAX_SOURCE_ENTRIES: usize = 10;

/// Whole configuration file: `{"server": {...}, "apps": [...]}`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub apps: Vec<AppConfig>,
    /// The file this configuration was read from (`None`: built in code, e.g. the
    /// development app). A reload (SIGHUP, `POST /admin/reload`) re-reads it.
    #[serde(skip)]
    pub source: Option<std::path::PathBuf>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

/// Which io driver the workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IoDriverChoice {
    /// io_uring, falling back to the legacy (epoll) driver when io_uring is unavailable.
    #[default]
    Auto,
    /// io_uring or refuse to start.
    Uring,
    /// The legacy epoll driver (testing, or kernels/containers without io_uring).
    Legacy,
}

/// `server` section: listener, workers, timers and the default limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listen address, `IP:PORT` or `localhost:PORT` (the IPv4 loopback; [`parse_listen`]).
    /// Port 0 picks a free port (tests).
    pub listen: String,
    /// Worker threads; 0 = one per available core.
    pub workers: usize,
    /// Pin each worker to a core (worker i → core i mod cores).
    pub pin_workers: bool,
    /// io driver: `auto` (default), `uring`, `legacy`.
    pub io_driver: IoDriverChoice,
    /// Seconds between server pings; 0 disables pings and the liveness check.
    pub ping_interval_seconds: u64,
    /// Seconds to receive a complete HTTP request, head and body (slowloris guard): from
    /// the accept for the first request, from its first byte for a later keep-alive one.
    /// At least 1 (0 is read as 1).
    pub handshake_timeout_seconds: u64,
    /// Per worker, the most connections in the HTTP phase (not upgraded to WebSocket, idle
    /// keep-alive ones included); at the limit the worker stops accepting until a place
    /// frees, so new connections wait in the kernel's listen backlog. 0 is not allowed
    /// (never unlimited).
    pub max_http_connections_per_worker: u64,
    /// WebSocket upgrades accepted per second, server-wide (each worker's listener takes
    /// its share); beyond: 503 before any token is verified. 0 = unlimited.
    pub max_handshakes_per_second: u64,
    /// Kernel send buffer per client socket (`SO_SNDBUF`); 0 = the kernel's autotuning.
    /// Smaller values cut slow consumers sooner and bound kernel memory per connection.
    pub socket_send_buffer_bytes: u64,
    /// Per worker: the most bytes of fan-out frames kept in its frame file (a `memfd`), from
    /// which runs of frames are sent with `sendfile` instead of being copied (README
    /// "Zero-copy fan-out"). Below 4 MiB (two 2 MiB chunks): off, every frame is copied.
    pub zero_copy_fanout_bytes: u64,
    /// Per worker, under load: the shortest time in microseconds between two flush cycles
    /// (one write per subscriber of everything queued for it). Publications arriving
    /// within it leave together, in one send per subscriber; the first publication after
    /// a quiet spell is written at once. 0 = write as soon as a batch is ready. At most
    /// 100,000 (README "Flushing").
    pub flush_interval_micros: u64,
    /// On SIGTERM/SIGINT: seconds to close every client (1001, in batches) and flush
    /// before the process exits anyway.
    pub shutdown_deadline_seconds: u64,
    /// Peers (IP or CIDR) whose `X-Forwarded-For` header is believed. Empty = never.
    pub trusted_proxies: Vec<String>,
    /// Verifies the bearer token of `POST /admin/reload` (same shape as an app's
    /// `adminKey`). Absent: the endpoint answers 403 (SIGHUP still reloads).
    pub admin_key: Option<KeyConfig>,
    /// Who may read `/metrics`, `/stats` and `/dashboard` (same syntax as
    /// `clientSourceAddress`). Absent: anyone who reaches the port.
    pub monitoring_source_address: Option<Vec<String>>,
    /// Log line format: `text` (default) or `json` (one JSON object per line).
    pub log_format: LogFormat,
    /// Largest HTTP API request body in bytes.
    pub max_http_body_bytes: u64,
    /// Default limits for every app (each may be overridden per app, same names).
    pub max_connections: u64,
    pub max_connections_per_subject: u64,
    pub max_connections_per_address: u64,
    pub max_subscriptions_per_connection: u64,
    pub max_message_bytes: u64,
    pub max_messages_per_second: u64,
    pub max_pending_bytes: u64,
    /// Serve `wss://` and `https://` on `listen` (see [`TlsConfig`]). Absent = plain.
    pub tls: Option<TlsConfig>,
    /// Several nodes as one broker over NATS (README "Cluster"). Absent = a single node,
    /// no bus thread.
    pub cluster: Option<ClusterConfig>,
}

/// `server.tls`: certificate and key files (PEM) for TLS served by ringcast itself.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first (e.g. Let's Encrypt `fullchain.pem`).
    pub cert: String,
    /// PEM file with the private key (PKCS#8, PKCS#1 RSA or SEC1 EC). Only the path is
    /// ever printed, never the key.
    pub key: String,
    /// Also serve plain `ws://`/`http://` on this `IP:PORT` (e.g. loopback for health
    /// checks and metrics scraping). Absent = TLS only.
    #[serde(default)]
    pub plain_listen: Option<String>,
}

/// `server.cluster`: `{"nats": ["nats://127.0.0.1:4222"], "name": "node-a", "subjectPrefix": "ringcast"}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS server URLs (any one of a NATS cluster is enough); at least one.
    pub nats: Vec<String>,
    /// This node's name, unique in the cluster: 1-64 characters of [A-Za-z0-9_-].
    pub name: String,
    /// Prefix of every NATS subject the nodes use; nodes with the same prefix form one
    /// cluster. Dot-separated tokens of [A-Za-z0-9_-].
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
}

fn default_subject_prefix() -> String {
    "ringcast".to_string()
}

/// Whether `text` is a NATS subject token we accept (no wildcards, dots or spaces).
pub fn is_subject_token(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl ClusterConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.nats.is_empty() {
            return Err(ConfigError::new(
                None,
                "server.cluster.nats",
                "at least one NATS URL is needed",
            ));
        }
        if !is_subject_token(&self.name) {
            return Err(ConfigError::new(
                None,
                "server.cluster.name",
                "must be 1-64 characters of [A-Za-z0-9_-]",
            ));
        }
        if !self.subject_prefix.split('.').all(is_subject_token) {
            return Err(ConfigError::new(
                None,
                "server.cluster.subjectPrefix",
                "must be dot-separated tokens of [A-Za-z0-9_-]",
            ));
        }
        Ok(())
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: DEFAULT_LISTEN.to_string(),
            workers: 0,
            pin_workers: true,
            io_driver: IoDriverChoice::Auto,
            ping_interval_seconds: DEFAULT_PING_INTERVAL_SECONDS,
            handshake_timeout_seconds: DEFAULT_HANDSHAKE_TIMEOUT_SECONDS,
            max_http_connections_per_worker: DEFAULT_MAX_HTTP_CONNECTIONS_PER_WORKER,
            max_handshakes_per_second: 0,
            socket_send_buffer_bytes: 0,
            zero_copy_fanout_bytes: DEFAULT_ZERO_COPY_FANOUT_BYTES,
            flush_interval_micros: DEFAULT_FLUSH_INTERVAL_MICROS,
            shutdown_deadline_seconds: DEFAULT_SHUTDOWN_DEADLINE_SECONDS,
            trusted_proxies: Vec::new(),
            admin_key: None,
            monitoring_source_address: None,
            log_format: LogFormat::Text,
            max_http_body_bytes: DEFAULT_MAX_HTTP_BODY_BYTES,
            max_connections: 0,
            max_connections_per_subject: 0,
            max_connections_per_address: 0,
            max_subscriptions_per_connection: DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_messages_per_second: 0,
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
            tls: None,
            cluster: None,
        }
    }
}

impl ServerConfig {
    /// The server-wide limit defaults.
    pub fn limits(&self) -> LimitsConfig {
        LimitsConfig {
            max_connections: self.max_connections,
            max_connections_per_subject: self.max_connections_per_subject,
            max_connections_per_address: self.max_connections_per_address,
            max_subscriptions_per_connection: self.max_subscriptions_per_connection,
            max_message_bytes: self.max_message_bytes,
            max_messages_per_second: self.max_messages_per_second,
            max_pending_bytes: self.max_pending_bytes,
        }
    }
}

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

/// A configuration problem, naming the app (when it is about one) and the field.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{field}: {message}", app.as_ref().map(|a| format!("app {a}: ")).unwrap_or_default())]
pub struct ConfigError {
    pub app: Option<String>,
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(app: Option<&str>, field: &str, message: impl Into<String>) -> Self {
        ConfigError {
            app: app.map(str::to_string),
            field: field.to_string(),
            message: message.into(),
        }
    }
}

impl Config {
    /// Parses and validates JSON text (structure, ranges, ids). Keys and address lists
    /// are compiled — and so fully checked — by `broker::apps::Registry::compile`.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        let config: Config = serde_json::from_str(text).map_err(|error| {
            ConfigError::new(
                None,
                &format!("line {} column {}", error.line(), error.column()),
                crate::suggest::json_error_message(&error),
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and validates the file at `path` (remembered in [`Config::source`]).
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigError::new(
                None,
                &format!("cannot read {}", path.display()),
                error.to_string(),
            )
        })?;
        let mut config = Config::from_json(&text)?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// The listen address, parsed.
    pub fn listen_address(&self) -> Result<SocketAddr, ConfigError> {
        parse_listen(&self.server.listen).ok_or_else(|| {
            ConfigError::new(
                None,
                "server.listen",
                format!("`{}` is not IP:PORT or localhost:PORT", self.server.listen),
            )
        })
    }

    /// The plain listener kept beside a TLS one (`server.tls.plainListen`), parsed.
    pub fn plain_listen_address(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(text) = self
            .server
            .tls
            .as_ref()
            .and_then(|t| t.plain_listen.as_ref())
        else {
            return Ok(None);
        };
        let address = parse_listen(text).ok_or_else(|| {
            ConfigError::new(
                None,
                "server.tls.plainListen",
                format!("`{text}` is not IP:PORT or localhost:PORT"),
            )
        })?;
        if address.port() != 0 && address == self.listen_address()? {
            return Err(ConfigError::new(
                None,
                "server.tls.plainListen",
                "must differ from server.listen (one port speaks TLS, the other plain)",
            ));
        }
        Ok(Some(address))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.listen_address()?;
        self.plain_listen_address()?;
        if self.server.workers > MAX_WORKERS {
            return Err(ConfigError::new(
                None,
                "server.workers",
                format!("at most {MAX_WORKERS}"),
            ));
        }
        if self.server.flush_interval_micros > MAX_FLUSH_INTERVAL_MICROS {
            return Err(ConfigError::new(
                None,
                "server.flushIntervalMicros",
                format!("at most {MAX_FLUSH_INTERVAL_MICROS}"),
            ));
        }
        check_limits(None, "server", &self.server.limits())?;
        if self.server.max_http_connections_per_worker == 0 {
            return Err(ConfigError::new(
                None,
                "server.maxHttpConnectionsPerWorker",
                "must be greater than 0 (never unlimited)",
            ));
        }
        if let Some(cluster) = &self.server.cluster {
            cluster.validate()?;
        }
        let mut seen = std::collections::HashSet::new();
        for app in &self.apps {
            let id = app.app_id.as_str();
            if id.is_empty()
                || id.len() > 128
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ConfigError::new(
                    Some(id),
                    "appId",
                    "must be 1-128 characters of [A-Za-z0-9_-]",
                ));
            }
            if !seen.insert(id) {
                return Err(ConfigError::new(Some(id), "appId", "duplicate app id"));
            }
            check_limits(Some(id), "app", &app.limits(&self.server.limits()))?;
            for (field, list) in [
                ("adminSourceAddress", &app.admin_source_address),
                ("clientSourceAddress", &app.client_source_address),
            ] {
                if let Some(list) = list {
                    if list.len() > MAX_SOURCE_ENTRIES {
                        return Err(ConfigError::new(
                            Some(id),
                            field,
                            format!(
                                "{} entries; at most {MAX_SOURCE_ENTRIES} are allowed",
                                list.len()
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A listen address: `IP:PORT` (`[::1]:PORT` for IPv6), or `localhost:PORT`, which is the
/// IPv4 loopback `127.0.0.1:PORT` (no name lookup: `localhost` may also resolve to `::1`,
/// and a listener binds one address).
pub fn parse_listen(text: &str) -> Option<SocketAddr> {
    if let Some(port) = text.strip_prefix("localhost:") {
        return Some(SocketAddr::from(([127, 0, 0, 1], port.parse().ok()?)));
    }
    text.parse().ok()
}

fn check_limits(app: Option<&str>, scope: &str, limits: &LimitsConfig) -> Result<(), ConfigError> {
    if limits.max_message_bytes == 0 {
        return Err(ConfigError::new(
            app,
            &format!("{scope}.maxMessageBytes"),
            "must be greater than 0",
        ));
    }
    if limits.max_message_bytes > 16 * 1024 * 1024 {
        return Err(ConfigError::new(
            app,
            &format!("{scope}.maxMessageBytes"),
            "at most 16 MiB",
        ));
    }
    if limits.max_pending_bytes == 0 {
        return Err(ConfigError::new(
            app,
            &format!("{scope}.maxPendingBytes"),
            "must be greater than 0 (never unlimited)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str =
        r#"{"appId":"a1","authKey":{"source":"raw","key":"s","algorithms":["HS256"]}}"#;

    #[test]
    fn defaults_fill_in() {
        let config = Config::from_json(&format!(r#"{{"apps":[{APP}]}}"#)).unwrap();
        assert_eq!(config.server.listen, DEFAULT_LISTEN);
        let limits = config.apps[0].limits(&config.server.limits());
        assert_eq!(limits.max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES);
        assert!(config.apps[0].enable_web_socket_inbound_ack);
        assert!(!config.apps[0].enable_web_socket_inbound_topic);
    }

    #[test]
    fn unknown_field_is_refused() {
        let error = Config::from_json(r#"{"server":{"listn":"1"}}"#).unwrap_err();
        assert!(error.message.contains("listn"), "{error}");
    }

    #[test]
    fn per_app_override_wins() {
        let text = r#"{"server":{"maxPendingBytes":100},"apps":[{"appId":"a","authKey":{"source":"raw","key":"s","algorithms":["HS256"]},"maxPendingBytes":7}]}"#;
        let config = Config::from_json(text).unwrap();
        assert_eq!(config.server.max_pending_bytes, 100);
        assert_eq!(
            config.apps[0]
                .limits(&config.server.limits())
                .max_pending_bytes,
            7
        );
    }

    #[test]
    fn too_many_source_entries_names_app_and_field() {
        let list: Vec<String> = (0..11).map(|i| format!("\"10.0.0.{i}\"")).collect();
        let text = format!(
            r#"{{"apps":[{{"appId":"big","authKey":{{"source":"raw","key":"s","algorithms":["HS256"]}},"clientSourceAddress":[{}]}}]}}"#,
            list.join(",")
        );
        let error = Config::from_json(&text).unwrap_err();
        assert_eq!(error.app.as_deref(), Some("big"));
        assert_eq!(error.field, "clientSourceAddress");
    }

    #[test]
    fn zero_pending_bytes_is_refused() {
        let error = Config::from_json(r#"{"server":{"maxPendingBytes":0}}"#).unwrap_err();
        assert!(error.field.contains("maxPendingBytes"));
    }

    #[test]
    fn per_address_limit_defaults_off_and_is_overridden_per_app() {
        let config = Config::from_json(&format!(r#"{{"apps":[{APP}]}}"#)).unwrap();
        assert_eq!(config.server.max_connections_per_address, 0);
        assert_eq!(
            config.server.max_http_connections_per_worker,
            DEFAULT_MAX_HTTP_CONNECTIONS_PER_WORKER
        );
        let text = r#"{"server":{"maxConnectionsPerAddress":5},"apps":[{"appId":"a","authKey":{"source":"raw","key":"s","algorithms":["HS256"]}},{"appId":"b","authKey":{"source":"raw","key":"s","algorithms":["HS256"]},"maxConnectionsPerAddress":0}]}"#;
        let config = Config::from_json(text).unwrap();
        let defaults = config.server.limits();
        assert_eq!(
            config.apps[0].limits(&defaults).max_connections_per_address,
            5
        );
        assert_eq!(
            config.apps[1].limits(&defaults).max_connections_per_address,
            0
        );
    }

    #[test]
    fn zero_http_connections_per_worker_is_refused() {
        let error =
            Config::from_json(r#"{"server":{"maxHttpConnectionsPerWorker":0}}"#).unwrap_err();
        assert_eq!(error.field, "server.maxHttpConnectionsPerWorker");
    }

    #[test]
    fn duplicate_and_bad_ids_are_refused() {
        assert!(Config::from_json(&format!(r#"{{"apps":[{APP},{APP}]}}"#)).is_err());
        let bad = APP.replace("a1", "a/b");
        assert!(Config::from_json(&format!(r#"{{"apps":[{bad}]}}"#)).is_err());
    }

    #[test]
    fn tls_plain_listen_is_checked() {
        let tls = |plain: &str| {
            format!(
                r#"{{"server":{{"listen":"127.0.0.1:8443","tls":{{"cert":"c.pem","key":"k.pem","plainListen":"{plain}"}}}}}}"#
            )
        };
        let config = Config::from_json(&tls("127.0.0.1:8080")).unwrap();
        assert_eq!(
            config.plain_listen_address().unwrap(),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        let error = Config::from_json(&tls("127.0.0.1:8443")).unwrap_err();
        assert_eq!(error.field, "server.tls.plainListen");
        let error = Config::from_json(&tls("localhost")).unwrap_err();
        assert_eq!(error.field, "server.tls.plainListen");
        let error =
            Config::from_json(r#"{"server":{"tls":{"cert":"c.pem","keyFile":"k"}}}"#).unwrap_err();
        assert!(error.message.contains("keyFile"), "{error}");
    }

    #[test]
    fn cluster_section_is_validated() {
        let ok = Config::from_json(
            r#"{"server":{"cluster":{"nats":["nats://127.0.0.1:4222"],"name":"node-a"}}}"#,
        )
        .unwrap();
        let cluster = ok.server.cluster.unwrap();
        assert_eq!(cluster.subject_prefix, "ringcast");
        for (bad, field) in [
            (r#"{"nats":[],"name":"a"}"#, "server.cluster.nats"),
            (
                r#"{"nats":["nats://x"],"name":"a.b"}"#,
                "server.cluster.name",
            ),
            (
                r#"{"nats":["nats://x"],"name":"a","subjectPrefix":"r.*"}"#,
                "server.cluster.subjectPrefix",
            ),
        ] {
            let text = format!(r#"{{"server":{{"cluster":{bad}}}}}"#);
            assert_eq!(Config::from_json(&text).unwrap_err().field, field);
        }
    }

    #[test]
    fn key_debug_is_redacted() {
        let config = Config::from_json(&format!(r#"{{"apps":[{APP}]}}"#)).unwrap();
        let text = format!("{:?}", config.apps[0].auth_key);
        assert!(text.contains("redacted"));
        assert!(!text.contains("\"s\""));
    }
}
