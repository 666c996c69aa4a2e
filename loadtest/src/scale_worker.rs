//! `ringcast-loadtest scale-worker`: one client process of the `scale` scenario.
//!
//! The parent writes a [`WorkerSpec`] as the first line of stdin. The worker opens its
//! connections, each to its home node (global index mod nodes), subscribes each to its
//! topic and counts, per connection, which warm-up and which measured broadcast it received
//! and how often. When a connection drops (its node was killed) it reconnects to another
//! node, round-robin over the others: the harness plays the load balancer.
//!
//! Stdin commands after the spec: `mark <slot> <alive-mask>` (record which connections are
//! connected and warm on every alive node now: they must receive broadcast `slot`) and
//! `stop`. Stdout: JSON lines, a [`Progress`] every [`PROGRESS_INTERVAL`] and a final one
//! (`final: true`) after `stop`; every figure is cumulative, so a later line supersedes.
//!
//! Invariants: a connection counts as `up` only after its welcome and subscribe were
//! written; its warm-up mask is cleared whenever it drops; a worker exits when its stdin
//! closes (the parent ended), so none outlives a run.

use crate::client::ClientPool;
use crate::wire::{self, Connection};
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// The hidden subcommand a scale client process runs.
pub const SCALE_WORKER_COMMAND: &str = "scale-worker";
/// How often a worker reports.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(50);
/// Pause between two connection attempts of one connection.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Attempts on the home node before a never-connected connection gives up.
const HOME_ATTEMPTS: usize = 100;
/// Attempts on the other nodes after a drop before the connection gives up.
const RECONNECT_ATTEMPTS: usize = 200;
/// Marker of a measured broadcast: `@@SB<slot>@@`.
pub const BROADCAST_MARKER: &[u8] = b"@@SB";
/// Marker of a warm-up publication through node n: `@@SW<n>@@`.
pub const WARMUP_MARKER: &[u8] = b"@@SW";

/// What one client process does (first stdin line).
#[derive(Serialize, Deserialize)]
pub struct WorkerSpec {
    pub nodes: Vec<SocketAddr>,
    pub app_id: String,
    /// One token per connection, or one for all of them (shared `sub`).
    pub tokens: Vec<String>,
    pub sources: Vec<IpAddr>,
    pub threads: usize,
    pub cpu: Option<usize>,
    /// (global connection index, topic) of each connection of this process.
    pub connections: Vec<(usize, String)>,
    /// Measured broadcast slots (the broadcasts, plus one after the kill).
    pub slots: usize,
}

/// A worker's cumulative figures (one stdout line).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Progress {
    pub pid: u32,
    /// Welcomes received (first connects and reconnects).
    pub handshakes: u64,
    /// Welcomes after a drop.
    pub reconnects: u64,
    /// Connections open and subscribed now.
    pub up: u64,
    /// Per node: open connections that have received that node's warm-up since they connected.
    pub warm_per_node: Vec<u64>,
    /// Highest slot marked (-1: none).
    pub marked: i64,
    /// Per slot: connections that had to receive it (connected and warm at its mark).
    pub eligible: Vec<u64>,
    /// Per slot: eligible connections that received it at least once.
    pub received: Vec<u64>,
    /// Per slot: receipts beyond the first, over all connections.
    pub duplicates: Vec<u64>,
    /// Per slot: latest arrival, CLOCK_MONOTONIC nanoseconds (0: none yet).
    pub last_arrival: Vec<u64>,
    pub errors: BTreeMap<String, u64>,
    #[serde(default)]
    pub last: bool,
}

/// State shared by a worker's connections and its reporter.
struct Shared {
    spec: WorkerSpec,
    handshakes: AtomicU64,
    reconnects: AtomicU64,
    up: Vec<AtomicBool>,
    warm: Vec<AtomicU64>,
    /// connection × slot receipt counts.
    counts: Vec<AtomicU16>,
    /// connection × slot: had to receive it.
    eligible: Vec<AtomicBool>,
    last_arrival: Vec<AtomicU64>,
    marked: AtomicI64,
    stop: AtomicBool,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn error(&self, kind: &str) {
        if let Ok(mut errors) = self.errors.lock() {
            *errors.entry(kind.to_string()).or_default() += 1;
        }
    }

    fn mark(&self, slot: usize, alive: u64) {
        for connection in 0..self.up.len() {
            let ready = self.up[connection].load(Ordering::Acquire)
                && self.warm[connection].load(Ordering::Acquire) & alive == alive;
            self.eligible[connection * self.spec.slots + slot].store(ready, Ordering::Release);
        }
        self.marked.fetch_max(slot as i64, Ordering::AcqRel);
    }

    fn progress(&self, last: bool) -> Progress {
        let slots = self.spec.slots;
        let nodes = self.spec.nodes.len();
        let mut progress = Progress {
            pid: std::process::id(),
            handshakes: self.handshakes.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            warm_per_node: vec![0; nodes],
            marked: self.marked.load(Ordering::Acquire),
            eligible: vec![0; slots],
            received: vec![0; slots],
            duplicates: vec![0; slots],
            last_arrival: self
                .last_arrival
                .iter()
                .map(|arrival| arrival.load(Ordering::Relaxed))
                .collect(),
            errors: self.errors.lock().map(|e| e.clone()).unwrap_or_default(),
            last,
            ..Progress::default()
        };
        for connection in 0..self.up.len() {
            if self.up[connection].load(Ordering::Acquire) {
                progress.up += 1;
                let warm = self.warm[connection].load(Ordering::Acquire);
                for (node, count) in progress.warm_per_node.iter_mut().enumerate() {
                    *count += (warm >> node) & 1;
                }
            }
            for slot in 0..slots {
                let count =
                    u64::from(self.counts[connection * slots + slot].load(Ordering::Relaxed));
                if self.eligible[connection * slots + slot].load(Ordering::Acquire) {
                    progress.eligible[slot] += 1;
                    progress.received[slot] += u64::from(count > 0);
                }
                progress.duplicates[slot] += count.saturating_sub(1);
            }
        }
        progress
    }
}

/// The number after `marker` in `frame`, if the marker is there.
pub fn marked_number(frame: &[u8], marker: &[u8]) -> Option<usize> {
    let position = wire::find(frame, marker)? + marker.len();
    let digits = frame[position..]
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    std::str::from_utf8(&frame[position..position + digits])
        .ok()?
        .parse()
        .ok()
}

/// The node connection `index` uses on `attempt` (0 = its home; later: the others in turn).
pub fn node_for(index: usize, nodes: usize, attempt: usize) -> usize {
    let home = index % nodes;
    if attempt == 0 || nodes == 1 {
        return home;
    }
    // The home node's connections are home, home+K, home+2K …: index / K spreads them.
    let other = (index / nodes + attempt - 1) % (nodes - 1);
    if other >= home {
        other + 1
    } else {
        other
    }
}

async fn connection_task(shared: Arc<Shared>, slot: usize) {
    let (index, _) = shared.spec.connections[slot];
    let nodes = shared.spec.nodes.len();
    let mut attempt = 0usize;
    let mut failures = 0usize;
    let mut was_up = false;
    while !shared.stop.load(Ordering::Relaxed) {
        let node = node_for(index, nodes, attempt);
        let result = session(&shared, slot, node, was_up).await;
        let came_up = shared.up[slot].swap(false, Ordering::AcqRel);
        shared.warm[slot].store(0, Ordering::Release);
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        match result {
            _ if came_up => {
                // It was connected, then dropped: another node from now on.
                was_up = true;
                failures = 0;
                attempt += 1;
            }
            _ => {
                if let Err(error) = result {
                    shared.error(&error.to_string());
                }
                failures += 1;
                if was_up {
                    attempt += 1;
                }
                let limit = if was_up {
                    RECONNECT_ATTEMPTS
                } else {
                    HOME_ATTEMPTS
                };
                if failures >= limit {
                    shared.error("gave_up");
                    return;
                }
            }
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// One connection's life on `node`; `Ok(true)` once it was up (then dropped), `Ok(false)`
/// when the run stopped before it came up.
async fn session(shared: &Shared, slot: usize, node: usize, was_up: bool) -> anyhow::Result<bool> {
    let spec = &shared.spec;
    let (index, topic) = &spec.connections[slot];
    let token = &spec.tokens[if spec.tokens.len() == 1 { 0 } else { slot }];
    let source = (!spec.sources.is_empty()).then(|| spec.sources[index % spec.sources.len()]);
    let path = format!("/apps/{}?access_token={token}", spec.app_id);
    let Connection {
        mut stream,
        mut reader,
    } = wire::connect(spec.nodes[node], &path, source).await?;
    let mut welcomed = false;
    let mut replies = Vec::new();
    loop {
        while let Some((opcode, range)) = reader.next_frame() {
            let payload = reader.payload(range);
            match opcode {
                wire::OPCODE_PING => wire::encode_frame(wire::OPCODE_PONG, payload, &mut replies),
                wire::OPCODE_CLOSE => {
                    let code = if payload.len() >= 2 {
                        u16::from_be_bytes([payload[0], payload[1]])
                    } else {
                        1005
                    };
                    if welcomed {
                        return Ok(true);
                    }
                    bail!("closed_{code}");
                }
                wire::OPCODE_PONG => {}
                _ if !welcomed => {
                    if wire::find(payload, b"\"welcome\"").is_none() {
                        bail!("no_welcome");
                    }
                    welcomed = true;
                    let command = format!(r#"{{"type":"subscribe","data":{{"topic":"{topic}"}}}}"#);
                    wire::encode_frame(wire::OPCODE_TEXT, command.as_bytes(), &mut replies);
                    stream.write_all(&replies).await.context("write")?;
                    replies.clear();
                    shared.handshakes.fetch_add(1, Ordering::Relaxed);
                    if was_up {
                        shared.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    shared.up[slot].store(true, Ordering::Release);
                }
                _ => account(shared, slot, payload),
            }
        }
        if !replies.is_empty() {
            stream.write_all(&replies).await.context("write")?;
            replies.clear();
        }
        let read = reader.fill(&mut stream).await;
        if shared.stop.load(Ordering::Relaxed) {
            return Ok(welcomed);
        }
        match read {
            Ok(count) if count > 0 => {}
            _ if welcomed => return Ok(true),
            Ok(_) => bail!("eof_before_welcome"),
            Err(error) => return Err(error),
        }
    }
}

fn account(shared: &Shared, slot: usize, frame: &[u8]) {
    let slots = shared.spec.slots;
    if let Some(broadcast) = marked_number(frame, BROADCAST_MARKER) {
        if broadcast < slots {
            let now = wire::monotonic_nanos();
            let count = &shared.counts[slot * slots + broadcast];
            // Saturates instead of wrapping: 65,535 copies of one broadcast say enough.
            count
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1))
                .ok();
            shared.last_arrival[broadcast].fetch_max(now, Ordering::Relaxed);
        }
    } else if let Some(node) = marked_number(frame, WARMUP_MARKER) {
        if node < 64 {
            shared.warm[slot].fetch_or(1 << node, Ordering::AcqRel);
        }
    }
}

fn emit(progress: &Progress) -> anyhow::Result<()> {
    crate::fleet::emit(progress)
}

/// `ringcast-loadtest scale-worker`: see the module documentation.
pub fn worker_main() -> anyhow::Result<()> {
    let mut input = BufReader::new(std::io::stdin());
    let mut line = String::new();
    input.read_line(&mut line).context("read the worker spec")?;
    let spec: WorkerSpec = serde_json::from_str(&line).context("parse the worker spec")?;
    if spec.nodes.is_empty() || spec.nodes.len() > 64 || spec.tokens.is_empty() {
        bail!("a scale worker needs 1-64 nodes and a token");
    }
    if let Some(cpu) = spec.cpu {
        crate::pin_process(&cpu.to_string())?;
    }
    let count = spec.connections.len();
    let slots = spec.slots;
    let threads = spec.threads;
    let shared = Arc::new(Shared {
        handshakes: AtomicU64::new(0),
        reconnects: AtomicU64::new(0),
        up: (0..count).map(|_| AtomicBool::new(false)).collect(),
        warm: (0..count).map(|_| AtomicU64::new(0)).collect(),
        counts: (0..count * slots).map(|_| AtomicU16::new(0)).collect(),
        eligible: (0..count * slots).map(|_| AtomicBool::new(false)).collect(),
        last_arrival: (0..slots).map(|_| AtomicU64::new(0)).collect(),
        marked: AtomicI64::new(-1),
        stop: AtomicBool::new(false),
        errors: Mutex::new(BTreeMap::new()),
        spec,
    });
    let pool = ClientPool::new(threads)?;
    for slot in 0..count {
        pool.spawn(slot, connection_task(shared.clone(), slot));
    }
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let commands = shared.clone();
    std::thread::spawn(move || {
        for line in input.lines() {
            let Ok(line) = line else { break };
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["stop"] => break,
                ["mark", slot, alive] => match (slot.parse::<usize>(), alive.parse::<u64>()) {
                    (Ok(slot), Ok(alive)) if slot < commands.spec.slots => {
                        commands.mark(slot, alive)
                    }
                    _ => commands.error("bad_command"),
                },
                _ => commands.error("bad_command"),
            }
        }
        // `stop`, or the parent closed the pipe (it ended): either way, finish.
        stop.send(()).ok();
    });
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
        stopped.recv_timeout(PROGRESS_INTERVAL)
    {
        emit(&shared.progress(false))?;
    }
    shared.stop.store(true, Ordering::Relaxed);
    emit(&shared.progress(true))?;
    // Exit without joining the client threads: the kernel closes every socket at once.
    std::process::exit(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_carry_their_number() {
        assert_eq!(
            marked_number(br#"{"m":"@@SB12@@x"}"#, BROADCAST_MARKER),
            Some(12)
        );
        assert_eq!(marked_number(b"@@SW3@@", WARMUP_MARKER), Some(3));
        assert_eq!(marked_number(b"@@SW3@@", BROADCAST_MARKER), None);
        assert_eq!(marked_number(b"@@SB@@", BROADCAST_MARKER), None);
    }

    #[test]
    fn a_dropped_connection_moves_round_robin_over_the_other_nodes() {
        // Home node: index mod nodes.
        assert_eq!(node_for(5, 3, 0), 2);
        // Node 0 of 3 holds 0, 3, 6, 9: they go to 1, 2, 1, 2, never back to 0.
        let moved: Vec<usize> = [0, 3, 6, 9].iter().map(|&i| node_for(i, 3, 1)).collect();
        assert_eq!(moved, vec![1, 2, 1, 2]);
        // A second attempt tries the next other node, still never the home node.
        assert_eq!(node_for(0, 3, 2), 2);
        for index in 0..50 {
            for attempt in 1..5 {
                assert_ne!(node_for(index, 4, attempt), index % 4);
            }
        }
        assert_eq!(node_for(7, 1, 3), 0);
    }
}
