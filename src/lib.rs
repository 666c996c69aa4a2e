//! ringcast — a self-hosted Realtime Pub/Sub broker on a thread-per-core io_uring core.
//!
//! # Layout
//! Read top-down: each line's modules import only the ones below them (or beside them
//! in the same folder); no import cycle exists and no file passes 600 lines.
//! ```text
//! main.rs        the binary: panic policy (abort), logging, subcommands (cli/) → runtime
//! cli/           `ringcast subscribe|publish|token|keys|init` and the embedded dev app
//! runtime/       the ONLY place that names monoio, opens sockets, makes syscalls, spawns
//!                or pins threads
//!   mod          start(): listeners, mesh, workers, bus, control and JWKS threads
//!   handle       ServerHandle: stop, wait, reload (what an embedder holds)
//!   worker       one worker thread: WorkerRuntime, accept loops, mesh drain, ticker
//!   flusher      when a worker writes its dirty sessions (cycles, hold, urgency)
//!   shutdown     hand over in-flight messages, then close every connection
//!   connection   one TCP connection: HTTP requests, the upgrade, then the reader
//!   http_phase   bounds of the HTTP phase (head first, deadline, per-worker limit)
//!   reader       the one WebSocket reader loop (plain and TLS)
//!   writer       the one writer: a session's queue → vectored send / sendfile / TLS
//!   stream       the transport: a socket, plain or carrying TLS (one type, one API)
//!   tls          a connection's rustls state, driven over our own socket calls
//!   sys          the raw non-blocking socket calls
//!   frame_file   the memfd large fan-outs' frames live in (zero-copy `sendfile`)
//!   control      the control thread: reloads (read file → next generation → bus,
//!                workers), the JWKS fetcher's lifetime
//!   jwks         the JWKS fetcher thread (blocking HTTP(S) off the workers)
//!   bus/         the cluster bus thread (tokio + async-nats): inbound, interest, admin
//! http_api/      the HTTP endpoints, sans-IO, one file per group: publish, connections,
//!                reload, token, monitoring (/health, /metrics, /stats, /dashboard)
//! broker/        per-worker core, pure logic (no sockets, no syscalls, no monoio)
//!   worker/      the Worker: mod (state), inbound (client messages), publish (the one
//!                fan-out path), subscriptions, lifecycle (open, close, tick), admin
//!                (terminate, unsubscribe, reload); tests drive it without sockets
//!   session      one connection's broker-side state
//!   outbound     a session's outbound queue: frames, pending bytes, partly-written front
//!   frame_store  frame-file space as the broker sees it: a store the runtime provides,
//!                opaque handles the runtime reclaims
//!   mesh         channels between workers (bounded, batched wakes, room wakes)
//!   outbox       a worker's not-yet-handed mesh messages; reader backpressure
//!   bus_link     BusCommand and a worker's sending end to the bus thread
//!   interest     which workers hold subscribers of (app, topic), and which buckets
//!                this node holds topics of
//!   apps         compiled app registry (keys, filters, limits), one generation per reload
//!   anonymous    anonymous-token endpoint state: issuer + per-address rate limiter
//! cluster/       the bus's sans-IO parts: NATS subjects (`subjects`), wire format,
//!                validation of bus input (`validate`)
//! control        the control requests and the pure part of a reload (next generation)
//! auth/          JWT verification (`key` shared by `jwt` and `jwks`; `claims`), JWKS key
//!                sets, the node's verified-token cache (`token_cache`), compiled
//!                permissions, source-address filters, the client address behind trusted
//!                proxies, minting, anonymous-token issuing
//! topic/         glob patterns; per-worker topic table; one topic's subscriber set
//!                (contiguous, O(1) insert/remove)
//! protocol/      sans-IO: HTTP request heads, WebSocket frames (frame/: wire, reader,
//!                encode), commands, envelopes, permessage-deflate, the JSON nesting bound
//! config/        the configuration tree (mod, server, app) and its validation
//! metrics/       per-worker counters, refusal kinds, the /metrics text from a snapshot
//! error.rs       CloseKind: every way a session ends (other errors map onto it by `From`)
//! refusal_log, stats, suggest, log_value, tls, starter   small leaves (see each header)
//! ```
//! Dependencies point down only: `protocol`, `topic` and `auth` do no I/O, no async and
//! read no clock (time is a parameter); `broker` does no I/O either (randomness for
//! connection ids comes from a thread-local generator).
//!
//! # Glossary
//! - **app**: a tenant (`appId`); connections, topics and permissions live inside one.
//! - **connection**: one WebSocket client, id = 12 lowercase hex characters; its low byte is
//!   the index of the worker that owns it.
//! - **session**: the broker's state for a connection (subscriptions, outbound queue).
//! - **outbound queue**: a session's frames waiting to be written; it alone counts their
//!   bytes (bounded by `maxPendingBytes`) and how much of the front frame is written.
//! - **transport**: a connection's socket as the reader and writer see it, plain or TLS
//!   (`runtime::stream::Stream`).
//! - **worker**: one pinned thread with its own monoio runtime, listener, sessions and
//!   topic tables; connections never move between workers.
//! - **topic**: a 1–256 byte name; `secure/…` and `priv/…` need permissions to subscribe.
//! - **pattern**: a glob over topic names where `*` matches any run (including `/`).
//! - **frame**: a complete WebSocket frame (header + JSON) built once per publication and
//!   shared by reference with every subscriber.
//! - **mesh**: the bounded channels between workers; **outbox**: a worker's not-yet-handed
//!   mesh messages.
//! - **frame file**: a worker's memfd holding large fan-outs' frames, sent with `sendfile`;
//!   the broker holds only opaque handles to its space (`broker::frame_store`).
//! - **flush cycle**: one pass of the flusher over the sessions that became dirty.
//! - **generation**: one compiled configuration (`broker::apps::Registry`); a reload makes
//!   the next one.
//! - **bus**: the link between nodes (NATS): one thread per node, `runtime::bus`.
//! - **node**: one ringcast process in a cluster (`server.cluster.name`).

// jsonwebtoken panics when two signature backends are enabled: refuse the build instead.
#[cfg(all(feature = "jwt-rust-crypto", feature = "jwt-aws-lc"))]
compile_error!("enable exactly one of the features jwt-rust-crypto and jwt-aws-lc");

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
