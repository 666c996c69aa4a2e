//! The `server` section of the configuration: listener, workers, timers, TLS files, the
//! cluster link and the server-wide limit defaults, each default documented.
//!
//! Responsibility: the serde shape of `server` and its defaults. Must not: check values
//! (`config::validate` does) or read files.

use super::app::{KeyConfig, LimitsConfig};
use super::cluster_security::{redacted_url, ClusterAuth, ClusterSecurity, ClusterTls};
use serde::Deserialize;
use std::fmt;

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
    /// Listen address, `IP:PORT` or `localhost:PORT` (the IPv4 loopback;
    /// [`parse_listen`](super::parse_listen)).
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
    /// Verified client tokens the node remembers, shared by its workers, so that a
    /// reconnecting client skips the signature check (README "Token cache"). Full: expired
    /// entries go first, then the one expiring soonest. 0 = off (every connect verifies).
    /// Restart-only.
    pub token_cache_entries: u64,
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
    /// EXPERIMENTAL (issue 16, item 5; `docs/decisions/io-uring-sends.md`): under the
    /// io_uring driver, a flush cycle submits each plain connection's vectored write as an
    /// io_uring operation instead of a `sendmsg` (TLS and `sendfile` runs keep their path).
    /// Does nothing under the legacy driver. Off by default; restart-only.
    pub io_uring_sends: bool,
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

/// `server.cluster`: `{"nats": ["nats://127.0.0.1:4222"], "name": "node-a", "nodeNumber": 1, "subjectPrefix": "ringcast"}`.
/// `Debug` shows the URLs without their userinfo and no secret.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS server URLs (any one of a NATS cluster is enough); at least one.
    pub nats: Vec<String>,
    /// This node's name, unique in the cluster: 1-64 characters of [A-Za-z0-9_-].
    pub name: String,
    /// This node's number, unique in the cluster: 0-4095. Connection ids carry it, so
    /// `priv/<id>` and admin calls reach the node holding a connection by the id alone.
    pub node_number: u16,
    /// Prefix of every NATS subject the nodes use; nodes with the same prefix form one
    /// cluster. Dot-separated tokens of [A-Za-z0-9_-], at most [`MAX_SUBJECT_PREFIX_BYTES`].
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// How the node authenticates to NATS (README "Cluster on a secured NATS"). Absent:
    /// no credentials, or those in a URL's `user:password@`.
    #[serde(default)]
    pub auth: Option<ClusterAuth>,
    /// TLS to NATS with a private CA and an optional client certificate. Absent: plain,
    /// unless a URL is `tls://` or the server requires TLS (then the system's CAs).
    #[serde(default)]
    pub tls: Option<ClusterTls>,
}

impl ClusterConfig {
    /// The URLs, `auth` and `tls`, as `cluster_security` checks them.
    pub fn security(&self) -> ClusterSecurity<'_> {
        ClusterSecurity {
            nats: &self.nats,
            auth: self.auth.as_ref(),
            tls: self.tls.as_ref(),
        }
    }
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nats: Vec<String> = self.nats.iter().map(|url| redacted_url(url)).collect();
        f.debug_struct("ClusterConfig")
            .field("nats", &nats)
            .field("name", &self.name)
            .field("node_number", &self.node_number)
            .field("subject_prefix", &self.subject_prefix)
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .finish()
    }
}

fn default_subject_prefix() -> String {
    "ringcast".to_string()
}

/// The largest `server.cluster.nodeNumber`: connection ids give it 12 bits.
pub const MAX_NODE_NUMBER: u16 = 4095;

/// Longest `subjectPrefix`: with an app id (≤ 128) and the bus's own tokens a subject stays
/// far below NATS's 4 KiB control line.
pub const MAX_SUBJECT_PREFIX_BYTES: usize = 256;

/// Whether `text` is a NATS subject token we accept (no wildcards, dots or spaces).
pub fn is_subject_token(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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
            token_cache_entries: crate::auth::token_cache::DEFAULT_TOKEN_CACHE_ENTRIES,
            zero_copy_fanout_bytes: DEFAULT_ZERO_COPY_FANOUT_BYTES,
            flush_interval_micros: DEFAULT_FLUSH_INTERVAL_MICROS,
            io_uring_sends: false,
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
