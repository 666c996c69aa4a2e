//! One answer handed from one thread to a task on another: a worker's answer to an admin
//! call, the control thread's reload outcome.
//!
//! Responsibility: [`answer`] makes a one-shot channel whose receiving end ([`Answer`]) is a
//! runtime-agnostic future, woken by the sender's answer or drop — so a monoio worker, the
//! bus thread's tokio task and (with [`Answer::wait_blocking`]) a plain thread all wait
//! without polling, and the broker names no executor. Bounded by construction: one value.
//! (futures-channel's `oneshot` would do the same, but it is not in the dependency tree;
//! this is a slot, a flag and the `atomic-waker` the mesh already uses.)

use atomic_waker::AtomicWaker;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

/// A one-shot channel for one answer from another thread (a worker's answer to an admin
/// call, carried in `MeshMessage::Terminate` and `BusCommand::Terminate`). The
/// receiving [`Answer`] is a future that the sender's answer (or drop) wakes, so a monoio
/// worker and the bus's tokio task alike wait without polling; runtime-agnostic, so the
/// broker names no executor.
pub fn answer<T>() -> (AnswerSender<T>, Answer<T>) {
    let slot = Arc::new(AnswerSlot {
        value: Mutex::new(None),
        done: AtomicBool::new(false),
        waker: AtomicWaker::new(),
    });
    (AnswerSender(slot.clone()), Answer(slot))
}

struct AnswerSlot<T> {
    value: Mutex<Option<T>>,
    /// Set once the sender is gone, answered or not (after `value` is written).
    done: AtomicBool,
    waker: AtomicWaker,
}

/// The answering end: [`AnswerSender::send`] once, or drop it unanswered.
pub struct AnswerSender<T>(Arc<AnswerSlot<T>>);

impl<T> AnswerSender<T> {
    /// Answers and wakes the asker. An asker that gave up waiting is not an error.
    pub fn send(self, value: T) {
        *self.0.value.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
        // Dropping `self` marks the answer done and wakes the asker.
    }
}

impl<T> Drop for AnswerSender<T> {
    fn drop(&mut self) {
        self.0.done.store(true, Ordering::Release);
        self.0.waker.wake();
    }
}

/// The asking end: resolves to the answer, or to `None` when the sender was dropped
/// unanswered. Wrap it in the executor's timeout to bound the wait.
pub struct Answer<T>(Arc<AnswerSlot<T>>);

impl<T> Future for Answer<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        // Registered before `done` is read: a sender finishing in between wakes this task.
        self.0.waker.register(cx.waker());
        if !self.0.done.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        Poll::Ready(
            self.0
                .value
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        )
    }
}

impl<T> Answer<T> {
    /// Blocks the calling thread until the answer comes or the sender is dropped: for a
    /// thread without an executor (an embedder's `ServerHandle::reload`), never a worker.
    pub fn wait_blocking(mut self) -> Option<T> {
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(value) = Pin::new(&mut self).poll(&mut cx) {
                return value;
            }
            // Returns at once when the wake came first; a spurious return polls again.
            std::thread::park();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `answer` once with a waker that records whether it was woken.
    fn poll_once<T>(answer: &mut Answer<T>, woken: &Arc<Woken>) -> Poll<Option<T>> {
        let waker = std::task::Waker::from(woken.clone());
        Pin::new(answer).poll(&mut Context::from_waker(&waker))
    }

    #[derive(Default)]
    struct Woken(AtomicBool);

    impl std::task::Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::Release);
        }
    }

    #[test]
    fn an_answer_from_another_thread_wakes_the_asker() {
        let (reply, mut answer) = answer::<bool>();
        let woken = Arc::new(Woken::default());
        assert_eq!(poll_once(&mut answer, &woken), Poll::Pending);
        std::thread::spawn(move || reply.send(true)).join().unwrap();
        assert!(
            woken.0.load(Ordering::Acquire),
            "the sender woke the waiting task"
        );
        assert_eq!(poll_once(&mut answer, &woken), Poll::Ready(Some(true)));
    }

    #[test]
    fn a_dropped_sender_ends_the_wait_unanswered() {
        let (reply, mut answer) = answer::<bool>();
        let woken = Arc::new(Woken::default());
        assert_eq!(poll_once(&mut answer, &woken), Poll::Pending);
        drop(reply); // the worker ended or gave the call up
        assert!(woken.0.load(Ordering::Acquire));
        assert_eq!(poll_once(&mut answer, &woken), Poll::Ready(None));
    }

    #[test]
    fn an_answer_sent_before_the_first_poll_is_kept() {
        let (reply, mut answer) = answer::<u8>();
        reply.send(7);
        let woken = Arc::new(Woken::default());
        assert_eq!(poll_once(&mut answer, &woken), Poll::Ready(Some(7)));
    }

    #[test]
    fn a_thread_without_an_executor_blocks_until_the_answer() {
        let (reply, outcome) = answer::<&str>();
        let answering = std::thread::spawn(move || reply.send("done"));
        assert_eq!(outcome.wait_blocking(), Some("done"));
        answering.join().unwrap();
        let (reply, outcome) = answer::<&str>();
        std::thread::spawn(move || drop(reply)).join().unwrap();
        assert_eq!(outcome.wait_blocking(), None, "dropped unanswered");
    }
}
