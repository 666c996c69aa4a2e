//! The verified-token cache, black-box: a reconnect with the same token is a hit (on any
//! worker), limits still apply to a cached token, a reload that changes the app's key
//! refuses the old token, and an expired token is refused even though it is cached.

mod common;

use common::*;
use ringcast::auth::{mint, Algorithm};
use serde_json::{json, Value};

const SERVER_ADMIN_SECRET: &str = "server-admin-secret-for-cache-tests";
const HITS: &str = "ringcast_token_cache_hits_total";
const MISSES: &str = "ringcast_token_cache_misses_total";
const ENTRIES: &str = "ringcast_token_cache_entries";

fn reload_config() -> Value {
    let mut config = base_config();
    config["server"]["adminKey"] =
        json!({"source": "raw", "key": SERVER_ADMIN_SECRET, "algorithms": ["HS256"]});
    config
}

fn reload(server: &TestServer) -> (u16, String) {
    let token = mint::sign(
        Algorithm::HS256,
        SERVER_ADMIN_SECRET,
        &json!({"sub": "operator", "exp": now() + 600}),
    )
    .unwrap();
    http(server, "POST", "/admin/reload", Some(&token), "")
}

#[test]
fn a_reconnect_with_the_same_token_is_a_hit_on_every_worker() {
    let server = start_server();
    let token = token("alice", &[READ_ALL]);
    let first = connect(&server, APP, &token);
    assert_eq!((metric(&server, HITS), metric(&server, MISSES)), (0, 1));
    assert_eq!(metric(&server, ENTRIES), 1);
    // Reconnect until a connection lands on the other worker: every one after the first
    // is answered from the cache the workers share.
    let mut clients = vec![first];
    while clients.iter().all(|c| c.worker() == clients[0].worker()) {
        assert!(
            clients.len() < 200,
            "the kernel never chose the other worker"
        );
        clients.push(connect(&server, APP, &token));
    }
    let reconnects = clients.len() as u64 - 1;
    assert_eq!(metric(&server, HITS), reconnects);
    assert_eq!(metric(&server, MISSES), 1);
    // Another token is verified.
    connect(&server, APP, &common::token("bob", &[]));
    assert_eq!(metric(&server, MISSES), 2);
    assert_eq!(metric(&server, ENTRIES), 2);
}

#[test]
fn a_cached_token_still_meets_the_connection_limits() {
    let server = start_server();
    // LIMITED_APP: at most 2 connections per subject.
    let token = token("carol", &[]);
    let _one = connect(&server, LIMITED_APP, &token);
    let _two = connect(&server, LIMITED_APP, &token);
    assert_eq!(try_connect(&server, LIMITED_APP, &token).err(), Some(429));
    assert_eq!(metric(&server, HITS), 2);
}

#[test]
fn a_reload_that_changes_the_key_refuses_the_cached_token() {
    let file = ConfigFile::new(&reload_config());
    let server = start_from_file(&file);
    let old = token("alice", &[]);
    connect(&server, APP, &old);
    connect(&server, APP, &old);
    assert_eq!(metric(&server, HITS), 1);

    // A reload that leaves the key as it was keeps the cached token.
    assert_eq!(reload(&server).0, 200);
    connect(&server, APP, &old);
    assert_eq!(metric(&server, HITS), 2);

    // A reload with another secret for the app: the old token no longer connects.
    let mut config = reload_config();
    let new_secret = "a-new-secret-after-rotation";
    config["apps"][0]["authKey"] =
        json!({"source": "raw", "key": new_secret, "algorithms": ["HS256"]});
    file.write(&config);
    assert_eq!(reload(&server).0, 200);
    assert_eq!(metric(&server, ENTRIES), 0, "the reload clears the cache");
    assert_eq!(try_connect(&server, APP, &old).err(), Some(401));
    assert_eq!(metric(&server, HITS), 2);
    let rotated = mint::sign(
        Algorithm::HS256,
        new_secret,
        &json!({"sub": "alice", "exp": now() + 600}),
    )
    .unwrap();
    connect(&server, APP, &rotated);
    // Apps whose key did not change verify as before.
    connect(&server, QUIET_APP, &old);
}

#[test]
fn an_expired_token_is_refused_even_when_cached() {
    let server = start_server();
    // Valid for about two more seconds: `exp` is 28 s past, inside the 30 s leeway.
    let token = token_with(json!({"sub": "dave", "exp": now() - 28}));
    connect(&server, APP, &token);
    connect(&server, APP, &token);
    assert_eq!(metric(&server, HITS), 1);
    // Once past the leeway the cached entry answers "expired", like verification would.
    wait_until("the cached token expires", PATIENCE, || {
        try_connect(&server, APP, &token).is_err()
    });
    assert_eq!(try_connect(&server, APP, &token).err(), Some(401));
}
