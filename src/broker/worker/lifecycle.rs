//! A session's life on its worker: opening, closing, deferred closes and the tick.
//!
//! Responsibility: [`Worker::open_session`] registers an admitted client (welcome, implicit
//! subscriptions, presence); [`Worker::close`] undoes all of it once, with a typed reason,
//! and queues the close frame; closes found while a table was borrowed wait in
//! `pending_closes` until `run_pending_closes`. The tick pings, closes silent connections
//! and gives drained queues' buffers back.

use super::{Worker, GRANTS_CACHE_ENTRIES, INBOUND_TOPIC};
use crate::auth::{Claims, PermissionSet};
use crate::broker::apps::{Admission, App, AppCounters};
use crate::broker::mesh::Frame;
use crate::broker::outbound::{OutboundQueue, QueuedFrame};
use crate::broker::session::{compose_connection_id, format_connection_id, Grants, Session};
use crate::error::CloseKind;
use crate::metrics::WorkerMetrics;
use crate::protocol::deflate::Negotiated;
use crate::protocol::envelope;
use crate::protocol::frame::FrameReader;
use rand::Rng;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

impl Worker {
    /// A fresh id, unique among this worker's connections. In cluster mode it carries
    /// this node's number (`server.cluster.nodeNumber`), so it is unique cluster-wide and
    /// any node routes `priv/<id>` and admin calls to the node holding it by the id alone.
    fn new_connection_id(&self) -> u64 {
        let sessions = self.sessions.borrow();
        let mut rng = rand::thread_rng();
        loop {
            let node = match self.outbox.bus() {
                Some(bus) => bus.node(),
                None => rng.gen(),
            };
            let id = compose_connection_id(node, rng.gen(), self.index);
            if !sessions.contains_key(&id) {
                return id;
            }
        }
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

    /// Opens a session for an authenticated, admitted client (`admission` is what
    /// [`App::admit`] counted for it): registers it, subscribes it to `main`, `priv/<id>`,
    /// `priv/<subject>`, queues the welcome, emits presence.
    pub fn open_session(
        &self,
        app: &Arc<App>,
        claims: Claims,
        remote_address: &str,
        deflate: Option<Negotiated>,
        admission: Admission,
    ) -> Rc<Session> {
        let id = self.new_connection_id();
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
            outbound: RefCell::new(OutboundQueue::new()),
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

    pub(super) fn run_pending_closes(&self) {
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
        let topics: Vec<Arc<str>> = session.subscriptions.borrow().clone();
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
        }
        if kind == CloseKind::SlowConsumer {
            // Drop what it has not started to read; keep a partly written frame whole.
            let discarded = session.outbound.borrow_mut().drop_unstarted() as u64;
            WorkerMetrics::add(&self.metrics().frames_dropped, discarded);
        }
        if kind.sends_close_frame() {
            // A client's close is answered with its own status code (RFC 6455 §5.5.1).
            let code = match (kind, session.peer_close_code.get()) {
                (CloseKind::ClientClosed, code) if code != 0 => code,
                _ => kind.code(),
            };
            let frame = envelope::close_frame(code, kind.reason());
            session.outbound.borrow_mut().push(frame.into());
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

    /// Advances the clock one second; every ping interval, pings every session and closes
    /// those silent for two intervals (4001).
    pub fn on_tick(&self, ping_interval_seconds: u64) {
        let now = self.tick.get() + 1;
        self.tick.set(now);
        self.release_drained_queues();
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
                outbound.release_if_drained();
            }
        }
    }
}
