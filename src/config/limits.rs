//! `[limits]`: what one connection or client may cost: connection caps, timeouts, head and body
//! sizes, HTTP/2 keep-alive.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::problem::Problem;
use super::section::{Section, positive};

/// Default cap on open client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// `limits.max_connections_per_client`: enough for a browser's tabs and an SDK's reconnects, a
/// small share of `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 256;
/// Default time a client has to send a full request head.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Default time a client has to finish the TLS handshake.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Default cap on a forwarded request body (10 MiB).
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: u64 = 10 * 1024 * 1024;
/// Default time a connection may sit with no request in flight: about what common proxies and
/// load balancers allow (nginx 75 s, cloud load balancers 60 s), and under connection pressure
/// idle connections are evicted sooner anyway.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;
/// Default cap on a request head (32 KiB): room for session tokens, Ditto tokens and cookies,
/// a tenth of what hyper would otherwise buffer for one unfinished head.
pub const DEFAULT_MAX_REQUEST_HEAD_BYTES: usize = 32 * 1024;
/// Default quiet time after which an HTTP/2 connection is pinged.
pub const DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL_MS: u64 = 30_000;
/// Default time an HTTP/2 keep-alive ping may go unanswered.
pub const DEFAULT_HTTP2_KEEP_ALIVE_TIMEOUT_MS: u64 = 20_000;

/// Smallest `limits.max_request_head_bytes`: hyper's smallest HTTP/1 read buffer.
pub const MIN_REQUEST_HEAD_BYTES: usize = 8192;
/// Largest `limits.max_request_head_bytes`: every unfinished head may hold this much memory.
pub const MAX_REQUEST_HEAD_BYTES: usize = 1024 * 1024;
/// Largest `limits.idle_timeout_ms` (one day).
pub const MAX_IDLE_TIMEOUT_MS: u64 = 86_400_000;
/// Largest HTTP/2 keep-alive interval or timeout (one hour).
pub const MAX_HTTP2_KEEP_ALIVE_MS: u64 = 3_600_000;

/// `[limits]`: what one client may cost.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Open connections on the main listener; more are closed at once.
    pub max_connections: usize,
    /// Open connections from one client address (trusted proxies exempt); more are closed at once.
    pub max_connections_per_client: usize,
    /// Time to receive a complete request head: the first on a connection from the end of the
    /// handshake, a later HTTP/1 one from its first byte.
    pub header_read_timeout_ms: u64,
    /// Time to complete the TLS handshake.
    pub tls_handshake_timeout_ms: u64,
    /// Largest forwarded request body.
    pub max_request_body_bytes: u64,
    /// Time a connection may sit with no request in flight before it is closed.
    pub idle_timeout_ms: u64,
    /// Largest request head: HTTP/1 request line and headers, HTTP/2 header list.
    pub max_request_head_bytes: usize,
    /// Quiet time after which an HTTP/2 connection is pinged.
    pub http2_keep_alive_interval_ms: u64,
    /// Time an HTTP/2 keep-alive ping may go unanswered before the connection is closed.
    pub http2_keep_alive_timeout_ms: u64,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            tls_handshake_timeout_ms: DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS,
            max_request_body_bytes: DEFAULT_MAX_REQUEST_BODY_BYTES,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            max_request_head_bytes: DEFAULT_MAX_REQUEST_HEAD_BYTES,
            http2_keep_alive_interval_ms: DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL_MS,
            http2_keep_alive_timeout_ms: DEFAULT_HTTP2_KEEP_ALIVE_TIMEOUT_MS,
        }
    }
}

/// `[limits]`
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections on the main listener.
    pub max_connections: usize,
    /// Open connections from one client address (direct or PROXY protocol); trusted proxies are
    /// exempt.
    pub max_connections_per_client: usize,
    /// Time to receive a complete request head: the first on a connection from the end of the
    /// handshake, a later HTTP/1 one from its first byte.
    pub header_read_timeout: Duration,
    /// Time to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Largest forwarded request body.
    pub max_request_body_bytes: u64,
    /// Time a connection may sit with no request in flight before it is closed.
    pub idle_timeout: Duration,
    /// Largest request head (HTTP/1 request line and headers, HTTP/2 header list), in bytes.
    pub max_request_head_bytes: usize,
    /// Quiet time after which an HTTP/2 connection is pinged.
    pub http2_keep_alive_interval: Duration,
    /// Time an HTTP/2 keep-alive ping may go unanswered before the connection is closed.
    pub http2_keep_alive_timeout: Duration,
}

/// Every limit applies to the connections accepted after a reload.
impl Section for Limits {}

/// `[limits]`: every limit non-zero, the timeouts and the head size within their bounds.
pub(super) fn validate(raw: &RawLimits, p: &mut Vec<Problem>) -> Limits {
    positive(
        &[
            ("limits.header_read_timeout_ms", raw.header_read_timeout_ms),
            (
                "limits.tls_handshake_timeout_ms",
                raw.tls_handshake_timeout_ms,
            ),
            ("limits.max_request_body_bytes", raw.max_request_body_bytes),
            ("limits.idle_timeout_ms", raw.idle_timeout_ms),
            (
                "limits.http2_keep_alive_interval_ms",
                raw.http2_keep_alive_interval_ms,
            ),
            (
                "limits.http2_keep_alive_timeout_ms",
                raw.http2_keep_alive_timeout_ms,
            ),
            ("limits.max_connections", raw.max_connections as u64),
            (
                "limits.max_connections_per_client",
                raw.max_connections_per_client as u64,
            ),
        ],
        p,
    );
    for (key, v, max) in [
        (
            "limits.idle_timeout_ms",
            raw.idle_timeout_ms,
            MAX_IDLE_TIMEOUT_MS,
        ),
        (
            "limits.http2_keep_alive_interval_ms",
            raw.http2_keep_alive_interval_ms,
            MAX_HTTP2_KEEP_ALIVE_MS,
        ),
        (
            "limits.http2_keep_alive_timeout_ms",
            raw.http2_keep_alive_timeout_ms,
            MAX_HTTP2_KEEP_ALIVE_MS,
        ),
    ] {
        if v > max {
            p.push(Problem::new(key, format!("must be at most {max}")));
        }
    }
    if !(MIN_REQUEST_HEAD_BYTES..=MAX_REQUEST_HEAD_BYTES).contains(&raw.max_request_head_bytes) {
        p.push(Problem::new(
            "limits.max_request_head_bytes",
            format!(
                "must be between {MIN_REQUEST_HEAD_BYTES} and {MAX_REQUEST_HEAD_BYTES} (e.g. 32768)"
            ),
        ));
    }
    Limits {
        max_connections: raw.max_connections,
        max_connections_per_client: raw.max_connections_per_client,
        header_read_timeout: Duration::from_millis(raw.header_read_timeout_ms),
        tls_handshake_timeout: Duration::from_millis(raw.tls_handshake_timeout_ms),
        max_request_body_bytes: raw.max_request_body_bytes,
        idle_timeout: Duration::from_millis(raw.idle_timeout_ms),
        max_request_head_bytes: raw.max_request_head_bytes,
        http2_keep_alive_interval: Duration::from_millis(raw.http2_keep_alive_interval_ms),
        http2_keep_alive_timeout: Duration::from_millis(raw.http2_keep_alive_timeout_ms),
    }
}
