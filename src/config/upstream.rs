//! `[upstream]`: the sync server behind the gateway, the upgrade paths open without a session,
//! and the timeouts of the calls to it.

use std::fmt;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use serde::{Deserialize, Serialize};

use super::ditto::Ditto;
use super::problem::Problem;
use super::section::{Section, positive};
use super::text::{UrlText, shown_url};

/// Default path prefixes whose websocket upgrades open without a session: none.
pub const DEFAULT_PUBLIC_UPGRADE_PATHS: [&str; 0] = [];
/// Default upstream connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Default time to wait for the upstream's response head.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;

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

impl fmt::Debug for Upstream {
    /// Never prints user info in the authority.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("scheme", &self.scheme)
            .field("authority", &shown_url(self.authority.as_str()))
            .field("public_upgrade_paths", &self.public_upgrade_paths)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// Every key reloads live (a new connect timeout builds a new client).
impl Section for Upstream {}

/// `[upstream]`: canonical public paths, an http(s) URL without path or query, non-zero timeouts.
pub(super) fn validate(raw: &RawUpstream, p: &mut Vec<Problem>) -> Option<Upstream> {
    for (i, path) in raw.public_upgrade_paths.iter().enumerate() {
        if let Some(why) = public_upgrade_path_problem(path) {
            p.push(Problem::new(
                format!("upstream.public_upgrade_paths.{i}"),
                why,
            ));
        }
    }
    let target = target(raw, p);
    positive(
        &[
            ("upstream.connect_timeout_ms", raw.connect_timeout_ms),
            ("upstream.request_timeout_ms", raw.request_timeout_ms),
        ],
        p,
    );
    let (scheme, authority) = target?;
    Some(Upstream {
        scheme,
        authority,
        public_upgrade_paths: raw.public_upgrade_paths.clone(),
        connect_timeout: Duration::from_millis(raw.connect_timeout_ms),
        request_timeout: Duration::from_millis(raw.request_timeout_ms),
    })
}

/// `upstream.url`: the scheme and authority requests are sent to.
fn target(raw: &RawUpstream, p: &mut Vec<Problem>) -> Option<(Scheme, Authority)> {
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
    Some((scheme, authority))
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
pub(super) fn warnings(raw: &RawUpstream, ditto: &Ditto) -> Vec<Problem> {
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
