//! The HTTP phase's bounds: what a connection that has not upgraded to WebSocket may cost.
//!
//! Responsibility: the per-worker count of such connections (`maxHttpConnectionsPerWorker`,
//! kept by [`HttpPhase`] alone) and the refusal of one over it; reading a request body by
//! the request's deadline (`handshakeTimeoutSeconds`); the keep-alive wait for the next
//! request; writing an API response (`HEAD`: the head only, with the `GET` length).
//!
//! Must not: parse or route requests (`protocol::http`, `http_api`) or decide what to
//! answer; `connection` drives the phase with these pieces.

use super::stream::Stream;
use super::{sys, WorkerRuntime};
use crate::http_api::ApiResponse;
use crate::metrics::Refusal;
use crate::protocol::http as http1;
use monoio::net::TcpStream;
use monoio::time::Instant;
use std::io;
use std::time::Duration;

/// An idle keep-alive HTTP connection is dropped after this long without the first byte of
/// a new request.
pub const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(60);

/// One connection's place in its worker's count of connections in the HTTP phase
/// (`maxHttpConnectionsPerWorker`): taken at the accept, given back on drop, when the
/// connection upgrades or ends. The only code that touches the count.
pub(super) struct HttpPhase<'a> {
    runtime: &'a WorkerRuntime,
}

impl<'a> HttpPhase<'a> {
    /// Takes a place, or `None` when the worker is at its limit.
    pub(super) fn enter(runtime: &'a WorkerRuntime) -> Option<HttpPhase<'a>> {
        let limit = runtime
            .broker
            .registry()
            .settings
            .max_http_connections_per_worker;
        let count = runtime.http_connections.get();
        if count >= limit {
            return None;
        }
        Self::set(runtime, count + 1);
        Some(HttpPhase { runtime })
    }

    fn set(runtime: &WorkerRuntime, count: usize) {
        runtime.http_connections.set(count);
        runtime
            .broker
            .metrics()
            .http_connections
            .store(count as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for HttpPhase<'_> {
    fn drop(&mut self) {
        let count = self.runtime.http_connections.get().saturating_sub(1);
        Self::set(self.runtime, count);
    }
}

/// A connection over `maxHttpConnectionsPerWorker`: on a plain listener answered `503`
/// (one non-blocking send, never waited on; what the client already sent is read and
/// dropped first, so the close does not reset the answer away), on a TLS listener closed at
/// once (no handshake is spent on it). Counted as `http_connections_full`.
pub(super) fn refuse_http_connection(runtime: &WorkerRuntime, tcp: TcpStream, tls: bool) {
    runtime
        .broker
        .metrics()
        .refused(Refusal::HttpConnectionsFull);
    if tls || sys::prepare(&tcp).is_err() {
        return;
    }
    let _ = sys::recv(&tcp, &mut runtime.read_buffer.borrow_mut()[..]);
    let mut out = Vec::new();
    http1::write_json_error(
        503,
        "too many connections are in the HTTP phase on this worker; retry shortly",
        false,
        &mut out,
    );
    let _ = sys::send_vectored(&tcp, &[io::IoSlice::new(&out)]);
    sys::shutdown(&tcp, std::net::Shutdown::Write);
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
            match stream.read_more(runtime, buffer).await {
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
        match monoio::time::timeout(KEEP_ALIVE_IDLE, stream.read_more(runtime, buffer)).await {
            Ok(Ok(read)) if read > 0 => {}
            _ => return None,
        }
    }
    Some(Instant::now() + settings.handshake_timeout)
}
