//! Tests for `envelope`: every frame is decoded by a small unmasked-frame decoder here
//! and its JSON compared with the shapes of PROTOCOL.md §5.

use super::*;
use serde_json::{json, Value};

/// Decodes one complete unmasked server frame: (FIN+opcode byte, header length, payload).
fn decode(frame: &[u8]) -> (u8, usize, &[u8]) {
    assert_eq!(frame[1] & 0x80, 0, "server frames are unmasked");
    let (header_bytes, length) = match frame[1] {
        126 => (4, u16::from_be_bytes([frame[2], frame[3]]) as usize),
        127 => (
            10,
            u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize,
        ),
        short => (2, short as usize),
    };
    assert_eq!(frame.len(), header_bytes + length, "frame length");
    (frame[0], header_bytes, &frame[header_bytes..])
}

fn text_json(frame: &Bytes) -> Value {
    let (first, _, payload) = decode(frame);
    assert_eq!(first, 0x81, "final text frame");
    serde_json::from_slice(payload).unwrap()
}

fn client() -> Box<[u8]> {
    client_descriptor(
        "4389b2ed1a7e",
        "user-01",
        &["realtime:publisher:write:topic:*".to_string()],
    )
}

#[test]
fn describes_a_client() {
    let descriptor: Value = serde_json::from_slice(&client()).unwrap();
    assert_eq!(
        descriptor,
        json!({"connectionId":"4389b2ed1a7e","subject":"user-01","permissions":["realtime:publisher:write:topic:*"]})
    );
    let none = client_descriptor("c", "quote\"back\\slash\u{1}", &[]);
    assert_eq!(
        serde_json::from_slice::<Value>(&none).unwrap(),
        json!({"connectionId":"c","subject":"quote\"back\\slash\u{1}","permissions":[]})
    );
    let two = client_descriptor("c", "s", &["a".into(), "b".into()]);
    assert_eq!(
        &*two,
        br#"{"connectionId":"c","subject":"s","permissions":["a","b"]}"#
    );
}

#[test]
fn builds_a_publication_with_verbatim_payload_and_id() {
    let payload = br#"{ "n" : 1.0e10, "s" : "\u00e9" }"#;
    let frame = publication_frame(
        "chat",
        "text-message",
        &client(),
        payload,
        br#""k3j9x0a1b2""#,
        false,
    );
    assert_eq!(
        text_json(&frame),
        json!({"topic":"chat","messageType":"text-message","data":{
            "client":{"connectionId":"4389b2ed1a7e","subject":"user-01","permissions":["realtime:publisher:write:topic:*"]},
            "subProtocol":1,"payload":{"n":1.0e10,"s":"é"},"id":"k3j9x0a1b2"}})
    );
    let raw = frame.as_ref();
    assert!(
        raw.windows(payload.len()).any(|window| window == payload),
        "payload not verbatim"
    );
    assert!(raw.ends_with(
        br#","subProtocol":1,"payload":{ "n" : 1.0e10, "s" : "\u00e9" },"id":"k3j9x0a1b2"}}"#
    ));
}

#[test]
fn compress_means_a_binary_frame() {
    let frame = publication_frame("t", "m", &client(), b"1", b"2", true);
    let (first, _, payload) = decode(&frame);
    assert_eq!(first, 0x82);
    assert!(serde_json::from_slice::<Value>(payload).is_ok());
    let (first, _, _) = decode(&http_publication_frame("t", "m", b"1", true));
    assert_eq!(first, 0x82);
}

#[test]
fn builds_an_http_publication() {
    let message = br#"{"msg":"Hello subscribers in main topic","time":1712000000000}"#;
    let frame = http_publication_frame("main", "greeting", message, false);
    assert_eq!(
        text_json(&frame),
        json!({"topic":"main","messageType":"greeting","data":{"msg":"Hello subscribers in main topic","time":1712000000000u64}})
    );
    assert!(frame.ends_with(&[br#""data":"#.as_slice(), message, b"}"].concat()));
}

#[test]
fn writes_null_for_empty_raw_values() {
    let frame = publication_frame("t", "m", b"", b"", b"", false);
    assert_eq!(
        text_json(&frame)["data"],
        json!({"client":null,"subProtocol":1,"payload":null,"id":null})
    );
}

#[test]
fn builds_the_welcome() {
    assert_eq!(
        text_json(&welcome_frame(
            "4389b2ed1a7e",
            "b5cvf368e1fc006e95521000764a5706",
            "203.0.113.7"
        )),
        json!({"topic":"main","messageType":"welcome","data":{"connection":{
            "id":"4389b2ed1a7e","appId":"b5cvf368e1fc006e95521000764a5706","remoteAddress":"203.0.113.7"}}})
    );
}

#[test]
fn builds_presence_events() {
    let descriptor = client_descriptor("4389b2ed1a7e", "user0@example.com", &[]);
    let client_value =
        json!({"connectionId":"4389b2ed1a7e","subject":"user0@example.com","permissions":[]});
    assert_eq!(
        text_json(&presence_frame(&descriptor, true)),
        json!({"topic":"secure/inbound","messageType":"presence","data":{
            "client":client_value,"subProtocol":1,"payload":{"code":0,"status":"connected"}}})
    );
    assert_eq!(
        text_json(&presence_frame(&descriptor, false)),
        json!({"topic":"secure/inbound","messageType":"presence","data":{
            "client":client_value,"subProtocol":1,"payload":{"code":-1,"status":"disconnected"}}})
    );
}

#[test]
fn builds_acks() {
    assert_eq!(
        text_json(&ack_frame(br#""k3j9x0a1b2""#)),
        json!({"topic":"priv/acks","messageType":"ack","data":{"data":"k3j9x0a1b2"}})
    );
    assert_eq!(text_json(&ack_frame(b"42"))["data"]["data"], json!(42));
}

#[test]
fn sizes_headers_at_length_boundaries() {
    // {"topic":"t","messageType":"m","data":"xxx"} is 38 + 2 + n bytes.
    let overhead = http_publication_frame("t", "m", b"\"\"", false).len() - 2;
    for json_bytes in [125usize, 126, 65535, 65536] {
        let filler = "x".repeat(json_bytes - overhead);
        let message = format!("\"{filler}\"");
        let frame = http_publication_frame("t", "m", message.as_bytes(), false);
        let (first, header_bytes, payload) = decode(&frame);
        assert_eq!(first, 0x81);
        assert_eq!(payload.len(), json_bytes);
        assert_eq!(
            header_bytes,
            crate::protocol::frame::frame_header_len(json_bytes)
        );
        assert_eq!(text_json(&frame)["data"], json!(filler));
    }
}

#[test]
fn escapes_strings_exactly_as_sized() {
    for text in [
        "",
        "plain",
        "q\"b\\",
        "\u{0}\u{1f}\u{7f}\u{8}\u{c}\n\r\t",
        "é🎉",
        "</script>",
    ] {
        let mut out = Vec::new();
        push_json_string(text, &mut out);
        assert_eq!(out.len(), json_string_len(text), "{text:?}");
        assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), text);
        let frame = http_publication_frame(text, text, b"1", false);
        assert_eq!(text_json(&frame)["topic"], json!(text));
    }
}

#[test]
fn builds_close_frames() {
    let frame = close_frame(1008, "Subscription to secure topic is forbidden!");
    let (first, _, payload) = decode(&frame);
    assert_eq!(first, 0x88);
    assert_eq!(&payload[..2], &1008u16.to_be_bytes());
    assert_eq!(&payload[2..], b"Subscription to secure topic is forbidden!");
    // 122 ASCII bytes then a 2-byte character: the character does not fit in 123.
    let long = format!("{}é and more", "a".repeat(122));
    let truncated = close_frame(4000, &long);
    let (_, header_bytes, payload) = decode(&truncated);
    assert_eq!(header_bytes, 2);
    assert_eq!(payload.len(), 2 + 122);
    let exact = "b".repeat(200);
    assert_eq!(decode(&close_frame(1000, &exact)).2.len(), 125);
}

#[test]
fn builds_ping_and_pong() {
    assert_eq!(ping_frame().as_ref(), &[0x89, 0]);
    assert_eq!(pong_frame(b"abc").as_ref(), &[0x8A, 3, b'a', b'b', b'c']);
    assert_eq!(decode(&pong_frame(&[7; 300])).2.len(), 125);
}

#[test]
fn generates_message_ids() {
    let first = generate_message_id();
    assert_eq!(first.len(), MESSAGE_ID_CHARS);
    assert!(first
        .bytes()
        .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit()));
    assert_ne!(first, generate_message_id());
    let raw = format!("\"{first}\"");
    assert_eq!(
        text_json(&ack_frame(raw.as_bytes()))["data"]["data"],
        json!(first)
    );
}
