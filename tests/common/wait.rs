//! Waiting for an observable condition instead of sleeping a fixed time: poll it until it
//! holds, and fail (naming what was awaited) once a deadline passes.
//!
//! The limit is a failure guard, never a timing assertion: on a loaded machine a wait may
//! take most of it and the test still passes.

use super::TestServer;
use std::time::{Duration, Instant};

/// The default bound on a wait: long enough for a machine shared by several test runs.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Pause between two polls: short against every bound here, long enough not to spin a
/// core the server under test needs.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Polls `condition` until it holds; panics with `what` when `limit` has passed first.
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "gave up after {limit:?} waiting until {what}"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Polls `attempt` until it gives `Some`; panics with `what` when `limit` has passed first.
pub fn wait_for<T>(what: &str, limit: Duration, mut attempt: impl FnMut() -> Option<T>) -> T {
    let mut found = None;
    wait_until(what, limit, || {
        found = attempt();
        found.is_some()
    });
    found.expect("wait_until returned, so the attempt gave a value")
}

/// The sum of a per-worker gauge or counter (`name{worker="0"}`, `name{worker="1"}`, …).
pub fn metric_over_workers(server: &TestServer, name: &str) -> u64 {
    let (status, body) = super::http(server, "GET", "/metrics", None, "");
    assert_eq!(status, 200);
    let prefix = format!("{name}{{worker=\"");
    body.lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}
