//! Configuration: the one serde tree read from `--config FILE`, and its validation.
//!
//! Responsibility: turn JSON text into a [`Config`] whose every field is checked, with
//! defaults filled in and zero-meanings documented. It must not compile keys or open
//! sockets: `broker::apps` compiles the validated tree into the runtime snapshot, and
//! reports key errors with the same [`ConfigError`] shape (app + field + message).
//!
//! Invariants: unknown fields are rejected everywhere (`deny_unknown_fields`); a
//! [`KeyConfig`]'s `Debug` never prints the key; every limit here has a server-wide default
//! that an app may override.
//!
//! # Layout
//! - this file: the whole tree ([`Config`]), its entry points ([`Config::load`],
//!   [`Config::from_json`]), the listen addresses, and [`ConfigError`].
//! - [`server`]: the `server` section ([`ServerConfig`], `tls`, `cluster`) and its defaults.
//! - [`cluster_security`]: `server.cluster.auth` and `server.cluster.tls` ([`ClusterAuth`],
//!   [`ClusterTls`]), their checks and the check of the files they name.
//! - [`app`]: one app ([`AppConfig`]), its keys ([`KeyConfig`]), anonymous tokens and the
//!   resolved [`LimitsConfig`].
//! - `validate`: the checks [`Config::from_json`] runs once the tree is parsed.
//!
//! Every item is re-exported here: `crate::config::ServerConfig` and the like are the
//! paths to use.

pub mod app;
pub mod cluster_security;
pub mod server;
mod validate;

pub use app::{
    AnonymousConfig, AppConfig, Audience, KeyConfig, LimitsConfig,
    DEFAULT_ANONYMOUS_TOKENS_PER_MINUTE, DEFAULT_ANONYMOUS_TTL_SECONDS, MAX_SOURCE_ENTRIES,
};
pub use cluster_security::{
    redacted_url, url_credentials, ClusterAuth, ClusterSecurity, ClusterTls,
};
pub use server::{
    is_subject_token, ClusterConfig, IoDriverChoice, LogFormat, ServerConfig, TlsConfig,
    DEFAULT_FLUSH_INTERVAL_MICROS, DEFAULT_HANDSHAKE_TIMEOUT_SECONDS, DEFAULT_LISTEN,
    DEFAULT_MAX_HTTP_BODY_BYTES, DEFAULT_MAX_HTTP_CONNECTIONS_PER_WORKER,
    DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_PENDING_BYTES, DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
    DEFAULT_PING_INTERVAL_SECONDS, DEFAULT_SHUTDOWN_DEADLINE_SECONDS,
    DEFAULT_ZERO_COPY_FANOUT_BYTES, MAX_FLUSH_INTERVAL_MICROS, MAX_NODE_NUMBER, MAX_WORKERS,
};

use serde::Deserialize;
use std::net::SocketAddr;

/// Whole configuration file: `{"server": {...}, "apps": [...]}`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub apps: Vec<AppConfig>,
    /// The file this configuration was read from (`None`: built in code, e.g. the
    /// development app). A reload (SIGHUP, `POST /admin/reload`) re-reads it.
    #[serde(skip)]
    pub source: Option<std::path::PathBuf>,
}

/// A configuration problem, naming the app (when it is about one) and the field.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{field}: {message}", app.as_ref().map(|a| format!("app {a}: ")).unwrap_or_default())]
pub struct ConfigError {
    pub app: Option<String>,
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(app: Option<&str>, field: &str, message: impl Into<String>) -> Self {
        ConfigError {
            app: app.map(str::to_string),
            field: field.to_string(),
            message: message.into(),
        }
    }
}

impl Config {
    /// Parses and validates JSON text (structure, ranges, ids). Keys and address lists
    /// are compiled — and so fully checked — by `broker::apps::Registry::compile`.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        let config: Config = serde_json::from_str(text).map_err(|error| {
            ConfigError::new(
                None,
                &format!("line {} column {}", error.line(), error.column()),
                crate::suggest::json_error_message(&error),
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and validates the file at `path` (remembered in [`Config::source`]).
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigError::new(
                None,
                &format!("cannot read {}", path.display()),
                error.to_string(),
            )
        })?;
        let mut config = Config::from_json(&text)?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// The listen address, parsed.
    pub fn listen_address(&self) -> Result<SocketAddr, ConfigError> {
        parse_listen(&self.server.listen).ok_or_else(|| {
            ConfigError::new(
                None,
                "server.listen",
                format!("`{}` is not IP:PORT or localhost:PORT", self.server.listen),
            )
        })
    }

    /// The plain listener kept beside a TLS one (`server.tls.plainListen`), parsed.
    pub fn plain_listen_address(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(text) = self
            .server
            .tls
            .as_ref()
            .and_then(|t| t.plain_listen.as_ref())
        else {
            return Ok(None);
        };
        let address = parse_listen(text).ok_or_else(|| {
            ConfigError::new(
                None,
                "server.tls.plainListen",
                format!("`{text}` is not IP:PORT or localhost:PORT"),
            )
        })?;
        if address.port() != 0 && address == self.listen_address()? {
            return Err(ConfigError::new(
                None,
                "server.tls.plainListen",
                "must differ from server.listen (one port speaks TLS, the other plain)",
            ));
        }
        Ok(Some(address))
    }
}

/// A listen address: `IP:PORT` (`[::1]:PORT` for IPv6), or `localhost:PORT`, which is the
/// IPv4 loopback `127.0.0.1:PORT` (no name lookup: `localhost` may also resolve to `::1`,
/// and a listener binds one address).
pub fn parse_listen(text: &str) -> Option<SocketAddr> {
    if let Some(port) = text.strip_prefix("localhost:") {
        return Some(SocketAddr::from(([127, 0, 0, 1], port.parse().ok()?)));
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str =
        r#"{"appId":"a1","authKey":{"source":"raw","key":"s","algorithms":["HS256"]}}"#;

    #[test]
    fn defaults_fill_in() {
        let config = Config::from_json(&format!(r#"{{"apps":[{APP}]}}"#)).unwrap();
        assert_eq!(config.server.listen, DEFAULT_LISTEN);
        let limits = config.apps[0].limits(&config.server.limits());
        assert_eq!(limits.max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES);
        assert!(config.apps[0].enable_web_socket_inbound_ack);
        assert!(!config.apps[0].enable_web_socket_inbound_topic);
    }

    #[test]
    fn unknown_field_is_refused() {
        let error = Config::from_json(r#"{"server":{"listn":"1"}}"#).unwrap_err();
        assert!(error.message.contains("listn"), "{error}");
    }

    #[test]
    fn per_app_override_wins() {
        let text = r#"{"server":{"maxPendingBytes":100},"apps":[{"appId":"a","authKey":{"source":"raw","key":"s","algorithms":["HS256"]},"maxPendingBytes":7}]}"#;
        let config = Config::from_json(text).unwrap();
        assert_eq!(config.server.max_pending_bytes, 100);
        assert_eq!(
            config.apps[0]
                .limits(&config.server.limits())
                .max_pending_bytes,
            7
        );
    }

    #[test]
    fn too_many_source_entries_names_app_and_field() {
        let list: Vec<String> = (0..11).map(|i| format!("\"10.0.0.{i}\"")).collect();
        let text = format!(
            r#"{{"apps":[{{"appId":"big","authKey":{{"source":"raw","key":"s","algorithms":["HS256"]}},"clientSourceAddress":[{}]}}]}}"#,
            list.join(",")
        );
        let error = Config::from_json(&text).unwrap_err();
        assert_eq!(error.app.as_deref(), Some("big"));
        assert_eq!(error.field, "clientSourceAddress");
    }

    #[test]
    fn zero_pending_bytes_is_refused() {
        let error = Config::from_json(r#"{"server":{"maxPendingBytes":0}}"#).unwrap_err();
        assert!(error.field.contains("maxPendingBytes"));
    }

    #[test]
    fn per_address_limit_defaults_off_and_is_overridden_per_app() {
        let config = Config::from_json(&format!(r#"{{"apps":[{APP}]}}"#)).unwrap();
        assert_eq!(config.server.max_connections_per_address, 0);
        assert_eq!(
            config.server.max_http_connections_per_worker,
            DEFAULT_MAX_HTTP_CONNECTIONS_PER_WORKER
        );
        let text = r#"{"server":{"maxConnectionsPerAddress":5},"apps":[{"appId":"a","authKey":{"source":"raw","key":"s","algorithms":["HS256"]}},{"appId":"b","authKey":{"source":"raw","key":"s","algorithms":["HS256"]},"maxConnectionsPerAddress":0}]}"#;
        let config = Config::from_json(text).unwrap();
        let defaults = config.server.limits();
        assert_eq!(
            config.apps[0].limits(&defaults).max_connections_per_address,
            5
        );
        assert_eq!(
            config.apps[1].limits(&defaults).max_connections_per_address,
            0
        );
    }

    #[test]
    fn zero_http_connections_per_worker_is_refused() {
        let error =
            Config::from_json(r#"{"server":{"maxHttpConnectionsPerWorker":0}}"#).unwrap_err();
        assert_eq!(error.field, "server.maxHttpConnectionsPerWorker");
    }

    #[test]
    fn duplicate_and_bad_ids_are_refused() {
        assert!(Config::from_json(&format!(r#"{{"apps":[{APP},{APP}]}}"#)).is_err());
        let bad = APP.replace("a1", "a/b");
        assert!(Config::from_json(&format!(r#"{{"apps":[{bad}]}}"#)).is_err());
    }

    #[test]
    fn tls_plain_listen_is_checked() {
        let tls = |plain: &str| {
            format!(
                r#"{{"server":{{"listen":"127.0.0.1:8443","tls":{{"cert":"c.pem","key":"k.pem","plainListen":"{plain}"}}}}}}"#
            )
        };
        let config = Config::from_json(&tls("127.0.0.1:8080")).unwrap();
        assert_eq!(
            config.plain_listen_address().unwrap(),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        let error = Config::from_json(&tls("127.0.0.1:8443")).unwrap_err();
        assert_eq!(error.field, "server.tls.plainListen");
        let error = Config::from_json(&tls("localhost")).unwrap_err();
        assert_eq!(error.field, "server.tls.plainListen");
        let error =
            Config::from_json(r#"{"server":{"tls":{"cert":"c.pem","keyFile":"k"}}}"#).unwrap_err();
        assert!(error.message.contains("keyFile"), "{error}");
    }

    #[test]
    fn cluster_section_is_validated() {
        let ok = Config::from_json(
            r#"{"server":{"cluster":{"nats":["nats://127.0.0.1:4222"],"name":"node-a","nodeNumber":4095}}}"#,
        )
        .unwrap();
        let cluster = ok.server.cluster.unwrap();
        assert_eq!(cluster.subject_prefix, "ringcast");
        assert_eq!(cluster.node_number, 4095);
        let long_prefix = format!(
            r#"{{"nats":["nats://x"],"name":"a","nodeNumber":1,"subjectPrefix":"{}"}}"#,
            ["abcdefgh"; 30].join(".")
        );
        for (bad, field) in [
            (
                r#"{"nats":[],"name":"a","nodeNumber":1}"#,
                "server.cluster.nats",
            ),
            (
                r#"{"nats":["nats://x"],"name":"a.b","nodeNumber":1}"#,
                "server.cluster.name",
            ),
            (
                r#"{"nats":["nats://x"],"name":"a","nodeNumber":1,"subjectPrefix":"r.*"}"#,
                "server.cluster.subjectPrefix",
            ),
            (long_prefix.as_str(), "server.cluster.subjectPrefix"),
            (
                r#"{"nats":["nats://x"],"name":"a","nodeNumber":4096}"#,
                "server.cluster.nodeNumber",
            ),
        ] {
            let text = format!(r#"{{"server":{{"cluster":{bad}}}}}"#);
            assert_eq!(Config::from_json(&text).unwrap_err().field, field);
        }
        let missing =
            Config::from_json(r#"{"server":{"cluster":{"nats":["nats://x"],"name":"a"}}}"#)
                .unwrap_err();
        assert!(missing.message.contains("nodeNumber"), "{missing}");
    }

    #[test]
    fn key_debug_is_redacted() {
        let config = Config::from_json(&format!(r#"{{"apps":[{APP}]}}"#)).unwrap();
        let text = format!("{:?}", config.apps[0].auth_key);
        assert!(text.contains("redacted"));
        assert!(!text.contains("\"s\""));
    }
}
