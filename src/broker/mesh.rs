//! The worker mesh: bounded lock-free channels between workers, with batched wakes.
//!
//! Responsibility: carry [`MeshMessage`]s from one worker (or the control thread) to
//! another, and [`BusCommand`]s from the workers to the cluster bus thread (a [`BusLink`]).
//! Each worker owns one [`Mailbox`] (a bounded crossbeam channel, many senders)
//! and a [`MeshSender`] to every mailbox. A wake costs ~25 µs on the reference VM, so
//! senders queue into a worker-local [`Outbox`] during a batch and notify each destination
//! once per flush; the receiver drains everything queued per wake.
//!
//! Must not: name `cluster` (the bus's wire format and bookkeeping import this module,
//! never the other way round) or block a worker.
//!
//! Invariants: FIFO per sender → receiver pair (crossbeam channels are FIFO per sender),
//! which keeps per-publisher order per topic; every channel holds at most
//! [`MAILBOX_CAPACITY`] messages and every outbox queue at most [`OUTBOX_HIGH_WATER`]
//! before its producer is paused (overflow is backpressure, never loss).

use crate::broker::answer::AnswerSender;
use crate::broker::interest::worker_bit;
use crate::metrics::{BusMetrics, WorkerMetrics};
use crate::topic::pattern::Pattern;
use atomic_waker::AtomicWaker;
use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// Messages a mailbox holds before senders keep theirs in their outbox. 16 Ki × ~64 bytes
/// ≈ 1 MiB per worker: many wakes' worth of batches at full fan-out rate.
pub const MAILBOX_CAPACITY: usize = 16 * 1024;
/// Queued outbox messages (all destinations) above which a worker stops reading client
/// sockets until the outbox drains: publishers are slowed, nothing is dropped.
pub const OUTBOX_HIGH_WATER: usize = 64 * 1024;
/// Messages handled per drain before the receiver flushes writes and lets others run.
pub const DRAIN_BATCH: usize = 1024;

/// A publication's frame, built once: the plain form, and for `compress: true`
/// publications the permessage-deflate form shared by every subscriber that negotiated it.
#[derive(Clone)]
pub struct Frame {
    pub plain: Bytes,
    pub deflated: Option<Bytes>,
}

impl Frame {
    /// A frame without a compressed form.
    pub fn plain(plain: Bytes) -> Frame {
        Frame {
            plain,
            deflated: None,
        }
    }

    /// The form to send to a session.
    pub fn for_session(&self, deflate: bool) -> &Bytes {
        match (&self.deflated, deflate) {
            (Some(deflated), true) => deflated,
            _ => &self.plain,
        }
    }
}

/// What crosses between workers.
pub enum MeshMessage {
    /// A frame serialized once by the publishing worker, for the receiver's local subscribers.
    Publish {
        app: usize,
        topic: Arc<str>,
        frame: Frame,
    },
    /// Close one connection (by numeric id) or every connection of an app with 4000;
    /// `reply` (single-connection calls) learns whether the connection existed.
    Terminate {
        app: usize,
        connection: Option<u64>,
        reply: Option<AnswerSender<bool>>,
    },
    /// Remove the subscriptions matching `patterns` of every connection of `subject`.
    Unsubscribe {
        app: usize,
        subject: Arc<str>,
        patterns: Arc<[Pattern]>,
    },
    /// Switch to a new configuration generation (from the control thread; see
    /// `Worker::reload`).
    Reload {
        next: Arc<crate::broker::apps::Registry>,
        /// Told once the worker runs `next`.
        applied: crossbeam_channel::Sender<()>,
    },
    /// Stop: close every connection with 1001 and end the worker.
    Shutdown,
}

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
        reply: AnswerSender<bool>,
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

struct Signal {
    waker: AtomicWaker,
    notified: AtomicBool,
}

/// The receiving end, owned by one worker (or, for `Mailbox<BusCommand>`, the bus thread).
pub struct Mailbox<T = MeshMessage> {
    receiver: Receiver<T>,
    signal: Arc<Signal>,
}

/// A sending end to one mailbox; cloneable, `Send`.
pub struct MeshSender<T = MeshMessage> {
    sender: Sender<T>,
    signal: Arc<Signal>,
}

impl<T> Clone for MeshSender<T> {
    fn clone(&self) -> Self {
        MeshSender {
            sender: self.sender.clone(),
            signal: self.signal.clone(),
        }
    }
}

/// One bounded mailbox holding at most `capacity` messages, and its sender.
pub fn channel<T>(capacity: usize) -> (Mailbox<T>, MeshSender<T>) {
    let (sender, receiver) = crossbeam_channel::bounded(capacity);
    let signal = Arc::new(Signal {
        waker: AtomicWaker::new(),
        notified: AtomicBool::new(false),
    });
    (
        Mailbox {
            receiver,
            signal: signal.clone(),
        },
        MeshSender { sender, signal },
    )
}

/// Creates `workers` mailboxes and their senders (index = worker index).
pub fn mesh(workers: usize) -> (Vec<Mailbox>, Vec<MeshSender>) {
    (0..workers).map(|_| channel(MAILBOX_CAPACITY)).unzip()
}

impl<T> MeshSender<T> {
    /// Queues without waking; the caller calls [`MeshSender::notify`] once per batch.
    /// `Full` is backpressure (retry later); `Disconnected` means the receiver is gone for
    /// good (its thread ended): never retry, never wait on it.
    pub fn try_send(&self, message: T) -> Result<(), TrySendError<T>> {
        self.sender.try_send(message)
    }

    /// Wakes the receiving worker unless a wake is already pending.
    pub fn notify(&self) {
        if !self.signal.notified.swap(true, Ordering::AcqRel) {
            self.signal.waker.wake();
        }
    }

    /// Sends from a non-worker thread, blocking while the mailbox is full (control paths only).
    pub fn send_blocking(&self, message: T) {
        if self.sender.send(message).is_ok() {
            self.notify();
        }
    }
}

impl<T> Mailbox<T> {
    /// Takes up to `limit` messages. Call [`Mailbox::wait`] when it returns fewer.
    pub fn drain(&self, limit: usize, out: &mut Vec<T>) {
        self.signal.notified.store(false, Ordering::Release);
        while out.len() < limit {
            match self.receiver.try_recv() {
                Ok(message) => out.push(message),
                Err(_) => break,
            }
        }
    }

    /// Resolves when a message may be waiting.
    pub async fn wait(&self) {
        poll_fn(|cx| self.poll_wait(cx)).await
    }

    /// [`Mailbox::wait`] as a poll, for a task that waits on something else too.
    pub fn poll_wait(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.signal.waker.register(cx.waker());
        if !self.receiver.is_empty() || self.signal.notified.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Worker-local queues of messages not yet handed to other workers' mailboxes, and the
/// link to the cluster bus (cluster mode).
pub struct Outbox {
    senders: Vec<MeshSender>,
    queues: RefCell<Vec<VecDeque<MeshMessage>>>,
    queued: Cell<usize>,
    /// Destinations whose mailbox is gone (bit per worker, set once, never cleared): what
    /// is queued for them is dropped, so no survivor waits on a dead peer.
    gone: Cell<u64>,
    bus: Option<BusLink>,
}

impl Outbox {
    pub fn new(senders: Vec<MeshSender>) -> Outbox {
        let queues = senders.iter().map(|_| VecDeque::new()).collect();
        Outbox {
            senders,
            queues: RefCell::new(queues),
            queued: Cell::new(0),
            gone: Cell::new(0),
            bus: None,
        }
    }

    /// Adds the link to the bus thread (cluster mode).
    pub fn with_bus(mut self, bus: BusLink) -> Outbox {
        self.bus = Some(bus);
        self
    }

    /// The bus link, in cluster mode.
    pub fn bus(&self) -> Option<&BusLink> {
        self.bus.as_ref()
    }

    pub fn bus_metrics(&self) -> Option<&BusMetrics> {
        self.bus.as_ref().map(BusLink::metrics)
    }

    pub fn workers(&self) -> usize {
        self.senders.len()
    }

    /// Queues `message` for worker `to` (handed over at the next [`Outbox::flush`]).
    /// A destination whose mailbox is gone gets nothing (see [`Outbox::flush`]).
    pub fn push(&self, to: usize, message: MeshMessage) {
        if self.gone.get() & worker_bit(to) != 0 {
            return;
        }
        self.queues.borrow_mut()[to].push_back(message);
        self.queued.set(self.queued.get() + 1);
    }

    /// Messages still queued here.
    pub fn queued(&self) -> usize {
        self.queued.get()
    }

    /// Wakes every other worker's mailbox without handing anything over: at shutdown, a
    /// worker that made room in its mailbox, or finished handing over, tells the others to
    /// look again (`runtime::shutdown::quiesce`) instead of their polling.
    pub fn wake_others(&self, me: usize) {
        for (to, sender) in self.senders.iter().enumerate() {
            if to != me {
                sender.notify();
            }
        }
    }

    /// Whether producers should pause (see [`OUTBOX_HIGH_WATER`]).
    pub fn is_congested(&self) -> bool {
        self.queued.get() >= OUTBOX_HIGH_WATER
    }

    /// Hands queued messages to the mailboxes (in order), waking each destination once.
    /// Messages that do not fit stay queued. A destination whose mailbox is gone (its
    /// worker ended) has its queue dropped and gets nothing more. Returns the number still
    /// queued.
    pub fn flush(&self) -> usize {
        if let Some(bus) = &self.bus {
            bus.wake();
        }
        if self.queued.get() == 0 {
            return 0;
        }
        let mut queues = self.queues.borrow_mut();
        let mut remaining = 0;
        for (to, queue) in queues.iter_mut().enumerate() {
            let mut sent = false;
            while let Some(message) = queue.pop_front() {
                match self.senders[to].try_send(message) {
                    Ok(()) => sent = true,
                    Err(TrySendError::Full(message)) => {
                        queue.push_front(message);
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => {
                        self.gone.set(self.gone.get() | worker_bit(to));
                        queue.clear();
                        queue.shrink_to_fit();
                    }
                }
            }
            if sent {
                self.senders[to].notify();
            }
            remaining += queue.len();
        }
        self.queued.set(remaining);
        remaining
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publication() -> MeshMessage {
        MeshMessage::Publish {
            app: 0,
            topic: "t".into(),
            frame: Frame::plain(Bytes::from_static(b"x")),
        }
    }

    #[test]
    fn a_full_mailbox_keeps_messages_queued() {
        let (mailbox, sender) = channel(2);
        let outbox = Outbox::new(vec![sender]);
        for _ in 0..5 {
            outbox.push(0, publication());
        }
        assert_eq!(
            outbox.flush(),
            3,
            "two fit, three wait (backpressure, no loss)"
        );
        let mut out = Vec::new();
        mailbox.drain(10, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(outbox.flush(), 1);
    }

    #[test]
    fn a_gone_mailbox_is_never_waited_on() {
        let (alive, to_alive) = channel(4);
        let (dead, to_dead) = channel(4);
        drop(dead); // its worker ended
        let outbox = Outbox::new(vec![to_alive, to_dead]);
        for _ in 0..OUTBOX_HIGH_WATER {
            outbox.push(1, publication());
        }
        outbox.push(0, publication());
        // Before: `Disconnected` was taken for `Full`, the dead worker's queue stayed and
        // the outbox stayed congested for good, pausing every reader of this worker.
        assert_eq!(outbox.flush(), 0);
        assert!(!outbox.is_congested());
        outbox.push(1, publication());
        assert_eq!(outbox.queued(), 0, "nothing is queued for a gone worker");
        let mut out = Vec::new();
        alive.drain(10, &mut out);
        assert_eq!(out.len(), 1, "the live worker still gets its message");
    }
}
