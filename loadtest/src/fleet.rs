//! Client processes: one run's connections spread over several copies of this harness, so
//! a test can hold more sockets than the open-files cap of one process allows.
//!
//! The harness re-executes itself as `ringcast-loadtest client-worker` (a hidden
//! subcommand), once per client process. The parent writes the worker's [`WorkerSpec`] as
//! one JSON line on its stdin; the worker opens its share of the connections (idle holders
//! or subscribers, with its own 127.0.0.x source addresses) and writes JSON lines to its
//! stdout: `hello` (its pid), `progress` (its counters, every [`PROGRESS_INTERVAL`]) and,
//! after the parent writes `stop`, `final` (counters plus its latency histogram in the HDR
//! V2 format, base64). A pump thread per worker folds the counter *growth* into the parent's
//! [`Stats`], so the scenario code reads one merged view; the histograms are added to the
//! parent's at the end. Publishers and the warm-up connection stay in the parent.
//!
//! Responsibility: start, feed, watch and stop the workers; merge their figures. Must not:
//! decide what a scenario measures.
//!
//! Invariants: a worker exits when its stdin closes (the parent ended), so none outlives a
//! run; every counter a worker reports is cumulative, so a lost `progress` line loses
//! nothing; the `final` line is the worker's last word and supersedes every progress line.

use crate::client::{self, ClientPool, Flavor, Target};
use crate::scenarios::{Scenario, ScenarioOptions};
use crate::stats::Stats;
use anyhow::{bail, Context};
use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The hidden subcommand a client process runs.
pub const WORKER_COMMAND: &str = "client-worker";
/// Sockets one client process holds at most when `--client-processes` is not given: the
/// open-files cap is 20,000 per process, the rest is headroom (runtime, pipes, stdio).
pub const CONNECTIONS_PER_PROCESS: usize = 18_000;
/// How often a worker reports its counters (the publishers' window reads them).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(25);
/// How long a stopped worker may take to send its final report before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// CPUs of `--client-cpus`, set once by `main`; worker k is pinned to entry k mod length.
static CLIENT_CPUS: OnceLock<Vec<usize>> = OnceLock::new();

/// Records the `--client-cpus` list for the client processes (after validating it).
pub fn set_client_cpus(list: &str) -> anyhow::Result<()> {
    CLIENT_CPUS.set(cpu_list(list)?).ok();
    Ok(())
}

/// The CPU client process `process` is pinned to (`--client-cpus`, round-robin), if any.
pub fn client_cpu(process: usize) -> Option<usize> {
    CLIENT_CPUS
        .get()
        .filter(|cpus| !cpus.is_empty())
        .map(|cpus| cpus[process % cpus.len()])
}

/// Expands a CPU list like `1`, `0-1` or `2-3,5` into CPU numbers.
pub fn cpu_list(list: &str) -> anyhow::Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.split(',') {
        let (first, last): (usize, usize) = match part.split_once('-') {
            Some((first, last)) => (first.trim().parse()?, last.trim().parse()?),
            None => (part.trim().parse()?, part.trim().parse()?),
        };
        if first > last {
            bail!("CPU range {part} runs backwards");
        }
        cpus.extend(first..=last);
    }
    Ok(cpus)
}

/// What one client process did (part of the merged report).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ClientProcess {
    /// The pid the worker reported itself.
    pub pid: u32,
    /// CPU it was pinned to (`--client-cpus`), if any.
    pub cpu: Option<usize>,
    /// Its source addresses (empty: the kernel chose).
    pub sources: Vec<IpAddr>,
    /// Connections it was given to open.
    pub assigned: u64,
    /// Completed handshakes.
    pub handshakes: u64,
    /// Connections still open when it was stopped.
    pub open_at_stop: u64,
    /// Measured deliveries its subscribers read.
    pub deliveries: u64,
    pub errors: BTreeMap<String, u64>,
    /// False when it ended without its final report (then its last progress counts).
    pub reported: bool,
}

/// The connections of one run that client processes hold.
pub enum Work<'a> {
    /// `--connections` idle holders (the idle scenario).
    Idle(usize),
    /// One subscriber per entry, subscribed to its topics.
    Subscribers(&'a [Vec<String>]),
}

impl Work<'_> {
    fn len(&self) -> usize {
        match self {
            Work::Idle(count) => *count,
            Work::Subscribers(subscriptions) => subscriptions.len(),
        }
    }
}

/// How many client processes a run uses: `--client-processes`, or enough that none holds
/// more than [`CONNECTIONS_PER_PROCESS`]; never more than there are connections.
pub fn process_count(explicit: Option<usize>, connections: usize) -> usize {
    explicit
        .unwrap_or_else(|| connections.div_ceil(CONNECTIONS_PER_PROCESS))
        .clamp(1, connections.max(1))
}

#[derive(Serialize, Deserialize)]
struct TargetSpec {
    address: SocketAddr,
    nats: bool,
    app_id: String,
    tokens: Vec<String>,
    admin_token: String,
    sources: Vec<IpAddr>,
    /// Cluster runs: the nodes subscribers are spread over (see `Target`).
    #[serde(default)]
    subscriber_addresses: Vec<SocketAddr>,
    #[serde(default)]
    subscriber_count: usize,
}

#[derive(Serialize, Deserialize)]
enum Role {
    /// Idle holders with these connection indices.
    Idle { first: usize, count: usize },
    /// Subscribers: (connection index, topics).
    Subscribers(Vec<(usize, Vec<String>)>),
}

/// Everything a worker needs, sent as the first line of its stdin.
#[derive(Serialize, Deserialize)]
struct WorkerSpec {
    target: TargetSpec,
    threads: usize,
    cpu: Option<usize>,
    role: Role,
}

/// Cumulative counters of one worker.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Counters {
    handshakes: u64,
    open: u64,
    ready: u64,
    delivered: u64,
    errors: BTreeMap<String, u64>,
}

impl Counters {
    fn of(stats: &Stats) -> Counters {
        Counters {
            handshakes: stats.handshakes.load(Ordering::Relaxed),
            open: stats.open_connections.load(Ordering::Relaxed),
            ready: stats.ready.load(Ordering::Relaxed),
            delivered: stats.delivered(),
            errors: stats.errors(),
        }
    }
}

/// One line of a worker's stdout.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum Report {
    Hello {
        pid: u32,
    },
    Progress(Counters),
    Final {
        pid: u32,
        counters: Counters,
        /// HDR histogram, V2 serialization, base64.
        latency: String,
    },
}

/// Started client processes; killed on drop unless [`Fleet::finish`] stopped them.
pub struct Fleet {
    workers: Vec<Worker>,
}

struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    pump: Option<std::thread::JoinHandle<Pumped>>,
    cpu: Option<usize>,
    sources: Vec<IpAddr>,
    assigned: u64,
}

/// What a pump thread saw of its worker.
#[derive(Default)]
struct Pumped {
    pid: u32,
    last: Counters,
    reported: bool,
}

impl Fleet {
    /// Starts the client processes for `work` when the run needs more than one; `None`
    /// means the caller opens the connections in this process as before.
    pub fn start(
        scenario: Scenario,
        options: &ScenarioOptions,
        target: &Target,
        stats: &Arc<Stats>,
        work: Work<'_>,
    ) -> anyhow::Result<Option<Fleet>> {
        let total = work.len();
        let processes = process_count(options.client_processes, total);
        if processes <= 1 {
            return Ok(None);
        }
        if scenario == Scenario::Connect {
            bail!("--client-processes > 1 is for idle and the publish/subscribe scenarios, not connect");
        }
        let per_address = usize::from(options.source_addresses.max(1));
        if processes * per_address > 254 {
            bail!(
                "{processes} client processes × {per_address} source addresses exceed 127.0.0.1-254"
            );
        }
        let program = std::env::current_exe().context("this harness's executable")?;
        let chunk = total.div_ceil(processes);
        let mut fleet = Fleet {
            workers: Vec::new(),
        };
        for process in 0..processes {
            let first = process * chunk;
            let count = chunk.min(total.saturating_sub(first));
            if count == 0 {
                break;
            }
            // Each process gets its own block of source addresses: 127.0.0.(kS+1 ..= kS+S).
            let sources: Vec<IpAddr> = (0..per_address)
                .map(|offset| {
                    IpAddr::V4(Ipv4Addr::new(
                        127,
                        0,
                        0,
                        (process * per_address + offset + 1) as u8,
                    ))
                })
                .collect();
            let cpu = client_cpu(process);
            let role = match &work {
                Work::Idle(_) => Role::Idle { first, count },
                Work::Subscribers(subscriptions) => Role::Subscribers(
                    (first..first + count)
                        .map(|index| (index, subscriptions[index].clone()))
                        .collect(),
                ),
            };
            let spec = WorkerSpec {
                target: TargetSpec {
                    address: target.address,
                    nats: target.flavor == Flavor::Nats,
                    app_id: target.app_id.clone(),
                    tokens: target.tokens.clone(),
                    admin_token: target.admin_token.clone(),
                    sources: sources.clone(),
                    subscriber_addresses: target.subscriber_addresses.clone(),
                    subscriber_count: target.subscriber_count,
                },
                threads: options.threads,
                cpu,
                role,
            };
            let mut child = Command::new(&program)
                .arg(WORKER_COMMAND)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .with_context(|| format!("start client process {process}"))?;
            let mut stdin = child.stdin.take().context("worker stdin")?;
            let stdout = child.stdout.take().context("worker stdout")?;
            let mut line = serde_json::to_vec(&spec)?;
            line.push(b'\n');
            let written = stdin.write_all(&line).and_then(|()| stdin.flush());
            let pump_stats = stats.clone();
            fleet.workers.push(Worker {
                child,
                stdin: Some(stdin),
                pump: Some(std::thread::spawn(move || pump(stdout, &pump_stats))),
                cpu,
                sources,
                assigned: count as u64,
            });
            written.with_context(|| format!("send the spec to client process {process}"))?;
        }
        Ok(Some(fleet))
    }

    /// The client processes' pids (for the client's own CPU figures).
    pub fn pids(&self) -> Vec<u32> {
        self.workers
            .iter()
            .map(|worker| worker.child.id())
            .collect()
    }

    /// Stops every worker, waits for its final report (merged into the parent's stats by
    /// the pumps) and returns what each did.
    pub fn finish(mut self) -> Vec<ClientProcess> {
        let mut workers = std::mem::take(&mut self.workers);
        for worker in &mut workers {
            if let Some(mut stdin) = worker.stdin.take() {
                // A worker that already exited has closed the pipe; its pump saw that.
                stdin.write_all(b"stop\n").and_then(|()| stdin.flush()).ok();
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut processes = Vec::new();
        for mut worker in workers {
            while Instant::now() < deadline && matches!(worker.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(worker.child.try_wait(), Ok(None)) {
                worker.child.kill().ok();
            }
            worker.child.wait().ok();
            let pumped = worker
                .pump
                .take()
                .and_then(|pump| pump.join().ok())
                .unwrap_or_default();
            processes.push(ClientProcess {
                pid: pumped.pid,
                cpu: worker.cpu,
                sources: worker.sources.clone(),
                assigned: worker.assigned,
                handshakes: pumped.last.handshakes,
                open_at_stop: pumped.last.open,
                deliveries: pumped.last.delivered,
                errors: pumped.last.errors.clone(),
                reported: pumped.reported,
            });
        }
        processes
    }
}

impl Drop for Fleet {
    /// Error paths: kill what was not stopped by [`Fleet::finish`].
    fn drop(&mut self) {
        for worker in &mut self.workers {
            worker.stdin.take();
            worker.child.kill().ok();
            worker.child.wait().ok();
        }
    }
}

/// Adds `now - before` to `counter` (counters may also shrink, like open connections).
fn add_growth(counter: &std::sync::atomic::AtomicU64, before: u64, now: u64) {
    counter.fetch_add(now.wrapping_sub(before), Ordering::Relaxed);
}

/// Folds one worker's reports into `stats` until its stdout closes.
fn pump(stdout: impl std::io::Read, stats: &Stats) -> Pumped {
    let mut pumped = Pumped::default();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let report: Report = match serde_json::from_str(&line) {
            Ok(report) => report,
            Err(_) => {
                stats.error("client_process_garbled_report");
                continue;
            }
        };
        let (counters, latency) = match report {
            Report::Hello { pid } => {
                pumped.pid = pid;
                continue;
            }
            Report::Progress(counters) => (counters, None),
            Report::Final {
                pid,
                counters,
                latency,
            } => {
                pumped.pid = pid;
                pumped.reported = true;
                (counters, Some(latency))
            }
        };
        let last = &pumped.last;
        add_growth(&stats.handshakes, last.handshakes, counters.handshakes);
        add_growth(&stats.open_connections, last.open, counters.open);
        add_growth(&stats.ready, last.ready, counters.ready);
        // Every remote delivery is folded into the first thread's counter (subscribers of a
        // multi-process run all live in the workers).
        add_growth(
            &stats.threads[0].delivered,
            last.delivered,
            counters.delivered,
        );
        for (kind, &count) in &counters.errors {
            let before = last.errors.get(kind).copied().unwrap_or(0);
            stats.add_errors(kind, count.saturating_sub(before));
        }
        pumped.last = counters;
        if let Some(latency) = latency {
            match decode_histogram(&latency) {
                Ok(histogram) => {
                    if let Ok(mut merged) = stats.threads[0].latency.lock() {
                        merged.add(&histogram).ok();
                    }
                }
                Err(_) => stats.error("client_process_garbled_histogram"),
            }
        }
    }
    if !pumped.reported {
        stats.error("client_process_exited");
        stats.client_process_lost.store(true, Ordering::Relaxed);
    }
    pumped
}

fn encode_histogram(histogram: &Histogram<u64>) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(histogram, &mut bytes)
        .map_err(|error| anyhow::anyhow!("serialize histogram: {error:?}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn decode_histogram(text: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text)?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|error| anyhow::anyhow!("deserialize histogram: {error:?}"))
}

/// Writes one JSON line to stdout (a client process's message to the parent).
pub(crate) fn emit<T: serde::Serialize>(message: &T) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(message)?;
    line.push(b'\n');
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&line)?;
    stdout.flush()?;
    Ok(())
}

/// `ringcast-loadtest client-worker`: reads its spec from stdin, opens its connections,
/// reports until `stop` (or stdin closes), sends its final report and exits.
pub fn worker_main() -> anyhow::Result<()> {
    let mut input = BufReader::new(std::io::stdin());
    let mut line = String::new();
    input.read_line(&mut line).context("read the worker spec")?;
    let spec: WorkerSpec = serde_json::from_str(&line).context("parse the worker spec")?;
    if let Some(cpu) = spec.cpu {
        crate::pin_process(&cpu.to_string())?;
    }
    let target = Arc::new(Target {
        address: spec.target.address,
        flavor: if spec.target.nats {
            Flavor::Nats
        } else {
            Flavor::Realtime
        },
        app_id: spec.target.app_id,
        tokens: spec.target.tokens,
        admin_token: spec.target.admin_token,
        sources: spec.target.sources,
        subscriber_addresses: spec.target.subscriber_addresses,
        subscriber_count: spec.target.subscriber_count,
    });
    let pool = ClientPool::new(spec.threads)?;
    let stats = Stats::new(pool.threads());
    let pid = std::process::id();
    emit(&Report::Hello { pid })?;
    match spec.role {
        Role::Idle { first, count } => {
            for index in first..first + count {
                pool.spawn(index, client::idle(target.clone(), index, stats.clone()));
            }
        }
        Role::Subscribers(subscribers) => {
            for (slot, (index, topics)) in subscribers.into_iter().enumerate() {
                let thread = stats.threads[slot % pool.threads()].clone();
                pool.spawn(
                    slot,
                    client::subscriber(target.clone(), index, topics, thread, stats.clone()),
                );
            }
        }
    }
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        for line in input.lines() {
            match line {
                Ok(line) if line.trim() == "stop" => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        // `stop`, or the parent closed the pipe (it ended): either way, finish.
        stop.send(()).ok();
    });
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
        stopped.recv_timeout(PROGRESS_INTERVAL)
    {
        emit(&Report::Progress(Counters::of(&stats)))?;
    }
    stats.stop.store(true, Ordering::Relaxed);
    emit(&Report::Final {
        pid,
        counters: Counters::of(&stats),
        latency: encode_histogram(&stats.latency())?,
    })?;
    // Exit without joining the client threads: the kernel closes every socket at once.
    std::process::exit(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_expand() {
        assert_eq!(cpu_list("1").unwrap(), vec![1]);
        assert_eq!(cpu_list("0-2,5").unwrap(), vec![0, 1, 2, 5]);
        assert!(cpu_list("3-1").is_err());
        assert!(cpu_list("x").is_err());
    }

    #[test]
    fn histogram_survives_the_pipe_format() {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for value in [1u64, 250, 250, 9_999, 1_000_000] {
            histogram.record(value).unwrap();
        }
        let decoded = decode_histogram(&encode_histogram(&histogram).unwrap()).unwrap();
        assert_eq!(decoded.len(), 5);
        assert_eq!(decoded.max(), histogram.max());
        assert_eq!(
            decoded.value_at_quantile(0.5),
            histogram.value_at_quantile(0.5)
        );
    }

    #[test]
    fn default_process_count_keeps_each_under_the_cap() {
        assert_eq!(process_count(None, 1_000), 1);
        assert_eq!(process_count(None, 18_000), 1);
        assert_eq!(process_count(None, 18_001), 2);
        assert_eq!(process_count(None, 40_000), 3);
        assert_eq!(process_count(Some(3), 200), 3);
        // Never more processes than connections, never fewer than one.
        assert_eq!(process_count(Some(8), 2), 2);
        assert_eq!(process_count(Some(0), 10), 1);
    }

    #[test]
    fn pump_merges_progress_growth_and_the_final_histogram() {
        let stats = Stats::new(1);
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        histogram.record(42).unwrap();
        histogram.record(4_200).unwrap();
        let lines = [
            serde_json::to_string(&Report::Hello { pid: 7 }).unwrap(),
            serde_json::to_string(&Report::Progress(Counters {
                handshakes: 3,
                open: 3,
                ready: 1,
                delivered: 10,
                errors: BTreeMap::from([("connect".to_string(), 1)]),
            }))
            .unwrap(),
            serde_json::to_string(&Report::Final {
                pid: 7,
                counters: Counters {
                    handshakes: 4,
                    open: 2,
                    ready: 4,
                    delivered: 12,
                    errors: BTreeMap::from([("connect".to_string(), 2)]),
                },
                latency: encode_histogram(&histogram).unwrap(),
            })
            .unwrap(),
        ];
        let pumped = pump(lines.join("\n").as_bytes(), &stats);
        assert_eq!(pumped.pid, 7);
        assert!(pumped.reported);
        assert_eq!(stats.handshakes.load(Ordering::Relaxed), 4);
        assert_eq!(stats.open_connections.load(Ordering::Relaxed), 2);
        assert_eq!(stats.ready.load(Ordering::Relaxed), 4);
        assert_eq!(stats.delivered(), 12);
        assert_eq!(stats.errors().get("connect"), Some(&2));
        assert_eq!(stats.latency().len(), 2);
        assert!(!stats.client_process_lost.load(Ordering::Relaxed));
    }
}
