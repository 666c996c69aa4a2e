//! The binary's subcommands other than running the broker (binary-only modules: like
//! `main.rs`, they may use `anyhow`).
//!
//! - `token`        `ringcast token`: mint a token from a config's key (and check it verifies)
//! - `keys`         `ringcast keys` / `ringcast init`: print what `ringcast::starter` wrote
//! - `development`  the development app of `ringcast` without `--config`, and its banner
//! - `client`       `ringcast subscribe` / `ringcast publish`: a debug client
//! - `hint`         how to write a `ringcast` command so that a printed hint runs as printed
//!
//! Must not: reach into the runtime — these commands build a config, print, or talk to a
//! broker over the network like any client.

pub mod client;
pub mod development;
pub mod hint;
pub mod keys;
pub mod token;

use anyhow::Context as _;
use ringcast::config::Config;
use std::path::Path;

/// Reads, parses and fully checks (keys compiled, TLS files read, the cluster's credential
/// and certificate files parsed — never connecting) the configuration file.
/// A file that cannot be read says so ("cannot read FILE: …"); anything else is an
/// "invalid configuration FILE: …" naming the app and field.
pub fn load_config(path: &str) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    let invalid = || format!("invalid configuration {path}");
    let mut config = Config::from_json(&text).with_context(invalid)?;
    config.source = Some(Path::new(path).to_path_buf());
    ringcast::broker::apps::Registry::compile(&config).with_context(invalid)?;
    if let Some(tls) = &config.server.tls {
        ringcast::tls::server_config(tls).with_context(invalid)?;
    }
    if let Some(cluster) = &config.server.cluster {
        cluster.security().check_files().with_context(invalid)?;
    }
    Ok(config)
}

/// What `check-config` and a broker start print (stderr, or the log) about a config that
/// is valid but does nothing useful; `None` when there is nothing to say.
pub fn config_warning(config: &Config) -> Option<&'static str> {
    config.apps.is_empty().then_some(
        "the configuration has no apps: every WebSocket connection and HTTP API call will be \
         refused with 404 until apps are added (and reloaded)",
    )
}
