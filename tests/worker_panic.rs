//! Issue 13 §2: the panic policy. A panic in any thread of the broker aborts the whole
//! process at once (non-zero, SIGABRT) so that a supervisor restarts it; nothing limps on
//! half alive, and clients see their connection end without a 1001 close.
//!
//! Needs the test-only cargo feature `fault-injection` (scripts/test.sh enables it): a
//! publication to `fault-injection/panic-worker` panics the worker that handles it.

mod common;
use common::process::{ringcast_command, Running, ANY_PORT};
use common::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tungstenite::Message;

#[test]
fn a_worker_panic_under_load_aborts_the_process_without_1001_closes() {
    let mut config = base_config();
    config["server"]["listen"] = json!(ANY_PORT);
    if std::env::var("RINGCAST_TEST_IO_DRIVER").as_deref() == Ok("legacy") {
        config["server"]["ioDriver"] = json!("legacy");
    }
    let file = ConfigFile::new(&config);
    let mut running = Running::spawn(ringcast_command(&["--config", file.path.to_str().unwrap()]));
    let server = TestServer {
        handle: None,
        address: running.listen_address(),
    };
    running.wait_healthy(server.address);

    // Load: subscribers on both workers, a publisher streaming to them.
    let token = || token(&format!("u-{}", rand_id()), &[PUBLISH_ALL, READ_ALL]);
    let (mut zero, mut one) = clients_on_both_workers(&server, token);
    zero.subscribe_confirmed("load");
    one.subscribe_confirmed("load");
    let mut publisher = connect(&server, APP, &token());
    let stop = Arc::new(AtomicBool::new(false));
    let streaming = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let message = json!({"type": "publish", "data": {"topic": "load",
                    "messageType": "tick", "payload": sent, "id": sent.to_string()}});
                if publisher
                    .socket
                    .send(Message::text(message.to_string()))
                    .is_err()
                {
                    break;
                }
                sent += 1;
            }
            sent
        })
    };
    // Deliveries are flowing on both workers.
    for client in [&mut zero, &mut one] {
        assert_eq!(client.next_non_ack()["messageType"], "tick");
    }

    let mut trigger = connect(&server, APP, &token());
    trigger.publish("fault-injection/panic-worker", "boom", json!(1), "boom");

    // The process ends by itself, non-zero, at once rather than limping on (bounded wait).
    let status = running.wait_exit();
    stop.store(true, Ordering::Relaxed);
    let sent = streaming.join().unwrap();
    assert!(sent > 0);
    assert!(!status.success(), "exit status {status:?}");
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}");
    }
    running.stderr_until(|line| line.contains("fault injection").then_some(()));
    running.stderr_until(|line| line.contains("aborting the process").then_some(()));

    // Clients see their connection end, never a 1001 ("going away") close.
    for client in [&mut zero, &mut one, &mut trigger] {
        loop {
            match client.socket.read() {
                Ok(Message::Close(frame)) => panic!("a close frame after a panic: {frame:?}"),
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
}
