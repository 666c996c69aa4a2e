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
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

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
        reply: Option<flume::Sender<bool>>,
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

struct Signal {
    waker: AtomicWaker,
    notified: AtomicBool,
    /// Senders waiting for room in a full mailbox (see [`MeshSender::poll_room`]): at most
    /// one waker per sending worker (a sender re-registering replaces nothing, it is found
    /// by `will_wake`), so the list is bounded by the worker count plus the control thread.
    room: Mutex<Vec<Waker>>,
    /// Set while `room` holds a waker: the receiver's drain checks this flag only.
    room_wanted: AtomicBool,
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
        room: Mutex::new(Vec::new()),
        room_wanted: AtomicBool::new(false),
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

    /// Ready once the mailbox has room (or its receiver is gone); otherwise registers the
    /// task, which the receiver's next [`Mailbox::drain`] that takes messages wakes.
    pub fn poll_room(&self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if !self.sender.is_full() {
            return Poll::Ready(());
        }
        {
            let mut room = self.signal.room.lock().unwrap_or_else(|e| e.into_inner());
            if !room.iter().any(|waker| waker.will_wake(cx.waker())) {
                room.push(cx.waker().clone());
            }
        }
        self.signal.room_wanted.store(true, Ordering::SeqCst);
        // Checked again after announcing the wait: a drain that ran before the flag was set
        // has made room that this check sees.
        if self.sender.is_full() {
            Poll::Pending
        } else {
            Poll::Ready(())
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
        let before = out.len();
        while out.len() < limit {
            match self.receiver.try_recv() {
                Ok(message) => out.push(message),
                Err(_) => break,
            }
        }
        if out.len() > before {
            // Pairs with the flag store and re-check in `poll_room`.
            std::sync::atomic::fence(Ordering::SeqCst);
            if self.signal.room_wanted.load(Ordering::SeqCst)
                && self.signal.room_wanted.swap(false, Ordering::SeqCst)
            {
                let waiting = std::mem::take(
                    &mut *self.signal.room.lock().unwrap_or_else(|e| e.into_inner()),
                );
                waiting.into_iter().for_each(Waker::wake);
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
    /// Tasks of this worker waiting in [`Outbox::uncongested`], all woken by the flush
    /// that brings the queue below [`OUTBOX_HIGH_WATER`]. Bounded by the worker's reader
    /// tasks: each adds itself at most once per round (`wake_round`), and a round ends by
    /// emptying the list.
    waiting: RefCell<Vec<Waker>>,
    wake_round: Cell<u64>,
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
            waiting: RefCell::new(Vec::new()),
            wake_round: Cell::new(0),
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
        if remaining < OUTBOX_HIGH_WATER {
            self.wake_waiting();
        }
        remaining
    }

    /// Resolves once a destination that still has messages queued here has room in its
    /// mailbox (at once when nothing is queued): [`Outbox::flush`] is then worth retrying.
    pub async fn room(&self) {
        poll_fn(|cx| {
            let queues = self.queues.borrow();
            let mut waiting = false;
            for (to, queue) in queues.iter().enumerate() {
                if queue.is_empty() {
                    continue;
                }
                match self.senders[to].poll_room(cx) {
                    Poll::Ready(()) => return Poll::Ready(()),
                    Poll::Pending => waiting = true,
                }
            }
            if waiting {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await
    }

    /// Resolves once the outbox is not congested: a producer (a reader) waits here
    /// instead of reading on; the [`Outbox::flush`] that drains it wakes every waiter.
    pub async fn uncongested(&self) {
        let mut registered = None;
        poll_fn(|cx| {
            if !self.is_congested() {
                return Poll::Ready(());
            }
            let round = self.wake_round.get();
            if registered != Some(round) {
                self.waiting.borrow_mut().push(cx.waker().clone());
                registered = Some(round);
            }
            Poll::Pending
        })
        .await
    }

    fn wake_waiting(&self) {
        let mut waiting = self.waiting.borrow_mut();
        if waiting.is_empty() {
            return;
        }
        self.wake_round.set(self.wake_round.get() + 1);
        // Waking schedules the tasks on this worker; none runs inside this call.
        waiting.drain(..).for_each(Waker::wake);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

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

    /// A waker that counts its wakes.
    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_paused_producer_is_woken_by_the_flush_that_drains_the_outbox() {
        let (mailbox, sender) = channel(OUTBOX_HIGH_WATER + 1);
        let blocker = Outbox::new(vec![sender.clone()]);
        // Fill the mailbox so the outbox under test stays congested at its first flush.
        for _ in 0..=OUTBOX_HIGH_WATER {
            blocker.push(0, publication());
        }
        assert_eq!(blocker.flush(), 0);
        let outbox = Outbox::new(vec![sender]);
        for _ in 0..OUTBOX_HIGH_WATER {
            outbox.push(0, publication());
        }
        let count = Arc::new(Count(std::sync::atomic::AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut context = std::task::Context::from_waker(&waker);
        let mut wait = std::pin::pin!(outbox.uncongested());
        assert!(wait.as_mut().poll(&mut context).is_pending());
        assert!(wait.as_mut().poll(&mut context).is_pending());
        assert_eq!(
            outbox.waiting.borrow().len(),
            1,
            "listed once however often polled"
        );
        assert_eq!(
            outbox.flush(),
            OUTBOX_HIGH_WATER,
            "the mailbox is still full"
        );
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            0,
            "still congested: not woken"
        );
        let mut out = Vec::new();
        mailbox.drain(OUTBOX_HIGH_WATER + 1, &mut out);
        assert_eq!(outbox.flush(), 0);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "the draining flush wakes it"
        );
        assert!(outbox.waiting.borrow().is_empty());
        assert!(wait.as_mut().poll(&mut context).is_ready());
    }

    #[test]
    fn a_sender_waiting_for_room_is_woken_by_the_receivers_drain() {
        let (mailbox, sender) = channel(2);
        let outbox = Outbox::new(vec![sender]);
        for _ in 0..3 {
            outbox.push(0, publication());
        }
        assert_eq!(outbox.flush(), 1, "the mailbox is full, one waits");
        let count = Arc::new(Count(std::sync::atomic::AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut context = std::task::Context::from_waker(&waker);
        let mut room = std::pin::pin!(outbox.room());
        assert!(room.as_mut().poll(&mut context).is_pending());
        assert!(room.as_mut().poll(&mut context).is_pending());
        let mut out = Vec::new();
        mailbox.drain(1, &mut out);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "the drain that made room woke the sender once"
        );
        assert!(room.as_mut().poll(&mut context).is_ready());
        assert_eq!(outbox.flush(), 0);
        mailbox.drain(10, &mut out);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "no wake without a waiter"
        );
        let mut idle = std::pin::pin!(outbox.room());
        assert!(
            idle.as_mut().poll(&mut context).is_ready(),
            "nothing queued: nothing to wait for"
        );
    }
}
