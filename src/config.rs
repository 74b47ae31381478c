//! The validated configuration: loaded from one TOML file, checked whole before any port is bound.

pub mod auth;
pub mod cluster;
pub mod keys;
mod problem;
pub mod raw;
mod reload;
mod secrets;
mod settle;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, Scheme};

pub use crate::jsonlines::{SinkError, Target as LogTarget};
pub use problem::Problem;
pub use raw::RawLogFormat as LogFormat;
pub use secrets::{Recording, SKIPPED_FILE_PLACEHOLDER, SkipFiles, Sources, System};
pub use settle::Reload;

/// Environment variable naming the config file when `--config` is absent.
pub const ENV_CONFIG: &str = "DRAWBRIDGE_CONFIG";
/// Environment variable overriding `log.level`.
pub const ENV_LOG: &str = "DRAWBRIDGE_LOG";

/// A configuration in which every value has been checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// The client-facing listener.
    pub listen: Listen,
    /// TLS material; `None` in plaintext mode.
    pub tls: Option<Tls>,
    /// The admin listener.
    pub admin: Admin,
    /// The sync server behind the gateway.
    pub upstream: Upstream,
    /// Per-connection limits.
    pub limits: Limits,
    /// Drain deadline.
    pub shutdown: Shutdown,
    /// Logging.
    pub log: Log,
    /// Providers, apps, cache, sessions and the auth doors.
    pub auth: auth::Auth,
    /// The Ditto SDK door.
    pub ditto: Ditto,
    /// The audit log; `None` when off.
    pub audit: Option<Audit>,
    /// OpenTelemetry traces; `None` when off.
    pub tracing: Option<Tracing>,
    /// Settings that load but deserve the operator's attention (deprecated or risky keys).
    pub warnings: Vec<Problem>,
    /// `[cluster]`: state shared between replicas; `None` keeps everything local.
    pub cluster: Option<cluster::Cluster>,
    /// `[reload]`: how a changed file is picked up.
    pub reload: Reload,
}

/// `[ditto]`
#[derive(Debug, Clone, Default)]
pub struct Ditto {
    /// Whether the door is on.
    pub enabled: bool,
    /// Prefix before `/_ditto`, without a trailing slash (`""` for none).
    pub path_prefix: String,
    /// Gate `/_ditto/ws` on an access token seen in a login success.
    pub require_known_token: bool,
}

impl Ditto {
    /// `<prefix>/_ditto/auth/challenge`
    pub fn challenge_path(&self) -> String {
        format!("{}/_ditto/auth/challenge", self.path_prefix)
    }

    /// `<prefix>/_ditto/auth/login`
    pub fn login_path(&self) -> String {
        format!("{}/_ditto/auth/login", self.path_prefix)
    }

    /// `<prefix>/_ditto/ws`
    pub fn ws_path(&self) -> String {
        format!("{}/_ditto/ws", self.path_prefix)
    }
}

/// `[listen]`
#[derive(Debug, Clone)]
pub struct Listen {
    /// Address to bind.
    pub addr: SocketAddr,
    /// Listen queue length.
    pub backlog: u32,
    /// Every connection opens with a PROXY protocol header (v1 or v2), read before TLS; the
    /// address it names is the connection's client.
    pub proxy_protocol: bool,
    /// Proxies whose `X-Forwarded-For`/`Forwarded` name the client.
    pub trusted_proxies: TrustedProxies,
}

/// `listen.trusted_proxies`: the networks whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

// === impl TrustedProxies ===

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

impl TrustedProxies {
    /// Whether `ip` lies in one of the networks (an IPv4-mapped IPv6 address as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses CIDRs or single addresses; each entry that is neither, or a CIDR with host bits
    /// set (a typo more often than not), is a problem at `key.i`.
    fn parse(entries: &[String], key: &str, p: &mut Vec<Problem>) -> Self {
        let mut nets = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let text = entry.trim();
            let parsed = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(net) if net.trunc() != net => p.push(Problem::new(
                    format!("{key}.{i}"),
                    format!(
                        "{text:?} has host bits set; write the network, e.g. \"{}\"",
                        net.trunc()
                    ),
                )),
                Ok(net) => nets.push(net),
                Err(_) => p.push(Problem::new(
                    format!("{key}.{i}"),
                    format!(
                        "{text:?} is not a CIDR or an IP address (e.g. \"10.0.0.0/8\" or \"fd00::/8\")"
                    ),
                )),
            }
        }
        Self(nets)
    }
}

/// `[tls]`
#[derive(Debug, Clone)]
pub struct Tls {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM CA bundle for client certificates (mTLS), if required.
    pub client_ca_file: Option<PathBuf>,
}

/// `[admin]`
#[derive(Debug, Clone)]
pub struct Admin {
    /// Address to bind.
    pub addr: SocketAddr,
}

/// `[upstream]`
#[derive(Clone)]
pub struct Upstream {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Host and port of the sync server.
    pub authority: Authority,
    /// Canonical path prefixes (whole segments) whose websocket upgrades open without a session;
    /// every other websocket upgrade needs one.
    pub public_upgrade_paths: Vec<String>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Time allowed for the response head.
    pub request_timeout: Duration,
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

/// Smallest `limits.max_request_head_bytes`: hyper's smallest HTTP/1 read buffer.
pub const MIN_REQUEST_HEAD_BYTES: usize = 8192;
/// Largest `limits.max_request_head_bytes`: every unfinished head may hold this much memory.
pub const MAX_REQUEST_HEAD_BYTES: usize = 1024 * 1024;
/// Largest `limits.idle_timeout_ms` (one day).
pub const MAX_IDLE_TIMEOUT_MS: u64 = 86_400_000;
/// Largest HTTP/2 keep-alive interval or timeout (one hour).
pub const MAX_HTTP2_KEEP_ALIVE_MS: u64 = 3_600_000;

/// `[shutdown]`
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Drain deadline after SIGTERM.
    pub grace: Duration,
}

/// `[log]`
#[derive(Debug, Clone)]
pub struct Log {
    /// Line format.
    pub format: LogFormat,
    /// `EnvFilter` directive.
    pub level: String,
    /// The access log, when on.
    pub access: Option<Audit>,
}

/// `[tracing]`
#[derive(Clone, PartialEq)]
pub struct Tracing {
    /// The OTLP/HTTP collector URL (`/v1/traces` is added when it has no path).
    pub otlp_endpoint: String,
    /// Share of new traces exported.
    pub sample_ratio: f64,
    /// `service.name`.
    pub service_name: String,
    /// Time allowed for one export.
    pub export_timeout: Duration,
}

/// `[audit]`, and the access log's settings: where the lines go and how many may wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// The file, or standard output.
    pub target: LogTarget,
    /// Lines queued before new ones are dropped.
    pub queue_lines: usize,
}

impl fmt::Debug for Upstream {
    /// Never prints user info in the authority.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("scheme", &self.scheme)
            .field("authority", &raw::shown_url(self.authority.as_str()))
            .field("public_upgrade_paths", &self.public_upgrade_paths)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl fmt::Debug for Tracing {
    /// Never prints the endpoint's user info or query.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracing")
            .field("otlp_endpoint", &raw::shown_url(&self.otlp_endpoint))
            .field("sample_ratio", &self.sample_ratio)
            .field("service_name", &self.service_name)
            .field("export_timeout", &self.export_timeout)
            .finish()
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML. The message names the line, the column and the key, never
    /// the line's text: it may hold a secret.
    #[error("not valid TOML: {0}")]
    Syntax(SyntaxError),
    /// The file is TOML but some values are wrong; one problem per line.
    #[error("{}", display_problems(.0))]
    Invalid(Vec<Problem>),
}

/// Where a config file stops being TOML, and why, without any of its values.
///
/// toml's own error quotes the offending line, which may be `redis_url = "redis://:password@..`
/// or a webhook's `Authorization` header: this keeps only its position, the key the line assigns
/// and the parser's message with anything quoted in it removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// The key the line assigns (`a.b = ..`) or the table it opens (`[a.b]`), when it reads as one.
    pub key: Option<String>,
    /// The parser's message, with quoted text removed.
    pub message: String,
}

impl SyntaxError {
    fn new(error: &toml::de::Error, text: &str) -> Self {
        let at = error.span().map_or(0, |s| s.start).min(text.len());
        let at = (0..=at)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
        let line = text[..at].matches('\n').count() + 1;
        let column = text[line_start..at].chars().count() + 1;
        Self {
            line,
            column,
            key: key_of_line(&text[line_start..line_end]),
            message: unquoted(error.message()),
        }
    }
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)?;
        if let Some(key) = &self.key {
            write!(f, " (at {key})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The key a TOML line assigns, or the table it opens: bare or quoted key characters only, so no
/// part of a value is ever taken for a key.
fn key_of_line(line: &str) -> Option<String> {
    let line = line.trim();
    let key = if let Some(table) = line.strip_prefix('[') {
        table.trim_start_matches('[').split(']').next()?
    } else {
        line.split_once('=')?.0
    };
    let key = key.trim();
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ');
    (!key.is_empty() && key.len() <= 128 && key.chars().all(plain)).then(|| key.to_owned())
}

/// A one-line parser message with every quoted part (`".."`, `'..'`, `` `..` ``) replaced by
/// `..`, except a token of one or two punctuation characters (``expected `"` ``), which names
/// syntax rather than a value.
fn unquoted(message: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    let mut out = String::with_capacity(first.len());
    let mut quoted: Option<(char, String)> = None;
    for c in first.chars() {
        match &mut quoted {
            Some((q, inside)) if c == *q => {
                if inside.chars().count() <= 2 && inside.chars().all(|c| c.is_ascii_punctuation()) {
                    out.push(*q);
                    out.push_str(inside);
                    out.push(*q);
                } else {
                    out.push_str("..");
                }
                quoted = None;
            }
            Some((_, inside)) => inside.push(c),
            None if matches!(c, '"' | '\'' | '`') => quoted = Some((c, String::new())),
            None => out.push(c),
        }
    }
    if quoted.is_some() {
        out.push_str("..");
    }
    out.trim().to_owned()
}

fn display_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// One line per problem, each naming its key path.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Self::Invalid(problems) => problems.iter().map(ToString::to_string).collect(),
            other => other.to_string().lines().map(str::to_owned).collect(),
        }
    }
}

// === impl Config ===

impl Config {
    /// Reads and validates the file at `path`, resolving references from the real environment.
    ///
    /// # Errors
    /// [`ConfigError`] when the file is unreadable, not TOML, or has wrong values.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(path, &System)
    }

    /// The keys that differ between `self` (running) and `next` and that only a restart applies:
    /// the bound addresses and the listen queue, TLS on or off, the log format, and the outputs and links set
    /// up once at start (`log.access`, `[audit]`, `[tracing]`, `[cluster]`). A reload applies the rest.
    pub fn restart_changes(&self, next: &Self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.listen.addr != next.listen.addr {
            keys.push("listen.addr");
        }
        if self.listen.backlog != next.listen.backlog {
            keys.push("listen.backlog");
        }
        if self.admin.addr != next.admin.addr {
            keys.push("admin.addr");
        }
        if self.tls.is_some() != next.tls.is_some() {
            keys.push("tls");
        }
        if self.log.format != next.log.format {
            keys.push("log.format");
        }
        if self.log.access != next.log.access {
            keys.push("log.access");
        }
        if self.audit != next.audit {
            keys.push("audit");
        }
        if self.tracing != next.tracing {
            keys.push("tracing");
        }
        if self.cluster != next.cluster {
            keys.push("cluster");
        }
        keys
    }

    /// Every file this config names that a reload reads again: the client CA bundle, the session
    /// keys and JWKS files (`${file:..}` secrets are recorded while the file is read, see
    /// [`Recording`]). The certificate pair is watched by the TLS part itself.
    pub fn named_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        files.extend(self.tls.as_ref().and_then(|t| t.client_ca_file.clone()));
        let session = &self.auth.session;
        files.extend(session.key_file.iter().cloned());
        files.extend(session.previous_key_files.iter().cloned());
        files.extend(self.auth.providers.values().filter_map(|p| match p {
            auth::ProviderConfig::Jwt(j) => match &j.keys {
                auth::JwksSource::File(path) => Some(path.clone()),
                auth::JwksSource::Url(_) => None,
            },
            auth::ProviderConfig::Webhook(_) | auth::ProviderConfig::Group(_) => None,
        }));
        files
    }

    /// Reads and validates the file at `path`, resolving references from `sources`.
    ///
    /// # Errors
    /// [`ConfigError`] when the file is unreadable, not TOML, or has wrong values.
    pub fn load_with(path: &Path, sources: &dyn Sources) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, sources)
    }

    /// Parses and validates TOML text, resolving `${env:..}`/`${file:..}` from `sources`.
    ///
    /// # Errors
    /// [`ConfigError::Syntax`] for bad TOML, [`ConfigError::Invalid`] listing every wrong value.
    pub fn from_toml(text: &str, sources: &dyn Sources) -> Result<Self, ConfigError> {
        let mut value: toml::Value = toml::from_str::<toml::Table>(text)
            .map(toml::Value::Table)
            .map_err(|e| ConfigError::Syntax(SyntaxError::new(&e, text)))?;
        let mut problems = Vec::new();
        secrets::resolve(&mut value, &mut Vec::new(), sources, &mut problems);
        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems));
        }
        let raw: raw::RawConfig = serde_path_to_error::deserialize(value)
            .map_err(|e| ConfigError::Invalid(vec![structural_problem(&e)]))?;
        Self::try_from(raw)
    }
}

/// Turns serde's first structural error into a problem at its key path.
fn structural_problem(e: &serde_path_to_error::Error<toml::de::Error>) -> Problem {
    let path = e.path().to_string();
    let path = if path == "." { String::new() } else { path };
    let message = e.inner().message().trim().to_owned();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let path = join_path(&path, field);
        let expected = expected.trim_start_matches(',').trim().replace('`', "");
        let hint = if expected.is_empty() {
            String::new()
        } else {
            format!(" ({expected})")
        };
        return Problem::new(path, format!("unknown field{hint}"));
    }
    Problem::new(path, without_value(&message))
}

/// A serde message without the value it quotes (it may be a secret): `invalid type: string
/// "..", expected u64` becomes `invalid type: string, expected u64`. An unknown variant is still
/// named: only enum keys (`kind`, `format`, ..) have variants, and none of them is a secret.
fn without_value(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let (unexpected, expected) = rest.split_once(", expected").unwrap_or((rest, ""));
            let kind = unexpected
                .split(['"', '`', '\''])
                .next()
                .unwrap_or_default()
                .trim();
            let expected = if expected.is_empty() {
                String::new()
            } else {
                format!(", expected{}", expected.replace('`', ""))
            };
            return format!("{prefix}{kind}{expected}");
        }
    }
    message.replace('`', "")
}

fn join_path(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        field.to_owned()
    } else if parent.rsplit('.').next() == Some(field) {
        parent.to_owned()
    } else {
        format!("{parent}.{field}")
    }
}

impl TryFrom<raw::RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: raw::RawConfig) -> Result<Self, Self::Error> {
        let mut p = Vec::new();

        let listen_addr = socket_addr(&raw.listen.addr, "listen.addr", &mut p);
        if !(1..=65_535).contains(&raw.listen.backlog) {
            p.push(Problem::new(
                "listen.backlog",
                "must be between 1 and 65535",
            ));
        }
        let admin_addr = socket_addr(&raw.admin.addr, "admin.addr", &mut p);
        if let (Some(l), Some(a)) = (listen_addr, admin_addr)
            && l == a
            && l.port() != 0
        {
            p.push(Problem::new("admin.addr", "must differ from listen.addr"));
        }

        let tls = if raw.listen.plaintext {
            None
        } else {
            for (key, v) in [
                ("tls.cert_file", &raw.tls.cert_file),
                ("tls.key_file", &raw.tls.key_file),
            ] {
                if v.trim().is_empty() {
                    p.push(Problem::new(key, "must not be empty"));
                }
            }
            Some(Tls {
                cert_file: PathBuf::from(&raw.tls.cert_file),
                key_file: PathBuf::from(&raw.tls.key_file),
                client_ca_file: raw.tls.client_ca_file.as_ref().map(PathBuf::from),
            })
        };
        if raw.listen.plaintext && raw.tls.client_ca_file.is_some() {
            p.push(Problem::new(
                "tls.client_ca_file",
                "client certificates need TLS; remove it or set listen.plaintext = false",
            ));
        }

        let upstream = upstream(&raw.upstream, &mut p);
        let cluster = raw
            .cluster
            .as_ref()
            .and_then(|c| cluster::validate(c, &mut p));
        if raw.cluster.is_some() && raw.session.key_file.is_none() {
            // An ephemeral key is made per process: a session minted on one replica would be
            // refused by every other, so cluster mode without a shared key is never what is meant.
            p.push(Problem::new(
                "session.key_file",
                "required with [cluster]: every replica must sign with the same key, and an \
                 ephemeral key is made per process (make one with `drawbridge keygen`)",
            ));
        }
        let auth = auth::validate(&raw, &mut p);
        let prefix = raw.ditto.path_prefix.trim_end_matches('/').to_owned();
        if !(prefix.is_empty() || prefix.starts_with('/')) || prefix.contains(['?', '#']) {
            p.push(Problem::new(
                "ditto.path_prefix",
                "must be empty or a path starting with / (e.g. \"/sync-gw\")",
            ));
        } else if !prefix.is_empty()
            && crate::canonical::canonical_path(&prefix).as_deref() != Ok(prefix.as_str())
        {
            // Requests are routed on their canonical path: another spelling would never match.
            p.push(Problem::new(
                "ditto.path_prefix",
                "must be canonical: no empty, . or .. segments, no escapes of unreserved characters",
            ));
        }
        if raw.ditto.require_known_token && !raw.ditto.enabled {
            p.push(Problem::new(
                "ditto.require_known_token",
                "needs ditto.enabled = true",
            ));
        }
        let ditto = Ditto {
            enabled: raw.ditto.enabled,
            path_prefix: prefix,
            require_known_token: raw.ditto.require_known_token,
        };
        let mut warnings = upstream_warnings(&raw.upstream, &ditto);
        if let Some(auth) = &auth {
            warnings.extend(auth.aggregator.warnings());
        }

        for (key, v) in [
            (
                "upstream.connect_timeout_ms",
                raw.upstream.connect_timeout_ms,
            ),
            (
                "upstream.request_timeout_ms",
                raw.upstream.request_timeout_ms,
            ),
            (
                "limits.header_read_timeout_ms",
                raw.limits.header_read_timeout_ms,
            ),
            (
                "limits.tls_handshake_timeout_ms",
                raw.limits.tls_handshake_timeout_ms,
            ),
            (
                "limits.max_request_body_bytes",
                raw.limits.max_request_body_bytes,
            ),
            ("shutdown.grace_seconds", raw.shutdown.grace_seconds),
            ("limits.idle_timeout_ms", raw.limits.idle_timeout_ms),
            (
                "limits.http2_keep_alive_interval_ms",
                raw.limits.http2_keep_alive_interval_ms,
            ),
            (
                "limits.http2_keep_alive_timeout_ms",
                raw.limits.http2_keep_alive_timeout_ms,
            ),
        ] {
            if v == 0 {
                p.push(Problem::new(key, "must be greater than 0"));
            }
        }
        for (key, v, max) in [
            (
                "limits.idle_timeout_ms",
                raw.limits.idle_timeout_ms,
                MAX_IDLE_TIMEOUT_MS,
            ),
            (
                "limits.http2_keep_alive_interval_ms",
                raw.limits.http2_keep_alive_interval_ms,
                MAX_HTTP2_KEEP_ALIVE_MS,
            ),
            (
                "limits.http2_keep_alive_timeout_ms",
                raw.limits.http2_keep_alive_timeout_ms,
                MAX_HTTP2_KEEP_ALIVE_MS,
            ),
        ] {
            if v > max {
                p.push(Problem::new(key, format!("must be at most {max}")));
            }
        }
        if !(MIN_REQUEST_HEAD_BYTES..=MAX_REQUEST_HEAD_BYTES)
            .contains(&raw.limits.max_request_head_bytes)
        {
            p.push(Problem::new(
                "limits.max_request_head_bytes",
                format!(
                    "must be between {MIN_REQUEST_HEAD_BYTES} and {MAX_REQUEST_HEAD_BYTES} (e.g. 32768)"
                ),
            ));
        }
        if raw.limits.max_connections == 0 {
            p.push(Problem::new(
                "limits.max_connections",
                "must be greater than 0",
            ));
        }
        if raw.limits.max_connections_per_client == 0 {
            p.push(Problem::new(
                "limits.max_connections_per_client",
                "must be greater than 0",
            ));
        }
        let trusted_proxies = TrustedProxies::parse(
            &raw.listen.trusted_proxies,
            "listen.trusted_proxies",
            &mut p,
        );
        if raw.shutdown.grace_seconds > 3600 {
            p.push(Problem::new(
                "shutdown.grace_seconds",
                "must be at most 3600",
            ));
        }
        if tracing_subscriber::EnvFilter::builder()
            .parse(&raw.log.level)
            .is_err()
        {
            p.push(Problem::new(
                "log.level",
                "not a valid level or filter (e.g. \"info\" or \"drawbridge=debug,info\")",
            ));
        }

        let audit = log_sink(
            raw.audit.path.as_deref(),
            raw.audit.queue_lines,
            "audit",
            &mut p,
        );
        let access = if raw.log.access {
            log_sink(
                Some(&raw.log.access_path),
                raw.log.access_queue_lines,
                "log.access",
                &mut p,
            )
        } else {
            None
        };

        let tracing = tracing_settings(&raw.tracing, &mut p);
        let reload = settle::settings(&raw.reload, &mut p);

        match (listen_addr, admin_addr, upstream, auth) {
            (Some(listen), Some(admin), Some(upstream), Some(auth)) if p.is_empty() => Ok(Self {
                listen: Listen {
                    addr: listen,
                    backlog: raw.listen.backlog,
                    proxy_protocol: raw.listen.proxy_protocol,
                    trusted_proxies,
                },
                tls,
                admin: Admin { addr: admin },
                upstream,
                limits: Limits {
                    max_connections: raw.limits.max_connections,
                    max_connections_per_client: raw.limits.max_connections_per_client,
                    header_read_timeout: Duration::from_millis(raw.limits.header_read_timeout_ms),
                    tls_handshake_timeout: Duration::from_millis(
                        raw.limits.tls_handshake_timeout_ms,
                    ),
                    max_request_body_bytes: raw.limits.max_request_body_bytes,
                    idle_timeout: Duration::from_millis(raw.limits.idle_timeout_ms),
                    max_request_head_bytes: raw.limits.max_request_head_bytes,
                    http2_keep_alive_interval: Duration::from_millis(
                        raw.limits.http2_keep_alive_interval_ms,
                    ),
                    http2_keep_alive_timeout: Duration::from_millis(
                        raw.limits.http2_keep_alive_timeout_ms,
                    ),
                },
                shutdown: Shutdown {
                    grace: Duration::from_secs(raw.shutdown.grace_seconds),
                },
                log: Log {
                    format: raw.log.format,
                    level: raw.log.level,
                    access,
                },
                auth,
                ditto,
                audit,
                tracing,
                warnings,
                cluster,
                reload,
            }),
            _ => Err(ConfigError::Invalid(p)),
        }
    }
}

fn tracing_settings(raw: &raw::RawTracing, p: &mut Vec<Problem>) -> Option<Tracing> {
    if !(0.0..=1.0).contains(&raw.sample_ratio) {
        p.push(Problem::new(
            "tracing.sample_ratio",
            "must be between 0.0 and 1.0",
        ));
    }
    if raw.service_name.trim().is_empty() {
        p.push(Problem::new("tracing.service_name", "must not be empty"));
    }
    if raw.export_timeout_ms == 0 {
        p.push(Problem::new(
            "tracing.export_timeout_ms",
            "must be greater than 0",
        ));
    }
    let endpoint = raw.otlp_endpoint.as_ref()?;
    let usable = endpoint
        .parse::<http::Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some());
    if !usable {
        p.push(Problem::new(
            "tracing.otlp_endpoint",
            "must be an http:// or https:// URL (e.g. \"http://otel-collector:4318\")",
        ));
        return None;
    }
    Some(Tracing {
        otlp_endpoint: endpoint.0.clone(),
        sample_ratio: raw.sample_ratio,
        service_name: raw.service_name.clone(),
        export_timeout: Duration::from_millis(raw.export_timeout_ms),
    })
}

/// Largest audit or access queue: each waiting line holds memory.
pub const MAX_LOG_QUEUE_LINES: usize = 1_000_000;

/// A JSON-lines log's settings from its `path` and queue size; `prefix` is the keys' table
/// (`audit`), or the flag that turns it on (`log.access`, whose keys are `log.access_*`).
fn log_sink(
    path: Option<&str>,
    queue_lines: usize,
    prefix: &str,
    p: &mut Vec<Problem>,
) -> Option<Audit> {
    let (path_key, queue_key) = if prefix == "audit" {
        ("audit.path".to_owned(), "audit.queue_lines".to_owned())
    } else {
        (format!("{prefix}_path"), format!("{prefix}_queue_lines"))
    };
    if !(1..=MAX_LOG_QUEUE_LINES).contains(&queue_lines) {
        p.push(Problem::new(
            queue_key,
            format!("must be between 1 and {MAX_LOG_QUEUE_LINES}"),
        ));
    }
    let path = path?;
    if path.trim().is_empty() {
        p.push(Problem::new(
            path_key,
            "must be a file path, or \"-\" for standard output",
        ));
        return None;
    }
    Some(Audit {
        target: LogTarget::parse(path),
        queue_lines,
    })
}

fn socket_addr(s: &str, key: &str, p: &mut Vec<Problem>) -> Option<SocketAddr> {
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            p.push(Problem::new(
                key,
                "not an IP:port socket address (e.g. \"0.0.0.0:8443\")",
            ));
            None
        }
    }
}

fn upstream(raw: &raw::RawUpstream, p: &mut Vec<Problem>) -> Option<Upstream> {
    for (i, path) in raw.public_upgrade_paths.iter().enumerate() {
        if let Some(why) = public_upgrade_path_problem(path) {
            p.push(Problem::new(
                format!("upstream.public_upgrade_paths.{i}"),
                why,
            ));
        }
    }
    let Some(url) = &raw.url else {
        p.push(Problem::new("upstream.url", "missing"));
        return None;
    };
    let bad = |p: &mut Vec<Problem>, why: &str| {
        p.push(Problem::new("upstream.url", why));
        None
    };
    let Ok(uri) = url.parse::<http::Uri>() else {
        return bad(p, "not a valid URL (e.g. \"http://127.0.0.1:8080\")");
    };
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::HTTP,
        Some("https") => Scheme::HTTPS,
        _ => return bad(p, "scheme must be http or https"),
    };
    let Some(authority) = uri.authority().cloned() else {
        return bad(p, "needs a host");
    };
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return bad(
            p,
            "must not have a path or query; requests keep their own path",
        );
    }
    Some(Upstream {
        scheme,
        authority,
        public_upgrade_paths: raw.public_upgrade_paths.clone(),
        connect_timeout: Duration::from_millis(raw.connect_timeout_ms),
        request_timeout: Duration::from_millis(raw.request_timeout_ms),
    })
}

/// What is wrong with one `upstream.public_upgrade_paths` entry, if anything. Requests are matched
/// on their canonical path, so an entry in any other spelling would never match, or match more.
fn public_upgrade_path_problem(path: &str) -> Option<&'static str> {
    if !path.starts_with('/') {
        return Some("must start with /");
    }
    if path.trim_end_matches('/').is_empty() {
        return Some(
            "/ would leave no websocket path gated; list the prefixes that may open without a session",
        );
    }
    if path.contains(['?', '#']) {
        return Some("must be a path only, without ? or #");
    }
    match crate::canonical::canonical_path(path) {
        Ok(canonical) if canonical == path => None,
        Ok(_) => Some(
            "must be canonical: no empty, . or .. segments, no escapes of unreserved characters, \
             other escapes in upper-case hex",
        ),
        Err(_) => {
            Some("must be canonical: no encoded / or \\, no control characters, no broken escapes")
        }
    }
}

/// Warnings about `[upstream]` that do not stop the config from loading.
fn upstream_warnings(raw: &raw::RawUpstream, ditto: &Ditto) -> Vec<Problem> {
    let mut w = Vec::new();
    if raw.sync_paths.is_some() {
        w.push(Problem::new(
            "upstream.sync_paths",
            "is no longer used: every websocket upgrade now needs a session; list the exceptions in \
             upstream.public_upgrade_paths and remove upstream.sync_paths",
        ));
    }
    if ditto.enabled && !ditto.require_known_token {
        let ws = ditto.ws_path();
        if raw
            .public_upgrade_paths
            .iter()
            .any(|prefix| crate::canonical::has_segment_prefix(&ws, prefix))
        {
            w.push(Problem::new(
                "upstream.public_upgrade_paths",
                "covers the Ditto websocket while ditto.require_known_token = false: it opens with no \
                 check by drawbridge at all; set ditto.require_known_token = true or remove the entry",
            ));
        }
    }
    w
}

#[cfg(test)]
mod tests;
