//! Resident memory of tungstenite's per-connection protocol state (`WebSocketContext`), the
//! measurement behind docs/decisions/tungstenite-handshake-only.md: ringcast uses
//! tungstenite for the HTTP upgrade only and keeps its own frame codec.
//!
//! Not a criterion bench (`harness = false`, prints figures): creates `CONNECTIONS`
//! contexts with tungstenite's default configuration, reads RSS from `/proc/self/statm`,
//! then has each context read one 20-byte masked text frame (what an idle subscriber's
//! connection does once: its subscribe command) and reads RSS again. The allocator is
//! mimalloc, as in the `ringcast` binary.
//!
//! Run: `cargo bench --bench websocket_context_memory`.

use std::io::{self, Cursor, Read, Write};
use tungstenite::protocol::{Role, WebSocketContext};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Contexts held at once: enough that per-context figures are not noise.
const CONNECTIONS: usize = 2_000;

/// One client frame as a stream: reads come from the frame, writes are discarded.
struct OneFrame(Cursor<Vec<u8>>);

impl Read for OneFrame {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buffer)? {
            0 => Err(io::ErrorKind::WouldBlock.into()),
            read => Ok(read),
        }
    }
}

impl Write for OneFrame {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        Ok(buffer.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A masked text frame carrying `payload` (client to server, FIN set).
fn masked_text_frame(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126, "7-bit length only");
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(
        payload
            .iter()
            .enumerate()
            .map(|(index, byte)| byte ^ mask[index % 4]),
    );
    frame
}

/// Resident bytes of this process.
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("statm's second field is resident pages");
    // SAFETY: sysconf only reads a system constant.
    let page_bytes = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    pages * page_bytes
}

fn main() {
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    let frame = masked_text_frame(br#"{"type":"subscribe"}"#);
    let start = resident_bytes();
    let mut contexts: Vec<WebSocketContext> = (0..CONNECTIONS)
        .map(|_| WebSocketContext::new(Role::Server, None))
        .collect();
    let created = resident_bytes();
    for context in &mut contexts {
        let mut stream = OneFrame(Cursor::new(frame.clone()));
        let message = context.read(&mut stream).expect("one text frame");
        assert!(message.is_text());
    }
    let after_one_frame = resident_bytes();
    let per_context = |bytes: usize| bytes.saturating_sub(start) as f64 / CONNECTIONS as f64;
    println!("websocket_context_memory: {CONNECTIONS} tungstenite 0.30 WebSocketContexts, default config, mimalloc");
    println!(
        "  created:                 {:>12} B resident ({:.0} B per context)",
        created.saturating_sub(start),
        per_context(created)
    );
    println!(
        "  after one 20-byte frame: {:>12} B resident ({:.0} B per context)",
        after_one_frame.saturating_sub(start),
        per_context(after_one_frame)
    );
    drop(contexts);
}
