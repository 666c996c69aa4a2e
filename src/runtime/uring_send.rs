//! EXPERIMENTAL: a plain connection's vectored write as an io_uring operation
//! (`server.ioUringSends`; issue 16, item 5; `docs/decisions/io-uring-sends.md`).
//!
//! Responsibility: the I/O half of that path — an owned iovec buffer over queued frames
//! (an io_uring operation owns its buffers until the kernel completes it), a bounded
//! per-worker pool of those buffers, and one `writev` submitted through monoio on a
//! connection's socket. Which frames to send and what to do with the count is `writer`'s.
//!
//! Batching: monoio pushes an operation's SQE when the operation is created (the first
//! poll of the task `writer` spawns per send) and submits the queued SQEs with one
//! `io_uring_enter` when the worker runs out of ready tasks, or between rounds of its run
//! queue; the sends of one flush chunk (`writer::FLUSH_CHUNK_SESSIONS`) therefore leave
//! in one submission.
//!
//! Must not: close the descriptor it borrows, or outlive the connection's `Stream` while
//! an operation is in flight (the caller holds the `Rc<Stream>` across [`send`]).

use super::stream::Stream;
use crate::broker::outbound::{OutboundQueue, QueuedFrame};
use monoio::io::AsyncWriteRent;
use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};

/// Send buffers a worker keeps for reuse; more in use at once are allocated and freed.
pub const SEND_BUFFERS_POOLED: usize = 256;
/// A buffer grown past this many frames is freed rather than pooled, so the pool holds at
/// most `SEND_BUFFERS_POOLED` × 64 × 24 B ≈ 384 KiB per worker.
pub const POOLED_BUFFER_FRAMES: usize = 64;

/// The frames of one send and their iovecs: the operation owns it until it completes, and
/// the frames it holds keep the bytes the iovecs point into alive and in place.
#[derive(Default)]
pub struct FrameIovecs {
    frames: Vec<QueuedFrame>,
    iovecs: Vec<libc::iovec>,
    bytes: usize,
}

impl FrameIovecs {
    /// Bytes the iovecs cover.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Frames held.
    pub fn frames(&self) -> usize {
        self.frames.len()
    }
}

// SAFETY: the iovecs point into the heap bytes of `frames`, which the buffer holds (shared
// frames are immutable and never move); neither vector changes while monoio owns the
// buffer, so the pointer and the count stay valid until the operation completes.
unsafe impl monoio::buf::IoVecBuf for FrameIovecs {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iovecs.as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.iovecs.len()
    }
}

/// A worker's pool of [`FrameIovecs`] (present only when `ioUringSends` is on and the
/// io_uring driver runs).
pub struct SendBuffers {
    free: RefCell<Vec<FrameIovecs>>,
}

impl SendBuffers {
    /// The pool if `enabled` and `driver` is io_uring; under the legacy driver the setting
    /// does nothing (worker 0 says so once).
    pub fn if_enabled(enabled: bool, driver: &str, worker: usize) -> Option<SendBuffers> {
        if !enabled {
            return None;
        }
        if driver != "io_uring" {
            if worker == 0 {
                tracing::warn!(
                    driver,
                    "server.ioUringSends is set but io_uring does not run: sends stay sendmsg"
                );
            }
            return None;
        }
        if worker == 0 {
            tracing::info!(
                "server.ioUringSends: plain sends are io_uring operations (experimental)"
            );
        }
        Some(SendBuffers {
            free: RefCell::new(Vec::new()),
        })
    }

    /// A buffer over up to `max_frames` queued frames of `outbound`, the front one from
    /// where the last partial write stopped.
    pub fn fill(&self, outbound: &OutboundQueue, max_frames: usize) -> FrameIovecs {
        let mut buffer = self.free.borrow_mut().pop().unwrap_or_default();
        let skip = outbound.written_of_front();
        for (index, frame) in outbound.frames().take(max_frames).enumerate() {
            let bytes = if index == 0 {
                &frame[skip..]
            } else {
                &frame[..]
            };
            buffer.iovecs.push(libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            });
            buffer.bytes += bytes.len();
            buffer.frames.push(frame.clone());
        }
        buffer
    }

    /// Takes a buffer back after its operation completed (its frames are released now).
    pub fn give_back(&self, mut buffer: FrameIovecs) {
        buffer.frames.clear();
        buffer.iovecs.clear();
        buffer.bytes = 0;
        let mut free = self.free.borrow_mut();
        if free.len() < SEND_BUFFERS_POOLED && buffer.frames.capacity() <= POOLED_BUFFER_FRAMES {
            free.push(buffer);
        }
    }
}

/// Writes `buffer` to `stream`'s socket as one io_uring `writev` operation and waits for
/// its completion. The sockets are non-blocking, so a full socket completes with
/// `WouldBlock` (io_uring does not wait for room on an `O_NONBLOCK` file). Plain
/// transports under the io_uring driver only.
pub async fn send(stream: &Stream, buffer: FrameIovecs) -> (io::Result<usize>, FrameIovecs) {
    debug_assert!(!stream.encrypts(), "an io_uring send would bypass TLS");
    // monoio's write operations need `&mut TcpStream` while the connection's stream is
    // shared (the reader waits on it), so the operation runs on a second handle to the same
    // descriptor. SAFETY: the descriptor stays open while `stream` lives, which the caller
    // holds until this returns; `Borrowed` never closes it. Under the io_uring driver
    // `from_std` only wraps the descriptor (no registration, so no error path that would
    // drop — and close — it).
    let std = unsafe { std::net::TcpStream::from_raw_fd(stream.as_raw_fd()) };
    let tcp = match monoio::net::TcpStream::from_std(std) {
        Ok(tcp) => tcp,
        Err(error) => return (Err(error), buffer),
    };
    let mut borrowed = Borrowed(Some(tcp));
    let result = match borrowed.0.as_mut() {
        Some(tcp) => tcp.writev(buffer).await,
        None => unreachable!("set above"),
    };
    borrowed.release();
    result
}

/// A second monoio handle on a connection's descriptor that must not close it.
struct Borrowed(Option<monoio::net::TcpStream>);

impl Borrowed {
    /// Unwraps the handle without closing the descriptor (the operation has completed, so
    /// the handle is the descriptor's only holder).
    fn release(&mut self) {
        if let Some(tcp) = self.0.take() {
            let _ = tcp.into_raw_fd();
        }
    }
}

impl Drop for Borrowed {
    /// Dropped with an operation still in flight (the worker's runtime is ending): the
    /// driver still holds the handle's descriptor share, so it is forgotten, not closed.
    fn drop(&mut self) {
        if let Some(tcp) = self.0.take() {
            std::mem::forget(tcp);
        }
    }
}
