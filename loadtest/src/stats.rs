//! Counters shared by the client threads, the latency histogram, and `/proc` readings of the
//! server process.
//!
//! Responsibility: count what was sent, expected and received without the counting itself
//! becoming the bottleneck (one cache-line-padded counter block per client thread, summed
//! on demand), and read server CPU time and resident memory from `/proc/<pid>`, and the
//! client's own CPU (every thread of the harness and its client processes).
//!
//! Invariants: a delivery is counted exactly once, by the thread whose task read it;
//! latency is recorded in microseconds from the payload's monotonic stamp.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Highest latency the histogram tracks: 60 s in microseconds (anything above is clamped).
const HISTOGRAM_MAX_MICROS: u64 = 60_000_000;

/// Per-client-thread counters, padded to their own cache lines.
#[repr(align(128))]
pub struct ThreadStats {
    /// Measured (timestamped) deliveries read by this thread's subscribers.
    pub delivered: AtomicU64,
    /// Latency of those deliveries, microseconds.
    pub latency: Mutex<Histogram<u64>>,
}

impl ThreadStats {
    pub fn new() -> ThreadStats {
        ThreadStats {
            delivered: AtomicU64::new(0),
            latency: Mutex::new(
                Histogram::new_with_bounds(1, HISTOGRAM_MAX_MICROS, 3).expect("valid bounds"),
            ),
        }
    }

    /// Counts one delivery stamped at `sent_nanos`.
    pub fn record_delivery(&self, sent_nanos: u64, now_nanos: u64) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let micros = now_nanos.saturating_sub(sent_nanos) / 1_000;
        if let Ok(mut histogram) = self.latency.lock() {
            histogram.saturating_record(micros.clamp(1, HISTOGRAM_MAX_MICROS));
        }
    }
}

/// Everything the scenario's tasks report into.
pub struct Stats {
    pub threads: Vec<Arc<ThreadStats>>,
    /// Measured publications sent (WebSocket frames written or HTTP 200s).
    pub published: AtomicU64,
    /// Deliveries those publications should cause (sum of their topics' subscriber counts).
    pub expected: AtomicU64,
    pub acks: AtomicU64,
    /// Subscribers that have seen a warm-up message (so their subscription is live).
    pub ready: AtomicU64,
    /// Completed handshakes (upgrade + welcome).
    pub handshakes: AtomicU64,
    /// Connections currently open.
    pub open_connections: AtomicU64,
    /// Set when the publishers must stop.
    pub stop: AtomicBool,
    /// Set when a client process ended without its final report (the run cannot complete).
    pub client_process_lost: AtomicBool,
    /// Open loop (`--rate`): how late each publication left against its schedule,
    /// microseconds (publishers only, so the lock is not contended by subscribers).
    schedule_lag: Mutex<Histogram<u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    pub fn new(threads: usize) -> Arc<Stats> {
        Arc::new(Stats {
            threads: (0..threads).map(|_| Arc::new(ThreadStats::new())).collect(),
            published: AtomicU64::new(0),
            expected: AtomicU64::new(0),
            acks: AtomicU64::new(0),
            ready: AtomicU64::new(0),
            handshakes: AtomicU64::new(0),
            open_connections: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            client_process_lost: AtomicBool::new(false),
            schedule_lag: Mutex::new(
                Histogram::new_with_bounds(1, HISTOGRAM_MAX_MICROS, 3).expect("valid bounds"),
            ),
            errors: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn delivered(&self) -> u64 {
        self.threads
            .iter()
            .map(|thread| thread.delivered.load(Ordering::Relaxed))
            .sum()
    }

    /// Counts an error under its kind (the first word of its message: `connect`,
    /// `http_401`, `closed`, …).
    pub fn error(&self, kind: &str) {
        let kind = kind.split([':', ' ']).next().unwrap_or(kind).to_string();
        if let Ok(mut errors) = self.errors.lock() {
            *errors.entry(kind).or_insert(0) += 1;
        }
    }

    /// Adds `count` errors of an already-classified `kind` (a client process's tally).
    pub fn add_errors(&self, kind: &str, count: u64) {
        if count == 0 {
            return;
        }
        if let Ok(mut errors) = self.errors.lock() {
            *errors.entry(kind.to_string()).or_insert(0) += count;
        }
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors
            .lock()
            .map(|errors| errors.clone())
            .unwrap_or_default()
    }

    pub fn error_total(&self) -> u64 {
        self.errors().values().sum()
    }

    /// All threads' latency histograms merged.
    pub fn latency(&self) -> Histogram<u64> {
        let mut merged =
            Histogram::new_with_bounds(1, HISTOGRAM_MAX_MICROS, 3).expect("valid bounds");
        for thread in &self.threads {
            if let Ok(histogram) = thread.latency.lock() {
                merged.add(&*histogram).ok();
            }
        }
        merged
    }

    /// Clears the histograms (after warm-up, before the measured phase).
    pub fn reset_latency(&self) {
        for thread in &self.threads {
            if let Ok(mut histogram) = thread.latency.lock() {
                histogram.reset();
            }
        }
        if let Ok(mut histogram) = self.schedule_lag.lock() {
            histogram.reset();
        }
    }

    /// Records that a paced publication finished leaving `lag` after its scheduled time
    /// (timer slack, or the server's backpressure holding the publisher back).
    pub fn record_schedule_lag(&self, lag: Duration) {
        let micros = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
        if let Ok(mut histogram) = self.schedule_lag.lock() {
            histogram.saturating_record(micros.clamp(1, HISTOGRAM_MAX_MICROS));
        }
    }

    /// The schedule lag of the paced publications (empty without `--rate`).
    pub fn schedule_lag(&self) -> Histogram<u64> {
        self.schedule_lag
            .lock()
            .map(|histogram| histogram.clone())
            .unwrap_or_else(|_| {
                Histogram::new_with_bounds(1, HISTOGRAM_MAX_MICROS, 3).expect("valid bounds")
            })
    }
}

/// CPU seconds (user + system, all threads) the process has used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    stat_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// User + system CPU seconds of a `/proc/<pid>/stat` or `/proc/<pid>/task/<tid>/stat` line.
fn stat_cpu_seconds(text: &str) -> Option<f64> {
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here (0-based 11, 12).
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((user + system) / ticks)
}

/// CPU seconds of each thread of `pid` so far, by thread id.
fn thread_cpu_seconds(pid: u32) -> BTreeMap<u32, f64> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return BTreeMap::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let tid: u32 = task.file_name().to_str()?.parse().ok()?;
            let text = std::fs::read_to_string(task.path().join("stat")).ok()?;
            Some((tid, stat_cpu_seconds(&text)?))
        })
        .collect()
}

/// CPUs process `pid` may run on (its affinity mask; 0 = this process).
pub fn affinity_cores(pid: u32) -> Option<usize> {
    // SAFETY: an all-zero cpu_set_t is the empty set, which sched_getaffinity overwrites.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
    let status = unsafe {
        libc::sched_getaffinity(
            pid as libc::pid_t,
            std::mem::size_of::<libc::cpu_set_t>(),
            &mut set,
        )
    };
    // SAFETY: `set` was filled in by the successful call above.
    (status == 0).then(|| unsafe { libc::CPU_COUNT(&set) } as usize)
}

/// The client's own CPU over a measured phase: this harness process and its client
/// processes, every thread of them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClientCpu {
    pub cpu_seconds: f64,
    /// CPU seconds per wall second (1.0 = one core busy), all client processes together.
    pub cores_busy: f64,
    /// CPUs the harness may run on (its affinity mask: `--client-cpus`, else all).
    pub cores_available: usize,
    /// The busiest client thread's CPU seconds per wall second: a client runtime thread
    /// near 1.0 is the limit even when other cores are free.
    pub busiest_thread_cores: f64,
}

/// Per-thread CPU readings of the client processes at the start of a measured phase.
pub struct ClientCpuMeter {
    pids: Vec<u32>,
    before: BTreeMap<(u32, u32), f64>,
}

impl ClientCpuMeter {
    /// Starts measuring this process and `client_processes` (pids of client workers).
    pub fn start(client_processes: &[u32]) -> ClientCpuMeter {
        let mut pids = vec![std::process::id()];
        pids.extend_from_slice(client_processes);
        let before = Self::read(&pids);
        ClientCpuMeter { pids, before }
    }

    fn read(pids: &[u32]) -> BTreeMap<(u32, u32), f64> {
        pids.iter()
            .flat_map(|&pid| {
                thread_cpu_seconds(pid)
                    .into_iter()
                    .map(move |(tid, seconds)| ((pid, tid), seconds))
            })
            .collect()
    }

    /// The figures over the `seconds` since [`ClientCpuMeter::start`]. A thread that ended
    /// in between is not counted (its CPU is gone from `/proc`); one that started counts
    /// from zero.
    pub fn finish(self, seconds: f64) -> ClientCpu {
        let after = Self::read(&self.pids);
        let deltas: Vec<f64> = after
            .iter()
            .map(|(key, &now)| (now - self.before.get(key).copied().unwrap_or(0.0)).max(0.0))
            .collect();
        let seconds = seconds.max(f64::MIN_POSITIVE);
        let cpu_seconds: f64 = deltas.iter().sum();
        ClientCpu {
            cpu_seconds,
            cores_busy: cpu_seconds / seconds,
            cores_available: affinity_cores(0).unwrap_or(1),
            busiest_thread_cores: deltas.iter().copied().fold(0.0, f64::max) / seconds,
        }
    }
}

/// A `kB` field (`VmRSS`, `VmHWM`) of `/proc/<pid>/status`, in bytes.
pub fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|line| line.starts_with(field))?;
    let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes * 1024)
}

/// Kernel memory of all TCP sockets (`/proc/net/sockstat` `TCP: … mem N`, in pages), bytes.
pub fn tcp_socket_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = text.lines().find(|line| line.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    while let Some(word) = words.next() {
        if word == "mem" {
            let pages: u64 = words.next()?.parse().ok()?;
            // SAFETY: sysconf has no memory-safety preconditions.
            let page_bytes = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
            return Some(pages * page_bytes);
        }
    }
    None
}

/// Kernel slab memory (`/proc/meminfo` `Slab:`), bytes: where socket structures live.
pub fn kernel_slab_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|line| line.starts_with("Slab:"))?;
    let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes * 1024)
}

/// Samples a process's RSS every 100 ms on its own thread and keeps the peak.
pub struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = status_bytes(pid, "VmRSS:") {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        RssSampler {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling; returns the peak RSS seen, bytes.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().ok();
        }
        self.peak.load(Ordering::Relaxed)
    }
}
