//! The one fan-out path, and how frames reach a session's queue.
//!
//! Responsibility: [`Worker::publish`] serves WebSocket, HTTP, presence and mesh
//! publications: local subscribers get the same frame by reference (a large fan-out's
//! frame is also put in the frame store once), other workers and the bus get it once each.
//! [`Worker::enqueue`] queues within `maxPendingBytes` (over it: a deferred slow-consumer
//! close), lists the session as dirty once per batch, and makes the flush urgent past half
//! the limit. It must not write: the runtime drains [`Worker::take_dirty`].

use super::Worker;
use crate::broker::apps::{App, AppCounters};
use crate::broker::bus_link::BusCommand;
use crate::broker::frame_store::{NotStored, ZERO_COPY_MIN_SUBSCRIBERS};
use crate::broker::interest::{worker_bit, workers_in, LOCAL_WORKERS};
use crate::broker::mesh::{Frame, MeshMessage};
use crate::broker::session::{node_of, private_connection_id, worker_of, QueuedFrame, Session};
use crate::error::CloseKind;
use crate::metrics::WorkerMetrics;
use crate::protocol::envelope;
use bytes::Bytes;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

impl Worker {
    /// A publication frame, with its deflated twin when it was published with `compress`
    /// (binary): compressed once here, shared by every deflate subscriber on every worker.
    pub(super) fn publication(&self, plain: Bytes, compress: bool) -> Frame {
        let deflated = if compress {
            self.deflater.borrow_mut().deflate_frame(&plain)
        } else {
            None
        };
        Frame { plain, deflated }
    }

    /// Fans `frame` out to `topic`'s subscribers on this worker and hands it once to each
    /// other worker that has subscribers, and once to the bus when another node has.
    pub fn publish(&self, app: &App, topic: &str, frame: Frame) {
        #[cfg(feature = "fault-injection")]
        if topic == crate::broker::FAULT_PANIC_TOPIC {
            panic!("fault injection: a publication to {topic} panics its worker");
        }
        self.deliver_local(app.index, topic, &frame);
        let mut targets = app.interest.workers(topic);
        let bus = self.outbox.bus();
        if let Some(id) = private_connection_id(topic) {
            // `priv/<id>` is routed by the id: to its worker when the connection is on this
            // node (in cluster mode the id names the node); an id naming no worker of this
            // node (low byte ≥ 63 or beyond `workers`) is delivered to no one here.
            if bus.is_none_or(|bus| node_of(id) == bus.node()) {
                targets |= worker_bit(worker_of(id));
            }
        }
        if let Some(bus) = bus {
            // Cluster mode: once to NATS, which hands it to the nodes subscribed to its
            // subject (the id's node for `priv/<id>`, the topic's bucket otherwise).
            bus.send(BusCommand::Publish {
                app: app.index,
                topic: topic.into(),
                frame: frame.clone(),
            });
        }
        let others = targets & LOCAL_WORKERS & !worker_bit(self.index);
        if others != 0 {
            let topic: Arc<str> = topic.into();
            for to in workers_in(others) {
                if to < self.outbox.workers() {
                    self.outbox.push(
                        to,
                        MeshMessage::Publish {
                            app: app.index,
                            topic: topic.clone(),
                            frame: frame.clone(),
                        },
                    );
                }
            }
        }
    }

    pub(super) fn deliver_local(&self, app: usize, topic: &str, frame: &Frame) {
        if let Some(id) = private_connection_id(topic) {
            let owner = self.sessions.borrow().get(&id).cloned();
            if let Some(session) = owner {
                if session.app().index == app && !session.own_topic_muted.get() {
                    self.enqueue(&session, frame.for_session(session.deflate).clone().into());
                    WorkerMetrics::add(&self.metrics().deliveries, 1);
                    self.app_counters(app, |c| AppCounters::add(&c.deliveries, 1));
                }
            }
        }
        let tables = self.tables.borrow();
        // A slot this worker does not know yet (an app added by a reload still on its way
        // here) has no local subscribers.
        let Some(table) = tables.get(app) else {
            return;
        };
        let subscribers = table.subscribers(topic);
        if subscribers.is_empty() {
            return;
        }
        // One counted reference per form for this worker; subscribers share it. A large
        // fan-out also puts the plain form in the frame store, for runs sent without
        // copying. Only the plain form: writing the deflated one too would interleave the
        // two in the file and break every subscriber's run of consecutive frames.
        let span = self
            .frame_store
            .borrow()
            .as_ref()
            .filter(|_| subscribers.len() >= ZERO_COPY_MIN_SUBSCRIBERS)
            .and_then(|store| match store.store(&frame.plain) {
                Ok(span) => Some(span),
                Err(NotStored::Full) => {
                    WorkerMetrics::add(&self.metrics().frame_file_full, 1);
                    None
                }
                Err(_) => None,
            });
        let plain = QueuedFrame::new(frame.plain.clone(), span);
        let deflated = frame.deflated.clone().map(QueuedFrame::from);
        for (_, session) in subscribers {
            let form = match (&deflated, session.deflate) {
                (Some(deflated), true) => deflated,
                _ => &plain,
            };
            self.enqueue(session, form.clone());
        }
        let delivered = subscribers.len() as u64;
        WorkerMetrics::add(&self.metrics().deliveries, delivered);
        if delivered > 0 {
            self.app_counters(app, |c| AppCounters::add(&c.deliveries, delivered));
        }
    }

    /// Publishes a message posted to the HTTP API (PROTOCOL.md §5.3).
    pub fn publish_http(
        &self,
        app: &App,
        topic: &str,
        message_type: &str,
        message: &[u8],
        compress: bool,
    ) {
        let plain = envelope::http_publication_frame(topic, message_type, message, compress);
        let frame = self.publication(plain, compress);
        self.publish(app, topic, frame);
        self.run_pending_closes();
    }

    /// Queues `frame` for `session`, closing it with 4008 when over its pending limit.
    pub fn enqueue(&self, session: &Rc<Session>, frame: QueuedFrame) {
        if session.closing.get().is_some() {
            WorkerMetrics::add(&self.metrics().frames_dropped, 1);
            return;
        }
        let max_pending_bytes = session.app().limits.max_pending_bytes;
        let pushed = session
            .outbound
            .borrow_mut()
            .push_within(frame, max_pending_bytes);
        let Ok(pending) = pushed else {
            WorkerMetrics::add(&self.metrics().frames_dropped, 1);
            self.pending_closes
                .borrow_mut()
                .push((session.clone(), CloseKind::SlowConsumer));
            return;
        };
        self.mark_dirty(session);
        // Coalescing holds writes back for a moment; it must never be what pushes a
        // subscriber over its limit. Past half of it, the next write starts at once.
        if pending as u64 > max_pending_bytes / 2 && !self.flush_urgent.replace(true) {
            if let Some(waker) = self.flush_waker.borrow_mut().take() {
                waker.wake();
            }
        }
    }

    /// Whether some subscriber's queue is past half its `maxPendingBytes` and not yet
    /// written: readers then flush at once instead of reading on.
    pub fn flush_is_urgent(&self) -> bool {
        self.flush_urgent.get()
    }

    /// A flush cycle starts: whatever made the flush urgent is being written now.
    pub fn clear_flush_urgency(&self) {
        self.flush_urgent.set(false);
    }

    /// Whether a flush turned urgent since the last call (clears it); otherwise registers
    /// `waker` to be woken when one does. The runtime's flusher polls this while it holds a
    /// cycle back.
    pub fn take_flush_urgency(&self, waker: &std::task::Waker) -> bool {
        if self.flush_urgent.replace(false) {
            return true;
        }
        *self.flush_waker.borrow_mut() = Some(waker.clone());
        false
    }

    /// Lists `session` for the next flush (once per batch).
    pub fn mark_dirty(&self, session: &Rc<Session>) {
        if !session.dirty.replace(true) {
            self.dirty.borrow_mut().push(session.clone());
        }
    }

    /// Sessions with frames to write, in the order they became dirty. Their `dirty` flags
    /// stay set until the runtime writes them, so frames queued before that join the same
    /// write instead of listing the session twice.
    pub fn take_dirty(&self, into: &mut VecDeque<Rc<Session>>) {
        into.extend(self.dirty.borrow_mut().drain(..));
    }
}
