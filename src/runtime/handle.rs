//! The running server as its embedder sees it: stop, wait, reload, triggers for signals.
//!
//! Responsibility: [`ServerHandle`] holds the worker and bus threads and the control and
//! mesh senders that reach them. Dropping it shuts the server down: the workers first
//! (their last interest changes and presence events still reach the bus), then the bus.

use crate::broker::bus_link::BusCommand;
use crate::broker::mesh::{MeshMessage, MeshSender};
use crate::control::{ControlRequest, ReloadOutcome};
use crate::metrics::{BusMetrics, WorkerMetrics};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

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
    pub(super) senders: Vec<MeshSender>,
    pub(super) threads: Vec<JoinHandle<()>>,
    pub(super) control: crossbeam_channel::Sender<ControlRequest>,
    /// The bus thread and its queue (cluster mode); stopped after the workers, so their
    /// last interest changes and presence events still leave.
    pub(super) bus: Option<(MeshSender<BusCommand>, JoinHandle<()>)>,
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
    pub fn reload(&self) -> ReloadOutcome {
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

    pub(super) fn stop(&mut self) {
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
