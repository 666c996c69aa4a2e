//! The scenarios: how many connections of which kind, subscribed to what, publishing how
//! fast, for how long; and the measured figures of one run.
//!
//! Responsibility: lay out one run over the client pool, time it, read the server's `/proc`
//! entries around the measured phase, and return a [`Measurement`]. Must not: start
//! servers or format reports.
//!
//! Invariants: the measured phase starts only after every subscriber has received a
//! warm-up message (so no delivery is "lost" to a subscription still in flight); server
//! CPU is read over exactly the measured phase (publishing plus drain).

use crate::client::{self, ClientPool, Pace, PublishPlan, Target};
use crate::fleet::{ClientProcess, Fleet, Work};
use crate::stats::{self, ClientCpu, ClientCpuMeter, RssSampler, Stats};
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest wait for deliveries after the publishers stop, when deliveries still progress.
const DRAIN_LIMIT: Duration = Duration::from_secs(15);
/// The drain ends early when no delivery arrived for this long.
const DRAIN_STALL: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// P publishers → 1 topic → N subscribers.
    Fanout,
    /// Many topics, few subscribers each (topic choice Zipf-skewed).
    Topics,
    /// N publishers → 1 topic → 1 subscriber.
    Fanin,
    /// Handshake storm: connect + auth + welcome, then close, repeatedly.
    Connect,
    /// Hold N idle connections; server RSS and CPU per connection.
    Idle,
    /// Publish over the HTTP API to WebSocket subscribers.
    Http,
}

/// Everything that shapes a run (recorded in the result as its configuration).
#[derive(Clone, Debug, Serialize, clap::Args)]
pub struct ScenarioOptions {
    /// Subscriber connections (fanout, topics, http); idle/connect use --connections.
    #[arg(long, default_value_t = 2000)]
    pub subscribers: usize,
    /// Publisher connections (fanin: the N publishers).
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Topics (topics scenario).
    #[arg(long, default_value_t = 1000)]
    pub topics: usize,
    /// Topics each subscriber subscribes to (topics scenario).
    #[arg(long, default_value_t = 1)]
    pub subscriptions_per_connection: usize,
    /// Zipf exponent of topic popularity (topics scenario; 0 = uniform).
    #[arg(long, default_value_t = 1.0)]
    pub zipf_exponent: f64,
    /// Bytes of each published payload (the JSON string, quotes included).
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    /// Total publications per second over all publishers; absent = as fast as the window allows.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Without --rate: publications in flight end to end (sent, not yet delivered to every
    /// subscriber), over all publishers.
    #[arg(long, default_value_t = 64)]
    pub window: u64,
    /// Seconds of the measured phase.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Connections for idle, concurrent connectors for connect.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Token algorithm for connect: HS256 or ES256.
    #[arg(long, default_value = "HS256")]
    pub alg: String,
    /// Client threads (each a single-threaded tokio runtime).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Source addresses 127.0.0.1..=127.0.0.N used round-robin (beats the per-address
    /// ephemeral port limit).
    #[arg(long, default_value_t = 1)]
    pub source_addresses: u8,
    /// fanout, started ringcast only: run each round twice, on one node and on a 2-node
    /// cluster joined by a nats-server (subscribers split evenly over the nodes, the
    /// publisher on the first), and report the deliveries/s of both.
    #[arg(long)]
    pub cluster: bool,
    /// Client processes holding the connections (idle: the holders; publish/subscribe
    /// scenarios: the subscribers), each with its own --source-addresses block; default:
    /// enough that none holds more than 18,000 sockets.
    #[arg(long)]
    pub client_processes: Option<usize>,
}

/// The figures of one run (before provenance is attached).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Measurement {
    pub connections: u64,
    pub measured_seconds: f64,
    pub publishes: u64,
    pub publishes_per_second: f64,
    pub expected_deliveries: u64,
    pub deliveries: u64,
    pub lost: i64,
    pub deliveries_per_second: f64,
    pub acks: u64,
    /// Delivery latency (connect: handshake latency), microseconds.
    pub latency_micros: Latency,
    pub handshakes: u64,
    pub handshakes_per_second: f64,
    pub errors: BTreeMap<String, u64>,
    pub server_cpu_seconds: Option<f64>,
    /// Server CPU seconds per wall second (1.0 = one core busy).
    pub server_cores_busy: Option<f64>,
    pub server_peak_rss_bytes: Option<u64>,
    pub deliveries_per_server_cpu_second: Option<f64>,
    pub handshakes_per_server_cpu_second: Option<f64>,
    /// The harness's own CPU over the measured phase (with its client processes).
    pub client_cpu: ClientCpu,
    /// Set when the client, not the server, was the limit of this run (see
    /// `report::client_bound_warning`); its figures then measure the client.
    pub client_bound_warning: Option<String>,
    /// Open loop (`--rate`): how late publications left against their schedule,
    /// microseconds; a p99 here near the delivery p99 means the publishers, held back by
    /// the server, did not offer the rate asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_lag_micros: Option<Latency>,
    pub idle: Option<IdleFigures>,
    /// Per client process, when the connections were spread over several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub client_processes: Vec<ClientProcess>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    /// The percentiles of a histogram of microseconds.
    pub fn of(histogram: &hdrhistogram::Histogram<u64>) -> Latency {
        Latency {
            count: histogram.len(),
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct IdleFigures {
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    pub rss_per_connection_bytes: f64,
    /// Growth of TCP socket buffer memory (`/proc/net/sockstat` `mem`), both ends of each
    /// loopback connection; near 0 for idle sockets with empty queues.
    pub kernel_tcp_memory_per_connection_bytes: f64,
    /// Growth of kernel slab memory (socket, inode, file, epoll/io_uring structures) per
    /// connection, both ends (client and server) together, machine-wide.
    pub kernel_slab_per_connection_bytes: f64,
    /// Server CPU while holding the connections, per connection per hour (seconds).
    pub cpu_seconds_per_connection_hour: f64,
}

/// Runs `scenario` against `target`; `server_pid` enables the `/proc` figures.
pub fn run(
    scenario: Scenario,
    options: &ScenarioOptions,
    target: Arc<Target>,
    server_pid: Option<u32>,
) -> anyhow::Result<Measurement> {
    let pool = ClientPool::new(options.threads)?;
    let stats = Stats::new(pool.threads());
    match scenario {
        Scenario::Fanout | Scenario::Topics | Scenario::Fanin | Scenario::Http => {
            run_pubsub(scenario, options, &pool, &target, &stats, server_pid)
        }
        Scenario::Idle => run_idle(options, &pool, &target, &stats, server_pid),
        Scenario::Connect => run_connect(options, &pool, &target, &stats, server_pid),
    }
}

/// Deliveries one publication causes on average: the publishers take the topics that
/// have subscribers in turn, so this is subscriptions / topics with a subscriber.
pub fn mean_audience(scenario: Scenario, options: &ScenarioOptions) -> f64 {
    let (_, plan) = layout(scenario, options);
    let subscriptions: u64 = plan.iter().map(|(_, count)| count).sum();
    subscriptions as f64 / plan.len().max(1) as f64
}

/// Topic of each subscriber, and each topic's subscriber count.
fn layout(scenario: Scenario, options: &ScenarioOptions) -> (Vec<Vec<String>>, Vec<(String, u64)>) {
    match scenario {
        Scenario::Topics => {
            let topics = options.topics.max(1);
            let weights: Vec<f64> = (1..=topics)
                .map(|rank| 1.0 / (rank as f64).powf(options.zipf_exponent))
                .collect();
            let total: f64 = weights.iter().sum();
            let mut cumulative = 0.0;
            let cdf: Vec<f64> = weights
                .iter()
                .map(|weight| {
                    cumulative += weight / total;
                    cumulative
                })
                .collect();
            let mut random = rand::rngs::StdRng::seed_from_u64(42);
            let mut counts = vec![0u64; topics];
            let per_connection = options.subscriptions_per_connection.clamp(1, topics);
            let subscriptions = (0..options.subscribers)
                .map(|_| {
                    let mut chosen: Vec<usize> = Vec::with_capacity(per_connection);
                    while chosen.len() < per_connection {
                        let draw: f64 = random.gen();
                        let topic = cdf.partition_point(|&edge| edge < draw).min(topics - 1);
                        if !chosen.contains(&topic) {
                            chosen.push(topic);
                        }
                    }
                    chosen
                        .iter()
                        .map(|&topic| {
                            counts[topic] += 1;
                            format!("topic-{topic}")
                        })
                        .collect()
                })
                .collect();
            let plan = counts
                .iter()
                .enumerate()
                .filter(|(_, &count)| count > 0)
                .map(|(topic, &count)| (format!("topic-{topic}"), count))
                .collect();
            (subscriptions, plan)
        }
        Scenario::Fanin => (
            vec![vec!["load".to_string()]],
            vec![("load".to_string(), 1)],
        ),
        _ => (
            vec![vec!["load".to_string()]; options.subscribers],
            vec![("load".to_string(), options.subscribers as u64)],
        ),
    }
}

fn progress(length: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(length);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:12} [{bar:30}] {pos}/{len} {per_sec} {elapsed}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(message.to_string());
    bar
}

/// Waits until `count()` reaches `target` or errors make it impossible.
fn wait_for(
    what: &str,
    target: u64,
    timeout: Duration,
    stats: &Stats,
    count: impl Fn() -> u64,
) -> anyhow::Result<f64> {
    let bar = progress(target, what);
    let started = Instant::now();
    loop {
        let reached = count();
        bar.set_position(reached);
        if reached >= target {
            bar.finish_and_clear();
            return Ok(started.elapsed().as_secs_f64());
        }
        if stats.client_process_lost.load(Ordering::Relaxed) {
            bar.finish_and_clear();
            bail!(
                "{what}: a client process ended early; errors {:?}",
                stats.errors()
            );
        }
        if started.elapsed() > timeout {
            bar.finish_and_clear();
            bail!(
                "{what}: {reached} of {target} after {timeout:?}; errors {:?}",
                stats.errors()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_pubsub(
    scenario: Scenario,
    options: &ScenarioOptions,
    pool: &ClientPool,
    target: &Arc<Target>,
    stats: &Arc<Stats>,
    server_pid: Option<u32>,
) -> anyhow::Result<Measurement> {
    let (subscriptions, plan_topics) = layout(scenario, options);
    let subscribers = subscriptions.len() as u64;
    let fleet = Fleet::start(
        scenario,
        options,
        target,
        stats,
        Work::Subscribers(&subscriptions),
    )?;
    for (index, topics) in subscriptions.into_iter().enumerate() {
        if fleet.is_some() {
            break;
        }
        let thread = stats.threads[index % pool.threads()].clone();
        pool.spawn(
            index,
            client::subscriber(target.clone(), index, topics, thread, stats.clone()),
        );
    }
    let connect_timeout = Duration::from_secs(60 + subscribers / 200);
    let connect_seconds = wait_for("subscribers", subscribers, connect_timeout, stats, || {
        stats.handshakes.load(Ordering::Relaxed)
    })?;
    let (done, outcome) = std::sync::mpsc::channel();
    let warm_topics: Vec<String> = plan_topics.iter().map(|(topic, _)| topic.clone()).collect();
    let (warm_target, warm_stats) = (target.clone(), stats.clone());
    pool.spawn(0, async move {
        let result = client::warm_up(
            warm_target,
            warm_topics,
            subscribers,
            warm_stats,
            Duration::from_secs(60),
        )
        .await;
        done.send(result).ok();
    });
    outcome.recv().context("warm-up task ended")??;
    stats.reset_latency();

    let publishers = options.publishers.max(1);
    let pace = match options.rate {
        Some(rate) => Pace::Rate(rate / publishers as f64),
        None => Pace::Window(
            options.window
                * plan_topics
                    .iter()
                    .map(|(_, count)| *count)
                    .max()
                    .unwrap_or(1),
        ),
    };
    let plan = Arc::new(PublishPlan {
        topics: plan_topics,
        payload_bytes: options.payload_bytes,
        pace,
    });
    let cpu_before = server_pid.and_then(stats::cpu_seconds);
    let client_cpu = ClientCpuMeter::start(&fleet.as_ref().map(Fleet::pids).unwrap_or_default());
    let sampler = server_pid.map(RssSampler::start);
    let started = Instant::now();
    for index in 0..publishers {
        let publisher_index = subscribers as usize + index;
        if scenario == Scenario::Http {
            pool.spawn(
                publisher_index,
                client::http_publisher(
                    target.clone(),
                    publisher_index,
                    plan.clone(),
                    stats.clone(),
                ),
            );
        } else {
            pool.spawn(
                publisher_index,
                client::publisher(target.clone(), publisher_index, plan.clone(), stats.clone()),
            );
        }
    }
    let bar = ProgressBar::new_spinner();
    let mut last = (Instant::now(), 0u64);
    while started.elapsed().as_secs_f64() < options.duration {
        std::thread::sleep(Duration::from_millis(500));
        let delivered = stats.delivered();
        let rate = (delivered - last.1) as f64 / last.0.elapsed().as_secs_f64();
        last = (Instant::now(), delivered);
        bar.set_message(format!(
            "{rate:>12.0} deliveries/s  {} published  errors {}",
            stats.published.load(Ordering::Relaxed),
            stats.error_total()
        ));
        bar.tick();
    }
    stats.stop.store(true, Ordering::Relaxed);
    let publishing_seconds = started.elapsed().as_secs_f64();
    let mut last_progress = (Instant::now(), stats.delivered());
    while stats.delivered() < stats.expected.load(Ordering::Relaxed)
        && started.elapsed().as_secs_f64() < publishing_seconds + DRAIN_LIMIT.as_secs_f64()
    {
        std::thread::sleep(Duration::from_millis(20));
        let delivered = stats.delivered();
        if delivered != last_progress.1 {
            last_progress = (Instant::now(), delivered);
        } else if last_progress.0.elapsed() > DRAIN_STALL {
            break;
        }
    }
    bar.finish_and_clear();
    let measured_seconds = started.elapsed().as_secs_f64();
    let cpu_after = server_pid.and_then(stats::cpu_seconds);
    let client_cpu = client_cpu.finish(measured_seconds);
    let client_processes = fleet.map(Fleet::finish).unwrap_or_default();
    let mut measurement = figures(stats, measured_seconds, cpu_before, cpu_after, sampler);
    measurement.client_cpu = client_cpu;
    if options.rate.is_some() {
        measurement.schedule_lag_micros = Some(Latency::of(&stats.schedule_lag()));
    }
    measurement.client_processes = client_processes;
    measurement.connections = subscribers + publishers as u64;
    measurement.publishes_per_second = measurement.publishes as f64 / publishing_seconds;
    measurement.handshakes_per_second = subscribers as f64 / connect_seconds.max(1e-9);
    Ok(measurement)
}

/// The figures every scenario shares, from the counters and the `/proc` readings.
fn figures(
    stats: &Stats,
    measured_seconds: f64,
    cpu_before: Option<f64>,
    cpu_after: Option<f64>,
    sampler: Option<RssSampler>,
) -> Measurement {
    let latency = stats.latency();
    let deliveries = stats.delivered();
    let expected = stats.expected.load(Ordering::Relaxed);
    let cpu = cpu_before
        .zip(cpu_after)
        .map(|(before, after)| after - before);
    let handshakes = stats.handshakes.load(Ordering::Relaxed);
    Measurement {
        measured_seconds,
        publishes: stats.published.load(Ordering::Relaxed),
        expected_deliveries: expected,
        deliveries,
        lost: expected as i64 - deliveries as i64,
        deliveries_per_second: deliveries as f64 / measured_seconds,
        acks: stats.acks.load(Ordering::Relaxed),
        latency_micros: Latency::of(&latency),
        handshakes,
        errors: stats.errors(),
        server_cpu_seconds: cpu,
        server_cores_busy: cpu.map(|cpu| cpu / measured_seconds),
        server_peak_rss_bytes: sampler.map(RssSampler::finish),
        deliveries_per_server_cpu_second: cpu
            .filter(|&cpu| cpu > 0.0)
            .map(|cpu| deliveries as f64 / cpu),
        ..Measurement::default()
    }
}

fn run_idle(
    options: &ScenarioOptions,
    pool: &ClientPool,
    target: &Arc<Target>,
    stats: &Arc<Stats>,
    server_pid: Option<u32>,
) -> anyhow::Result<Measurement> {
    let rss = |field: &str| {
        server_pid
            .and_then(|pid| stats::status_bytes(pid, field))
            .unwrap_or(0)
    };
    let rss_before = rss("VmRSS:");
    let kernel_before = stats::tcp_socket_memory_bytes().unwrap_or(0);
    let slab_before = stats::kernel_slab_bytes().unwrap_or(0);
    let count = options.connections as u64;
    let fleet = Fleet::start(
        Scenario::Idle,
        options,
        target,
        stats,
        Work::Idle(options.connections),
    )?;
    for index in 0..options.connections {
        if fleet.is_some() {
            break;
        }
        pool.spawn(index, client::idle(target.clone(), index, stats.clone()));
    }
    let connect_seconds = wait_for(
        "connections",
        count,
        Duration::from_secs(120 + count / 100),
        stats,
        || stats.open_connections.load(Ordering::Relaxed),
    )?;
    std::thread::sleep(Duration::from_secs(2));
    let rss_after = rss("VmRSS:");
    let kernel_after = stats::tcp_socket_memory_bytes().unwrap_or(0);
    let slab_after = stats::kernel_slab_bytes().unwrap_or(0);
    let cpu_before = server_pid.and_then(stats::cpu_seconds);
    let client_cpu = ClientCpuMeter::start(&fleet.as_ref().map(Fleet::pids).unwrap_or_default());
    let sampler = server_pid.map(RssSampler::start);
    let started = Instant::now();
    let bar = ProgressBar::new_spinner();
    while started.elapsed().as_secs_f64() < options.duration {
        std::thread::sleep(Duration::from_millis(500));
        bar.set_message(format!(
            "holding {} connections",
            stats.open_connections.load(Ordering::Relaxed)
        ));
        bar.tick();
    }
    bar.finish_and_clear();
    let measured_seconds = started.elapsed().as_secs_f64();
    let cpu_after = server_pid.and_then(stats::cpu_seconds);
    let client_cpu = client_cpu.finish(measured_seconds);
    stats.stop.store(true, Ordering::Relaxed);
    let client_processes = fleet.map(Fleet::finish).unwrap_or_default();
    let still_open = stats.open_connections.load(Ordering::Relaxed);
    let mut measurement = figures(stats, measured_seconds, cpu_before, cpu_after, sampler);
    measurement.client_cpu = client_cpu;
    measurement.client_processes = client_processes;
    measurement.connections = still_open;
    measurement.handshakes_per_second = count as f64 / connect_seconds.max(1e-9);
    let cpu = measurement.server_cpu_seconds.unwrap_or(0.0);
    measurement.idle = Some(IdleFigures {
        rss_before_bytes: rss_before,
        rss_after_bytes: rss_after,
        rss_per_connection_bytes: rss_after.saturating_sub(rss_before) as f64 / count as f64,
        kernel_tcp_memory_per_connection_bytes: kernel_after.saturating_sub(kernel_before) as f64
            / count as f64,
        kernel_slab_per_connection_bytes: slab_after.saturating_sub(slab_before) as f64
            / count as f64,
        cpu_seconds_per_connection_hour: cpu / measured_seconds * 3600.0 / count as f64,
    });
    Ok(measurement)
}

fn run_connect(
    options: &ScenarioOptions,
    pool: &ClientPool,
    target: &Arc<Target>,
    stats: &Arc<Stats>,
    server_pid: Option<u32>,
) -> anyhow::Result<Measurement> {
    let cpu_before = server_pid.and_then(stats::cpu_seconds);
    let client_cpu = ClientCpuMeter::start(&[]);
    let sampler = server_pid.map(RssSampler::start);
    let started = Instant::now();
    let concurrency = options.connections.max(1);
    for index in 0..concurrency {
        let thread = stats.threads[index % pool.threads()].clone();
        pool.spawn(
            index,
            client::handshake_storm(target.clone(), index, concurrency, thread, stats.clone()),
        );
    }
    let bar = ProgressBar::new_spinner();
    let mut last = (Instant::now(), 0u64);
    while started.elapsed().as_secs_f64() < options.duration {
        std::thread::sleep(Duration::from_millis(500));
        let handshakes = stats.handshakes.load(Ordering::Relaxed);
        let rate = (handshakes - last.1) as f64 / last.0.elapsed().as_secs_f64();
        last = (Instant::now(), handshakes);
        bar.set_message(format!(
            "{rate:>10.0} handshakes/s  errors {}",
            stats.error_total()
        ));
        bar.tick();
    }
    let measured_seconds = started.elapsed().as_secs_f64();
    let cpu_after = server_pid.and_then(stats::cpu_seconds);
    let client_cpu = client_cpu.finish(measured_seconds);
    stats.stop.store(true, Ordering::Relaxed);
    bar.finish_and_clear();
    let mut measurement = figures(stats, measured_seconds, cpu_before, cpu_after, sampler);
    measurement.client_cpu = client_cpu;
    measurement.connections = concurrency as u64;
    measurement.deliveries = 0;
    measurement.expected_deliveries = 0;
    measurement.lost = 0;
    measurement.deliveries_per_second = 0.0;
    measurement.deliveries_per_server_cpu_second = None;
    measurement.handshakes_per_second = measurement.handshakes as f64 / measured_seconds;
    measurement.handshakes_per_server_cpu_second = measurement
        .server_cpu_seconds
        .filter(|&cpu| cpu > 0.0)
        .map(|cpu| measurement.handshakes as f64 / cpu);
    Ok(measurement)
}
