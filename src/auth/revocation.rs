//! The revocation list: revoked session IDs until their expiry, and per-user cut-off times.

use std::time::Duration;

use moka::Expiry;
use moka::sync::Cache;

use super::session::SessionClaims;
use super::webhook::unix_now;

/// Keeps each entry until the Unix time it carries.
struct UntilUnix;

impl Expiry<String, (u64, u64)> for UntilUnix {
    fn expire_after_create(
        &self,
        _: &String,
        v: &(u64, u64),
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(v.1.saturating_sub(unix_now())))
    }
}

/// Revoked sessions. A `sid` stays listed until its token's `exp`; a user revocation refuses
/// every token of that user issued at or before the cut-off, until the longest token could expire.
pub(crate) struct Revocations {
    /// sid -> (revoked at, keep until)
    sids: Cache<String, (u64, u64)>,
    /// user -> (cut-off, keep until)
    users: Cache<String, (u64, u64)>,
    max_ttl: Duration,
}

impl Revocations {
    pub(crate) fn new(max_ttl: Duration) -> Self {
        let build = || {
            Cache::builder()
                .max_capacity(1_000_000)
                .expire_after(UntilUnix)
                .build()
        };
        Self {
            sids: build(),
            users: build(),
            max_ttl,
        }
    }

    /// Revokes one session until `exp`.
    pub(crate) fn revoke_sid(&self, sid: &str, exp: u64) {
        self.sids
            .insert(sid.to_owned(), (unix_now(), exp.max(unix_now() + 1)));
    }

    /// Revokes every session `user` holds now.
    pub(crate) fn revoke_user(&self, user: &str) {
        let now = unix_now();
        self.users
            .insert(user.to_owned(), (now, now + self.max_ttl.as_secs() + 1));
    }

    /// Whether `claims` were revoked.
    pub(crate) fn is_revoked(&self, claims: &SessionClaims) -> bool {
        self.sids.contains_key(&claims.sid)
            || self
                .users
                .get(&claims.sub)
                .is_some_and(|(cutoff, _)| claims.auth_time <= cutoff)
    }
}
