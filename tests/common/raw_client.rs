//! A hand-driven WebSocket client over a raw socket ([`RawClient`]): it sends frames built
//! by the library's client encoder, reads only when told to, never answers pings, and can
//! shrink its receive buffer (slow consumers, liveness).

use super::TestServer;
use ringcast::protocol::frame::encode_client_frame_raw;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A hand-driven WebSocket client over a raw socket: it reads only when told to, never
/// answers pings, and can shrink its receive buffer (slow consumers, liveness).
pub struct RawClient<S = TcpStream> {
    pub stream: S,
    buffer: Vec<u8>,
}

pub fn connect_raw(
    server: &TestServer,
    app: &str,
    token: &str,
    receive_buffer: Option<usize>,
) -> RawClient {
    connect_raw_with(server, app, token, receive_buffer, "").0
}

/// Like [`connect_raw`], with extra request header lines (each ending in `\r\n`); also
/// returns the response head.
pub fn connect_raw_with(
    server: &TestServer,
    app: &str,
    token: &str,
    receive_buffer: Option<usize>,
    extra_headers: &str,
) -> (RawClient, String) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if let Some(bytes) = receive_buffer {
        socket.set_recv_buffer_size(bytes).unwrap();
    }
    socket.connect(&server.address.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!(
        "GET /apps/{app}?access_token={token} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut buffer = Vec::new();
    let mut byte = [0u8; 1];
    while !buffer.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        buffer.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buffer).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    (
        RawClient {
            stream,
            buffer: Vec::new(),
        },
        head,
    )
}

impl<S: Read + Write> RawClient<S> {
    /// Wraps a stream whose upgrade is done (e.g. TLS, in `tests/tls.rs`).
    pub fn over(stream: S) -> Self {
        RawClient {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Sends one final masked frame; `opcode` may carry RSV bits (`0x40 | 0x1`: a
    /// compressed text message). Built by the library's client encoder.
    pub fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut frame = Vec::new();
        encode_client_frame_raw(0x80 | opcode, payload, [0x12, 0x34, 0x56, 0x78], &mut frame);
        self.stream.write_all(&frame).unwrap();
    }

    /// Round trip: a ping, answered once everything sent before it was processed (the
    /// broker handles one connection's frames in order); frames before the pong (the
    /// welcome) are dropped.
    pub fn sync(&mut self) {
        self.send_frame(0x9, b"sync");
        loop {
            match self.read_frame() {
                Some((0xA, payload)) if payload == b"sync" => return,
                Some(_) => continue,
                None => panic!("the socket ended before the pong"),
            }
        }
    }

    pub fn send_text(&mut self, text: &str) {
        self.send_frame(0x1, text.as_bytes());
    }

    /// Removes one complete frame from the front of the buffer, if there is one.
    fn take_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        if self.buffer.len() < 2 {
            return None;
        }
        let (length, header) = match (self.buffer[1] & 0x7f) as usize {
            126 if self.buffer.len() >= 4 => (
                u16::from_be_bytes([self.buffer[2], self.buffer[3]]) as usize,
                4,
            ),
            127 if self.buffer.len() >= 10 => (
                u64::from_be_bytes(self.buffer[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => return None,
            short => (short, 2),
        };
        if self.buffer.len() < header + length {
            return None;
        }
        let opcode = self.buffer[0] & 0x0f;
        let payload = self.buffer[header..header + length].to_vec();
        self.buffer.drain(..header + length);
        Some((opcode, payload))
    }

    /// Next server frame as (opcode, payload); `None` at EOF or on a reset.
    pub fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some(frame) = self.take_frame() {
                return Some(frame);
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads what is available without blocking (the socket must be non-blocking) and
    /// returns the complete frames; `Err` on EOF or a socket error.
    pub fn poll_frames(&mut self, out: &mut Vec<(u8, Vec<u8>)>) -> std::io::Result<()> {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
        while let Some(frame) = self.take_frame() {
            out.push(frame);
        }
        Ok(())
    }

    /// Next data frame as (first header byte, payload), skipping the welcome/pings; `None`
    /// on timeout or EOF.
    pub fn read_frame_with_flags(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            let first = loop {
                if let Some(first) = self.buffer.first() {
                    break *first;
                }
                let mut chunk = [0u8; 65536];
                match self.stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                }
            };
            let (opcode, payload) = self.read_frame()?;
            if opcode == 0x1 || opcode == 0x2 {
                let text = String::from_utf8_lossy(&payload);
                if first & 0x40 == 0 && (text.contains("\"welcome\"") || text.contains("\"ack\"")) {
                    continue;
                }
                return Some((first, payload));
            }
        }
    }

    /// Reads frames until a close frame; returns its code (None if the socket ended first).
    pub fn close_code(&mut self) -> Option<u16> {
        while let Some((opcode, payload)) = self.read_frame() {
            if opcode == 0x8 {
                return payload.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
            }
        }
        None
    }
}
