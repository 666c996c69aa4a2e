//! Encoding frames: the unmasked frames the server sends, and the masked frames a client
//! sends (the one client encoder the unit tests, `tests/`, the codec bench and the load
//! test share, so that every harness speaks the framing the reader checks).
//!
//! Responsibility: write frame headers (FIN, opcode, 7/16/64-bit length, masking key)
//! and append whole frames to a caller's buffer.
//!
//! Must not: do I/O, allocate beyond the caller's `Vec` (which it reserves once per
//! frame), or mask server frames (RFC 6455 §5.1: a server never masks).

use super::wire::{apply_mask, OpCode};

/// The largest header a server frame needs: 2 bytes + an 8-byte extended length
/// (server frames are never masked, so there is no 4-byte masking key).
pub const MAX_SERVER_HEADER_BYTES: usize = 10;

/// The largest header a client frame needs: a server header's 10 bytes + the 4-byte
/// masking key.
pub const MAX_CLIENT_HEADER_BYTES: usize = MAX_SERVER_HEADER_BYTES + 4;

/// The MASK bit of the second header byte (RFC 6455 §5.2).
const MASK_BIT: u8 = 0x80;

/// The FIN bit of the first header byte: the final (or only) frame of a message.
const FIN_BIT: u8 = 0x80;

/// The header length of an unmasked server frame with this payload: 2, 4 or 10 bytes.
pub fn frame_header_len(payload_len: usize) -> usize {
    if payload_len < 126 {
        2
    } else if payload_len <= usize::from(u16::MAX) {
        4
    } else {
        10
    }
}

/// Writes `first_byte` and the (unmasked) length of `payload_len` bytes at the start of
/// `out`; returns the header length, or 0 when `out` is too short (nothing written).
fn write_header_bytes(first_byte: u8, payload_len: usize, out: &mut [u8]) -> usize {
    let header_bytes = frame_header_len(payload_len);
    let Some(header) = out.get_mut(..header_bytes) else {
        return 0;
    };
    header[0] = first_byte;
    match header_bytes {
        2 => header[1] = payload_len as u8,
        4 => {
            header[1] = 126;
            header[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        }
        _ => {
            header[1] = 127;
            header[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        }
    }
    header_bytes
}

/// Writes a final, unmasked frame header for `payload_len` bytes at the start of `out`
/// and returns its length ([`frame_header_len`]). If `out` is shorter than that, nothing
/// is written and 0 is returned (a caller bug: size the slice with `frame_header_len`).
pub fn write_header(opcode: OpCode, payload_len: usize, out: &mut [u8]) -> usize {
    write_header_bytes(FIN_BIT | opcode.to_bits(), payload_len, out)
}

/// Appends one final, unmasked frame (server frames are never masked) to `out`.
pub fn encode_frame(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    let mut header = [0u8; MAX_SERVER_HEADER_BYTES];
    let header_bytes = write_header(opcode, payload.len(), &mut header);
    out.reserve(header_bytes + payload.len());
    out.extend_from_slice(&header[..header_bytes]);
    out.extend_from_slice(payload);
}

/// Appends one final client frame to `out`: FIN + `opcode`, the length with the MASK
/// bit, `mask_key`, and `payload` XORed with the key (RFC 6455 §5.3). A real client
/// picks a fresh random key per frame; tests and load generators may fix it, since the
/// server unmasks whatever key it gets.
pub fn encode_client_frame(opcode: OpCode, payload: &[u8], mask_key: [u8; 4], out: &mut Vec<u8>) {
    encode_client_frame_raw(FIN_BIT | opcode.to_bits(), payload, mask_key, out);
}

/// Like [`encode_client_frame`] with the whole first header byte given as is (FIN,
/// RSV1–3, the 4-bit opcode): for non-final fragments, compressed messages (RSV1) and
/// the invalid frames tests send on purpose (reserved bits or opcodes).
pub fn encode_client_frame_raw(
    first_byte: u8,
    payload: &[u8],
    mask_key: [u8; 4],
    out: &mut Vec<u8>,
) {
    let mut header = [0u8; MAX_CLIENT_HEADER_BYTES];
    let length_end = write_header_bytes(first_byte, payload.len(), &mut header);
    header[1] |= MASK_BIT;
    header[length_end..length_end + 4].copy_from_slice(&mask_key);
    let header_bytes = length_end + 4;
    out.reserve(header_bytes + payload.len());
    out.extend_from_slice(&header[..header_bytes]);
    let payload_start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[payload_start..], mask_key);
}

#[cfg(test)]
mod tests {
    use super::super::reader::{FrameReader, Incoming, Progress};
    use super::*;

    /// The masking key of RFC 6455 §5.7's masked examples.
    const RFC_KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    #[test]
    fn encodes_the_rfc_6455_masked_examples() {
        // §5.7: "A single-frame masked text message" containing "Hello".
        let mut out = Vec::new();
        encode_client_frame(OpCode::Text, b"Hello", RFC_KEY, &mut out);
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        // §5.7: "Unmasked Ping request and masked Ping response" — the masked Pong.
        out.clear();
        encode_client_frame(OpCode::Pong, b"Hello", RFC_KEY, &mut out);
        assert_eq!(
            out,
            [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
    }

    #[test]
    fn encodes_the_rfc_6455_unmasked_examples() {
        // §5.7: "A single-frame unmasked text message" and the unmasked Ping.
        let mut out = Vec::new();
        encode_frame(OpCode::Text, b"Hello", &mut out);
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        out.clear();
        encode_frame(OpCode::Ping, b"Hello", &mut out);
        assert_eq!(out, [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        // §5.7: 256 bytes and 64 KiB of binary data in a single unmasked frame.
        out.clear();
        encode_frame(OpCode::Binary, &[0; 256], &mut out);
        assert_eq!(&out[..4], [0x82, 0x7E, 0x01, 0x00]);
        out.clear();
        encode_frame(OpCode::Binary, &[0; 65536], &mut out);
        assert_eq!(&out[..10], [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn raw_first_byte_is_written_as_given() {
        // §5.7's fragmented text "Hel" + "lo", masked: FIN clear on the first fragment.
        let mut out = Vec::new();
        encode_client_frame_raw(OpCode::Text.to_bits(), b"Hel", RFC_KEY, &mut out);
        assert_eq!(out[..6], [0x01, 0x83, 0x37, 0xfa, 0x21, 0x3d]);
        out.clear();
        encode_client_frame_raw(0x80 | 0x40 | 0x1, b"", RFC_KEY, &mut out);
        assert_eq!(out, [0xC1, 0x80, 0x37, 0xfa, 0x21, 0x3d]);
    }

    #[test]
    fn client_frames_decode_at_every_length_class() {
        for length in [0usize, 125, 126, 65535, 65536, 70_000] {
            let payload: Vec<u8> = (0..length).map(|index| (index % 251) as u8).collect();
            let mut wire = vec![0xEE]; // bytes already in the buffer stay untouched
            encode_client_frame(OpCode::Binary, &payload, [1, 2, 3, 4], &mut wire);
            assert_eq!(wire.len(), 1 + frame_header_len(length) + 4 + length);
            let mut reader = FrameReader::new();
            match reader.read(&mut wire[1..], usize::MAX) {
                Ok(Progress::Message {
                    message: Incoming::Binary(bytes),
                    consumed,
                }) => {
                    assert_eq!(bytes, &payload[..], "length {length}");
                    assert_eq!(consumed, wire.len() - 1);
                }
                other => panic!("length {length}: {other:?}"),
            }
            assert_eq!(wire[0], 0xEE);
        }
    }

    #[test]
    fn writes_headers_at_length_boundaries() {
        let cases: [(usize, &[u8]); 6] = [
            (0, &[0x81, 0]),
            (125, &[0x81, 125]),
            (126, &[0x81, 126, 0, 126]),
            (65535, &[0x81, 126, 0xFF, 0xFF]),
            (65536, &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
            (1 << 32, &[0x81, 127, 0, 0, 0, 1, 0, 0, 0, 0]),
        ];
        for (length, expected) in cases {
            assert_eq!(frame_header_len(length), expected.len());
            let mut header = [0u8; 10];
            assert_eq!(
                write_header(OpCode::Text, length, &mut header),
                expected.len()
            );
            assert_eq!(&header[..expected.len()], expected);
        }
        let mut too_short = [0u8; 3];
        assert_eq!(write_header(OpCode::Text, 126, &mut too_short), 0);
    }

    #[test]
    fn encodes_unmasked_server_frames() {
        let mut out = Vec::new();
        encode_frame(OpCode::Pong, b"abc", &mut out);
        assert_eq!(out, [0x8A, 3, b'a', b'b', b'c']);
        out.clear();
        encode_frame(OpCode::Binary, &[7; 200], &mut out);
        assert_eq!(&out[..4], &[0x82, 126, 0, 200]);
        assert_eq!(out.len(), 204);
    }
}
