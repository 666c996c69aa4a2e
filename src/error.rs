//! Typed reasons a connection ends, mapped to WebSocket close codes (PROTOCOL.md §7).
//!
//! Responsibility: one enum, [`CloseKind`], naming every way the server ends a session,
//! with its close code, its close reason text (≤ 123 bytes, sent to the client) and a
//! stable metric label. It must not know about sockets or sessions.
//!
//! Invariant: the reason strings the official client tests assert are spelled exactly
//! (`Subscription to secure topic is forbidden!`).
//!
//! This is a leaf: the error enums of other boundaries map themselves onto `CloseKind`
//! beside their variants (`From<&FrameError>`, `From<&CommandError>`, `From<&InflateError>`
//! in `protocol`), so that a mapping never goes through a reason string or a bare code.

/// Why a WebSocket session ended. Each variant maps to one close code and one metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseKind {
    /// 1000: the client sent a close frame.
    ClientClosed,
    /// The TCP connection ended without a close frame (no close frame is sent back).
    ConnectionLost,
    /// 1001: the server is shutting down.
    ServerShutdown,
    /// 1002: a WebSocket protocol violation (bad framing).
    ProtocolError,
    /// 1007: a text frame that is not UTF-8.
    InvalidUtf8,
    /// 1007: a frame whose payload is not JSON.
    InvalidJson,
    /// 1008: a JSON command with the wrong shape (unknown type, missing topic, …).
    MalformedCommand,
    /// 1008: a topic name that is empty, too long or holds control characters.
    InvalidTopic,
    /// 1008: JSON nested deeper than `MAX_JSON_NESTING` (128).
    NestingTooDeep,
    /// 1008: subscribe to `secure/…` without a matching permission.
    SecureSubscribeForbidden,
    /// 1008: subscribe to another connection's `priv/…` without a matching permission.
    PrivateSubscribeForbidden,
    /// 1008: publish without a matching permission.
    PublishForbidden,
    /// 1008: more than `maxSubscriptionsPerConnection`.
    TooManySubscriptions,
    /// 1008: more than `maxMessagesPerSecond`.
    RateLimited,
    /// 1009: a frame or message above `maxMessageBytes`.
    MessageTooBig,
    /// 1011: an internal error.
    InternalError,
    /// 4000: `DELETE /api/connections/...`.
    AdminTerminated,
    /// 4000: the app was removed from the configuration by a reload.
    AppRemoved,
    /// 4001: nothing received (not even a pong) for two ping intervals.
    LivenessTimeout,
    /// 4008: outbound queue above `maxPendingBytes`.
    SlowConsumer,
}

impl CloseKind {
    /// Every kind, in metric order.
    pub const ALL: [CloseKind; 20] = [
        CloseKind::ClientClosed,
        CloseKind::ConnectionLost,
        CloseKind::ServerShutdown,
        CloseKind::ProtocolError,
        CloseKind::InvalidUtf8,
        CloseKind::InvalidJson,
        CloseKind::MalformedCommand,
        CloseKind::InvalidTopic,
        CloseKind::NestingTooDeep,
        CloseKind::SecureSubscribeForbidden,
        CloseKind::PrivateSubscribeForbidden,
        CloseKind::PublishForbidden,
        CloseKind::TooManySubscriptions,
        CloseKind::RateLimited,
        CloseKind::MessageTooBig,
        CloseKind::InternalError,
        CloseKind::AdminTerminated,
        CloseKind::AppRemoved,
        CloseKind::LivenessTimeout,
        CloseKind::SlowConsumer,
    ];

    /// The WebSocket close code sent to the client.
    pub fn code(self) -> u16 {
        match self {
            CloseKind::ClientClosed | CloseKind::ConnectionLost => 1000,
            CloseKind::ServerShutdown => 1001,
            CloseKind::ProtocolError => 1002,
            CloseKind::InvalidUtf8 | CloseKind::InvalidJson => 1007,
            CloseKind::MalformedCommand
            | CloseKind::InvalidTopic
            | CloseKind::NestingTooDeep
            | CloseKind::SecureSubscribeForbidden
            | CloseKind::PrivateSubscribeForbidden
            | CloseKind::PublishForbidden
            | CloseKind::TooManySubscriptions
            | CloseKind::RateLimited => 1008,
            CloseKind::MessageTooBig => 1009,
            CloseKind::InternalError => 1011,
            CloseKind::AdminTerminated | CloseKind::AppRemoved => 4000,
            CloseKind::LivenessTimeout => 4001,
            CloseKind::SlowConsumer => 4008,
        }
    }

    /// The close reason sent to the client (≤ 123 bytes).
    pub fn reason(self) -> &'static str {
        match self {
            CloseKind::ClientClosed | CloseKind::ConnectionLost => "",
            CloseKind::ServerShutdown => "Server shutting down",
            CloseKind::ProtocolError => "Protocol error",
            CloseKind::InvalidUtf8 => "Invalid UTF-8",
            CloseKind::InvalidJson => "Invalid JSON",
            CloseKind::MalformedCommand => "Malformed command",
            CloseKind::InvalidTopic => "Invalid topic",
            CloseKind::NestingTooDeep => "Message nesting too deep",
            CloseKind::SecureSubscribeForbidden => "Subscription to secure topic is forbidden!",
            CloseKind::PrivateSubscribeForbidden => "Subscription to private topic is forbidden!",
            CloseKind::PublishForbidden => "Publishing to topic is forbidden!",
            CloseKind::TooManySubscriptions => "Too many subscriptions!",
            CloseKind::RateLimited => "Rate limit exceeded",
            CloseKind::MessageTooBig => "Message too big",
            CloseKind::InternalError => "Internal error",
            CloseKind::AdminTerminated => "Connection terminated by admin",
            CloseKind::AppRemoved => "App removed from the configuration",
            CloseKind::LivenessTimeout => "No pong received",
            CloseKind::SlowConsumer => "Slow consumer",
        }
    }

    /// Stable label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            CloseKind::ClientClosed => "client_closed",
            CloseKind::ConnectionLost => "connection_lost",
            CloseKind::ServerShutdown => "server_shutdown",
            CloseKind::ProtocolError => "protocol_error",
            CloseKind::InvalidUtf8 => "invalid_utf8",
            CloseKind::InvalidJson => "invalid_json",
            CloseKind::MalformedCommand => "malformed_command",
            CloseKind::InvalidTopic => "invalid_topic",
            CloseKind::NestingTooDeep => "nesting_too_deep",
            CloseKind::SecureSubscribeForbidden => "secure_subscribe_forbidden",
            CloseKind::PrivateSubscribeForbidden => "private_subscribe_forbidden",
            CloseKind::PublishForbidden => "publish_forbidden",
            CloseKind::TooManySubscriptions => "too_many_subscriptions",
            CloseKind::RateLimited => "rate_limited",
            CloseKind::MessageTooBig => "message_too_big",
            CloseKind::InternalError => "internal_error",
            CloseKind::AdminTerminated => "admin_terminated",
            CloseKind::AppRemoved => "app_removed",
            CloseKind::LivenessTimeout => "liveness_timeout",
            CloseKind::SlowConsumer => "slow_consumer",
        }
    }

    /// Index into per-kind counter arrays.
    pub fn index(self) -> usize {
        CloseKind::ALL
            .iter()
            .position(|kind| *kind == self)
            .unwrap_or(0)
    }

    /// Whether the server sends a close frame for this kind (not when the peer vanished).
    pub fn sends_close_frame(self) -> bool {
        !matches!(self, CloseKind::ConnectionLost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fit_a_close_frame_and_labels_are_unique() {
        let mut labels = std::collections::HashSet::new();
        for kind in CloseKind::ALL {
            assert!(kind.reason().len() <= 123);
            assert!(labels.insert(kind.label()));
            assert_eq!(CloseKind::ALL[kind.index()], kind);
        }
    }

    #[test]
    fn official_reasons_are_exact() {
        assert_eq!(
            CloseKind::SecureSubscribeForbidden.reason(),
            "Subscription to secure topic is forbidden!"
        );
        assert_eq!(CloseKind::SecureSubscribeForbidden.code(), 1008);
        assert_eq!(CloseKind::AdminTerminated.code(), 4000);
        assert_eq!(CloseKind::SlowConsumer.code(), 4008);
        assert_eq!(CloseKind::LivenessTimeout.code(), 4001);
    }
}
