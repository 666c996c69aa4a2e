//! A ringcast cluster on NATS for black-box tests: nats-server processes (one, or a NATS
//! cluster of two) and ringcast nodes as child processes, so either can be killed.
//!
//! nats-server comes from `RINGCAST_NATS_SERVER` (set by `scripts/test.sh` through
//! `scripts/install-nats.sh`), else `.build/nats/bin/nats-server`. Without one the tests
//! fail under CI (`CI=true`); otherwise each one reports itself skipped (`skip`: a
//! `SKIPPED` line on stderr and in `RINGCAST_SKIP_LOG`, which `scripts/test.sh`
//! summarises) and returns.

use super::process::{Running, ANY_PORT, BIN};
use super::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The nats-server to run; `None` (after reporting the running test skipped) when there is
/// none.
pub fn nats_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("RINGCAST_NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".build/nats/bin/nats-server");
    if local.exists() {
        return Some(local);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("RINGCAST_NATS_SERVER is not set and no .build/nats: run scripts/install-nats.sh (scripts/test.sh does)");
    }
    skip(
        &format!("{}::{}", test_binary(), current_test()),
        "no nats-server (run scripts/install-nats.sh, or set RINGCAST_NATS_SERVER)",
    );
    None
}

/// The running test binary's name (`cluster`, `bus_security`, …) for skip notices.
fn test_binary() -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    let stem = exe.file_stem().unwrap_or_default().to_string_lossy();
    // Cargo names test binaries `<name>-<hash>`.
    match stem.rsplit_once('-') {
        Some((name, _)) => name.to_string(),
        None => stem.to_string(),
    }
}

pub struct Nats {
    pub binary: PathBuf,
    /// The port nats-server picked at its first start (0 before); restarts reuse it, since
    /// the nodes reconnect to the URL they were given.
    pub port: u16,
    /// Extra arguments (a NATS cluster's `--cluster`/`--routes`).
    pub args: Vec<String>,
    /// The route port when started as a member of a NATS cluster.
    pub route_port: Option<u16>,
    /// The HTTP monitoring port when started with it ([`Nats::start_monitored`]).
    pub monitor_port: Option<u16>,
    pub process: Option<Running>,
}

impl Nats {
    pub fn start(binary: PathBuf) -> Nats {
        Nats::start_with_args(binary, Vec::new())
    }

    /// A nats-server with its HTTP monitoring on a port of its choosing, for
    /// [`Nats::messages_to`].
    pub fn start_monitored(binary: PathBuf) -> Nats {
        Nats::start_with_args(binary, vec!["-m".into(), "-1".into()])
    }

    /// Messages nats-server has delivered to the client named `name` (its `/connz`
    /// `out_msgs`): everything a node received from NATS, whatever the subject.
    pub fn messages_to(&self, name: &str) -> u64 {
        let monitor = TestServer {
            handle: None,
            address: SocketAddr::from(([127, 0, 0, 1], self.monitor_port.expect("monitored"))),
        };
        let (status, body) = http(&monitor, "GET", "/connz", None, "");
        assert_eq!(status, 200, "{body}");
        let connz: Value = serde_json::from_str(&body).unwrap();
        let connections = connz["connections"].as_array().cloned().unwrap_or_default();
        let client = connections
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no NATS client {name}: {body}"));
        client["out_msgs"].as_u64().unwrap()
    }

    fn start_with_args(binary: PathBuf, args: Vec<String>) -> Nats {
        let mut nats = Nats {
            binary,
            port: 0,
            args,
            route_port: None,
            monitor_port: None,
            process: None,
        };
        nats.restart();
        nats
    }

    /// A NATS cluster of two servers routed to each other (each with its own client port);
    /// returns once the second server reports its route to the first.
    pub fn start_pair(binary: PathBuf) -> (Nats, Nats) {
        let cluster = |routes: Option<u16>| {
            let mut args: Vec<String> = [
                "--cluster_name",
                "ringcast-test",
                "--cluster",
                "nats://127.0.0.1:-1",
            ]
            .map(String::from)
            .to_vec();
            if let Some(port) = routes {
                args.extend(["--routes".to_string(), format!("nats://127.0.0.1:{port}")]);
            }
            args
        };
        let first = Nats::start_with_args(binary.clone(), cluster(None));
        let second = Nats::start_with_args(binary, cluster(first.route_port));
        second
            .process
            .as_ref()
            .unwrap()
            .stderr_until(|line| line.contains("Route connection created").then_some(()));
        (first, second)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts nats-server (again) and waits until it listens. The first start asks for a
    /// random port (`-p -1`: bound by nats-server itself, no pick-then-release race) and
    /// reads it from the `Listening for client connections on IP:PORT` line. A restart
    /// asks for the same port, and tries again when the start fails (`[FTL]`, e.g. the
    /// port not yet released after the kill).
    pub fn restart(&mut self) {
        let port = if self.port == 0 {
            "-1".to_string()
        } else {
            self.port.to_string()
        };
        let monitor = std::cell::Cell::new(None);
        let (process, bound) = wait_for("nats-server listens", PATIENCE, || {
            let mut command = Command::new(&self.binary);
            command
                .args(["-a", "127.0.0.1", "-p", &port])
                .args(&self.args)
                .stdin(Stdio::null());
            let process = Running::spawn(command);
            let bound = process.stderr_until(|line| {
                // (Logged before the client listener.)
                if let Some((_, address)) = line.split_once("Starting http monitor on ") {
                    monitor.set(address.trim().parse::<SocketAddr>().ok().map(|a| a.port()));
                    None
                } else if let Some((_, address)) =
                    line.split_once("Listening for client connections on ")
                {
                    Some(address.trim().parse::<SocketAddr>().ok().map(|a| a.port()))
                } else {
                    line.contains("[FTL]").then_some(None)
                }
            });
            bound.map(|bound| (process, bound))
        });
        self.monitor_port = monitor.get();
        if self.args.iter().any(|arg| arg == "--cluster") {
            self.route_port = Some(process.stderr_until(|line| {
                line.split_once("Listening for route connections on ")
                    .and_then(|(_, address)| address.trim().parse::<SocketAddr>().ok())
                    .map(|address| address.port())
            }));
        }
        self.port = bound;
        self.process = Some(process);
    }

    pub fn kill(&mut self) {
        self.process = None;
    }
}

pub struct Node {
    pub server: TestServer,
    pub process: Option<Running>,
    /// The node's configuration file, rewritten by reloads.
    pub config_path: PathBuf,
}

impl Node {
    pub fn start(name: &str, nats: &Nats) -> Node {
        let node = Node::start_with(name, nats, base_config());
        let _ = std::fs::remove_file(node.config_path());
        node
    }

    /// The `nodeNumber` the tests give a node of this name: `node-a` 1, `node-b` 2, …
    pub fn number_of(name: &str) -> u16 {
        match name.strip_prefix("node-").map(str::as_bytes) {
            Some([letter]) if letter.is_ascii_lowercase() => u16::from(letter - b'a') + 1,
            _ => 100,
        }
    }

    /// Starts a node from `config` (listen and cluster filled in); the file stays at
    /// [`Node::config_path`] for reloads. The node binds port 0 and its address is read
    /// from its start-up line.
    pub fn start_with(name: &str, nats: &Nats, config: Value) -> Node {
        Node::start_numbered(name, Node::number_of(name), &nats.url(), config)
    }

    /// [`Node::start_with`] with an explicit node number and NATS URL.
    pub fn start_numbered(name: &str, number: u16, nats_url: &str, mut config: Value) -> Node {
        config["server"]["listen"] = json!(ANY_PORT);
        config["server"]["cluster"] = json!({"nats": [nats_url], "name": name,
            "nodeNumber": number, "subjectPrefix": "test.ringcast"});
        if std::env::var("RINGCAST_TEST_IO_DRIVER").as_deref() == Ok("legacy") {
            config["server"]["ioDriver"] = json!("legacy");
        }
        let config_path = std::env::temp_dir().join(format!(
            "ringcast-cluster-{}-{name}-{}.json",
            std::process::id(),
            rand_id()
        ));
        std::fs::write(&config_path, config.to_string()).unwrap();
        let mut command = Command::new(BIN);
        command
            .args(["--config", config_path.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        let mut process = Running::spawn(command);
        let address = process.listen_address();
        if std::env::var_os("RINGCAST_TEST_NODE_LOGS").is_some() {
            // Forward the node's log (after the start-up line) to the test's stderr.
            let (_, idle) = std::sync::mpsc::channel();
            let lines = std::mem::replace(&mut process.stderr, idle);
            std::thread::spawn(move || lines.iter().for_each(|line| eprintln!("{line}")));
        }
        process.wait_healthy(address);
        Node {
            server: TestServer {
                handle: None,
                address,
            },
            process: Some(process),
            config_path,
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.config_path.clone()
    }

    /// SIGKILL: no goodbye; NATS drops its subscriptions when its connection dies.
    pub fn kill(&mut self) {
        self.process = None;
    }

    pub fn metric(&self, name: &str) -> u64 {
        metric(&self.server, name)
    }
}

/// Polls `condition` until it holds; fails after [`PATIENCE`].
pub fn until(what: &str, condition: impl FnMut() -> bool) {
    wait_until(what, PATIENCE, condition);
}

pub struct Cluster {
    pub nats: Nats,
    pub nodes: Vec<Node>,
}

/// Three nodes on one nats-server; `None` when the test is skipped (no nats-server).
pub fn cluster() -> Option<Cluster> {
    let nats = Nats::start(nats_binary()?);
    let nodes: Vec<Node> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|name| Node::start(name, &nats))
        .collect();
    for node in &nodes {
        until("every node is connected to NATS", || {
            node.metric("ringcast_bus_connected") == 1
        });
    }
    Some(Cluster { nats, nodes })
}

pub fn subscriber(node: &Node, app: &str, subject: &str, topic: &str) -> Client {
    let mut client = connect(&node.server, app, &token(subject, &[PUBLISH_ALL, READ_ALL]));
    client.subscribe_confirmed(topic);
    client
}

/// Next frame of `topic` that is not a probe.
pub fn next_on(client: &mut Client, topic: &str) -> Value {
    loop {
        let frame = client.next_json();
        if frame["topic"] == topic && frame["messageType"] != "probe" {
            return frame;
        }
    }
}

/// Publishes probes on `topic` from `publisher` until every watcher got one: the watchers'
/// nodes' NATS subscriptions are in effect (NATS has propagated them). Watchers skip
/// probes later.
pub fn await_interest(publisher: &mut Client, topic: &str, watchers: &mut [&mut Client]) {
    let mut seen = vec![false; watchers.len()];
    let deadline = Instant::now() + PATIENCE;
    while seen.iter().any(|s| !s) {
        assert!(
            Instant::now() < deadline,
            "interest in {topic} never spread"
        );
        publisher.publish(topic, "probe", json!("probe"), &rand_id());
        for (watcher, seen) in watchers.iter_mut().zip(seen.iter_mut()) {
            if *seen {
                continue;
            }
            watcher
                .socket
                .get_mut()
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            while let Ok(message) = watcher.socket.read() {
                if let tungstenite::Message::Text(text) = message {
                    let frame: Value = serde_json::from_str(&text).unwrap();
                    if frame["topic"] == topic && frame["messageType"] == "probe" {
                        *seen = true;
                        break;
                    }
                }
            }
            watcher
                .socket
                .get_mut()
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
        }
    }
}

/// Whether `client` still gets `topic`: it publishes there itself, then a marker on its own
/// private topic; its own publication is delivered to it before the marker if subscribed.
pub fn still_subscribed(client: &mut Client, topic: &str) -> bool {
    let check = rand_id();
    client.publish(topic, "check", json!(check), &check);
    let marker = rand_id();
    let own = format!("priv/{}", client.id());
    client.publish(&own, "marker", json!(marker), &marker);
    let mut seen = false;
    loop {
        let frame = client.next_json();
        if frame["messageType"] == "check" && frame["data"]["payload"] == json!(check) {
            seen = true;
        }
        if frame["messageType"] == "marker" && frame["data"]["payload"] == json!(marker) {
            return seen;
        }
    }
}

/// Whether a frame whose `data` is `data` arrives within a short wait (other frames skipped).
pub fn receives(client: &mut Client, data: &Value) -> bool {
    let socket = client.socket.get_mut();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut found = false;
    while let Ok(message) = client.socket.read() {
        if let tungstenite::Message::Text(text) = message {
            let frame: Value = serde_json::from_str(&text).unwrap();
            if &frame["data"] == data {
                found = true;
                break;
            }
        }
    }
    client
        .socket
        .get_mut()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    found
}
