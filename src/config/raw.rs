//! The config file as serde reads it: every table rejects unknown keys, every key has a default.

use serde::Deserialize;

/// Default main listener address.
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:8443";
/// Default admin listener address (health, readiness, metrics).
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9090";
/// Default certificate chain file.
pub const DEFAULT_CERT_FILE: &str = "tls.crt";
/// Default private key file.
pub const DEFAULT_KEY_FILE: &str = "tls.key";
/// Default websocket path prefixes that need a session.
pub const DEFAULT_SYNC_PATHS: [&str; 2] = ["/sync", "/_ditto/ws"];
/// Default upstream connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Default time to wait for the upstream's response head.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Default cap on open client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default time a client has to send a full request head.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Default time a client has to finish the TLS handshake.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Default cap on a forwarded request body (10 MiB).
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: u64 = 10 * 1024 * 1024;
/// Default drain deadline on SIGTERM; keep it below the pod's terminationGracePeriodSeconds.
pub const DEFAULT_GRACE_SECONDS: u64 = 25;
/// Default log level (a tracing `EnvFilter` directive).
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// `[listen]`
    pub listen: RawListen,
    /// `[tls]`
    pub tls: RawTls,
    /// `[admin]`
    pub admin: RawAdmin,
    /// `[upstream]`
    pub upstream: RawUpstream,
    /// `[limits]`
    pub limits: RawLimits,
    /// `[shutdown]`
    pub shutdown: RawShutdown,
    /// `[log]`
    pub log: RawLog,
}

/// `[listen]`: the client-facing listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawListen {
    /// Socket address to bind.
    pub addr: String,
    /// Serve plain HTTP (a mesh terminates TLS in front).
    pub plaintext: bool,
}

impl Default for RawListen {
    fn default() -> Self {
        Self {
            addr: DEFAULT_LISTEN_ADDR.to_owned(),
            plaintext: false,
        }
    }
}

/// `[tls]`: the serving certificate and optional client CA.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    /// PEM certificate chain, leaf first.
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// PEM CA bundle; when set, clients must present a certificate it signed.
    pub client_ca_file: Option<String>,
}

impl Default for RawTls {
    fn default() -> Self {
        Self {
            cert_file: DEFAULT_CERT_FILE.to_owned(),
            key_file: DEFAULT_KEY_FILE.to_owned(),
            client_ca_file: None,
        }
    }
}

/// `[admin]`: health, readiness and metrics.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    /// Socket address to bind.
    pub addr: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            addr: DEFAULT_ADMIN_ADDR.to_owned(),
        }
    }
}

/// `[upstream]`: the sync server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    /// Base URL; the only key without a default.
    pub url: Option<String>,
    /// Path prefixes whose websocket upgrades need a session.
    pub sync_paths: Vec<String>,
    /// TCP connect timeout.
    pub connect_timeout_ms: u64,
    /// Time allowed for the response head.
    pub request_timeout_ms: u64,
}

impl Default for RawUpstream {
    fn default() -> Self {
        Self {
            url: None,
            sync_paths: DEFAULT_SYNC_PATHS.iter().map(|p| (*p).to_owned()).collect(),
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
        }
    }
}

/// `[limits]`: what one client may cost.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Open connections on the main listener; more are closed at once.
    pub max_connections: usize,
    /// Time to receive a complete request head (HTTP/1).
    pub header_read_timeout_ms: u64,
    /// Time to complete the TLS handshake.
    pub tls_handshake_timeout_ms: u64,
    /// Largest forwarded request body.
    pub max_request_body_bytes: u64,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            tls_handshake_timeout_ms: DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS,
            max_request_body_bytes: DEFAULT_MAX_REQUEST_BODY_BYTES,
        }
    }
}

/// `[shutdown]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawShutdown {
    /// Drain deadline after SIGTERM.
    pub grace_seconds: u64,
}

impl Default for RawShutdown {
    fn default() -> Self {
        Self {
            grace_seconds: DEFAULT_GRACE_SECONDS,
        }
    }
}

/// `[log]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// `text` or `json`.
    pub format: RawLogFormat,
    /// A tracing `EnvFilter` directive, e.g. `info` or `drawbridge=debug,info`.
    pub level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: RawLogFormat::Text,
            level: DEFAULT_LOG_LEVEL.to_owned(),
        }
    }
}

/// Log line format.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawLogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}
