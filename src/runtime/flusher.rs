//! The flusher task: when and in what chunks a worker writes its dirty sessions.
//!
//! Responsibility: run the flush cycles that `WorkerRuntime::request_flush` asks for,
//! holding a large cycle's successor back by `server.flushIntervalMicros` (batching); the
//! writes themselves are `writer`'s. Must not: write a session twice per cycle.

use super::{writer, WorkerRuntime};
use std::rc::Rc;
use std::time::Duration;

/// Runs requested flushes (see [`WorkerRuntime::request_flush`]) in cycles. A cycle
/// writes the sessions that were dirty when it started — each once — at most
/// [`writer::FLUSH_CHUNK_SESSIONS`] per turn, letting the tasks that became ready run
/// between turns (readers with new publications, HTTP requests): frames they queue for
/// sessions still waiting join their one write; sessions they dirty anew wait for the next
/// cycle. After a large cycle (at least [`writer::COALESCE_MIN_SESSIONS`] sessions), the
/// next one starts no sooner than `interval` (`server.flushIntervalMicros`) after it
/// ended, so what arrives within it leaves in one send per subscriber; after a small cycle,
/// or a quiet spell, the next flush starts at once, so light traffic is never delayed.
pub(super) async fn flusher(runtime: Rc<WorkerRuntime>, interval: Duration) {
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
