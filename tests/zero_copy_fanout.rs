//! README "Zero-copy fan-out": frames of a large fan-out are kept once in the worker's frame
//! file and sent with `sendfile`; every subscriber still gets every frame, in order, byte
//! for byte — also when the file is full and frames fall back to memory, and when the
//! feature is off.

mod common;
use common::*;
use serde_json::{json, Value};

/// More than `ZERO_COPY_MIN_SUBSCRIBERS` (32) on one worker.
const SUBSCRIBERS: usize = 34;

fn config(zero_copy_fanout_bytes: u64) -> Value {
    let mut config = base_config();
    config["server"]["workers"] = json!(1);
    config["server"]["zeroCopyFanoutBytes"] = json!(zero_copy_fanout_bytes);
    config["server"]["maxPendingBytes"] = json!(32 * 1024 * 1024);
    config
}

/// A payload whose bytes depend on `n`, so a frame from the wrong place cannot pass.
fn payload(n: usize, bytes: usize) -> Value {
    let fill: String = (0..bytes)
        .map(|i| char::from(b'a' + ((n * 7 + i) % 26) as u8))
        .collect();
    json!({"n": n, "fill": fill})
}

fn metric(server: &TestServer, name: &str) -> u64 {
    let (status, body) = http(server, "GET", "/metrics", None, "");
    assert_eq!(status, 200);
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

/// Subscribers that do not read while `count` publications of `bytes` each are sent, so
/// their queues build up long runs; then each reads everything and checks it.
fn fan_out_and_check(server: &TestServer, count: usize, bytes: usize) {
    fan_out_and_check_with(server, count, bytes, false);
}

/// [`fan_out_and_check`], with `compress: true` publications when `compress` (binary frames,
/// which also get a deflated form for clients that negotiated permessage-deflate).
fn fan_out_and_check_with(server: &TestServer, count: usize, bytes: usize, compress: bool) {
    let mut subscribers: Vec<Client> = (0..SUBSCRIBERS)
        .map(|i| {
            let mut client = connect(server, APP, &token(&format!("reader-{i}"), &[]));
            client.subscribe("wide");
            client.sync_without_publish();
            client
        })
        .collect();
    let mut publisher = connect(server, APP, &token("writer", &[PUBLISH_ALL]));
    for n in 0..count {
        publisher.send(
            json!({"type": "publish", "data": {"topic": "wide", "messageType": "bulk",
            "compress": compress, "payload": payload(n, bytes), "id": format!("p{n}")}}),
        );
    }
    for (index, subscriber) in subscribers.iter_mut().enumerate() {
        for n in 0..count {
            let frame = subscriber.next_non_ack();
            assert_eq!(frame["messageType"], "bulk", "subscriber {index}");
            assert_eq!(
                frame["data"]["payload"],
                payload(n, bytes),
                "subscriber {index}, publication {n}"
            );
            assert_eq!(frame["data"]["id"], json!(format!("p{n}")));
        }
    }
}

#[test]
fn runs_of_fan_out_frames_are_sent_from_the_frame_file_intact_and_in_order() {
    let server = start_with(config(64 * 1024 * 1024));
    fan_out_and_check(&server, 600, 1000);
    let zero_copy = metric(&server, "ringcast_zero_copy_bytes_out_total");
    let total = metric(&server, "ringcast_bytes_out_total");
    assert!(zero_copy > 0, "no bytes went out through sendfile");
    assert!(zero_copy <= total);
    assert_eq!(metric(&server, "ringcast_frame_file_full_total"), 0);
}

#[test]
fn compressed_publications_are_sent_from_the_frame_file_too() {
    // A `compress: true` publication also has a deflated form; only the plain one goes to
    // the file, so the plain subscribers' frames still lie back to back there.
    let server = start_with(config(64 * 1024 * 1024));
    fan_out_and_check_with(&server, 600, 1000, true);
    assert!(metric(&server, "ringcast_zero_copy_bytes_out_total") > 0);
}

#[test]
fn a_full_frame_file_falls_back_to_copied_frames_without_losing_any() {
    // Two 2 MiB chunks. A subscriber that never reads, behind a tiny receive window, keeps
    // most of ~5 MiB of frames queued, pinning both chunks: the rest is queued from memory.
    let mut config = config(4 * 1024 * 1024);
    // Kernel send buffers of 256 KiB (autotuned ones take ~4 MiB per socket on loopback),
    // so the backlog stays in ringcast's queues.
    config["server"]["socketSendBufferBytes"] = json!(256 * 1024);
    let server = start_with(config);
    let mut stalled = connect_raw(&server, APP, &token("stalled", &[]), Some(4096));
    stalled.send_text(&json!({"type": "subscribe", "data": {"topic": "wide"}}).to_string());
    fan_out_and_check(&server, 3000, 1500);
    assert!(
        metric(&server, "ringcast_frame_file_full_total") > 0,
        "the file never filled up"
    );
    assert!(metric(&server, "ringcast_zero_copy_bytes_out_total") > 0);
    // The gauge (refreshed by the worker's tick) shows the pages the stalled queue pins.
    wait_until("frame_file_bytes is above 0", PATIENCE, || {
        metric(&server, "ringcast_frame_file_bytes") > 0
    });
    // Once the stalled subscriber is gone its chunks are free again.
    drop(stalled);
    let before = metric(&server, "ringcast_zero_copy_bytes_out_total");
    fan_out_and_check(&server, 600, 1000);
    assert!(metric(&server, "ringcast_zero_copy_bytes_out_total") > before);
}

#[test]
fn with_zero_copy_off_every_frame_is_copied() {
    let server = start_with(config(0));
    fan_out_and_check(&server, 300, 1000);
    assert_eq!(metric(&server, "ringcast_zero_copy_bytes_out_total"), 0);
}
