//! Frame-file space as the broker sees it: a store the runtime provides, and the opaque
//! handle a queued frame keeps.
//!
//! Responsibility: let the fan-out put each frame of a large fan-out in the runtime's frame
//! file once ([`FrameStore::store`], implemented by `runtime::frame_file`) and carry the
//! returned [`FileSpan`] — where the copy is — through every subscriber's queue, so the
//! writer can send runs of such frames without copying. It must not do I/O: dropping the
//! last handle of a chunk only lists the chunk in the [`SpanLedger`]; the runtime empties
//! listed chunks (`fallocate`) when it reclaims, after each flush step.
//!
//! Invariants: a chunk's live count is the number of handles alive in it (plus one that
//! the runtime holds on a chunk it could not empty); a chunk is listed at most once until
//! the runtime takes the list, so the release list is bounded by the number of chunks.

use bytes::Bytes;
use std::cell::Cell;
use std::rc::Rc;

/// Local subscribers a frame must have before it is written to the frame file: below this,
/// a run of its frames rarely reaches the runtime's `sendfile` threshold and the extra
/// write is not repaid.
pub const ZERO_COPY_MIN_SUBSCRIBERS: usize = 32;

/// Where frames of large fan-outs are kept for zero-copy sends; the runtime implements it
/// (`runtime::frame_file::FrameFile`). Called once per fan-out of at least
/// [`ZERO_COPY_MIN_SUBSCRIBERS`] local subscribers, never per delivery.
pub trait FrameStore {
    /// Copies `frame` into the store; the handle keeps its space until dropped. On `Err`
    /// the frame is queued from memory only.
    fn store(&self, frame: &Bytes) -> Result<FileSpan, NotStored>;
}

/// Why a frame was not put in the store (it is then sent from memory).
#[derive(Debug, PartialEq, Eq)]
pub enum NotStored {
    /// Empty, or larger than a chunk.
    Size,
    /// Every chunk but the current one still holds frames some queue has not sent.
    Full,
    /// The write to the file failed or was short.
    WriteFailed,
}

/// The live frames per chunk of one store, and the chunks whose last frame was dropped
/// since the runtime last looked (the release list: one flag per chunk).
pub struct SpanLedger {
    live: Box<[Cell<u32>]>,
    released: Box<[Cell<bool>]>,
    any_released: Cell<bool>,
}

impl SpanLedger {
    /// A ledger for a store of `chunks` chunks, none holding frames.
    pub fn new(chunks: usize) -> Rc<SpanLedger> {
        Rc::new(SpanLedger {
            live: (0..chunks).map(|_| Cell::new(0)).collect(),
            released: (0..chunks).map(|_| Cell::new(false)).collect(),
            any_released: Cell::new(false),
        })
    }

    /// A handle for a frame the store just wrote: `len` bytes at `offset`, in `chunk`.
    pub fn issue(self: &Rc<Self>, chunk: usize, offset: u64, len: u32) -> FileSpan {
        self.hold(chunk);
        FileSpan {
            ledger: self.clone(),
            chunk: chunk as u32,
            len,
            offset,
        }
    }

    /// Frames alive in `chunk`.
    pub fn live(&self, chunk: usize) -> u32 {
        self.live[chunk].get()
    }

    /// Counts one more frame in `chunk` (also how the runtime keeps a chunk it could not
    /// empty out of use).
    pub fn hold(&self, chunk: usize) {
        self.live[chunk].set(self.live[chunk].get() + 1);
    }

    /// Calls `each` with every chunk whose last frame was dropped since the last call, and
    /// empties the list. Cheap when nothing was released (one flag).
    pub fn take_released(&self, mut each: impl FnMut(usize)) {
        if !self.any_released.replace(false) {
            return;
        }
        for (chunk, released) in self.released.iter().enumerate() {
            if released.replace(false) {
                each(chunk);
            }
        }
    }

    /// A handle in `chunk` was dropped: no syscall here, only the count and the list.
    fn release(&self, chunk: usize) {
        let live = self.live[chunk].get() - 1;
        self.live[chunk].set(live);
        if live == 0 {
            self.released[chunk].set(true);
            self.any_released.set(true);
        }
    }
}

/// One frame's place in the frame store (opaque to the broker: it only carries it); keeps
/// the frame's chunk from being reused while alive.
pub struct FileSpan {
    ledger: Rc<SpanLedger>,
    chunk: u32,
    len: u32,
    /// Absolute offset in the store.
    offset: u64,
}

impl FileSpan {
    /// Offset of the frame in the store.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the span was issued by `ledger` (its store's).
    pub fn is_from(&self, ledger: &Rc<SpanLedger>) -> bool {
        Rc::ptr_eq(&self.ledger, ledger)
    }

    /// Both spans are in the same store.
    pub fn same_store(&self, other: &FileSpan) -> bool {
        Rc::ptr_eq(&self.ledger, &other.ledger)
    }
}

impl Drop for FileSpan {
    fn drop(&mut self) {
        self.ledger.release(self.chunk as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn released(ledger: &SpanLedger) -> Vec<usize> {
        let mut chunks = Vec::new();
        ledger.take_released(|chunk| chunks.push(chunk));
        chunks
    }

    #[test]
    fn a_chunk_is_listed_once_when_its_last_span_drops() {
        let ledger = SpanLedger::new(3);
        let a = ledger.issue(1, 0, 10);
        let b = ledger.issue(1, 10, 10);
        let c = ledger.issue(2, 4096, 10);
        assert!(a.same_store(&b) && a.is_from(&ledger));
        assert_eq!((ledger.live(1), ledger.live(2)), (2, 1));
        drop(a);
        assert!(released(&ledger).is_empty(), "chunk 1 still holds b");
        drop((b, c));
        assert_eq!(released(&ledger), vec![1, 2]);
        assert!(released(&ledger).is_empty(), "the list was taken");
        assert_eq!((ledger.live(1), ledger.live(2)), (0, 0));
    }

    #[test]
    fn a_chunk_released_twice_before_the_runtime_looks_is_listed_once() {
        let ledger = SpanLedger::new(2);
        drop(ledger.issue(0, 0, 1));
        drop(ledger.issue(0, 1, 1));
        assert_eq!(released(&ledger), vec![0]);
    }

    #[test]
    fn a_held_chunk_is_never_released() {
        let ledger = SpanLedger::new(2);
        ledger.hold(1);
        drop(ledger.issue(1, 0, 1));
        assert!(released(&ledger).is_empty());
        assert_eq!(ledger.live(1), 1);
    }
}
