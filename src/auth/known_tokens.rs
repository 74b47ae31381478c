//! Access tokens the sync server issued in Ditto login successes drawbridge relayed, remembered
//! (by SHA-256, never the token itself) until they expire, so the Ditto websocket path can be gated
//! on them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderMap;
use moka::Expiry;
use sha2::{Digest, Sha256};

use super::credentials;
use crate::clock::unix_now;

/// What starts the session ID of a learned token's tunnels.
pub(crate) const SESSION_ID_PREFIX: &str = "ditto.";

/// The header a Ditto SDK may send its access token in on the websocket handshake.
const DITTO_AUTH_HEADER: &str = "x-ditto-auth";

/// An access token the sync server issued in a login success drawbridge relayed.
#[derive(Debug, Clone)]
pub(crate) struct KnownToken {
    /// `userId` of the reply.
    pub(crate) user: String,
    /// `accessExpiry` in Unix seconds.
    pub(crate) expires_at: u64,
    /// What its tunnels are registered, re-checked and revoked under ([`KnownTokens::session_id`]).
    pub(crate) sid: String,
}

/// Each token lives until its own expiry.
struct UntilExpiry;

impl Expiry<[u8; 32], Arc<KnownToken>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _: &[u8; 32],
        v: &Arc<KnownToken>,
        _: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(v.expires_at.saturating_sub(unix_now())))
    }
}

/// Access tokens seen in relayed successes, by SHA-256 (never the token itself), until they expire.
pub(crate) struct KnownTokens {
    cache: moka::sync::Cache<[u8; 32], Arc<KnownToken>>,
}

// === impl KnownTokens ===

impl KnownTokens {
    /// An empty set, bounded at a million tokens.
    pub(crate) fn new() -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .expire_after(UntilExpiry)
                .build(),
        }
    }

    /// The SHA-256 a token is known by.
    pub(crate) fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The session ID of the tunnels a learned `token` opens: `ditto.` and the hex SHA-256 the
    /// token is known by (never the token), the same on every replica.
    pub(crate) fn session_id(token: &str) -> String {
        format!("{SESSION_ID_PREFIX}{}", hex::encode(Self::key(token)))
    }

    /// Forgets the token whose session ID is `sid`; false when `sid` is not such an ID.
    pub(crate) fn forget_session(&self, sid: &str) -> bool {
        let key = sid
            .strip_prefix(SESSION_ID_PREFIX)
            .and_then(|h| <[u8; 32]>::try_from(hex::decode(h).ok()?).ok());
        match key {
            Some(key) => {
                self.cache.invalidate(&key);
                true
            }
            None => false,
        }
    }

    /// Remembers `token` until `known.expires_at`; an expired one is not kept.
    pub(crate) fn learn(&self, token: &str, known: KnownToken) {
        if known.expires_at > unix_now() {
            self.cache.insert(Self::key(token), Arc::new(known));
        }
    }

    /// The still-valid entry for `token`.
    pub(crate) fn get(&self, token: &str) -> Option<Arc<KnownToken>> {
        self.cache
            .get(&Self::key(token))
            .filter(|k| k.expires_at > unix_now())
    }

    /// The known access token a Ditto websocket handshake carries: `X-DITTO-AUTH` when present
    /// (and then only it), else a bearer token or the session cookie, else any cookie whose value
    /// is a known token.
    pub(crate) fn find(&self, headers: &HeaderMap) -> Option<Arc<KnownToken>> {
        Self::candidates(headers)
            .into_iter()
            .find_map(|t| self.get(t))
    }

    /// The values a handshake could carry its access token in, in the order [`find`](Self::find)
    /// tries them: `X-DITTO-AUTH` alone when present, else the bearer or session cookie, then
    /// every cookie value.
    pub(crate) fn candidates(headers: &HeaderMap) -> Vec<&str> {
        if let Some(t) = headers.get(DITTO_AUTH_HEADER).and_then(|v| v.to_str().ok()) {
            return vec![t.trim()];
        }
        credentials::session_token(headers)
            .into_iter()
            .chain(
                credentials::cookie_pairs(headers)
                    .filter_map(|p| std::str::from_utf8(p.value).ok()),
            )
            .collect()
    }
}
