//! [`Refusal`]: why a request was refused before the WebSocket upgrade, with its stable
//! metric label (`ringcast_handshakes_refused_total{reason=…}`, `/stats` `refused`).
//!
//! Responsibility: the closed list of refusal reasons and their labels; the counters
//! themselves are [`crate::metrics::WorkerMetrics::handshakes_refused`].

/// Why a request was refused before the WebSocket upgrade (or a plain HTTP request at the
/// framing stage), with the HTTP status it was answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Unparseable request head or Content-Length (400), or an unsupported transfer
    /// encoding (501).
    MalformedRequest,
    /// Request head above the limit (431).
    HeadTooLarge,
    /// Not an acceptable upgrade: wrong method, version, key or headers (400).
    BadUpgrade,
    /// Chunked body (411).
    LengthRequired,
    /// Body above `maxHttpBodyBytes` (413).
    BodyTooLarge,
    /// `maxHandshakesPerSecond` reached (503).
    HandshakeRateLimited,
    /// No such app (404).
    UnknownApp,
    /// Outside `clientSourceAddress` (403).
    SourceAddress,
    /// No `access_token` (401).
    MissingToken,
    /// Token invalid, expired or signed with another key or algorithm (401).
    InvalidToken,
    /// `maxConnections` of the app reached (429).
    AppFull,
    /// `maxConnectionsPerSubject` reached (429).
    SubjectFull,
    /// `maxConnectionsPerAddress` reached (429).
    AddressFull,
    /// The request (head and body) was not complete within `handshakeTimeoutSeconds`:
    /// the socket is dropped without an answer.
    RequestTimeout,
    /// The TLS handshake failed: garbage, plain HTTP on the TLS port, a client that
    /// rejected the certificate (answered with a TLS alert).
    Tls,
}

impl Refusal {
    pub const ALL: [Refusal; 15] = [
        Refusal::MalformedRequest,
        Refusal::HeadTooLarge,
        Refusal::BadUpgrade,
        Refusal::LengthRequired,
        Refusal::BodyTooLarge,
        Refusal::HandshakeRateLimited,
        Refusal::UnknownApp,
        Refusal::SourceAddress,
        Refusal::MissingToken,
        Refusal::InvalidToken,
        Refusal::AppFull,
        Refusal::SubjectFull,
        Refusal::AddressFull,
        Refusal::RequestTimeout,
        Refusal::Tls,
    ];

    /// Stable label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::MalformedRequest => "malformed_request",
            Refusal::HeadTooLarge => "head_too_large",
            Refusal::BadUpgrade => "bad_upgrade",
            Refusal::LengthRequired => "length_required",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::HandshakeRateLimited => "handshake_rate_limited",
            Refusal::UnknownApp => "unknown_app",
            Refusal::SourceAddress => "source_address",
            Refusal::MissingToken => "missing_token",
            Refusal::InvalidToken => "invalid_token",
            Refusal::AppFull => "app_full",
            Refusal::SubjectFull => "subject_full",
            Refusal::AddressFull => "address_full",
            Refusal::RequestTimeout => "request_timeout",
            Refusal::Tls => "tls",
        }
    }

    /// The refusal for a request-head parse error answered with `status`.
    pub fn for_head_status(status: u16) -> Refusal {
        match status {
            431 => Refusal::HeadTooLarge,
            _ => Refusal::MalformedRequest,
        }
    }

    /// Position in [`Refusal::ALL`] (the index of its counter).
    pub(crate) fn index(self) -> usize {
        Refusal::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}
