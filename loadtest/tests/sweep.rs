//! `ringcast-loadtest sweep`: every server at every offered rate, and a capacity at the
//! latency objective per server, in one JSON result and one chart.
//!
//! A tiny load (2 rates, 8 subscribers, 1 s per point) against ringcast and the tokio
//! baseline started by the harness; nats-server joins when `RINGCAST_NATS_SERVER` names
//! it (`scripts/test.sh` sets it), else that leg reports itself skipped. The ringcast
//! binary is the workspace build's (`target/<profile>/ringcast`, beside this crate's
//! binaries): without it the test fails under CI and otherwise reports itself skipped.
//! No timing assertions: the objective (2 s) is far above anything this load produces.

#[path = "../../tests/common/skip.rs"]
mod skip;

use serde_json::Value;
use skip::{current_test, skip};
use std::path::PathBuf;
use std::process::Command;

const RATES: [f64; 2] = [20.0, 40.0];

fn harness() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ringcast-loadtest"))
}

#[test]
fn sweep_reports_every_point_and_a_capacity_per_server() {
    let ringcast = harness().with_file_name("ringcast");
    if !ringcast.exists() {
        let reason = format!(
            "{} not built (cargo build --workspace builds it)",
            ringcast.display()
        );
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{reason}");
        }
        skip(&format!("loadtest/sweep::{}", current_test()), &reason);
        return;
    }
    let mut servers = vec!["ringcast", "tokio-baseline"];
    let nats = std::env::var_os("RINGCAST_NATS_SERVER").map(PathBuf::from);
    match &nats {
        Some(_) => servers.push("nats-server"),
        None => skip(
            &format!("loadtest/sweep::{} (nats-server leg)", current_test()),
            "RINGCAST_NATS_SERVER not set",
        ),
    }
    let directory =
        std::env::temp_dir().join(format!("ringcast-sweep-test-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let output = directory.join("sweep.json");
    let chart = directory.join("sweep.svg");
    let compare = servers
        .iter()
        .map(|name| if *name == "nats-server" { "nats" } else { name })
        .collect::<Vec<_>>()
        .join(",");
    let mut command = Command::new(harness());
    command
        .args(["sweep", "--scenario", "fanout", "--compare", &compare])
        .args(["--rates", "40,20", "--slo-ms", "2000"])
        .args(["--subscribers", "8", "--duration", "1"])
        .arg("--output")
        .arg(&output)
        .arg("--chart")
        .arg(&chart);
    if let Some(nats) = &nats {
        command.arg("--nats-bin").arg(nats);
    }
    let result = command.output().expect("harness runs");
    let stdout = String::from_utf8_lossy(&result.stdout).to_string();
    assert!(
        result.status.success(),
        "sweep failed: {stdout}\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let sweep: Value = serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    let svg = std::fs::read_to_string(&chart).unwrap();
    std::fs::remove_dir_all(&directory).ok();

    assert_eq!(sweep["kind"], "sweep");
    assert_eq!(sweep["scenario"], "fanout");
    assert_eq!(
        sweep["rates_publishes_per_second"],
        serde_json::json!(RATES)
    );
    assert!(sweep["provenance"]["git_commit"].is_string());
    let points = sweep["points"].as_array().unwrap();
    assert_eq!(
        points.len(),
        RATES.len() * servers.len(),
        "one point per rate and server"
    );
    // Order: rates ascending, the servers in turn at each rate.
    for (index, point) in points.iter().enumerate() {
        assert_eq!(
            point["offered_publishes_per_second"].as_f64(),
            Some(RATES[index / servers.len()])
        );
        assert_eq!(point["server"], servers[index % servers.len()]);
        assert_eq!(
            point["offered_deliveries_per_second"].as_f64(),
            Some(RATES[index / servers.len()] * 8.0)
        );
        let record = &point["record"];
        assert_eq!(
            record["options"]["rate"].as_f64(),
            point["offered_publishes_per_second"].as_f64()
        );
        assert_eq!(record["provenance"]["server"], point["server"]);
        let measurement = &record["measurement"];
        for percentile in ["p50", "p99", "max"] {
            assert!(measurement["latency_micros"][percentile].as_u64().unwrap() > 0);
        }
        assert!(measurement["deliveries_per_second"].as_f64().unwrap() > 0.0);
        assert!(measurement["lost"].is_i64());
        assert!(measurement["server_cores_busy"].is_f64(), "{measurement}");
        assert!(measurement["client_cpu"]["cores_busy"].is_f64());
        assert!(measurement["client_cpu"]["busiest_thread_cores"].is_f64());
        assert!(
            measurement["client_cpu"]["cores_available"]
                .as_u64()
                .unwrap()
                >= 1
        );
        assert!(measurement["schedule_lag_micros"]["p99"].is_u64());
        assert!(point["meets_objective"].is_boolean());
    }
    let capacity = sweep["capacity"].as_array().unwrap();
    assert_eq!(capacity.len(), servers.len());
    for (entry, server) in capacity.iter().zip(&servers) {
        assert_eq!(entry["server"], *server);
        let rate = entry["publishes_per_second"]
            .as_f64()
            .unwrap_or_else(|| panic!("{server}: no capacity at a 2 s objective: {stdout}"));
        assert!(RATES.contains(&rate), "{entry}");
        assert!(stdout.contains(&format!("  {server:<15} ")), "{stdout}");
    }
    assert!(stdout.contains("capacity at p99 <= 2,000 ms"), "{stdout}");
    for server in &servers {
        assert!(svg.contains(server), "chart has a line for {server}");
    }
    assert!(svg.contains("offered deliveries/s") && svg.contains(" ms"));
}
