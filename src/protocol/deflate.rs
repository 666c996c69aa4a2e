//! permessage-deflate (RFC 7692): negotiation, inbound inflate, outbound deflate.
//!
//! Responsibility: decide whether a client's `Sec-WebSocket-Extensions` offer can be
//! accepted, inflate a compressed inbound message within a size bound, and turn a complete
//! plain server frame into its compressed twin. It must not hold per-connection state:
//! ringcast always answers `server_no_context_takeover; client_no_context_takeover`, so
//! every message is compressed alone and one [`Deflater`] / [`Inflater`] per worker serves
//! every connection (an idle connection holds no compressor).
//!
//! Invariants: an inflated message never exceeds the caller's bound (decompression bombs
//! stop at `max_bytes + 1` output bytes); outbound compressed frames are only built for
//! binary (`compress: true`) publications, once per publication.

use super::frame::{frame_header_len, write_header, OpCode};
use crate::error::CloseKind;
use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// The extension parameters ringcast answers with.
pub const RESPONSE_EXTENSION: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// The four bytes a sync flush ends with, removed on the wire (RFC 7692 §7.2.1).
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// An accepted permessage-deflate offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The `server_max_window_bits` the client asked for (15 when it set none).
    pub server_window_bits: u8,
}

impl Negotiated {
    /// Whether this client may be sent deflated frames: ringcast compresses once per
    /// publication with a 15-bit window, so a client that limited the server's window gets
    /// plain frames (RFC 7692 lets any message go uncompressed) and still sends compressed.
    pub fn sends_compressed(&self) -> bool {
        self.server_window_bits == 15
    }

    /// The `Sec-WebSocket-Extensions` response value (echoing a window limit, as RFC 7692
    /// §7.1.2.1 requires of a server that accepts one).
    pub fn response(&self) -> String {
        if self.server_window_bits == 15 {
            RESPONSE_EXTENSION.to_string()
        } else {
            format!(
                "{RESPONSE_EXTENSION}; server_max_window_bits={}",
                self.server_window_bits
            )
        }
    }
}

/// The first permessage-deflate offer in a `Sec-WebSocket-Extensions` value that can be
/// accepted: known parameters with valid values (window bits 8–15); an offer with an
/// unknown parameter is declined.
pub fn negotiate(header_value: &str) -> Option<Negotiated> {
    header_value.split(',').find_map(|offer| {
        let mut parts = offer.split(';').map(str::trim);
        if parts.next() != Some("permessage-deflate") {
            return None;
        }
        let mut negotiated = Negotiated {
            server_window_bits: 15,
        };
        for parameter in parts {
            let (name, value) = match parameter.split_once('=') {
                Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
                None => (parameter, None),
            };
            let bits = value.map(|bits| bits.parse::<u8>());
            match (name, bits) {
                ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
                ("client_max_window_bits", None | Some(Ok(8..=15))) => {}
                ("server_max_window_bits", Some(Ok(bits @ 8..=15))) => {
                    negotiated.server_window_bits = bits
                }
                _ => return None,
            }
        }
        Some(negotiated)
    })
}

/// Whether any offer can be accepted (see [`negotiate`]).
pub fn accepts_offer(header_value: &str) -> bool {
    negotiate(header_value).is_some()
}

/// Why an inbound compressed message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// Inflates to more than the bound: close 1009.
    #[error("inflated message exceeds the size limit")]
    TooBig,
    /// Not a valid deflate stream: close 1002 (a framing-level violation, as the
    /// broker has always closed it).
    #[error("invalid compressed data")]
    Corrupt,
}

/// The typed reason a session closed by this inflate error ends with.
impl From<&InflateError> for CloseKind {
    fn from(error: &InflateError) -> CloseKind {
        match error {
            InflateError::TooBig => CloseKind::MessageTooBig,
            InflateError::Corrupt => CloseKind::ProtocolError,
        }
    }
}

/// One per worker: inflates messages one at a time into a reused buffer.
pub struct Inflater {
    decompress: Decompress,
    output: Vec<u8>,
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater {
            decompress: Decompress::new(false),
            output: Vec::new(),
        }
    }
}

/// Output grows by this much at a time, so a bomb never gets more than one step past the bound.
const INFLATE_STEP_BYTES: usize = 16 * 1024;

impl Inflater {
    /// Inflates one message (without its stripped sync tail). The result borrows the
    /// inflater until the next call.
    pub fn inflate(&mut self, compressed: &[u8], max_bytes: usize) -> Result<&[u8], InflateError> {
        self.decompress.reset(false);
        self.output.clear();
        for input in [compressed, &SYNC_TAIL[..]] {
            let mut offset = 0;
            loop {
                if self.output.len() == self.output.capacity() {
                    // Exact, linear growth: a bomb stops within one step of the bound.
                    self.output.reserve_exact(INFLATE_STEP_BYTES);
                }
                let before_in = self.decompress.total_in();
                let before_out = self.decompress.total_out();
                self.decompress
                    .decompress_vec(&input[offset..], &mut self.output, FlushDecompress::Sync)
                    .map_err(|_| InflateError::Corrupt)?;
                let consumed = (self.decompress.total_in() - before_in) as usize;
                let produced = self.decompress.total_out() - before_out;
                offset += consumed;
                if self.output.len() > max_bytes {
                    self.output = Vec::new();
                    return Err(InflateError::TooBig);
                }
                let output_full = self.output.len() == self.output.capacity();
                // Done with this input only once a call produced nothing: the inflater may
                // hold back output (the rest of a long match) after consuming all input,
                // and the room left in `output` says nothing about that. (Found by the
                // `inflate` fuzz target: a reused inflater cut a 33 KB message at 32 KiB.)
                if offset >= input.len() && produced == 0 && !output_full {
                    break;
                }
                if consumed == 0 && produced == 0 && !output_full {
                    // No progress with input left and room to write: a stream that ended
                    // early or is malformed.
                    return Err(InflateError::Corrupt);
                }
            }
        }
        // Give back memory after an unusually large message.
        if self.output.capacity() > 4 * INFLATE_STEP_BYTES && self.output.len() < INFLATE_STEP_BYTES
        {
            self.output.shrink_to(INFLATE_STEP_BYTES);
        }
        Ok(&self.output)
    }
}

/// One per worker: compresses complete server frames.
pub struct Deflater {
    compress: Compress,
    output: Vec<u8>,
}

impl Default for Deflater {
    fn default() -> Self {
        Deflater {
            compress: Compress::new(Compression::fast(), false),
            output: Vec::new(),
        }
    }
}

impl Deflater {
    /// The compressed twin of a complete, unmasked, single-frame server message
    /// (`plain_frame` = header + payload): RSV1 set, the payload deflated without context.
    /// Returns `None` when the frame is not a complete single data frame.
    pub fn deflate_frame(&mut self, plain_frame: &[u8]) -> Option<Bytes> {
        let (opcode, payload) = split_server_frame(plain_frame)?;
        self.compress.reset();
        self.output.clear();
        self.output.reserve(payload.len() / 2 + 64);
        let mut offset = 0;
        loop {
            if self.output.capacity() - self.output.len() < 64 {
                self.output.reserve(self.output.capacity().max(256));
            }
            let before = self.compress.total_in();
            self.compress
                .compress_vec(&payload[offset..], &mut self.output, FlushCompress::Sync)
                .ok()?;
            offset += (self.compress.total_in() - before) as usize;
            if offset >= payload.len() && self.output.ends_with(&SYNC_TAIL) {
                break;
            }
        }
        let body = &self.output[..self.output.len() - SYNC_TAIL.len()];
        let header_bytes = frame_header_len(body.len());
        let mut frame = vec![0u8; header_bytes + body.len()];
        write_header(opcode, body.len(), &mut frame[..header_bytes]);
        frame[0] |= 0x40; // RSV1: this message is compressed.
        frame[header_bytes..].copy_from_slice(body);
        Some(Bytes::from(frame))
    }
}

/// Opcode and payload of a complete unmasked FIN data frame.
fn split_server_frame(frame: &[u8]) -> Option<(OpCode, &[u8])> {
    let first = *frame.first()?;
    let opcode = match first & 0x0f {
        0x1 => OpCode::Text,
        0x2 => OpCode::Binary,
        _ => return None,
    };
    if first & 0x80 == 0 {
        return None;
    }
    let second = *frame.get(1)? & 0x7f;
    let (header, length) = match second {
        126 => (
            4,
            usize::from(u16::from_be_bytes([*frame.get(2)?, *frame.get(3)?])),
        ),
        127 => (
            10,
            usize::try_from(u64::from_be_bytes(frame.get(2..10)?.try_into().ok()?)).ok()?,
        ),
        short => (2, usize::from(short)),
    };
    let payload = frame.get(header..)?;
    (payload.len() == length).then_some((opcode, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::encode_frame;

    #[test]
    fn inflate_errors_map_to_close_kinds() {
        // As the worker closes them: 1009 for a bomb, 1002 for a corrupt stream.
        assert_eq!(
            CloseKind::from(&InflateError::TooBig),
            CloseKind::MessageTooBig
        );
        assert_eq!(CloseKind::from(&InflateError::TooBig).code(), 1009);
        assert_eq!(
            CloseKind::from(&InflateError::Corrupt),
            CloseKind::ProtocolError
        );
        assert_eq!(CloseKind::from(&InflateError::Corrupt).code(), 1002);
    }

    #[test]
    fn offers_are_accepted_or_declined() {
        assert!(accepts_offer("permessage-deflate"));
        assert!(accepts_offer("permessage-deflate; client_max_window_bits"));
        assert!(accepts_offer(
            "x-webkit-deflate-frame, permessage-deflate; client_max_window_bits=10"
        ));
        assert!(accepts_offer(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        ));
        let narrow = negotiate("permessage-deflate; server_max_window_bits=10").unwrap();
        assert!(!narrow.sends_compressed());
        assert!(narrow.response().ends_with("; server_max_window_bits=10"));
        assert!(negotiate("permessage-deflate").unwrap().sends_compressed());
        assert!(!accepts_offer(
            "permessage-deflate; server_max_window_bits=7"
        ));
        assert!(!accepts_offer("permessage-deflate; server_max_window_bits"));
        assert!(!accepts_offer("permessage-deflate; unknown_param"));
        assert!(!accepts_offer("x-webkit-deflate-frame"));
        assert!(!accepts_offer(""));
    }

    #[test]
    fn deflated_frames_inflate_back() {
        let mut deflater = Deflater::default();
        let mut inflater = Inflater::default();
        for payload in [b"".to_vec(), b"{\"a\":1}".to_vec(), vec![b'x'; 200_000]] {
            let mut plain = Vec::new();
            encode_frame(OpCode::Binary, &payload, &mut plain);
            let compressed = deflater.deflate_frame(&plain).unwrap();
            assert_eq!(compressed[0], 0x80 | 0x40 | 0x2);
            let (_, body) = split_server_frame(&compressed).unwrap();
            assert_eq!(inflater.inflate(body, payload.len()).unwrap(), &payload[..]);
        }
    }

    #[test]
    fn a_reused_inflater_returns_the_whole_message() {
        // fuzz/seeds/inflate/regression_held_back_output: 57 bytes that inflate to 33,006.
        let mut deflater = Deflater::default();
        let mut plain = Vec::new();
        let payload: Vec<u8> = (0..33_006u32)
            .map(|i| b"ab"[(i % 7 == 0) as usize])
            .collect();
        encode_frame(OpCode::Binary, &payload, &mut plain);
        let compressed = deflater.deflate_frame(&plain).unwrap();
        let (_, body) = split_server_frame(&compressed).unwrap();
        let mut inflater = Inflater::default();
        for _ in 0..3 {
            assert_eq!(
                inflater.inflate(body, 1 << 20).unwrap().len(),
                payload.len()
            );
        }
        let seed = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/seeds/inflate/regression_held_back_output"
        ));
        if let Ok(seed) = seed {
            let first = inflater.inflate(&seed, 1 << 20).map(|b| b.len());
            let second = inflater.inflate(&seed, 1 << 20).map(|b| b.len());
            assert_eq!(
                first, second,
                "same input, same output, however the buffer grew"
            );
        }
    }

    #[test]
    fn bombs_stop_at_the_bound() {
        let mut deflater = Deflater::default();
        let mut inflater = Inflater::default();
        let mut plain = Vec::new();
        encode_frame(OpCode::Binary, &vec![0u8; 10_000_000], &mut plain);
        let compressed = deflater.deflate_frame(&plain).unwrap();
        let (_, body) = split_server_frame(&compressed).unwrap();
        assert!(body.len() < 100_000);
        assert_eq!(inflater.inflate(body, 65_536), Err(InflateError::TooBig));
        assert_eq!(
            inflater.output.capacity(),
            0,
            "memory released after a refusal"
        );
        assert_eq!(
            inflater.inflate(&[0xff, 0xff, 0xff], 1000),
            Err(InflateError::Corrupt)
        );
        // Still usable afterwards.
        let mut small = Vec::new();
        encode_frame(OpCode::Text, b"ok", &mut small);
        let compressed = deflater.deflate_frame(&small).unwrap();
        let (_, body) = split_server_frame(&compressed).unwrap();
        assert_eq!(inflater.inflate(body, 10).unwrap(), b"ok");
    }
}
