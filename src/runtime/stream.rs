//! A connection's socket: plain TCP, or TCP carrying TLS (`server.tls`).
//!
//! Responsibility: one type the connection task and the writer share, with the few
//! operations the HTTP phase needs (read more, write a response, half-close) dispatched
//! on whether the connection speaks TLS. The WebSocket phase branches once per read or
//! flush (`runtime::tls` holds the TLS side); plain connections pay one `Option` check and
//! 8 bytes, nothing else.

use super::{sys, tls, writer, WorkerRuntime};
use monoio::net::TcpStream;
use rustls::ServerConnection;
use std::cell::RefCell;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};

/// The socket of one connection.
pub struct Stream {
    pub tcp: TcpStream,
    /// The TLS state on a TLS listener's connections, `None` on plain ones. Boxed: it is
    /// ~1 KiB plus rustls's buffers, and plain connections must not carry it. Borrowed by
    /// the reader and the writer in turn, never across an await.
    pub tls: Option<Box<RefCell<ServerConnection>>>,
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

    /// Reads more request bytes into `buffer` (growing it by 1 KiB first, then 4 KiB at a
    /// time; the head parser bounds the total at `MAX_HEAD_BYTES`). `Ok(0)` = the peer
    /// ended. On TLS this also runs the handshake, within the caller's timeout.
    pub async fn read_more(
        &self,
        runtime: &WorkerRuntime,
        buffer: &mut Vec<u8>,
    ) -> io::Result<usize> {
        let start = buffer.len();
        // Most upgrade requests (token included) fit in 1 KiB: start there, so thousands of
        // handshakes in flight hold 1 KiB each rather than 4; grow 4 KiB at a time after.
        let step = if start == 0 { 1024 } else { 4096 };
        buffer.resize(start + step, 0);
        let result = match &self.tls {
            None => read_plain(&self.tcp, &mut buffer[start..]).await,
            Some(state) => tls::read(runtime, &self.tcp, state, &mut buffer[start..]).await,
        };
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

    /// Writes `bytes` completely (handshake and HTTP responses), waiting as needed.
    pub async fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        match &self.tls {
            None => writer::write_all(&self.tcp, bytes).await,
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

async fn read_plain(stream: &TcpStream, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        match sys::recv(stream, buffer) {
            Ok(read) => return Ok(read),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                stream.readable(false).await?;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}
