//! The cluster: several ringcast nodes acting as one broker over NATS (sans-IO parts).
//!
//! Responsibility: the bus's subjects ([`subjects`]), its wire format ([`wire`]), the
//! validation of what other nodes send ([`validate`]) and the bus's limits. It must not
//! do I/O or name tokio: the bus thread itself (`runtime::bus`) owns the NATS client. What
//! workers hand the bus thread ([`BusCommand`] through a [`BusLink`]) is the workers' side
//! of the link and lives with the mesh (`broker::mesh`); it is re-exported here. Arrows
//! point one way: the cluster may name broker types, `broker` never names `cluster`.
//!
//! Design (ARCHITECTURE.md "Beyond one machine", docs/decisions/bus-interest.md): a node
//! sends every publication to NATS once, on a subject naming its app and its topic's
//! bucket (or, for `priv/<id>`, the node the id names); a node subscribes on NATS to the
//! buckets it holds topics of and to its own connections, so NATS — not home-made
//! gossip — decides which nodes receive a publication. Per-node state is bounded by what
//! the node serves: no node keeps anything per connection or per topic of another node.
//!
//! Invariants: one bus thread and one NATS connection per node, and one FIFO channel from
//! each worker to it, so publications of one publisher on one topic leave — and arrive on
//! every other node — in order (one topic, one subject). Delivery across nodes is at most
//! once: NATS core does not redeliver, every bounded queue on the way drops with a counter
//! when full, and a node receiving a publication on two of its subscriptions skips one.

pub mod subjects;
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
/// How long the bus waits for another node to answer a connection-addressed admin call
/// (below the HTTP handler's own 5 s wait, which then answers 504).
pub const ADMIN_REPLY_TIMEOUT_MS: u64 = 4000;
