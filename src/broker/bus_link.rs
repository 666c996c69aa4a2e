//! A worker's link to the cluster bus thread.
//!
//! Responsibility: [`BusCommand`], what workers hand the bus thread, and [`BusLink`], the
//! sending end with batched wakes (the bus thread drains a mesh [`Mailbox`] of them).
//! Must not: name `cluster` (which re-exports these) or block a worker: a full queue drops
//! a publication (counted), turns an interest hint into a resync, or leaves an admin call
//! unanswered (the HTTP caller gets 504).
//!
//! [`Mailbox`]: super::mesh::Mailbox

use super::mesh::{Frame, MeshSender};
use crate::metrics::{BusMetrics, WorkerMetrics};
use crate::topic::pattern::Pattern;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What workers hand the bus thread.
pub enum BusCommand {
    /// A publication, sent to NATS once (NATS hands it to the nodes subscribed to its
    /// subject, if any).
    Publish {
        app: usize,
        topic: Arc<str>,
        frame: Frame,
    },
    /// Whether this node holds a topic of `(app, bucket)` may have changed: the bus
    /// re-reads the interest map and subscribes or unsubscribes on NATS to match.
    BucketChanged { app: usize, bucket: u16 },
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
    /// This node's `server.cluster.nodeNumber` (carried by its connection ids).
    node: u16,
    /// Commands queued since the last wake.
    wake_pending: Cell<bool>,
}

impl BusLink {
    pub fn new(
        sender: MeshSender<BusCommand>,
        metrics: Arc<BusMetrics>,
        resync: Arc<AtomicBool>,
        node: u16,
    ) -> BusLink {
        BusLink {
            sender,
            metrics,
            resync,
            node,
            wake_pending: Cell::new(false),
        }
    }

    /// This node's number.
    pub fn node(&self) -> u16 {
        self.node
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
            BusCommand::BucketChanged { .. } => {
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
