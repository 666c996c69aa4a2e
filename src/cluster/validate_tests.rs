use super::*;
use crate::cluster::wire::{decode_publication, encode_publication};
use crate::protocol::frame::{encode_frame, OpCode};

const LIMIT: usize = 64 * 1024;

fn frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(opcode, payload, &mut out);
    out
}

fn publication(plain: &[u8], deflated: Option<&[u8]>) -> BusPublication {
    decode_publication(&encode_publication(
        "node-a", "app", "chat", plain, deflated,
    ))
    .unwrap()
}

fn check(plain: &[u8], deflated: Option<&[u8]>) -> Result<(), BusInputError> {
    check_publication(
        &publication(plain, deflated),
        LIMIT,
        &mut Inflater::default(),
    )
}

#[test]
fn a_well_formed_publication_passes() {
    let text = frame(OpCode::Text, br#"{"topic":"chat","data":{"payload":[1]}}"#);
    assert_eq!(check(&text, None), Ok(()));
    let binary = frame(OpCode::Binary, br#"{"topic":"chat"}"#);
    assert_eq!(check(&binary, None), Ok(()));
    // Exactly at the bound.
    let big = format!(r#""{}""#, "x".repeat(LIMIT - 20));
    let mut fits = frame(OpCode::Text, big.as_bytes());
    assert!(fits.len() <= LIMIT);
    assert_eq!(check(&fits, None), Ok(()));
    fits.extend_from_slice(&b" ".repeat(LIMIT));
    assert_ne!(check(&fits, None), Ok(()));
}

#[test]
fn frames_that_would_corrupt_a_subscriber_stream_are_refused() {
    let good = frame(OpCode::Text, br#"{"a":1}"#);
    // A close frame injected into every subscriber's stream.
    let close = frame(OpCode::Close, b"\x03\xe8bye");
    assert_eq!(check(&close, None), Err(BusInputError::BadFrame));
    // Ping, pong, continuation, reserved opcodes.
    for opcode in [0x0u8, 0x3, 0x9, 0xa, 0xb] {
        let mut bad = good.clone();
        bad[0] = 0x80 | opcode;
        assert_eq!(
            check(&bad, None),
            Err(BusInputError::BadFrame),
            "opcode {opcode}"
        );
    }
    // Not final, RSV bits, masked.
    for (byte, bits) in [(0, 0x80u8), (0, 0x40), (0, 0x20), (0, 0x10), (1, 0x80)] {
        let mut bad = good.clone();
        bad[byte] ^= bits;
        assert_eq!(
            check(&bad, None),
            Err(BusInputError::BadFrame),
            "{byte}/{bits:#x}"
        );
    }
    // A length that does not match: short, long, two frames back to back.
    for cut in 0..good.len() {
        assert!(check(&good[..cut], None).is_err(), "cut {cut}");
    }
    let mut two = good.clone();
    two.extend_from_slice(&good);
    assert_eq!(check(&two, None), Err(BusInputError::BadFrame));
    // Too large for the receiver.
    let huge = frame(
        OpCode::Text,
        format!(r#""{}""#, "y".repeat(LIMIT)).as_bytes(),
    );
    assert_eq!(check(&huge, None), Err(BusInputError::TooLarge));
}

#[test]
fn payloads_must_be_json_nested_at_most_128_deep() {
    assert_eq!(
        check(&frame(OpCode::Text, b"not json"), None),
        Err(BusInputError::BadPayload)
    );
    assert_eq!(
        check(&frame(OpCode::Text, b"\xff\xfe"), None),
        Err(BusInputError::BadPayload)
    );
    // Invalid UTF-8 inside a JSON string: serde_json skips the insides of ignored strings,
    // so this passed before (found by the bus_input fuzz target).
    assert_eq!(
        check(&frame(OpCode::Text, b"{\"\x84\x90\":\"chat\"}"), None),
        Err(BusInputError::BadPayload)
    );
    assert_eq!(
        check(&frame(OpCode::Binary, b"[\"\xff\"]"), None),
        Err(BusInputError::BadPayload)
    );
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    assert_eq!(
        check(&frame(OpCode::Text, nested(128).as_bytes()), None),
        Ok(())
    );
    assert_eq!(
        check(&frame(OpCode::Text, nested(129).as_bytes()), None),
        Err(BusInputError::BadPayload)
    );
}

#[test]
fn a_deflated_twin_must_inflate_to_the_plain_payload() {
    let payload = br#"{"topic":"chat","data":{"payload":"hello hello hello"}}"#;
    let plain = frame(OpCode::Binary, payload);
    let mut deflater = crate::protocol::deflate::Deflater::default();
    let twin = deflater.deflate_frame(&plain).expect("compresses");
    assert_eq!(check(&plain, Some(&twin)), Ok(()));
    // A twin of another message, a twin without RSV1, garbage behind a good header.
    let other = deflater
        .deflate_frame(&frame(OpCode::Binary, br#"{"other":1}"#))
        .unwrap();
    assert_eq!(check(&plain, Some(&other)), Err(BusInputError::BadFrame));
    let mut no_rsv1 = twin.to_vec();
    no_rsv1[0] &= !0x40;
    assert_eq!(check(&plain, Some(&no_rsv1)), Err(BusInputError::BadFrame));
    let mut garbage = twin.to_vec();
    let last = garbage.len() - 1;
    garbage[2..=last].fill(0xff);
    assert_eq!(check(&plain, Some(&garbage)), Err(BusInputError::BadFrame));
    // The twin's opcode must match.
    let text_twin = deflater
        .deflate_frame(&frame(OpCode::Text, payload))
        .unwrap();
    assert_eq!(
        check(&plain, Some(&text_twin)),
        Err(BusInputError::BadFrame)
    );
}

#[test]
fn publication_fields_are_checked() {
    let good = frame(OpCode::Text, b"1");
    let mut inflater = Inflater::default();
    for (origin, app, topic) in [
        ("node.a", "app", "chat"),
        ("", "app", "chat"),
        ("node-a", "", "chat"),
        ("node-a", "app", ""),
        ("node-a", "app", "bad\u{1}topic"),
    ] {
        let bytes = encode_publication(origin, app, topic, &good, None);
        let publication = decode_publication(&bytes).unwrap();
        assert_eq!(
            check_publication(&publication, LIMIT, &mut inflater),
            Err(BusInputError::BadField),
            "{origin:?} {app:?} {topic:?}"
        );
    }
    let long_topic = "t".repeat(257);
    let bytes = encode_publication("node-a", "app", &long_topic, &good, None);
    let publication = decode_publication(&bytes).unwrap();
    assert_eq!(
        check_publication(&publication, LIMIT, &mut inflater),
        Err(BusInputError::BadField)
    );
}

#[test]
fn control_messages_are_bounded_and_checked() {
    let hello: Hello = parse_control(br#"{"node":"b","number":4095,"instance":1}"#).unwrap();
    assert_eq!(check_hello(&hello), Ok(()));
    let too_big: Hello = parse_control(br#"{"node":"b","number":4096,"instance":1}"#).unwrap();
    assert_eq!(check_hello(&too_big), Err(BusInputError::BadField));
    assert_eq!(
        parse_control::<Hello>(&vec![b' '; MAX_CONTROL_MESSAGE_BYTES + 1]).err(),
        Some(BusInputError::TooLarge)
    );
    let deep = format!(
        r#"{{"node":"b","x":{}1{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    assert_eq!(
        parse_control::<Hello>(deep.as_bytes()).err(),
        Some(BusInputError::BadPayload)
    );
    assert_eq!(
        parse_control::<Hello>(b"{").err(),
        Some(BusInputError::Malformed)
    );
    let hello: Hello = parse_control(br#"{"node":"a b","number":1,"instance":1}"#).unwrap();
    assert_eq!(check_hello(&hello), Err(BusInputError::BadField));

    let terminate = TerminateRequest {
        app: "app".into(),
        connection: "0123456789ab".into(),
    };
    assert_eq!(check_terminate(&terminate), Ok(()));
    let not_an_id = TerminateRequest {
        app: "app".into(),
        connection: "*".into(),
    };
    assert_eq!(check_terminate(&not_an_id), Err(BusInputError::BadField));

    let unsubscribe = |patterns: Vec<String>| Admin::Unsubscribe {
        origin: "b".into(),
        app: "app".into(),
        subject: "user".into(),
        patterns,
    };
    assert_eq!(check_admin(&unsubscribe(vec!["chat/*".into()])), Ok(()));
    assert_eq!(
        check_admin(&unsubscribe(vec!["p".into(); MAX_UNSUBSCRIBE_PATTERNS + 1])),
        Err(BusInputError::TooLarge)
    );
    assert_eq!(
        check_admin(&unsubscribe(vec![])),
        Err(BusInputError::TooLarge)
    );
    let terminate_app = Admin::TerminateApp {
        origin: "b".into(),
        app: String::new(),
    };
    assert_eq!(check_admin(&terminate_app), Err(BusInputError::BadField));
}

#[test]
fn metric_labels_follow_the_variants() {
    for error in BusInputError::ALL {
        assert_eq!(
            crate::metrics::BUS_INVALID_REASONS[error.index()],
            error.label()
        );
    }
}
