//! The `scale` scenario: one nats-server, K ringcast nodes in cluster mode, N connections
//! spread over client processes (`scale-worker`, see [`crate::scale_worker`]) round-robin
//! over the nodes, each subscribed to one of `--topics` topics.
//!
//! Measures: time to establish every connection and handshake rate; RSS per connection per
//! node (`/proc/<pid>/status` VmRSS after minus before the connections); for each of
//! `--broadcasts` broadcasts (one HTTP publication per topic, through the nodes in turn) the
//! time until every connection has it, with loss and duplicates; then (`--kill-node`) kills
//! the last node with SIGKILL, its clients reconnect round-robin to the others, and reports
//! the time until they are all back and the loss of the next broadcast.
//!
//! Loss is counted per connection: before each broadcast every worker marks the connections
//! that are open and have received a warm-up through every live node since they connected
//! (their subscription is effective cluster-wide); each of those must receive the broadcast
//! exactly once. Warm-ups repeat until every connection is marked ready, so a subscription
//! still propagating is never counted as lost.
//!
//! Responsibility: start, drive and measure; never pass/fail (the tests read the JSON).

use crate::report;
pub use crate::scale_report::{BroadcastResult, KillResult, NodeResult, ScaleRecord};
use crate::scale_worker::{
    Progress, WorkerSpec, BROADCAST_MARKER, SCALE_WORKER_COMMAND, WARMUP_MARKER,
};
use crate::server::{self, Credentials, Provenance, RunningServer, ServerOptions, APP_HS256};
use crate::stats;
use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Options of the `scale` command (with `--connections`, `--topics`, `--workers`,
/// `--source-addresses`, `--client-processes`, `--threads`).
#[derive(Clone, Debug, Serialize, clap::Args)]
pub struct ScaleArgs {
    /// scale: ringcast nodes in cluster mode (1 worker each unless --workers).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// scale: measured broadcasts (before the kill).
    #[arg(long, default_value_t = 3)]
    pub broadcasts: usize,
    /// scale: every connection its own `sub` claim (real users); default: one per process.
    #[arg(long)]
    pub unique_subjects: bool,
    /// scale: kill the last node after the broadcasts and measure the reconnect.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub kill_node: bool,
    /// scale: seconds to wait for all connections, all warm-ups or one broadcast.
    #[arg(long, default_value_t = 120.0)]
    pub phase_timeout: f64,
}

/// How often the parent looks at its workers' figures.
const POLL: Duration = Duration::from_millis(20);
/// Wait between "every connection ready" and reading the nodes' RSS.
const RSS_SETTLE: Duration = Duration::from_secs(2);
/// Pause between two warm-up rounds.
const WARMUP_PAUSE: Duration = Duration::from_millis(250);

struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    latest: Arc<Mutex<Progress>>,
    pump: Option<std::thread::JoinHandle<()>>,
}

/// The client processes; killed on drop.
struct Workers(Vec<Worker>);

impl Drop for Workers {
    fn drop(&mut self) {
        for worker in &mut self.0 {
            worker.stdin.take();
            worker.child.kill().ok();
            worker.child.wait().ok();
        }
    }
}

/// The workers' figures, summed.
#[derive(Default)]
struct Sum {
    handshakes: u64,
    reconnects: u64,
    up: u64,
    warm_per_node: Vec<u64>,
    marked: i64,
    eligible: Vec<u64>,
    received: Vec<u64>,
    duplicates: Vec<u64>,
    last_arrival: Vec<u64>,
    errors: std::collections::BTreeMap<String, u64>,
    all_last: bool,
}

fn add(into: &mut Vec<u64>, from: &[u64]) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (total, value) in into.iter_mut().zip(from) {
        *total += value;
    }
}

impl Workers {
    fn sum(&self, nodes: usize, slots: usize) -> Sum {
        let mut sum = Sum {
            warm_per_node: vec![0; nodes],
            marked: i64::MAX,
            eligible: vec![0; slots],
            received: vec![0; slots],
            duplicates: vec![0; slots],
            last_arrival: vec![0; slots],
            all_last: true,
            ..Sum::default()
        };
        for worker in &self.0 {
            let progress = worker.latest.lock().map(|p| p.clone()).unwrap_or_default();
            sum.handshakes += progress.handshakes;
            sum.reconnects += progress.reconnects;
            sum.up += progress.up;
            add(&mut sum.warm_per_node, &progress.warm_per_node);
            sum.marked = sum.marked.min(if progress.eligible.is_empty() {
                -1
            } else {
                progress.marked
            });
            add(&mut sum.eligible, &progress.eligible);
            add(&mut sum.received, &progress.received);
            add(&mut sum.duplicates, &progress.duplicates);
            for (latest, &arrival) in sum.last_arrival.iter_mut().zip(&progress.last_arrival) {
                *latest = (*latest).max(arrival);
            }
            for (kind, count) in &progress.errors {
                *sum.errors.entry(kind.clone()).or_default() += count;
            }
            sum.all_last &= progress.last;
        }
        sum
    }

    fn send(&mut self, line: &str) -> anyhow::Result<()> {
        for worker in &mut self.0 {
            if let Some(stdin) = worker.stdin.as_mut() {
                writeln!(stdin, "{line}")
                    .and_then(|()| stdin.flush())
                    .context("write to a scale client process")?;
            }
        }
        Ok(())
    }

    fn pids(&self) -> Vec<u32> {
        self.0.iter().map(|worker| worker.child.id()).collect()
    }
}

/// Waits until `done` holds for the workers' sum, or `timeout`; returns the elapsed time
/// when it held.
fn wait_for(
    workers: &Workers,
    nodes: usize,
    slots: usize,
    timeout: Duration,
    mut done: impl FnMut(&Sum) -> bool,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if done(&workers.sum(nodes, slots)) {
            return Some(started.elapsed());
        }
        std::thread::sleep(POLL);
    }
    None
}

/// `POST /api/topics/{app}/publish` with `message`; fails unless 200.
fn http_publish(
    address: SocketAddr,
    app: &str,
    token: &str,
    topic: &str,
    message: &str,
) -> anyhow::Result<()> {
    let body = json!({"topic": topic, "messageType": "scale", "message": message}).to_string();
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "POST /api/topics/{app}/publish HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok();
    if !response.starts_with("HTTP/1.1 200") {
        bail!(
            "publish through {address}: {:?}",
            response.lines().next().unwrap_or("no answer")
        );
    }
    Ok(())
}

/// Runs the scenario and returns its record.
#[allow(clippy::too_many_arguments)]
pub fn run(
    args: &ScaleArgs,
    options_json: serde_json::Value,
    connections: usize,
    topics: usize,
    source_addresses: u8,
    client_processes: Option<usize>,
    threads: usize,
    server_options: &ServerOptions,
    credentials: &Credentials,
    work_dir: &Path,
) -> anyhow::Result<ScaleRecord> {
    let k = args.nodes;
    if !(1..=64).contains(&k) {
        bail!("--nodes must be 1-64");
    }
    if args.kill_node && k < 2 {
        bail!("--kill-node needs at least 2 nodes (or --kill-node false)");
    }
    if connections == 0 || topics == 0 || args.broadcasts == 0 {
        bail!("--connections, --topics and --broadcasts must be at least 1");
    }
    let timeout = Duration::from_secs_f64(args.phase_timeout.max(1.0));
    let slots = args.broadcasts + usize::from(args.kill_node);
    let nats = server::start_nats_bus(&server_options.nats_bin, 0, work_dir)?;
    let bus = format!("nats://127.0.0.1:{}", nats.address.port());
    let mut nodes: Vec<Option<RunningServer>> = Vec::new();
    for node in 0..k {
        let mut node_options = server_options.clone();
        node_options.port = 0;
        node_options.cluster = Some(json!({
            "nats": [bus],
            "name": format!("scale-{node}"),
            "nodeNumber": node,
            "subjectPrefix": "loadtest-scale",
        }));
        // server::start refuses a port someone holds and checks that the started node is
        // the process answering on it.
        nodes.push(Some(server::start(&node_options, credentials, work_dir)?));
    }
    let addresses: Vec<SocketAddr> = nodes.iter().flatten().map(|node| node.address).collect();
    let mut node_results: Vec<NodeResult> = nodes
        .iter()
        .flatten()
        .enumerate()
        .map(|(index, node)| NodeResult {
            name: format!("scale-{index}"),
            address: node.address.to_string(),
            pid: node.pid,
            connections: ((connections + k - 1 - index) / k) as u64,
            rss_before_bytes: stats::status_bytes(node.pid, "VmRSS"),
            ..NodeResult::default()
        })
        .collect();
    let admin = credentials.admin_token()?;
    let sign = |sub: String| -> anyhow::Result<String> {
        let claims = json!({
            "sub": sub,
            "exp": 4_000_000_000u64,
            "permissions": ["realtime:subscriber:read:topic:*"],
        });
        Ok(ringcast::auth::sign(
            ringcast::auth::Algorithm::HS256,
            &credentials.hs_secret,
            &claims,
        )?)
    };
    let processes = crate::fleet::process_count(client_processes, connections);
    let per_address = usize::from(source_addresses.max(1));
    if processes * per_address > 254 {
        bail!("{processes} client processes × {per_address} source addresses exceed 127.0.0.1-254");
    }
    let program = std::env::current_exe().context("this harness's executable")?;
    let chunk = connections.div_ceil(processes);
    let mut workers = Workers(Vec::new());
    let started = Instant::now();
    for process in 0..processes {
        let first = process * chunk;
        let count = chunk.min(connections.saturating_sub(first));
        if count == 0 {
            break;
        }
        let tokens = if args.unique_subjects {
            (first..first + count)
                .map(|index| sign(format!("scale-user-{index}")))
                .collect::<anyhow::Result<Vec<_>>>()?
        } else {
            vec![sign(format!("scale-process-{process}"))?]
        };
        let sources = (0..per_address)
            .map(|offset| {
                IpAddr::V4(Ipv4Addr::new(
                    127,
                    0,
                    0,
                    (process * per_address + offset + 1) as u8,
                ))
            })
            .collect();
        let spec = WorkerSpec {
            nodes: addresses.clone(),
            app_id: APP_HS256.to_string(),
            tokens,
            sources,
            threads,
            cpu: crate::fleet::client_cpu(process),
            connections: (first..first + count)
                .map(|index| (index, format!("scale-{}", index % topics)))
                .collect(),
            slots,
        };
        let mut child = Command::new(&program)
            .arg(SCALE_WORKER_COMMAND)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("start scale client process {process}"))?;
        let mut stdin = child.stdin.take().context("worker stdin")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let latest = Arc::new(Mutex::new(Progress::default()));
        let pumped = latest.clone();
        let pump = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(progress) = serde_json::from_str::<Progress>(&line) {
                    if let Ok(mut latest) = pumped.lock() {
                        *latest = progress;
                    }
                }
            }
        });
        let mut line = serde_json::to_vec(&spec)?;
        line.push(b'\n');
        let written = stdin.write_all(&line).and_then(|()| stdin.flush());
        workers.0.push(Worker {
            child,
            stdin: Some(stdin),
            latest,
            pump: Some(pump),
        });
        written.with_context(|| format!("send the spec to scale client process {process}"))?;
    }
    let total = connections as u64;
    let establish = wait_for(&workers, k, slots, timeout, |sum| sum.handshakes >= total);
    println!(
        "scale: {} connections over {k} nodes welcomed in {}",
        total,
        establish.map_or("— (timed out)".into(), |time| format!(
            "{:.2} s",
            time.as_secs_f64()
        ))
    );
    let mut alive: Vec<usize> = (0..k).collect();
    let ready = warm_up(
        &workers, &addresses, &alive, &admin, topics, total, slots, timeout,
    )?
    .map(|_| started.elapsed());
    // As the idle scenario does: RSS once the nodes have handed back what the handshake
    // storm freed (each worker and the bus release freed memory once a second).
    std::thread::sleep(RSS_SETTLE);
    for (result, node) in node_results.iter_mut().zip(nodes.iter().flatten()) {
        result.rss_after_bytes = stats::status_bytes(node.pid, "VmRSS");
        if let (Some(before), Some(after)) = (result.rss_before_bytes, result.rss_after_bytes) {
            result.rss_per_connection_bytes =
                Some(after.saturating_sub(before) as f64 / result.connections.max(1) as f64);
        }
    }
    let mut broadcasts = Vec::new();
    for slot in 0..args.broadcasts {
        let node = alive[slot % alive.len()];
        broadcasts.push(broadcast(
            &mut workers,
            &addresses,
            &alive,
            node,
            slot,
            false,
            &admin,
            topics,
            k,
            slots,
            timeout,
        )?);
    }
    let mut kill = None;
    if args.kill_node {
        let victim = k - 1;
        let mut result = KillResult {
            node: victim,
            connections_to_move: node_results[victim].connections,
            ..KillResult::default()
        };
        let before = workers.sum(k, slots).reconnects;
        if let Some(node) = nodes[victim].take() {
            // SAFETY: signalling our own child by pid; it has not been reaped yet.
            unsafe { libc::kill(node.pid as libc::pid_t, libc::SIGKILL) };
            drop(node);
        }
        let killed = Instant::now();
        alive.retain(|&node| node != victim);
        // The dropped connections are down before they are back: wait for that first.
        if result.connections_to_move > 0 {
            wait_for(&workers, k, slots, timeout, |sum| {
                sum.up < total || sum.reconnects > before
            });
        }
        result.all_reconnected_ms = wait_for(&workers, k, slots, timeout, |sum| sum.up >= total)
            .map(|_| killed.elapsed().as_secs_f64() * 1e3);
        result.all_ready_ms = warm_up(
            &workers, &addresses, &alive, &admin, topics, total, slots, timeout,
        )?
        .map(|_| killed.elapsed().as_secs_f64() * 1e3);
        result.reconnects = workers.sum(k, slots).reconnects - before;
        let slot = args.broadcasts;
        broadcasts.push(broadcast(
            &mut workers,
            &addresses,
            &alive,
            alive[0],
            slot,
            true,
            &admin,
            topics,
            k,
            slots,
            timeout,
        )?);
        kill = Some(result);
    }
    workers.send("stop")?;
    wait_for(&workers, k, slots, Duration::from_secs(30), |sum| {
        sum.all_last
    });
    let last = workers.sum(k, slots);
    // Final figures: duplicates may arrive after a broadcast was complete.
    for result in &mut broadcasts {
        result.duplicates = last.duplicates[result.slot];
    }
    let pids = workers.pids();
    for worker in &mut workers.0 {
        worker.stdin.take();
        worker.child.wait().ok();
        if let Some(pump) = worker.pump.take() {
            pump.join().ok();
        }
    }
    let (version, driver) = nodes
        .iter()
        .flatten()
        .next()
        .map(|node| (node.version.clone(), node.io_driver.clone()))
        .unwrap_or_default();
    let provenance = Provenance::collect(&format!("ringcast-cluster-{k}"), &version, &driver);
    let nats_version = nats.version.clone();
    drop(nodes);
    drop(nats);
    Ok(ScaleRecord {
        scenario: "scale",
        provenance,
        nats_server_version: nats_version,
        harness_build_profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        ringcast_binary: server_options
            .bin_dir
            .join("ringcast")
            .display()
            .to_string(),
        options: options_json,
        connections: total,
        client_processes: pids.len(),
        establish_seconds: establish.map(|time| time.as_secs_f64()),
        handshakes_per_second: establish.map(|time| total as f64 / time.as_secs_f64().max(1e-9)),
        ready_seconds: ready.map(|time| time.as_secs_f64()),
        nodes: node_results,
        total_lost: broadcasts.iter().map(|result| result.lost).sum(),
        total_duplicates: broadcasts.iter().map(|result| result.duplicates).sum(),
        broadcasts,
        kill,
        errors: last.errors,
        client_process_pids: pids,
    })
}

/// Publishes warm-ups through every live node until every connection is open and has one
/// from each; `None` on timeout.
#[allow(clippy::too_many_arguments)]
fn warm_up(
    workers: &Workers,
    addresses: &[SocketAddr],
    alive: &[usize],
    admin: &str,
    topics: usize,
    total: u64,
    slots: usize,
    timeout: Duration,
) -> anyhow::Result<Option<Duration>> {
    let started = Instant::now();
    let k = addresses.len();
    let ready =
        |sum: &Sum| sum.up >= total && alive.iter().all(|&node| sum.warm_per_node[node] >= total);
    while started.elapsed() < timeout {
        if ready(&workers.sum(k, slots)) {
            return Ok(Some(started.elapsed()));
        }
        for &node in alive {
            let message = format!("{}{node}@@", String::from_utf8_lossy(WARMUP_MARKER));
            publish_to_every_topic(addresses[node], admin, topics, &message)?;
        }
        wait_for(workers, k, slots, WARMUP_PAUSE, ready);
    }
    Ok(None)
}

/// One HTTP API publication of `message` to each of the `topics` scale topics through
/// the node at `address`.
fn publish_to_every_topic(
    address: SocketAddr,
    admin: &str,
    topics: usize,
    message: &str,
) -> anyhow::Result<()> {
    for topic in 0..topics {
        http_publish(
            address,
            APP_HS256,
            admin,
            &format!("scale-{topic}"),
            message,
        )?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn broadcast(
    workers: &mut Workers,
    addresses: &[SocketAddr],
    alive: &[usize],
    node: usize,
    slot: usize,
    after_kill: bool,
    admin: &str,
    topics: usize,
    k: usize,
    slots: usize,
    timeout: Duration,
) -> anyhow::Result<BroadcastResult> {
    let alive_mask: u64 = alive.iter().map(|&node| 1u64 << node).sum();
    workers.send(&format!("mark {slot} {alive_mask}"))?;
    if wait_for(workers, k, slots, timeout, |sum| sum.marked >= slot as i64).is_none() {
        bail!("the client processes did not mark broadcast {slot}");
    }
    let eligible = workers.sum(k, slots).eligible[slot];
    let published = crate::wire::monotonic_nanos();
    let message = format!("{}{slot}@@", String::from_utf8_lossy(BROADCAST_MARKER));
    publish_to_every_topic(addresses[node], admin, topics, &message)?;
    let complete = wait_for(workers, k, slots, timeout, |sum| {
        sum.received[slot] >= sum.eligible[slot]
    })
    .is_some();
    let sum = workers.sum(k, slots);
    let result = BroadcastResult {
        slot,
        through_node: node,
        after_kill,
        eligible,
        received: sum.received[slot],
        lost: eligible.saturating_sub(sum.received[slot]),
        duplicates: sum.duplicates[slot],
        completion_ms: (sum.last_arrival[slot] >= published && sum.received[slot] > 0)
            .then(|| (sum.last_arrival[slot] - published) as f64 / 1e6),
        complete,
    };
    println!(
        "scale: broadcast {slot} through node {node}{}: {}/{} connections, lost {}, duplicates {}, all in {}",
        if after_kill { " (after the kill)" } else { "" },
        result.received,
        result.eligible,
        result.lost,
        result.duplicates,
        result.completion_ms.map_or("—".into(), report::ms_label)
    );
    Ok(result)
}
