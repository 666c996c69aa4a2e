//! A worker's outbox: mesh messages not yet handed to other workers' mailboxes.
//!
//! Responsibility: queue a batch's messages per destination and hand them over once per
//! flush, waking each destination once; hold back what a full mailbox refuses (waiting on
//! the receiver's drain, [`Outbox::room`]); pause this worker's readers while too much is
//! queued ([`Outbox::uncongested`]); carry the link to the cluster bus.
//!
//! Invariants: per destination, messages leave in the order queued; at most
//! [`OUTBOX_HIGH_WATER`] messages before producers pause (backpressure, never loss); a
//! destination whose mailbox is gone gets nothing more and is never waited on.

use super::bus_link::BusLink;
use super::interest::worker_bit;
use super::mesh::{MeshMessage, MeshSender};
use crate::metrics::BusMetrics;
use crossbeam_channel::TrySendError;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// Queued outbox messages (all destinations) above which a worker stops reading client
/// sockets until the outbox drains: publishers are slowed, nothing is dropped.
pub const OUTBOX_HIGH_WATER: usize = 64 * 1024;

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
    use crate::broker::mesh::{channel, Frame};
    use bytes::Bytes;
    use std::future::Future;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

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
