//! ringcast — a self-hosted Realtime Pub/Sub broker on a thread-per-core io_uring core.
//!
//! # Layout
//! ```text
//! main.rs      the binary: panic policy (abort), logging init, subcommands (cli/) → runtime
//! runtime/     the ONLY place that names monoio, opens sockets, spawns or pins threads
//!   connection   one TCP connection: the upgrade, the WebSocket reader
//!   http_phase   HTTP requests before an upgrade: head first, deadline, per-worker limit
//!   writer       flush cycles: each dirty connection written once, with vectored sends
//!   bus          the cluster bus thread (tokio + async-nats), validating what it reads
//!   stream, tls  a connection's socket, plain or TLS (rustls driven by hand)
//!   jwks         the JWKS fetcher thread (blocking HTTP(S) off the workers)
//! http_api     admin HTTP endpoints, /health, /metrics, /stats, /dashboard, /admin/reload,
//!              /token/anonymous (sans-IO handlers)
//! broker/      per-worker core
//!   worker       sessions, local topic tables, the one publish/fan-out path, closes
//!   session      one connection's broker-side state and bounded outbound queue
//!   mesh         bounded channels between workers, batched wakes, the outbox
//!   interest     which workers hold subscribers of (app, topic)
//!   apps         compiled app registry (keys, filters, limits), one generation per reload
//!   anonymous    anonymous-token endpoint state: issuer + per-address rate limiter
//! cluster/     the bus's sans-IO parts: commands from workers, wire format, interest
//!              bookkeeping, validation of bus input (`validate`; the bus thread itself is
//!              `runtime::bus`)
//! auth/        JWT verification, JWKS key sets, compiled permissions, source-address
//!              filters, the client address behind trusted proxies (`X-Forwarded-For`),
//!              minting, anonymous-token issuing
//! topic/       glob patterns, per-worker topic table
//! protocol/    sans-IO: HTTP request heads, WebSocket frames, commands, envelopes, the
//!              JSON nesting bound (`nesting`) every JSON reader applies
//! control      configuration reload: next registry generation → bus, then every worker
//! config.rs, error.rs, metrics.rs   leaves anyone may import
//! refusal_log  the rate-limited summary line of refused handshakes (worker 0's ticker)
//! stats        the `/stats` document behind the dashboard
//! suggest      "did you mean `maxConnections`?" for configuration errors
//! log_value    escaping request values (app ids, subjects) for log lines
//! tls          `server.tls` files → the shared rustls configuration (runtime/tls drives it)
//! starter      files written by `ringcast keys` / `ringcast init` (tooling, not runtime)
//! ```
//! Dependencies point down only: `protocol`, `topic` and `auth` do no I/O, no async and
//! read no clock (time is a parameter).
//!
//! # Glossary
//! - **app**: a tenant (`appId`); connections, topics and permissions live inside one.
//! - **connection**: one WebSocket client, id = 12 lowercase hex characters; its low byte is
//!   the index of the worker that owns it.
//! - **session**: the broker's state for a connection (subscriptions, outbound queue).
//! - **worker**: one pinned thread with its own monoio runtime, listener, sessions and
//!   topic tables; connections never move between workers.
//! - **topic**: a 1–256 byte name; `secure/…` and `priv/…` need permissions to subscribe.
//! - **pattern**: a glob over topic names where `*` matches any run (including `/`).
//! - **frame**: a complete WebSocket frame (header + JSON) built once per publication and
//!   shared by reference with every subscriber.
//! - **mesh**: the bounded channels between workers; **outbox**: a worker's not-yet-handed
//!   mesh messages.
//! - **bus**: the link between nodes (NATS): one thread per node, `runtime::bus`.
//! - **node**: one ringcast process in a cluster (`server.cluster.name`).

pub mod auth;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod control;
pub mod error;
pub mod http_api;
pub mod log_value;
pub mod metrics;
pub mod protocol;
pub mod refusal_log;
pub mod runtime;
pub mod starter;
pub mod stats;
pub mod suggest;
pub mod tls;
pub mod topic;
