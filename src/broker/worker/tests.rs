//! In-process tests of the worker: the broker driven without sockets.
//!
//! A `Worker` is built as the runtime builds it (registry, outbox over a mesh, metrics),
//! sessions are opened through [`Worker::open_session`], and the runtime's writer is
//! played by calling [`OutboundQueue::advance`] on a session's queue.

use super::*;
use crate::auth::{Claims, ClientAddress};
use crate::broker::frame_store::{FileSpan, NotStored, SpanLedger, ZERO_COPY_MIN_SUBSCRIBERS};
use crate::broker::mesh::{mesh, Mailbox, MeshMessage};
use crate::broker::outbound::OutboundQueue;
use crate::broker::outbox::Outbox;
use crate::broker::session::format_connection_id;
use crate::config::Config;
use std::cell::Cell;
use std::sync::atomic::Ordering;

const KEY: &str = r#""authKey":{"source":"raw","key":"s","algorithms":["HS256"]}"#;

fn config(apps: &[(&str, u64)]) -> Config {
    let apps: Vec<String> = apps
        .iter()
        .map(|(id, max_pending)| {
            format!(r#"{{"appId":"{id}",{KEY},"maxPendingBytes":{max_pending}}}"#)
        })
        .collect();
    Config::from_json(&format!(r#"{{"apps":[{}]}}"#, apps.join(","))).unwrap()
}

/// Worker `index` of `workers`, and every worker's mailbox.
fn worker(index: usize, workers: usize, config: &Config) -> (Worker, Vec<Mailbox>) {
    let registry = Arc::new(Registry::compile_next(config, workers, None).unwrap());
    let (mailboxes, senders) = mesh(workers);
    let metrics: Arc<[WorkerMetrics]> = (0..workers).map(|_| WorkerMetrics::default()).collect();
    let worker = Worker::new(index, registry, Outbox::new(senders), metrics);
    (worker, mailboxes)
}

/// Opens a session of `app` for `subject` and writes its welcome away.
fn open(worker: &Worker, app: &str, subject: &str) -> Rc<Session> {
    let app = worker.registry().get(app).unwrap().clone();
    let admission = app.admit(subject, ClientAddress::Unknown).unwrap();
    let claims = Claims {
        subject: Some(subject.into()),
        permissions: Vec::new(),
    };
    let session = worker.open_session(&app, claims, "192.0.2.1", None, admission);
    write_all(&session);
    session
}

/// What the writer would send now, frame by frame.
fn unwritten(session: &Session) -> Vec<Vec<u8>> {
    session
        .outbound
        .borrow()
        .unwritten()
        .map(<[u8]>::to_vec)
        .collect()
}

/// Plays the writer: everything queued is written.
fn write_all(session: &Session) {
    let mut outbound = session.outbound.borrow_mut();
    let pending = outbound.pending_bytes();
    outbound.advance(pending);
}

fn publish(worker: &Worker, app: &str, topic: &str, message: &str) {
    let app = worker.registry().get(app).unwrap().clone();
    worker.publish_http(&app, topic, "text", message.as_bytes(), false);
}

fn contains(frame: &[u8], text: &str) -> bool {
    frame
        .windows(text.len())
        .any(|window| window == text.as_bytes())
}

/// The queue's invariant: pending bytes are exactly the bytes still to write.
fn assert_accounted(queue: &OutboundQueue) {
    let unwritten: usize = queue.unwritten().map(<[u8]>::len).sum();
    assert_eq!(queue.pending_bytes(), unwritten);
}

fn subscribers(worker: &Worker, app: &str, topic: &str) -> usize {
    let slot = worker.registry().get(app).unwrap().index;
    worker.tables.borrow()[slot].subscribers(topic).len()
}

const CLOSE_OPCODE: u8 = 0x88;

#[test]
fn a_slow_consumer_with_a_half_written_front_is_closed_with_its_front_kept_whole() {
    let (worker, _mailboxes) = worker(0, 1, &config(&[("a", 2000)]));
    let session = open(&worker, "a", "alice");
    publish(&worker, "a", "main", &"x".repeat(300));
    let first = unwritten(&session).remove(0);
    // The socket took part of the front frame, then stopped taking anything.
    session.outbound.borrow_mut().advance(100);
    let mut published = 1;
    while session.closing.get().is_none() {
        publish(&worker, "a", "main", &"y".repeat(300));
        published += 1;
        assert!(published < 20, "never closed");
    }
    assert_eq!(session.closing.get(), Some(CloseKind::SlowConsumer));
    let outbound = session.outbound.borrow();
    assert_eq!(
        outbound.len(),
        2,
        "the partly written frame, then the close frame"
    );
    assert_eq!(outbound.written_of_front(), 100);
    let frames = unwritten(&session);
    assert_eq!(frames[0], first[100..], "the front frame stays whole");
    assert_eq!(frames[1][0], CLOSE_OPCODE);
    assert_eq!(
        outbound.pending_bytes(),
        first.len() - 100 + frames[1].len()
    );
    assert_accounted(&outbound);
    drop(outbound);
    // Every frame queued after the first was dropped, and the one that overflowed too.
    let dropped = worker.metrics().frames_dropped.load(Ordering::Relaxed);
    assert_eq!(dropped, published - 1);
    assert_eq!(worker.session_count(), 0);
    assert_eq!(subscribers(&worker, "a", "main"), 0);
    // The writer finishes: the accounting ends at zero.
    write_all(&session);
    assert!(session.outbound.borrow().is_empty());
    assert_accounted(&session.outbound.borrow());
}

#[test]
fn a_subscriber_closed_during_a_fan_out_does_not_stop_delivery_to_the_others() {
    let (worker, _mailboxes) = worker(0, 1, &config(&[("a", 2000)]));
    let first = open(&worker, "a", "first");
    let slow = open(&worker, "a", "slow");
    let last = open(&worker, "a", "last");
    // The middle subscriber's queue is nearly full: the next frame overflows it.
    let own_topic = format!("priv/{}", slow.id_text());
    publish(&worker, "a", &own_topic, &"p".repeat(1200));
    assert!(slow.outbound.borrow().pending_bytes() > 1200);
    publish(&worker, "a", "main", &"m".repeat(700));
    assert_eq!(slow.closing.get(), Some(CloseKind::SlowConsumer));
    for session in [&first, &last] {
        assert_eq!(session.closing.get(), None);
        let frames = unwritten(session);
        assert_eq!(frames.len(), 1);
        assert!(contains(&frames[0], &"m".repeat(700)));
    }
    assert_eq!(subscribers(&worker, "a", "main"), 2);
    // The table is whole after the deferred close: the next fan-out reaches both.
    publish(&worker, "a", "main", "after");
    for session in [&first, &last] {
        assert!(contains(unwritten(session).last().unwrap(), "after"));
        assert_accounted(&session.outbound.borrow());
    }
    assert!(!unwritten(&slow)
        .iter()
        .any(|frame| contains(frame, "after")));
}

#[test]
fn a_reload_that_removes_an_app_closes_its_sessions_only() {
    let before = config(&[("a", 4096), ("b", 4096)]);
    let (worker, _mailboxes) = worker(0, 1, &before);
    let removed = open(&worker, "a", "alice");
    let kept = open(&worker, "b", "bob");
    let current = worker.registry();
    let next = Registry::compile_next(&config(&[("b", 8192)]), 1, Some(&*current)).unwrap();
    worker.reload(Arc::new(next));

    assert_eq!(removed.closing.get(), Some(CloseKind::AppRemoved));
    let frames = unwritten(&removed);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0][0], CLOSE_OPCODE);
    let code = u16::from_be_bytes([frames[0][2], frames[0][3]]);
    assert_eq!(code, CloseKind::AppRemoved.code());

    assert_eq!(kept.closing.get(), None);
    assert!(unwritten(&kept).is_empty());
    assert!(Arc::ptr_eq(
        &kept.app(),
        worker.registry().get("b").unwrap()
    ));
    assert_eq!(
        kept.app().limits.max_pending_bytes,
        8192,
        "new settings apply"
    );
    assert_eq!(worker.session_count(), 1);
    publish(&worker, "b", "main", "still here");
    assert!(contains(&unwritten(&kept)[0], "still here"));
}

#[test]
fn private_topics_are_routed_by_connection_id() {
    // Worker 0 of two.
    let (worker, mailboxes) = worker(0, 2, &config(&[("a", 4096)]));
    let session = open(&worker, "a", "alice");
    let own = format!("priv/{}", session.id_text());

    publish(&worker, "a", &own, "to me");
    assert!(contains(&unwritten(&session)[0], "to me"));
    assert_eq!(worker.outbox.queued(), 0, "delivered here, sent nowhere");
    write_all(&session);

    // An id of worker 1: handed to worker 1 once, not delivered here.
    let on_other = format!("priv/{}", format_connection_id((0xabcdef << 8) | 1));
    publish(&worker, "a", &on_other, "to worker 1");
    assert_eq!(worker.outbox.queued(), 1);
    worker.outbox.flush();
    let mut received = Vec::new();
    mailboxes[1].drain(16, &mut received);
    match received.as_slice() {
        [MeshMessage::Publish { topic, .. }] => assert_eq!(&**topic, on_other),
        _ => panic!("expected one publication for worker 1"),
    }
    assert!(unwritten(&session).is_empty());

    // An id naming no worker of this node: delivered to no one.
    let nowhere = format!("priv/{}", format_connection_id((0xabcdef << 8) | 5));
    publish(&worker, "a", &nowhere, "to no one");
    assert_eq!(worker.outbox.queued(), 0);
    assert!(unwritten(&session).is_empty());

    // Muted: the own topic is unsubscribed; subscribing again unmutes it.
    worker.remove_subscription(&session, &own);
    assert!(!session.is_subscribed(&own));
    publish(&worker, "a", &own, "muted");
    assert!(unwritten(&session).is_empty());
    worker.subscribe(&session, &own);
    publish(&worker, "a", &own, "unmuted");
    assert!(contains(&unwritten(&session)[0], "unmuted"));
    assert_eq!(worker.outbox.queued(), 0);
}

/// A frame store that keeps nothing but the ledger, counting what it was asked.
struct CountingStore {
    ledger: Rc<SpanLedger>,
    stored: Cell<usize>,
}

impl FrameStore for CountingStore {
    fn store(&self, frame: &Bytes) -> Result<FileSpan, NotStored> {
        let offset = self.stored.replace(self.stored.get() + 1) as u64 * 4096;
        Ok(self.ledger.issue(0, offset, frame.len() as u32))
    }
}

#[test]
fn a_large_fan_out_stores_its_frame_once_and_the_last_write_releases_it() {
    let (worker, _mailboxes) = worker(0, 1, &config(&[("a", 1 << 20)]));
    let store = Rc::new(CountingStore {
        ledger: SpanLedger::new(2),
        stored: Cell::new(0),
    });
    worker.set_frame_store(Some(store.clone() as Rc<dyn FrameStore>));
    let sessions: Vec<_> = (0..ZERO_COPY_MIN_SUBSCRIBERS)
        .map(|index| open(&worker, "a", &format!("s{index}")))
        .collect();
    publish(&worker, "a", "main", "to everyone");
    assert_eq!(store.stored.get(), 1, "one copy for every subscriber");
    assert_eq!(store.ledger.live(0), 1, "one handle, shared");
    for session in &sessions {
        let outbound = session.outbound.borrow();
        let front = outbound.frames().next().unwrap();
        assert!(front.span().is_some_and(|span| span.is_from(&store.ledger)));
    }
    // A small fan-out is not stored.
    publish(
        &worker,
        "a",
        &format!("priv/{}", sessions[0].id_text()),
        "one",
    );
    assert_eq!(store.stored.get(), 1);
    let mut released = Vec::new();
    for session in &sessions {
        store.ledger.take_released(|chunk| released.push(chunk));
        assert!(
            released.is_empty(),
            "released before the last subscriber wrote it"
        );
        write_all(session);
    }
    store.ledger.take_released(|chunk| released.push(chunk));
    assert_eq!(released, vec![0]);
}
