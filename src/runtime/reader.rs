//! A WebSocket connection's reader: the one loop that serves plain and TLS connections
//! alike, over the connection transport ([`Stream`]).
//!
//! Responsibility: wait for input, receive into the worker's pooled read buffer (an idle
//! connection holds none; only a split frame's bytes are kept, in the session), and hand
//! what arrived to the sans-IO frame reader and the broker. Up to [`READS_BEFORE_YIELD`]
//! reads that filled the buffer run back to back before other tasks get a turn; each read
//! requests a flush, so the frames of several reads join one write per subscriber; an
//! urgent flush is written before reading on; reading pauses while the mesh outbox is
//! congested. Writes happen in `writer`; this loop never waits on a write.
//!
//! Must not: hold the pooled buffer's borrow across an await.

use super::stream::{Received, Stream};
use super::WorkerRuntime;
use crate::broker::session::Session;
use crate::broker::worker::Verdict;
use crate::error::CloseKind;
use crate::metrics::WorkerMetrics;
use crate::protocol::frame::Progress;
use std::io;
use std::rc::Rc;

/// Consecutive full-buffer reads before the reader lets other tasks run.
pub(super) const READS_BEFORE_YIELD: u32 = 4;

/// Runs the reader until the peer goes away, the close completes or the transport fails.
/// `closing`: the session is closing already (bytes that arrive are then discarded).
pub(super) async fn read_websocket(
    runtime: &Rc<WorkerRuntime>,
    stream: &Stream,
    session: &Rc<Session>,
    mut closing: bool,
) {
    let mut full_reads = 0;
    loop {
        if runtime.broker.outbox.is_congested() {
            // Backpressure: paused until the outbox drains below its high water (it
            // wakes this task then).
            runtime.broker.outbox.uncongested().await;
        }
        let result = {
            let mut pool = runtime.read_buffer.borrow_mut();
            let result = stream.receive(runtime.broker.metrics(), &mut pool[..]);
            let usable = match &result {
                Ok(_) => true,
                Err(error) => error.kind() == io::ErrorKind::WouldBlock,
            };
            if usable && stream.has_output() {
                // Records rustls made while reading (a key update answer): the writer
                // sends them.
                runtime.broker.mark_dirty(session);
                runtime.request_flush();
            }
            match result {
                Ok(Received { bytes: 0, .. }) => Ok(None),
                Ok(Received { bytes, more }) => {
                    if closing || session.closing.get().is_some() {
                        closing = true;
                    } else {
                        closing = ingest(runtime, session, &mut pool[..bytes]);
                    }
                    Ok(Some(more))
                }
                Err(error) => Err(error),
            }
        };
        match result {
            Ok(None) => break,
            Ok(Some(more)) => {
                // The frames of several reads join one write per subscriber (measured in
                // `topics`: 4 deliveries per send when every full read was flushed at once,
                // 20 now). Queues stay bounded: a subscriber past half its
                // `maxPendingBytes` makes the flush urgent, and then a reader writes before
                // it reads on (under epoll, `readable` may not yield), so one read buffer is
                // the most it adds.
                if runtime.broker.flush_is_urgent() {
                    super::writer::flush(runtime);
                }
                runtime.request_flush();
                if more && full_reads < READS_BEFORE_YIELD {
                    full_reads += 1;
                    continue;
                }
                full_reads = 0;
                if stream.wait_input(more).await.is_err() {
                    break;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                full_reads = 0;
                if stream.wait_input(false).await.is_err() {
                    break;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

/// Processes freshly read bytes (in the pooled buffer or appended to the split frame).
/// Returns whether the session is closing.
pub(super) fn ingest(runtime: &WorkerRuntime, session: &Rc<Session>, fresh: &mut [u8]) -> bool {
    runtime.refresh_clock();
    session.last_seen_tick.set(runtime.broker.tick.get());
    WorkerMetrics::add(&runtime.broker.metrics().bytes_in, fresh.len() as u64);
    let mut partial = session.partial.borrow_mut();
    if partial.is_empty() {
        let (consumed, closing) = process(runtime, session, fresh);
        if !closing && consumed < fresh.len() {
            partial.extend_from_slice(&fresh[consumed..]);
        }
        closing
    } else {
        partial.extend_from_slice(fresh);
        let (consumed, closing) = process(runtime, session, &mut partial);
        if closing {
            *partial = Vec::new();
        } else {
            partial.drain(..consumed);
            if partial.is_empty() {
                // Give the memory back: an idle connection holds no buffer.
                *partial = Vec::new();
            }
        }
        closing
    }
}

/// Feeds `data` to the session's frame reader and the broker. Returns the number of bytes
/// consumed and whether the session is closing.
fn process(runtime: &WorkerRuntime, session: &Rc<Session>, data: &mut [u8]) -> (usize, bool) {
    let max = session.app().limits.max_message_bytes as usize;
    let mut frames = session.frames.borrow_mut();
    let mut offset = 0;
    loop {
        match frames.read(&mut data[offset..], max) {
            Ok(Progress::NeedMore) => return (offset, false),
            Ok(Progress::Fragment { consumed }) => offset += consumed,
            Ok(Progress::Message { message, consumed }) => {
                offset += consumed;
                if runtime.broker.on_message(session, message) == Verdict::Closing {
                    return (offset, true);
                }
            }
            Err(error) => {
                runtime.broker.close(session, CloseKind::from(&error));
                return (offset, true);
            }
        }
    }
}
