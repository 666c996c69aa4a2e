//! Tests that cannot run say so where the suite runner sees it.
//!
//! cargo has no "skipped" state, and it captures what a passing test prints, so a test that
//! returns early because a tool is missing (nats-server, Chromium, …) would pass silently.
//! [`skip`] prints `SKIPPED <test>: <reason>` to stderr and appends the same line to the
//! file named by `RINGCAST_SKIP_LOG`; `scripts/test.sh` sets it (`.build/skipped.log`,
//! emptied at the start) and ends with a summary of every line in it. Shell suites write
//! the same lines through `scripts/skip.sh`.
//!
//! Standalone (no other `common` item): `loadtest/tests` includes it by path.

use std::io::Write as _;

/// The environment variable naming the skip log (one `SKIPPED …` line per skip).
pub const SKIP_LOG_VARIABLE: &str = "RINGCAST_SKIP_LOG";

/// Records that `test` (`<test file>::<test function>`) did not run, and why. The caller
/// then returns. A skip log that cannot be written fails the test: a skip nobody would
/// see is what this function exists to prevent.
pub fn skip(test: &str, reason: &str) {
    let line = format!("SKIPPED {test}: {reason}");
    eprintln!("{line}");
    let Some(path) = std::env::var_os(SKIP_LOG_VARIABLE) else {
        return;
    };
    // One `write` of a short line to an O_APPEND file: lines of parallel tests never mix.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut log| log.write_all(format!("{line}\n").as_bytes()));
    if let Err(error) = written {
        panic!(
            "{line}; and the skip log {} cannot be written: {error}",
            std::path::Path::new(&path).display()
        );
    }
}

/// The running test's name: libtest runs each test on a thread named after it (also with
/// `--test-threads=1`). For helpers shared by several tests, such as a fixture that finds
/// a tool missing.
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .unwrap_or("(unnamed test)")
        .to_string()
}
