//! The `ringcast` binary as a child process: start it, read its output line by line, wait
//! until it is healthy, stop it — and never leave one behind (killed on drop).

use super::{http, wait_for, wait_until, TestServer};
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ringcast");

/// Bound on every wait here: a failure guard, never a timing assertion.
pub const PROCESS_WAIT: Duration = Duration::from_secs(30);

/// `ringcast ARGS` as a hint-free user would run it: no cargo variables (so printed hints
/// name the binary's path, not `cargo run`), no `RUST_LOG`, no `RINGCAST_TOKEN`.
pub fn ringcast_command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("CARGO_PKG_NAME")
        .env_remove("CARGO_MANIFEST_DIR")
        .env_remove("RUST_LOG")
        .env_remove("RINGCAST_TOKEN")
        .stdin(Stdio::null());
    command
}

/// The listen address to give a broker under test: port 0, so the kernel picks a free
/// port at bind time. (Picking one in advance — bind, read the port, release it — races
/// with every other process choosing ports meanwhile.) Read the bound address back with
/// [`Running::listen_address`] or [`listening_address`].
pub const ANY_PORT: &str = "127.0.0.1:0";

/// The address in the broker's start-up line `ringcast listening` (`main.rs` logs it at
/// info level once every listener is bound and the signal handlers are installed, so a
/// test may connect or signal as soon as it has the line): `address=IP:PORT` in text logs,
/// `"address":"IP:PORT"` in JSON logs. `None` for any other line.
pub fn listening_address(line: &str) -> Option<SocketAddr> {
    if !line.contains("ringcast listening") {
        return None;
    }
    let value = if let Some((_, rest)) = line.split_once("\"address\":\"") {
        rest.split('"').next()?
    } else {
        let (_, rest) = line.split_once(" address=")?;
        rest.split_whitespace().next()?
    };
    value.parse().ok()
}

/// Reads the file `log` until `predicate` holds for one of its lines; returns the whole
/// text then (bounded wait: a failure guard).
pub fn wait_for_log_line(log: &Path, predicate: impl Fn(&str) -> bool) -> String {
    wait_for(
        &format!("{} shows the expected line", log.display()),
        PROCESS_WAIT,
        || {
            let logs = std::fs::read_to_string(log).unwrap_or_default();
            logs.lines().any(&predicate).then_some(logs)
        },
    )
}

/// The address a broker whose stderr goes to the file `log` bound: waits (bounded) for its
/// `ringcast listening` line there.
pub fn listening_address_in(log: &Path) -> SocketAddr {
    let logs = wait_for_log_line(log, |line| listening_address(line).is_some());
    logs.lines()
        .find_map(listening_address)
        .expect("wait_for_log_line saw the line")
}

/// A running child, killed on drop; its stdout and stderr arrive as lines on channels.
pub struct Running {
    pub child: Child,
    pub stdout: mpsc::Receiver<String>,
    pub stderr: mpsc::Receiver<String>,
}

fn lines(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

impl Running {
    /// Spawns `command` with piped stdout and stderr.
    pub fn spawn(mut command: Command) -> Running {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ringcast");
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Running {
            child,
            stdout,
            stderr,
        }
    }

    /// The next stdout line for which `pick` returns something (earlier lines are
    /// dropped); panics when the output ends first.
    pub fn stdout_until<T>(&self, pick: impl FnMut(&str) -> Option<T>) -> T {
        until(&self.stdout, "stdout", pick)
    }

    /// The address the broker bound, from its `ringcast listening` line on stderr (its
    /// log must include info level for the `ringcast` target, the default).
    pub fn listen_address(&self) -> SocketAddr {
        self.stderr_until(listening_address)
    }

    /// Like [`Running::stdout_until`], on stderr.
    pub fn stderr_until<T>(&self, pick: impl FnMut(&str) -> Option<T>) -> T {
        until(&self.stderr, "stderr", pick)
    }

    pub fn sigterm(&self) {
        let pid = self.child.id() as libc::pid_t;
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    }

    /// Waits for the exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        wait_for("ringcast exits", PROCESS_WAIT, || {
            self.child.try_wait().unwrap()
        })
    }

    /// Waits until `GET /health` answers 200 on `address`.
    pub fn wait_healthy(&mut self, address: SocketAddr) {
        let probe = TestServer {
            handle: None,
            address,
        };
        wait_until("ringcast is healthy", PROCESS_WAIT, || {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("ringcast exited early with {status}");
            }
            TcpStream::connect(address).is_ok() && http(&probe, "GET", "/health", None, "").0 == 200
        });
    }
}

fn until<T>(
    lines: &mpsc::Receiver<String>,
    what: &str,
    mut pick: impl FnMut(&str) -> Option<T>,
) -> T {
    let deadline = Instant::now() + PROCESS_WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                if let Some(found) = pick(&line) {
                    return found;
                }
                seen.push(line);
            }
            Err(_) => panic!(
                "the expected {what} line never came; {what} was:\n{}",
                seen.join("\n")
            ),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
