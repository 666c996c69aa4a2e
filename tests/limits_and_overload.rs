//! Issue 5 §4–§6: every limit driven over its bound with its exact outcome, and the other
//! connections unaffected; slow consumers among 1,000 subscribers; graceful shutdown.

mod common;
use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn healthy_round_trip(server: &TestServer) {
    let mut client = connect(server, APP, &token("healthy", &[PUBLISH_ALL]));
    client.sync();
}

#[test]
fn slowloris_handshake_is_dropped_after_the_timeout() {
    let mut config = base_config();
    config["server"]["handshakeTimeoutSeconds"] = json!(1);
    let server = start_with(config);
    let mut slow = TcpStream::connect(server.address).unwrap();
    slow.write_all(b"GET /apps/x HTTP/1.1\r\nHost: slo")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    // Meanwhile everyone else is served.
    healthy_round_trip(&server);
    let mut buffer = [0u8; 64];
    let read = slow.read(&mut buffer);
    assert!(
        matches!(read, Ok(0))
            || matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "dropped without a response: {read:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "dropped before the guard"
    );
}

#[test]
fn oversized_request_head_is_431() {
    let server = start_server();
    let request = format!(
        "GET /apps/{APP}?access_token=x HTTP/1.1\r\nHost: t\r\nX-Padding: {}\r\n\r\n",
        "p".repeat(9000)
    );
    let (status, body) = raw_http(&server, request.as_bytes());
    assert_eq!(status, 431, "{body}");
    healthy_round_trip(&server);
}

#[test]
fn handshake_storm_beyond_the_rate_cap_gets_503() {
    let mut config = base_config();
    config["server"]["maxHandshakesPerSecond"] = json!(4);
    let server = start_with(config);
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..40 {
        match try_connect(&server, APP, &token("storm", &[])) {
            Ok(client) => open.push(client),
            Err(503) => refused += 1,
            Err(other) => panic!("unexpected status {other}"),
        }
    }
    assert!(refused > 0, "some upgrades were refused with 503");
    assert!(!open.is_empty(), "the cap admits its share");
    // Admitted connections keep working.
    let mut first = open.remove(0);
    first.subscribe("storm");
    first.sync_without_publish();
    let (_, metrics) = http(&server, "GET", "/metrics", None, "");
    let refused_metric =
        format!("ringcast_handshakes_refused_total{{reason=\"handshake_rate_limited\"}} {refused}");
    assert!(metrics.contains(&refused_metric), "{metrics}");
}

#[test]
fn rate_limit_is_a_token_bucket_that_refills() {
    let server = start_server();
    // LIMITED_APP: maxMessagesPerSecond 200. 300 messages at ~100/s stay within it.
    let mut steady = connect(&server, LIMITED_APP, &token("steady", &[]));
    for _ in 0..300 {
        steady.send_text(r#"{"type":"unsubscribe","data":{"topic":"none"}}"#);
        // The pacing is the behaviour under test (a rate the bucket admits), not a wait.
        std::thread::sleep(Duration::from_millis(10));
    }
    steady.subscribe("still-open");
    steady.sync_without_publish();
    // A burst far beyond the bucket closes with the typed reason.
    let mut burst = connect(&server, LIMITED_APP, &token("burst", &[]));
    for _ in 0..1000 {
        if burst
            .socket
            .send(tungstenite::Message::text(
                r#"{"type":"unsubscribe","data":{"topic":"x"}}"#,
            ))
            .is_err()
        {
            break;
        }
    }
    assert_eq!(
        burst.expect_close(),
        (1008, "Rate limit exceeded".to_string())
    );
    steady.sync_without_publish();
}

/// Reads from many raw sockets at once (non-blocking, round robin over 10 threads) and
/// checks each receives the publications of topic `crowd` with ids `m0..m{count-1}` in order.
fn read_all_in_order(
    mut clients: Vec<RawClient>,
    count: usize,
    progress: Arc<Vec<AtomicUsize>>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..10)
        .map(|part| {
            let progress = progress.clone();
            let mine: Vec<RawClient> = clients.drain(..clients.len() / (10 - part)).collect();
            std::thread::spawn(move || {
                let mut next: Vec<usize> = vec![0; mine.len()];
                let mut mine = mine;
                for client in &mine {
                    client.stream.set_nonblocking(true).unwrap();
                }
                let deadline = Instant::now() + Duration::from_secs(120);
                let mut frames = Vec::new();
                while next.iter().any(|n| *n < count) {
                    assert!(Instant::now() < deadline, "deliveries stalled: {next:?}");
                    let mut progressed = false;
                    for (index, client) in mine.iter_mut().enumerate() {
                        if next[index] >= count {
                            continue;
                        }
                        frames.clear();
                        client
                            .poll_frames(&mut frames)
                            .unwrap_or_else(|error| panic!("subscriber {index} lost: {error}"));
                        for (opcode, payload) in frames.drain(..) {
                            progressed = true;
                            if opcode == 0x8 {
                                panic!("subscriber {index} was closed: {payload:?}");
                            }
                            let text = String::from_utf8_lossy(&payload);
                            if !text.contains("\"topic\":\"crowd\"") {
                                continue;
                            }
                            let expected = format!("\"id\":\"m{}\"", next[index]);
                            assert!(
                                text.contains(&expected),
                                "missed or reordered: wanted {expected}"
                            );
                            next[index] += 1;
                        }
                    }
                    let slowest = next.iter().copied().min().unwrap_or(count);
                    progress[part].store(slowest, Ordering::Release);
                    if !progressed {
                        // Back-off of this non-blocking poll loop, not a wait for an event.
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                progress[part].store(count, Ordering::Release);
            })
        })
        .collect()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
        .unwrap()
}

#[test]
fn a_slow_consumer_is_cut_while_1000_subscribers_miss_nothing() {
    let mut config = base_config();
    config["server"]["socketSendBufferBytes"] = json!(65_536);
    config["apps"][0]["maxPendingBytes"] = json!(262_144);
    let server = start_with(config);
    let subscribe = r#"{"type":"subscribe","data":{"topic":"crowd"}}"#;
    let mut slow = connect_raw(&server, APP, &token("slow", &[]), Some(4096));
    slow.send_text(subscribe);
    // A ping round trip after each subscribe: the pong proves the subscription is in
    // effect (one connection's frames are handled in order) before anything is published.
    slow.sync();
    let mut crowd = Vec::with_capacity(1000);
    for index in 0..1000 {
        let mut client = connect_raw(&server, APP, &token(&format!("fan-{index}"), &[]), None);
        client.send_text(subscribe);
        client.sync();
        crowd.push(client);
    }
    let mut publisher = connect(&server, APP, &token("pub", &[PUBLISH_ALL]));
    publisher.sync();
    let rss_before = rss_kib();
    const COUNT: usize = 500;
    // The publisher stays within WINDOW messages (~120 KB) of the slowest crowd reader, far
    // under the 256 KB pending limit; the slow consumer, which never reads, passes the
    // limit after ~280 messages (pending + 64 KB send buffer + 4 KB receive buffer).
    const WINDOW: usize = 100;
    let payload = "x".repeat(1000);
    let progress: Arc<Vec<AtomicUsize>> = Arc::new((0..10).map(|_| AtomicUsize::new(0)).collect());
    let readers = read_all_in_order(crowd, COUNT, progress.clone());
    // The slow consumer resumes reading once the broker reports the cut (within the 5 s
    // close grace), and must then find the 4008 close frame after its backlog.
    let metrics_address = server.address;
    let slow_reader = std::thread::spawn(move || {
        let probe = TestServer {
            handle: None,
            address: metrics_address,
        };
        wait_until("the slow consumer is cut", Duration::from_secs(120), || {
            let (_, metrics) = http(&probe, "GET", "/metrics", None, "");
            metrics.contains("ringcast_closes_total{reason=\"slow_consumer\"} 1")
        });
        slow.close_code()
    });
    for sequence in 0..COUNT {
        wait_until("the crowd reads on", Duration::from_secs(120), || {
            let slowest = progress.iter().map(|p| p.load(Ordering::Acquire)).min();
            slowest.unwrap_or(0) + WINDOW >= sequence || readers.iter().any(|r| r.is_finished())
        });
        publisher.publish("crowd", "bulk", json!(payload), &format!("m{sequence}"));
    }
    for reader in readers {
        reader.join().unwrap();
    }
    assert_eq!(slow_reader.join().unwrap(), Some(4008));
    let rss_after = rss_kib();
    eprintln!("RSS (test process incl. server): {rss_before} KiB before, {rss_after} KiB after 500,000 deliveries");
    assert!(
        rss_after < 2 * 1024 * 1024,
        "RSS stays bounded: {rss_after} KiB"
    );
}

#[test]
fn shutdown_flushes_queued_frames_then_closes_every_client_with_1001() {
    let mut server = start_server();
    let mut clients: Vec<Client> = (0..30)
        .map(|index| {
            let mut client = connect(&server, APP, &token(&format!("c{index}"), &[]));
            client.subscribe("last-words");
            client.sync_without_publish();
            client
        })
        .collect();
    let (status, _) = publish_http(
        &server,
        APP,
        json!({"topic": "last-words", "message": "goodbye", "messageType": "final"}),
    );
    assert_eq!(status, 200);
    let stopping = std::thread::spawn(move || {
        server.stop();
        server
    });
    for client in clients.iter_mut() {
        let frame = client.next_json();
        assert_eq!(
            frame["data"], "goodbye",
            "queued frame delivered before the close"
        );
        assert_eq!(client.expect_close().0, 1001);
    }
    let _server = stopping.join().unwrap();
}
