//! The per-worker broker core: sessions, local topic tables, fan-out, mesh handling.
//!
//! Responsibility: take events — a decoded client message, a mesh message, a tick, an
//! admin request — and turn them into frames queued on sessions, messages queued for other
//! workers, and typed closes. It must not do I/O: the runtime reads sockets, calls in here,
//! then flushes [`Worker::take_dirty`] sessions and the [`Outbox`].
//!
//! Invariants:
//! - One `Worker` per thread; all state is `!Send` (`Rc`, `RefCell`) and lock-free, except
//!   the app's shared interest map and connection counters touched on (un)subscribe/connect.
//! - [`Worker::publish`] is the one fan-out path for WebSocket, HTTP, presence and mesh
//!   publications: a frame is serialized once and shared by reference.
//! - No `RefCell` borrow is held across a call that can close a session: closes found while
//!   iterating subscribers are deferred to `pending_closes`.

use super::apps::{App, AppCounters, Registry};
use super::frame_file::{FrameFile, NotStored, ZERO_COPY_MIN_SUBSCRIBERS};
use super::interest::{worker_bit, workers_in, BUS_BIT, LOCAL_WORKERS};
use super::mesh::{BusCommand, Frame, MeshMessage, Outbox};
use super::session::{
    format_connection_id, private_connection_id, worker_of, Grants, QueuedFrame, Session,
};
use crate::auth::{Claims, PermissionSet};
use crate::error::CloseKind;
use crate::metrics::WorkerMetrics;
use crate::protocol::command::{parse_command, Command, CommandError, Publication};
use crate::protocol::deflate::{Deflater, InflateError, Inflater, Negotiated};
use crate::protocol::envelope;
use crate::protocol::frame::{encode_frame, FrameReader, Incoming, OpCode};
use crate::topic::pattern::Pattern;
use crate::topic::table::TopicTable;
use bytes::Bytes;
use rand::Rng;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

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
    /// Requests to the control thread (configuration reload); unset in unit tests.
    control: std::cell::OnceCell<crossbeam_channel::Sender<crate::control::ControlRequest>>,
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
    /// Where frames of large fan-outs are kept for zero-copy sends (`None`: disabled).
    frame_file: RefCell<Option<FrameFile>>,
}

/// Whether an admin call found its connection: known at once when it lives on this
/// worker, or answered later by the owning worker.
pub enum Found {
    Yes,
    No,
    Later(super::answer::Answer<bool>),
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
            control: std::cell::OnceCell::new(),
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
            frame_file: RefCell::new(None),
        }
    }

    /// Gives this worker a frame file: frames of large fan-outs are written to it once and
    /// sent from it without copying (see [`FrameFile`]).
    pub fn set_frame_file(&self, file: Option<FrameFile>) {
        *self.frame_file.borrow_mut() = file;
    }

    /// The current configuration generation.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.borrow().clone()
    }

    /// Connects this worker to the control thread (see [`crate::control`]).
    pub fn set_control(&self, sender: crossbeam_channel::Sender<crate::control::ControlRequest>) {
        let _ = self.control.set(sender);
    }

    /// The control thread's request channel, when running under [`crate::runtime::start`].
    pub fn control(&self) -> Option<&crossbeam_channel::Sender<crate::control::ControlRequest>> {
        self.control.get()
    }

    /// Switches to the configuration generation `next` (sent by the control thread to every
    /// worker): sessions of kept apps continue under the new settings (keys, limits, flags);
    /// sessions of removed apps are closed with 4000.
    pub fn reload(&self, next: Arc<Registry>) {
        {
            let mut tables = self.tables.borrow_mut();
            while tables.len() < next.slot_count() {
                tables.push(TopicTable::default());
            }
        }
        let mut removed = Vec::new();
        for session in self.sessions() {
            let current = session.app().id.clone();
            match next.get(&current) {
                Some(app) => *session.app.borrow_mut() = app.clone(),
                None => removed.push(session),
            }
        }
        *self.registry.borrow_mut() = next;
        for session in &removed {
            self.close(session, CloseKind::AppRemoved);
        }
        self.run_pending_closes();
    }

    fn app_counters(&self, slot: usize, count: impl FnOnce(&super::apps::AppCounters)) {
        if let Some(app) = self.registry.borrow().at_slot(slot) {
            if let Some(counters) = app.counters.get(self.index) {
                count(counters);
            }
        }
    }

    /// A publication frame, with its deflated twin when it was published with `compress`
    /// (binary): compressed once here, shared by every deflate subscriber on every worker.
    fn publication(&self, plain: Bytes, compress: bool) -> Frame {
        let deflated = if compress {
            self.deflater.borrow_mut().deflate_frame(&plain)
        } else {
            None
        };
        Frame { plain, deflated }
    }

    /// The compiled form of a token's permission list, shared when seen before.
    fn grants_for(&self, permissions: &[String]) -> Rc<Grants> {
        if let Some(grants) = self.grants.borrow().get(permissions) {
            return grants.clone();
        }
        let grants = Rc::new(Grants {
            permissions: PermissionSet::compile(permissions),
            permissions_json: envelope::permissions_json(permissions),
        });
        let mut cache = self.grants.borrow_mut();
        if cache.len() < GRANTS_CACHE_ENTRIES {
            cache.insert(permissions.into(), grants.clone());
        }
        grants
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

    /// A fresh id: unique on this worker and, in cluster mode, not held on any node this
    /// one knows of (every connection has a `priv/<id>` interest entry there).
    fn new_connection_id(&self, app: &App) -> u64 {
        let sessions = self.sessions.borrow();
        let clustered = self.outbox.bus().is_some();
        let mut rng = rand::thread_rng();
        loop {
            let random: u64 = rng.gen::<u64>() & 0xff_ffff_ffff;
            let id = (random << 8) | self.index as u64;
            if sessions.contains_key(&id) {
                continue;
            }
            if clustered && app.interest.workers(&private_topic(id)) != 0 {
                continue;
            }
            return id;
        }
    }

    /// Records that this worker has subscribers of `topic`; tells the bus when the node
    /// as a whole gained interest.
    fn interest_add(&self, app: &App, topic: &str) {
        if app.interest.add(topic, self.index) {
            self.interest_changed(app, topic);
        }
    }

    /// Records that this worker has no subscribers of `topic` left; tells the bus when
    /// the node as a whole lost interest.
    fn interest_remove(&self, app: &App, topic: &str) {
        if app.interest.remove(topic, self.index) {
            self.interest_changed(app, topic);
        }
    }

    fn interest_changed(&self, app: &App, topic: &str) {
        if let Some(bus) = self.outbox.bus() {
            bus.send(BusCommand::InterestChanged {
                app: app.index,
                topic: topic.into(),
            });
        }
    }

    /// Opens a session for an authenticated, admitted client (`admission` is what
    /// [`App::admit`] counted for it): registers it, subscribes it to `main`, `priv/<id>`,
    /// `priv/<subject>`, queues the welcome, emits presence.
    pub fn open_session(
        &self,
        app: &Arc<App>,
        claims: Claims,
        remote_address: &str,
        deflate: Option<Negotiated>,
        admission: super::apps::Admission,
    ) -> Rc<Session> {
        let id = self.new_connection_id(app);
        let id_text = format_connection_id(id);
        let subject = claims.subject.unwrap_or_else(|| id_text.clone());
        let session = Rc::new(Session {
            id,
            app: RefCell::new(app.clone()),
            subject: subject.into(),
            admission,
            grants: self.grants_for(&claims.permissions),
            deflate: deflate.is_some_and(|negotiated| negotiated.sends_compressed()),
            subscriptions: RefCell::new(Vec::new()),
            own_topic_muted: Cell::new(false),
            outbound: RefCell::new(VecDeque::new()),
            written_of_front: Cell::new(0),
            pending_bytes: Cell::new(0),
            dirty: Cell::new(false),
            closing: Cell::new(None),
            peer_close_code: Cell::new(0),
            closing_since_tick: Cell::new(0),
            writer_parked: Cell::new(false),
            frames: RefCell::new(FrameReader::new()),
            partial: RefCell::new(Vec::new()),
            last_seen_tick: Cell::new(self.tick.get()),
            rate_millitokens: Cell::new(app.limits.max_messages_per_second.saturating_mul(1000)),
            rate_refilled_ms: Cell::new(self.now_ms.get()),
            slot: Cell::new(usize::MAX),
        });
        if deflate.is_some() {
            session.frames.borrow_mut().enable_deflate();
        }
        self.sessions.borrow_mut().insert(id, session.clone());
        if self.outbox.bus().is_some() {
            // Cluster mode: other nodes find the node holding this id through interest.
            self.interest_add(app, &private_topic(id));
        }
        WorkerMetrics::add(&self.metrics().connections_open, 1);
        WorkerMetrics::add(&self.metrics().handshakes_accepted, 1);
        if let Some(counters) = app.counters.get(self.index) {
            AppCounters::add(&counters.connections, 1);
        }
        // Echo mode (conformance runs) sends nothing unsolicited: a conformance client
        // expects exactly the frames it provoked.
        if !app.echo {
            self.enqueue(
                &session,
                envelope::welcome_frame(&id_text, &app.id, remote_address).into(),
            );
        }
        // `priv/<id>` needs no entry: it is routed by id (see `deliver_local`).
        self.add_subscription(&session, "main");
        let own_subject = format!("priv/{}", session.subject);
        self.add_subscription(&session, &own_subject);
        if app.inbound_enabled {
            let frame =
                self.client_frame(&session, |client| envelope::presence_frame(client, true));
            self.publish(app, INBOUND_TOPIC, Frame::plain(frame));
        }
        self.run_pending_closes();
        session
    }

    /// Handles one complete inbound WebSocket message.
    pub fn on_message(&self, session: &Rc<Session>, message: Incoming<'_>) -> Verdict {
        if session.closing.get().is_some() {
            return Verdict::Closing;
        }
        match message {
            Incoming::Text(bytes) => self.on_data(session, true, bytes),
            Incoming::Binary(bytes) => self.on_data(session, false, bytes),
            Incoming::Compressed { text, data } => {
                let max = session.app().limits.max_message_bytes as usize;
                let mut inflater = self.inflater.borrow_mut();
                match inflater.inflate(data, max) {
                    Err(InflateError::TooBig) => self.close(session, CloseKind::MessageTooBig),
                    Err(InflateError::Corrupt) => self.close(session, CloseKind::ProtocolError),
                    Ok(bytes) if text && std::str::from_utf8(bytes).is_err() => {
                        self.close(session, CloseKind::InvalidUtf8)
                    }
                    // Nothing below touches the inflater, whose buffer `bytes` borrows.
                    Ok(bytes) => self.on_data(session, text, bytes),
                }
            }
            Incoming::Ping(payload) => self.enqueue(session, envelope::pong_frame(payload).into()),
            Incoming::Pong => {}
            Incoming::Close { code, .. } => {
                session.peer_close_code.set(code.unwrap_or(0));
                self.close(session, CloseKind::ClientClosed);
            }
        }
        self.run_pending_closes();
        if session.closing.get().is_some() {
            Verdict::Closing
        } else {
            Verdict::Continue
        }
    }

    /// One complete data message (inflated if it was compressed): a command — or, in the
    /// test-only echo mode, a message sent straight back.
    fn on_data(&self, session: &Rc<Session>, text: bool, bytes: &[u8]) {
        if session.app().echo {
            let opcode = if text { OpCode::Text } else { OpCode::Binary };
            let mut frame = Vec::with_capacity(bytes.len() + 10);
            encode_frame(opcode, bytes, &mut frame);
            self.enqueue(session, Bytes::from(frame).into());
            return;
        }
        WorkerMetrics::add(&self.metrics().messages_in, 1);
        let slot = session.app().index;
        self.app_counters(slot, |c| AppCounters::add(&c.messages_in, 1));
        if !self.within_rate(session) {
            self.close(session, CloseKind::RateLimited);
            return;
        }
        match parse_command(bytes) {
            Ok(command) => self.on_command(session, command),
            Err(error) => self.close(session, command_error_kind(&error)),
        }
    }

    fn within_rate(&self, session: &Session) -> bool {
        let max = session.app().limits.max_messages_per_second;
        if max == 0 {
            return true;
        }
        // Token bucket: capacity and refill are both `max` per second (one burst of `max`,
        // then `max` per second sustained), counted in thousandths of a message.
        let capacity = max.saturating_mul(1000);
        let now = self.now_ms.get();
        let elapsed = now.saturating_sub(session.rate_refilled_ms.get());
        session.rate_refilled_ms.set(now);
        let tokens = session
            .rate_millitokens
            .get()
            .saturating_add(elapsed.saturating_mul(max))
            .min(capacity);
        if tokens < 1000 {
            session.rate_millitokens.set(tokens);
            return false;
        }
        session.rate_millitokens.set(tokens - 1000);
        true
    }

    fn on_command(&self, session: &Rc<Session>, command: Command<'_>) {
        match command {
            Command::Subscribe { topic } => self.subscribe(session, &topic),
            Command::Unsubscribe { topic } => self.remove_subscription(session, &topic),
            Command::Publish(publication) => {
                let Some(topic) = publication.topic.as_deref() else {
                    self.close(session, CloseKind::InvalidTopic);
                    return;
                };
                if !session.permissions().can_publish(topic) {
                    self.close(session, CloseKind::PublishForbidden);
                    return;
                }
                self.publish_from_client(session, topic, &publication);
            }
            Command::Message(publication) => {
                if session.app().inbound_enabled {
                    self.publish_from_client(session, INBOUND_TOPIC, &publication);
                }
            }
        }
    }

    fn publish_from_client(
        &self,
        session: &Rc<Session>,
        topic: &str,
        publication: &Publication<'_>,
    ) {
        let generated;
        let id: &[u8] = match publication.id {
            Some(id) => id,
            None => {
                generated = format!("\"{}\"", envelope::generate_message_id());
                generated.as_bytes()
            }
        };
        let plain = self.client_frame(session, |client| {
            envelope::publication_frame(
                topic,
                &publication.message_type,
                client,
                publication.payload,
                id,
                publication.compress,
            )
        });
        let frame = self.publication(plain, publication.compress);
        self.publish(&session.app(), topic, frame);
        if session.app().ack_enabled {
            self.enqueue(session, envelope::ack_frame(id).into());
        }
    }

    /// Subscribes with the `secure/` and `priv/` rules and the subscription limit.
    pub fn subscribe(&self, session: &Rc<Session>, topic: &str) {
        if session.is_subscribed(topic) {
            return;
        }
        if topic.starts_with("secure/") && !session.permissions().can_subscribe(topic) {
            self.close(session, CloseKind::SecureSubscribeForbidden);
            return;
        }
        if topic.starts_with("priv/")
            && !session.owns_private_topic(topic)
            && !session.permissions().can_subscribe(topic)
        {
            self.close(session, CloseKind::PrivateSubscribeForbidden);
            return;
        }
        let max = session.app().limits.max_subscriptions_per_connection;
        if max != 0 && session.subscription_count() as u64 >= max {
            self.close(session, CloseKind::TooManySubscriptions);
            return;
        }
        self.add_subscription(session, topic);
    }

    fn add_subscription(&self, session: &Rc<Session>, topic: &str) {
        if session.is_own_topic(topic) {
            session.own_topic_muted.set(false);
            return;
        }
        if session.is_subscribed(topic) {
            return;
        }
        session.subscriptions.borrow_mut().push(topic.into());
        let first = self.tables.borrow_mut()[session.app().index].subscribe(
            topic,
            session.id,
            session.clone(),
        );
        if first {
            self.interest_add(&session.app(), topic);
        }
    }

    /// Removes one subscription; a no-op when not subscribed.
    pub fn remove_subscription(&self, session: &Session, topic: &str) {
        if session.is_own_topic(topic) {
            session.own_topic_muted.set(true);
            return;
        }
        let mut subscriptions = session.subscriptions.borrow_mut();
        let Some(position) = subscriptions.iter().position(|t| &**t == topic) else {
            return;
        };
        subscriptions.swap_remove(position);
        drop(subscriptions);
        let last = self.tables.borrow_mut()[session.app().index].unsubscribe(topic, session.id);
        if last {
            self.interest_remove(&session.app(), topic);
        }
    }

    /// Fans `frame` out to `topic`'s subscribers on this worker and hands it once to each
    /// other worker that has subscribers, and once to the bus when another node has.
    pub fn publish(&self, app: &App, topic: &str, frame: Frame) {
        #[cfg(feature = "fault-injection")]
        if topic == super::FAULT_PANIC_TOPIC {
            panic!("fault injection: a publication to {topic} panics its worker");
        }
        self.deliver_local(app.index, topic, &frame);
        let mut targets = app.interest.workers(topic);
        match self.outbox.bus() {
            // Cluster mode: `priv/<id>` has an interest entry on the node holding `id`.
            Some(bus) => {
                if targets & BUS_BIT != 0 {
                    bus.send(BusCommand::Publish {
                        app: app.index,
                        topic: topic.into(),
                        frame: frame.clone(),
                    });
                }
            }
            None => {
                if let Some(id) = private_connection_id(topic) {
                    // An id naming no worker of this node (low byte ≥ 63 or a worker index
                    // beyond `workers`) is delivered to no one.
                    targets |= worker_bit(worker_of(id));
                }
            }
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

    fn deliver_local(&self, app: usize, topic: &str, frame: &Frame) {
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
        // fan-out also puts the plain form in the frame file, for runs sent without
        // copying. Only the plain form: writing the deflated one too would interleave the
        // two in the file and break every subscriber's run of consecutive frames.
        let span = self
            .frame_file
            .borrow()
            .as_ref()
            .filter(|_| subscribers.len() >= ZERO_COPY_MIN_SUBSCRIBERS)
            .and_then(|file| match file.append(&frame.plain) {
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
        let pending = session.pending_bytes.get() + frame.len();
        if pending as u64 > session.app().limits.max_pending_bytes {
            WorkerMetrics::add(&self.metrics().frames_dropped, 1);
            self.pending_closes
                .borrow_mut()
                .push((session.clone(), CloseKind::SlowConsumer));
            return;
        }
        session.pending_bytes.set(pending);
        session.outbound.borrow_mut().push_back(frame);
        self.mark_dirty(session);
        // Coalescing holds writes back for a moment; it must never be what pushes a
        // subscriber over its limit. Past half of it, the next write starts at once.
        if pending as u64 > session.app().limits.max_pending_bytes / 2
            && !self.flush_urgent.replace(true)
        {
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

    fn run_pending_closes(&self) {
        loop {
            let next = self.pending_closes.borrow_mut().pop();
            match next {
                Some((session, kind)) => self.close(&session, kind),
                None => return,
            }
        }
    }

    /// Closes `session` with `kind`: unsubscribes everything, releases its limits, emits
    /// presence, and queues the close frame (the runtime ends the socket once written).
    pub fn close(&self, session: &Rc<Session>, kind: CloseKind) {
        if session.closing.get().is_some() {
            return;
        }
        session.closing.set(Some(kind));
        session.closing_since_tick.set(self.tick.get());
        self.metrics().closed(kind);
        let topics: Vec<Box<str>> = session.subscriptions.borrow().clone();
        for topic in topics {
            self.remove_subscription(session, &topic);
        }
        if self.sessions.borrow_mut().remove(&session.id).is_some() {
            WorkerMetrics::add(&self.metrics().connections_open, u64::MAX);
            let app = session.app();
            app.release(&session.subject, session.admission);
            if let Some(counters) = app.counters.get(self.index) {
                AppCounters::add(&counters.connections, u64::MAX);
            }
            if self.outbox.bus().is_some() {
                self.interest_remove(&app, &private_topic(session.id));
            }
        }
        if kind == CloseKind::SlowConsumer {
            // Drop what it has not started to read; keep a partly written frame whole.
            let mut outbound = session.outbound.borrow_mut();
            let keep = usize::from(session.written_of_front.get() > 0);
            let discarded = outbound.len().saturating_sub(keep) as u64;
            WorkerMetrics::add(&self.metrics().frames_dropped, discarded);
            outbound.truncate(keep);
            let pending = outbound
                .front()
                .map(|f| f.len() - session.written_of_front.get())
                .unwrap_or(0);
            session.pending_bytes.set(pending);
        }
        if kind.sends_close_frame() {
            // A client's close is answered with its own status code (RFC 6455 §5.5.1).
            let code = match (kind, session.peer_close_code.get()) {
                (CloseKind::ClientClosed, code) if code != 0 => code,
                _ => kind.code(),
            };
            let frame = envelope::close_frame(code, kind.reason());
            session
                .pending_bytes
                .set(session.pending_bytes.get() + frame.len());
            session.outbound.borrow_mut().push_back(frame.into());
        }
        self.mark_dirty(session);
        if session.app().inbound_enabled {
            let app = session.app().clone();
            let frame =
                self.client_frame(session, |client| envelope::presence_frame(client, false));
            self.publish(&app, INBOUND_TOPIC, Frame::plain(frame));
        }
        // One line per close, with its typed reason (no token, no subject: only ids).
        tracing::info!(
            connection = %session.id_text(),
            app = %session.app().id,
            reason = kind.label(),
            code = kind.code(),
            "connection closed"
        );
    }

    /// Handles a message from another worker.
    pub fn on_mesh(&self, message: MeshMessage) -> bool {
        WorkerMetrics::add(&self.metrics().mesh_messages_in, 1);
        match message {
            MeshMessage::Publish { app, topic, frame } => self.deliver_local(app, &topic, &frame),
            MeshMessage::Terminate {
                app,
                connection,
                reply,
            } => {
                let found = self.terminate_local(app, connection);
                if let Some(reply) = reply {
                    // The asker may have given up waiting; nothing to do then.
                    reply.send(found);
                }
            }
            MeshMessage::Unsubscribe {
                app,
                subject,
                patterns,
            } => self.unsubscribe_subject_local(app, &subject, &patterns),
            MeshMessage::Reload { next, applied } => {
                self.reload(next);
                let _ = applied.try_send(());
            }
            // The runtime closes sessions in batches (see `close_batch`).
            MeshMessage::Shutdown => return false,
        }
        self.run_pending_closes();
        true
    }

    /// Closes every session with `kind`.
    pub fn close_all(&self, kind: CloseKind) {
        for session in self.sessions() {
            self.close(&session, kind);
        }
        self.run_pending_closes();
    }

    /// Closes at most `count` sessions with `kind`; returns how many remain open.
    pub fn close_batch(&self, kind: CloseKind, count: usize) -> usize {
        let batch: Vec<Rc<Session>> = self
            .sessions
            .borrow()
            .values()
            .take(count)
            .cloned()
            .collect();
        for session in batch {
            self.close(&session, kind);
        }
        self.run_pending_closes();
        self.session_count()
    }

    /// Admin: close every connection of an app, on every worker, with 4000.
    pub fn terminate_app(&self, app: usize) {
        self.terminate_local(app, None);
        self.broadcast(|| MeshMessage::Terminate {
            app,
            connection: None,
            reply: None,
        });
        if let Some(bus) = self.outbox.bus() {
            bus.send(BusCommand::TerminateApp { app });
        }
    }

    /// Admin: close one connection, wherever it lives (any node), with 4000.
    pub fn terminate_connection(&self, app: usize, id: u64) -> Found {
        let owner = worker_of(id);
        if let Some(bus) = self.outbox.bus() {
            // The owner's bit is set when the connection is on this node (another local
            // bit can only be an explicit subscriber of its private topic).
            let holders = match self.registry().at_slot(app) {
                Some(app) => app.interest.workers(&private_topic(id)),
                None => 0,
            };
            // (`checked_shl`: an id from an admin call may carry any low byte.)
            if holders & 1u64.checked_shl(owner as u32).unwrap_or(0) == 0 {
                if holders & BUS_BIT == 0 {
                    return Found::No;
                }
                let (reply, answer) = super::answer::answer();
                bus.send(BusCommand::Terminate { app, id, reply });
                return Found::Later(answer);
            }
        }
        if owner == self.index {
            return if self.terminate_local(app, Some(id)) {
                Found::Yes
            } else {
                Found::No
            };
        }
        if owner >= self.outbox.workers() {
            return Found::No;
        }
        let (reply, answer) = super::answer::answer();
        self.outbox.push(
            owner,
            MeshMessage::Terminate {
                app,
                connection: Some(id),
                reply: Some(reply),
            },
        );
        Found::Later(answer)
    }

    /// Closes the matching sessions of this worker; whether any was found.
    fn terminate_local(&self, app: usize, connection: Option<u64>) -> bool {
        let targets: Vec<Rc<Session>> = match connection {
            Some(id) => self
                .sessions
                .borrow()
                .get(&id)
                .cloned()
                .into_iter()
                .collect(),
            None => self.sessions(),
        };
        let mut found = false;
        for session in targets.iter().filter(|s| s.app().index == app) {
            found = true;
            self.close(session, CloseKind::AdminTerminated);
        }
        self.run_pending_closes();
        found
    }

    /// Admin: remove the subscriptions matching `patterns` of every connection of `subject`.
    pub fn unsubscribe_subject(&self, app: usize, subject: &str, patterns: Arc<[Pattern]>) {
        self.unsubscribe_subject_local(app, subject, &patterns);
        let subject: Arc<str> = subject.into();
        self.broadcast(|| MeshMessage::Unsubscribe {
            app,
            subject: subject.clone(),
            patterns: patterns.clone(),
        });
        if let Some(bus) = self.outbox.bus() {
            bus.send(BusCommand::Unsubscribe {
                app,
                subject,
                patterns,
            });
        }
    }

    fn unsubscribe_subject_local(&self, app: usize, subject: &str, patterns: &[Pattern]) {
        for session in self.sessions() {
            if session.app().index != app || &*session.subject != subject {
                continue;
            }
            let own = format!("priv/{}", session.id_text());
            let mut topics: Vec<Box<str>> = session
                .subscriptions
                .borrow()
                .iter()
                .filter(|topic| patterns.iter().any(|p| p.matches(topic)))
                .cloned()
                .collect();
            if patterns.iter().any(|p| p.matches(&own)) {
                topics.push(own.into());
            }
            for topic in topics {
                self.remove_subscription(&session, &topic);
            }
        }
    }

    fn broadcast(&self, make: impl Fn() -> MeshMessage) {
        for to in 0..self.outbox.workers() {
            if to != self.index {
                self.outbox.push(to, make());
            }
        }
    }

    /// Advances the clock one second; every ping interval, pings every session and closes
    /// those silent for two intervals (4001).
    pub fn on_tick(&self, ping_interval_seconds: u64) {
        let now = self.tick.get() + 1;
        self.tick.set(now);
        self.release_drained_queues();
        if let Some(file) = self.frame_file.borrow().as_ref() {
            self.metrics()
                .frame_file_bytes
                .store(file.resident_bytes(), std::sync::atomic::Ordering::Relaxed);
        }
        if ping_interval_seconds == 0 || !now.is_multiple_of(ping_interval_seconds) {
            return;
        }
        let ping = QueuedFrame::from(envelope::ping_frame());
        for session in self.sessions() {
            if now.saturating_sub(session.last_seen_tick.get()) >= 2 * ping_interval_seconds {
                self.close(&session, CloseKind::LivenessTimeout);
            } else {
                self.enqueue(&session, ping.clone());
            }
        }
        self.run_pending_closes();
    }

    /// Frees the buffer of every outbound queue found empty: a drain keeps it (a busy
    /// subscriber reuses it batch after batch), an idle connection gives it back within a
    /// tick.
    fn release_drained_queues(&self) {
        for session in self.sessions.borrow().values() {
            if let Ok(mut outbound) = session.outbound.try_borrow_mut() {
                if outbound.is_empty() && outbound.capacity() > 0 {
                    *outbound = VecDeque::new();
                }
            }
        }
    }
}

/// `priv/<id>` of a numeric connection id.
fn private_topic(id: u64) -> String {
    format!("priv/{}", format_connection_id(id))
}

/// The close kind for a command that could not be parsed (typed: no reason-text matching).
fn command_error_kind(error: &CommandError) -> CloseKind {
    match error {
        CommandError::NotUtf8 | CommandError::InvalidJson => CloseKind::InvalidJson,
        CommandError::TopicNotString
        | CommandError::TopicEmpty
        | CommandError::TopicTooLong
        | CommandError::TopicControlCharacter => CloseKind::InvalidTopic,
        CommandError::NestingTooDeep => CloseKind::NestingTooDeep,
        CommandError::NotAnObject
        | CommandError::UnknownType
        | CommandError::DuplicateField
        | CommandError::MissingData
        | CommandError::DataNotObject
        | CommandError::MissingTopic
        | CommandError::InvalidMessageType
        | CommandError::InvalidCompress => CloseKind::MalformedCommand,
    }
}
