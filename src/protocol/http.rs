//! HTTP/1.1 request heads and responses: enough HTTP for the WebSocket upgrade, the
//! admin API and the operational endpoints.
//!
//! Responsibility: parse a request head (with `httparse`) out of the bytes read so far,
//! validate a WebSocket upgrade (RFC 6455 §4.2.1) and compute its accept key, look up
//! query parameters, and write the few responses the broker sends.
//!
//! Must not: do I/O, read or buffer bodies (the caller reads `content_length` bytes),
//! decide routing or authentication, or ever print the query string or the
//! `Authorization` value (they carry tokens): neither `Debug` nor any error includes them.
//!
//! Invariants: `parse_request` consumes nothing (it borrows), answers `Ok(None)` only
//! while the head is incomplete and shorter than [`MAX_HEAD_BYTES`], and never panics.

use std::borrow::Cow;
use std::fmt;

use thiserror::Error;

/// The largest request head (request line + headers + blank line) accepted. 8 KiB is the
/// common default of nginx and Node.js: it holds a JWT in the query string (typically
/// under 2 KiB) plus browser headers, and bounds what an unauthenticated peer can make
/// the worker buffer before it is refused with 431.
pub const MAX_HEAD_BYTES: usize = 8192;

/// The most header fields accepted. Browsers send about 15 on an upgrade; 32 leaves room
/// for proxies while keeping the parse array on the stack (32 × 32 bytes).
pub const MAX_HEADERS: usize = 32;

/// A request head that could not be parsed. The caller should answer with
/// [`HttpError::status`] (via [`write_json_error`]) and close the connection, since the
/// stream position is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HttpError {
    /// The head is not complete within [`MAX_HEAD_BYTES`]. Answer 431.
    #[error("request head larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] header fields. Answer 431.
    #[error("more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    /// Not an HTTP/1.x request head (bad token, bad byte, bad version…). Answer 400.
    #[error("malformed request head")]
    Malformed,
    /// The request target has an empty path (e.g. `?a=b`). Answer 400.
    #[error("request target has an empty path")]
    InvalidTarget,
    /// `Content-Length` is not a decimal number, or appears twice with different values.
    /// Answer 400.
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// The request has a `Transfer-Encoding` (e.g. chunked), which we do not implement.
    /// Answer 501 (RFC 9112 §6.1).
    #[error("Transfer-Encoding is not supported")]
    UnsupportedTransferEncoding,
}

impl HttpError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::UnsupportedTransferEncoding => 501,
            HttpError::Malformed | HttpError::InvalidTarget | HttpError::InvalidContentLength => {
                400
            }
        }
    }
}

/// Why a request is not an acceptable WebSocket upgrade. Every variant is answered with
/// 400 (PROTOCOL.md §3, decided: "a malformed upgrade"), then the connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum UpgradeError {
    /// The method is not GET. Answer 400.
    #[error("WebSocket upgrade must use GET")]
    MethodNotGet,
    /// HTTP/1.0. Answer 400.
    #[error("WebSocket upgrade needs HTTP/1.1")]
    VersionNotHttp11,
    /// No `Upgrade: websocket`. Answer 400.
    #[error("missing Upgrade: websocket")]
    MissingUpgrade,
    /// `Connection` lacks the `upgrade` token. Answer 400.
    #[error("missing Connection: upgrade")]
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Version` is not 13. Answer 400.
    #[error("Sec-WebSocket-Version must be 13")]
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` missing or not the base64 of 16 bytes. Answer 400.
    #[error("missing or invalid Sec-WebSocket-Key")]
    InvalidKey,
}

impl UpgradeError {
    /// The HTTP status to answer with: always 400.
    pub fn status(&self) -> u16 {
        400
    }
}

/// A parsed request head, borrowing the input. Header values that are not UTF-8 are
/// treated as absent by [`RequestHead::header`].
#[derive(Clone, Copy)]
pub struct RequestHead<'a> {
    /// The method token, e.g. `GET`.
    pub method: &'a str,
    /// The request target up to `?` (not percent-decoded).
    pub path: &'a str,
    /// The raw query after `?`, if any. A secret: may carry `access_token`.
    pub query: Option<&'a str>,
    /// Bytes of the head including the final blank line; a body starts here.
    pub head_len: usize,
    /// The minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub version_minor: u8,
    /// The parsed headers; only the first `header_count` are meaningful.
    headers: [httparse::Header<'a>; MAX_HEADERS],
    header_count: usize,
}

/// Headers whose values are never printed.
fn is_secret_header(name: &str) -> bool {
    ["authorization", "proxy-authorization", "cookie"]
        .iter()
        .any(|secret| name.eq_ignore_ascii_case(secret))
}

impl fmt::Debug for RequestHead<'_> {
    /// Prints no query string and no credential header values.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Headers<'h, 'a>(&'h [httparse::Header<'a>]);
        impl fmt::Debug for Headers<'_, '_> {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut list = formatter.debug_map();
                for header in self.0 {
                    if is_secret_header(header.name) {
                        list.entry(&header.name, &"<redacted>");
                    } else {
                        list.entry(&header.name, &String::from_utf8_lossy(header.value));
                    }
                }
                list.finish()
            }
        }
        formatter
            .debug_struct("RequestHead")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query.map(|_| "<redacted>"))
            .field("head_len", &self.head_len)
            .field("version_minor", &self.version_minor)
            .field("headers", &Headers(self.headers()))
            .finish()
    }
}

/// Whether a comma-separated header value contains `token` (case-insensitive).
fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

impl<'a> RequestHead<'a> {
    /// The parsed header fields, in order.
    fn headers(&self) -> &[httparse::Header<'a>] {
        self.headers.get(..self.header_count).unwrap_or(&[])
    }

    /// The value of the first header called `name` (case-insensitive), trimmed of
    /// surrounding whitespace; `None` if absent or not UTF-8.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers()
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case(name))
            .and_then(|header| std::str::from_utf8(header.value).ok())
            .map(str::trim)
    }

    /// Every field line called `name` (case-insensitive), in order, joined with `", "` into
    /// one list value (RFC 9110 §5.3); `None` when there is none. Bytes that are not UTF-8
    /// become U+FFFD, so such a line reads as garbage instead of being skipped.
    pub fn joined_header(&self, name: &str) -> Option<String> {
        let mut joined: Option<String> = None;
        for header in self
            .headers()
            .iter()
            .filter(|header| header.name.eq_ignore_ascii_case(name))
        {
            let value = String::from_utf8_lossy(header.value);
            match &mut joined {
                None => joined = Some(value.into_owned()),
                Some(list) => {
                    list.push_str(", ");
                    list.push_str(&value);
                }
            }
        }
        joined
    }

    /// All values of the headers called `name` that are UTF-8.
    fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.headers()
            .iter()
            .filter(move |header| header.name.eq_ignore_ascii_case(name))
            .filter_map(|header| std::str::from_utf8(header.value).ok())
    }

    /// The body length: `None` without `Content-Length`. Errors on a non-numeric or
    /// conflicting value, or when a `Transfer-Encoding` is present (request smuggling
    /// defence: never guess the framing).
    pub fn content_length(&self) -> Result<Option<usize>, HttpError> {
        if self
            .headers()
            .iter()
            .any(|header| header.name.eq_ignore_ascii_case("transfer-encoding"))
        {
            return Err(HttpError::UnsupportedTransferEncoding);
        }
        let mut length = None;
        for header in self
            .headers()
            .iter()
            .filter(|header| header.name.eq_ignore_ascii_case("content-length"))
        {
            let digits = std::str::from_utf8(header.value)
                .map_err(|_| HttpError::InvalidContentLength)?
                .trim();
            if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
                return Err(HttpError::InvalidContentLength);
            }
            let value: usize = digits
                .parse()
                .map_err(|_| HttpError::InvalidContentLength)?;
            if length.is_some_and(|previous| previous != value) {
                return Err(HttpError::InvalidContentLength);
            }
            length = Some(value);
        }
        Ok(length)
    }

    /// Whether the connection stays open after the response: HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        let mut close = false;
        let mut keep_alive = false;
        for value in self.header_values("connection") {
            close |= has_token(value, "close");
            keep_alive |= has_token(value, "keep-alive");
        }
        if self.version_minor >= 1 {
            !close
        } else {
            keep_alive && !close
        }
    }
}

/// Parses a request head at the start of `input`. `Ok(None)`: incomplete, read more
/// (nothing is consumed; the body, if any, starts at `head_len`). Errors once the head
/// exceeds [`MAX_HEAD_BYTES`] or cannot be HTTP/1.x.
pub fn parse_request(input: &[u8]) -> Result<Option<RequestHead<'_>>, HttpError> {
    let window = input.get(..MAX_HEAD_BYTES).unwrap_or(input);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(window) {
        Ok(httparse::Status::Complete(head_len)) => head_len,
        Ok(httparse::Status::Partial) if input.len() >= MAX_HEAD_BYTES => {
            return Err(HttpError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(_) => return Err(HttpError::Malformed),
    };
    let (Some(method), Some(target), Some(version_minor)) =
        (request.method, request.path, request.version)
    else {
        return Err(HttpError::Malformed);
    };
    let header_count = request.headers.len();
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    if path.is_empty() {
        return Err(HttpError::InvalidTarget);
    }
    Ok(Some(RequestHead {
        method,
        path,
        query,
        head_len,
        version_minor,
        headers,
        header_count,
    }))
}

/// Whether the request asks for a WebSocket at all (`Upgrade` contains `websocket`), to
/// route it to the upgrade path, where [`websocket_accept`] validates the rest.
pub fn is_websocket_upgrade(head: &RequestHead) -> bool {
    head.header_values("upgrade")
        .any(|value| has_token(value, "websocket"))
}

/// Whether `key` is the standard base64 of 16 bytes: 22 alphabet characters and `==`.
fn is_valid_websocket_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    bytes.len() == 24
        && bytes.ends_with(b"==")
        && bytes[..22]
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || *byte == b'+' || *byte == b'/')
}

/// Validates a WebSocket upgrade request (RFC 6455 §4.2.1) and returns the
/// `Sec-WebSocket-Accept` value to send.
pub fn websocket_accept(head: &RequestHead) -> Result<String, UpgradeError> {
    if head.method != "GET" {
        return Err(UpgradeError::MethodNotGet);
    }
    if head.version_minor < 1 {
        return Err(UpgradeError::VersionNotHttp11);
    }
    if !is_websocket_upgrade(head) {
        return Err(UpgradeError::MissingUpgrade);
    }
    if !head
        .header_values("connection")
        .any(|value| has_token(value, "upgrade"))
    {
        return Err(UpgradeError::MissingConnectionUpgrade);
    }
    if head.header("sec-websocket-version") != Some("13") {
        return Err(UpgradeError::UnsupportedVersion);
    }
    let key = head
        .header("sec-websocket-key")
        .filter(|key| is_valid_websocket_key(key))
        .ok_or(UpgradeError::InvalidKey)?;
    Ok(tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// The value of a hexadecimal digit.
fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX` a byte; a `%`
/// not followed by two hex digits is kept literally. Borrows when nothing needs decoding.
/// Bytes that do not form UTF-8 become U+FFFD.
fn percent_decode(text: &str) -> Cow<'_, str> {
    if !text.bytes().any(|byte| byte == b'%' || byte == b'+') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        let escaped = match (byte, bytes.get(index + 1), bytes.get(index + 2)) {
            (b'%', Some(&high), Some(&low)) => hex_value(high)
                .zip(hex_value(low))
                .map(|(high, low)| high << 4 | low),
            _ => None,
        };
        match (byte, escaped) {
            (_, Some(value)) => {
                decoded.push(value);
                index += 3;
            }
            (b'+', None) => {
                decoded.push(b' ');
                index += 1;
            }
            (other, None) => {
                decoded.push(other);
                index += 1;
            }
        }
    }
    match String::from_utf8(decoded) {
        Ok(decoded) => Cow::Owned(decoded),
        Err(error) => Cow::Owned(String::from_utf8_lossy(error.as_bytes()).into_owned()),
    }
}

/// The percent-decoded value of the first query parameter called `name` (names are
/// decoded too before comparing). A parameter without `=` has the empty value.
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(key, _)| percent_decode(key) == name)
        .map(|(_, value)| percent_decode(value))
}

/// Appends the `101 Switching Protocols` response that completes an upgrade.
pub fn write_upgrade_response(accept: &str, extensions: Option<&str>, out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    push_header_value(accept, out);
    if let Some(extensions) = extensions {
        out.extend_from_slice(b"\r\nSec-WebSocket-Extensions: ");
        push_header_value(extensions, out);
    }
    out.extend_from_slice(b"\r\n\r\n");
}

/// Appends a header value, dropping CR and LF so that no value can inject a header.
fn push_header_value(value: &str, out: &mut Vec<u8>) {
    out.extend(
        value
            .bytes()
            .filter(|byte| *byte != b'\r' && *byte != b'\n'),
    );
}

/// Appends a complete response: status line, `Content-Type`, `Content-Length`,
/// `Connection` and the body. A status outside 100–999 is written as 500.
pub fn write_response(
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    out: &mut Vec<u8>,
) {
    write_response_with_headers(status, content_type, &[], body, keep_alive, out);
}

/// [`write_response`] with extra header fields (`Retry-After`, `Cache-Control`, …); names
/// and values are written with CR and LF dropped.
pub fn write_response_with_headers(
    status: u16,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    keep_alive: bool,
    out: &mut Vec<u8>,
) {
    out.reserve(128 + content_type.len() + body.len());
    write_response_head(status, content_type, headers, body.len(), keep_alive, out);
    out.extend_from_slice(body);
}

/// Appends the head of a response whose body is `body_bytes` long, without the body: the
/// answer to `HEAD`, which carries the `Content-Length` a `GET` would get (RFC 9110 §9.3.2).
/// Otherwise as [`write_response_with_headers`].
pub fn write_response_head(
    status: u16,
    content_type: &str,
    headers: &[(&str, &str)],
    body_bytes: usize,
    keep_alive: bool,
    out: &mut Vec<u8>,
) {
    let status =
        ::http::StatusCode::from_u16(status).unwrap_or(::http::StatusCode::INTERNAL_SERVER_ERROR);
    let reason = status.canonical_reason().unwrap_or("Unknown");
    let connection = if keep_alive { "keep-alive" } else { "close" };
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: ");
    push_header_value(content_type, out);
    out.extend_from_slice(b"\r\nContent-Length: ");
    out.extend_from_slice(body_bytes.to_string().as_bytes());
    out.extend_from_slice(b"\r\nConnection: ");
    out.extend_from_slice(connection.as_bytes());
    for (name, value) in headers {
        out.extend_from_slice(b"\r\n");
        push_header_value(name, out);
        out.extend_from_slice(b": ");
        push_header_value(value, out);
    }
    out.extend_from_slice(b"\r\n\r\n");
}

/// Appends a JSON error response with the body `{"error":"<message>"}`.
pub fn write_json_error(status: u16, message: &str, keep_alive: bool, out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(message.len() + 16);
    body.extend_from_slice(b"{\"error\":");
    crate::protocol::envelope::push_json_string(message, &mut body);
    body.push(b'}');
    write_response(status, "application/json", &body, keep_alive, out);
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive
/// (RFC 7235). Used by the upgrade and the HTTP API alike.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
