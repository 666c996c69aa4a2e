//! Refused handshakes leave a trace in the default log: one summary line per interval with
//! the counts by reason (`refusal_log`), never a token — and the last refusals are written
//! when the broker stops. At debug level an unknown app's id from the request is logged
//! escaped, so a request cannot forge or garble a log line.

mod common;

use common::process::*;
use common::*;
use serde_json::json;
use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

const BAD_TOKENS: u64 = 3;
const UNKNOWN_APPS: u64 = 2;

/// `reason:count` pairs of a summary line, added into `counts`.
fn add_counts(line: &str, counts: &mut HashMap<String, u64>) {
    let Some(reasons) = line.split("reasons=").nth(1) else {
        return;
    };
    let reasons = reasons.split_whitespace().next().unwrap_or("");
    for pair in reasons.split(',') {
        if let Some((reason, count)) = pair.split_once(':') {
            *counts.entry(reason.to_string()).or_default() += count.parse::<u64>().unwrap();
        }
    }
}

/// Sends a raw upgrade request for `path` and returns the status line.
fn upgrade_raw(address: std::net::SocketAddr, path: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(path);
    request.extend_from_slice(
        b" HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    stream.write_all(&request).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn refused_handshakes_are_summarised_by_reason_and_request_values_escaped() {
    let mut config = base_config();
    config["server"]["listen"] = json!(ANY_PORT);
    let path = std::env::temp_dir().join(format!("ringcast-refusals-{}.json", rand_id()));
    std::fs::write(&path, config.to_string()).unwrap();
    let mut broker = Running::spawn({
        let mut command = ringcast_command(&["--config", path.to_str().unwrap()]);
        command.env("RUST_LOG", "info,ringcast::runtime::connection=debug");
        command
    });
    let address = broker.listen_address();
    broker.wait_healthy(address);
    let server = TestServer {
        handle: None,
        address,
    };
    let forged = token("intruder", &[PUBLISH_ALL]).replace('.', "Q.");
    for _ in 0..BAD_TOKENS {
        assert_eq!(try_connect(&server, APP, &forged).err(), Some(401));
    }
    // An app id with a right-to-left override and a quote: escaped in the debug line.
    let status = upgrade_raw(address, "/apps/evil\u{202e}txt\"x".as_bytes());
    assert!(status.contains("404"), "{status}");
    assert_eq!(
        try_connect(&server, "no-such-app", &token("x", &[])).err(),
        Some(404)
    );

    // Every refusal is reported, by reason, in one or more summary lines.
    let mut counts = HashMap::new();
    let mut escaped = false;
    while counts.get("invalid_token") != Some(&BAD_TOKENS)
        || counts.get("unknown_app") != Some(&UNKNOWN_APPS)
    {
        let line = broker.stderr_until(|line| {
            (line.contains("handshakes refused") || line.contains("unknown app"))
                .then(|| line.to_string())
        });
        assert!(
            !line.contains(&forged) && !line.contains("intruder"),
            "{line}"
        );
        if line.contains("handshakes refused") {
            add_counts(&line, &mut counts);
        } else if line.contains("evil") {
            assert!(!line.contains('\u{202e}'), "not escaped: {line}");
            assert!(line.contains(r#"evil\u{202e}txt\"x"#), "{line}");
            escaped = true;
        }
    }
    assert!(escaped, "the unknown app's id was logged at debug level");
    assert_eq!(counts.len(), 2, "{counts:?}");

    // Refused after the last line: written when the broker stops.
    assert_eq!(
        try_connect(&server, "no-such-app", &token("x", &[])).err(),
        Some(404)
    );
    broker.sigterm();
    let line = broker.stderr_until(|line| {
        line.contains("handshakes refused")
            .then(|| line.to_string())
    });
    assert!(line.contains("reasons=unknown_app:1"), "{line}");
    assert!(broker.wait_exit().success());
    let _ = std::fs::remove_file(&path);
}
