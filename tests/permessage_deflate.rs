//! PROTOCOL.md §3 and §5: permessage-deflate (RFC 7692) is negotiated when offered;
//! `compress: true` publications arrive deflated to clients that negotiated it, plain to
//! the others; compressed client messages are inflated, and bombs are closed with 1009.

mod common;
use common::*;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::{json, Value};

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

fn deflate(payload: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(payload.len() + 64);
    compress
        .compress_vec(payload, &mut out, FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(body: &[u8]) -> Vec<u8> {
    let mut decompress = Decompress::new(false);
    let mut input = body.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    decompress
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    out
}

/// Reads frames until one whose first header byte has RSV1 set or a data frame with the
/// given topic; returns (first byte, payload).
fn read_raw_frame(client: &mut RawClient) -> (u8, Vec<u8>) {
    let (opcode, payload) = client.read_frame().expect("a frame");
    (opcode, payload)
}

#[test]
fn deflate_is_negotiated_when_offered_and_not_otherwise() {
    let server = start_server();
    let (_, head) = connect_raw_with(&server, APP, &token("u", &[]), None, OFFER);
    assert!(
        head.to_ascii_lowercase().contains(
            "sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        ),
        "{head}"
    );
    let (_, head) = connect_raw_with(&server, APP, &token("u", &[]), None, "");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions"),
        "{head}"
    );
    // A limit on the server's window is accepted and echoed (ringcast then sends that
    // client plain frames); an offer it cannot parse is declined, not failed.
    let narrow = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9\r\n";
    let (_, head) = connect_raw_with(&server, APP, &token("u", &[]), None, narrow);
    assert!(
        head.to_ascii_lowercase()
            .contains("server_max_window_bits=9"),
        "{head}"
    );
    let bogus = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=99\r\n";
    let (_, head) = connect_raw_with(&server, APP, &token("u", &[]), None, bogus);
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions"),
        "{head}"
    );
}

#[test]
fn compressed_publications_are_deflated_only_for_clients_that_negotiated() {
    let server = start_server();
    let (mut deflating, _) = connect_raw_with(&server, APP, &token("d", &[]), None, OFFER);
    deflating.send_text(r#"{"type":"subscribe","data":{"topic":"zip"}}"#);
    let mut plain = connect(&server, APP, &token("p", &[PUBLISH_ALL]));
    plain.subscribe_confirmed("zip");
    // Welcome first (text, uncompressed even with deflate negotiated).
    let (opcode, welcome) = read_raw_frame(&mut deflating);
    assert_eq!(opcode, 0x1);
    assert!(String::from_utf8_lossy(&welcome).contains("welcome"));
    let payload = json!({"text": "x".repeat(2000)});
    // Publish until the deflating subscriber's subscription is surely processed: its
    // frames are handled in order, so retry a bounded number of times.
    let mut received = None;
    for attempt in 0..50 {
        plain.send(json!({"type": "publish", "data": {"topic": "zip", "compress": true, "payload": payload, "id": format!("z{attempt}")}}));
        deflating
            .stream
            .set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        if let Some(frame) = deflating.read_frame_with_flags() {
            received = Some(frame);
            break;
        }
    }
    let (first_byte, body) = received.expect("a compressed publication");
    assert_eq!(first_byte & 0x40, 0x40, "RSV1 set: the frame is deflated");
    assert_eq!(first_byte & 0x0f, 0x2, "binary frame");
    assert!(
        body.len() < 1000,
        "2 KB of repetition compresses: {} bytes",
        body.len()
    );
    let frame: Value = serde_json::from_slice(&inflate(&body)).unwrap();
    assert_eq!(frame["topic"], "zip");
    assert_eq!(frame["data"]["payload"], payload);
    // The plain client got the same publication uncompressed (tungstenite would reject RSV1).
    let delivered = plain.next_non_ack();
    assert_eq!(delivered["data"]["payload"], payload);
}

#[test]
fn compressed_client_messages_are_inflated() {
    let server = start_server();
    let (mut client, _) = connect_raw_with(&server, APP, &token("c", &[PUBLISH_ALL]), None, OFFER);
    let mut watcher = connect(&server, APP, &token("w", &[]));
    watcher.subscribe("inflated");
    watcher.sync_without_publish();
    let command = json!({"type": "publish", "data": {"topic": "inflated", "payload": "deflated on the wire", "id": "i1"}});
    client.send_frame(0x40 | 0x1, &deflate(command.to_string().as_bytes()));
    let frame = watcher.next_json();
    assert_eq!(frame["data"]["payload"], "deflated on the wire");
}

#[test]
fn decompression_bomb_is_closed_1009() {
    let server = start_server();
    // LIMITED_APP: maxMessageBytes 1024; 1 MB of zeros deflates to ~1 KB.
    let (mut client, _) = connect_raw_with(&server, LIMITED_APP, &token("b", &[]), None, OFFER);
    let bomb = deflate(&vec![b' '; 1_000_000]);
    assert!(bomb.len() < 1024);
    client.send_frame(0x40 | 0x1, &bomb);
    assert_eq!(client.close_code(), Some(1009));
}

#[test]
fn rsv1_without_negotiation_is_a_protocol_error() {
    let server = start_server();
    let mut client = connect_raw(&server, APP, &token("r", &[]), None);
    client.send_frame(0x40 | 0x1, &deflate(b"{}"));
    assert_eq!(client.close_code(), Some(1002));
}
