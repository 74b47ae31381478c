//! The config file as serde reads it: every table rejects unknown keys, every key has a default.
//! Each section's raw struct and its defaults live in the section's own file; this file puts them
//! together as the file reads, and holds `[cluster]`'s.

use serde::{Deserialize, Serialize};

pub use super::admin::{DEFAULT_ADMIN_ADDR, RawAdmin};
pub use super::audit::{DEFAULT_LOG_QUEUE_LINES, RawAudit};
pub use super::auth::aggregator::{
    DEFAULT_AGGREGATOR_ALLOW_UNSIGNED, DEFAULT_SIGNATURE_MAX_AGE_SECONDS, RawAggregator,
};
pub use super::auth::apps::RawApp;
pub use super::auth::cache::{
    DEFAULT_CACHE_MAX_ENTRIES, DEFAULT_CACHE_MAX_TTL_SECONDS, DEFAULT_CACHE_NEGATIVE_TTL_SECONDS,
    RawCache,
};
pub use super::auth::cors::RawCors;
pub use super::auth::forward_auth::{
    DEFAULT_FORWARD_AUTH_ACCEPT_PROVIDER_TOKENS, DEFAULT_FORWARD_AUTH_ASSERTION,
    DEFAULT_FORWARD_AUTH_URI_FROM, RawForwardAuth,
};
pub use super::auth::native::RawNative;
pub use super::auth::providers::{
    DEFAULT_CIRCUIT_COOLDOWN_MS, DEFAULT_CIRCUIT_FAILURES, DEFAULT_JWKS_REFRESH_SECONDS,
    DEFAULT_PROFILE_DISPLAYNAME_CLAIM, DEFAULT_PROFILE_EMAIL_CLAIM, DEFAULT_PROFILE_IMAGE_CLAIM,
    DEFAULT_PROVIDER_MAX_CONCURRENCY, DEFAULT_PROVIDER_RETRIES, DEFAULT_PROVIDER_TIMEOUT_MS,
    RawAccess, RawGroup, RawJwt, RawPermissions, RawProfileClaims, RawProvider, RawRequestFormat,
    RawStrategy, RawWebhook,
};
pub use super::auth::rate_limit::{DEFAULT_RATE_BURST, DEFAULT_RATE_PER_SECOND, RawRateLimit};
pub use super::auth::session::{
    DEFAULT_SESSION_ISSUER, DEFAULT_SESSION_MAX_TTL_SECONDS, DEFAULT_SESSION_REVALIDATE_SECONDS,
    DEFAULT_SESSION_TOKEN_SIGNING, DEFAULT_TICKET_TTL_SECONDS, MAX_SESSION_REVALIDATE_SECONDS,
    RawSession,
};
pub use super::ditto::RawDitto;
pub use super::limits::{
    DEFAULT_HEADER_READ_TIMEOUT_MS, DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL_MS,
    DEFAULT_HTTP2_KEEP_ALIVE_TIMEOUT_MS, DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_CLIENT, DEFAULT_MAX_REQUEST_BODY_BYTES,
    DEFAULT_MAX_REQUEST_HEAD_BYTES, DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS, RawLimits,
};
pub use super::listen::{DEFAULT_LISTEN_ADDR, DEFAULT_LISTEN_BACKLOG, RawListen};
pub use super::log::{DEFAULT_ACCESS_PATH, DEFAULT_LOG_LEVEL, RawLog, RawLogFormat};
pub use super::settle::{DEFAULT_RELOAD_SETTLE_MS, RawReload};
pub use super::shutdown::{DEFAULT_GRACE_SECONDS, RawShutdown};
pub use super::text::{SecretText, UrlText, redacted_url, shown_url};
pub use super::tls::{DEFAULT_CERT_FILE, DEFAULT_KEY_FILE, RawTls};
pub use super::traces::{
    DEFAULT_TRACING_EXPORT_TIMEOUT_MS, DEFAULT_TRACING_SAMPLE_RATIO, DEFAULT_TRACING_SERVICE_NAME,
    RawTracing,
};
pub use super::upstream::{
    DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_PUBLIC_UPGRADE_PATHS, DEFAULT_REQUEST_TIMEOUT_MS,
    RawUpstream,
};

/// The whole file.
#[derive(Debug, Default, Deserialize, Serialize)]
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
    /// `[providers.<name>]`
    pub providers: std::collections::BTreeMap<String, RawProvider>,
    /// `[apps.<appID>]`
    pub apps: std::collections::BTreeMap<String, RawApp>,
    /// `[cache]`
    pub cache: RawCache,
    /// `[session]`
    pub session: RawSession,
    /// `[aggregator]`
    pub aggregator: RawAggregator,
    /// `[rate_limit]`
    pub rate_limit: RawRateLimit,
    /// `[cors]`
    pub cors: RawCors,
    /// `[ditto]`
    pub ditto: RawDitto,
    /// `[audit]`
    pub audit: RawAudit,
    /// `[tracing]`
    pub tracing: RawTracing,
    /// `[cluster]`: absent means one replica on local state.
    pub cluster: Option<RawCluster>,
    /// `[forward_auth]`
    pub forward_auth: RawForwardAuth,
    /// `[native]`
    pub native: RawNative,
    /// `[reload]`
    pub reload: RawReload,
}

/// Default `cluster.key_prefix`.
pub const DEFAULT_CLUSTER_KEY_PREFIX: &str = "drawbridge:";
/// Default `cluster.connect_timeout_ms`.
pub const DEFAULT_CLUSTER_CONNECT_TIMEOUT_MS: u64 = 1_000;
/// Default `cluster.command_timeout_ms`.
pub const DEFAULT_CLUSTER_COMMAND_TIMEOUT_MS: u64 = 500;
/// Default `cluster.resync_interval_ms`.
pub const DEFAULT_CLUSTER_RESYNC_INTERVAL_MS: u64 = 5_000;
/// Default `cluster.required`.
pub const DEFAULT_CLUSTER_REQUIRED: bool = false;
/// Default `cluster.shared_decisions`.
pub const DEFAULT_CLUSTER_SHARED_DECISIONS: bool = true;

/// `[cluster]`: state shared between replicas through Redis.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCluster {
    /// `redis://host:port/db` or `rediss://` (TLS): a standalone Redis.
    pub redis_url: String,
    /// Sentinel addresses (`redis://host:26379`, `rediss://` for TLS), instead of `redis_url`.
    pub sentinels: Option<Vec<String>>,
    /// The master name the sentinels watch, with `sentinels`.
    pub sentinel_master: Option<String>,
    /// The sentinels' username (ACL), with `sentinel_password`.
    pub sentinel_username: Option<String>,
    /// The sentinels' password; best given as `${file:..}` or `${env:..}`.
    #[serde(serialize_with = "redacted")]
    pub sentinel_password: Option<String>,
    /// The name the master's TLS certificate must carry, whatever address the sentinels announce
    /// (with `rediss://` sentinels only).
    pub tls_server_name: Option<String>,
    /// Redis Cluster seed nodes (`redis://host:6379`), instead of `redis_url`.
    pub cluster_nodes: Option<Vec<String>>,
    /// The Redis password (AUTH); best given as `${file:..}` or `${env:..}`.
    #[serde(serialize_with = "redacted")]
    pub password: Option<String>,
    /// The Redis username (ACL), with `password`.
    pub username: Option<String>,
    /// Prefix of every key and channel, so several deployments can share one Redis.
    pub key_prefix: String,
    /// Deadline of a connection attempt.
    pub connect_timeout_ms: u64,
    /// Deadline of one command.
    pub command_timeout_ms: u64,
    /// How often the whole revocation set is reloaded, bounding the life of a dropped message.
    pub resync_interval_ms: u64,
    /// `/readyz` answers 503 while Redis is unreachable.
    pub required: bool,
    /// Share the decision cache (second level) between replicas.
    pub shared_decisions: bool,
}

impl Default for RawCluster {
    fn default() -> Self {
        Self {
            redis_url: String::new(),
            sentinels: None,
            sentinel_master: None,
            sentinel_username: None,
            sentinel_password: None,
            tls_server_name: None,
            cluster_nodes: None,
            password: None,
            username: None,
            key_prefix: DEFAULT_CLUSTER_KEY_PREFIX.to_owned(),
            connect_timeout_ms: DEFAULT_CLUSTER_CONNECT_TIMEOUT_MS,
            command_timeout_ms: DEFAULT_CLUSTER_COMMAND_TIMEOUT_MS,
            resync_interval_ms: DEFAULT_CLUSTER_RESYNC_INTERVAL_MS,
            required: DEFAULT_CLUSTER_REQUIRED,
            shared_decisions: DEFAULT_CLUSTER_SHARED_DECISIONS,
        }
    }
}

// The password never reaches a log or an error message.
impl std::fmt::Debug for RawCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawCluster")
            .field("redis_url", &redacted_url(&self.redis_url))
            .field(
                "sentinels",
                &self
                    .sentinels
                    .as_ref()
                    .map(|v| v.iter().map(|u| redacted_url(u)).collect::<Vec<_>>()),
            )
            .field("sentinel_master", &self.sentinel_master)
            .field("sentinel_username", &self.sentinel_username)
            .field(
                "sentinel_password",
                &self.sentinel_password.as_ref().map(|_| "<redacted>"),
            )
            .field("tls_server_name", &self.tls_server_name)
            .field(
                "cluster_nodes",
                &self
                    .cluster_nodes
                    .as_ref()
                    .map(|v| v.iter().map(|u| redacted_url(u)).collect::<Vec<_>>()),
            )
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("username", &self.username)
            .field("key_prefix", &self.key_prefix)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("command_timeout_ms", &self.command_timeout_ms)
            .field("resync_interval_ms", &self.resync_interval_ms)
            .field("required", &self.required)
            .field("shared_decisions", &self.shared_decisions)
            .finish()
    }
}

/// Serializes a secret as `"<redacted>"` (or none), so that no serialized config carries one.
fn redacted<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_some("<redacted>"),
        None => s.serialize_none(),
    }
}
