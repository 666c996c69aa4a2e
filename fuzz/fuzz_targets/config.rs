//! Configuration (`config::Config::from_json` + `broker::apps::Registry::compile`).
//!
//! Input: the text of a configuration file. Checks: no panic, in parsing, validation or
//! compiling keys and address lists; a configuration that validates keeps its limits in
//! range (`maxMessageBytes` 1 B-16 MiB, `maxPendingBytes` not 0, at most 64 workers); the
//! `Debug` of a config never prints an app's key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::broker::apps::Registry;
use ringcast::config::{Config, MAX_WORKERS};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match Config::from_json(text) {
        Ok(config) => config,
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };
    assert!(config.server.workers <= MAX_WORKERS);
    let defaults = config.server.limits();
    // Debug of the whole tree must work; secrecy is checked per key, since the fuzzer may
    // copy a key's text into another field (it did: into a trustedProxies entry).
    let _ = format!("{config:?}");
    for app in &config.apps {
        let limits = app.limits(&defaults);
        assert!((1..=16 * 1024 * 1024).contains(&limits.max_message_bytes));
        assert!(limits.max_pending_bytes > 0);
        for key in std::iter::once(&app.auth_key).chain(app.admin_key.as_ref()) {
            // Long, plain keys only, so the check cannot hit a field name by chance.
            if key.key.len() >= 16 && key.key.bytes().all(|byte| byte.is_ascii_alphanumeric()) {
                // Precise: Debug must not change when only the key does (the fuzzer also
                // copies a key's text into other fields, e.g. an algorithm name).
                let mut other = key.clone();
                other.key = "a-different-key".into();
                assert_eq!(format!("{key:?}"), format!("{other:?}"), "Debug printed a key");
            }
        }
    }
    let _ = config.listen_address();
    match Registry::compile(&config) {
        Ok(registry) => {
            for app in &config.apps {
                assert!(registry.get(&app.app_id).is_some(), "app lost in compiling");
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
