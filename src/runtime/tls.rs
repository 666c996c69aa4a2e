//! One connection's rustls `ServerConnection`, driven over the runtime's own socket calls:
//! the TLS half of the connection transport ([`super::stream::Stream`]).
//!
//! Responsibility: move ciphertext between the non-blocking socket and rustls (`read_tls`
//! / `process_new_packets` / `write_tls`), decrypt into the caller's buffer, and encrypt
//! what the caller hands over. Frames stay shared `Bytes` until here; each TLS connection
//! encrypts its own copy into its rustls buffer (one record per batch of up to
//! `IOVECS_PER_SEND` frames, through `write_vectored`). It knows nothing of sessions,
//! queues or the broker: the reader and the writer above the transport do.
//!
//! Must not: wait on the socket while holding the `RefCell` borrow, or wait for
//! readability while rustls still holds plaintext (the kernel would not wake us).
//!
//! Bounds per connection: outbound ciphertext and not-yet-encrypted plaintext at most
//! [`TLS_BUFFER_LIMIT_BYTES`] (beyond it frames stay in the session's queue, which
//! `maxPendingBytes` bounds); decrypted-but-unread plaintext at most 16 KiB and the
//! record reassembly buffer at most one record (16 KiB + overhead; 64 KiB for a handshake
//! message), both fixed by rustls.

use super::sys;
use crate::metrics::WorkerMetrics;
use monoio::net::TcpStream;
use rustls::ServerConnection;
use std::cell::RefCell;
use std::io::{self, IoSlice, Read, Write};

/// Outbound TLS bytes buffered per connection (rustls `set_buffer_limit`). 64 KiB (the
/// rustls default) holds four full records: enough to keep a socket busy between flushes,
/// small next to the 4 MiB `maxPendingBytes` a slow consumer may queue anyway.
pub const TLS_BUFFER_LIMIT_BYTES: usize = 64 * 1024;

/// A connection's TLS state. Borrowed by the reader and the writer in turn, never across
/// an await.
pub type TlsState = RefCell<ServerConnection>;

/// A new connection's TLS state, with its buffers bounded.
pub fn accept(config: &std::sync::Arc<rustls::ServerConfig>) -> Option<TlsState> {
    let mut connection = ServerConnection::new(config.clone()).ok()?;
    connection.set_buffer_limit(Some(TLS_BUFFER_LIMIT_BYTES));
    Some(RefCell::new(connection))
}

/// The socket as `io::Read`/`io::Write` for rustls, remembering whether the last read
/// got less than it asked for (then the kernel had nothing more at that moment).
struct SocketIo<'a> {
    tcp: &'a TcpStream,
    short_read: bool,
}

impl Read for SocketIo<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = sys::recv(self.tcp, buffer)?;
        self.short_read = read < buffer.len();
        Ok(read)
    }
}

impl Write for SocketIo<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        sys::send_vectored(self.tcp, &[IoSlice::new(bytes)])
    }

    fn write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        sys::send_vectored(self.tcp, slices)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends buffered ciphertext without waiting: `Ok(true)` when all is out, `Ok(false)` when
/// the socket is full.
pub fn send_held(tcp: &TcpStream, state: &TlsState) -> io::Result<bool> {
    send_ciphertext(tcp, &mut state.borrow_mut())
}

fn send_ciphertext(tcp: &TcpStream, tls: &mut ServerConnection) -> io::Result<bool> {
    let mut socket = SocketIo {
        tcp,
        short_read: false,
    };
    while tls.wants_write() {
        match tls.write_tls(&mut socket) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(true)
}

/// Whether rustls holds records to send (handshake flights, a key update answer).
pub fn has_output(state: &TlsState) -> bool {
    state.borrow().wants_write()
}

/// What one [`receive`] got.
pub struct Plaintext {
    /// Bytes placed in the buffer; 0 = the peer ended (close_notify or TCP EOF).
    pub bytes: usize,
    /// More may be readable without waiting for the socket (the buffer filled up, or
    /// rustls or the kernel may hold more).
    pub more: bool,
}

/// Reads plaintext into `out` without waiting: decrypts what rustls holds, then reads the
/// socket until `out` is full or the kernel has nothing more. `WouldBlock` = nothing yet;
/// `InvalidData` = the peer broke TLS (counted and logged here, and the alert for it sent
/// if the socket takes it now).
pub fn receive(
    metrics: &WorkerMetrics,
    tcp: &TcpStream,
    state: &TlsState,
    out: &mut [u8],
) -> io::Result<Plaintext> {
    let mut tls = state.borrow_mut();
    let result = read_plaintext(tcp, &mut tls, out);
    if let Err(error) = &result {
        if error.kind() == io::ErrorKind::InvalidData {
            failed(metrics, tcp, &mut tls, error);
        }
    }
    result
}

fn read_plaintext(
    tcp: &TcpStream,
    tls: &mut ServerConnection,
    out: &mut [u8],
) -> io::Result<Plaintext> {
    let mut filled = 0;
    let mut drained = false;
    loop {
        match tls.reader().read(&mut out[filled..]) {
            // close_notify received and every byte before it read.
            Ok(0) => {
                return Ok(Plaintext {
                    bytes: filled,
                    more: filled > 0,
                })
            }
            Ok(read) => {
                filled += read;
                if filled == out.len() {
                    return Ok(Plaintext {
                        bytes: filled,
                        more: true,
                    });
                }
                continue;
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            // TCP ended without close_notify: the same end for us.
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                return Ok(Plaintext {
                    bytes: filled,
                    more: filled > 0,
                })
            }
            Err(error) => return Err(error),
        }
        if drained {
            return match filled {
                0 => Err(io::ErrorKind::WouldBlock.into()),
                bytes => Ok(Plaintext { bytes, more: false }),
            };
        }
        let mut socket = SocketIo {
            tcp,
            short_read: false,
        };
        match tls.read_tls(&mut socket) {
            Ok(0) => {
                return Ok(Plaintext {
                    bytes: filled,
                    more: filled > 0,
                })
            }
            Ok(_) => {
                drained = socket.short_read;
                if let Err(error) = tls.process_new_packets() {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, error));
                }
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => drained = true,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

/// A TLS failure: counted as a `tls` handshake refusal while the handshake runs, logged
/// (rustls errors name the protocol problem, never key material), and the queued alert
/// sent if the socket takes it now.
fn failed(metrics: &WorkerMetrics, tcp: &TcpStream, tls: &mut ServerConnection, error: &io::Error) {
    if tls.is_handshaking() {
        metrics.tls_refused();
        tracing::debug!(%error, "TLS handshake failed");
    } else {
        tracing::debug!(%error, "TLS connection failed");
    }
    let _ = send_ciphertext(tcp, tls);
}

/// Encrypts as much of `slices` as rustls's buffer takes (call after [`send_held`]
/// emptied it). Returns the plaintext bytes taken; 0 would mean the connection is
/// unusable, so it is `WriteZero`.
pub fn encrypt(state: &TlsState, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    match state.borrow_mut().writer().write_vectored(slices)? {
        0 => Err(io::ErrorKind::WriteZero.into()),
        taken => Ok(taken),
    }
}

/// Sends every buffered TLS byte, waiting for writability as needed.
pub async fn flush(tcp: &TcpStream, state: &TlsState) -> io::Result<()> {
    while !send_held(tcp, state)? {
        tcp.writable(false).await?;
    }
    Ok(())
}

/// Encrypts and sends `bytes` completely (HTTP responses, the upgrade response).
pub async fn write_all(tcp: &TcpStream, state: &TlsState, mut bytes: &[u8]) -> io::Result<()> {
    loop {
        let (accepted, done) = {
            let mut tls = state.borrow_mut();
            let accepted = tls.writer().write(bytes)?;
            (accepted, send_ciphertext(tcp, &mut tls)?)
        };
        bytes = &bytes[accepted..];
        match (bytes.is_empty(), done) {
            (true, true) => return Ok(()),
            // Nothing taken and nothing to send: rustls cannot make progress.
            (false, true) if accepted == 0 => return Err(io::ErrorKind::WriteZero.into()),
            (_, true) => {}
            (_, false) => tcp.writable(false).await?,
        }
    }
}

/// Queues a `close_notify` and sends what the socket takes now (never waits).
pub fn close_notify(tcp: &TcpStream, state: &TlsState) {
    let mut tls = state.borrow_mut();
    tls.send_close_notify();
    let _ = send_ciphertext(tcp, &mut tls);
}
