//! Issue 13 §4 and §9: the client address behind trusted proxies, and the per-address
//! connection limit keyed on it.
//!
//! Every `X-Forwarded-For` line counts, joined in order; the walk from the right past
//! trusted proxies picks the client, so a forged line placed before the proxy's own passes
//! neither `adminSourceAddress`, nor `clientSourceAddress`, nor the anonymous-token limit.
//! An entry that is not an address makes the source unknown, which no filter entry admits.
//! `maxConnectionsPerAddress` counts per client address (IPv6 per /64), answers 429, is
//! counted as `address_full`, and follows reloads like the other per-app limits.
//!
//! The tests connect from 127.0.0.1, configured as a trusted proxy.

mod common;
use common::*;
use serde_json::{json, Value};
use std::net::TcpStream;
use std::time::Duration;
use tungstenite::client::IntoClientRequest;

const PER_ADDRESS_APP: &str = "per-address-app";
const ANONYMOUS_APP: &str = "anonymous-app";

/// The test configuration: loopback is a trusted proxy; one app limits connections per
/// address to 2, another hands out one anonymous token per address per minute.
fn config() -> Value {
    let mut config = base_config();
    config["server"]["trustedProxies"] = json!(["127.0.0.0/8"]);
    let key = json!({"source": "raw", "key": SECRET, "algorithms": ["HS256"]});
    let apps = config["apps"].as_array_mut().unwrap();
    apps.push(json!({"appId": PER_ADDRESS_APP, "authKey": key, "maxConnectionsPerAddress": 2}));
    apps.push(json!({"appId": ANONYMOUS_APP, "authKey": key,
                     "anonymous": {"maxTokensPerMinute": 1}}));
    config
}

/// An upgrade carrying one `X-Forwarded-For` line per entry of `forwarded`, as a proxy
/// that appends its own line would send it. `Err(status)` when refused.
fn upgrade_via(
    server: &TestServer,
    app: &str,
    subject: &str,
    forwarded: &[&str],
) -> Result<Client, u16> {
    let mut request = server
        .url(app, &token(subject, &[]))
        .into_client_request()
        .unwrap();
    for line in forwarded {
        request
            .headers_mut()
            .append("X-Forwarded-For", line.parse().unwrap());
    }
    let stream = TcpStream::connect(server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    match tungstenite::client::client(request, stream) {
        Ok((socket, _)) => {
            let mut client = Client {
                socket,
                welcome: Value::Null,
                acks: true,
            };
            client.welcome = client.next_json();
            Ok(client)
        }
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            Err(response.status().as_u16())
        }
        Err(error) => panic!("handshake failed: {error}"),
    }
}

/// A plain HTTP request with one `X-Forwarded-For` line per entry of `forwarded`.
fn http_via(
    server: &TestServer,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    forwarded: &[&str],
    body: &str,
) -> (u16, String) {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for line in forwarded {
        request.push_str(&format!("X-Forwarded-For: {line}\r\n"));
    }
    if let Some(token) = authorization {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    raw_http(server, request.as_bytes())
}

fn remote_address(client: &Client) -> &str {
    client.welcome["data"]["connection"]["remoteAddress"]
        .as_str()
        .unwrap()
}

/// The value of the metric line that starts with `name`.
fn metric(server: &TestServer, name: &str) -> u64 {
    let (status, text) = http(server, "GET", "/metrics", None, "");
    assert_eq!(status, 200);
    text.lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[test]
fn a_forged_line_before_the_proxys_own_does_not_pass_admin_source_address() {
    let server = start_with(config());
    let admin = admin_token(&[PUBLISH_ALL]);
    let path = format!("/api/topics/{FENCED_APP}/publish");
    let body = json!({"topic": "main", "message": "hi"}).to_string();
    // FENCED_APP's adminSourceAddress is 192.0.2.0/24. The caller at 203.0.113.66 forged
    // a line naming an allowed address; its proxy added its own line after it.
    let forged = ["192.0.2.10", "203.0.113.66"];
    let (status, answer) = http_via(&server, "POST", &path, Some(&admin), &forged, &body);
    assert_eq!(status, 401, "{answer}");
    assert!(answer.contains("source address not allowed"), "{answer}");
    // The same forgery on one line (the proxy appended to it) is refused too.
    let joined = ["192.0.2.10, 203.0.113.66"];
    let (status, _) = http_via(&server, "POST", &path, Some(&admin), &joined, &body);
    assert_eq!(status, 401);
    // A client really at 192.0.2.10 gets through, whatever it wrote on the left.
    let genuine = ["203.0.113.66", "192.0.2.10"];
    let (status, answer) = http_via(&server, "POST", &path, Some(&admin), &genuine, &body);
    assert_eq!(status, 200, "{answer}");
    // An entry that is not an address makes the source unknown: no entry admits it.
    let hidden = ["unknown"];
    let (status, _) = http_via(&server, "POST", &path, Some(&admin), &hidden, &body);
    assert_eq!(status, 401);
}

#[test]
fn a_forged_line_does_not_pass_client_source_address() {
    let server = start_with(config());
    // FENCED_APP's clientSourceAddress is 10.0.0.0/8 except 10.1.1.1.
    assert_eq!(
        upgrade_via(&server, FENCED_APP, "u", &["10.2.2.2", "203.0.113.66"]).err(),
        Some(403)
    );
    assert_eq!(
        upgrade_via(&server, FENCED_APP, "u", &["10.2.2.2", "10.1.1.1"]).err(),
        Some(403),
        "the denied address, whatever came before it"
    );
    let client = upgrade_via(&server, FENCED_APP, "u", &["203.0.113.66", "10.2.2.2"])
        .expect("a client inside 10.0.0.0/8");
    assert_eq!(remote_address(&client), "10.2.2.2");
    assert_eq!(
        upgrade_via(&server, FENCED_APP, "u", &["10.2.2.2, _hidden"]).err(),
        Some(403),
        "an unknown source matches no entry"
    );
    // An app without a filter admits an unknown source, and says so in the welcome.
    let unknown = upgrade_via(&server, APP, "u", &["10.2.2.2", "unknown"]).unwrap();
    assert_eq!(remote_address(&unknown), "unknown");
    let ported = upgrade_via(&server, APP, "u", &["[2001:db8::7]:4711"]).unwrap();
    assert_eq!(remote_address(&ported), "2001:db8::7");
}

#[test]
fn forged_lines_do_not_buy_fresh_anonymous_tokens() {
    let server = start_with(config());
    let path = format!("/token/anonymous/{ANONYMOUS_APP}");
    let (status, answer) = http_via(
        &server,
        "POST",
        &path,
        None,
        &["198.51.100.1", "203.0.113.66"],
        "",
    );
    assert_eq!(status, 200, "{answer}");
    // A new forged address on the left does not make a new source: one token a minute.
    let (status, _) = http_via(
        &server,
        "POST",
        &path,
        None,
        &["198.51.100.2", "203.0.113.66"],
        "",
    );
    assert_eq!(status, 429);
    let (status, _) = http_via(&server, "POST", &path, None, &["203.0.113.67"], "");
    assert_eq!(status, 200, "another client has its own budget");
    // Unknown sources share one budget instead of each getting one.
    let (status, _) = http_via(&server, "POST", &path, None, &["unknown"], "");
    assert_eq!(status, 200);
    let (status, _) = http_via(&server, "POST", &path, None, &["garbage"], "");
    assert_eq!(status, 429);
}

/// Retries `attempt` until it succeeds (a close is released by the worker at its own pace).
fn eventually<T>(mut attempt: impl FnMut() -> Result<T, u16>) -> T {
    wait_for("the connect is admitted", PATIENCE, || match attempt() {
        Ok(value) => Some(value),
        Err(status) => {
            assert_eq!(status, 429);
            None
        }
    })
}

#[test]
fn connections_per_address_are_limited_per_client_address_and_ipv6_per_64() {
    let server = start_with(config());
    let first = upgrade_via(&server, PER_ADDRESS_APP, "a", &["203.0.113.1"]).unwrap();
    let _second = upgrade_via(&server, PER_ADDRESS_APP, "b", &["203.0.113.1"]).unwrap();
    assert_eq!(
        upgrade_via(&server, PER_ADDRESS_APP, "c", &["203.0.113.1"]).err(),
        Some(429)
    );
    // Keyed on the resolved client: a forged line does not make a new address.
    assert_eq!(
        upgrade_via(
            &server,
            PER_ADDRESS_APP,
            "c",
            &["198.51.100.9", "203.0.113.1"]
        )
        .err(),
        Some(429)
    );
    let _other = upgrade_via(&server, PER_ADDRESS_APP, "d", &["203.0.113.2"]).unwrap();
    // IPv6: one /64 is one address.
    let _v6a = upgrade_via(&server, PER_ADDRESS_APP, "e", &["2001:db8::1"]).unwrap();
    let _v6b = upgrade_via(&server, PER_ADDRESS_APP, "f", &["2001:db8::2"]).unwrap();
    assert_eq!(
        upgrade_via(&server, PER_ADDRESS_APP, "g", &["2001:db8::ffff:3"]).err(),
        Some(429)
    );
    let _v6c = upgrade_via(&server, PER_ADDRESS_APP, "h", &["2001:db8:0:1::1"]).unwrap();
    // Other apps are not limited (the server default is 0).
    let _free: Vec<Client> = (0..3)
        .map(|_| upgrade_via(&server, APP, "u", &["203.0.113.1"]).unwrap())
        .collect();
    assert_eq!(
        metric(
            &server,
            "ringcast_handshakes_refused_total{reason=\"address_full\"}"
        ),
        3
    );
    // A closed connection gives its place back.
    first.close();
    let _again = eventually(|| upgrade_via(&server, PER_ADDRESS_APP, "c", &["203.0.113.1"]));
}

#[test]
fn the_server_default_applies_unless_an_app_overrides_it() {
    let mut config = config();
    config["server"]["maxConnectionsPerAddress"] = json!(1);
    config["apps"][1]["maxConnectionsPerAddress"] = json!(0);
    let server = start_with(config);
    let _one = upgrade_via(&server, APP, "a", &["203.0.113.5"]).unwrap();
    assert_eq!(
        upgrade_via(&server, APP, "b", &["203.0.113.5"]).err(),
        Some(429)
    );
    let _quiet: Vec<Client> = (0..3)
        .map(|_| upgrade_via(&server, QUIET_APP, "q", &["203.0.113.5"]).unwrap())
        .collect();
}

#[test]
fn a_reload_applies_the_per_address_limit_to_connections_made_after_it() {
    let mut unlimited = config();
    unlimited["apps"][4]["maxConnectionsPerAddress"] = json!(0);
    let file = ConfigFile::new(&unlimited);
    let server = start_from_file(&file);
    let handle = server.handle.as_ref().unwrap();
    let before: Vec<Client> = (0..2)
        .map(|_| upgrade_via(&server, PER_ADDRESS_APP, "u", &["203.0.113.9"]).unwrap())
        .collect();
    // Set to 1: the connections made before are not counted, the first one after is.
    let mut limited = config();
    limited["apps"][4]["maxConnectionsPerAddress"] = json!(1);
    file.write(&limited);
    handle.reload().expect("reload applies");
    let counted = upgrade_via(&server, PER_ADDRESS_APP, "u", &["203.0.113.9"]).unwrap();
    assert_eq!(
        upgrade_via(&server, PER_ADDRESS_APP, "u", &["203.0.113.9"]).err(),
        Some(429)
    );
    // Closing an uncounted connection frees nothing; closing the counted one does.
    for client in before {
        client.close();
    }
    // Once the server has let them go, only `counted` is open.
    wait_until("the two closes are processed", PATIENCE, || {
        metric_over_workers(&server, "ringcast_connections") == 1
    });
    assert_eq!(
        upgrade_via(&server, PER_ADDRESS_APP, "u", &["203.0.113.9"]).err(),
        Some(429)
    );
    counted.close();
    let replacement = eventually(|| upgrade_via(&server, PER_ADDRESS_APP, "u", &["203.0.113.9"]));
    // Lifted: no limit, and the connection counted before it is still released at close.
    file.write(&unlimited);
    handle.reload().expect("reload applies");
    let _many: Vec<Client> = (0..3)
        .map(|_| upgrade_via(&server, PER_ADDRESS_APP, "u", &["203.0.113.9"]).unwrap())
        .collect();
    replacement.close();
    wait_until("the replacement's close is processed", PATIENCE, || {
        metric_over_workers(&server, "ringcast_connections") == 3
    });
    file.write(&limited);
    handle.reload().expect("reload applies");
    let _fresh = eventually(|| upgrade_via(&server, PER_ADDRESS_APP, "u", &["203.0.113.9"]));
}
