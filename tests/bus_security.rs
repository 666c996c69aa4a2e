//! A cluster on a secured NATS (README "Cluster on a secured NATS"): a real nats-server
//! requiring a user and password, a token, an nkey, a credentials file (operator mode) or
//! TLS with a private CA and client certificates, and ringcast nodes as child processes,
//! checked black-box: `/metrics`, WebSocket clients, the HTTP API and the node's log.
//!
//! nats-server comes from `RINGCAST_NATS_SERVER`, else `.build/nats/bin/nats-server`
//! (`scripts/install-nats.sh`); without one each test reports itself skipped (a `SKIPPED`
//! line, `common::skip`), except under CI (`CI=true`), where that fails. Certificates (IP SAN
//! 127.0.0.1), nkeys and JWTs are generated here. Every NATS user may only publish and
//! subscribe under the subject prefix (`test.ringcast.>`): the minimal permissions the
//! README documents.
//!
//! Waits are bounded polls that stop as soon as the state is reached (failure guards, not
//! timing assertions).

mod common;

use base64::Engine as _;
use common::cluster::nats_binary;
use common::process::{listening_address_in, wait_for_log_line, ANY_PORT, BIN};
use common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests share the machine's cores: one NATS and its nodes at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const PREFIX: &str = "test.ringcast";
const USER: &str = "ringcast-node";
/// Secrets the captured logs are searched for.
const PASSWORD: &str = "pw-Secret-8b1f5c2e";
const WRONG_PASSWORD: &str = "pw-Wrong-77c0d9aa";
const TOKEN: &str = "tok-Secret-3a9e44d1";

/// The permissions every NATS user gets: the subject prefix, which also holds the reply
/// inbox (`<prefix>.inbox`).
fn permissions() -> String {
    format!(r#"permissions: {{ publish: "{PREFIX}.>", subscribe: "{PREFIX}.>" }}"#)
}

/// A directory of generated files (configs, certificates, keys, logs), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let path = std::env::temp_dir().join(format!(
            "ringcast-bus-security-{}-{}",
            std::process::id(),
            rand_id()
        ));
        std::fs::create_dir_all(&path).unwrap();
        Scratch(path)
    }

    /// Writes `name` and returns its path.
    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A nats-server started from a config file, on a port it picks itself (`-p -1`, read
/// back from its log: no pick-then-release race).
struct Nats {
    port: u16,
    _process: Process,
}

impl Nats {
    fn start(scratch: &Scratch, config: &str) -> Option<Nats> {
        let binary = nats_binary()?;
        let config_path = scratch.file("nats.conf", config);
        let log = scratch.0.join("nats.log");
        let process = Command::new(binary)
            .args(["-c", config_path.to_str().unwrap()])
            .args(["-a", "127.0.0.1", "-p", "-1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start nats-server");
        let process = Process(process);
        let logs = wait_for_log_line(&log, |line| {
            line.contains("Listening for client connections on") || line.contains("[FTL]")
        });
        let port = logs
            .lines()
            .find_map(|line| {
                let (_, address) = line.split_once("Listening for client connections on ")?;
                address.trim().parse::<SocketAddr>().ok()
            })
            .unwrap_or_else(|| panic!("nats-server did not start:\n{logs}"))
            .port();
        Some(Nats {
            port,
            _process: process,
        })
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
}

/// The `server.cluster` section of every node here, built in this one place.
fn cluster_section(urls: &[String], name: &str, node_number: u16, security: Value) -> Value {
    let mut section = json!({
        "nats": urls,
        "name": name,
        "nodeNumber": node_number,
        "subjectPrefix": PREFIX,
    });
    if let Value::Object(extra) = security {
        section.as_object_mut().unwrap().extend(extra);
    }
    section
}

/// A ringcast node (child process) whose whole stderr goes to a file, kept for the secret
/// checks.
struct Node {
    server: TestServer,
    log: PathBuf,
    _process: Process,
}

impl Node {
    fn start(scratch: &Scratch, name: &str, cluster: Value) -> Node {
        let mut config = base_config();
        config["server"]["listen"] = json!(ANY_PORT);
        config["server"]["cluster"] = cluster;
        if std::env::var("RINGCAST_TEST_IO_DRIVER").as_deref() == Ok("legacy") {
            config["server"]["ioDriver"] = json!("legacy");
        }
        let config_path = scratch.file(&format!("{name}.json"), &config.to_string());
        let log = scratch.0.join(format!("{name}.log"));
        let process = Command::new(BIN)
            .args(["--config", config_path.to_str().unwrap()])
            // The default log filter, as in production.
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start ringcast");
        let process = Process(process);
        let address = listening_address_in(&log);
        Node {
            server: TestServer {
                handle: None,
                address,
            },
            log,
            _process: process,
        }
    }

    fn metric(&self, name: &str) -> u64 {
        metric(&self.server, name)
    }

    fn wait_connected(&self) {
        wait_until("the node's bus is connected to NATS", PATIENCE, || {
            self.metric("ringcast_bus_connected") == 1
        });
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log never shows a secret (nor the permissions violations a missing
    /// permission would cause).
    fn assert_log_clean(&self, secrets: &[&str]) {
        let log = self.log_text();
        for secret in secrets {
            assert!(!log.contains(secret), "a secret reached the log:\n{log}");
        }
        assert!(!log.contains("Permissions Violation"), "{log}");
    }
}

/// A private CA and, signed by it, a server certificate for 127.0.0.1 and a client
/// certificate, as PEM files.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl Pki {
    fn generate(scratch: &Scratch) -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ringcast test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf = |names: Vec<String>, usage: rcgen::ExtendedKeyUsagePurpose| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(names).unwrap();
            params.extended_key_usages = vec![usage];
            let certificate = params.signed_by(&key, &issuer).unwrap();
            (certificate.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(
            vec!["ringcast-node".into()],
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        );
        Pki {
            ca: scratch.file("ca.pem", &ca.pem()),
            server_cert: scratch.file("server-cert.pem", &server_cert),
            server_key: scratch.file("server-key.pem", &server_key),
            client_cert: scratch.file("client-cert.pem", &client_cert),
            client_key: scratch.file("client-key.pem", &client_key),
        }
    }

    /// nats-server's `tls` block: TLS required, client certificates verified.
    fn nats_block(&self) -> String {
        format!(
            "tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, verify: true, timeout: 5 }}",
            self.server_cert, self.server_key, self.ca
        )
    }

    /// The node's `tls` section.
    fn node_section(&self) -> Value {
        json!({"caFile": self.ca, "certFile": self.client_cert, "keyFile": self.client_key})
    }
}

fn user_password_block() -> String {
    format!(
        "authorization {{ users: [ {{ user: {USER:?}, password: {PASSWORD:?}, {} }} ] }}",
        permissions()
    )
}

/// Publishes `message` on `topic` of [`APP`] through `node`'s HTTP API.
fn publish(node: &Node, topic: &str, message_type: &str, message: Value) {
    let body = json!({"topic": topic, "messageType": message_type, "message": message});
    let (status, answer) = publish_http(&node.server, APP, body);
    assert_eq!(status, 200, "{answer}");
}

/// The next frame of `client` whose `messageType` is `message_type`, or `None` once
/// nothing more arrives within `wait`.
fn next_of_type(client: &mut Client, message_type: &str, wait: Duration) -> Option<Value> {
    client
        .socket
        .get_mut()
        .set_read_timeout(Some(wait))
        .unwrap();
    let mut found = None;
    while let Ok(message) = client.socket.read() {
        if let tungstenite::Message::Text(text) = message {
            let frame: Value = serde_json::from_str(&text).unwrap();
            if frame["messageType"] == message_type {
                found = Some(frame);
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

/// A subscriber of `topic` on `node`, confirmed subscribed.
fn subscriber(node: &Node, topic: &str) -> Client {
    let mut client = connect(
        &node.server,
        APP,
        &token("watcher", &[PUBLISH_ALL, READ_ALL]),
    );
    client.subscribe_confirmed(topic);
    client
}

/// One node on `nats` with `security`: its bus connects, and its own clients get their
/// publications.
fn node_connects(scratch: &Scratch, nats: &Nats, scheme: &str, security: Value, secrets: &[&str]) {
    let cluster = cluster_section(&[nats.url(scheme)], "node-a", 1, security);
    let node = Node::start(scratch, "node-a", cluster);
    node.wait_connected();
    let mut client = subscriber(&node, "local");
    publish(&node, "local", "hello", json!("hi"));
    assert!(next_of_type(&mut client, "hello", PATIENCE).is_some());
    assert_eq!(node.metric("ringcast_bus_auth_refusals_total"), 0);
    node.assert_log_clean(secrets);
}

#[test]
fn user_and_password_nats_connects_the_bus() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new();
    let Some(nats) = Nats::start(&scratch, &user_password_block()) else {
        return;
    };
    let auth = json!({"auth": {"user": USER, "password": PASSWORD}});
    node_connects(&scratch, &nats, "nats", auth, &[PASSWORD]);
}

#[test]
fn user_and_password_in_the_url_keep_working() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new();
    let Some(nats) = Nats::start(&scratch, &user_password_block()) else {
        return;
    };
    let url = format!("nats://{USER}:{PASSWORD}@127.0.0.1:{}", nats.port);
    let node = Node::start(
        &scratch,
        "node-a",
        cluster_section(&[url], "node-a", 1, json!({})),
    );
    node.wait_connected();
    node.assert_log_clean(&[PASSWORD]);
}

#[test]
fn token_nats_connects_the_bus() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new();
    let Some(nats) = Nats::start(&scratch, &format!("authorization {{ token: {TOKEN:?} }}")) else {
        return;
    };
    node_connects(
        &scratch,
        &nats,
        "nats",
        json!({"auth": {"token": TOKEN}}),
        &[TOKEN],
    );
}

#[test]
fn nkey_nats_connects_the_bus() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new();
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().unwrap();
    let block = format!(
        "authorization {{ users: [ {{ nkey: {:?}, {} }} ] }}",
        user.public_key(),
        permissions()
    );
    let Some(nats) = Nats::start(&scratch, &block) else {
        return;
    };
    let seed_file = scratch.file("node.nk", &format!("{seed}\n"));
    let auth = json!({"auth": {"nkeySeedFile": seed_file}});
    node_connects(&scratch, &nats, "nats", auth, &[&seed]);
}

#[test]
fn tls_with_a_private_ca_and_client_certificate_connects_the_bus() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new();
    let pki = Pki::generate(&scratch);
    let Some(nats) = Nats::start(&scratch, &pki.nats_block()) else {
        return;
    };
    // `tls://` and a `tls` section; the key's bytes never reach the log.
    let key = std::fs::read_to_string(&pki.client_key).unwrap();
    let key_line = key.lines().nth(1).unwrap().to_string();
    node_connects(
        &scratch,
        &nats,
        "tls",
        json!({"tls": pki.node_section()}),
        &[&key_line],
    );
}

/// An operator-mode nats-server (memory resolver) and a credentials file: the user JWT
/// signed by the account, the account JWT by the operator, all nkeys made here.
#[test]
fn credentials_file_connects_the_bus_to_an_operator_mode_nats() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new();
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        json!({"type": "operator", "version": 2}),
    );
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        json!({"type": "account", "version": 2, "limits": {
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1}}),
    );
    let user_jwt = jwt(
        &account,
        &user.public_key(),
        json!({"type": "user", "version": 2, "subs": -1, "data": -1, "payload": -1,
               "pub": {"allow": [format!("{PREFIX}.>")]},
               "sub": {"allow": [format!("{PREFIX}.>")]}}),
    );
    let operator_file = scratch.file("operator.jwt", &operator_jwt);
    let config = format!(
        "operator: {:?}\nresolver: MEMORY\nresolver_preload: {{ {}: {:?} }}\n",
        operator_file,
        account.public_key(),
        account_jwt
    );
    let Some(nats) = Nats::start(&scratch, &config) else {
        return;
    };
    let seed = user.seed().unwrap();
    let creds = scratch.file(
        "node.creds",
        &format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        ),
    );
    let auth = json!({"auth": {"credentialsFile": creds}});
    node_connects(&scratch, &nats, "nats", auth, &[&seed]);
}

/// A NATS JWT (`ed25519-nkey`) for `subject` with `nats` claims, signed by `issuer`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, nats: Value) -> String {
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = json!({"typ": "JWT", "alg": "ed25519-nkey"});
    let claims = json!({
        "jti": rand_id().to_uppercase(),
        "iat": now(),
        "iss": issuer.public_key(),
        "sub": subject,
        "name": subject,
        "nats": nats,
    });
    let signed = format!(
        "{}.{}",
        encode(header.to_string().as_bytes()),
        encode(claims.to_string().as_bytes())
    );
    let signature = issuer.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", encode(&signature))
}

/// The issue's "done when": two nodes deliver to each other through an authenticated TLS
/// NATS.
#[test]
fn two_nodes_deliver_through_authenticated_tls_nats() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new();
    let pki = Pki::generate(&scratch);
    let config = format!("{}\n{}", pki.nats_block(), user_password_block());
    let Some(nats) = Nats::start(&scratch, &config) else {
        return;
    };
    let security = json!({"auth": {"user": USER, "password": PASSWORD}, "tls": pki.node_section()});
    // One node names `tls://`, the other `nats://`: the `tls` section requires TLS anyway.
    let a = Node::start(
        &scratch,
        "node-a",
        cluster_section(&[nats.url("tls")], "node-a", 1, security.clone()),
    );
    let b = Node::start(
        &scratch,
        "node-b",
        cluster_section(&[nats.url("nats")], "node-b", 2, security),
    );
    a.wait_connected();
    b.wait_connected();
    let mut on_b = subscriber(&b, "secured");
    // B's interest reaches A once NATS has carried it: probe until one arrives.
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(
            Instant::now() < deadline,
            "no probe crossed from node A to node B"
        );
        publish(&a, "secured", "probe", json!("probe"));
        if next_of_type(&mut on_b, "probe", Duration::from_millis(200)).is_some() {
            break;
        }
    }
    let marker = rand_id();
    publish(&a, "secured", "final", json!(marker));
    let frame = next_of_type(&mut on_b, "final", PATIENCE).expect("the final message crossed");
    assert_eq!(frame["data"], json!(marker));
    assert_eq!(
        next_of_type(&mut on_b, "final", Duration::from_millis(500)),
        None,
        "delivered exactly once"
    );
    for node in [&a, &b] {
        node.assert_log_clean(&[PASSWORD]);
    }
}

/// Waits until `node` has counted a refusal and its log says `why`; its bus stays down.
fn wait_refused(node: &Node, why: &str) {
    wait_until("the node counts a refused connection", PATIENCE, || {
        node.metric("ringcast_bus_auth_refusals_total") > 0
    });
    wait_for_log_line(&node.log, |line| line.contains(why));
    assert_eq!(node.metric("ringcast_bus_connected"), 0);
}

#[test]
fn wrong_password_runs_alone_and_says_why() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new();
    let Some(nats) = Nats::start(&scratch, &user_password_block()) else {
        return;
    };
    let auth = json!({"auth": {"user": USER, "password": WRONG_PASSWORD}});
    let node = Node::start(
        &scratch,
        "node-a",
        cluster_section(&[nats.url("nats")], "node-a", 1, auth),
    );
    wait_refused(&node, "NATS refused this node's credentials");
    // Alone, it still serves its own clients.
    let mut client = subscriber(&node, "alone");
    publish(&node, "alone", "local", json!("still here"));
    let frame = next_of_type(&mut client, "local", PATIENCE).expect("local delivery");
    assert_eq!(frame["data"], json!("still here"));
    // It keeps retrying: more refusals are counted, the explanation is logged once.
    let first = node.metric("ringcast_bus_auth_refusals_total");
    wait_until("the node retries", PATIENCE, || {
        node.metric("ringcast_bus_auth_refusals_total") > first
    });
    let log = node.log_text();
    assert_eq!(
        log.matches("NATS refused this node's credentials").count(),
        1,
        "{log}"
    );
    node.assert_log_clean(&[WRONG_PASSWORD, PASSWORD]);
}

#[test]
fn tls_required_but_not_configured_says_so() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new();
    let pki = Pki::generate(&scratch);
    let Some(nats) = Nats::start(&scratch, &pki.nats_block()) else {
        return;
    };
    let node = Node::start(
        &scratch,
        "node-a",
        cluster_section(&[nats.url("nats")], "node-a", 1, json!({})),
    );
    wait_refused(&node, "NATS requires TLS");
}

#[test]
fn check_config_reads_the_security_files_without_connecting() {
    let scratch = Scratch::new();
    let pki = Pki::generate(&scratch);
    let seed = nkeys::KeyPair::new_user().seed().unwrap();
    let seed_file = scratch.file("node.nk", &seed);
    let check = |security: Value| {
        let mut config = base_config();
        // Port 9 (discard): nothing listens there; check-config never connects.
        config["server"]["cluster"] =
            cluster_section(&["tls://127.0.0.1:9".to_string()], "node-a", 1, security);
        let path = scratch.file("check.json", &config.to_string());
        let output = Command::new(BIN)
            .args(["check-config", path.to_str().unwrap()])
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stderr).to_string()
            + &String::from_utf8_lossy(&output.stdout);
        assert!(!text.contains(&seed), "{text}");
        (output.status.success(), text)
    };
    let good = json!({"auth": {"nkeySeedFile": seed_file}, "tls": pki.node_section()});
    let (ok, text) = check(good);
    assert!(ok, "{text}");
    let (ok, text) = check(json!({"auth": {"credentialsFile": seed_file}}));
    assert!(
        !ok && text.contains("server.cluster.auth.credentialsFile"),
        "{text}"
    );
    let (ok, text) = check(json!({"auth": {"nkeySeedFile": scratch.0.join("missing.nk")}}));
    assert!(!ok && text.contains("cannot read"), "{text}");
    let wrong_key =
        json!({"caFile": pki.ca, "certFile": pki.client_cert, "keyFile": pki.server_key});
    let (ok, text) = check(json!({"tls": wrong_key}));
    assert!(!ok && text.contains("server.cluster.tls"), "{text}");
    let (ok, text) = check(json!({"tls": {"caFile": seed_file}}));
    assert!(!ok && text.contains("server.cluster.tls.caFile"), "{text}");
}
