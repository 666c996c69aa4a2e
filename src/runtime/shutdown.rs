//! The end of a worker: hand over what is in flight, then close every connection.
//!
//! Responsibility: [`quiesce`] (every worker's outbox delivered before any 1001 close) and
//! [`shut_down`] (stop accepting, close sessions in batches, wait for the close
//! handshakes), both bounded by `server.shutdownDeadlineSeconds`.

use super::{sys, writer, WorkerRuntime, SHUTDOWN_BATCH_INTERVAL, SHUTDOWN_BATCH_SIZE};
use crate::broker::mesh::{Mailbox, DRAIN_BATCH};
use std::future::{poll_fn, Future};
use std::net::Shutdown;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

/// The first step of a shutdown, before any connection is closed: hand this worker's outbox
/// to the other workers, then keep taking in what they hand over until every worker has
/// done the same. A publication answered (`200` or an ack) before the shutdown was asked
/// for is thereby delivered on every worker before its 1001 closes (without this, a worker
/// could close its subscribers while the publication still sat in another one's outbox).
/// Bounded by the shutdown deadline.
///
/// Nothing here polls: the worker sleeps until its mailbox is woken — by a message, by a
/// worker that drained its own mailbox (room for this worker's outbox) or by one that
/// counted itself — or until the deadline. Its own mailbox is drained on every turn, so
/// two workers whose outboxes wait for each other's full mailboxes both make progress.
pub(super) async fn quiesce(
    runtime: &Rc<WorkerRuntime>,
    mailbox: &Mailbox,
    quiesced: &AtomicUsize,
    give_up: Instant,
) {
    let outbox = &runtime.broker.outbox;
    let me = runtime.broker.index;
    let mut deadline = std::pin::pin!(monoio::time::sleep(
        give_up.saturating_duration_since(Instant::now())
    ));
    let mut batch = Vec::with_capacity(DRAIN_BATCH);
    let mut counted = false;
    let mut late = false;
    loop {
        // Read before draining: once every worker has counted itself, everything they
        // handed over is already in this mailbox.
        let everyone = counted && quiesced.load(Ordering::Acquire) >= outbox.workers();
        let mut drained = false;
        loop {
            mailbox.drain(DRAIN_BATCH, &mut batch);
            if batch.is_empty() {
                break;
            }
            drained = true;
            // The shutdown already under way is the only one there is.
            runtime.handle_mesh_batch(&mut batch);
        }
        // Writes what the batch queued and hands this worker's outbox over.
        writer::flush(runtime);
        if drained {
            outbox.wake_others(me);
        }
        if !counted && (outbox.queued() == 0 || late) {
            quiesced.fetch_add(1, Ordering::AcqRel);
            counted = true;
            outbox.wake_others(me);
            continue;
        }
        if everyone || late {
            return;
        }
        late = poll_fn(|cx| {
            if mailbox.poll_wait(cx).is_ready() {
                Poll::Ready(false)
            } else {
                deadline.as_mut().poll(cx).map(|()| true)
            }
        })
        .await;
    }
}

/// Graceful shutdown of one worker: stop accepting, end plain HTTP connections, close
/// sessions with 1001 in batches (queued frames go out before each close frame), then wait
/// for the close handshakes — all within `deadline`.
pub(super) async fn shut_down(runtime: &Rc<WorkerRuntime>, give_up: Instant) {
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
        if remaining == 0 || Instant::now() >= give_up {
            break;
        }
        monoio::time::sleep(SHUTDOWN_BATCH_INTERVAL).await;
    }
    while !runtime.connections.borrow().is_empty() && Instant::now() < give_up {
        monoio::time::sleep(Duration::from_millis(20)).await;
        writer::flush(runtime);
    }
}
