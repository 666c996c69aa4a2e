//! Driving one connection's rustls `ServerConnection` over the runtime's own socket calls.
//!
//! Responsibility: move ciphertext between the non-blocking socket and rustls (`read_tls`
//! / `process_new_packets` / `write_tls`), hand plaintext to the same parsers and broker
//! calls as a plain connection, and encrypt queued frames. Frames stay shared `Bytes`
//! until here; each TLS connection encrypts its own copy into its rustls buffer (one
//! record per batch of up to `IOVECS_PER_SEND` frames, through `write_vectored`).
//!
//! Must not: wait on the socket while holding the `RefCell` borrow, or wait for
//! readability while rustls still holds plaintext (the kernel would not wake us).
//!
//! Bounds per connection: outbound ciphertext and not-yet-encrypted plaintext at most
//! [`TLS_BUFFER_LIMIT_BYTES`] (beyond it frames stay in the session's queue, which
//! `maxPendingBytes` bounds); decrypted-but-unread plaintext at most 16 KiB and the
//! record reassembly buffer at most one record (16 KiB + overhead; 64 KiB for a handshake
//! message), both fixed by rustls.

use super::connection::{ingest, wait_for_outbox, READS_BEFORE_YIELD};
use super::sys;
use super::writer::Drained;
use super::WorkerRuntime;
use crate::broker::session::Session;
use crate::metrics::WorkerMetrics;
use monoio::net::TcpStream;
use rustls::ServerConnection;
use std::cell::RefCell;
use std::io::{self, IoSlice, Read, Write};
use std::rc::Rc;

/// Outbound TLS bytes buffered per connection (rustls `set_buffer_limit`). 64 KiB (the
/// rustls default) holds four full records: enough to keep a socket busy between flushes,
/// small next to the 4 MiB `maxPendingBytes` a slow consumer may queue anyway.
pub const TLS_BUFFER_LIMIT_BYTES: usize = 64 * 1024;

/// A new connection's TLS state, with its buffers bounded.
pub fn accept(config: &std::sync::Arc<rustls::ServerConfig>) -> Option<ServerConnection> {
    let mut connection = ServerConnection::new(config.clone()).ok()?;
    connection.set_buffer_limit(Some(TLS_BUFFER_LIMIT_BYTES));
    Some(connection)
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

/// Sends buffered ciphertext: `Ok(true)` when all is out, `Ok(false)` when the socket is
/// full.
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

/// What one [`read_plaintext`] got.
struct Plaintext {
    /// Bytes placed in the buffer; 0 = the peer ended (close_notify or TCP EOF).
    bytes: usize,
    /// More may be readable without waiting for the socket (the buffer filled up, or
    /// rustls or the kernel may hold more).
    more: bool,
}

/// Reads plaintext into `out` without waiting: decrypts what rustls holds, then reads the
/// socket until `out` is full or the kernel has nothing more. `WouldBlock` = nothing yet;
/// `InvalidData` = the peer broke TLS (an alert for it is queued).
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
fn failed(runtime: &WorkerRuntime, tcp: &TcpStream, tls: &mut ServerConnection, error: &io::Error) {
    if tls.is_handshaking() {
        runtime.broker.metrics().tls_refused();
        tracing::debug!(%error, "TLS handshake failed");
    } else {
        tracing::debug!(%error, "TLS connection failed");
    }
    let _ = send_ciphertext(tcp, tls);
}

/// HTTP phase: reads plaintext into `buffer`, running the handshake as needed (its
/// flights are sent before waiting for the peer). `Ok(0)` = the peer ended.
pub async fn read(
    runtime: &WorkerRuntime,
    tcp: &TcpStream,
    state: &RefCell<ServerConnection>,
    buffer: &mut [u8],
) -> io::Result<usize> {
    loop {
        let result = read_plaintext(tcp, &mut state.borrow_mut(), buffer);
        match result {
            Ok(plaintext) => return Ok(plaintext.bytes),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                flush(tcp, state).await?;
                tcp.readable(false).await?;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                if error.kind() == io::ErrorKind::InvalidData {
                    failed(runtime, tcp, &mut state.borrow_mut(), &error);
                }
                return Err(error);
            }
        }
    }
}

/// Sends every buffered TLS byte, waiting for writability as needed.
async fn flush(tcp: &TcpStream, state: &RefCell<ServerConnection>) -> io::Result<()> {
    loop {
        let done = send_ciphertext(tcp, &mut state.borrow_mut())?;
        if done {
            return Ok(());
        }
        tcp.writable(false).await?;
    }
}

/// Encrypts and sends `bytes` completely (HTTP responses, the upgrade response).
pub async fn write_all(
    tcp: &TcpStream,
    state: &RefCell<ServerConnection>,
    mut bytes: &[u8],
) -> io::Result<()> {
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
pub fn close_notify(tcp: &TcpStream, state: &RefCell<ServerConnection>) {
    let mut tls = state.borrow_mut();
    tls.send_close_notify();
    let _ = send_ciphertext(tcp, &mut tls);
}

/// The writer for a TLS session: sends pending ciphertext, then encrypts up to
/// `IOVECS_PER_SEND` queued frames at a time (bounded by the rustls buffer limit) and
/// sends them, until the queue is empty or the socket full.
pub fn write_session(
    runtime: &WorkerRuntime,
    session: &Session,
    tcp: &TcpStream,
    state: &RefCell<ServerConnection>,
) -> Drained {
    let mut tls = state.borrow_mut();
    loop {
        match send_ciphertext(tcp, &mut tls) {
            Ok(true) => {}
            Ok(false) => return Drained::Blocked,
            Err(_) => return Drained::Failed,
        }
        let outbound = session.outbound.borrow();
        if outbound.is_empty() {
            return Drained::Empty;
        }
        let slices = super::writer::unwritten_slices(&outbound);
        let result = tls.writer().write_vectored(&slices);
        drop(outbound);
        match result {
            // The ciphertext buffer was just emptied, so rustls takes at least one byte of
            // a non-empty frame; 0 means the connection is unusable.
            Ok(0) | Err(_) => return Drained::Failed,
            Ok(written) => {
                WorkerMetrics::add(&runtime.broker.metrics().bytes_out, written as u64);
                session.outbound.borrow_mut().advance(written);
            }
        }
    }
}

/// The WebSocket reader of a TLS connection (the plain one's twin in `connection`):
/// decrypts into the worker's pooled buffer and ingests; runs until the peer goes away,
/// the close completes or TLS fails.
pub async fn read_websocket(
    runtime: &Rc<WorkerRuntime>,
    tcp: &TcpStream,
    state: &RefCell<ServerConnection>,
    session: &Rc<Session>,
    mut closing: bool,
) {
    let mut full_reads = 0;
    loop {
        if runtime.broker.outbox.is_congested() {
            Box::pin(wait_for_outbox(runtime)).await;
        }
        let result = {
            let mut pool = runtime.read_buffer.borrow_mut();
            let mut tls = state.borrow_mut();
            let result = read_plaintext(tcp, &mut tls, &mut pool[..]);
            if let Err(error) = &result {
                if error.kind() == io::ErrorKind::InvalidData {
                    failed(runtime, tcp, &mut tls, error);
                }
            } else if tls.wants_write() {
                // Post-handshake records (a key update answer): the writer sends them.
                runtime.broker.mark_dirty(session);
            }
            drop(tls);
            match result {
                Ok(Plaintext { bytes: 0, .. }) => Ok(None),
                Ok(Plaintext { bytes, more }) => {
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
        // As on plain connections (`connection::read_websocket`): an urgent flush is
        // written before reading on.
        if matches!(result, Ok(Some(_))) && runtime.broker.flush_is_urgent() {
            super::writer::flush(runtime);
        }
        match result {
            Ok(None) => break,
            Ok(Some(true)) => {
                if full_reads < READS_BEFORE_YIELD {
                    runtime.request_flush();
                    full_reads += 1;
                } else {
                    runtime.request_flush();
                    full_reads = 0;
                    super::yield_to_ready_tasks().await;
                }
            }
            Ok(Some(false)) => {
                runtime.request_flush();
                full_reads = 0;
                if tcp.readable(false).await.is_err() {
                    break;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                runtime.request_flush();
                full_reads = 0;
                if tcp.readable(false).await.is_err() {
                    break;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}
