//! PROTOCOL.md §4 (malformed frames) and §7: every server close code, and that a closing
//! connection never disturbs the others.

mod common;
use common::*;
use serde_json::json;
use std::time::Duration;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::Message;

fn assert_other_clients_unaffected(server: &TestServer) {
    let mut healthy = connect(server, APP, &token("healthy", &[PUBLISH_ALL]));
    healthy.subscribe_confirmed("still-works");
    healthy.publish("still-works", "t", json!("yes"), "h");
    assert_eq!(healthy.next_non_ack()["data"]["payload"], "yes");
}

#[test]
fn invalid_json_closes_1007() {
    let server = start_server();
    let mut client = connect(&server, APP, &token("u", &[]));
    client.send_text("{not json");
    assert_eq!(client.expect_close(), (1007, "Invalid JSON".to_string()));
    assert_other_clients_unaffected(&server);
}

#[test]
fn invalid_utf8_text_frame_closes_1007() {
    let server = start_server();
    let mut client = connect(&server, APP, &token("u", &[]));
    let frame = Frame::message(vec![b'"', 0xff, 0xfe, b'"'], OpCode::Data(Data::Text), true);
    client.socket.send(Message::Frame(frame)).unwrap();
    assert_eq!(client.expect_close().0, 1007);
    assert_other_clients_unaffected(&server);
}

#[test]
fn malformed_commands_close_1008() {
    let server = start_server();
    let cases = [
        r#"[1,2,3]"#,
        r#"{"type":"explode","data":{}}"#,
        r#"{"type":"subscribe"}"#,
        r#"{"type":"subscribe","data":{}}"#,
        r#"{"type":"subscribe","data":{"topic":42}}"#,
        r#"{"type":"publish","data":{"payload":1}}"#,
    ];
    for case in cases {
        let mut client = connect(&server, APP, &token("u", &[PUBLISH_ALL]));
        client.send_text(case);
        let (code, reason) = client.expect_close();
        assert_eq!(code, 1008, "{case} → {reason}");
        assert!(!reason.is_empty() && reason.len() <= 123);
    }
    assert_other_clients_unaffected(&server);
}

#[test]
fn invalid_topics_close_1008() {
    let server = start_server();
    for topic in [String::new(), "x".repeat(257), "bad\u{1}topic".to_string()] {
        let mut client = connect(&server, APP, &token("u", &[PUBLISH_ALL]));
        client.subscribe(&topic);
        assert_eq!(client.expect_close(), (1008, "Invalid topic".to_string()));
    }
    // 256 bytes is still a valid topic.
    let mut client = connect(&server, APP, &token("u", &[PUBLISH_ALL]));
    client.subscribe_confirmed(&"y".repeat(256));
}

#[test]
fn message_over_max_message_bytes_closes_1009() {
    let server = start_server();
    // LIMITED_APP: maxMessageBytes 1024.
    let mut client = connect(&server, LIMITED_APP, &token("u", &[PUBLISH_ALL]));
    let big = json!({"type": "publish", "data": {"topic": "t", "payload": "x".repeat(2000)}});
    client.send(big);
    assert_eq!(client.expect_close().0, 1009);
    assert_other_clients_unaffected(&server);
}

#[test]
fn client_close_is_answered_with_a_close_frame() {
    let server = start_server();
    let mut client = connect(&server, APP, &token("u", &[]));
    client
        .socket
        .close(Some(tungstenite::protocol::CloseFrame {
            code: tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "bye".into(),
        }))
        .unwrap();
    loop {
        match client.socket.read() {
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 1000);
                break;
            }
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(error) => panic!("{error}"),
        }
    }
}

#[test]
fn rate_limit_closes_1008() {
    let server = start_server();
    // LIMITED_APP: maxMessagesPerSecond 200; 1,000 in one burst exceeds any one-second window.
    let mut client = connect(&server, LIMITED_APP, &token("u", &[]));
    for _ in 0..1000 {
        if client
            .socket
            .send(Message::text(
                r#"{"type":"unsubscribe","data":{"topic":"x"}}"#,
            ))
            .is_err()
        {
            break;
        }
    }
    assert_eq!(
        client.expect_close(),
        (1008, "Rate limit exceeded".to_string())
    );
}

fn fast_ping_config() -> serde_json::Value {
    let mut config = base_config();
    config["server"]["pingIntervalSeconds"] = json!(1);
    config
}

#[test]
fn server_pings_and_a_silent_client_is_closed_4001() {
    let server = start_with(fast_ping_config());
    let mut silent = connect_raw(&server, APP, &token("u", &[]), None);
    let mut saw_ping = false;
    loop {
        match silent.read_frame() {
            Some((0x9, _)) => saw_ping = true,
            Some((0x8, payload)) => {
                assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 4001);
                break;
            }
            Some(_) => continue,
            None => panic!("socket ended without a 4001 close"),
        }
    }
    assert!(saw_ping, "the server pinged before giving up");
}

#[test]
fn a_client_answering_pings_stays_connected() {
    let server = start_with(fast_ping_config());
    let mut client = connect(&server, APP, &token("u", &[PUBLISH_ALL]));
    // tungstenite answers pings while reading: 3.5 intervals of silence from our side.
    client.expect_silence(Duration::from_millis(3500));
    client.sync();
}

#[test]
fn slow_consumer_is_closed_4008_while_a_fast_one_receives_everything() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let mut config = base_config();
    config["apps"][0]["maxPendingBytes"] = json!(262_144);
    let server = start_with(config);
    let mut slow = connect_raw(&server, APP, &token("slow", &[]), Some(4096));
    slow.send_text(r#"{"type":"subscribe","data":{"topic":"firehose"}}"#);
    let mut fast = connect(&server, APP, &token("fast", &[]));
    fast.subscribe("firehose");
    fast.sync_without_publish();
    let mut publisher = connect(&server, APP, &token("pub", &[PUBLISH_ALL]));
    publisher.sync();
    // 3,000 × 8 KiB = 24 MB: far past what the never-reading consumer's kernel buffers and
    // its 256 KiB pending limit hold. The publisher stays within WINDOW messages (128 KiB)
    // of the fast consumer, so "fast" holds however loaded the machine is.
    const COUNT: usize = 3000;
    const WINDOW: usize = 16;
    let payload = "p".repeat(8192);
    let progress = Arc::new(AtomicUsize::new(0));
    let reader = std::thread::spawn({
        let progress = progress.clone();
        move || {
            let mut next = 0;
            while next < COUNT {
                let frame = fast.next_json();
                if frame["topic"] == "firehose" {
                    assert_eq!(
                        frame["data"]["id"],
                        format!("f{next}"),
                        "fast consumer missed or reordered"
                    );
                    next += 1;
                    progress.store(next, Ordering::Release);
                }
            }
            fast
        }
    });
    let acks = std::thread::spawn({
        let mut publisher_reader = publisher.socket.get_ref().try_clone().unwrap();
        move || {
            // Drain the publisher's acks so it never becomes a slow consumer itself.
            let mut sink = [0u8; 65536];
            use std::io::Read;
            while let Ok(n) = publisher_reader.read(&mut sink) {
                if n == 0 {
                    break;
                }
            }
        }
    });
    // The slow consumer resumes reading once the broker reports the cut (within the 5 s
    // close grace) and must then find the 4008 close frame after its backlog.
    let address = server.address;
    let slow_reader = std::thread::spawn(move || {
        let probe = TestServer {
            handle: None,
            address,
        };
        wait_until("the slow consumer is cut", Duration::from_secs(120), || {
            let (_, metrics) = http(&probe, "GET", "/metrics", None, "");
            metrics.contains("ringcast_closes_total{reason=\"slow_consumer\"} 1")
        });
        slow.close_code()
    });
    for sequence in 0..COUNT {
        wait_until(
            "the fast consumer reads on",
            Duration::from_secs(120),
            || progress.load(Ordering::Acquire) + WINDOW >= sequence || reader.is_finished(),
        );
        publisher.publish("firehose", "bulk", json!(payload), &format!("f{sequence}"));
    }
    let _fast = reader.join().unwrap();
    assert_eq!(slow_reader.join().unwrap(), Some(4008));
    let (_, metrics) = http(&server, "GET", "/metrics", None, "");
    assert!(
        metrics.contains("ringcast_closes_total{reason=\"slow_consumer\"} 1"),
        "{metrics}"
    );
    drop(publisher);
    let _ = acks;
}

#[test]
fn shutdown_closes_clients_with_1001() {
    let mut server = start_server();
    let mut client = connect(&server, APP, &token("u", &[]));
    // The close frame waits in the client's socket whenever the reader gets to it.
    let reader = std::thread::spawn(move || client.expect_close());
    server.stop();
    assert_eq!(reader.join().unwrap().0, 1001);
}
