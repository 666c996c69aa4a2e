//! The cluster: several ringcast nodes acting as one broker over NATS (sans-IO parts).
//!
//! Responsibility: the bus wire format ([`wire`]), the interest bookkeeping ([`remote`]),
//! the validation of what other nodes send ([`validate`]) and the bus's limits. It must not
//! do I/O or name tokio: the bus thread itself (`runtime::bus`) owns the NATS client. What
//! workers hand the bus thread ([`BusCommand`] through a [`BusLink`]) is the workers' side
//! of the link and lives with the mesh (`broker::mesh`); it is re-exported here. Arrows
//! point one way: the cluster may name broker types, `broker` never names `cluster`.
//!
//! Design (ARCHITECTURE.md "Beyond one machine"): a node sends a publication to NATS once,
//! and only for `(app, topic)` pairs another node has announced interest in (the
//! interest map's `BUS_BIT`); every node delivers what arrives from NATS locally, exactly
//! like a message from another worker. Interest travels as deltas on
//! `<prefix>.interest.<node>`, snapshots answer late joiners and reconnects, heartbeats
//! expire a dead node's interest after [`NODE_EXPIRY_MS`].
//!
//! Invariants: one bus thread and one NATS connection per node, and one FIFO channel from
//! each worker to it, so publications of one publisher on one topic leave — and arrive on
//! every other node — in order. Delivery across nodes is at most once: NATS core does not
//! redeliver, and every bounded queue on the way drops with a counter when full.

pub mod remote;
pub mod validate;
pub mod wire;

/// The workers' side of the link to the bus thread (kept at its old path).
pub use crate::broker::bus_link::{BusCommand, BusLink};

/// Commands queued from all workers to the bus thread before publications are dropped
/// (counted as `queue_full`). 16 Ki × ~100 bytes: well over a second of a busy node's
/// cross-node traffic while NATS is slow, yet ≤ a few MiB.
pub const BUS_QUEUE_CAPACITY: usize = 16 * 1024;
/// Commands the bus thread takes from its queue per turn before serving NATS again.
pub const BUS_DRAIN_BATCH: usize = 1024;
/// Messages NATS may queue per subscription inside the client before it reports a slow
/// consumer and drops (async-nats's own bound).
pub const BUS_SUBSCRIPTION_CAPACITY: usize = 64 * 1024;
/// Heartbeat period of every node.
pub const HEARTBEAT_INTERVAL_MS: u64 = 1000;
/// A node not heard from for this long is dropped with all its interest: three missed
/// heartbeats, so a killed node's interest disappears within 3–4 seconds.
pub const NODE_EXPIRY_MS: u64 = 3000;
/// A snapshot is requested from one node at most this often (gaps seen on every delta
/// during an outage would otherwise ask for one per message).
pub const SNAPSHOT_RETRY_MS: u64 = 1000;
/// `(app, topic)` entries per snapshot message: ~100 KiB, far below NATS's 1 MiB default
/// `max_payload`.
pub const SNAPSHOT_CHUNK_ENTRIES: usize = 1000;
/// How long the bus waits for another node to answer a connection-addressed admin call
/// (below the HTTP handler's own 5 s wait, which then answers 504).
pub const ADMIN_REPLY_TIMEOUT_MS: u64 = 4000;
