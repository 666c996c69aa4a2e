//! Issue 16 §5 (experimental `server.ioUringSends`): sends submitted as io_uring operations
//! deliver exactly what the `sendmsg` path delivers — every message once, in order — to a
//! fan-out where one subscriber reads nothing until the end (its socket fills: partial
//! writes and `WouldBlock` completions) while the others keep up.

mod common;
use common::*;
use serde_json::json;

const MESSAGES: usize = 400;

#[test]
fn io_uring_sends_deliver_every_message_once_and_in_order_past_partial_writes() {
    let mut config = base_config();
    config["server"]["workers"] = json!(1);
    config["server"]["ioUringSends"] = json!(true);
    // A small kernel send buffer, so the slow subscriber's socket fills after a few frames
    // and its writes end partway through frames.
    config["server"]["socketSendBufferBytes"] = json!(4096);
    // Every frame copied: runs of frame-file frames keep `sendfile`, not io_uring.
    config["server"]["zeroCopyFanoutBytes"] = json!(0);
    let server = start_with(config);
    let driver = server.handle.as_ref().map_or("", |handle| handle.io_driver);
    if driver != "io_uring" {
        skip(
            &current_test(),
            &format!("io_uring does not run here (driver {driver}); ioUringSends does nothing"),
        );
        return;
    }
    let mut subscribers: Vec<Client> = (0..40)
        .map(|i| {
            let mut client = connect(&server, APP, &token(&format!("s{i}"), &[READ_ALL]));
            client.subscribe("fan");
            client.sync_without_publish();
            client
        })
        .collect();
    let mut slow = connect(&server, APP, &token("slow", &[READ_ALL]));
    slow.subscribe("fan");
    slow.sync_without_publish();
    let mut publisher = connect(&server, APP, &token("p", &[PUBLISH_ALL]));
    // ~1.2 KB per frame, ~480 KB for the slow subscriber: far past both socket buffers,
    // well inside the default 4 MiB `maxPendingBytes`.
    let filler = "x".repeat(1200);
    for n in 0..MESSAGES {
        publisher.publish("fan", "m", json!([n, filler]), &n.to_string());
        if n % 50 == 49 {
            // The fast subscribers keep up as publishing goes on.
            for client in subscribers.iter_mut() {
                for expected in n - 49..=n {
                    assert_eq!(client.next_non_ack()["data"]["payload"][0], json!(expected));
                }
            }
        }
    }
    for n in 0..MESSAGES {
        let frame = slow.next_non_ack();
        assert_eq!(
            frame["data"]["payload"][0],
            json!(n),
            "once and in order: {frame}"
        );
        assert_eq!(
            frame["data"]["payload"][1].as_str().map(str::len),
            Some(1200)
        );
    }
    slow.expect_silence(std::time::Duration::from_millis(200));
    assert_eq!(
        metric(&server, "ringcast_closes_total{reason=\"slow_consumer\"}"),
        0
    );
    assert!(
        metric(&server, "ringcast_uring_sends_total") > 0,
        "the frames left through io_uring operations"
    );
}
