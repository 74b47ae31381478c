//! `[cluster]`: the validated Redis settings that let replicas share revocations, tickets, learned
//! tokens and decisions. The password is kept out of every `Debug` output and problem message.

use std::fmt;
use std::time::Duration;

use super::Problem;
use super::raw::RawCluster;

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

/// `url` with any `user:password@` replaced, safe to log.
pub fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://<redacted>@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Checks `[cluster]`, pushing one [`Problem`] per bad key.
pub(super) fn validate(raw: &RawCluster, p: &mut Vec<Problem>) -> Option<Cluster> {
    let before = p.len();
    let url = raw.redis_url.trim();
    if url.is_empty() {
        p.push(Problem::new(
            "cluster.redis_url",
            "must be set (e.g. \"redis://redis:6379\" or \"rediss://redis:6380\")",
        ));
    } else if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        p.push(Problem::new(
            "cluster.redis_url",
            "must start with redis:// or rediss://",
        ));
    } else if url
        .split_once("://")
        .map(|(_, rest)| rest.rsplit('@').next().unwrap_or(""))
        .is_none_or(|host| host.is_empty() || host.starts_with('/'))
    {
        p.push(Problem::new("cluster.redis_url", "has no host"));
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
