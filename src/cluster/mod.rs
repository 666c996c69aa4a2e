//! The cluster: several ringcast nodes acting as one broker over NATS (sans-IO parts).
//!
//! Responsibility: what workers hand the bus thread ([`BusCommand`] through a [`BusLink`]),
//! the bus wire format ([`wire`]) and the interest bookkeeping ([`remote`]). It must not do
//! I/O or name tokio: the bus thread itself (`runtime::bus`) owns the NATS client.
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

use crate::broker::mesh::{Frame, MeshSender};
use crate::metrics::{BusMetrics, WorkerMetrics};
use crate::topic::pattern::Pattern;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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

/// What workers hand the bus thread.
pub enum BusCommand {
    /// A publication some other node has interest in (sent to NATS once).
    Publish {
        app: usize,
        topic: Arc<str>,
        frame: Frame,
    },
    /// This node's subscribers of `(app, topic)` may have gone 0↔1: the bus re-reads the
    /// interest map and announces a delta if its announced state differs.
    InterestChanged { app: usize, topic: Box<str> },
    /// Close connection `id` on the node holding it; `reply` learns whether it existed
    /// (dropped unanswered when the node does not answer in time).
    Terminate {
        app: usize,
        id: u64,
        reply: flume::Sender<bool>,
    },
    /// Close every connection of the app on every other node.
    TerminateApp { app: usize },
    /// Remove matching subscriptions of a subject's connections on every other node.
    Unsubscribe {
        app: usize,
        subject: Arc<str>,
        patterns: Arc<[Pattern]>,
    },
    /// A configuration reload made `registry` the generation in force (sent by the
    /// control thread before any worker gets it, so the bus knows added apps' slots first).
    Reload(Arc<crate::broker::apps::Registry>),
    /// Say goodbye to the cluster and end the bus thread.
    Shutdown,
}

/// A worker's sending end to the bus thread, with batched wakes like the mesh's.
pub struct BusLink {
    sender: MeshSender<BusCommand>,
    metrics: Arc<BusMetrics>,
    /// Set when an interest hint could not be queued: the bus rescans every interest map.
    resync: Arc<AtomicBool>,
    /// Commands queued since the last wake.
    wake_pending: Cell<bool>,
}

impl BusLink {
    pub fn new(
        sender: MeshSender<BusCommand>,
        metrics: Arc<BusMetrics>,
        resync: Arc<AtomicBool>,
    ) -> BusLink {
        BusLink {
            sender,
            metrics,
            resync,
            wake_pending: Cell::new(false),
        }
    }

    pub fn metrics(&self) -> &BusMetrics {
        &self.metrics
    }

    /// Queues `command` (woken at the next [`BusLink::wake`]). When the queue is full a
    /// publication is dropped and counted, an interest hint turns into a full resync, and
    /// an admin call goes unanswered (the HTTP caller gets 504).
    pub fn send(&self, command: BusCommand) {
        let command = match self.sender.try_send(command) {
            Ok(()) => {
                self.wake_pending.set(true);
                return;
            }
            // The bus thread is gone: the process is exiting (a panic aborts it).
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => return,
            Err(crossbeam_channel::TrySendError::Full(command)) => command,
        };
        match command {
            BusCommand::InterestChanged { .. } => {
                self.resync.store(true, Ordering::Release);
                self.wake_pending.set(true);
            }
            BusCommand::Publish { .. } => {
                WorkerMetrics::add(&self.metrics.dropped_queue_full, 1);
            }
            _ => tracing::warn!("bus queue full: a cluster admin call was not forwarded"),
        }
    }

    /// Wakes the bus thread if anything was queued since the last wake.
    pub fn wake(&self) {
        if self.wake_pending.replace(false) {
            self.sender.notify();
        }
    }
}
