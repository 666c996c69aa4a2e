//! Draining sessions' outbound queues into their sockets.
//!
//! Responsibility: after each batch of work (one read, one mesh drain, one tick), write
//! every session that got frames — once each, with one vectored send of up to
//! [`IOVECS_PER_SEND`] frames per call, through the connection's transport (`stream`:
//! plain or TLS, one write path for both) — and hand the outbox to other workers. A socket
//! that cannot take everything gets a writer task that waits for writability; nothing
//! else waits for it. It must not parse or build frames.

use super::frame_file::{FrameFile, SENDFILE_MIN_BYTES};
use super::stream::Stream;
use super::sys;
use super::uring_send;
use super::WorkerRuntime;
use crate::broker::outbound::OutboundQueue;
use crate::broker::session::Session;
use crate::error::CloseKind;
use crate::metrics::WorkerMetrics;
use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::os::fd::RawFd;
use std::rc::Rc;

/// Frames per `sendmsg`: the kernel's `UIO_MAXIOV`, so a subscriber's backlog after one
/// read of publications leaves in one call (measured: at 64, a saturated fan-out with
/// ~280 publications per read spent 4.4 `sendmsg` per subscriber per read).
pub const IOVECS_PER_SEND: usize = 1024;

/// Outcome of writing one session.
enum Drained {
    /// Queue empty.
    Empty,
    /// Socket full; frames remain.
    Blocked,
    /// The peer is gone.
    Failed,
}

/// Writes one session's queue through its transport until the queue is empty or the
/// socket full: first what the transport holds (TLS records), then up to
/// [`IOVECS_PER_SEND`] frames per call — one `sendmsg` (or `sendfile` for a run of
/// frame-file frames) on plain connections, one encryption into the rustls buffer on TLS.
fn write_session(runtime: &WorkerRuntime, session: &Session) -> Drained {
    let Some(stream) = runtime.stream_of(session) else {
        return Drained::Failed;
    };
    loop {
        match stream.send_held() {
            Ok(true) => {}
            Ok(false) => return Drained::Blocked,
            Err(_) => return Drained::Failed,
        }
        let outbound = session.outbound.borrow();
        if outbound.is_empty() {
            return Drained::Empty;
        }
        let run = if stream.encrypts() {
            None
        } else {
            runtime
                .frame_file
                .as_deref()
                .and_then(|file| file_run(file, &outbound))
        };
        let result = match run {
            Some(run) => {
                let sent = stream.send_file(run.fd, run.offset, run.len);
                if let Ok(bytes) = sent {
                    let metrics = runtime.broker.metrics();
                    WorkerMetrics::add(&metrics.zero_copy_bytes_out, bytes as u64);
                }
                sent
            }
            None => stream.send_frames(&unwritten_slices(&outbound)),
        };
        drop(outbound);
        match result {
            Ok(written) => {
                let metrics = runtime.broker.metrics();
                WorkerMetrics::add(&metrics.bytes_out, written as u64);
                if !stream.encrypts() {
                    // One `sendmsg`/`sendfile` (on TLS, an encryption: no syscall).
                    WorkerMetrics::add(&metrics.writes, 1);
                }
                session.outbound.borrow_mut().advance(written);
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Drained::Blocked,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Drained::Failed,
        }
    }
}

/// Writes one session now; parks a writer task if the socket is full. Clears its `dirty`
/// flag: frames queued from here on list it again.
fn flush_session(runtime: &Rc<WorkerRuntime>, session: &Rc<Session>) {
    session.dirty.set(false);
    // Observed before the parked check: the longest queues are the parked ones.
    runtime
        .broker
        .metrics()
        .observe_pending(session.outbound.borrow().pending_bytes() as u64);
    if session.writer_parked.get() {
        return;
    }
    if uring_candidate(runtime, session) {
        session.writer_parked.set(true);
        monoio::spawn(uring_writer(runtime.clone(), session.clone()));
        return;
    }
    match write_session(runtime, session) {
        Drained::Empty => finish_if_closing(runtime, session),
        Drained::Blocked => {
            session.writer_parked.set(true);
            monoio::spawn(park_writer(runtime.clone(), session.clone()));
        }
        Drained::Failed => lost(runtime, session),
    }
}

/// After the close frame is out, half-close so the peer sees it and ends the connection.
fn finish_if_closing(runtime: &WorkerRuntime, session: &Session) {
    if session.closing.get().is_some() {
        if let Some(stream) = runtime.stream_of(session) {
            stream.shutdown_write();
        }
    }
}

fn lost(runtime: &WorkerRuntime, session: &Rc<Session>) {
    runtime.broker.close(session, CloseKind::ConnectionLost);
    session.outbound.borrow_mut().clear();
    if let Some(stream) = runtime.stream_of(session) {
        sys::shutdown(&*stream, Shutdown::Both);
    }
}

async fn park_writer(runtime: Rc<WorkerRuntime>, session: Rc<Session>) {
    loop {
        let Some(stream) = runtime.stream_of(&session) else {
            break;
        };
        if stream.wait_output().await.is_err() {
            lost(&runtime, &session);
            break;
        }
        drop(stream);
        match write_session(&runtime, &session) {
            Drained::Blocked => continue,
            Drained::Empty => {
                finish_if_closing(&runtime, &session);
                break;
            }
            Drained::Failed => {
                lost(&runtime, &session);
                break;
            }
        }
    }
    session.writer_parked.set(false);
    // Closes found while writing (e.g. presence to a slow consumer) queued more work.
    flush(&runtime);
}

/// Whether `session` is written with io_uring operations (`server.ioUringSends` under the
/// io_uring driver, EXPERIMENTAL): a plain connection with frames queued whose front is not
/// a frame-file run (those keep `sendfile`; io_uring has no such operation).
fn uring_candidate(runtime: &WorkerRuntime, session: &Session) -> bool {
    if runtime.uring_sends.is_none() {
        return false;
    }
    let Some(stream) = runtime.stream_of(session) else {
        return false;
    };
    let outbound = session.outbound.borrow();
    let file_front = runtime
        .frame_file
        .as_deref()
        .and_then(|file| file_run(file, &outbound))
        .is_some();
    !stream.encrypts() && !outbound.is_empty() && !file_front
}

/// EXPERIMENTAL (`server.ioUringSends`): writes one session's queue with io_uring `writev`
/// operations, one in flight at a time, while the session counts as parked (no other
/// write touches its queue). The queue's frames stay queued while the kernel may send
/// them (`OutboundQueue::begin_send`/`finish_send`). A full socket (`WouldBlock`, or a
/// partial write) waits for writability; once what was queued is out, frames queued
/// meanwhile wait for the next flush cycle, as on the `sendmsg` path.
async fn uring_writer(runtime: Rc<WorkerRuntime>, session: Rc<Session>) {
    let outcome = loop {
        let (Some(buffers), Some(stream)) = (&runtime.uring_sends, runtime.stream_of(&session))
        else {
            break Drained::Failed;
        };
        let buffer = {
            let mut outbound = session.outbound.borrow_mut();
            if outbound.is_empty() {
                break Drained::Empty;
            }
            let buffer = buffers.fill(&outbound, IOVECS_PER_SEND);
            outbound.begin_send(buffer.frames());
            buffer
        };
        let submitted = buffer.bytes();
        let (result, buffer) = uring_send::send(&stream, buffer).await;
        buffers.give_back(buffer);
        let written = *result.as_ref().unwrap_or(&0);
        session.outbound.borrow_mut().finish_send(written);
        match result {
            Ok(written) => {
                let metrics = runtime.broker.metrics();
                WorkerMetrics::add(&metrics.bytes_out, written as u64);
                WorkerMetrics::add(&metrics.writes, 1);
                WorkerMetrics::add(&metrics.uring_sends, 1);
                if written == submitted {
                    break Drained::Empty;
                }
                if !wait_for_room(&stream).await {
                    break Drained::Failed;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                if !wait_for_room(&stream).await {
                    break Drained::Failed;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break Drained::Failed,
        }
    };
    session.writer_parked.set(false);
    match outcome {
        Drained::Failed => lost(&runtime, &session),
        _ if session.outbound.borrow().is_empty() => finish_if_closing(&runtime, &session),
        _ => {
            runtime.broker.mark_dirty(&session);
            runtime.request_flush();
        }
    }
}

async fn wait_for_room(stream: &Stream) -> bool {
    stream.wait_output().await.is_ok()
}

/// Sessions the flusher task writes per turn before letting ready tasks run (see
/// `runtime::flusher`). 64 sessions take ~0.5 ms at ~8 µs per loopback `sendmsg`, so a
/// reader or an HTTP request waits at most that long, while a fan-out to thousands of
/// sessions spans many turns and what arrives during it is coalesced.
pub const FLUSH_CHUNK_SESSIONS: usize = 64;
/// A flush cycle that wrote at least this many sessions makes the next one wait for the
/// rest of `flushIntervalMicros`: only then does coalescing pay (one send saved per
/// subscriber per publication that joins). Smaller cycles — a few subscribers, fan-in,
/// request/response — start at once, so their latency is never traded (measured: fan-in
/// p50 0.09 ms without the wait, 2.2 ms with it at 1,000 µs).
pub const COALESCE_MIN_SESSIONS: usize = FLUSH_CHUNK_SESSIONS;

/// Starts a flush cycle: takes the sessions that are dirty now, in the order they became
/// dirty; returns how many the cycle holds. Sessions dirtied later wait for the next one.
pub fn start_cycle(runtime: &Rc<WorkerRuntime>) -> usize {
    runtime.broker.clear_flush_urgency();
    let mut to_write = runtime.to_write.borrow_mut();
    runtime.broker.take_dirty(&mut to_write);
    to_write.len()
}

/// Writes up to `limit` sessions of the current cycle and hands the outbox over. Returns
/// whether sessions of the cycle remain.
pub fn write_some(runtime: &Rc<WorkerRuntime>, limit: usize) -> bool {
    for _ in 0..limit {
        let next = runtime.to_write.borrow_mut().pop_front();
        let Some(session) = next else {
            break;
        };
        flush_session(runtime, &session);
    }
    flush_outbox(runtime);
    !runtime.to_write.borrow().is_empty()
}

/// Flushes every dirty session and the mesh outbox now.
pub fn flush(runtime: &Rc<WorkerRuntime>) {
    while start_cycle(runtime) > 0 {
        write_some(runtime, usize::MAX);
    }
    flush_outbox(runtime);
}

/// The end of a flush step: gives emptied frame-file chunks back (their last frames were
/// just written) and hands the outbox over.
fn flush_outbox(runtime: &Rc<WorkerRuntime>) {
    if let Some(file) = &runtime.frame_file {
        file.reclaim();
    }
    runtime
        .broker
        .metrics()
        .observe_outbox(runtime.broker.outbox.queued() as u64);
    if runtime.broker.outbox.flush() > 0 && !runtime.outbox_retry.replace(true) {
        monoio::spawn(retry_outbox(runtime.clone()));
    }
}

/// Hands the outbox over until empty while other workers' mailboxes are full: waits for
/// a full destination's drain to make room (a waker, no polling), then flushes again.
async fn retry_outbox(runtime: Rc<WorkerRuntime>) {
    loop {
        runtime.broker.outbox.room().await;
        if runtime.broker.outbox.flush() == 0 {
            break;
        }
    }
    runtime.outbox_retry.set(false);
}

/// The session's queued frames not yet written, as up to [`IOVECS_PER_SEND`] slices (the
/// front frame from where the last partial write stopped).
pub(super) fn unwritten_slices(outbound: &OutboundQueue) -> Vec<IoSlice<'_>> {
    let mut slices = Vec::with_capacity(outbound.len().min(IOVECS_PER_SEND));
    slices.extend(outbound.unwritten().take(IOVECS_PER_SEND).map(IoSlice::new));
    slices
}

/// A run of queued frames that lie back to back in the worker's frame file.
struct FileRun {
    fd: RawFd,
    offset: u64,
    len: usize,
}

/// The run of file frames at the front of the queue (from where the last partial write
/// stopped), when it is long enough for `sendfile` to beat a copy ([`SENDFILE_MIN_BYTES`]).
fn file_run(file: &FrameFile, outbound: &OutboundQueue) -> Option<FileRun> {
    let mut frames = outbound.frames().take(IOVECS_PER_SEND);
    let first = frames.next()?.span().filter(|span| file.holds(span))?;
    let offset = first.offset() + outbound.written_of_front() as u64;
    let mut end = first.offset() + first.len() as u64;
    for frame in frames {
        match frame.span() {
            Some(span) if span.same_store(first) && span.offset() == end => {
                end += span.len() as u64;
            }
            _ => break,
        }
    }
    let len = (end - offset) as usize;
    (len >= SENDFILE_MIN_BYTES).then(|| FileRun {
        fd: file.fd(),
        offset,
        len,
    })
}
