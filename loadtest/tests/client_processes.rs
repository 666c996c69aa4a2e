//! `--client-processes`: the harness spreads a run's connections over separate client
//! processes and merges what they report into one result.
//!
//! Each test starts ringcast in this process (port 0, 1 worker; `RINGCAST_TEST_IO_DRIVER`
//! picks the io driver), runs the `ringcast-loadtest` binary against it with `--url`, and
//! reads the JSON result. No timing assertions: only counts and identities.

use ringcast::config::{Config, IoDriverChoice};
use ringcast::runtime::{self, ServerHandle};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

const APP: &str = "loadtest-test";
const SECRET: &str = "client-processes-test-secret";
const ADMIN_SECRET: &str = "client-processes-admin-secret";

struct Server {
    handle: Option<ServerHandle>,
    address: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
        }
    }
}

fn start_ringcast() -> Server {
    let config = json!({
        "server": {"listen": "127.0.0.1:0", "workers": 1, "pinWorkers": false},
        "apps": [{
            "appId": APP,
            "authKey": {"source": "raw", "key": SECRET, "algorithms": ["HS256"]},
            "adminKey": {"source": "raw", "key": ADMIN_SECRET, "algorithms": ["HS256"]},
        }],
    });
    let mut config = Config::from_json(&config.to_string()).expect("valid config");
    if std::env::var("RINGCAST_TEST_IO_DRIVER").as_deref() == Ok("legacy") {
        config.server.io_driver = IoDriverChoice::Legacy;
    }
    let handle = runtime::start(&config).expect("ringcast starts");
    let address = handle.local_address;
    Server {
        handle: Some(handle),
        address,
    }
}

fn result_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "ringcast-loadtest-{name}-{}.json",
        std::process::id()
    ))
}

/// Runs the harness with `arguments` against `server`; returns (harness pid, its one run).
fn run_harness(server: &Server, name: &str, arguments: &[&str]) -> (u32, Value) {
    let output = result_path(name);
    let child = Command::new(env!("CARGO_BIN_EXE_ringcast-loadtest"))
        .args(arguments)
        .args(["--url", &server.address.to_string()])
        .args([
            "--app",
            APP,
            "--secret",
            SECRET,
            "--admin-secret",
            ADMIN_SECRET,
        ])
        .arg("--output")
        .arg(&output)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("harness starts");
    let harness_pid = child.id();
    let result = child.wait_with_output().expect("harness runs");
    assert!(
        result.status.success(),
        "harness failed: {}\n{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    let records: Value =
        serde_json::from_slice(&std::fs::read(&output).expect("result written")).unwrap();
    std::fs::remove_file(&output).ok();
    assert_eq!(records.as_array().map(Vec::len), Some(1));
    (harness_pid, records[0].clone())
}

fn number(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a count: {value}"))
}

/// The per-process entries; asserts they are `count` separate processes, none of them the
/// harness itself or this test, and that each sent its final report.
fn separate_processes(record: &Value, harness_pid: u32, count: usize) -> Vec<Value> {
    let processes = record["measurement"]["client_processes"]
        .as_array()
        .expect("client_processes in the result")
        .clone();
    assert_eq!(processes.len(), count, "{processes:?}");
    let pids: BTreeSet<u64> = processes
        .iter()
        .map(|process| number(&process["pid"]))
        .collect();
    assert_eq!(
        pids.len(),
        count,
        "each process reports its own pid: {pids:?}"
    );
    assert!(!pids.contains(&u64::from(harness_pid)));
    assert!(!pids.contains(&u64::from(std::process::id())));
    assert!(!pids.contains(&0));
    for process in &processes {
        assert_eq!(process["reported"], json!(true), "{process}");
    }
    let sources: BTreeSet<String> = processes
        .iter()
        .flat_map(|process| process["sources"].as_array().unwrap().clone())
        .map(|source| source.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        sources.len(),
        count,
        "each process has its own source address"
    );
    processes
}

#[test]
fn idle_connections_spread_over_three_processes_are_all_counted() {
    let server = start_ringcast();
    let (harness_pid, record) = run_harness(
        &server,
        "idle",
        &[
            "idle",
            "--connections",
            "200",
            "--client-processes",
            "3",
            "--duration",
            "0.5",
        ],
    );
    let measurement = &record["measurement"];
    assert_eq!(number(&measurement["connections"]), 200);
    assert_eq!(number(&measurement["handshakes"]), 200);
    assert_eq!(measurement["errors"], json!({}));
    let processes = separate_processes(&record, harness_pid, 3);
    let assigned: u64 = processes.iter().map(|p| number(&p["assigned"])).sum();
    assert_eq!(assigned, 200);
    for process in &processes {
        assert!(number(&process["assigned"]) > 0);
        assert_eq!(process["handshakes"], process["assigned"], "{process}");
        assert_eq!(process["open_at_stop"], process["assigned"], "{process}");
    }
    assert_eq!(record["options"]["client_processes"], json!(3));
}

#[test]
fn fanout_subscribers_in_three_processes_receive_everything_and_merge_latency() {
    let server = start_ringcast();
    let (harness_pid, record) = run_harness(
        &server,
        "fanout",
        &[
            "fanout",
            "--subscribers",
            "60",
            "--client-processes",
            "3",
            "--rate",
            "40",
            "--duration",
            "1",
        ],
    );
    let measurement = &record["measurement"];
    let deliveries = number(&measurement["deliveries"]);
    assert!(number(&measurement["publishes"]) > 0);
    assert_eq!(
        deliveries,
        number(&measurement["publishes"]) * 60,
        "every publication reaches all 60 subscribers"
    );
    assert_eq!(number(&measurement["expected_deliveries"]), deliveries);
    assert_eq!(measurement["lost"], json!(0));
    assert_eq!(measurement["errors"], json!({}));
    // The histograms the processes sent over their pipes were merged: one sample each.
    assert_eq!(number(&measurement["latency_micros"]["count"]), deliveries);
    let processes = separate_processes(&record, harness_pid, 3);
    let per_process: Vec<u64> = processes
        .iter()
        .map(|process| number(&process["deliveries"]))
        .collect();
    assert_eq!(per_process.iter().sum::<u64>(), deliveries);
    for process in &processes {
        assert_eq!(number(&process["assigned"]), 20);
        assert_eq!(number(&process["handshakes"]), 20);
        assert_eq!(
            number(&process["deliveries"]),
            deliveries / 3,
            "each process's 20 subscribers got every publication"
        );
    }
}
