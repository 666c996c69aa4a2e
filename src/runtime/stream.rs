//! The connection transport: one socket, plain TCP or TCP carrying TLS (`server.tls`).
//!
//! Responsibility: the operations the connection's reader and writer need, the same for
//! both kinds — wait for input, receive into a buffer (decrypting on TLS), send what the
//! transport itself holds (TLS records), send queued frames (encrypting on TLS), write a
//! whole response, half-close — dispatched on one `Option`. `runtime::tls` holds the TLS
//! side; plain connections pay one branch per call and 8 bytes, nothing else. It knows
//! nothing of sessions, queues or the broker (`reader` and `writer` sit above it).
//!
//! Must not: hold the TLS `RefCell` borrow across an await (each call borrows and
//! releases).

use super::sys;
use super::tls::{self, TlsState};
use crate::metrics::WorkerMetrics;
use monoio::net::TcpStream;
use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};

/// The socket of one connection.
pub struct Stream {
    pub tcp: TcpStream,
    /// The TLS state on a TLS listener's connections, `None` on plain ones. Boxed: it is
    /// ~1 KiB plus rustls's buffers, and plain connections must not carry it.
    pub tls: Option<Box<TlsState>>,
}

/// What one [`Stream::receive`] got.
pub struct Received {
    /// Bytes placed in the buffer; 0 = the peer ended.
    pub bytes: usize,
    /// More may be readable at once: the buffer filled up (plain), or rustls or the
    /// kernel may hold more (TLS).
    pub more: bool,
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }
}

impl Stream {
    pub fn plain(tcp: TcpStream) -> Stream {
        Stream { tcp, tls: None }
    }

    pub fn with_tls(tcp: TcpStream, state: TlsState) -> Stream {
        Stream {
            tcp,
            tls: Some(Box::new(state)),
        }
    }

    /// Whether the transport encrypts (TLS). The frame-file `sendfile` path is plain-only.
    pub fn encrypts(&self) -> bool {
        self.tls.is_some()
    }

    /// Receives into `out` without waiting. `WouldBlock` = nothing yet; `InvalidData` =
    /// the peer broke TLS (counted in `metrics`, the alert sent if the socket takes it).
    pub fn receive(&self, metrics: &WorkerMetrics, out: &mut [u8]) -> io::Result<Received> {
        match &self.tls {
            None => sys::recv(&self.tcp, out).map(|bytes| Received {
                bytes,
                more: bytes == out.len(),
            }),
            Some(state) => tls::receive(metrics, &self.tcp, state, out).map(|plaintext| Received {
                bytes: plaintext.bytes,
                more: plaintext.more,
            }),
        }
    }

    /// Waits until input may be there. `more` (from the last [`Stream::receive`]) says it
    /// may be already: then a TLS transport only lets ready tasks run, since rustls may
    /// hold plaintext the kernel would never wake us for.
    pub async fn wait_input(&self, more: bool) -> io::Result<()> {
        if more && self.tls.is_some() {
            super::yield_to_ready_tasks().await;
            return Ok(());
        }
        self.tcp.readable(false).await
    }

    /// Waits until the socket takes more bytes.
    pub async fn wait_output(&self) -> io::Result<()> {
        self.tcp.writable(false).await
    }

    /// Whether the transport holds bytes of its own to send (TLS records made while
    /// receiving, e.g. a key update answer): the writer sends them with the next flush.
    pub fn has_output(&self) -> bool {
        self.tls.as_deref().is_some_and(tls::has_output)
    }

    /// Sends what the transport holds without waiting: `Ok(true)` when nothing is left
    /// (always on plain), `Ok(false)` when the socket is full.
    pub fn send_held(&self) -> io::Result<bool> {
        match &self.tls {
            None => Ok(true),
            Some(state) => tls::send_held(&self.tcp, state),
        }
    }

    /// Hands `slices` (queued frames) to the transport, after [`Stream::send_held`] said
    /// it holds nothing: plain, one `sendmsg`; TLS, encrypted into its buffer (sent by the
    /// next `send_held`). Returns the bytes taken.
    pub fn send_frames(&self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match &self.tls {
            None => sys::send_vectored(&self.tcp, slices),
            Some(state) => tls::encrypt(state, slices),
        }
    }

    /// Sends `len` bytes of the file `file` from `offset` (plain transports only, see
    /// [`Stream::encrypts`]).
    pub fn send_file(&self, file: RawFd, offset: u64, len: usize) -> io::Result<usize> {
        debug_assert!(self.tls.is_none(), "sendfile would bypass TLS");
        sys::send_file(&self.tcp, file, offset, len)
    }

    /// HTTP phase: reads more request bytes into `buffer` (growing it by 1 KiB first, then
    /// 4 KiB at a time; the head parser bounds the total at `MAX_HEAD_BYTES`), waiting as
    /// needed. `Ok(0)` = the peer ended. On TLS this also runs the handshake (its flights
    /// are sent before waiting for the peer), within the caller's timeout.
    pub async fn read_more(
        &self,
        metrics: &WorkerMetrics,
        buffer: &mut Vec<u8>,
    ) -> io::Result<usize> {
        let start = buffer.len();
        // Most upgrade requests (token included) fit in 1 KiB: start there, so thousands of
        // handshakes in flight hold 1 KiB each rather than 4; grow 4 KiB at a time after.
        let step = if start == 0 { 1024 } else { 4096 };
        buffer.resize(start + step, 0);
        let result = self.read_waiting(metrics, &mut buffer[start..]).await;
        match result {
            Ok(read) => {
                buffer.truncate(start + read);
                Ok(read)
            }
            Err(error) => {
                buffer.truncate(start);
                Err(error)
            }
        }
    }

    async fn read_waiting(&self, metrics: &WorkerMetrics, out: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.receive(metrics, out) {
                Ok(received) => return Ok(received.bytes),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    if let Some(state) = &self.tls {
                        tls::flush(&self.tcp, state).await?;
                    }
                    self.tcp.readable(false).await?;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Writes `bytes` completely (handshake and HTTP responses), waiting as needed.
    pub async fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        match &self.tls {
            None => write_all_plain(&self.tcp, bytes).await,
            Some(state) => tls::write_all(&self.tcp, state, bytes).await,
        }
    }

    /// Ends our side: on TLS a `close_notify` first (best effort, never waits), then the
    /// TCP half-close.
    pub fn shutdown_write(&self) {
        if let Some(state) = &self.tls {
            tls::close_notify(&self.tcp, state);
        }
        sys::shutdown(&self.tcp, Shutdown::Write);
    }
}

async fn write_all_plain(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match sys::send_vectored(stream, &[IoSlice::new(bytes)]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => bytes = &bytes[written..],
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                stream.writable(false).await?
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
