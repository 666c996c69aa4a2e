//! A session's outbound queue: the frames waiting to be written and their byte count.
//!
//! Responsibility: own the queued frames, the bytes not yet written (what
//! `maxPendingBytes` bounds) and how much of the front frame a partial write already sent.
//! Every change goes through a method that keeps the three consistent. It must not write:
//! the runtime's writer reads [`OutboundQueue::unwritten`] (or [`OutboundQueue::frames`]
//! from [`OutboundQueue::written_of_front`] for file runs), writes what the socket takes,
//! and reports the count with [`OutboundQueue::advance`].
//!
//! Invariants: `pending_bytes` is the sum of the queued frames' lengths minus
//! `written_of_front`; `written_of_front` is below the front frame's length, and 0 when the
//! queue is empty. Memory: an empty queue holds no buffer once
//! [`OutboundQueue::release_if_drained`] ran (the worker's tick calls it), so an idle
//! connection costs only the struct.

use super::frame_store::FileSpan;
use bytes::Bytes;
use std::collections::VecDeque;
use std::rc::Rc;

/// One encoded frame in a session's outbound queue. Every local subscriber of a fan-out
/// holds the same one through a non-atomic count: a publication costs one atomic `Bytes`
/// reference per worker, not one per subscriber (measured: `Bytes` clone and drop were
/// 7.6 % of a saturated fan-out core), and a queue slot is one pointer, not four. A frame
/// of a large fan-out is also in the runtime's frame store (see [`super::frame_store`]),
/// so the writer can send runs of them without copying.
#[derive(Clone)]
pub struct QueuedFrame(Rc<Queued>);

struct Queued {
    bytes: Bytes,
    span: Option<FileSpan>,
}

impl QueuedFrame {
    /// A frame, and where it also is in the worker's frame store (if it is).
    pub fn new(bytes: Bytes, span: Option<FileSpan>) -> Self {
        QueuedFrame(Rc::new(Queued { bytes, span }))
    }

    /// Where the frame is in the worker's frame store, if it is.
    #[inline]
    pub fn span(&self) -> Option<&FileSpan> {
        self.0.span.as_ref()
    }
}

impl From<Bytes> for QueuedFrame {
    fn from(bytes: Bytes) -> Self {
        QueuedFrame::new(bytes, None)
    }
}

impl std::ops::Deref for QueuedFrame {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        &self.0.bytes
    }
}

/// A push refused because it would take the queue past its byte limit (the frame is
/// dropped; the caller closes the session as a slow consumer).
#[derive(Debug, PartialEq, Eq)]
pub struct Overflow;

/// Frames waiting to be written to one connection, shared with every other subscriber
/// (no copy), with their unwritten byte count. See the module's invariants.
#[derive(Default)]
pub struct OutboundQueue {
    /// Its buffer outlives a drain (a busy subscriber does not regrow it per batch) and is
    /// released by [`OutboundQueue::release_if_drained`].
    frames: VecDeque<QueuedFrame>,
    /// Bytes queued and not yet written; bounded by `maxPendingBytes` through
    /// [`OutboundQueue::push_within`].
    pending_bytes: usize,
    /// Bytes of the front frame already written (a frame is at most `maxMessageBytes`,
    /// 16 MiB, plus its header: `u32`, so that it and `in_flight` share one word and an
    /// idle session stays at its size).
    written_of_front: u32,
    /// Front frames handed to a send that has not completed yet (an io_uring operation,
    /// `server.ioUringSends`): the kernel may still send any of them, so none may be
    /// dropped before [`OutboundQueue::finish_send`]. 0 when no send is in flight.
    in_flight: u32,
}

impl OutboundQueue {
    pub fn new() -> OutboundQueue {
        OutboundQueue::default()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Frames queued (the front one counts while partly written).
    #[inline]
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Bytes queued and not yet written.
    #[inline]
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Bytes of the front frame already written (0 when none was partly written).
    #[inline]
    pub fn written_of_front(&self) -> usize {
        self.written_of_front as usize
    }

    /// Queues `frame` whatever the limit (the close frame: it must go out). Returns the
    /// pending bytes.
    pub fn push(&mut self, frame: QueuedFrame) -> usize {
        self.pending_bytes += frame.len();
        self.frames.push_back(frame);
        self.pending_bytes
    }

    /// Queues `frame` unless that takes the pending bytes past `max_pending_bytes`; returns
    /// the pending bytes.
    #[inline]
    pub fn push_within(
        &mut self,
        frame: QueuedFrame,
        max_pending_bytes: u64,
    ) -> Result<usize, Overflow> {
        let pending = self.pending_bytes + frame.len();
        if pending as u64 > max_pending_bytes {
            return Err(Overflow);
        }
        self.pending_bytes = pending;
        self.frames.push_back(frame);
        Ok(pending)
    }

    /// Records that the writer sent the next `written` bytes: pops every frame completed,
    /// remembers how far into the next one it got. More than is pending (a writer bug)
    /// empties the queue.
    pub fn advance(&mut self, mut written: usize) {
        debug_assert!(written <= self.pending_bytes, "wrote more than was queued");
        self.pending_bytes = self.pending_bytes.saturating_sub(written);
        while written > 0 {
            let Some(front) = self.frames.front() else {
                break;
            };
            let left = front.len() - self.written_of_front as usize;
            if written < left {
                // Below the front frame's length, which fits a `u32` (see the field).
                self.written_of_front += written as u32;
                return;
            }
            written -= left;
            self.frames.pop_front();
            self.written_of_front = 0;
        }
    }

    /// Records that the first `frames` queued frames (from where the last partial write
    /// stopped) were handed to a send that completes later; until
    /// [`OutboundQueue::finish_send`], [`OutboundQueue::drop_unstarted`] keeps them.
    pub fn begin_send(&mut self, frames: usize) {
        debug_assert_eq!(self.in_flight, 0, "one send in flight at a time");
        // At most `IOVECS_PER_SEND` frames per send.
        self.in_flight = frames.min(self.frames.len()) as u32;
    }

    /// Records that the send of [`OutboundQueue::begin_send`] completed with `written`
    /// bytes (0 when it failed). A queue cleared meanwhile (the connection is gone) has
    /// nothing left to account for and ignores it.
    pub fn finish_send(&mut self, written: usize) {
        if self.in_flight == 0 {
            return;
        }
        self.in_flight = 0;
        self.advance(written);
    }

    /// Whether a send of queued frames is in flight (see [`OutboundQueue::begin_send`]).
    pub fn send_in_flight(&self) -> bool {
        self.in_flight > 0
    }

    /// The bytes not yet written, frame by frame: the front frame from where the last
    /// partial write stopped, then the others whole.
    pub fn unwritten(&self) -> impl Iterator<Item = &[u8]> {
        let skip = self.written_of_front as usize;
        self.frames.iter().enumerate().map(move |(index, frame)| {
            if index == 0 {
                &frame[skip..]
            } else {
                &frame[..]
            }
        })
    }

    /// The queued frames, the front one whole (its written part is
    /// [`OutboundQueue::written_of_front`]).
    pub fn frames(&self) -> impl Iterator<Item = &QueuedFrame> {
        self.frames.iter()
    }

    /// Drops every frame (the connection is gone); returns how many.
    pub fn clear(&mut self) -> usize {
        let dropped = self.frames.len();
        self.frames.clear();
        self.pending_bytes = 0;
        self.written_of_front = 0;
        self.in_flight = 0;
        dropped
    }

    /// Drops the frames the peer has not started to receive, keeping a partly written
    /// front frame whole (a slow consumer's close: its close frame must follow whole
    /// frames) and the frames of a send in flight (the kernel may be sending them);
    /// returns how many were dropped.
    pub fn drop_unstarted(&mut self) -> usize {
        let keep = usize::from(self.written_of_front > 0).max(self.in_flight as usize);
        let dropped = self.frames.len().saturating_sub(keep);
        self.frames.truncate(keep);
        self.pending_bytes = self.frames.iter().map(|frame| frame.len()).sum::<usize>()
            - self.written_of_front as usize;
        dropped
    }

    /// Frees the buffer of an empty queue (a drain keeps it for the next batch; an idle
    /// connection gives it back within a tick).
    pub fn release_if_drained(&mut self) {
        if self.frames.is_empty() && self.frames.capacity() > 0 {
            self.frames = VecDeque::new();
        }
    }

    /// Slots the queue's buffer holds.
    pub fn capacity(&self) -> usize {
        self.frames.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize, fill: u8) -> QueuedFrame {
        Bytes::from(vec![fill; len]).into()
    }

    /// The module's invariant, checked from outside.
    fn assert_consistent(queue: &OutboundQueue) {
        let unwritten: usize = queue.unwritten().map(<[u8]>::len).sum();
        assert_eq!(
            queue.pending_bytes(),
            unwritten,
            "pending == unwritten bytes"
        );
        match queue.frames().next() {
            Some(front) => assert!(queue.written_of_front() < front.len()),
            None => assert_eq!(queue.written_of_front(), 0),
        }
    }

    #[test]
    fn pending_bytes_follow_pushes_and_partial_writes() {
        let mut queue = OutboundQueue::new();
        assert_eq!(queue.push(frame(10, b'a')), 10);
        assert_eq!(queue.push_within(frame(5, b'b'), 100), Ok(15));
        assert_consistent(&queue);
        queue.advance(4);
        assert_eq!(queue.pending_bytes(), 11);
        assert_eq!(queue.written_of_front(), 4);
        assert_eq!(queue.unwritten().next(), Some(&[b'a'; 6][..]));
        assert_consistent(&queue);
        // Finishes the first frame and goes 2 bytes into the second.
        queue.advance(8);
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.written_of_front(), 2);
        assert_eq!(queue.unwritten().collect::<Vec<_>>(), vec![&[b'b'; 3][..]]);
        assert_consistent(&queue);
        queue.advance(3);
        assert!(queue.is_empty());
        assert_eq!(queue.pending_bytes(), 0);
        assert_consistent(&queue);
    }

    #[test]
    fn a_write_ending_on_a_frame_boundary_starts_the_next_frame_fresh() {
        let mut queue = OutboundQueue::new();
        queue.push(frame(3, b'a'));
        queue.push(frame(4, b'b'));
        queue.push(frame(5, b'c'));
        queue.advance(7);
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.written_of_front(), 0);
        assert_eq!(queue.unwritten().next(), Some(&[b'c'; 5][..]));
        assert_consistent(&queue);
    }

    #[test]
    fn a_push_past_the_limit_is_refused_and_changes_nothing() {
        let mut queue = OutboundQueue::new();
        assert_eq!(queue.push_within(frame(60, b'a'), 100), Ok(60));
        assert_eq!(queue.push_within(frame(41, b'b'), 100), Err(Overflow));
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.pending_bytes(), 60);
        assert_eq!(queue.push_within(frame(40, b'c'), 100), Ok(100));
        assert_consistent(&queue);
    }

    /// Regression: the runtime's two `clear()` sites emptied the frames and zeroed the
    /// byte count but left `written_of_front` set, so a frame queued afterwards would have
    /// been sent without its first bytes (and its pending count would no longer match).
    #[test]
    fn clear_forgets_the_partly_written_front() {
        let mut queue = OutboundQueue::new();
        queue.push(frame(10, b'a'));
        queue.advance(3);
        assert_eq!(queue.clear(), 1);
        assert_consistent(&queue);
        queue.push(frame(6, b'b'));
        assert_eq!(queue.written_of_front(), 0);
        assert_eq!(queue.unwritten().next(), Some(&[b'b'; 6][..]), "sent whole");
        assert_consistent(&queue);
        queue.advance(6);
        assert!(queue.is_empty());
        assert_consistent(&queue);
    }

    #[test]
    fn dropping_unstarted_frames_keeps_a_partly_written_front_whole() {
        let mut queue = OutboundQueue::new();
        queue.push(frame(10, b'a'));
        queue.push(frame(10, b'b'));
        queue.push(frame(10, b'c'));
        queue.advance(4);
        assert_eq!(queue.drop_unstarted(), 2);
        assert_eq!(queue.pending_bytes(), 6);
        assert_consistent(&queue);
        queue.push(frame(2, b'z'));
        assert_eq!(queue.pending_bytes(), 8);
        assert_consistent(&queue);

        let mut fresh = OutboundQueue::new();
        fresh.push(frame(10, b'a'));
        assert_eq!(fresh.drop_unstarted(), 1, "nothing started: nothing kept");
        assert_eq!(fresh.pending_bytes(), 0);
        assert_consistent(&fresh);
    }

    #[test]
    fn frames_of_a_send_in_flight_survive_a_drop_and_are_accounted_at_completion() {
        let mut queue = OutboundQueue::new();
        queue.push(frame(10, b'a'));
        queue.push(frame(10, b'b'));
        queue.push(frame(10, b'c'));
        queue.advance(4);
        queue.begin_send(2);
        assert!(queue.send_in_flight());
        queue.push(frame(10, b'd'));
        assert_eq!(queue.drop_unstarted(), 2, "c and d: not handed to the send");
        assert_eq!(queue.pending_bytes(), 16);
        assert_consistent(&queue);
        queue.push(frame(2, b'z'));
        // The kernel sent the rest of a and 3 bytes of b.
        queue.finish_send(9);
        assert!(!queue.send_in_flight());
        assert_eq!(queue.written_of_front(), 3);
        assert_eq!(queue.pending_bytes(), 9);
        assert_consistent(&queue);
    }

    #[test]
    fn a_send_completing_after_a_clear_changes_nothing() {
        let mut queue = OutboundQueue::new();
        queue.push(frame(10, b'a'));
        queue.begin_send(1);
        queue.clear();
        assert!(!queue.send_in_flight());
        queue.finish_send(10);
        assert!(queue.is_empty());
        assert_consistent(&queue);
    }

    #[test]
    fn a_drained_queue_gives_its_buffer_back() {
        let mut queue = OutboundQueue::new();
        assert_eq!(queue.capacity(), 0, "a new queue holds no buffer");
        queue.push(frame(4, b'a'));
        queue.release_if_drained();
        assert!(queue.capacity() > 0, "a queue with frames keeps its buffer");
        queue.advance(4);
        assert!(
            queue.capacity() > 0,
            "a drain keeps the buffer for the next batch"
        );
        queue.release_if_drained();
        assert_eq!(queue.capacity(), 0);
    }
}
