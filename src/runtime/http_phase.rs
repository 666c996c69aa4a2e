//! The HTTP phase's bounds: what a connection that has not upgraded to WebSocket may cost.
//!
//! Responsibility: the per-worker count of such connections (`maxHttpConnectionsPerWorker`,
//! kept by [`HttpPhase`] alone), which pauses the accept loop while it is full (a
//! connection leaving the phase wakes it); reading a
//! request body by the request's deadline (`handshakeTimeoutSeconds`); the keep-alive wait
//! for the next request; writing an API response (`HEAD`: the head only, with the `GET`
//! length).
//!
//! Why pause rather than refuse: in a connect burst the kernel completes TCP handshakes
//! faster than clients send their upgrade requests, so many accepted connections wait for
//! their first bytes. Measured with `ringcast-loadtest idle --connections 15000
//! --source-addresses 4` (1 worker, debug build, 3 runs): 1,909, 482 and 2,060 at once.
//! Refusing past the limit failed such runs with 503s; pausing lets them wait in the
//! listen backlog and be served in order, while the worker still never holds more.
//!
//! Must not: parse or route requests (`protocol::http`, `http_api`) or decide what to
//! answer; `connection` drives the phase with these pieces.

use super::stream::Stream;
use super::WorkerRuntime;
use crate::http_api::ApiResponse;
use crate::metrics::WorkerMetrics;
use crate::protocol::http as http1;
use monoio::time::Instant;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

/// An idle keep-alive HTTP connection is dropped after this long without the first byte of
/// a new request.
pub const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(60);

/// A worker's count of connections in the HTTP phase (`maxHttpConnectionsPerWorker`), and
/// its accept loops paused while it is full. Changed only through [`HttpPhase`].
#[derive(Default)]
pub(super) struct HttpConnections {
    count: Cell<usize>,
    /// Accept loops waiting in [`HttpPhase::wait_for_room`], woken when a connection
    /// leaves the phase. At most one entry per accept loop (one per listener): a loop
    /// already listed is not added again.
    waiting: RefCell<Vec<Waker>>,
}

impl HttpConnections {
    /// Wakes the paused accept loops: a connection left the phase, or a reload may have
    /// raised `maxHttpConnectionsPerWorker` (each loop re-checks the limit).
    pub(super) fn wake_waiting(&self) {
        // Waking schedules the accept loops on this worker; none runs inside this call.
        self.waiting.borrow_mut().drain(..).for_each(Waker::wake);
    }
}

/// One connection's place in its worker's count of connections in the HTTP phase
/// (`maxHttpConnectionsPerWorker`): taken when the connection is accepted, given back on
/// drop, when it upgrades or ends. The only code that changes the count.
pub(super) struct HttpPhase {
    runtime: Rc<WorkerRuntime>,
}

impl HttpPhase {
    /// Returns once the worker has a free place for another connection: while it has none,
    /// the caller (the accept loop) does not accept, so new connections wait in the kernel's
    /// listen backlog, and a connection leaving the phase wakes it. Each pause is counted
    /// (`ringcast_http_accept_pauses_total`). Returns at once when the worker is shutting
    /// down (its listeners are closed; the HTTP-phase connections it then shuts down wake
    /// a paused loop as they end). A reload that raises the limit takes effect for a
    /// paused loop when the next connection leaves the phase.
    pub(super) async fn wait_for_room(runtime: &WorkerRuntime) {
        if Self::has_room(runtime) {
            return;
        }
        WorkerMetrics::add(&runtime.broker.metrics().http_accept_pauses, 1);
        std::future::poll_fn(|cx| {
            if Self::has_room(runtime) || runtime.listener_fds.borrow().is_empty() {
                return Poll::Ready(());
            }
            let mut waiting = runtime.http_connections.waiting.borrow_mut();
            if !waiting.iter().any(|waker| waker.will_wake(cx.waker())) {
                waiting.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    fn has_room(runtime: &WorkerRuntime) -> bool {
        let limit = runtime
            .broker
            .registry()
            .settings
            .max_http_connections_per_worker;
        runtime.http_connections.count.get() < limit
    }

    /// Takes a place for a connection just accepted (after [`HttpPhase::wait_for_room`]).
    pub(super) fn take(runtime: &Rc<WorkerRuntime>) -> HttpPhase {
        Self::set(runtime, runtime.http_connections.count.get() + 1);
        HttpPhase {
            runtime: runtime.clone(),
        }
    }

    fn set(runtime: &WorkerRuntime, count: usize) {
        runtime.http_connections.count.set(count);
        runtime
            .broker
            .metrics()
            .observe_http_connections(count as u64);
    }
}

impl Drop for HttpPhase {
    fn drop(&mut self) {
        let count = self.runtime.http_connections.count.get().saturating_sub(1);
        Self::set(&self.runtime, count);
        self.runtime.http_connections.wake_waiting();
    }
}

/// Reads until `buffer` holds `length` bytes, by `deadline`; `Err(true)` when the deadline
/// passed, `Err(false)` when the peer ended.
pub(super) async fn read_body(
    runtime: &WorkerRuntime,
    stream: &Stream,
    buffer: &mut Vec<u8>,
    length: usize,
    deadline: Instant,
) -> Result<(), bool> {
    let read = monoio::time::timeout_at(deadline, async {
        while buffer.len() < length {
            match stream.read_more(runtime.broker.metrics(), buffer).await {
                Ok(read) if read > 0 => {}
                _ => return Err(false),
            }
        }
        Ok(())
    })
    .await;
    read.unwrap_or(Err(true))
}

/// Writes an API response (`HEAD`: the head only, with the length a `GET` would get);
/// `false` when the connection ends here (write failed, or not `keep_alive`).
pub(super) async fn write_api_response(
    stream: &Stream,
    method: &str,
    response: &ApiResponse,
    keep_alive: bool,
) -> bool {
    let mut out = Vec::new();
    let headers: Vec<(&str, &str)> = response
        .headers
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    if method == "HEAD" {
        http1::write_response_head(
            response.status,
            response.content_type,
            &headers,
            response.body.len(),
            keep_alive,
            &mut out,
        );
    } else {
        http1::write_response_with_headers(
            response.status,
            response.content_type,
            &headers,
            &response.body,
            keep_alive,
            &mut out,
        );
    }
    if stream.write_all(&out).await.is_err() || !keep_alive {
        stream.shutdown_write();
        return false;
    }
    true
}

/// Waits (up to [`KEEP_ALIVE_IDLE`]) for the first byte of the next request on a
/// keep-alive connection, unless it is already buffered; returns that request's deadline,
/// or `None` when the connection ends.
pub(super) async fn next_request(
    runtime: &WorkerRuntime,
    stream: &Stream,
    buffer: &mut Vec<u8>,
    settings: &crate::broker::apps::Settings,
) -> Option<Instant> {
    if buffer.is_empty() {
        match monoio::time::timeout(
            KEEP_ALIVE_IDLE,
            stream.read_more(runtime.broker.metrics(), buffer),
        )
        .await
        {
            Ok(Ok(read)) if read > 0 => {}
            _ => return None,
        }
    }
    Some(Instant::now() + settings.handshake_timeout)
}
