//! The compiled application registry: an immutable snapshot shared by every worker.
//!
//! Responsibility: turn a validated [`Config`] into [`App`]s whose keys, algorithm lists
//! and source filters are compiled once, plus the small amount of cross-worker state an app
//! needs at connect time (connection counters, the per-subject count, topic interest).
//! It must not do I/O. Errors name the app and the field ([`ConfigError`]).
//!
//! Invariant: an `App`'s index in `Registry::apps` never changes while the registry lives;
//! workers address per-app tables by it.

use super::anonymous::AnonymousEndpoint;
use super::interest::InterestMap;
use crate::auth::{JwksCache, SourceFilter, Verifier, VerifierConfig};
use crate::config::{Config, ConfigError, KeyConfig, LimitsConfig};
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One tenant, compiled.
pub struct App {
    pub index: usize,
    pub id: Box<str>,
    pub client_verifier: Verifier,
    /// `None` when the app has no `adminKey`: its HTTP API answers 401.
    pub admin_verifier: Option<Verifier>,
    pub client_sources: SourceFilter,
    pub admin_sources: SourceFilter,
    pub inbound_enabled: bool,
    pub ack_enabled: bool,
    /// Test-only echo mode (`echoForConformanceTests`).
    pub echo: bool,
    pub limits: LimitsConfig,
    /// Open connections of this app, all workers (checked against `maxConnections`).
    pub connections: AtomicU64,
    /// Open connections per subject (checked against `maxConnectionsPerSubject`); only
    /// maintained when that limit is set. Touched at connect/close only.
    pub subjects: Mutex<HashMap<Box<str>, u64>>,
    /// Which workers hold subscribers of each topic.
    pub interest: InterestMap,
    /// `POST /token/anonymous/{appId}`; `None` when absent or disabled (404).
    pub anonymous: Option<AnonymousEndpoint>,
}

/// Server-wide settings the workers need at run time.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Zero disables pings and liveness.
    pub ping_interval: Duration,
    pub handshake_timeout: Duration,
    pub max_http_body_bytes: usize,
    pub trusted_proxies: Vec<IpNet>,
    /// Server-wide upgrade rate (0 = unlimited); each worker enforces its share.
    pub max_handshakes_per_second: u64,
    /// `SO_SNDBUF` for client sockets (0 = kernel autotuning).
    pub socket_send_buffer_bytes: usize,
    pub shutdown_deadline: Duration,
}

/// Every app, by index and by id.
pub struct Registry {
    pub apps: Vec<Arc<App>>,
    by_id: HashMap<Box<str>, usize>,
    pub settings: Settings,
    /// One cache per distinct JWKS URL (shared by every key that names it); the runtime's
    /// fetcher fills them. Empty when no key has `source: "jwks"`.
    pub jwks: Vec<Arc<JwksCache>>,
}

/// Why a connection was refused at the connection-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitRefusal {
    AppFull,
    SubjectFull,
}

fn compile_key(
    app: &str,
    field: &str,
    key: &KeyConfig,
    jwks: &mut Vec<Arc<JwksCache>>,
) -> Result<Verifier, ConfigError> {
    let config = VerifierConfig {
        key: key.key.clone(),
        algorithms: key.algorithms.clone(),
        issuer: key.issuer.clone(),
        audience: key
            .audience
            .as_ref()
            .map(|a| a.to_vec())
            .unwrap_or_default(),
    };
    let key_error =
        |error: crate::auth::KeyError| ConfigError::new(Some(app), field, error.to_string());
    match key.source.as_str() {
        "raw" => Verifier::new(&config).map_err(key_error),
        "jwks" => {
            let url = key.key.trim();
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() < 9 {
                return Err(key_error(crate::auth::KeyError::BadJwksUrl));
            }
            // Not fetched here (no I/O at compile, so `check-config` works offline): the
            // runtime's fetcher fills the cache at start-up.
            let cache = match jwks.iter().find(|cache| cache.url() == url) {
                Some(cache) => cache.clone(),
                None => {
                    let cache = Arc::new(JwksCache::new(url));
                    jwks.push(cache.clone());
                    cache
                }
            };
            Verifier::with_jwks(&config, cache).map_err(key_error)
        }
        other => Err(ConfigError::new(
            Some(app),
            &format!("{field}.source"),
            format!("`{other}` is not a key source (use \"raw\" or \"jwks\")"),
        )),
    }
}

fn compile_sources(
    app: &str,
    field: &str,
    entries: &Option<Vec<String>>,
) -> Result<SourceFilter, ConfigError> {
    match entries {
        None => Ok(SourceFilter::allow_all()),
        Some(list) => SourceFilter::parse(list)
            .map_err(|error| ConfigError::new(Some(app), field, error.to_string())),
    }
}

impl Registry {
    /// Compiles every app of `config`. The first error stops compilation.
    pub fn compile(config: &Config) -> Result<Registry, ConfigError> {
        let defaults = config.server.limits();
        let mut apps = Vec::with_capacity(config.apps.len());
        let mut by_id = HashMap::new();
        let mut jwks = Vec::new();
        for (index, app) in config.apps.iter().enumerate() {
            let id = app.app_id.as_str();
            let client_verifier = compile_key(id, "authKey", &app.auth_key, &mut jwks)?;
            let anonymous = super::anonymous::compile(
                id,
                app.anonymous.as_ref(),
                &app.auth_key,
                &client_verifier,
            )?;
            let compiled = App {
                index,
                id: id.into(),
                client_verifier,
                admin_verifier: match &app.admin_key {
                    Some(key) => Some(compile_key(id, "adminKey", key, &mut jwks)?),
                    None => None,
                },
                client_sources: compile_sources(
                    id,
                    "clientSourceAddress",
                    &app.client_source_address,
                )?,
                admin_sources: compile_sources(
                    id,
                    "adminSourceAddress",
                    &app.admin_source_address,
                )?,
                inbound_enabled: app.enable_web_socket_inbound_topic,
                ack_enabled: app.enable_web_socket_inbound_ack,
                echo: app.echo_for_conformance_tests,
                limits: app.limits(&defaults),
                connections: AtomicU64::new(0),
                subjects: Mutex::new(HashMap::new()),
                interest: InterestMap::default(),
                anonymous,
            };
            by_id.insert(id.into(), index);
            apps.push(Arc::new(compiled));
        }
        let mut trusted_proxies = Vec::new();
        for entry in &config.server.trusted_proxies {
            let net = entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    ConfigError::new(
                        None,
                        "server.trustedProxies",
                        format!("`{entry}` is not an IP address or CIDR"),
                    )
                })?;
            trusted_proxies.push(net);
        }
        let server = &config.server;
        Ok(Registry {
            apps,
            by_id,
            settings: Settings {
                ping_interval: Duration::from_secs(server.ping_interval_seconds),
                handshake_timeout: Duration::from_secs(server.handshake_timeout_seconds.max(1)),
                max_http_body_bytes: server.max_http_body_bytes as usize,
                trusted_proxies,
                max_handshakes_per_second: server.max_handshakes_per_second,
                socket_send_buffer_bytes: server.socket_send_buffer_bytes as usize,
                shutdown_deadline: Duration::from_secs(server.shutdown_deadline_seconds),
            },
            jwks,
        })
    }

    pub fn get(&self, app_id: &str) -> Option<&Arc<App>> {
        self.by_id.get(app_id).map(|index| &self.apps[*index])
    }

    /// Whether `peer` is a proxy whose `X-Forwarded-For` is believed.
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        let peer = canonical_ip(peer);
        self.settings
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&peer))
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

impl App {
    /// Reserves one connection slot for `subject`, or says which limit refuses it.
    pub fn admit(&self, subject: &str) -> Result<(), LimitRefusal> {
        let max = self.limits.max_connections;
        let previous = self.connections.fetch_add(1, Ordering::AcqRel);
        if max != 0 && previous >= max {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return Err(LimitRefusal::AppFull);
        }
        let per_subject = self.limits.max_connections_per_subject;
        if per_subject != 0 {
            let mut subjects = self.subjects.lock().unwrap_or_else(|e| e.into_inner());
            let count = subjects.entry(subject.into()).or_insert(0);
            if *count >= per_subject {
                if *count == 0 {
                    subjects.remove(subject);
                }
                drop(subjects);
                self.connections.fetch_sub(1, Ordering::AcqRel);
                return Err(LimitRefusal::SubjectFull);
            }
            *count += 1;
        }
        Ok(())
    }

    /// Releases what [`App::admit`] reserved.
    pub fn release(&self, subject: &str) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
        if self.limits.max_connections_per_subject != 0 {
            let mut subjects = self.subjects.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = subjects.get_mut(subject) {
                *count -= 1;
                if *count == 0 {
                    subjects.remove(subject);
                }
            }
        }
    }
}
