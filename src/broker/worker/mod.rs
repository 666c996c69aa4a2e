//! The per-worker broker core: sessions, local topic tables, fan-out, mesh handling.
//!
//! Responsibility: take events — a decoded client message, a mesh message, a tick, an
//! admin request — and turn them into frames queued on sessions, messages queued for other
//! workers, and typed closes. It must not do I/O: the runtime reads sockets, calls in here,
//! then flushes [`Worker::take_dirty`] sessions and the [`Outbox`].
//!
//! The [`Worker`] type is defined here with its accessors; its behaviour is split by
//! responsibility:
//! - `inbound`: one client message (commands, rate limit, pings, the close handshake);
//! - `publish`: the one fan-out path, queueing on sessions, flush urgency, the dirty list;
//! - `subscriptions`: subscribe/unsubscribe rules, topic tables, interest propagation;
//! - `lifecycle`: opening and closing sessions, deferred closes, ticks;
//! - `admin`: terminate, unsubscribe a subject, reload, messages from other workers.
//!
//! Invariants:
//! - One `Worker` per thread; all state is `!Send` (`Rc`, `RefCell`) and lock-free, except
//!   the app's shared interest map and connection counters touched on (un)subscribe/connect.
//! - [`Worker::publish`] is the one fan-out path for WebSocket, HTTP, presence and mesh
//!   publications: a frame is serialized once and shared by reference.
//! - No `RefCell` borrow is held across a call that can close a session: closes found while
//!   iterating subscribers are deferred to `pending_closes`.

use super::apps::{AppCounters, Registry};
use super::frame_store::FrameStore;
use super::outbox::Outbox;
use super::session::{Grants, Session};
use crate::error::CloseKind;
use crate::metrics::WorkerMetrics;
use crate::protocol::deflate::{Deflater, Inflater};
use crate::protocol::envelope;
use crate::topic::table::TopicTable;
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

mod admin;
mod inbound;
mod lifecycle;
mod publish;
mod subscriptions;
#[cfg(test)]
mod tests;

/// The topic WebSocket inbound messages and presence events are published on.
pub const INBOUND_TOPIC: &str = "secure/inbound";
/// Distinct permission lists whose compiled form a worker keeps for sharing between
/// sessions. Tokens are usually minted from a handful of templates, so a few hundred cover
/// a deployment; past the limit each session compiles its own (correct, just unshared).
pub const GRANTS_CACHE_ENTRIES: usize = 1024;

/// Per-thread broker state.
pub struct Worker {
    pub index: usize,
    /// The current configuration generation (swapped by [`Worker::reload`]).
    registry: RefCell<Arc<Registry>>,
    pub metrics: Arc<[WorkerMetrics]>,
    pub outbox: Outbox,
    /// Per app slot: topic → local subscribers.
    tables: RefCell<Vec<TopicTable<Rc<Session>>>>,
    /// Open sessions by numeric connection id.
    sessions: RefCell<HashMap<u64, Rc<Session>>>,
    /// Sessions with frames queued since the last flush.
    dirty: RefCell<Vec<Rc<Session>>>,
    /// A session's queue passed half its `maxPendingBytes`: the runtime's flusher must not
    /// hold its next cycle back (see [`Worker::take_flush_urgency`]).
    flush_urgent: Cell<bool>,
    /// The flusher task, while it holds a cycle back; woken when a flush turns urgent.
    flush_waker: RefCell<Option<std::task::Waker>>,
    /// Closes discovered while a table was borrowed.
    pending_closes: RefCell<Vec<(Rc<Session>, CloseKind)>>,
    /// Seconds since the worker started (advanced by the runtime's ticker).
    pub tick: Cell<u64>,
    /// Milliseconds since the worker started, refreshed by the runtime before each batch
    /// of work (rate limits).
    pub now_ms: Cell<u64>,
    /// Compiled permission lists, shared by sessions (bounded by [`GRANTS_CACHE_ENTRIES`]).
    grants: RefCell<HashMap<Box<[String]>, Rc<Grants>>>,
    /// Scratch for assembling a sender's client descriptor (see [`Worker::client_frame`]).
    client_scratch: RefCell<Vec<u8>>,
    /// permessage-deflate, shared by every session of the worker (no context takeover).
    deflater: RefCell<Deflater>,
    inflater: RefCell<Inflater>,
    /// Where frames of large fan-outs are kept for zero-copy sends (`None`: disabled); the
    /// runtime's frame file.
    frame_store: RefCell<Option<Rc<dyn FrameStore>>>,
}

/// Whether an admin call found its connection: known at once when it lives on this
/// worker, or answered later by the owning worker.
pub enum Found {
    Yes,
    No,
    Later(flume::Receiver<bool>),
}

/// What the runtime must do after a client message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    /// The session is closing; keep reading only to discard.
    Closing,
}

impl Worker {
    pub fn new(
        index: usize,
        registry: Arc<Registry>,
        outbox: Outbox,
        metrics: Arc<[WorkerMetrics]>,
    ) -> Worker {
        let tables = (0..registry.slot_count())
            .map(|_| TopicTable::default())
            .collect();
        Worker {
            index,
            registry: RefCell::new(registry),
            metrics,
            outbox,
            tables: RefCell::new(tables),
            sessions: RefCell::new(HashMap::new()),
            dirty: RefCell::new(Vec::new()),
            flush_urgent: Cell::new(false),
            flush_waker: RefCell::new(None),
            pending_closes: RefCell::new(Vec::new()),
            tick: Cell::new(0),
            now_ms: Cell::new(0),
            grants: RefCell::new(HashMap::new()),
            client_scratch: RefCell::new(Vec::new()),
            deflater: RefCell::new(Deflater::default()),
            inflater: RefCell::new(Inflater::default()),
            frame_store: RefCell::new(None),
        }
    }

    /// Gives this worker a frame store: frames of large fan-outs are written to it once and
    /// sent from it without copying (see [`FrameStore`]).
    pub fn set_frame_store(&self, store: Option<Rc<dyn FrameStore>>) {
        *self.frame_store.borrow_mut() = store;
    }

    /// The current configuration generation.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.borrow().clone()
    }

    fn app_counters(&self, slot: usize, count: impl FnOnce(&AppCounters)) {
        if let Some(app) = self.registry.borrow().at_slot(slot) {
            if let Some(counters) = app.counters.get(self.index) {
                count(counters);
            }
        }
    }

    /// Builds a frame that embeds `session`'s client descriptor (assembled on demand: an
    /// idle session keeps only its parts).
    fn client_frame(&self, session: &Session, build: impl FnOnce(&[u8]) -> Bytes) -> Bytes {
        let mut scratch = self.client_scratch.borrow_mut();
        envelope::write_client_descriptor(
            session.id_text().as_str(),
            &session.subject,
            &session.grants.permissions_json,
            &mut scratch,
        );
        build(&scratch)
    }

    pub fn metrics(&self) -> &WorkerMetrics {
        &self.metrics[self.index]
    }

    pub fn session_count(&self) -> usize {
        self.sessions.borrow().len()
    }

    /// Every open session (for ticks and shutdown).
    pub fn sessions(&self) -> Vec<Rc<Session>> {
        self.sessions.borrow().values().cloned().collect()
    }
}
