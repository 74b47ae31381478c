//! Sessions verified once per generation: the forward-auth door's memory of a token it has
//! already checked, so the next check of the same token costs a hash and two lookups instead of a
//! signature verification.
//!
//! An entry is found by the SHA-256 of the exact token bytes (the token itself is never kept), and
//! holds the claims and the identity headers already rendered from them. It holds nothing that
//! changes while the token is valid: the claims are what the token says, and the token cannot
//! change. What can change, the revocation list and the clock, is asked on every hit by the gate
//! ([`super::gate::Gate::admit`]). Each generation builds its own, so a reload (new session keys,
//! a new issuer) starts empty and every token is verified again under the new keys.
//!
//! Bounded by entries ([`MAX_ENTRIES`], least used evicted first) and by time: an entry lives
//! [`MAX_TTL`] at most, and never past its token's `exp`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue};
use prometheus::{IntCounter, IntCounterVec};
use sha2::{Digest, Sha256};

use super::session::SessionClaims;
use crate::clock::unix_now;

/// Most tokens remembered at once, per generation. An entry costs about 0.8 KB of RSS (claims,
/// headers and the cache's own bookkeeping; `--only verified` in `benches/e2e` measures it), so the
/// cache stays under about 8 MiB whatever the number of distinct tokens. `tests/chart_memory.rs`
/// reads this bound.
pub(crate) const MAX_ENTRIES: u64 = 10_000;
/// Longest an entry is kept: a token asked about again within this time is not verified again.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(300);

/// One verified session: its claims and the identity headers rendered from them.
#[derive(Debug)]
pub(crate) struct Verified {
    /// What the token says (its `sid`, `exp`, user and login time, for the revocation check).
    pub(crate) claims: Arc<SessionClaims>,
    /// The identity headers, rendered once.
    pub(crate) headers: Box<[(HeaderName, HeaderValue)]>,
}

/// Each entry lives until its token expires, and at most [`MAX_TTL`].
struct UntilExpiry;

impl moka::Expiry<[u8; 32], Arc<Verified>> for UntilExpiry {
    fn expire_after_create(&self, _: &[u8; 32], v: &Arc<Verified>, _: Instant) -> Option<Duration> {
        Some(ttl(v.claims.exp, unix_now()))
    }
}

/// How long an entry for a token expiring at `exp` (Unix seconds) is kept from `now`.
fn ttl(exp: u64, now: u64) -> Duration {
    Duration::from_secs(exp.saturating_sub(now)).min(MAX_TTL)
}

/// The verified sessions of one generation, by the SHA-256 of their token.
pub(crate) struct VerifiedSessions {
    cache: moka::sync::Cache<[u8; 32], Arc<Verified>>,
    /// `drawbridge_forward_auth_cache_requests_total{result="hit"}`, resolved once.
    hits: IntCounter,
    /// The same, `result="miss"`.
    misses: IntCounter,
}

// === impl VerifiedSessions ===

impl VerifiedSessions {
    /// An empty cache of at most `max_entries` sessions, counting lookups in `lookups`.
    pub(crate) fn new(max_entries: u64, lookups: IntCounterVec) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(max_entries)
                .expire_after(UntilExpiry)
                .build(),
            hits: lookups.with_label_values(&["hit"]),
            misses: lookups.with_label_values(&["miss"]),
        }
    }

    /// The key of `token`: its SHA-256, so the cache never holds a credential.
    pub(crate) fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The session verified earlier for the token whose key is `key`, if still kept.
    pub(crate) fn get(&self, key: &[u8; 32]) -> Option<Arc<Verified>> {
        let found = self.cache.get(key);
        if found.is_some() {
            self.hits.inc();
        } else {
            self.misses.inc();
        }
        found
    }

    /// Remembers a session just verified from the token whose key is `key`.
    pub(crate) fn insert(&self, key: [u8; 32], verified: Arc<Verified>) {
        self.cache.insert(key, verified);
    }

    /// Forgets the session of one token (expired, or revoked: it can never pass again).
    pub(crate) fn forget(&self, key: &[u8; 32]) {
        self.cache.invalidate(key);
    }

    /// Sessions kept now (approximate, until moka's pending work runs).
    #[cfg(test)]
    fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Permissions;

    fn claims(sid: &str, exp: u64) -> Arc<SessionClaims> {
        Arc::new(SessionClaims {
            iss: "drawbridge".into(),
            aud: "sync".into(),
            sub: "ann".into(),
            app: "app".into(),
            prv: "demo".into(),
            permissions: Permissions::default(),
            cli: None,
            pro: None,
            iat: 0,
            exp,
            auth_time: 0,
            dex: exp,
            sid: sid.into(),
            jti: sid.into(),
        })
    }

    fn verified(sid: &str, exp: u64) -> Arc<Verified> {
        Arc::new(Verified {
            claims: claims(sid, exp),
            headers: Box::new([]),
        })
    }

    fn counter() -> IntCounterVec {
        IntCounterVec::new(prometheus::Opts::new("t", "t"), &["result"]).unwrap()
    }

    #[test]
    fn verified_sessions_over_the_bound_keep_at_most_max_entries() {
        let cache = VerifiedSessions::new(100, counter());
        let exp = unix_now() + 3600;
        for i in 0..1_000 {
            cache.insert(
                VerifiedSessions::key(&format!("token-{i}")),
                verified(&i.to_string(), exp),
            );
        }
        assert!(cache.len() <= 100, "kept {}", cache.len());
    }

    #[test]
    fn verified_sessions_are_found_by_exact_token_and_counted() {
        let lookups = counter();
        let cache = VerifiedSessions::new(10, lookups.clone());
        let key = VerifiedSessions::key("a.b.c");
        cache.insert(key, verified("s1", unix_now() + 3600));
        assert_eq!(cache.get(&key).unwrap().claims.sid, "s1");
        assert!(cache.get(&VerifiedSessions::key("a.b.c ")).is_none());
        assert!(cache.get(&VerifiedSessions::key("a.b.d")).is_none());
        assert_eq!(lookups.with_label_values(&["hit"]).get(), 1);
        assert_eq!(lookups.with_label_values(&["miss"]).get(), 2);
        cache.forget(&key);
        assert!(cache.get(&key).is_none());
    }

    #[test]
    fn verified_session_ttl_is_capped_by_exp_and_max_ttl() {
        assert_eq!(ttl(1_000 + 10, 1_000), Duration::from_secs(10));
        assert_eq!(ttl(1_000 + 86_400, 1_000), MAX_TTL);
        assert_eq!(ttl(900, 1_000), Duration::ZERO, "expired: not kept");
    }

    #[test]
    fn verified_session_of_an_expired_token_is_not_kept() {
        let cache = VerifiedSessions::new(10, counter());
        let key = VerifiedSessions::key("old");
        cache.insert(key, verified("s", unix_now().saturating_sub(1)));
        assert!(cache.get(&key).is_none());
    }
}
