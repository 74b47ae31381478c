//! The validated configuration: loaded from one TOML file, checked whole before any port is bound.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod cluster;
mod diagnose;
pub mod ditto;
pub mod keys;
pub mod limits;
pub mod listen;
pub mod log;
mod problem;
pub mod raw;
mod reload;
mod secrets;
mod section;
mod settle;
pub mod shutdown;
mod text;
pub mod tls;
pub mod traces;
pub mod upstream;

use std::fmt;
use std::path::{Path, PathBuf};
// The unit tests in config/tests.rs take it from here with the rest (`use super::*`).
#[cfg(test)]
use std::time::Duration;

pub use crate::jsonlines::{SinkError, Target as LogTarget};
pub use admin::Admin;
pub use audit::{Audit, MAX_LOG_QUEUE_LINES};
pub use ditto::Ditto;
pub use limits::{
    Limits, MAX_HTTP2_KEEP_ALIVE_MS, MAX_IDLE_TIMEOUT_MS, MAX_REQUEST_HEAD_BYTES,
    MIN_REQUEST_HEAD_BYTES,
};
pub use listen::{Listen, TrustedProxies};
pub use log::{Log, RawLogFormat as LogFormat};
pub use problem::Problem;
pub use secrets::{Recording, SKIPPED_FILE_PLACEHOLDER, SkipFiles, Sources, System, secret_text};
use section::Section;
pub use settle::Reload;
pub use shutdown::Shutdown;
pub use tls::Tls;
pub use traces::Tracing;
pub use upstream::Upstream;

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
    /// Every problem of a config that got as far as its keys and values, in file order, each
    /// with its line when known; none for an unreadable file or a syntax error.
    #[must_use]
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid(problems) => problems,
            Self::Read { .. } | Self::Syntax(_) => &[],
        }
    }

    /// One line per problem, each naming its key path.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Self::Invalid(problems) => problems.iter().map(ToString::to_string).collect(),
            other => other.to_string().lines().map(str::to_owned).collect(),
        }
    }
}

/// Runs `$body` with each section of `$config` bound to `$a` and the same section of `$other` to
/// `$b`, in file order. `Config` is destructured whole, so a new section cannot be left out of
/// the reload rules: each section's [`Section`] impl says what its keys need.
macro_rules! each_section {
    ($config:expr, $other:expr, |$a:ident, $b:ident| $body:expr) => {{
        let Config {
            listen,
            tls,
            admin,
            upstream,
            limits,
            shutdown,
            log,
            auth,
            ditto,
            audit,
            tracing,
            warnings: _,
            cluster,
            reload,
        } = $config;
        let other: &Config = $other;
        {
            let ($a, $b) = (listen, &other.listen);
            $body;
        }
        {
            let ($a, $b) = (admin, &other.admin);
            $body;
        }
        {
            let ($a, $b) = (tls, &other.tls);
            $body;
        }
        {
            let ($a, $b) = (upstream, &other.upstream);
            $body;
        }
        {
            let ($a, $b) = (limits, &other.limits);
            $body;
        }
        {
            let ($a, $b) = (shutdown, &other.shutdown);
            $body;
        }
        {
            let ($a, $b) = (log, &other.log);
            $body;
        }
        {
            let ($a, $b) = (auth, &other.auth);
            $body;
        }
        {
            let ($a, $b) = (ditto, &other.ditto);
            $body;
        }
        {
            let ($a, $b) = (audit, &other.audit);
            $body;
        }
        {
            let ($a, $b) = (tracing, &other.tracing);
            $body;
        }
        {
            let ($a, $b) = (cluster, &other.cluster);
            $body;
        }
        {
            let ($a, $b) = (reload, &other.reload);
            $body;
        }
    }};
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

    /// The keys that differ between `self` (running) and `next` and that only a restart applies,
    /// as each section's rule says (the bound addresses and the listen queue, TLS on or off, the
    /// log format, and the outputs and links set up once at start: `log.access`, `[audit]`,
    /// `[tracing]`, `[cluster]`). A reload applies the rest.
    pub fn restart_changes(&self, next: &Self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        each_section!(self, next, |running, next| running
            .restart_keys(next, &mut keys));
        keys
    }

    /// Every file this config names that a reload reads again, as each section lists its own:
    /// the client CA bundle, the session keys, JWKS files. `${file:..}` secrets are recorded while
    /// the file is read (see [`Recording`]); the certificate pair is watched by the TLS part itself.
    pub fn named_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        each_section!(self, self, |section, _same| section.named_files(&mut files));
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
            return Err(ConfigError::Invalid(diagnose::in_file_order(
                problems, text,
            )));
        }
        // Every structural problem (each offending key taken out in turn), then every value
        // problem of the rest: one run reports all of them, in file order.
        let (raw, mut problems) = diagnose::read_all(value);
        let checked = raw.map(Self::try_from);
        match checked {
            Some(Ok(mut config)) if problems.is_empty() => {
                config.warnings =
                    diagnose::in_file_order(std::mem::take(&mut config.warnings), text);
                Ok(config)
            }
            Some(Ok(_)) | None => Err(ConfigError::Invalid(diagnose::in_file_order(
                problems, text,
            ))),
            Some(Err(ConfigError::Invalid(more))) => {
                problems.extend(more);
                Err(ConfigError::Invalid(diagnose::in_file_order(
                    problems, text,
                )))
            }
            Some(Err(other)) => Err(other),
        }
    }
}

impl TryFrom<raw::RawConfig> for Config {
    type Error = ConfigError;

    /// Each section validates itself, in file order; the checks that span sections follow.
    fn try_from(raw: raw::RawConfig) -> Result<Self, Self::Error> {
        let mut p = Vec::new();
        let listen = listen::validate(&raw.listen, &mut p);
        let admin = admin::validate(&raw.admin, listen.as_ref().map(|l| l.addr), &mut p);
        let tls = tls::validate(&raw.tls, raw.listen.plaintext, &mut p);
        let upstream = upstream::validate(&raw.upstream, &mut p);
        let limits = limits::validate(&raw.limits, &mut p);
        let shutdown = shutdown::validate(&raw.shutdown, &mut p);
        let log = log::validate(&raw.log, &mut p);
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
        let ditto = ditto::validate(&raw.ditto, &mut p);
        let audit = audit::validate(&raw.audit, &mut p);
        let tracing = traces::validate(&raw.tracing, &mut p);
        let reload = settle::settings(&raw.reload, &mut p);

        let mut warnings = upstream::warnings(&raw.upstream, &ditto);
        if let Some(auth) = &auth {
            warnings.extend(auth.aggregator.warnings());
        }
        match (listen, admin, upstream, auth) {
            (Some(listen), Some(admin), Some(upstream), Some(auth)) if p.is_empty() => Ok(Self {
                listen,
                tls,
                admin,
                upstream,
                limits,
                shutdown,
                log,
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

#[cfg(test)]
mod tests;
