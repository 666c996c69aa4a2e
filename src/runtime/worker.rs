//! One worker thread: its runtime state, its monoio runtime, and the tasks it runs.
//!
//! Responsibility: [`WorkerRuntime`] (the broker plus the sockets this worker owns, its
//! flush request and its handshake-rate bucket); building the worker's monoio runtime
//! (io_uring, or the legacy epoll driver); the accept loops, the mesh drain loop and the
//! one-second ticker. A connection's own task is `connection::serve`; flush cycles are
//! `flusher`; the end of a worker is `shutdown`.
//!
//! Invariants: a connection lives on the worker that accepted it; the worker's state is
//! touched only from its own thread (`Rc`, `Cell`, `RefCell`).

use super::flusher::flusher;
use super::shutdown::{quiesce, shut_down};
use super::stream::Stream;
use super::READ_BUFFER_BYTES;
use super::{connection, http_phase, sys, writer, StartError, CLOSE_GRACE_SECONDS};
use crate::broker::mesh::{Mailbox, MeshMessage, DRAIN_BATCH};
use crate::broker::session::Session;
use crate::broker::worker::Worker;
use crate::config::IoDriverChoice;
use crate::control::ControlRequest;
use monoio::net::TcpListener;
use slab::Slab;
use std::cell::{Cell, RefCell};
use std::net::Shutdown;
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// io_uring submission queue entries per worker.
const URING_ENTRIES: u32 = 4096;

/// Per-worker runtime state: the broker plus the sockets it owns.
pub struct WorkerRuntime {
    pub broker: Worker,
    /// The control thread's request channel, for `POST /admin/reload` (`http_api::Api`).
    pub control: crossbeam_channel::Sender<ControlRequest>,
    pub driver: &'static str,
    /// Start of the worker's millisecond clock (`Worker::now_ms`).
    pub(super) epoch: std::time::Instant,
    /// Upgrade-rate token bucket (thousandths of a handshake, clock ms at last refill);
    /// unused when `maxHandshakesPerSecond` is 0.
    pub(super) handshake_bucket: Cell<(u64, u64)>,
    /// This worker's share of `maxHandshakesPerSecond` (0 = unlimited).
    pub(super) handshakes_per_second: u64,
    /// The listeners' descriptors, shut down to stop accepting at shutdown (emptied then).
    pub(super) listener_fds: RefCell<Vec<std::os::fd::RawFd>>,
    /// A flush is requested and the flusher task has not run yet.
    pub(super) flush_requested: Cell<bool>,
    /// The parked flusher task.
    pub(super) flusher: RefCell<Option<std::task::Waker>>,
    pub(super) connections: RefCell<Slab<Connection>>,
    /// Connections in the HTTP phase (not upgraded); kept by `connection::HttpPhase` only.
    pub(super) http_connections: http_phase::HttpConnections,
    pub(super) read_buffer: RefCell<Box<[u8]>>,
    /// Dirty sessions taken from the broker, in the order they became dirty, not yet
    /// written (each keeps its `dirty` flag until written, so frames queued meanwhile join
    /// the same write). See [`writer::start_cycle`].
    pub(super) to_write: RefCell<std::collections::VecDeque<Rc<Session>>>,
    pub(super) outbox_retry: Cell<bool>,
    /// The frame file the broker stores large fan-outs' frames in (shared with it as its
    /// `FrameStore`); the writer sends runs from it and reclaims its released chunks.
    pub(super) frame_file: Option<Rc<super::frame_file::FrameFile>>,
    /// `server.ioUringSends` under the io_uring driver: the pooled buffers of send
    /// operations (`writer` then submits plain writes as io_uring operations).
    pub(super) uring_sends: Option<super::uring_send::SendBuffers>,
}

pub(super) struct Connection {
    pub(super) stream: Rc<Stream>,
    pub(super) session: Option<Rc<Session>>,
}

impl WorkerRuntime {
    /// Asks the flusher task to write every dirty session and hand over the outbox. It runs
    /// after the tasks that are already ready (the other readers woken by the same poll),
    /// so frames a subscriber gets from several reads leave in one vectored send. Measured
    /// with the harness (`ringcast-loadtest http`/`topics`): see the commit that added it.
    pub fn request_flush(&self) {
        if !self.flush_requested.replace(true) {
            if let Some(waker) = self.flusher.borrow_mut().take() {
                waker.wake();
            }
        }
    }

    /// Refreshes the broker's millisecond clock (one `Instant` read per batch of work).
    pub(super) fn refresh_clock(&self) {
        self.broker
            .now_ms
            .set(self.epoch.elapsed().as_millis() as u64);
    }

    /// Hands a drained batch of mesh messages to the broker; false once one was `Shutdown`.
    pub(super) fn handle_mesh_batch(&self, batch: &mut Vec<MeshMessage>) -> bool {
        let mut running = true;
        let mut reloaded = false;
        self.refresh_clock();
        for message in batch.drain(..) {
            reloaded |= matches!(message, MeshMessage::Reload { .. });
            running &= self.broker.on_mesh(message);
        }
        if reloaded {
            // `maxHttpConnectionsPerWorker` is applied live: a paused accept loop re-checks.
            self.http_connections.wake_waiting();
        }
        running
    }

    /// Takes one upgrade from the handshake-rate bucket; `false` = answer 503.
    pub(super) fn admit_handshake(&self) -> bool {
        let rate = self.handshakes_per_second;
        if rate == 0 {
            return true;
        }
        self.refresh_clock();
        let now = self.broker.now_ms.get();
        let (tokens, refilled) = self.handshake_bucket.get();
        let tokens = tokens
            .saturating_add(now.saturating_sub(refilled).saturating_mul(rate))
            .min(rate.saturating_mul(1000));
        if tokens < 1000 {
            self.handshake_bucket.set((tokens, now));
            return false;
        }
        self.handshake_bucket.set((tokens - 1000, now));
        true
    }

    pub(super) fn register(&self, stream: Rc<Stream>) -> usize {
        self.connections.borrow_mut().insert(Connection {
            stream,
            session: None,
        })
    }

    pub(super) fn attach(&self, slot: usize, session: Rc<Session>) {
        if let Some(connection) = self.connections.borrow_mut().get_mut(slot) {
            connection.session = Some(session);
        }
    }

    pub(super) fn unregister(&self, slot: usize) {
        let mut connections = self.connections.borrow_mut();
        if connections.contains(slot) {
            connections.remove(slot);
        }
    }

    /// The socket of `session`, if its connection is still registered. The slot alone is
    /// not enough: once a connection ends its slot is reused, while the ended session may
    /// still wait in a flush list.
    pub(super) fn stream_of(&self, session: &Session) -> Option<Rc<Stream>> {
        let connections = self.connections.borrow();
        let connection = connections.get(session.slot.get())?;
        let owner = connection.session.as_ref()?;
        std::ptr::eq(Rc::as_ptr(owner), session).then(|| connection.stream.clone())
    }

    /// Shuts down sockets whose close handshake overran [`CLOSE_GRACE_SECONDS`].
    pub(super) fn sweep_closing(&self) {
        let now = self.broker.tick.get();
        for (_, connection) in self.connections.borrow().iter() {
            if let Some(session) = &connection.session {
                if session.closing.get().is_some()
                    && now.saturating_sub(session.closing_since_tick.get()) >= CLOSE_GRACE_SECONDS
                {
                    sys::shutdown(&*connection.stream, Shutdown::Both);
                }
            }
        }
    }
}

pub(super) struct WorkerParts {
    pub(super) broker: Worker,
    /// The control thread's request channel (`POST /admin/reload`).
    pub(super) control: crossbeam_channel::Sender<ControlRequest>,
    /// On `listen`: TLS when `tls` is set.
    pub(super) listener: std::net::TcpListener,
    /// Plain listener beside a TLS one (`server.tls.plainListen`).
    pub(super) plain_listener: Option<std::net::TcpListener>,
    pub(super) tls: Option<Arc<rustls::ServerConfig>>,
    pub(super) mailbox: Mailbox,
    pub(super) ping_seconds: u64,
    /// Workers that handed their outbox over at shutdown (see [`quiesce`]).
    pub(super) quiesced: Arc<AtomicUsize>,
    pub(super) frame_file: Option<Rc<super::frame_file::FrameFile>>,
    /// `server.ioUringSends` (experimental).
    pub(super) uring_sends: bool,
}

pub(super) fn run_worker(
    choice: IoDriverChoice,
    parts: WorkerParts,
    ready: mpsc::Sender<Result<&'static str, StartError>>,
) {
    if choice != IoDriverChoice::Legacy {
        match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(URING_ENTRIES)
            .enable_timer()
            .build()
        {
            Ok(mut runtime) => {
                runtime.block_on(worker_main(parts, "io_uring", ready));
                return;
            }
            Err(error) if choice == IoDriverChoice::Uring => {
                let _ = ready.send(Err(StartError::UringUnavailable(error)));
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "io_uring unavailable; falling back to the legacy epoll driver");
            }
        }
    }
    match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(mut runtime) => runtime.block_on(worker_main(parts, "legacy", ready)),
        Err(error) => {
            let _ = ready.send(Err(StartError::Worker {
                index: parts.broker.index,
                message: error.to_string(),
            }));
        }
    }
}

async fn worker_main(
    parts: WorkerParts,
    driver: &'static str,
    ready: mpsc::Sender<Result<&'static str, StartError>>,
) {
    let WorkerParts {
        broker,
        control,
        listener,
        plain_listener,
        tls,
        mailbox,
        ping_seconds,
        quiesced,
        frame_file,
        uring_sends,
    } = parts;
    let index = broker.index;
    let mut listeners = vec![(listener, tls)];
    listeners.extend(plain_listener.map(|plain| (plain, None)));
    let mut monoio_listeners = Vec::with_capacity(listeners.len());
    for (listener, tls) in listeners {
        match TcpListener::from_std(listener) {
            Ok(listener) => monoio_listeners.push((listener, tls)),
            Err(error) => {
                let _ = ready.send(Err(StartError::Worker {
                    index,
                    message: error.to_string(),
                }));
                return;
            }
        }
    }
    let settings = broker.registry().settings.clone();
    let workers = broker.outbox.workers() as u64;
    let handshakes_per_second = settings.max_handshakes_per_second.div_ceil(workers.max(1));
    let runtime = Rc::new(WorkerRuntime {
        broker,
        control,
        driver,
        epoch: std::time::Instant::now(),
        handshake_bucket: Cell::new((handshakes_per_second.saturating_mul(1000), 0)),
        handshakes_per_second,
        listener_fds: RefCell::new(Vec::new()),
        flush_requested: Cell::new(false),
        flusher: RefCell::new(None),
        connections: RefCell::new(Slab::new()),
        http_connections: http_phase::HttpConnections::default(),
        read_buffer: RefCell::new(vec![0u8; READ_BUFFER_BYTES].into_boxed_slice()),
        to_write: RefCell::new(std::collections::VecDeque::new()),
        outbox_retry: Cell::new(false),
        frame_file,
        uring_sends: super::uring_send::SendBuffers::if_enabled(uring_sends, driver, index),
    });
    tracing::info!(worker = index, driver, "worker started");
    let _ = ready.send(Ok(driver));
    drop(ready);
    for (listener, tls) in monoio_listeners {
        monoio::spawn(accept_loop(runtime.clone(), listener, tls));
    }
    // Worker 0 also writes the refused-handshake summary, for all workers (`refusal_log`);
    // dropping it when the worker stops writes the last line.
    let refusals =
        Rc::new(RefCell::new((index == 0).then(|| {
            crate::refusal_log::RefusalLog::new(runtime.broker.metrics.clone())
        })));
    monoio::spawn(ticker(runtime.clone(), ping_seconds, refusals.clone()));
    monoio::spawn(flusher(runtime.clone(), settings.flush_interval));
    mesh_loop(&runtime, &mailbox).await;
    let give_up = std::time::Instant::now() + settings.shutdown_deadline;
    quiesce(&runtime, &mailbox, &quiesced, give_up).await;
    shut_down(&runtime, give_up).await;
    drop(refusals.borrow_mut().take());
    tracing::info!(worker = index, "worker stopped");
}

/// Accepts on one listener; `tls` set on a TLS listener.
async fn accept_loop(
    runtime: Rc<WorkerRuntime>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    use std::os::fd::AsRawFd as _;
    runtime.listener_fds.borrow_mut().push(listener.as_raw_fd());
    loop {
        // At `maxHttpConnectionsPerWorker` stop accepting: new connections wait in the
        // listen backlog until a connection upgrades or ends.
        http_phase::HttpPhase::wait_for_room(&runtime).await;
        match listener.accept().await {
            Ok((stream, peer)) => {
                // Another listener's loop may have taken the last place meanwhile.
                http_phase::HttpPhase::wait_for_room(&runtime).await;
                let place = http_phase::HttpPhase::take(&runtime);
                let future = connection::serve(runtime.clone(), stream, peer, tls.clone(), place);
                monoio::spawn(future);
            }
            Err(_) if runtime.listener_fds.borrow().is_empty() => return,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                // Out of descriptors or memory: back off instead of spinning.
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn ticker(
    runtime: Rc<WorkerRuntime>,
    ping_seconds: u64,
    refusals: Rc<RefCell<Option<crate::refusal_log::RefusalLog>>>,
) {
    loop {
        monoio::time::sleep(Duration::from_secs(1)).await;
        runtime.broker.on_tick(ping_seconds);
        if let Some(file) = &runtime.frame_file {
            let resident = file.resident_bytes();
            let gauge = &runtime.broker.metrics().frame_file_bytes;
            gauge.store(resident, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(refusals) = refusals.borrow_mut().as_mut() {
            refusals.tick(runtime.broker.tick.get());
        }
        runtime.sweep_closing();
        writer::flush(&runtime);
        sys::release_freed_memory();
    }
}

/// Drains the mailbox in batches; returns on shutdown.
async fn mesh_loop(runtime: &Rc<WorkerRuntime>, mailbox: &Mailbox) {
    let mut batch = Vec::with_capacity(DRAIN_BATCH);
    loop {
        mailbox.drain(DRAIN_BATCH, &mut batch);
        if batch.is_empty() {
            mailbox.wait().await;
            continue;
        }
        let running = runtime.handle_mesh_batch(&mut batch);
        runtime.request_flush();
        if !running {
            return;
        }
    }
}
