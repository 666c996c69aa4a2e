//! The runtime: the ONLY place that names monoio, opens sockets, spawns or pins threads.
//!
//! Responsibility: start `N` pinned worker threads, each with its own monoio runtime
//! (io_uring, or the legacy epoll driver where io_uring is unavailable or forced) and its
//! own `SO_REUSEPORT` listener on the shared port, the control thread, the JWKS fetcher
//! and, in cluster mode, the bus thread; run per worker the accept loop, the mesh drain
//! loop and a one-second ticker; serve each connection in its own task.
//!
//! Layout: this file starts the threads ([`start`]); `handle` is the running server;
//! `worker` a worker's state and loops, `flusher` its flush cycles, `shutdown` its end;
//! `connection`, `http_phase`, `stream`, `tls`, `writer` serve one connection; `control`
//! is the reload thread, `jwks` the key fetcher, `bus` the cluster bus thread.
//!
//! Invariants: a connection lives on the worker that accepted it; workers share only the
//! immutable registry, the interest maps, the counters and the mesh channels; the driver
//! that actually runs is logged and exported as the `ringcast_io_driver` metric.

pub mod bus;
mod connection;
pub mod control;
mod flusher;
pub mod frame_file;
mod handle;
mod http_phase;
pub mod jwks;
mod reader;
mod shutdown;
mod stream;
mod sys;
mod tls;
mod uring_send;
mod worker;
mod writer;

use crate::broker::apps::Registry;
use crate::broker::bus_link::{BusCommand, BusLink};
use crate::broker::mesh::{self, mesh, Mailbox, MeshSender};
use crate::broker::outbox::Outbox;
use crate::broker::worker::Worker;
use crate::cluster::BUS_QUEUE_CAPACITY;
use crate::config::{Config, ConfigError};
use crate::control::CONTROL_QUEUE_CAPACITY;
use crate::metrics::{BusMetrics, WorkerMetrics};
use control::Controller;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use worker::{run_worker, WorkerParts};

/// Used by the readers too (a TLS reader holding plaintext yields with it).
use flusher::yield_to_ready_tasks;
pub use handle::ServerHandle;
pub use worker::WorkerRuntime;

/// Bytes read per `recv` into the worker's pooled buffer: one default max message plus
/// headroom, so a maximal frame usually arrives in one read.
pub const READ_BUFFER_BYTES: usize = 80 * 1024;
/// Pending connections per listener when the host's `net.core.somaxconn` cannot be read
/// (the kernel's own default since Linux 5.4).
pub const FALLBACK_LISTEN_BACKLOG: i32 = 4096;
/// Where the host's cap on a listen backlog is read.
const SOMAXCONN_PATH: &str = "/proc/sys/net/core/somaxconn";
/// Seconds a closing connection may take to finish the close handshake before its socket
/// is shut down hard.
pub const CLOSE_GRACE_SECONDS: u64 = 5;
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

/// The listen backlog: the host's `net.core.somaxconn` (the kernel caps any backlog there,
/// so asking for it takes all the host allows for a reconnect burst), or
/// [`FALLBACK_LISTEN_BACKLOG`] when it cannot be read (tuning/README.md).
pub fn listen_backlog() -> i32 {
    backlog_from_somaxconn(std::fs::read_to_string(SOMAXCONN_PATH).ok().as_deref())
}

/// [`listen_backlog`] from the file's text (`None`: unreadable).
fn backlog_from_somaxconn(text: Option<&str>) -> i32 {
    text.and_then(|text| text.trim().parse::<i32>().ok())
        .filter(|value| *value > 0)
        .unwrap_or(FALLBACK_LISTEN_BACKLOG)
}

/// Binds the listeners: refuses a port another process serves, then one `SO_REUSEPORT`
/// socket per worker (port 0 resolves to one free port shared by all), each with `backlog`.
fn bind_listeners(
    address: SocketAddr,
    count: usize,
    backlog: i32,
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
            socket.listen(backlog)?;
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
    let jwks =
        jwks::start(&registry.jwks, &registry.token_cache).map_err(|error| StartError::Worker {
            index: 0,
            message: format!("cannot start the JWKS fetcher thread: {error}"),
        })?;
    let backlog = listen_backlog();
    tracing::info!(backlog, "listen backlog per listener (net.core.somaxconn)");
    let listeners = bind_listeners(address, workers, backlog)?;
    let local_address = listeners[0]
        .local_addr()
        .map_err(|source| StartError::Listen { address, source })?;
    let mut plain_listeners: Vec<Option<std::net::TcpListener>> = Vec::new();
    let mut plain_address = None;
    if let Some(plain) = config.plain_listen_address()? {
        let bound = bind_listeners(plain, workers, backlog)?;
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
                cluster.config.node_number,
            ));
        }
        let ready = ready_sender.clone();
        let core =
            (config.server.pin_workers && !cores.is_empty()).then(|| cores[index % cores.len()]);
        let choice = config.server.io_driver;
        let control = control.clone();
        let ping_seconds = config.server.ping_interval_seconds;
        let frame_file_bytes = config.server.zero_copy_fanout_bytes;
        let uring_sends = config.server.io_uring_sends;
        let quiesced = quiesced.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ringcast-worker-{index}"))
            .spawn(move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                let broker = Worker::new(index, registry, outbox, metrics);
                let frame_file = match frame_file::FrameFile::create(frame_file_bytes) {
                    Ok(file) => file.map(std::rc::Rc::new),
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
                    uring_sends,
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
    // Ends on its own once every request sender (workers, handle) is gone.
    control::spawn(controller, requests).map_err(|error| StartError::Worker {
        index: 0,
        message: format!("cannot start the control thread: {error}"),
    })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_is_the_hosts_somaxconn() {
        assert_eq!(backlog_from_somaxconn(Some("65535\n")), 65535);
        assert_eq!(backlog_from_somaxconn(Some("128")), 128);
    }

    #[test]
    fn an_unreadable_or_odd_somaxconn_falls_back() {
        for text in [
            None,
            Some(""),
            Some("many"),
            Some("0"),
            Some("-1"),
            Some("99999999999"),
        ] {
            assert_eq!(
                backlog_from_somaxconn(text),
                FALLBACK_LISTEN_BACKLOG,
                "{text:?}"
            );
        }
    }

    #[test]
    fn this_host_gives_a_positive_backlog() {
        assert!(listen_backlog() > 0);
    }
}
