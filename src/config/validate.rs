//! The checks a parsed configuration passes before it is used: listen addresses, ranges,
//! app ids, source-list sizes, the cluster section. Keys and address lists are checked
//! when `broker::apps` compiles them.
//!
//! Responsibility: one [`ConfigError`] naming the app (when it is about one) and the field
//! for the first problem found. Must not: change the configuration or read files.

use super::app::{LimitsConfig, MAX_SOURCE_ENTRIES};
use super::server::{
    is_subject_token, ClusterConfig, MAX_FLUSH_INTERVAL_MICROS, MAX_NODE_NUMBER,
    MAX_SUBJECT_PREFIX_BYTES, MAX_WORKERS,
};
use super::{Config, ConfigError};

impl Config {
    /// Checks the parsed tree (see the module docs); the first problem is the error.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.listen_address()?;
        self.plain_listen_address()?;
        if self.server.workers > MAX_WORKERS {
            return Err(ConfigError::new(
                None,
                "server.workers",
                format!("at most {MAX_WORKERS}"),
            ));
        }
        if self.server.flush_interval_micros > MAX_FLUSH_INTERVAL_MICROS {
            return Err(ConfigError::new(
                None,
                "server.flushIntervalMicros",
                format!("at most {MAX_FLUSH_INTERVAL_MICROS}"),
            ));
        }
        let max_token_cache = crate::auth::token_cache::MAX_TOKEN_CACHE_ENTRIES;
        if self.server.token_cache_entries > max_token_cache {
            return Err(ConfigError::new(
                None,
                "server.tokenCacheEntries",
                format!("at most {max_token_cache} (0 turns the cache off)"),
            ));
        }
        check_limits(None, "server", &self.server.limits())?;
        if self.server.max_http_connections_per_worker == 0 {
            return Err(ConfigError::new(
                None,
                "server.maxHttpConnectionsPerWorker",
                "must be greater than 0 (never unlimited)",
            ));
        }
        if let Some(cluster) = &self.server.cluster {
            cluster.validate()?;
        }
        let mut seen = std::collections::HashSet::new();
        for app in &self.apps {
            let id = app.app_id.as_str();
            if id.is_empty()
                || id.len() > 128
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ConfigError::new(
                    Some(id),
                    "appId",
                    "must be 1-128 characters of [A-Za-z0-9_-]",
                ));
            }
            if !seen.insert(id) {
                return Err(ConfigError::new(Some(id), "appId", "duplicate app id"));
            }
            check_limits(Some(id), "app", &app.limits(&self.server.limits()))?;
            for (field, list) in [
                ("adminSourceAddress", &app.admin_source_address),
                ("clientSourceAddress", &app.client_source_address),
            ] {
                if let Some(list) = list {
                    if list.len() > MAX_SOURCE_ENTRIES {
                        return Err(ConfigError::new(
                            Some(id),
                            field,
                            format!(
                                "{} entries; at most {MAX_SOURCE_ENTRIES} are allowed",
                                list.len()
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

impl ClusterConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.nats.is_empty() {
            return Err(ConfigError::new(
                None,
                "server.cluster.nats",
                "at least one NATS URL is needed",
            ));
        }
        if !is_subject_token(&self.name) {
            return Err(ConfigError::new(
                None,
                "server.cluster.name",
                "must be 1-64 characters of [A-Za-z0-9_-]",
            ));
        }
        if self.subject_prefix.len() > MAX_SUBJECT_PREFIX_BYTES
            || !self.subject_prefix.split('.').all(is_subject_token)
        {
            return Err(ConfigError::new(
                None,
                "server.cluster.subjectPrefix",
                "must be dot-separated tokens of [A-Za-z0-9_-], at most 256 characters",
            ));
        }
        if self.node_number > MAX_NODE_NUMBER {
            return Err(ConfigError::new(
                None,
                "server.cluster.nodeNumber",
                "must be 0-4095 (unique in the cluster)",
            ));
        }
        self.security().validate()
    }
}

/// The limits every connection of `app` (or, `app` = `None`, the server defaults) gets:
/// message size and pending bytes must be bounded.
fn check_limits(app: Option<&str>, scope: &str, limits: &LimitsConfig) -> Result<(), ConfigError> {
    if limits.max_message_bytes == 0 {
        return Err(ConfigError::new(
            app,
            &format!("{scope}.maxMessageBytes"),
            "must be greater than 0",
        ));
    }
    if limits.max_message_bytes > 16 * 1024 * 1024 {
        return Err(ConfigError::new(
            app,
            &format!("{scope}.maxMessageBytes"),
            "at most 16 MiB",
        ));
    }
    if limits.max_pending_bytes == 0 {
        return Err(ConfigError::new(
            app,
            &format!("{scope}.maxPendingBytes"),
            "must be greater than 0 (never unlimited)",
        ));
    }
    Ok(())
}
