//! The worker mesh: bounded lock-free channels between workers, with batched wakes.
//!
//! Responsibility: the messages that cross threads ([`MeshMessage`], a publication's
//! [`Frame`]) and the channels that carry them: each worker owns one [`Mailbox`] (a
//! bounded crossbeam channel, many senders) and a [`MeshSender`] to every mailbox. A wake
//! costs ~25 µs on the reference VM, so senders queue into a worker-local
//! [`Outbox`](super::outbox::Outbox) during a batch and notify each destination once per
//! flush; the receiver drains everything queued per wake and wakes senders waiting for
//! room. Commands to the cluster bus thread travel the same channels
//! ([`BusCommand`](super::bus_link::BusCommand)).
//!
//! Must not: name `cluster` (the bus's wire format and bookkeeping import this module,
//! never the other way round) or block a worker.
//!
//! Invariants: FIFO per sender → receiver pair (crossbeam channels are FIFO per sender),
//! which keeps per-publisher order per topic; every channel holds at most
//! [`MAILBOX_CAPACITY`] messages (overflow is backpressure, never loss).

use crate::topic::pattern::Pattern;
use atomic_waker::AtomicWaker;
use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Messages a mailbox holds before senders keep theirs in their outbox. 16 Ki × ~64 bytes
/// ≈ 1 MiB per worker: many wakes' worth of batches at full fan-out rate.
pub const MAILBOX_CAPACITY: usize = 16 * 1024;
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
