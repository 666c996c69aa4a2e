//! Tests for `frame::reader`: client frames are built by the shared client encoder
//! (`frame::encode`), then fed to the reader whole, split at every byte boundary, and one
//! byte at a time.

use super::*;
use crate::protocol::frame::encode_client_frame_raw;

/// Builds one client frame with the shared client encoder: `first_byte` as given
/// (FIN, RSV bits, opcode), masked length, key, masked payload.
fn client_frame(first_byte: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut frame = Vec::new();
    encode_client_frame_raw(first_byte, payload, mask, &mut frame);
    frame
}

fn masked(opcode: OpCode, is_final: bool, payload: &[u8]) -> Vec<u8> {
    let first = if is_final { 0x80 } else { 0 } | opcode.to_bits();
    client_frame(first, payload, [0x37, 0xFA, 0x21, 0x3D])
}

/// An owned copy of a decoded message, to compare across runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    Close(Option<u16>, String),
    Compressed(bool, Vec<u8>),
}

fn to_owned(message: Incoming<'_>) -> Owned {
    match message {
        Incoming::Text(bytes) => Owned::Text(String::from_utf8(bytes.to_vec()).unwrap()),
        Incoming::Binary(bytes) => Owned::Binary(bytes.to_vec()),
        Incoming::Ping(bytes) => Owned::Ping(bytes.to_vec()),
        Incoming::Pong => Owned::Pong,
        Incoming::Close { code, reason } => Owned::Close(code, reason.to_string()),
        Incoming::Compressed { text, data } => Owned::Compressed(text, data.to_vec()),
    }
}

/// Feeds `chunks` the way a connection's reader would: append each chunk to a buffer,
/// decode until NeedMore, keep the unconsumed tail.
fn decode_chunks(chunks: &[&[u8]], max_message_bytes: usize) -> Result<Vec<Owned>, FrameError> {
    let mut reader = FrameReader::new();
    let mut buffer: Vec<u8> = Vec::new();
    let mut messages = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        loop {
            let before = buffer.clone();
            match reader.read(&mut buffer, max_message_bytes)? {
                Progress::NeedMore => {
                    assert_eq!(buffer, before, "NeedMore must not touch the input");
                    break;
                }
                Progress::Fragment { consumed } => {
                    buffer.drain(..consumed);
                }
                Progress::Message { message, consumed } => {
                    messages.push(to_owned(message));
                    buffer.drain(..consumed);
                }
            }
        }
    }
    assert!(buffer.is_empty(), "bytes left over: {buffer:?}");
    assert!(reader.is_idle(), "reader not idle at the end");
    assert_eq!(reader.fragments.capacity(), 0, "idle reader holds memory");
    Ok(messages)
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// text, binary, ping, fragmented text (a 2-byte and a 4-byte character split across
/// fragments) with an interleaved ping and pong, fragmented binary, close.
fn sample_stream() -> (Vec<u8>, Vec<Owned>) {
    let text = "héllo wörld 🎉!";
    let bytes = text.as_bytes();
    // "h" + first byte of "é" | rest of "é" .. first 2 bytes of "🎉" | the rest
    let emoji_start = text.find('🎉').unwrap();
    let (part1, rest) = bytes.split_at(2);
    let (part2, part3) = rest.split_at(emoji_start);
    let mut stream = Vec::new();
    stream.extend(masked(OpCode::Text, true, b"hello"));
    stream.extend(masked(OpCode::Binary, true, &[0, 1, 2, 255]));
    stream.extend(masked(OpCode::Ping, true, b"are you there"));
    stream.extend(masked(OpCode::Text, false, part1));
    stream.extend(masked(OpCode::Ping, true, b""));
    stream.extend(masked(OpCode::Continuation, false, part2));
    stream.extend(masked(OpCode::Pong, true, b"x"));
    stream.extend(masked(OpCode::Continuation, true, part3));
    stream.extend(masked(OpCode::Binary, false, &[9; 300]));
    stream.extend(masked(OpCode::Continuation, false, b""));
    stream.extend(masked(OpCode::Continuation, true, &[8; 3]));
    stream.extend(masked(OpCode::Close, true, &close_payload(1000, "bye ✓")));
    let mut fragmented_binary = vec![9; 300];
    fragmented_binary.extend([8; 3]);
    let expected = vec![
        Owned::Text("hello".into()),
        Owned::Binary(vec![0, 1, 2, 255]),
        Owned::Ping(b"are you there".to_vec()),
        Owned::Ping(vec![]),
        Owned::Pong,
        Owned::Text(text.into()),
        Owned::Binary(fragmented_binary),
        Owned::Close(Some(1000), "bye ✓".into()),
    ];
    (stream, expected)
}

#[test]
fn decodes_a_stream_whole() {
    let (stream, expected) = sample_stream();
    assert_eq!(decode_chunks(&[&stream], 1 << 20).unwrap(), expected);
}

#[test]
fn decodes_a_stream_split_at_every_byte_boundary() {
    let (stream, expected) = sample_stream();
    for split in 0..=stream.len() {
        let (first, second) = stream.split_at(split);
        assert_eq!(
            decode_chunks(&[first, second], 1 << 20).unwrap(),
            expected,
            "split at {split}"
        );
    }
}

#[test]
fn decodes_a_stream_one_byte_at_a_time() {
    let (stream, expected) = sample_stream();
    let chunks: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(decode_chunks(&chunks, 1 << 20).unwrap(), expected);
}

#[test]
fn decodes_16_and_64_bit_lengths() {
    for length in [125usize, 126, 127, 65535, 65536, 70000] {
        let payload: Vec<u8> = (0..length).map(|index| (index % 251) as u8).collect();
        let frame = masked(OpCode::Binary, true, &payload);
        let expected_header = 2
            + 4
            + match length {
                0..=125 => 0,
                126..=65535 => 2,
                _ => 8,
            };
        assert_eq!(frame.len(), expected_header + length);
        assert_eq!(
            decode_chunks(&[&frame], 1 << 20).unwrap(),
            vec![Owned::Binary(payload)]
        );
    }
}

#[test]
fn unmasks_every_alignment_and_length() {
    for length in 0..40 {
        let payload: Vec<u8> = (0..length).map(|index| index as u8 ^ 0x5A).collect();
        let frame = client_frame(0x82, &payload, [1, 2, 3, 4]);
        assert_eq!(
            decode_chunks(&[&frame], 100).unwrap(),
            vec![Owned::Binary(payload)]
        );
    }
}

#[test]
fn fragment_memory_is_freed_on_the_next_read() {
    let mut stream = masked(OpCode::Text, false, b"ab");
    stream.extend(masked(OpCode::Continuation, true, b"cd"));
    let mut reader = FrameReader::new();
    assert!(reader.is_idle());
    let consumed = match reader.read(&mut stream, 100).unwrap() {
        Progress::Fragment { consumed } => consumed,
        other => panic!("{other:?}"),
    };
    assert!(!reader.is_idle());
    stream.drain(..consumed);
    match reader.read(&mut stream, 100).unwrap() {
        Progress::Message { message, .. } => assert_eq!(message, Incoming::Text(b"abcd")),
        other => panic!("{other:?}"),
    }
    assert!(
        !reader.is_idle(),
        "the delivered message is still borrowed out"
    );
    assert_eq!(reader.read(&mut [], 100).unwrap(), Progress::NeedMore);
    assert!(reader.is_idle());
    assert_eq!(reader.fragments.capacity(), 0);
}

#[test]
fn reader_is_small() {
    assert!(std::mem::size_of::<FrameReader>() <= 32);
}

fn first_error(stream: &[u8], max_message_bytes: usize) -> FrameError {
    decode_chunks(&[stream], max_message_bytes).unwrap_err()
}

#[test]
fn rejects_protocol_violations() {
    let unmasked = [0x81, 0x02, b'h', b'i'];
    assert_eq!(first_error(&unmasked, 100), FrameError::Unmasked);
    for reserved_bits in [0x40, 0x20, 0x10] {
        let frame = client_frame(0x81 | reserved_bits, b"hi", [1, 2, 3, 4]);
        assert_eq!(first_error(&frame, 100), FrameError::ReservedBits);
    }
    for opcode in [3u8, 7, 0xB, 0xF] {
        let frame = client_frame(0x80 | opcode, b"", [1, 2, 3, 4]);
        assert_eq!(first_error(&frame, 100), FrameError::ReservedOpcode(opcode));
    }
    let long_ping = masked(OpCode::Ping, true, &[0; 126]);
    assert_eq!(first_error(&long_ping, 1000), FrameError::ControlTooLong);
    let fragmented_ping = masked(OpCode::Ping, false, b"");
    assert_eq!(
        first_error(&fragmented_ping, 100),
        FrameError::FragmentedControl
    );
    let lone_continuation = masked(OpCode::Continuation, true, b"x");
    assert_eq!(
        first_error(&lone_continuation, 100),
        FrameError::UnexpectedContinuation
    );
    let mut interleaved = masked(OpCode::Text, false, b"a");
    interleaved.extend(masked(OpCode::Binary, true, b"b"));
    assert_eq!(
        first_error(&interleaved, 100),
        FrameError::ExpectedContinuation
    );
    let mut top_bit = vec![0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
    top_bit.extend([1, 2, 3, 4]);
    assert_eq!(first_error(&top_bit, usize::MAX), FrameError::InvalidLength);
}

#[test]
fn rejects_too_big_from_the_header_alone() {
    let frame = masked(OpCode::Binary, true, &[0; 1000]);
    let header_only = &frame[..2 + 2 + 4];
    let mut reader = FrameReader::new();
    let error = reader.read(&mut header_only.to_vec(), 999).unwrap_err();
    assert_eq!(
        error,
        FrameError::TooBig {
            message_bytes: 1000,
            max_message_bytes: 999
        }
    );
    assert_eq!(error.close_code(), 1009);
    assert!(decode_chunks(&[&frame], 1000).is_ok());
}

#[test]
fn rejects_too_big_as_a_sum_of_fragments() {
    let mut stream = masked(OpCode::Text, false, &[b'a'; 60]);
    stream.extend(masked(OpCode::Continuation, false, &[b'a'; 40]));
    stream.extend(masked(OpCode::Continuation, true, &[b'a'; 1]));
    assert_eq!(
        first_error(&stream, 100),
        FrameError::TooBig {
            message_bytes: 101,
            max_message_bytes: 100
        }
    );
    assert_eq!(decode_chunks(&[&stream], 101).unwrap().len(), 1);
}

#[test]
fn rejects_invalid_utf8() {
    let bad_text = masked(OpCode::Text, true, &[b'a', 0xC3]);
    assert_eq!(first_error(&bad_text, 100), FrameError::InvalidUtf8);
    assert_eq!(FrameError::InvalidUtf8.close_code(), 1007);
    let mut bad_fragments = masked(OpCode::Text, false, "é".as_bytes());
    bad_fragments.extend(masked(OpCode::Continuation, true, &[0xFF]));
    assert_eq!(first_error(&bad_fragments, 100), FrameError::InvalidUtf8);
    // Binary frames are not inspected.
    let binary = masked(OpCode::Binary, true, &[0xFF]);
    assert!(decode_chunks(&[&binary], 100).is_ok());
}

#[test]
fn checks_close_frames() {
    let empty = masked(OpCode::Close, true, b"");
    assert_eq!(
        decode_chunks(&[&empty], 100).unwrap(),
        vec![Owned::Close(None, String::new())]
    );
    let one_byte = masked(OpCode::Close, true, &[3]);
    assert_eq!(first_error(&one_byte, 100), FrameError::CloseTooShort);
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        let frame = masked(OpCode::Close, true, &close_payload(code, ""));
        assert_eq!(first_error(&frame, 100), FrameError::InvalidCloseCode(code));
    }
    for code in [1000u16, 1001, 1003, 1007, 1011, 1014, 3000, 4000, 4999] {
        let frame = masked(OpCode::Close, true, &close_payload(code, "ok"));
        assert_eq!(
            decode_chunks(&[&frame], 100).unwrap(),
            vec![Owned::Close(Some(code), "ok".into())]
        );
    }
    let mut bad_reason = close_payload(1000, "");
    bad_reason.push(0xC0);
    let frame = masked(OpCode::Close, true, &bad_reason);
    assert_eq!(first_error(&frame, 100), FrameError::InvalidCloseReason);
    assert_eq!(FrameError::InvalidCloseReason.close_code(), 1007);
}

#[test]
fn close_codes_map_per_protocol() {
    assert_eq!(FrameError::Unmasked.close_code(), 1002);
    assert_eq!(FrameError::ReservedOpcode(3).close_code(), 1002);
    assert_eq!(FrameError::CloseTooShort.close_code(), 1002);
}

#[test]
fn never_panics_on_arbitrary_bytes() {
    // A cheap deterministic stand-in for the fuzz target.
    let mut state: u32 = 12345;
    for _ in 0..20_000 {
        let mut input: Vec<u8> = (0..(state % 40))
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (state >> 16) as u8
            })
            .collect();
        let mut reader = FrameReader::new();
        while let Ok(progress) = reader.read(&mut input, 64) {
            match progress {
                Progress::NeedMore => break,
                Progress::Fragment { consumed } | Progress::Message { consumed, .. } => {
                    input.drain(..consumed);
                }
            }
        }
    }
}

#[test]
fn rsv1_marks_a_compressed_message_only_when_deflate_was_negotiated() {
    // FIN + RSV1 + text, masked, 3 bytes; then a fragmented compressed binary message.
    let frame = |first: u8, payload: &[u8]| {
        let mask = [1u8, 2, 3, 4];
        let mut bytes = vec![first, 0x80 | payload.len() as u8];
        bytes.extend_from_slice(&mask);
        bytes.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        bytes
    };
    let mut plain_reader = FrameReader::new();
    let mut input = frame(0xC1, b"abc");
    assert!(matches!(
        plain_reader.read(&mut input, 1000),
        Err(FrameError::ReservedBits)
    ));

    let mut reader = FrameReader::new();
    reader.enable_deflate();
    let mut input = frame(0xC1, b"abc");
    match reader.read(&mut input, 1000).unwrap() {
        Progress::Message { message, .. } => {
            assert_eq!(to_owned(message), Owned::Compressed(true, b"abc".to_vec()))
        }
        _ => panic!("expected a message"),
    }
    let mut first = frame(0x42, b"ab");
    assert!(matches!(
        reader.read(&mut first, 1000).unwrap(),
        Progress::Fragment { .. }
    ));
    let mut last = frame(0x80, b"cd");
    match reader.read(&mut last, 1000).unwrap() {
        Progress::Message { message, .. } => {
            assert_eq!(
                to_owned(message),
                Owned::Compressed(false, b"abcd".to_vec())
            )
        }
        _ => panic!("expected a message"),
    }
    // RSV1 on a continuation or a control frame is a protocol error.
    let mut ping = frame(0xC9, b"");
    assert!(matches!(
        reader.read(&mut ping, 1000),
        Err(FrameError::ReservedBits)
    ));
}

#[test]
fn invalid_utf8_in_a_text_fragment_fails_before_the_message_ends() {
    let frame = |first: u8, payload: &[u8]| {
        let mask = [9u8, 8, 7, 6];
        let mut bytes = vec![first, 0x80 | payload.len() as u8];
        bytes.extend_from_slice(&mask);
        bytes.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        bytes
    };
    // "κόσμε" split inside a character across fragments is fine…
    let text = "κόσμε".as_bytes();
    let mut reader = FrameReader::new();
    let mut first = frame(0x01, &text[..3]);
    assert!(matches!(
        reader.read(&mut first, 1000).unwrap(),
        Progress::Fragment { .. }
    ));
    let mut second = frame(0x00, &text[3..7]);
    assert!(matches!(
        reader.read(&mut second, 1000).unwrap(),
        Progress::Fragment { .. }
    ));
    let mut last = frame(0x80, &text[7..]);
    assert!(matches!(
        reader.read(&mut last, 1000).unwrap(),
        Progress::Message { .. }
    ));
    // …but a byte that can never be UTF-8 fails at its fragment, not at the end.
    let mut reader = FrameReader::new();
    let mut first = frame(0x01, &text[..3]);
    assert!(reader.read(&mut first, 1000).is_ok());
    let mut bad = frame(0x00, &[0xF4, 0x90, 0x80, 0x80]);
    assert!(matches!(
        reader.read(&mut bad, 1000),
        Err(FrameError::InvalidUtf8)
    ));
}

#[test]
fn invalid_utf8_fails_while_a_text_frame_is_still_arriving() {
    // One masked text frame of 8 payload bytes: "κό" then an impossible byte 0xF8.
    let mask = [1u8, 2, 3, 4];
    let payload: &[u8] = &[0xCE, 0xBA, 0xCF, 0x8C, 0xF8, b'a', b'b', b'c'];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    // Valid prefix split inside a character: need more, no error.
    let mut reader = FrameReader::new();
    for end in [6, 7, 8, 9] {
        let mut part = frame[..end].to_vec();
        assert!(matches!(
            reader.read(&mut part, 1000).unwrap(),
            Progress::NeedMore
        ));
    }
    // Once the impossible byte has arrived the frame fails, before its end.
    let mut part = frame[..11].to_vec();
    assert!(matches!(
        reader.read(&mut part, 1000),
        Err(FrameError::InvalidUtf8)
    ));
    // A valid frame that arrives byte by byte still decodes.
    let text = "κόσμε ok".as_bytes();
    let mut valid = vec![0x81, 0x80 | text.len() as u8];
    valid.extend_from_slice(&mask);
    valid.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    let mut reader = FrameReader::new();
    for end in 6..valid.len() {
        let mut part = valid[..end].to_vec();
        assert!(matches!(
            reader.read(&mut part, 1000).unwrap(),
            Progress::NeedMore
        ));
    }
    let mut whole = valid.clone();
    match reader.read(&mut whole, 1000).unwrap() {
        Progress::Message {
            message: Incoming::Text(bytes),
            ..
        } => assert_eq!(bytes, text),
        _ => panic!("expected the text message"),
    }
}

#[test]
fn an_incomplete_character_before_a_read_boundary_is_rechecked() {
    // Fuzzing regression: a lead byte 0xC4 then a non-continuation 'L' must fail whether
    // the frame arrives whole or byte by byte.
    let mask = [249u8, 137, 250, 33];
    let mut frame = vec![0x01, 0x80 | 67];
    frame.extend_from_slice(&mask);
    frame.extend(
        [0xC4u8, b'L']
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4]),
    );
    let mut whole = FrameReader::new();
    let mut input = frame.clone();
    assert!(matches!(
        whole.read(&mut input, 1000),
        Err(FrameError::InvalidUtf8)
    ));
    let mut split = FrameReader::new();
    let mut first = frame[..7].to_vec();
    assert!(matches!(
        split.read(&mut first, 1000).unwrap(),
        Progress::NeedMore
    ));
    let mut second = frame.clone();
    assert!(matches!(
        split.read(&mut second, 1000),
        Err(FrameError::InvalidUtf8)
    ));
}
