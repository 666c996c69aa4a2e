//! The client side of the wire: a minimal WebSocket client over a tokio `TcpStream`.
//!
//! Responsibility: open a TCP connection (optionally from a chosen 127.0.0.x source
//! address), perform the RFC 6455 upgrade, encode masked client frames and decode the
//! unmasked server frames from a reusable buffer; stamp and read load-test payloads.
//!
//! Why not tokio-tungstenite on the client side: in the `fanout` bar one client core must
//! out-run one server core. A per-message `Message` allocation and a read per frame cost
//! the client more than the server spends per delivery; this reader parses every frame of
//! one `read` in place, without allocating, so the client is not the bottleneck it measures.
//! The tokio baseline *server* uses tokio-tungstenite, as a mainstream team would.
//!
//! Invariants: frames are parsed only once complete; a frame's payload slice is valid until
//! the next `fill`; fragmented messages are not reassembled (no server under test fragments
//! 100-byte messages; continuation frames are reported like data frames).

use anyhow::{bail, Context};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Bytes read per `read` call; grows only if one frame is larger.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Longest HTTP response head accepted before the upgrade is declared failed.
const MAX_RESPONSE_HEAD_BYTES: usize = 8 * 1024;
/// Marker that precedes the send timestamp (monotonic nanoseconds) in a measured payload.
pub const TIMESTAMP_MARKER: &[u8] = b"@@T";
/// Marker of a warm-up message (sent until every subscriber is known to be subscribed).
pub const WARMUP_MARKER: &[u8] = b"@@W";

pub const OPCODE_CONTINUATION: u8 = 0x0;
pub const OPCODE_TEXT: u8 = 0x1;
pub const OPCODE_BINARY: u8 = 0x2;
pub const OPCODE_CLOSE: u8 = 0x8;
pub const OPCODE_PING: u8 = 0x9;
pub const OPCODE_PONG: u8 = 0xA;

/// Nanoseconds of `CLOCK_MONOTONIC`: one clock for every thread and process on the machine.
pub fn monotonic_nanos() -> u64 {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut time) };
    time.tv_sec as u64 * 1_000_000_000 + time.tv_nsec as u64
}

/// Opens a TCP connection to `target`, bound to `source` when given.
///
/// With a source address the port is chosen at `connect` time
/// (`IP_BIND_ADDRESS_NO_PORT`), so each 127.0.0.x address has the whole ephemeral range
/// toward each destination.
pub async fn open_tcp(target: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4().context("socket")?;
    if let Some(source) = source {
        set_bind_address_no_port(&socket);
        socket
            .bind(SocketAddr::new(source, 0))
            .context("bind source")?;
    }
    let stream = socket.connect(target).await.context("connect")?;
    stream.set_nodelay(true).ok();
    Ok(stream)
}

fn set_bind_address_no_port(socket: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let enable: libc::c_int = 1;
    // SAFETY: a valid socket fd and a pointer to a live c_int of the advertised size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &enable as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// A WebSocket client connection: the stream plus its read buffer.
pub struct Connection {
    pub stream: TcpStream,
    pub reader: FrameReader,
}

/// Connects and upgrades `GET path` (path includes the query). Fails with the HTTP status
/// when the server refuses the upgrade (`http_401`, …), so errors can be counted by kind.
pub async fn connect(
    target: SocketAddr,
    path: &str,
    source: Option<IpAddr>,
) -> anyhow::Result<Connection> {
    let mut stream = open_tcp(target, source).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {target}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .context("send upgrade")?;
    let mut reader = FrameReader::new();
    loop {
        if let Some(head_end) = find(&reader.buffer[..reader.end], b"\r\n\r\n") {
            let head = &reader.buffer[..head_end];
            let status = head.get(9..12).unwrap_or_default();
            if status != b"101" {
                bail!("http_{}", String::from_utf8_lossy(status));
            }
            reader.start = head_end + 4;
            return Ok(Connection { stream, reader });
        }
        if reader.end >= MAX_RESPONSE_HEAD_BYTES {
            bail!("http_head_too_long");
        }
        if reader.fill(&mut stream).await? == 0 {
            bail!("closed_during_upgrade");
        }
    }
}

/// Decodes server frames (unmasked) from a buffer that one `read` fills at a time.
pub struct FrameReader {
    buffer: Vec<u8>,
    start: usize,
    end: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader::new()
    }
}

impl FrameReader {
    pub fn new() -> FrameReader {
        FrameReader {
            buffer: vec![0; READ_BUFFER_BYTES],
            start: 0,
            end: 0,
        }
    }

    /// Reads more bytes (compacting first). Returns 0 at end of stream.
    pub async fn fill<S: AsyncReadExt + Unpin>(&mut self, stream: &mut S) -> anyhow::Result<usize> {
        if self.start > 0 {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buffer.len() {
            let grown = self.buffer.len() * 2;
            self.buffer.resize(grown, 0);
        }
        let count = stream
            .read(&mut self.buffer[self.end..])
            .await
            .context("read")?;
        self.end += count;
        Ok(count)
    }

    /// The next complete frame in the buffer: `(opcode, payload range)`; `None` = read more.
    pub fn next_frame(&mut self) -> Option<(u8, Range<usize>)> {
        let available = &self.buffer[self.start..self.end];
        if available.len() < 2 {
            return None;
        }
        let opcode = available[0] & 0x0F;
        let masked = available[1] & 0x80 != 0;
        let (length, mut header) = match available[1] & 0x7F {
            126 if available.len() >= 4 => {
                (u16::from_be_bytes([available[2], available[3]]) as usize, 4)
            }
            127 if available.len() >= 10 => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&available[2..10]);
                (u64::from_be_bytes(bytes) as usize, 10)
            }
            126 | 127 => return None,
            short => (short as usize, 2),
        };
        if masked {
            header += 4;
        }
        if available.len() < header + length {
            return None;
        }
        let payload = self.start + header..self.start + header + length;
        self.start += header + length;
        Some((opcode, payload))
    }

    /// The bytes of a range returned by [`FrameReader::next_frame`].
    pub fn payload(&self, range: Range<usize>) -> &[u8] {
        &self.buffer[range]
    }
}

/// Appends a masked, final client frame (`ringcast`'s own client encoder). The mask key is
/// fixed: the servers under test must unmask every frame anyway, and a fixed key keeps
/// the client's cost out of the figures.
pub fn encode_frame(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    const MASK: [u8; 4] = [0x5a, 0xc3, 0x17, 0x9e];
    ringcast::protocol::frame::encode_client_frame_raw(0x80 | opcode, payload, MASK, out);
}

/// Position of `needle` in `haystack` (SIMD search: this runs once per delivery).
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

/// The send timestamp stamped into a measured payload, if `frame` carries one.
pub fn payload_timestamp(frame: &[u8]) -> Option<u64> {
    let position = find(frame, TIMESTAMP_MARKER)? + TIMESTAMP_MARKER.len();
    let mut value = 0u64;
    let mut digits = 0;
    for &byte in &frame[position..] {
        if !byte.is_ascii_digit() {
            break;
        }
        value = value * 10 + u64::from(byte - b'0');
        digits += 1;
    }
    (digits > 0).then_some(value)
}

/// A measured payload of exactly `size` bytes (at least the stamp), as a JSON string:
/// `"@@T<nanos>@@xxxx…"`. The same bytes are valid inside a JSON envelope and as a raw NATS
/// message body.
pub fn stamped_payload(size: usize, marker: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(size.max(32));
    payload.push(b'"');
    payload.extend_from_slice(marker);
    payload.extend_from_slice(monotonic_nanos().to_string().as_bytes());
    payload.extend_from_slice(b"@@");
    while payload.len() + 1 < size {
        payload.push(b'x');
    }
    payload.push(b'"');
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamped_payload_round_trips_and_has_the_requested_size() {
        let payload = stamped_payload(100, TIMESTAMP_MARKER);
        assert_eq!(payload.len(), 100);
        let stamp = payload_timestamp(&payload).expect("stamp");
        assert!(stamp > 0);
        assert!(serde_json::from_slice::<serde_json::Value>(&payload).is_ok());
    }

    #[test]
    fn reader_splits_unmasked_frames() {
        let mut reader = FrameReader::new();
        let frames = [0x81, 2, b'h', b'i', 0x89, 0, 0x82, 1];
        reader.buffer[..frames.len()].copy_from_slice(&frames);
        reader.end = frames.len();
        let (opcode, range) = reader.next_frame().expect("text");
        assert_eq!((opcode, reader.payload(range)), (OPCODE_TEXT, &b"hi"[..]));
        assert_eq!(reader.next_frame().map(|frame| frame.0), Some(OPCODE_PING));
        assert!(reader.next_frame().is_none(), "incomplete binary frame");
    }
}
