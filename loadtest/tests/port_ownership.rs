//! The harness measures only the server it started: a port another process already
//! listens on fails the run at once, naming the holder, instead of measuring whatever
//! answers there (once 70 s of another service's 404s).
//!
//! No timing assertions: the failure is told apart by its message, which only the check
//! before the start produces.

use std::net::TcpListener;
use std::process::Command;

#[test]
fn a_port_held_by_another_listener_fails_the_run_before_it_starts() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let result = Command::new(env!("CARGO_BIN_EXE_ringcast-loadtest"))
        .args(["fanout", "--server", "tokio-baseline", "--port", &port])
        .args(["--subscribers", "2", "--duration", "1"])
        .arg("--output")
        .arg(std::env::temp_dir().join(format!("ringcast-port-held-{}.json", std::process::id())))
        .output()
        .expect("harness runs");
    drop(holder);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success(), "the run must fail: {stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port} is already in use")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("pid {}", std::process::id())),
        "the holder (this test process) is named: {stderr}"
    );
    assert!(
        !stderr.contains("subscribers:"),
        "no subscriber was started against the holder: {stderr}"
    );
}

#[test]
fn a_sweep_refuses_a_held_port_too() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let result = Command::new(env!("CARGO_BIN_EXE_ringcast-loadtest"))
        .args([
            "sweep",
            "--scenario",
            "topics",
            "--server",
            "tokio-baseline",
        ])
        .args(["--rates", "10", "--slo-ms", "100", "--port", &port])
        .args(["--subscribers", "2", "--topics", "2", "--duration", "1"])
        .output()
        .expect("harness runs");
    drop(holder);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success(), "the sweep must fail: {stderr}");
    assert!(stderr.contains("is already in use"), "{stderr}");
}
