//! The config file as serde reads it: every table rejects unknown keys, every key has a default.

use serde::{Deserialize, Serialize};

/// Default main listener address.
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:8443";
/// `listen.backlog`: connections the kernel queues before drawbridge accepts them (capped by
/// `net.core.somaxconn`). A reconnect storm after a replica dies arrives faster than any accept loop.
pub const DEFAULT_LISTEN_BACKLOG: u32 = 4096;
/// Default admin listener address (health, readiness, metrics).
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9090";
/// Default certificate chain file.
pub const DEFAULT_CERT_FILE: &str = "tls.crt";
/// Default private key file.
pub const DEFAULT_KEY_FILE: &str = "tls.key";
/// Default path prefixes whose websocket upgrades open without a session: none.
pub const DEFAULT_PUBLIC_UPGRADE_PATHS: [&str; 0] = [];
/// Default upstream connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Default time to wait for the upstream's response head.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
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
/// Default drain deadline on SIGTERM; keep it below the pod's terminationGracePeriodSeconds.
pub const DEFAULT_GRACE_SECONDS: u64 = 25;
/// Default log level (a tracing `EnvFilter` directive).
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Default access log destination when `log.access = true`: standard output.
pub const DEFAULT_ACCESS_PATH: &str = "-";
/// Default `service.name` of exported traces.
pub const DEFAULT_TRACING_SERVICE_NAME: &str = "drawbridge";
/// Default share of new traces (those without a sampled parent) that are exported.
pub const DEFAULT_TRACING_SAMPLE_RATIO: f64 = 1.0;
/// Default time allowed for one export to the collector.
pub const DEFAULT_TRACING_EXPORT_TIMEOUT_MS: u64 = 10_000;
/// Default number of audit or access lines queued for the writer before new ones are dropped.
pub const DEFAULT_LOG_QUEUE_LINES: usize = 16_384;
/// Default time a changed watched file must stay unchanged before a reload applies it.
pub const DEFAULT_RELOAD_SETTLE_MS: u64 = 500;

/// A config string that may be a secret (a signing secret, an extra header's value): read as a
/// plain string, shown by `Debug` as `<redacted>`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretText(pub String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Written as `<redacted>` whatever it holds (`drawbridge config-keys` lists defaults only, but a
/// secret never leaves in any form).
impl Serialize for SecretText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl std::ops::Deref for SecretText {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

/// A URL from the config: read as a plain string; `Debug` shows it without user info (a
/// password) or query (an API key), see [`shown_url`].
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct UrlText(pub String);

impl std::fmt::Debug for UrlText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&shown_url(&self.0), f)
    }
}

/// Written as [`shown_url`] shows it.
impl Serialize for UrlText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&shown_url(&self.0))
    }
}

impl std::ops::Deref for UrlText {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

/// `url` with any `user:password@` replaced, safe to log.
pub fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://<redacted>@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// `url` safe to show: `user:password@` becomes `<redacted>@` and a query `?<redacted>`.
pub fn shown_url(url: &str) -> String {
    let (url, query) = match url.split_once('?') {
        Some((before, _)) => (before, "?<redacted>"),
        None => (url, ""),
    };
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let authority_end = rest.find(['/', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => format!("<redacted>@{}", &authority[at + 1..]),
        None => authority.to_owned(),
    };
    format!("{scheme}{authority}{path}{query}")
}

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

/// `[reload]`: how a changed file is picked up.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawReload {
    /// Time a changed watched file must stay unchanged before it is applied.
    pub settle_ms: u64,
}

impl Default for RawReload {
    fn default() -> Self {
        Self {
            settle_ms: DEFAULT_RELOAD_SETTLE_MS,
        }
    }
}

/// `[listen]`: the client-facing listener.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawListen {
    /// Socket address to bind.
    pub addr: String,
    /// Serve plain HTTP (a mesh terminates TLS in front).
    pub plaintext: bool,
    /// Listen queue length.
    pub backlog: u32,
    /// Read a PROXY protocol header (v1 or v2) before TLS; connections without one are refused.
    pub proxy_protocol: bool,
    /// CIDRs (or single addresses) of proxies whose `X-Forwarded-For`/`Forwarded` is believed.
    pub trusted_proxies: Vec<String>,
}

impl Default for RawListen {
    fn default() -> Self {
        Self {
            addr: DEFAULT_LISTEN_ADDR.to_owned(),
            plaintext: false,
            backlog: DEFAULT_LISTEN_BACKLOG,
            proxy_protocol: false,
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[tls]`: the serving certificate and optional client CA.
#[derive(Debug, Deserialize, Serialize)]
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
#[derive(Debug, Deserialize, Serialize)]
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
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    /// Base URL; the only key without a default.
    pub url: Option<UrlText>,
    /// No longer used (every websocket upgrade needs a session); still read so older files load,
    /// and `drawbridge check` warns about it.
    pub sync_paths: Option<Vec<String>>,
    /// Canonical path prefixes (whole segments) whose websocket upgrades open without a session.
    pub public_upgrade_paths: Vec<String>,
    /// TCP connect timeout.
    pub connect_timeout_ms: u64,
    /// Time allowed for the response head.
    pub request_timeout_ms: u64,
}

impl Default for RawUpstream {
    fn default() -> Self {
        Self {
            url: None,
            sync_paths: None,
            public_upgrade_paths: DEFAULT_PUBLIC_UPGRADE_PATHS
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
        }
    }
}

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

/// `[shutdown]`
#[derive(Debug, Deserialize, Serialize)]
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
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// `text` or `json`.
    pub format: RawLogFormat,
    /// A tracing `EnvFilter` directive, e.g. `info` or `drawbridge=debug,info`.
    pub level: String,
    /// One JSON line per HTTP request.
    pub access: bool,
    /// Where access lines go: a file, or `-` for standard output.
    pub access_path: String,
    /// Access lines queued before new ones are dropped.
    pub access_queue_lines: usize,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: RawLogFormat::Text,
            level: DEFAULT_LOG_LEVEL.to_owned(),
            access: false,
            access_path: DEFAULT_ACCESS_PATH.to_owned(),
            access_queue_lines: DEFAULT_LOG_QUEUE_LINES,
        }
    }
}

/// `[audit]`: the audit log; absent `path` means off.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAudit {
    /// A file (appended to, reopened on SIGUSR1), or `-` for standard output.
    pub path: Option<String>,
    /// Lines queued before new ones are dropped (and counted).
    pub queue_lines: usize,
}

impl Default for RawAudit {
    fn default() -> Self {
        Self {
            path: None,
            queue_lines: DEFAULT_LOG_QUEUE_LINES,
        }
    }
}

/// Log line format.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RawLogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Default webhook call timeout.
pub const DEFAULT_PROVIDER_TIMEOUT_MS: u64 = 2_000;
/// Default cap on concurrent calls to one webhook.
pub const DEFAULT_PROVIDER_MAX_CONCURRENCY: usize = 64;
/// Default retries on connect errors.
pub const DEFAULT_PROVIDER_RETRIES: u32 = 1;
/// Default consecutive failures that open a provider's circuit.
pub const DEFAULT_CIRCUIT_FAILURES: u32 = 5;
/// Default time an open circuit fails fast.
pub const DEFAULT_CIRCUIT_COOLDOWN_MS: u64 = 10_000;
/// Default JWKS refresh interval.
pub const DEFAULT_JWKS_REFRESH_SECONDS: u64 = 300;
/// Default decision cache size.
pub const DEFAULT_CACHE_MAX_ENTRIES: u64 = 100_000;
/// Default cap on how long an allow is cached.
pub const DEFAULT_CACHE_MAX_TTL_SECONDS: u64 = 300;
/// Default lifetime of a cached denial.
pub const DEFAULT_CACHE_NEGATIVE_TTL_SECONDS: u64 = 5;
/// Default session issuer and audience.
pub const DEFAULT_SESSION_ISSUER: &str = "drawbridge";
/// Default cap on a session token's lifetime.
pub const DEFAULT_SESSION_MAX_TTL_SECONDS: u64 = 3_600;
/// Default upgrade ticket lifetime.
pub const DEFAULT_TICKET_TTL_SECONDS: u64 = 30;
/// `session.revalidate_seconds`: open tunnels are not re-checked.
pub const DEFAULT_SESSION_REVALIDATE_SECONDS: u64 = 0;
/// `session.token_signing`: sessions under a MAC key derived from the session key.
pub const DEFAULT_SESSION_TOKEN_SIGNING: &str = "hmac";
/// Largest `session.revalidate_seconds` (one day).
pub const MAX_SESSION_REVALIDATE_SECONDS: u64 = 86_400;
/// Default sustained login rate per client IP.
pub const DEFAULT_RATE_PER_SECOND: u32 = 20;
/// Default login burst per client IP.
pub const DEFAULT_RATE_BURST: u32 = 100;
/// Default oldest accepted `ditto-signature` on the aggregator door.
pub const DEFAULT_SIGNATURE_MAX_AGE_SECONDS: u64 = 300;
/// By default the aggregator door answers only signed calls.
pub const DEFAULT_AGGREGATOR_ALLOW_UNSIGNED: bool = false;

/// `[providers.<name>]`, tagged by `kind`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum RawProvider {
    /// A Ditto-contract webhook.
    Webhook(RawWebhook),
    /// A locally verified JWT.
    Jwt(RawJwt),
    /// Several providers behind one name.
    Group(RawGroup),
}

/// `kind = "webhook"`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// http or https URL.
    pub url: Option<UrlText>,
    /// Deadline for the whole call, retries included.
    #[serde(default = "default_provider_timeout")]
    pub timeout_ms: u64,
    /// `legacy` (`appID`) or `v1` (`databaseID`, `version`).
    #[serde(default)]
    pub request_format: RawRequestFormat,
    /// Base64 HMAC key; when set every call carries `ditto-signature`.
    pub signing_secret: Option<SecretText>,
    /// Extra static request headers (an `Authorization` among them, often).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, SecretText>,
    /// Calls in flight at once.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Retries on connect errors only.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Consecutive failures that open the circuit (0 disables it).
    #[serde(default = "default_circuit_failures")]
    pub circuit_failures: u32,
    /// How long an open circuit fails fast.
    #[serde(default = "default_circuit_cooldown")]
    pub circuit_cooldown_ms: u64,
}

/// Webhook request body shape.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RawRequestFormat {
    /// `{"appID","provider","token"}`
    #[default]
    Legacy,
    /// `{"databaseID","version":"1","provider","token"}`
    V1,
}

/// `kind = "jwt"`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Accepted `aud` values (one must match).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// JWKS endpoint, fetched at start and refreshed in the background.
    pub jwks_url: Option<UrlText>,
    /// A local JWKS JSON file instead of a URL.
    pub keys_file: Option<String>,
    /// JWKS refresh interval.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_seconds: u64,
    /// Accepted `alg` values.
    #[serde(default = "default_jwt_algorithms")]
    pub algorithms: Vec<String>,
    /// Claim that becomes the user ID.
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    /// Clock skew allowed on `exp`/`nbf`.
    #[serde(default)]
    pub leeway_seconds: u64,
    /// Permissions granted, with `{claim}` placeholders in queries.
    #[serde(default)]
    pub permissions: RawPermissions,
    /// Claims read into the user's profile (restdb's `email`, `displayname`, `image`).
    #[serde(default)]
    pub profile_claims: RawProfileClaims,
}

/// Default claim of the profile's e-mail address (OpenID Connect's).
pub const DEFAULT_PROFILE_EMAIL_CLAIM: &str = "email";
/// Default claim of the profile's display name (OpenID Connect's).
pub const DEFAULT_PROFILE_DISPLAYNAME_CLAIM: &str = "name";
/// Default claim of the profile's picture URL (OpenID Connect's).
pub const DEFAULT_PROFILE_IMAGE_CLAIM: &str = "picture";

/// `[providers.<name>.profile_claims]` of a jwt provider: which claim gives each profile field;
/// `""` reads none.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawProfileClaims {
    /// Claim of the e-mail address.
    pub email: String,
    /// Claim of the display name.
    pub displayname: String,
    /// Claim of the picture URL.
    pub image: String,
}

impl Default for RawProfileClaims {
    fn default() -> Self {
        Self {
            email: DEFAULT_PROFILE_EMAIL_CLAIM.to_owned(),
            displayname: DEFAULT_PROFILE_DISPLAYNAME_CLAIM.to_owned(),
            image: DEFAULT_PROFILE_IMAGE_CLAIM.to_owned(),
        }
    }
}

/// A permissions template in the Ditto shape.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPermissions {
    /// Read rules.
    #[serde(default)]
    pub read: RawAccess,
    /// Write rules.
    #[serde(default)]
    pub write: RawAccess,
    /// Whether remote queries are allowed.
    #[serde(rename = "remoteQuery")]
    pub remote_query: Option<bool>,
}

/// Read or write rules.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccess {
    /// Everything in every collection.
    #[serde(default)]
    pub everything: bool,
    /// Per collection, queries a document must match.
    #[serde(default, rename = "queriesByCollection")]
    pub queries_by_collection: std::collections::BTreeMap<String, Vec<String>>,
}

/// `kind = "group"`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    /// Member provider names.
    #[serde(default)]
    pub members: Vec<String>,
    /// How members are combined.
    pub strategy: Option<RawStrategy>,
    /// `ordered`: also fall through when a member errors.
    #[serde(default)]
    pub fallthrough_on_error: bool,
}

/// Group strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RawStrategy {
    /// Ask all at once; the first allow wins.
    FirstSuccess,
    /// All must allow.
    All,
    /// Try in order.
    Ordered,
}

/// `[apps.<appID>]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawApp {
    /// Providers this app accepts.
    pub providers: Vec<String>,
}

/// `[cache]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCache {
    /// Entries kept at most.
    pub max_entries: u64,
    /// Cap on an allow's lifetime in the cache.
    pub max_ttl_seconds: u64,
    /// Lifetime of a cached denial.
    pub negative_ttl_seconds: u64,
    /// How long past its expiry an allow may be served while its provider fails.
    pub stale_if_error_seconds: u64,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            max_entries: DEFAULT_CACHE_MAX_ENTRIES,
            max_ttl_seconds: DEFAULT_CACHE_MAX_TTL_SECONDS,
            negative_ttl_seconds: DEFAULT_CACHE_NEGATIVE_TTL_SECONDS,
            stale_if_error_seconds: 0,
        }
    }
}

/// `[session]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSession {
    /// `EdDSA` (default), `ES256`, `RS256` or `HS256`.
    pub algorithm: Option<String>,
    /// PEM private key (HS256: the secret itself); absent = an ephemeral key.
    pub key_file: Option<String>,
    /// Keys that still verify during a rotation.
    pub previous_key_files: Vec<String>,
    /// `iss` of minted tokens.
    pub issuer: String,
    /// `aud` of minted tokens.
    pub audience: String,
    /// Cap on a session token's lifetime.
    pub max_ttl_seconds: u64,
    /// Extra time a tunnel stays open past its session's expiry.
    pub close_grace_seconds: u64,
    /// Lifetime of an upgrade ticket.
    pub ticket_ttl_seconds: u64,
    /// Re-check each open tunnel's decision this often (0: never).
    pub revalidate_seconds: u64,
    /// `hmac` (default): session tokens under a MAC key derived from the session key; `key`: signed
    /// with the session key, verifiable with the JWKS.
    pub token_signing: String,
}

impl Default for RawSession {
    fn default() -> Self {
        Self {
            algorithm: None,
            key_file: None,
            previous_key_files: Vec::new(),
            issuer: DEFAULT_SESSION_ISSUER.to_owned(),
            audience: DEFAULT_SESSION_ISSUER.to_owned(),
            max_ttl_seconds: DEFAULT_SESSION_MAX_TTL_SECONDS,
            close_grace_seconds: 0,
            ticket_ttl_seconds: DEFAULT_TICKET_TTL_SECONDS,
            revalidate_seconds: DEFAULT_SESSION_REVALIDATE_SECONDS,
            token_signing: DEFAULT_SESSION_TOKEN_SIGNING.to_owned(),
        }
    }
}

/// `[aggregator]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAggregator {
    /// Base64 key the caller's `ditto-signature` must verify with; absent = the door refuses
    /// every call unless `allow_unsigned` is set.
    pub signing_secret: Option<SecretText>,
    /// Oldest accepted signature.
    pub max_signature_age_seconds: u64,
    /// Answer unsigned calls (no `signing_secret`): an explicit opt-in, warned about.
    pub allow_unsigned: bool,
}

impl Default for RawAggregator {
    fn default() -> Self {
        Self {
            signing_secret: None,
            max_signature_age_seconds: DEFAULT_SIGNATURE_MAX_AGE_SECONDS,
            allow_unsigned: DEFAULT_AGGREGATOR_ALLOW_UNSIGNED,
        }
    }
}

/// `[rate_limit]` on the auth routes, per client IP.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRateLimit {
    /// Off switch.
    pub enabled: bool,
    /// Sustained requests per second.
    pub per_second: u32,
    /// Burst size.
    pub burst: u32,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        Self {
            enabled: true,
            per_second: DEFAULT_RATE_PER_SECOND,
            burst: DEFAULT_RATE_BURST,
        }
    }
}

/// `[cors]` for the auth routes.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCors {
    /// Origins allowed to call the auth routes from a browser (`"*"` for any).
    pub allowed_origins: Vec<String>,
}

fn default_provider_timeout() -> u64 {
    DEFAULT_PROVIDER_TIMEOUT_MS
}
fn default_max_concurrency() -> usize {
    DEFAULT_PROVIDER_MAX_CONCURRENCY
}
fn default_retries() -> u32 {
    DEFAULT_PROVIDER_RETRIES
}
fn default_circuit_failures() -> u32 {
    DEFAULT_CIRCUIT_FAILURES
}
fn default_circuit_cooldown() -> u64 {
    DEFAULT_CIRCUIT_COOLDOWN_MS
}
fn default_jwks_refresh() -> u64 {
    DEFAULT_JWKS_REFRESH_SECONDS
}
fn default_jwt_algorithms() -> Vec<String> {
    vec!["RS256".to_owned(), "ES256".to_owned(), "EdDSA".to_owned()]
}
fn default_user_claim() -> String {
    "sub".to_owned()
}

/// `[ditto]`: the Ditto SDK door.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDitto {
    /// Answer `/_ditto/auth/*` and gate `/_ditto/ws` by the Ditto rules.
    pub enabled: bool,
    /// A path prefix before `/_ditto` (the SDK keeps one when its auth URL ends with a slash).
    pub path_prefix: String,
    /// Open `/_ditto/ws` only with an access token seen in a relayed login success.
    pub require_known_token: bool,
}

/// `[tracing]`: OpenTelemetry traces; absent `otlp_endpoint` means off.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTracing {
    /// OTLP/HTTP (protobuf) collector URL, e.g. `http://otel-collector:4318`.
    pub otlp_endpoint: Option<UrlText>,
    /// Share of new traces exported, 0.0 to 1.0; a sampled incoming `traceparent` is always followed.
    pub sample_ratio: f64,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Time allowed for one export.
    pub export_timeout_ms: u64,
}

impl Default for RawTracing {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            sample_ratio: DEFAULT_TRACING_SAMPLE_RATIO,
            service_name: DEFAULT_TRACING_SERVICE_NAME.to_owned(),
            export_timeout_ms: DEFAULT_TRACING_EXPORT_TIMEOUT_MS,
        }
    }
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

/// `[forward_auth]`: the `/auth/check` door an ingress asks before it forwards a request.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawForwardAuth {
    /// Where a request without a session is sent (302); absent = 401 with `WWW-Authenticate`.
    pub signin_url: Option<String>,
    /// Also admit an identity provider's bearer token, decided through the decision cache for
    /// `app` and `provider`, without minting a session.
    pub accept_provider_tokens: bool,
    /// The app a provider token is decided for (with `accept_provider_tokens`).
    pub app: Option<String>,
    /// The provider a provider token is decided by (with `accept_provider_tokens`).
    pub provider: Option<String>,
    /// The one source of the forwarded request's path: `"path"` (the path under `/auth/check/`,
    /// as Envoy's `extAuth` sends it) or `"header:<name>"` (`X-Forwarded-Uri` for Traefik,
    /// `X-Original-URL` for ingress-nginx, `X-Original-URI` for an nginx `auth_request` snippet).
    pub uri_from: String,
}

/// `forward_auth.uri_from`: the path under the door.
pub const DEFAULT_FORWARD_AUTH_URI_FROM: &str = "path";

impl Default for RawForwardAuth {
    fn default() -> Self {
        Self {
            signin_url: None,
            accept_provider_tokens: false,
            app: None,
            provider: None,
            uri_from: DEFAULT_FORWARD_AUTH_URI_FROM.to_owned(),
        }
    }
}

/// `[native]`: the native login API.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawNative {
    /// The provider `POST /auth/token {"code"}` logs in through (restdb's code exchange).
    pub code_provider: Option<String>,
    /// The app that login is for.
    pub code_app: Option<String>,
}

/// Serializes a secret as `"<redacted>"` (or none), so that no serialized config carries one.
fn redacted<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_some("<redacted>"),
        None => s.serialize_none(),
    }
}
