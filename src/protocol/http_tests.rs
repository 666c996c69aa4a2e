//! Tests for `http`: head parsing, upgrade validation, query parameters, responses.

use super::*;

const UPGRADE: &[u8] = b"GET /apps/b5cvf368?access_token=eyJ.secret.sig&x=1 HTTP/1.1\r\n\
Host: localhost:8080\r\n\
Upgrade: WebSocket\r\n\
Connection: keep-alive, Upgrade\r\n\
Sec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Authorization: Bearer hunter2\r\n\
\r\n";

#[test]
fn parses_a_head_and_splits_the_query() {
    let head = parse_request(UPGRADE).unwrap().unwrap();
    assert_eq!(head.method, "GET");
    assert_eq!(head.path, "/apps/b5cvf368");
    assert_eq!(head.query, Some("access_token=eyJ.secret.sig&x=1"));
    assert_eq!(head.head_len, UPGRADE.len());
    assert_eq!(head.header("host"), Some("localhost:8080"));
    assert_eq!(head.header("HOST"), Some("localhost:8080"));
    assert_eq!(head.header("missing"), None);
    assert!(head.keep_alive());
    assert_eq!(head.content_length(), Ok(None));
}

#[test]
fn answers_need_more_at_every_prefix() {
    for end in 0..UPGRADE.len() {
        assert_eq!(
            parse_request(&UPGRADE[..end])
                .unwrap()
                .map(|head| head.head_len),
            None,
            "{end}"
        );
    }
}

#[test]
fn reports_head_len_before_the_body() {
    let request = b"POST /api/topics/app/publish HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
    let head = parse_request(request).unwrap().unwrap();
    assert_eq!(&request[head.head_len..], b"{}");
    assert_eq!(head.content_length(), Ok(Some(2)));
    assert_eq!(head.query, None);
}

#[test]
fn bounds_the_head() {
    let mut long = b"GET / HTTP/1.1\r\nX-Filler: ".to_vec();
    long.resize(MAX_HEAD_BYTES - 1, b'a');
    assert_eq!(parse_request(&long).map(|head| head.is_some()), Ok(false));
    long.push(b'a');
    assert_eq!(parse_request(&long).unwrap_err(), HttpError::HeadTooLarge);
    assert_eq!(HttpError::HeadTooLarge.status(), 431);

    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for index in 0..=MAX_HEADERS {
        many.extend(format!("X-{index}: v\r\n").bytes());
    }
    many.extend(b"\r\n");
    assert_eq!(parse_request(&many).unwrap_err(), HttpError::TooManyHeaders);
    assert_eq!(HttpError::TooManyHeaders.status(), 431);

    assert_eq!(
        parse_request(b"GET / FTP/1.1\r\n\r\n").unwrap_err(),
        HttpError::Malformed
    );
    assert_eq!(
        parse_request(b"G(T / HTTP/1.1\r\n\r\n").unwrap_err(),
        HttpError::Malformed
    );
    assert_eq!(
        parse_request(b"GET ?a=1 HTTP/1.1\r\n\r\n").unwrap_err(),
        HttpError::InvalidTarget
    );
    assert_eq!(HttpError::Malformed.status(), 400);
}

#[test]
fn checks_content_length() {
    let parse = |headers: &str| {
        let request = format!("POST / HTTP/1.1\r\n{headers}\r\n");
        let head = parse_request(request.as_bytes()).unwrap().unwrap();
        head.content_length()
    };
    assert_eq!(parse("Content-Length: 10\r\n"), Ok(Some(10)));
    assert_eq!(
        parse("Content-Length: 10\r\ncontent-length: 10\r\n"),
        Ok(Some(10))
    );
    assert_eq!(
        parse("Content-Length: 10\r\nContent-Length: 11\r\n"),
        Err(HttpError::InvalidContentLength)
    );
    assert_eq!(
        parse("Content-Length: +5\r\n"),
        Err(HttpError::InvalidContentLength)
    );
    assert_eq!(
        parse("Content-Length: \r\n"),
        Err(HttpError::InvalidContentLength)
    );
    assert_eq!(
        parse("Content-Length: 99999999999999999999999\r\n"),
        Err(HttpError::InvalidContentLength)
    );
    assert_eq!(
        parse("Transfer-Encoding: chunked\r\n"),
        Err(HttpError::UnsupportedTransferEncoding)
    );
    assert_eq!(HttpError::UnsupportedTransferEncoding.status(), 501);
}

#[test]
fn decides_keep_alive() {
    let keep_alive = |request: &[u8]| parse_request(request).unwrap().unwrap().keep_alive();
    assert!(keep_alive(b"GET / HTTP/1.1\r\n\r\n"));
    assert!(!keep_alive(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n"));
    assert!(!keep_alive(b"GET / HTTP/1.0\r\n\r\n"));
    assert!(keep_alive(
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    ));
}

#[test]
fn accepts_a_valid_upgrade() {
    let head = parse_request(UPGRADE).unwrap().unwrap();
    assert!(is_websocket_upgrade(&head));
    // The sample from RFC 6455 §1.3.
    assert_eq!(
        websocket_accept(&head).unwrap(),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    let mut out = Vec::new();
    write_upgrade_response("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", None, &mut out);
    assert_eq!(
        out,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
}

#[test]
fn rejects_bad_upgrades() {
    let text = std::str::from_utf8(UPGRADE).unwrap();
    let cases: [(&str, &str, UpgradeError); 9] = [
        ("GET /apps", "POST /apps", UpgradeError::MethodNotGet),
        (
            "HTTP/1.1\r\n",
            "HTTP/1.0\r\n",
            UpgradeError::VersionNotHttp11,
        ),
        (
            "Upgrade: WebSocket",
            "Upgrade: h2c",
            UpgradeError::MissingUpgrade,
        ),
        (
            "Connection: keep-alive, Upgrade",
            "Connection: keep-alive",
            UpgradeError::MissingConnectionUpgrade,
        ),
        (
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Version: 8",
            UpgradeError::UnsupportedVersion,
        ),
        (
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "X-Nothing: 1",
            UpgradeError::InvalidKey,
        ),
        (
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ",
            UpgradeError::InvalidKey,
        ),
        (
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub2*jZQ==",
            UpgradeError::InvalidKey,
        ),
        (
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=A",
            UpgradeError::InvalidKey,
        ),
    ];
    for (from, to, expected) in cases {
        let request = text.replacen(from, to, 1);
        let head = parse_request(request.as_bytes()).unwrap().unwrap();
        assert_eq!(websocket_accept(&head), Err(expected), "{to}");
        assert_eq!(expected.status(), 400);
    }
    let plain = parse_request(b"GET /health HTTP/1.1\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(!is_websocket_upgrade(&plain));
}

#[test]
fn never_prints_secrets() {
    let head = parse_request(UPGRADE).unwrap().unwrap();
    let printed = format!("{head:?}");
    assert!(!printed.contains("secret"), "{printed}");
    assert!(!printed.contains("access_token"), "{printed}");
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(printed.contains("/apps/b5cvf368"), "{printed}");
}

#[test]
fn looks_up_and_decodes_query_parameters() {
    let query = "a=1&access_token=ab%2Ecd+e%zz%4&empty&x%5Fy=%E2%9C%93&a=2&bad=%FF";
    assert_eq!(query_param(query, "a").as_deref(), Some("1"));
    assert_eq!(
        query_param(query, "access_token").as_deref(),
        Some("ab.cd e%zz%4")
    );
    assert_eq!(query_param(query, "empty").as_deref(), Some(""));
    assert_eq!(query_param(query, "x_y").as_deref(), Some("✓"));
    assert_eq!(query_param(query, "bad").as_deref(), Some("\u{FFFD}"));
    assert_eq!(query_param(query, "missing"), None);
    assert!(matches!(
        query_param("t=plain", "t"),
        Some(Cow::Borrowed("plain"))
    ));
    assert_eq!(query_param("", "t"), None);
}

#[test]
fn writes_responses() {
    let mut out = Vec::new();
    write_response(200, "application/json", b"{\"ok\":true}", true, &mut out);
    assert_eq!(
        out,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\nConnection: keep-alive\r\n\r\n{\"ok\":true}"
    );
    out.clear();
    write_json_error(401, "bad \"token\"\n", false, &mut out);
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
    assert!(text.contains("Connection: close\r\n"));
    let body = &out[text.find("\r\n\r\n").unwrap() + 4..];
    let value: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(value, serde_json::json!({"error": "bad \"token\"\n"}));
    assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
    out.clear();
    write_response(42, "text/plain\r\nX-Injected: 1", b"", true, &mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
        "{text}"
    );
    assert!(!text.contains("\r\nX-Injected"), "{text}");
}

#[test]
fn a_head_response_carries_the_get_length_without_the_body() {
    let mut get = Vec::new();
    write_response_with_headers(
        200,
        "text/plain",
        &[("X-A", "1")],
        b"twelve bytes",
        true,
        &mut get,
    );
    let mut head = Vec::new();
    write_response_head(200, "text/plain", &[("X-A", "1")], 12, true, &mut head);
    assert_eq!(&get[..head.len()], &head[..]);
    assert_eq!(&get[head.len()..], b"twelve bytes");
    let text = String::from_utf8(head).unwrap();
    assert!(text.contains("Content-Length: 12\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n"), "{text}");
}

#[test]
fn joins_every_line_of_a_list_header_in_order() {
    let request = b"GET / HTTP/1.1\r\nX-Forwarded-For: 192.0.2.1\r\nHost: h\r\nx-forwarded-for: 203.0.113.7, 10.0.0.2\r\nX-Forwarded-For: \xff\r\n\r\n";
    let head = parse_request(request).unwrap().unwrap();
    assert_eq!(
        head.joined_header("X-Forwarded-For").as_deref(),
        Some("192.0.2.1, 203.0.113.7, 10.0.0.2, \u{fffd}")
    );
    assert_eq!(head.joined_header("forwarded"), None);
    let one = parse_request(b"GET / HTTP/1.1\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(
        one.joined_header("x-forwarded-for").as_deref(),
        Some("192.0.2.1")
    );
}
