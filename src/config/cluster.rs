//! `[cluster]`: the validated Redis settings that let replicas share revocations, tickets, learned
//! tokens and decisions. The password is kept out of every `Debug` output and problem message.

use std::fmt;
use std::time::Duration;

use super::problem::Problem;
use super::raw::{RawCluster, redacted_url};

/// The longest `resync_interval_ms` accepted: a dropped message lives at most this long.
const MAX_RESYNC_INTERVAL_MS: u64 = 300_000;

/// `[cluster]`, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct Cluster {
    /// `redis://` or `rediss://` URL, possibly with credentials (never printed).
    pub redis_url: String,
    /// AUTH username.
    pub username: Option<String>,
    /// AUTH password (never printed).
    pub password: Option<String>,
    /// Prefix of every key and channel.
    pub key_prefix: String,
    /// Deadline of a connection attempt.
    pub connect_timeout: Duration,
    /// Deadline of one command.
    pub command_timeout: Duration,
    /// Period of the full revocation reload.
    pub resync_interval: Duration,
    /// `/readyz` answers 503 while Redis is unreachable.
    pub required: bool,
    /// The decision cache has a shared second level.
    pub shared_decisions: bool,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("redis_url", &redacted_url(&self.redis_url))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("key_prefix", &self.key_prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("resync_interval", &self.resync_interval)
            .field("required", &self.required)
            .field("shared_decisions", &self.shared_decisions)
            .finish()
    }
}

/// Checks a `redis_url` whole: `redis://` or `rediss://`, a host, a numeric port (1-65535) when
/// one is given, and a database number as the only path segment; no query, no fragment (the
/// client would read `#insecure` as "skip certificate checks"). The reason never repeats the URL,
/// which may hold a password.
fn check_url(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Err(
            "must be set (e.g. \"redis://redis:6379\" or \"rediss://redis:6380\")".to_owned(),
        );
    }
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err("must start with redis:// or rediss://".to_owned());
    }
    let parsed = url::Url::parse(url).map_err(|e| match e {
        url::ParseError::InvalidPort => {
            "has a port that is not a number from 1 to 65535".to_owned()
        }
        url::ParseError::EmptyHost => "has no host".to_owned(),
        other => format!("is not a valid URL: {other}"),
    })?;
    match parsed.host_str() {
        None | Some("") => return Err("has no host".to_owned()),
        Some("0.0.0.0" | "[::]") => {
            return Err("names a wildcard address, not a host to connect to".to_owned());
        }
        Some(_) => {}
    }
    if parsed.port() == Some(0) {
        return Err("has a port that is not a number from 1 to 65535".to_owned());
    }
    let db = parsed.path().strip_prefix('/').unwrap_or(parsed.path());
    let db_number =
        db.len() <= 5 && db.bytes().all(|b| b.is_ascii_digit()) && db.parse::<u16>().is_ok();
    if !db.is_empty() && !db_number {
        return Err(
            "has a path that is not a database number (e.g. redis://redis:6379/0)".to_owned(),
        );
    }
    if parsed.query().is_some() {
        return Err("must not have a query (?...)".to_owned());
    }
    if parsed.fragment().is_some() {
        return Err(
            "must not have a fragment (#...): #insecure would turn off certificate checks"
                .to_owned(),
        );
    }
    Ok(())
}

/// Checks `[cluster]`, pushing one [`Problem`] per bad key.
pub(super) fn validate(raw: &RawCluster, p: &mut Vec<Problem>) -> Option<Cluster> {
    let before = p.len();
    let url = raw.redis_url.trim();
    if let Err(why) = check_url(url) {
        p.push(Problem::new("cluster.redis_url", why));
    }
    if raw.password.as_deref().is_some_and(str::is_empty) {
        p.push(Problem::new(
            "cluster.password",
            "is empty; remove it or give it through ${file:..} or ${env:..}",
        ));
    }
    if raw.username.is_some() && raw.password.is_none() {
        p.push(Problem::new("cluster.username", "needs cluster.password"));
    }
    if raw.key_prefix.contains(char::is_whitespace) {
        p.push(Problem::new(
            "cluster.key_prefix",
            "must not contain whitespace",
        ));
    }
    for (key, v) in [
        ("cluster.connect_timeout_ms", raw.connect_timeout_ms),
        ("cluster.command_timeout_ms", raw.command_timeout_ms),
        ("cluster.resync_interval_ms", raw.resync_interval_ms),
    ] {
        if v == 0 {
            p.push(Problem::new(key, "must be greater than 0"));
        }
    }
    if raw.resync_interval_ms > MAX_RESYNC_INTERVAL_MS {
        p.push(Problem::new(
            "cluster.resync_interval_ms",
            format!(
                "must be at most {MAX_RESYNC_INTERVAL_MS}: a missed revocation lives that long"
            ),
        ));
    }
    (p.len() == before).then(|| Cluster {
        redis_url: url.to_owned(),
        username: raw.username.clone(),
        password: raw.password.clone(),
        key_prefix: raw.key_prefix.clone(),
        connect_timeout: Duration::from_millis(raw.connect_timeout_ms),
        command_timeout: Duration::from_millis(raw.command_timeout_ms),
        resync_interval: Duration::from_millis(raw.resync_interval_ms),
        required: raw.required,
        shared_decisions: raw.shared_decisions,
    })
}

/// The Redis link is set up once, at start.
impl super::section::Section for Option<Cluster> {
    fn restart_keys(&self, next: &Self, keys: &mut Vec<&'static str>) {
        super::section::restart_if_changed("cluster", self, next, keys);
    }
}
