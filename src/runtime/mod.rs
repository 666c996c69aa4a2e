//! The runtime: the ONLY place that names monoio, opens sockets, spawns or pins threads.
//!
//! Responsibility: start `N` pinned worker threads, each with its own monoio runtime
//! (io_uring, or the legacy epoll driver where io_uring is unavailable or forced) and its
//! own `SO_REUSEPORT` listener on the shared port; run per worker the accept loop, the
//! mesh drain loop and a one-second ticker; serve each connection in its own task.
//!
//! Invariants: a connection lives on the worker that accepted it; workers share only the
//! immutable registry, the interest maps, the counters and the mesh channels; the driver
//! that actually runs is logged and exported as the `ringcast_io_driver` metric.

pub mod bus;
mod connection;
pub mod frame_file;
mod http_phase;
pub mod jwks;
mod reader;
mod stream;
mod sys;
mod tls;
mod writer;

use crate::broker::apps::Registry;
use crate::broker::mesh::{self, mesh, Mailbox, MeshMessage, MeshSender, Outbox, DRAIN_BATCH};
use crate::broker::session::Session;
use crate::broker::worker::Worker;
use crate::cluster::{BusCommand, BusLink, BUS_QUEUE_CAPACITY};
use crate::config::{Config, ConfigError, IoDriverChoice};
use crate::control::{ControlRequest, Controller, CONTROL_QUEUE_CAPACITY};
use crate::metrics::{BusMetrics, WorkerMetrics};
use monoio::net::TcpListener;
use slab::Slab;
use std::cell::{Cell, RefCell};
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;
use stream::Stream;

/// Bytes read per `recv` into the worker's pooled buffer: one default max message plus
/// headroom, so a maximal frame usually arrives in one read.
pub const READ_BUFFER_BYTES: usize = 80 * 1024;
/// Pending connections the kernel queues per listener before refusing.
pub const LISTEN_BACKLOG: i32 = 4096;
/// Seconds a closing connection may take to finish the close handshake before its socket
/// is shut down hard.
pub const CLOSE_GRACE_SECONDS: u64 = 5;
/// io_uring submission queue entries per worker.
const URING_ENTRIES: u32 = 4096;
/// Sessions a worker closes with 1001 per shutdown batch, and the pause between batches:
/// 1,000 per 50 ms spreads 20,000 connections' reconnects over a second instead of one
/// instant, while staying far inside the default 10 s deadline.
pub const SHUTDOWN_BATCH_SIZE: usize = 1000;
pub const SHUTDOWN_BATCH_INTERVAL: Duration = Duration::from_millis(50);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("{address} is already in use by another process; refusing to share it (SO_REUSEPORT would silently split traffic)")]
    PortInUse { address: SocketAddr },
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("io_uring was required (ioDriver \"uring\") but is unavailable: {0}")]
    UringUnavailable(std::io::Error),
    #[error("worker {index} failed to start: {message}")]
    Worker { index: usize, message: String },
}

/// A running server. Dropping it shuts the server down.
pub struct ServerHandle {
    /// The `listen` address (TLS when `server.tls` is set).
    pub local_address: SocketAddr,
    /// The plain listener kept beside TLS (`server.tls.plainListen`), if any.
    pub plain_address: Option<SocketAddr>,
    /// `io_uring` or `legacy`.
    pub io_driver: &'static str,
    pub workers: usize,
    pub metrics: Arc<[WorkerMetrics]>,
    /// The cluster bus's numbers (cluster mode).
    pub bus_metrics: Option<Arc<BusMetrics>>,
    senders: Vec<MeshSender>,
    threads: Vec<JoinHandle<()>>,
    control: crossbeam_channel::Sender<ControlRequest>,
    /// The bus thread and its queue (cluster mode); stopped after the workers, so their
    /// last interest changes and presence events still leave.
    bus: Option<(MeshSender<BusCommand>, JoinHandle<()>)>,
}

impl ServerHandle {
    /// Asks every worker to close its connections with 1001 and stop, then waits for them.
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// Blocks until the workers end (after [`ServerHandle::request_shutdown`] or a fatal error).
    pub fn wait(mut self) {
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.stop_bus();
    }

    fn stop_bus(&mut self) {
        if let Some((sender, thread)) = self.bus.take() {
            sender.send_blocking(BusCommand::Shutdown);
            let _ = thread.join();
        }
    }

    /// A cloneable trigger for a configuration reload from another thread (SIGHUP): queued
    /// to the control thread; the outcome is logged.
    pub fn reload_trigger(&self) -> impl Fn() + Send + 'static {
        let control = self.control.clone();
        move || {
            if control
                .try_send(ControlRequest::Reload { reply: None })
                .is_err()
            {
                tracing::warn!("reload not queued: the control queue is full (reloads pending)");
            }
        }
    }

    /// Reloads the configuration and waits for the outcome (tests, embedding).
    pub fn reload(&self) -> crate::control::ReloadOutcome {
        let (reply, outcome) = flume::bounded(1);
        self.control
            .send(ControlRequest::Reload { reply: Some(reply) })
            .map_err(|_| "the control thread is gone".to_string())?;
        outcome
            .recv()
            .map_err(|_| "the control thread is gone".to_string())?
    }

    /// Asks the workers to stop without waiting.
    pub fn request_shutdown(&self) {
        for sender in &self.senders {
            sender.send_blocking(MeshMessage::Shutdown);
        }
    }

    /// A cloneable trigger for shutting down from another thread (signal handling).
    pub fn shutdown_trigger(&self) -> impl Fn() + Send + 'static {
        let senders = self.senders.clone();
        move || {
            for sender in &senders {
                sender.send_blocking(MeshMessage::Shutdown);
            }
        }
    }

    fn stop(&mut self) {
        if !self.threads.is_empty() {
            self.request_shutdown();
            for thread in self.threads.drain(..) {
                let _ = thread.join();
            }
        }
        self.stop_bus();
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Per-worker runtime state: the broker plus the sockets it owns.
pub struct WorkerRuntime {
    pub broker: Worker,
    /// The control thread's request channel, for `POST /admin/reload` (`http_api::Api`).
    pub control: crossbeam_channel::Sender<ControlRequest>,
    pub driver: &'static str,
    /// Start of the worker's millisecond clock (`Worker::now_ms`).
    epoch: std::time::Instant,
    /// Upgrade-rate token bucket (thousandths of a handshake, clock ms at last refill);
    /// unused when `maxHandshakesPerSecond` is 0.
    handshake_bucket: Cell<(u64, u64)>,
    /// This worker's share of `maxHandshakesPerSecond` (0 = unlimited).
    handshakes_per_second: u64,
    /// The listeners' descriptors, shut down to stop accepting at shutdown (emptied then).
    listener_fds: RefCell<Vec<std::os::fd::RawFd>>,
    /// A flush is requested and the flusher task has not run yet.
    flush_requested: Cell<bool>,
    /// The parked flusher task.
    flusher: RefCell<Option<std::task::Waker>>,
    connections: RefCell<Slab<Connection>>,
    /// Connections in the HTTP phase (not upgraded); kept by `connection::HttpPhase` only.
    http_connections: http_phase::HttpConnections,
    read_buffer: RefCell<Box<[u8]>>,
    /// Dirty sessions taken from the broker, in the order they became dirty, not yet
    /// written (each keeps its `dirty` flag until written, so frames queued meanwhile join
    /// the same write). See [`writer::start_cycle`].
    to_write: RefCell<std::collections::VecDeque<Rc<Session>>>,
    outbox_retry: Cell<bool>,
    /// The frame file the broker stores large fan-outs' frames in (shared with it as its
    /// `FrameStore`); the writer sends runs from it and reclaims its released chunks.
    frame_file: Option<Rc<frame_file::FrameFile>>,
}

struct Connection {
    stream: Rc<Stream>,
    session: Option<Rc<Session>>,
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
    fn refresh_clock(&self) {
        self.broker
            .now_ms
            .set(self.epoch.elapsed().as_millis() as u64);
    }

    /// Takes one upgrade from the handshake-rate bucket; `false` = answer 503.
    fn admit_handshake(&self) -> bool {
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

    fn register(&self, stream: Rc<Stream>) -> usize {
        self.connections.borrow_mut().insert(Connection {
            stream,
            session: None,
        })
    }

    fn attach(&self, slot: usize, session: Rc<Session>) {
        if let Some(connection) = self.connections.borrow_mut().get_mut(slot) {
            connection.session = Some(session);
        }
    }

    fn unregister(&self, slot: usize) {
        let mut connections = self.connections.borrow_mut();
        if connections.contains(slot) {
            connections.remove(slot);
        }
    }

    /// The socket of `session`, if its connection is still registered. The slot alone is
    /// not enough: once a connection ends its slot is reused, while the ended session may
    /// still wait in a flush list.
    fn stream_of(&self, session: &Session) -> Option<Rc<Stream>> {
        let connections = self.connections.borrow();
        let connection = connections.get(session.slot.get())?;
        let owner = connection.session.as_ref()?;
        std::ptr::eq(Rc::as_ptr(owner), session).then(|| connection.stream.clone())
    }

    /// Shuts down sockets whose close handshake overran [`CLOSE_GRACE_SECONDS`].
    fn sweep_closing(&self) {
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

/// Binds the listeners: refuses a port another process serves, then one `SO_REUSEPORT`
/// socket per worker (port 0 resolves to one free port shared by all).
fn bind_listeners(
    address: SocketAddr,
    count: usize,
) -> Result<Vec<std::net::TcpListener>, StartError> {
    use socket2::{Domain, Protocol, Socket, Type};
    if address.port() != 0 {
        // std's bind does not set SO_REUSEPORT, so it fails if anyone listens here.
        match std::net::TcpListener::bind(address) {
            Ok(probe) => drop(probe),
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(StartError::PortInUse { address });
            }
            Err(source) => return Err(StartError::Listen { address, source }),
        }
    }
    let mut bound = address;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        let listen = |bound: SocketAddr| -> std::io::Result<std::net::TcpListener> {
            let socket = Socket::new(
                Domain::for_address(bound),
                Type::STREAM,
                Some(Protocol::TCP),
            )?;
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
            socket.bind(&bound.into())?;
            socket.listen(LISTEN_BACKLOG)?;
            socket.set_nonblocking(true)?;
            Ok(socket.into())
        };
        let listener = listen(bound).map_err(|source| StartError::Listen {
            address: bound,
            source,
        })?;
        if bound.port() == 0 {
            bound = listener
                .local_addr()
                .map_err(|source| StartError::Listen { address, source })?;
        }
        listeners.push(listener);
    }
    Ok(listeners)
}

fn worker_count(config: &Config) -> usize {
    match config.server.workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    }
    .min(crate::config::MAX_WORKERS)
}

/// Starts the server described by `config` and returns once every worker listens.
pub fn start(config: &Config) -> Result<ServerHandle, StartError> {
    let tls = match &config.server.tls {
        Some(tls) => Some(crate::tls::server_config(tls)?),
        None => None,
    };
    let workers = worker_count(config);
    let registry = Arc::new(Registry::compile_next(config, workers, None)?);
    let address = config.listen_address()?;
    // Before the listeners open, so the first clients find the keys (bounded wait). The
    // control thread owns it from here (a reload starts one for the new set of URLs).
    let jwks = jwks::start(&registry.jwks).map_err(|error| StartError::Worker {
        index: 0,
        message: format!("cannot start the JWKS fetcher thread: {error}"),
    })?;
    let listeners = bind_listeners(address, workers)?;
    let local_address = listeners[0]
        .local_addr()
        .map_err(|source| StartError::Listen { address, source })?;
    let mut plain_listeners: Vec<Option<std::net::TcpListener>> = Vec::new();
    let mut plain_address = None;
    if let Some(plain) = config.plain_listen_address()? {
        let bound = bind_listeners(plain, workers)?;
        plain_address = Some(bound[0].local_addr().map_err(|source| StartError::Listen {
            address: plain,
            source,
        })?);
        plain_listeners.extend(bound.into_iter().map(Some));
    }
    plain_listeners.resize_with(workers, || None);
    let metrics: Arc<[WorkerMetrics]> = (0..workers).map(|_| WorkerMetrics::default()).collect();
    let (mailboxes, senders) = mesh(workers);
    let cluster = match &config.server.cluster {
        Some(cluster) => Some(Cluster {
            config: cluster.clone(),
            addresses: bus::server_addresses(cluster)?,
            channel: mesh::channel(BUS_QUEUE_CAPACITY),
            metrics: Arc::new(BusMetrics::default()),
            resync: Arc::new(AtomicBool::new(false)),
        }),
        None => None,
    };
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let (ready_sender, ready) = mpsc::channel::<Result<&'static str, StartError>>();
    let (control, requests) = crossbeam_channel::bounded(CONTROL_QUEUE_CAPACITY);
    let mut threads = Vec::with_capacity(workers);
    let quiesced = Arc::new(AtomicUsize::new(0));
    let parts = listeners.into_iter().zip(plain_listeners).zip(mailboxes);
    for (index, ((listener, plain_listener), mailbox)) in parts.enumerate() {
        let tls = tls.clone();
        let registry = registry.clone();
        let metrics = metrics.clone();
        let mut outbox = Outbox::new(senders.clone());
        if let Some(cluster) = &cluster {
            outbox = outbox.with_bus(BusLink::new(
                cluster.channel.1.clone(),
                cluster.metrics.clone(),
                cluster.resync.clone(),
            ));
        }
        let ready = ready_sender.clone();
        let core =
            (config.server.pin_workers && !cores.is_empty()).then(|| cores[index % cores.len()]);
        let choice = config.server.io_driver;
        let control = control.clone();
        let ping_seconds = config.server.ping_interval_seconds;
        let frame_file_bytes = config.server.zero_copy_fanout_bytes;
        let quiesced = quiesced.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ringcast-worker-{index}"))
            .spawn(move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                let broker = Worker::new(index, registry, outbox, metrics);
                let frame_file = match frame_file::FrameFile::create(frame_file_bytes) {
                    Ok(file) => file.map(Rc::new),
                    Err(error) => {
                        tracing::warn!(
                            %error,
                            "no frame file (memfd_create failed): fan-out frames are copied"
                        );
                        None
                    }
                };
                broker.set_frame_store(frame_file.clone().map(|file| file as _));
                let parts = WorkerParts {
                    broker,
                    control,
                    listener,
                    plain_listener,
                    tls,
                    mailbox,
                    ping_seconds,
                    quiesced,
                    frame_file,
                };
                run_worker(choice, parts, ready);
            })
            .map_err(|error| StartError::Worker {
                index,
                message: error.to_string(),
            })?;
        threads.push(thread);
    }
    drop(ready_sender);
    let controller = Controller::new(
        registry.clone(),
        config.clone(),
        senders.clone(),
        jwks,
        cluster.as_ref().map(|cluster| cluster.channel.1.clone()),
    );
    let control_thread = std::thread::Builder::new()
        .name("ringcast-control".into())
        .spawn(move || controller.serve(requests))
        .map_err(|error| StartError::Worker {
            index: 0,
            message: format!("cannot start the control thread: {error}"),
        })?;
    // Ends on its own once every request sender (workers, handle) is gone.
    drop(control_thread);
    let mut driver = "legacy";
    let mut handle = ServerHandle {
        local_address,
        plain_address,
        io_driver: driver,
        workers,
        metrics,
        bus_metrics: cluster.as_ref().map(|cluster| cluster.metrics.clone()),
        senders: senders.clone(),
        threads,
        control,
        bus: None,
    };
    for _ in 0..workers {
        match ready.recv() {
            Ok(Ok(name)) => driver = name,
            Ok(Err(error)) => {
                handle.stop();
                return Err(error);
            }
            Err(_) => {
                handle.stop();
                return Err(StartError::Worker {
                    index: 0,
                    message: "worker exited during start-up".into(),
                });
            }
        }
    }
    handle.io_driver = driver;
    if let Some(cluster) = cluster {
        let (inbox, sender) = cluster.channel;
        let parts = bus::BusParts {
            config: cluster.config,
            registry,
            workers: senders,
            inbox,
            metrics: cluster.metrics,
            resync: cluster.resync,
        };
        match bus::spawn(parts, cluster.addresses) {
            Ok(thread) => handle.bus = Some((sender, thread)),
            Err(error) => {
                handle.stop();
                return Err(StartError::Worker {
                    index: workers,
                    message: format!("bus thread: {error}"),
                });
            }
        }
    }
    Ok(handle)
}

/// What cluster mode adds at start-up: the bus thread's queue and shared state.
struct Cluster {
    config: crate::config::ClusterConfig,
    addresses: Vec<async_nats::ServerAddr>,
    channel: (Mailbox<BusCommand>, MeshSender<BusCommand>),
    metrics: Arc<BusMetrics>,
    resync: Arc<AtomicBool>,
}

struct WorkerParts {
    broker: Worker,
    /// The control thread's request channel (`POST /admin/reload`).
    control: crossbeam_channel::Sender<ControlRequest>,
    /// On `listen`: TLS when `tls` is set.
    listener: std::net::TcpListener,
    /// Plain listener beside a TLS one (`server.tls.plainListen`).
    plain_listener: Option<std::net::TcpListener>,
    tls: Option<Arc<rustls::ServerConfig>>,
    mailbox: Mailbox,
    ping_seconds: u64,
    /// Workers that handed their outbox over at shutdown (see [`quiesce`]).
    quiesced: Arc<AtomicUsize>,
    frame_file: Option<Rc<frame_file::FrameFile>>,
}

fn run_worker(
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

/// The first step of a shutdown, before any connection is closed: hand this worker's outbox
/// to the other workers, then keep taking in what they hand over until every worker has
/// done the same. A publication answered (`200` or an ack) before the shutdown was asked
/// for is thereby delivered on every worker before its 1001 closes (without this, a worker
/// could close its subscribers while the publication still sat in another one's outbox).
/// Bounded by the shutdown deadline.
async fn quiesce(
    runtime: &Rc<WorkerRuntime>,
    mailbox: &Mailbox,
    quiesced: &AtomicUsize,
    give_up: std::time::Instant,
) {
    let workers = runtime.broker.outbox.workers();
    let pause = Duration::from_millis(1);
    writer::flush(runtime);
    while runtime.broker.outbox.queued() > 0 && std::time::Instant::now() < give_up {
        monoio::time::sleep(pause).await;
        writer::flush(runtime);
    }
    quiesced.fetch_add(1, Ordering::AcqRel);
    let mut batch = Vec::with_capacity(DRAIN_BATCH);
    loop {
        // Read before draining: once every worker has counted itself, everything they
        // handed over is already in this mailbox.
        let everyone = quiesced.load(Ordering::Acquire) >= workers;
        loop {
            mailbox.drain(DRAIN_BATCH, &mut batch);
            if batch.is_empty() {
                break;
            }
            // The shutdown already under way is the only one there is.
            handle_mesh_batch(runtime, &mut batch);
        }
        writer::flush(runtime);
        if everyone || std::time::Instant::now() >= give_up {
            return;
        }
        monoio::time::sleep(pause).await;
    }
}

/// Graceful shutdown of one worker: stop accepting, end plain HTTP connections, close
/// sessions with 1001 in batches (queued frames go out before each close frame), then wait
/// for the close handshakes — all within `deadline`.
async fn shut_down(runtime: &Rc<WorkerRuntime>, give_up: std::time::Instant) {
    use std::os::fd::AsRawFd as _;
    for fd in runtime.listener_fds.take() {
        // Wakes the pending accept with an error; the accept loop then ends.
        sys::shutdown(&fd.as_raw_fd(), Shutdown::Read);
    }
    for (_, connection) in runtime.connections.borrow().iter() {
        if connection.session.is_none() {
            sys::shutdown(&*connection.stream, Shutdown::Both);
        }
    }
    loop {
        runtime.refresh_clock();
        let remaining = runtime
            .broker
            .close_batch(crate::error::CloseKind::ServerShutdown, SHUTDOWN_BATCH_SIZE);
        writer::flush(runtime);
        if remaining == 0 || std::time::Instant::now() >= give_up {
            break;
        }
        monoio::time::sleep(SHUTDOWN_BATCH_INTERVAL).await;
    }
    while !runtime.connections.borrow().is_empty() && std::time::Instant::now() < give_up {
        monoio::time::sleep(Duration::from_millis(20)).await;
        writer::flush(runtime);
    }
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

/// Runs requested flushes (see [`WorkerRuntime::request_flush`]) in cycles. A cycle
/// writes the sessions that were dirty when it started — each once — at most
/// [`writer::FLUSH_CHUNK_SESSIONS`] per turn, letting the tasks that became ready run
/// between turns (readers with new publications, HTTP requests): frames they queue for
/// sessions still waiting join their one write; sessions they dirty anew wait for the next
/// cycle. After a large cycle (at least [`writer::COALESCE_MIN_SESSIONS`] sessions), the
/// next one starts no sooner than `interval` (`server.flushIntervalMicros`) after it
/// ended, so what arrives within it leaves in one send per subscriber; after a small cycle,
/// or a quiet spell, the next flush starts at once, so light traffic is never delayed.
async fn flusher(runtime: Rc<WorkerRuntime>, interval: Duration) {
    let mut hold_until: Option<std::time::Instant> = None;
    loop {
        std::future::poll_fn(|cx| {
            if runtime.flush_requested.get() {
                std::task::Poll::Ready(())
            } else {
                *runtime.flusher.borrow_mut() = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        })
        .await;
        if let Some(until) = hold_until {
            let now = std::time::Instant::now();
            if now < until {
                // Held back, unless a subscriber's queue passes half its limit meanwhile.
                let mut hold = std::pin::pin!(monoio::time::sleep(until - now));
                std::future::poll_fn(|cx| {
                    if std::future::Future::poll(hold.as_mut(), cx).is_ready()
                        || runtime.broker.take_flush_urgency(cx.waker())
                    {
                        std::task::Poll::Ready(())
                    } else {
                        std::task::Poll::Pending
                    }
                })
                .await;
            }
        }
        runtime.flush_requested.set(false);
        let sessions = writer::start_cycle(&runtime);
        while writer::write_some(&runtime, writer::FLUSH_CHUNK_SESSIONS) {
            yield_to_ready_tasks().await;
        }
        hold_until = (sessions >= writer::COALESCE_MIN_SESSIONS && !interval.is_zero())
            .then(|| std::time::Instant::now() + interval);
    }
}

/// Returns once the tasks already queued on this worker (and those the I/O driver wakes
/// in the meantime) had their turn: the task wakes itself and goes to the back of the
/// run queue. (monoio's `yield_now` does not yield to I/O here; this does, because the
/// executor reaps completions between rounds of its queue.) Also used by a TLS reader that
/// still holds plaintext and so cannot wait for readability to yield.
pub(super) async fn yield_to_ready_tasks() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
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
        let running = handle_mesh_batch(runtime, &mut batch);
        runtime.request_flush();
        if !running {
            return;
        }
    }
}

/// Hands a drained batch of mesh messages to the broker; false once one was `Shutdown`.
fn handle_mesh_batch(runtime: &WorkerRuntime, batch: &mut Vec<MeshMessage>) -> bool {
    let mut running = true;
    runtime.refresh_clock();
    for message in batch.drain(..) {
        running &= runtime.broker.on_mesh(message);
    }
    running
}
