//! Servers under test: generated credentials and configuration, starting and stopping
//! ringcast, the tokio baseline and nats-server, and provenance (versions, io driver, host).
//!
//! Responsibility: give a scenario a listening server (or an external one) and the facts a
//! result must carry. Must not: measure anything itself.
//!
//! Invariants: a started server is killed when its [`RunningServer`] drops; a server is
//! only handed out once its port accepts connections, nobody listened there before it
//! started, and every socket listening there now is its own ([`crate::ports`]); every
//! token is minted before the measured phase (signing is client CPU).

use crate::ports;
use anyhow::{bail, Context};
use ringcast::auth::{self, Algorithm};
use serde::Serialize;
use serde_json::json;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Application used by every throughput scenario (HS256 client and admin keys).
pub const APP_HS256: &str = "loadtest-hs256";
/// Application whose clients sign with ES256 (the `connect --alg ES256` scenario).
pub const APP_ES256: &str = "loadtest-es256";
/// How long a started server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The servers the harness can start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ServerKind {
    Ringcast,
    TokioBaseline,
    Nats,
}

impl ServerKind {
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Ringcast => "ringcast",
            ServerKind::TokioBaseline => "tokio-baseline",
            ServerKind::Nats => "nats-server",
        }
    }
}

/// Keys of the two generated apps, and tokens minted from them.
pub struct Credentials {
    pub hs_secret: String,
    pub admin_secret: String,
    es256_public_pem: String,
    es256_private_pem: String,
}

impl Credentials {
    pub fn generate() -> anyhow::Result<Credentials> {
        let es256 = auth::keygen::generate(Algorithm::ES256).context("ES256 key pair")?;
        Ok(Credentials {
            hs_secret: auth::random_hs_secret(),
            admin_secret: auth::random_hs_secret(),
            es256_public_pem: es256.config_key().to_string(),
            es256_private_pem: es256.signing_key().to_string(),
        })
    }

    /// `count` distinct client tokens for `app` (subjects `load-<i>`), valid for a day.
    pub fn client_tokens(&self, app: &str, count: usize) -> anyhow::Result<Vec<String>> {
        let (algorithm, key) = if app == APP_ES256 {
            (Algorithm::ES256, self.es256_private_pem.as_str())
        } else {
            (Algorithm::HS256, self.hs_secret.as_str())
        };
        (0..count.max(1))
            .map(|index| {
                let claims = json!({
                    "sub": format!("load-{index}"),
                    "exp": unix_seconds() + 86_400,
                    "permissions": ["realtime:publisher:write:topic:*", "realtime:subscriber:read:topic:*"],
                });
                auth::sign(algorithm, key, &claims).context("sign client token")
            })
            .collect()
    }

    /// The HTTP API token (adminKey of the HS256 app).
    pub fn admin_token(&self) -> anyhow::Result<String> {
        let claims = json!({
            "sub": "loadtest-admin",
            "exp": unix_seconds() + 86_400,
            "permissions": ["realtime:publisher:write:topic:*"],
        });
        auth::sign(Algorithm::HS256, &self.admin_secret, &claims).context("sign admin token")
    }

    /// The ringcast configuration file (the tokio baseline reads the same file).
    pub fn config(
        &self,
        listen: SocketAddr,
        workers: usize,
        pin_workers: bool,
        io_driver: Option<&str>,
    ) -> serde_json::Value {
        let mut server = json!({
            "listen": listen.to_string(),
            "workers": workers,
            "pinWorkers": pin_workers,
            "maxSubscriptionsPerConnection": 10_000,
        });
        if let Some(driver) = io_driver {
            server["ioDriver"] = json!(driver);
        }
        json!({
            "server": server,
            "apps": [
                {
                    "appId": APP_HS256,
                    "authKey": {"source": "raw", "key": self.hs_secret, "algorithms": ["HS256"]},
                    "adminKey": {"source": "raw", "key": self.admin_secret, "algorithms": ["HS256"]},
                },
                {
                    "appId": APP_ES256,
                    "authKey": {"source": "raw", "key": self.es256_public_pem, "algorithms": ["ES256"]},
                },
            ],
        })
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// How to start a server.
#[derive(Clone, Debug, Serialize)]
pub struct ServerOptions {
    pub kind: ServerKind,
    /// Port of the server's WebSocket/HTTP listener; 0 = a free port chosen at start.
    pub port: u16,
    /// Worker threads (ringcast workers, tokio worker threads, GOMAXPROCS for nats).
    pub workers: usize,
    /// `taskset -c` list for the server process, e.g. `0`.
    pub cpus: Option<String>,
    /// ringcast `ioDriver`: auto, uring, legacy.
    pub io_driver: Option<String>,
    /// Directory holding `ringcast` and `tokio-baseline` (default: next to this binary).
    pub bin_dir: PathBuf,
    /// nats-server executable.
    pub nats_bin: PathBuf,
    /// ringcast only: the `server.cluster` section (cluster runs).
    pub cluster: Option<serde_json::Value>,
    /// ringcast only: extra `server` settings (`--ringcast-setting KEY=JSON`).
    pub ringcast_settings: Vec<(String, serde_json::Value)>,
}

/// A server process this harness started; killed on drop.
pub struct RunningServer {
    child: Child,
    pub pid: u32,
    pub address: SocketAddr,
    pub name: String,
    pub version: String,
    pub io_driver: String,
    pub log: PathBuf,
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid; it has not been reaped yet.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Starts the server `options.kind` with a configuration generated from `credentials`.
pub fn start(
    options: &ServerOptions,
    credentials: &Credentials,
    work_dir: &Path,
) -> anyhow::Result<RunningServer> {
    std::fs::create_dir_all(work_dir)?;
    let name = options.kind.name();
    let address = SocketAddr::from(([127, 0, 0, 1], resolve_port(options.port)?));
    ports::ensure_free(address, name)?;
    let node = options
        .cluster
        .as_ref()
        .and_then(|cluster| cluster["name"].as_str())
        .map(|node| format!("-{node}"))
        .unwrap_or_default();
    let log = work_dir.join(format!("{name}{node}.log"));
    let (program, arguments): (PathBuf, Vec<String>) = match options.kind {
        ServerKind::Ringcast | ServerKind::TokioBaseline => {
            let config_path = work_dir.join(format!("{name}{node}.json"));
            let mut config = credentials.config(
                address,
                options.workers,
                options.cpus.is_none(),
                options.io_driver.as_deref(),
            );
            if let Some(cluster) = &options.cluster {
                config["server"]["cluster"] = cluster.clone();
            }
            if options.kind == ServerKind::Ringcast {
                for (key, value) in &options.ringcast_settings {
                    config["server"][key.as_str()] = value.clone();
                }
            }
            std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
            (
                options.bin_dir.join(name),
                vec!["--config".into(), config_path.display().to_string()],
            )
        }
        ServerKind::Nats => {
            let config_path = work_dir.join("nats.conf");
            // Its client (non-WebSocket) listener: the next port, or a free one.
            let client_port = if options.port == 0 {
                ports::free_port()?
            } else {
                options.port.wrapping_add(1)
            };
            ports::ensure_free(
                SocketAddr::from(([127, 0, 0, 1], client_port)),
                "nats-server client listener",
            )?;
            let config = format!(
                "listen: 127.0.0.1:{client_port}\nwebsocket {{\n  listen: \"{address}\"\n  no_tls: true\n}}\n"
            );
            std::fs::write(&config_path, config)?;
            (
                options.nats_bin.clone(),
                vec!["-c".into(), config_path.display().to_string()],
            )
        }
    };
    let version = version_of(&program, options.kind);
    let mut command = match &options.cpus {
        Some(cpus) => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpus).arg(&program);
            command
        }
        None => Command::new(&program),
    };
    command.args(&arguments).stdin(Stdio::null());
    if options.kind == ServerKind::Nats && options.workers > 0 {
        command.env("GOMAXPROCS", options.workers.to_string());
    }
    command.env("RUST_LOG", "warn,ringcast=info");
    let log_file = std::fs::File::create(&log)?;
    command.stdout(log_file.try_clone()?).stderr(log_file);
    let child = command
        .spawn()
        .with_context(|| format!("start {}", program.display()))?;
    let pid = child.id();
    let mut server = RunningServer {
        child,
        pid,
        address,
        name: name.to_string(),
        version,
        io_driver: String::new(),
        log,
    };
    server.wait_until_listening()?;
    if options.kind != ServerKind::Nats {
        // The started server speaks our HTTP too (ownership is already proven).
        let health = http_get(address, "/health").unwrap_or_default();
        if !health.starts_with("HTTP/1.1 200") {
            bail!(
                "{name} on {address} answers GET /health with {:?}, not 200; log: {}",
                health.lines().next().unwrap_or("nothing"),
                server.log.display()
            );
        }
    }
    server.io_driver = io_driver_of(options.kind, address);
    Ok(server)
}

/// `port`, or a free port for 0.
fn resolve_port(port: u16) -> anyhow::Result<u16> {
    if port == 0 {
        ports::free_port()
    } else {
        Ok(port)
    }
}

impl RunningServer {
    /// Waits until the server accepts connections, then checks that the listener is its
    /// own; fails at once when it exits, or when another process answers.
    fn wait_until_listening(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect_timeout(&self.address, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "{} exited at start ({status}); log {}:\n{}",
                    self.name,
                    self.log.display(),
                    log_tail(&self.log)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not listen on {} within {START_TIMEOUT:?}",
                    self.name,
                    self.address
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!(
                "{} exited at start ({status}) while something answers on {}; log {}:\n{}",
                self.name,
                self.address,
                self.log.display(),
                log_tail(&self.log)
            );
        }
        ports::verify_owner(self.pid, &self.name, self.address)
    }
}

/// Lines of a server log shown when it failed to start.
const LOG_TAIL_LINES: usize = 10;

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// A plain (no WebSocket) nats-server on `port` for a ringcast cluster run; killed on drop.
pub fn start_nats_bus(
    nats_bin: &Path,
    port: u16,
    work_dir: &Path,
) -> anyhow::Result<RunningServer> {
    std::fs::create_dir_all(work_dir)?;
    let address = SocketAddr::from(([127, 0, 0, 1], resolve_port(port)?));
    ports::ensure_free(address, "nats-server bus")?;
    let log = work_dir.join("nats-bus.log");
    let log_file = std::fs::File::create(&log)?;
    let child = Command::new(nats_bin)
        .args(["-a", "127.0.0.1", "-p", &address.port().to_string()])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("start {}", nats_bin.display()))?;
    let pid = child.id();
    let mut server = RunningServer {
        child,
        pid,
        address,
        name: "nats-bus".into(),
        version: version_of(nats_bin, ServerKind::Nats),
        io_driver: String::new(),
        log,
    };
    server.wait_until_listening()?;
    Ok(server)
}

fn version_of(program: &Path, kind: ServerKind) -> String {
    let flag = if kind == ServerKind::Nats {
        "-v"
    } else {
        "--version"
    };
    Command::new(program)
        .arg(flag)
        .output()
        .ok()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// The io driver a server actually runs: ringcast's `ringcast_io_driver{driver=…}` metric;
/// the others have one driver each.
pub fn io_driver_of(kind: ServerKind, address: SocketAddr) -> String {
    match kind {
        ServerKind::TokioBaseline => "epoll (tokio/mio)".to_string(),
        ServerKind::Nats => "epoll (Go netpoller)".to_string(),
        ServerKind::Ringcast => http_get(address, "/metrics")
            .ok()
            .and_then(|text| {
                let start = text.find("io_driver{driver=\"")? + "io_driver{driver=\"".len();
                let end = text[start..].find('"')?;
                Some(text[start..start + end].to_string())
            })
            .unwrap_or_else(|| "unknown".to_string()),
    }
}

/// A blocking `GET` (operational endpoints only); returns the whole response text.
pub fn http_get(address: SocketAddr, path: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok();
    Ok(text)
}

/// Where a result came from.
#[derive(Clone, Debug, Serialize)]
pub struct Provenance {
    pub git_commit: String,
    pub server: String,
    pub server_version: String,
    pub io_driver: String,
    pub host_cores: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub started_unix_seconds: u64,
    pub harness_version: &'static str,
}

impl Provenance {
    pub fn collect(server: &str, server_version: &str, io_driver: &str) -> Provenance {
        let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
        let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
            .is_some_and(|text| !text.is_empty());
        Provenance {
            git_commit: if dirty {
                format!("{commit}-dirty")
            } else {
                commit
            },
            server: server.to_string(),
            server_version: server_version.to_string(),
            io_driver: io_driver.to_string(),
            // Online CPUs of the host, not this process's affinity (it may be pinned).
            // SAFETY: sysconf has no memory-safety preconditions.
            host_cores: unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(0) as usize,
            cpu_model: std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|text| {
                    text.lines()
                        .find(|line| line.starts_with("model name"))
                        .and_then(|line| line.split(':').nth(1))
                        .map(|model| model.trim().to_string())
                })
                .unwrap_or_default(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|text| text.trim().to_string())
                .unwrap_or_default(),
            started_unix_seconds: unix_seconds(),
            harness_version: env!("CARGO_PKG_VERSION"),
        }
    }
}

fn git(arguments: &[&str]) -> Option<String> {
    let output = Command::new("git").args(arguments).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}
