//! `ringcast-loadtest`: drives ringcast, the tokio baseline or nats-server with one scenario
//! and reports throughput, loss, latency, server CPU and memory, with provenance.
//!
//! # Layout
//! ```text
//! main.rs       CLI, client pinning, one run, a --compare series or a sweep, writing results
//! scenarios     what each scenario opens, publishes and measures
//! sweep         open-loop offered rates per server, capacity at a latency objective
//! client        client tasks (subscriber, publishers, idle, handshake storm) + thread pool
//! fleet         client processes (`client-worker`): connections spread over processes
//! scale         K cluster nodes, N connections, broadcasts, RSS per connection, a node killed
//! scale_report  the `scale` record (JSON), summary and chart
//! scale_worker  a `scale` client process (`scale-worker`): per-connection receipts, reconnects
//! wire          minimal WebSocket client codec, payload stamps, source-address binding
//! server        credentials, configs, starting servers, provenance
//! ports         free ports; nobody else holds or answers on a started server's port
//! stats         shared counters, HDR latency histogram, /proc readings (server and client)
//! report        JSON record, summaries, comparison ratios, SVG chart
//! ```
//! The tokio baseline server is `src/bin/tokio-baseline.rs`.

mod client;
mod fleet;
mod ports;
mod report;
mod scale;
mod scale_report;
mod scale_worker;
mod scenarios;
mod server;
mod stats;
mod sweep;
mod wire;

use anyhow::{bail, Context};
use clap::Parser;
use client::{Flavor, Target};
use report::RunRecord;
use scenarios::{Scenario, ScenarioOptions};
use serde_json::json;
use server::{Credentials, Provenance, ServerKind, ServerOptions, APP_ES256, APP_HS256};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

/// What the harness runs: one scenario, or a sweep of one over offered rates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Command {
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
    /// K cluster nodes (--nodes) and one nats-server, --connections spread over client
    /// processes and nodes, --broadcasts through the nodes in turn, then a node killed:
    /// completion time and loss per broadcast, RSS per connection per node, reconnect time.
    Scale,
    /// --scenario fanout|topics at each of --rates (open loop), every server of --compare
    /// in turn at each rate; capacity at --slo-ms per server, table, JSON and chart.
    Sweep,
}

/// Load-test a Realtime Pub/Sub server (or nats-server over WebSocket).
#[derive(Parser, Debug, Clone)]
#[command(name = "ringcast-loadtest", version)]
struct Cli {
    /// The scenario to run, or `sweep`.
    #[arg(value_enum)]
    command: Command,
    /// Server to start (ignored with --url or --compare).
    #[arg(long, value_enum, default_value = "ringcast")]
    server: ServerKind,
    /// Start each of these servers in turn, A B A B … for --rounds, and print ratios.
    #[arg(long, value_enum, value_delimiter = ',')]
    compare: Vec<ServerKind>,
    /// Rounds of a --compare series (default 2), or of each sweep rate (default 1).
    #[arg(long)]
    rounds: Option<usize>,
    /// Use a running server at IP:PORT instead of starting one (127.0.0.0/8 only).
    #[arg(long)]
    url: Option<SocketAddr>,
    /// With --url: the server's pid, for CPU and RSS figures.
    #[arg(long)]
    pid: Option<u32>,
    /// With --url: wire protocol of the server.
    #[arg(long, default_value = "realtime")]
    flavor: String,
    /// With --url: app id, and the HS256 secrets of its authKey and adminKey.
    #[arg(long, default_value = APP_HS256)]
    app: String,
    #[arg(long)]
    secret: Option<String>,
    #[arg(long)]
    admin_secret: Option<String>,
    /// Port of a started server; 0 = a free port for each start. A port another process
    /// already listens on is refused before the server starts.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Server workers (ringcast `server.workers`, tokio worker threads, GOMAXPROCS).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// CPU list for the server (`taskset -c`), e.g. `0`.
    #[arg(long)]
    server_cpus: Option<String>,
    /// CPU list this harness pins itself to, e.g. `1`.
    #[arg(long)]
    client_cpus: Option<String>,
    /// ringcast io driver: auto, uring, legacy.
    #[arg(long)]
    io_driver: Option<String>,
    /// Directory of the `ringcast` and `tokio-baseline` binaries (default: next to this one).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// ringcast only: `KEY=JSON` set in the started server's `server` section, e.g.
    /// `flushIntervalMicros=0` (repeatable; recorded in the result's config).
    #[arg(long = "ringcast-setting", value_parser = parse_setting)]
    ringcast_settings: Vec<(String, serde_json::Value)>,
    /// nats-server executable (default: .build/nats-venv/bin/nats-server, .build/nats/bin/nats-server
    /// (scripts/install-nats.sh), then PATH).
    #[arg(long)]
    nats_bin: Option<PathBuf>,
    /// JSON result file (default: loadtest/results/<scenario>-<unix time>.json).
    #[arg(long)]
    output: Option<PathBuf>,
    /// SVG chart of a --compare series; of a sweep (default: the JSON path with `.svg`).
    #[arg(long)]
    chart: Option<PathBuf>,
    #[command(flatten)]
    sweep: sweep::SweepArgs,
    #[command(flatten)]
    scale: scale::ScaleArgs,
    #[command(flatten)]
    options: ScenarioOptions,
}

impl Cli {
    /// The scenario each run executes (a sweep's `--scenario`; fanout until validated).
    fn scenario(&self) -> Scenario {
        match self.command {
            Command::Fanout => Scenario::Fanout,
            Command::Topics => Scenario::Topics,
            Command::Fanin => Scenario::Fanin,
            Command::Connect => Scenario::Connect,
            Command::Idle => Scenario::Idle,
            Command::Http => Scenario::Http,
            // `scale` is its own run (see `run_scale`); it never reaches the scenarios.
            Command::Scale => Scenario::Idle,
            Command::Sweep => self.sweep.scenario.unwrap_or(Scenario::Fanout),
        }
    }
}

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some(fleet::WORKER_COMMAND) {
        return fleet::worker_main();
    }
    if std::env::args().nth(1).as_deref() == Some(scale_worker::SCALE_WORKER_COMMAND) {
        return scale_worker::worker_main();
    }
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let mut cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches)?;
    if cli.command == Command::Scale
        && matches.value_source("topics") == Some(clap::parser::ValueSource::DefaultValue)
    {
        // One topic for every connection unless --topics says otherwise.
        cli.options.topics = 1;
    }
    if let Some(cpus) = &cli.client_cpus {
        pin_process(cpus)?;
        fleet::set_client_cpus(cpus)?;
    }
    let credentials = Credentials::generate()?;
    let work_dir = std::env::temp_dir().join(format!("ringcast-loadtest-{}", std::process::id()));
    let servers: Vec<ServerKind> = if !cli.compare.is_empty() {
        cli.compare.clone()
    } else {
        vec![cli.server]
    };
    if cli.command == Command::Scale {
        let result = run_scale(&cli, &credentials, &work_dir);
        std::fs::remove_dir_all(&work_dir).ok();
        return result;
    }
    if cli.command == Command::Sweep {
        let result = run_sweep(&cli, &servers, &credentials, &work_dir);
        std::fs::remove_dir_all(&work_dir).ok();
        return result;
    }
    if cli.sweep.any() {
        bail!("--scenario, --rates and --slo-ms are sweep options (ringcast-loadtest sweep …)");
    }
    let mut records = Vec::new();
    let rounds = if cli.compare.is_empty() {
        1
    } else {
        cli.rounds.unwrap_or(2).max(1)
    };
    if let Some(address) = cli.url {
        if !matches!(address.ip(), IpAddr::V4(ip) if ip.octets()[0] == 127) {
            bail!("--url must be a 127.0.0.0/8 address: load targets are local only");
        }
        records.push(run_external(&cli, address)?);
        println!("{}", report::summary(&records[0]));
    } else {
        if cli.options.cluster
            && (cli.scenario() != Scenario::Fanout || servers != [ServerKind::Ringcast])
        {
            bail!("--cluster is a fanout option for a started ringcast");
        }
        for round in 1..=rounds {
            for &kind in &servers {
                let record = run_started(&cli, kind, round, &credentials, &work_dir)?;
                println!("{}", report::summary(&record));
                records.push(record);
                if cli.options.cluster {
                    let record = run_cluster(&cli, round, &credentials, &work_dir)?;
                    println!("{}", report::summary(&record));
                    records.push(record);
                }
            }
        }
    }
    let names: Vec<String> = records
        .iter()
        .map(|record| record.provenance.server.clone())
        .fold(Vec::new(), |mut names, name| {
            if !names.contains(&name) {
                names.push(name);
            }
            names
        });
    if cli.options.cluster {
        let median = |server: &str| {
            let mut values: Vec<f64> = records
                .iter()
                .filter(|record| record.provenance.server == server)
                .map(|record| record.measurement.deliveries_per_second)
                .collect();
            values.sort_by(f64::total_cmp);
            match values.len() {
                0 => 0.0,
                n if n % 2 == 0 => (values[n / 2 - 1] + values[n / 2]) / 2.0,
                n => values[n / 2],
            }
        };
        let (single, cluster) = (median("ringcast"), median(&names[names.len() - 1]));
        println!(
            "deliveries/s, medians of the rounds: 1 node {single:.0}, {CLUSTER_NODES} nodes {cluster:.0} ({:.2}x of 1 node; half the subscribers behind the bus)",
            cluster / single.max(f64::MIN_POSITIVE)
        );
    } else if names.len() > 1 {
        print!("{}", report::comparison(&records, &names));
    }
    let output = cli.output.clone().unwrap_or_else(|| {
        PathBuf::from("loadtest/results").join(
            format!(
                "{:?}-{}.json",
                cli.scenario(),
                records[0].provenance.started_unix_seconds
            )
            .to_lowercase(),
        )
    });
    if let Some(parent) = output.parent() {
        std::fs::create_dir_all(parent).ok();
    }
    std::fs::write(&output, serde_json::to_vec_pretty(&records)?)
        .with_context(|| format!("write {}", output.display()))?;
    println!("result: {}", output.display());
    if let Some(chart) = &cli.chart {
        report::chart(&records, &names, chart)?;
        println!("chart: {}", chart.display());
    }
    std::fs::remove_dir_all(&work_dir).ok();
    Ok(())
}

/// `sweep`: every server at every rate (open loop), then the table, JSON and chart.
fn run_sweep(
    cli: &Cli,
    servers: &[ServerKind],
    credentials: &Credentials,
    work_dir: &std::path::Path,
) -> anyhow::Result<()> {
    let plan = cli.sweep.validate()?;
    if cli.url.is_some() || cli.options.cluster {
        bail!("sweep starts its servers: --url and --cluster do not apply");
    }
    if cli.options.rate.is_some() {
        bail!("sweep sets the rate of each point from --rates; drop --rate");
    }
    let mean_audience = scenarios::mean_audience(plan.scenario, &cli.options);
    let result = sweep::run(
        &plan,
        servers,
        cli.rounds.unwrap_or(1).max(1),
        mean_audience,
        |rate, kind, round| {
            let mut point = cli.clone();
            point.options.rate = Some(rate);
            run_started(&point, kind, round, credentials, work_dir)
        },
    )?;
    print!("{}", sweep::table(&result));
    let output = cli.output.clone().unwrap_or_else(|| {
        PathBuf::from("loadtest/results").join(format!(
            "sweep-{}-{}.json",
            format!("{:?}", plan.scenario).to_lowercase(),
            result.provenance.started_unix_seconds
        ))
    });
    write_result_and_chart(&output, cli.chart.clone(), &result, sweep::chart)?;
    Ok(())
}

/// `scale`: the cluster run, its summary, JSON and chart.
fn run_scale(
    cli: &Cli,
    credentials: &Credentials,
    work_dir: &std::path::Path,
) -> anyhow::Result<()> {
    if cli.url.is_some() || !cli.compare.is_empty() || cli.server != ServerKind::Ringcast {
        bail!("scale starts its own ringcast nodes: --url, --compare and --server do not apply");
    }
    if cli.options.cluster || cli.sweep.any() {
        bail!("scale is a cluster run of its own: drop --cluster and the sweep options");
    }
    let options = server_options(cli, ServerKind::Ringcast)?;
    let settings = json!({
        "connections": cli.options.connections,
        "topics": cli.options.topics,
        "workers_per_node": cli.workers,
        "source_addresses": cli.options.source_addresses,
        "client_processes": cli.options.client_processes,
        "threads": cli.options.threads,
        "client_cpus": cli.client_cpus,
        "server_cpus": cli.server_cpus,
        "io_driver": cli.io_driver,
        "ringcast_settings": cli.ringcast_settings.iter().map(|(key, value)| json!({key.as_str(): value})).collect::<Vec<_>>(),
        "scale": serde_json::to_value(&cli.scale)?,
    });
    let record = scale::run(
        &cli.scale,
        settings,
        cli.options.connections,
        cli.options.topics,
        cli.options.source_addresses,
        cli.options.client_processes,
        cli.options.threads,
        &options,
        credentials,
        work_dir,
    )?;
    print!("{}", scale_report::summary(&record));
    let output = cli.output.clone().unwrap_or_else(|| {
        PathBuf::from("loadtest/results").join(format!(
            "scale-{}.json",
            record.provenance.started_unix_seconds
        ))
    });
    write_result_and_chart(&output, cli.chart.clone(), &record, scale_report::chart)?;
    Ok(())
}

fn sources(count: u8) -> Vec<IpAddr> {
    if count <= 1 {
        return Vec::new();
    }
    (1..=count)
        .map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .collect()
}

/// Tokens are distinct per connection up to this many (more would only cost signing time).
const DISTINCT_TOKENS: usize = 1000;

fn server_options(cli: &Cli, kind: ServerKind) -> anyhow::Result<ServerOptions> {
    let bin_dir = match &cli.bin_dir {
        Some(directory) => directory.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("binary directory")?
            .to_path_buf(),
    };
    let nats_bin = cli.nats_bin.clone().unwrap_or_else(|| {
        [
            ".build/nats-venv/bin/nats-server",
            ".build/nats/bin/nats-server",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|local| local.exists())
        .unwrap_or_else(|| PathBuf::from("nats-server"))
    });
    Ok(ServerOptions {
        kind,
        port: cli.port,
        workers: cli.workers,
        cpus: cli.server_cpus.clone(),
        io_driver: cli.io_driver.clone(),
        bin_dir,
        nats_bin,
        cluster: None,
        ringcast_settings: cli.ringcast_settings.clone(),
    })
}

/// `KEY=JSON` (a bare word that is not JSON is taken as a string).
fn parse_setting(text: &str) -> Result<(String, serde_json::Value), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected KEY=VALUE"))?;
    if key.is_empty() {
        return Err(format!("`{text}`: empty key"));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| serde_json::json!(value));
    Ok((key.to_string(), value))
}

/// Nodes of a `--cluster` run.
const CLUSTER_NODES: u16 = 2;

/// One fanout run on a 2-node ringcast cluster joined by a nats-server: subscribers
/// alternate between the nodes, the publishers connect to the first, so half the
/// deliveries cross the bus. CPU figures are left out (two server processes).
fn run_cluster(
    cli: &Cli,
    round: usize,
    credentials: &Credentials,
    work_dir: &std::path::Path,
) -> anyhow::Result<RunRecord> {
    let options = server_options(cli, ServerKind::Ringcast)?;
    // With --port 0 every listener gets a free port of its own.
    let offset = |by: u16| {
        if cli.port == 0 {
            0
        } else {
            cli.port.wrapping_add(by)
        }
    };
    let nats = server::start_nats_bus(&options.nats_bin, offset(100), work_dir)?;
    let bus_port = nats.address.port();
    let mut nodes = Vec::new();
    for node in 0..CLUSTER_NODES {
        let mut node_options = options.clone();
        node_options.port = offset(node * 3);
        node_options.cluster = Some(json!({
            "nats": [format!("nats://127.0.0.1:{bus_port}")],
            "name": format!("node-{node}"),
            "nodeNumber": node,
            "subjectPrefix": "loadtest",
        }));
        nodes.push(server::start(&node_options, credentials, work_dir)?);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for node in &nodes {
        // Connected to NATS; each node's subscriptions take effect as its clients
        // subscribe (NATS propagates them before the measured phase starts).
        let expected = "ringcast_bus_connected 1";
        while !server::http_get(node.address, "/metrics")
            .map(|body| body.contains(expected))
            .unwrap_or(false)
        {
            if std::time::Instant::now() > deadline {
                bail!("the cluster nodes did not connect to NATS");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    let target = Arc::new(Target {
        address: nodes[0].address,
        flavor: Flavor::Realtime,
        app_id: APP_HS256.to_string(),
        tokens: credentials.client_tokens(APP_HS256, DISTINCT_TOKENS)?,
        admin_token: credentials.admin_token()?,
        sources: sources(cli.options.source_addresses),
        subscriber_addresses: nodes.iter().map(|node| node.address).collect(),
        subscriber_count: cli.options.subscribers,
    });
    let measurement =
        scenarios::run(Scenario::Fanout, &cli.options, target, None).map(|mut measurement| {
            measurement.client_bound_warning =
                report::client_bound_warning(&measurement.client_cpu, None, None);
            measurement
        });
    let name = format!("ringcast-cluster-{CLUSTER_NODES}");
    let provenance = Provenance::collect(&name, &nodes[0].version, &nodes[0].io_driver);
    let bus = server::http_get(nodes[0].address, "/metrics").unwrap_or_default();
    drop(nodes);
    drop(nats);
    let bus_lines: Vec<&str> = bus
        .lines()
        .filter(|line| line.starts_with("ringcast_bus_publications"))
        .collect();
    Ok(RunRecord {
        scenario: cli.scenario(),
        round,
        provenance,
        options: cli.options.clone(),
        server_settings: json!({ "nodes": CLUSTER_NODES, "node": serde_json::to_value(&options)?, "first_node_bus_metrics": bus_lines }),
        client_cpus: cli.client_cpus.clone(),
        measurement: measurement?,
    })
}

fn run_started(
    cli: &Cli,
    kind: ServerKind,
    round: usize,
    credentials: &Credentials,
    work_dir: &std::path::Path,
) -> anyhow::Result<RunRecord> {
    let mut options = server_options(cli, kind)?;
    let server = server::start(&options, credentials, work_dir)?;
    options.port = server.address.port();
    // The cores the server can use: its workers, within its CPU affinity.
    let server_core_limit = stats::affinity_cores(server.pid).map(|cores| {
        if options.workers == 0 {
            cores
        } else {
            cores.min(options.workers)
        }
    });
    let app =
        if cli.scenario() == Scenario::Connect && cli.options.alg.eq_ignore_ascii_case("ES256") {
            APP_ES256
        } else {
            APP_HS256
        };
    let target = Arc::new(Target {
        address: server.address,
        flavor: if kind == ServerKind::Nats {
            Flavor::Nats
        } else {
            Flavor::Realtime
        },
        app_id: app.to_string(),
        tokens: credentials.client_tokens(app, DISTINCT_TOKENS)?,
        admin_token: credentials.admin_token()?,
        sources: sources(cli.options.source_addresses),
        subscriber_addresses: Vec::new(),
        subscriber_count: 0,
    });
    let mut measurement = scenarios::run(cli.scenario(), &cli.options, target, Some(server.pid))?;
    measurement.client_bound_warning = report::client_bound_warning(
        &measurement.client_cpu,
        measurement.server_cores_busy,
        server_core_limit.map(|cores| cores as f64),
    );
    let provenance = Provenance::collect(&server.name, &server.version, &server.io_driver);
    drop(server);
    Ok(RunRecord {
        scenario: cli.scenario(),
        round,
        provenance,
        options: cli.options.clone(),
        server_settings: serde_json::to_value(&options)?,
        client_cpus: cli.client_cpus.clone(),
        measurement,
    })
}

fn run_external(cli: &Cli, address: SocketAddr) -> anyhow::Result<RunRecord> {
    let flavor = if cli.flavor == "nats" {
        Flavor::Nats
    } else {
        Flavor::Realtime
    };
    let sign = |secret: &Option<String>, admin: bool| -> anyhow::Result<String> {
        let Some(secret) = secret else {
            return Ok(String::new());
        };
        let claims = json!({
            "sub": if admin { "loadtest-admin" } else { "load" },
            "exp": 4_000_000_000u64,
            "permissions": ["realtime:publisher:write:topic:*", "realtime:subscriber:read:topic:*"],
        });
        Ok(ringcast::auth::sign(
            ringcast::auth::Algorithm::HS256,
            secret,
            &claims,
        )?)
    };
    let target = Arc::new(Target {
        address,
        flavor,
        app_id: cli.app.clone(),
        tokens: vec![sign(&cli.secret, false)?],
        admin_token: sign(&cli.admin_secret, true)?,
        sources: sources(cli.options.source_addresses),
        subscriber_addresses: Vec::new(),
        subscriber_count: 0,
    });
    let mut measurement = scenarios::run(cli.scenario(), &cli.options, target, cli.pid)?;
    measurement.client_bound_warning = report::client_bound_warning(
        &measurement.client_cpu,
        measurement.server_cores_busy,
        cli.pid
            .and_then(stats::affinity_cores)
            .map(|cores| cores as f64),
    );
    let name = if flavor == Flavor::Nats {
        "nats (external)"
    } else {
        "external"
    };
    let driver = if flavor == Flavor::Realtime {
        server::io_driver_of(ServerKind::Ringcast, address)
    } else {
        "unknown".into()
    };
    Ok(RunRecord {
        scenario: cli.scenario(),
        round: 1,
        provenance: Provenance::collect(name, "unknown", &driver),
        options: cli.options.clone(),
        server_settings: json!({ "url": address.to_string(), "pid": cli.pid }),
        client_cpus: cli.client_cpus.clone(),
        measurement,
    })
}

/// Pins this process (and the client threads it will start) to a CPU list like `1` or `2-3,5`.
fn pin_process(list: &str) -> anyhow::Result<()> {
    // SAFETY: an all-zero cpu_set_t is the empty set; CPU_SET writes inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for part in list.split(',') {
        let (first, last) = match part.split_once('-') {
            Some((first, last)) => (
                first.trim().parse::<usize>()?,
                last.trim().parse::<usize>()?,
            ),
            None => (part.trim().parse()?, part.trim().parse()?),
        };
        for cpu in first..=last {
            // SAFETY: `set` is a valid cpu_set_t; CPU_SET bounds-checks against its size.
            unsafe { libc::CPU_SET(cpu, &mut set) };
        }
    }
    // SAFETY: pid 0 = this thread (threads started later inherit it); `set` is initialised.
    let status =
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if status != 0 {
        bail!(
            "sched_setaffinity({list}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Writes `record` as JSON to `output` and its chart to `chart` (default: `output` with
/// `.svg`), printing both paths.
fn write_result_and_chart<T: serde::Serialize>(
    output: &std::path::Path,
    chart: Option<PathBuf>,
    record: &T,
    draw: impl FnOnce(&T, &std::path::Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if let Some(parent) = output.parent() {
        std::fs::create_dir_all(parent).ok();
    }
    std::fs::write(output, serde_json::to_vec_pretty(record)?)
        .with_context(|| format!("write {}", output.display()))?;
    println!("result: {}", output.display());
    let chart = chart.unwrap_or_else(|| output.with_extension("svg"));
    draw(record, &chart).with_context(|| format!("draw {}", chart.display()))?;
    println!("chart: {}", chart.display());
    Ok(())
}
