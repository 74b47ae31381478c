//! The revocation list: revoked session IDs and per-user cut-off times, each kept until the last
//! token it stands against could have expired.
//!
//! A session is a family of tokens sharing one `sid`: the login's token and every refresh of it.
//! Revoking the session must refuse all of them, whichever one was presented, so an entry lives
//! until the latest moment any token of the family could still verify. A refresh is refused once
//! the session is revoked, so the last possible refresh is "now", and its token expires no later
//! than `min(dex, now + max_ttl)` (see [`super::session::Sessions::refresh`]).
//!
//! The list is not size-bounded on purpose: an entry evicted (or refused admission) by a full
//! cache would be a revocation forgotten. Entries leave only when they can no longer matter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;

use super::session::SessionClaims;
use crate::clock::unix_now;
use crate::cluster::{Kind, Revocation};

/// Seconds every entry outlives the last moment a token of its family could verify: covers a
/// refresh that raced the revocation, the second-granular `exp`, and clocks that differ a little
/// between replicas sharing the signing key.
pub(crate) const CLOCK_SLACK_SECONDS: u64 = 60;

/// Keeps each entry until the Unix time in its second field, also after an update.
struct UntilUnix;

impl UntilUnix {
    fn left(v: &(u64, u64)) -> Option<Duration> {
        Some(Duration::from_secs(v.1.saturating_sub(unix_now())))
    }
}

impl Expiry<String, (u64, u64)> for UntilUnix {
    fn expire_after_create(&self, _: &String, v: &(u64, u64), _: Instant) -> Option<Duration> {
        Self::left(v)
    }

    // moka's default keeps the first expiry on update; a later revocation must extend it.
    fn expire_after_update(
        &self,
        _: &String,
        v: &(u64, u64),
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Self::left(v)
    }
}

/// The last Unix second a token of a session could still verify, revoked at `now`: the family's
/// newest token comes from a refresh no later than `now`, so it expires by `min(dex, now + max_ttl)`;
/// never earlier than `exp`, the presented token's own expiry. Without claims (`dex`, `exp` unknown)
/// only `now + max_ttl` bounds it.
pub(crate) fn last_valid(now: u64, max_ttl: Duration, dex: Option<u64>, exp: Option<u64>) -> u64 {
    let by_ttl = now.saturating_add(max_ttl.as_secs());
    let by_decision = dex.map_or(by_ttl, |dex| dex.min(by_ttl));
    by_decision.max(exp.unwrap_or(0))
}

/// Revoked sessions and users.
pub(crate) struct Revocations {
    /// sid -> (revoked at, keep until)
    sids: Cache<String, (u64, u64)>,
    /// user -> (cut-off, keep until)
    users: Cache<String, (u64, u64)>,
    /// The longest a session token can live (`session.max_ttl_seconds`, in seconds): the largest
    /// value any config of this process had, since tokens minted under it may still be out.
    max_ttl: AtomicU64,
}

// === impl Revocations ===

impl Revocations {
    /// An empty list for tokens that live at most `max_ttl`.
    pub(crate) fn new(max_ttl: Duration) -> Self {
        let build = || Cache::builder().expire_after(UntilUnix).build();
        Self {
            sids: build(),
            users: build(),
            max_ttl: AtomicU64::new(max_ttl.as_secs()),
        }
    }

    /// A reload set `session.max_ttl_seconds`: revocations from now on are kept for the longer of
    /// it and every earlier value (a token minted before a reload may outlive the new cap).
    pub(crate) fn widen_max_ttl(&self, max_ttl: Duration) {
        self.max_ttl.fetch_max(max_ttl.as_secs(), Ordering::Relaxed);
    }

    fn max_ttl(&self) -> Duration {
        Duration::from_secs(self.max_ttl.load(Ordering::Relaxed))
    }

    /// Revokes the session `claims` belong to, whichever of its tokens they came from: every
    /// token of the session is refused until the last one could have expired. Returns until when
    /// (Unix seconds) the entry is kept.
    pub(crate) fn revoke_session(&self, claims: &SessionClaims) -> u64 {
        let now = unix_now();
        let until = last_valid(now, self.max_ttl(), Some(claims.dex), Some(claims.exp));
        keep(&self.sids, &claims.sid, now, until)
    }

    /// Revokes a session known only by its ID (no claims at hand): until `now + max_ttl`.
    /// Returns until when the entry is kept.
    pub(crate) fn revoke_sid(&self, sid: &str) -> u64 {
        self.keep_for_max_ttl(&self.sids, sid)
    }

    /// Revokes every session `user` began up to now, including tokens refreshed from them later.
    /// Returns until when the cut-off is kept.
    pub(crate) fn revoke_user(&self, user: &str) -> u64 {
        self.keep_for_max_ttl(&self.users, user)
    }

    /// Enters `id` in `map` from now until the longest a token issued now could live; returns
    /// until when (Unix seconds) the entry is kept.
    fn keep_for_max_ttl(&self, map: &Cache<String, (u64, u64)>, id: &str) -> u64 {
        let now = unix_now();
        keep(map, id, now, last_valid(now, self.max_ttl(), None, None))
    }

    /// Whether `claims` were revoked: their session by ID, or their user at or after the login
    /// that began the session. `auth_time` is kept across refreshes, so a token refreshed before
    /// the cut-off (a later `iat`, the same `auth_time`) is refused like the login's own token; a
    /// login in the very second of the cut-off is refused too (second-granular times; fail closed).
    pub(crate) fn is_revoked(&self, claims: &SessionClaims) -> bool {
        self.sids.contains_key(&claims.sid)
            || self
                .users
                .get(&claims.sub)
                .is_some_and(|(cutoff, _)| claims.auth_time <= cutoff)
    }

    /// Whether the session `sid` was revoked (by ID; for tunnels without claims, such as those of
    /// a learned Ditto token).
    pub(crate) fn is_sid_revoked(&self, sid: &str) -> bool {
        self.sids.contains_key(sid)
    }

    /// Applies a revocation another replica made (its `until` already holds the slack), never
    /// moving an entry's cut-off or end earlier. Returns whether it changed anything here (a new
    /// entry or a later cut-off), so the caller closes tunnels only for news.
    pub(crate) fn apply(&self, r: &Revocation) -> bool {
        if r.until <= unix_now() {
            return false;
        }
        let cache = match r.kind {
            Kind::Sid => &self.sids,
            Kind::User => &self.users,
        };
        let before = cache.get(&r.id);
        let entry = cache.entry(r.id.clone()).and_upsert_with(|old| match old {
            Some(e) => {
                let (a, u) = e.into_value();
                (a.max(r.at), u.max(r.until))
            }
            None => (r.at, r.until),
        });
        before.is_none_or(|(at, _)| entry.into_value().0 > at)
    }

    /// Every entry held, to be written to the cluster store after a reconnect.
    pub(crate) fn entries(&self) -> Vec<Revocation> {
        let now = unix_now();
        let all = |cache: &Cache<String, (u64, u64)>, kind| {
            cache
                .iter()
                .filter(|(_, (_, until))| *until > now)
                .map(|(id, (at, until))| Revocation {
                    kind,
                    id: (*id).clone(),
                    at,
                    until,
                })
                .collect::<Vec<_>>()
        };
        let mut v = all(&self.sids, Kind::Sid);
        v.extend(all(&self.users, Kind::User));
        v
    }

    /// Until when (Unix seconds) `sid` stays revoked, if it is.
    #[cfg(test)]
    fn sid_kept_until(&self, sid: &str) -> Option<u64> {
        self.sids.get(sid).map(|(_, until)| until)
    }

    /// `user`'s cut-off and until when (Unix seconds) it is kept, if any.
    #[cfg(test)]
    fn user_cutoff(&self, user: &str) -> Option<(u64, u64)> {
        self.users.get(user)
    }
}

/// Records (`at`, `until` plus slack) for `key`, never moving an existing entry's cut-off or end
/// earlier; returns the end kept.
fn keep(cache: &Cache<String, (u64, u64)>, key: &str, at: u64, until: u64) -> u64 {
    let until = until.saturating_add(CLOCK_SLACK_SECONDS);
    let entry = cache
        .entry(key.to_owned())
        .and_upsert_with(|old| match old {
            Some(e) => {
                let (a, u) = e.into_value();
                (a.max(at), u.max(until))
            }
            None => (at, until),
        });
    entry.into_value().1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Permissions;

    fn claims(sid: &str, sub: &str, auth_time: u64, exp: u64, dex: u64) -> SessionClaims {
        SessionClaims {
            iss: "drawbridge".into(),
            aud: "drawbridge".into(),
            sub: sub.into(),
            app: "app".into(),
            prv: "demo".into(),
            permissions: Permissions::default(),
            cli: None,
            pro: None,
            iat: auth_time,
            exp,
            auth_time,
            dex,
            sid: sid.into(),
            jti: "j".into(),
        }
    }

    #[test]
    fn apply_reports_news_only_and_never_shortens() {
        let r = Revocations::new(Duration::from_secs(300));
        let now = unix_now();
        let user = |at, until| Revocation {
            kind: Kind::User,
            id: "u".into(),
            at,
            until,
        };
        assert!(r.apply(&user(now - 5, now + 100)));
        assert!(
            !r.apply(&user(now - 5, now + 100)),
            "the same entry again is no news"
        );
        assert!(
            !r.apply(&user(now - 9, now + 50)),
            "an older cut-off is no news"
        );
        assert_eq!(r.user_cutoff("u"), Some((now - 5, now + 100)));
        assert!(r.apply(&user(now, now + 10)), "a later cut-off is news");
        assert_eq!(r.user_cutoff("u"), Some((now, now + 100)));
        assert!(
            !r.apply(&user(now, now - 1)),
            "an entry past its end is dropped"
        );
        let sid = Revocation {
            kind: Kind::Sid,
            id: "s".into(),
            at: now,
            until: now + 30,
        };
        assert!(r.apply(&sid));
        let mut all = r.entries();
        all.sort_by_key(|e| e.id.clone());
        assert_eq!(all, vec![sid, user(now, now + 100)]);
    }

    #[test]
    fn last_valid_is_the_decision_or_max_ttl_from_now_never_before_exp() {
        let ttl = Duration::from_secs(300);
        // A long decision: the next refresh could run until now + max_ttl.
        assert_eq!(last_valid(1000, ttl, Some(5000), Some(1100)), 1300);
        // A decision ending sooner bounds every refresh.
        assert_eq!(last_valid(1000, ttl, Some(1200), Some(1100)), 1200);
        // Never shorter than the presented token (clock moved back, odd claims).
        assert_eq!(last_valid(1000, ttl, Some(900), Some(1250)), 1250);
        assert_eq!(last_valid(1000, ttl, Some(5000), Some(9000)), 9000);
        // No claims (admin revoke by sid): max_ttl from now.
        assert_eq!(last_valid(1000, ttl, None, None), 1300);
        assert_eq!(last_valid(u64::MAX - 1, ttl, None, None), u64::MAX);
    }

    #[test]
    fn revoking_with_an_old_token_covers_the_whole_session() {
        let r = Revocations::new(Duration::from_secs(300));
        let now = unix_now();
        // The old token expires in 5 s; the decision lasts an hour.
        let old = claims("s1", "u", now - 10, now + 5, now + 3600);
        r.revoke_session(&old);
        let until = r.sid_kept_until("s1").unwrap();
        assert!(until >= now + 300 + CLOCK_SLACK_SECONDS, "{until} vs {now}");
        // A token refreshed before the revocation, expiring later, is refused.
        let refreshed = claims("s1", "u", now - 10, now + 290, now + 3600);
        assert!(r.is_revoked(&refreshed));
        // Another session of the same user is not.
        assert!(!r.is_revoked(&claims("s2", "u", now - 10, now + 290, now + 3600)));
    }

    #[test]
    fn widened_max_ttl_keeps_revocations_longer_and_never_shrinks() {
        let r = Revocations::new(Duration::from_secs(300));
        let now = unix_now();
        r.widen_max_ttl(Duration::from_secs(3600));
        r.revoke_sid("long");
        assert!(r.sid_kept_until("long").unwrap() >= now + 3600);
        r.widen_max_ttl(Duration::from_secs(60));
        r.revoke_sid("still-long");
        assert!(r.sid_kept_until("still-long").unwrap() >= now + 3600);
    }

    #[test]
    fn a_later_shorter_revocation_never_shortens_an_entry() {
        let r = Revocations::new(Duration::from_secs(300));
        let now = unix_now();
        r.revoke_sid("s");
        let long = r.sid_kept_until("s").unwrap();
        r.revoke_session(&claims("s", "u", now, now + 1, now + 2));
        assert_eq!(r.sid_kept_until("s"), Some(long));
    }

    #[test]
    fn a_later_user_revocation_moves_the_cutoff_and_the_end() {
        let r = Revocations::new(Duration::from_secs(300));
        r.users.insert("u".into(), (10, unix_now() + 5));
        r.revoke_user("u");
        let (cutoff, until) = r.user_cutoff("u").unwrap();
        let now = unix_now();
        assert!(cutoff >= now - 1);
        assert!(until >= now + 300 + CLOCK_SLACK_SECONDS - 1);
    }

    #[test]
    fn user_cutoff_refuses_every_token_of_sessions_begun_before_it() {
        let r = Revocations::new(Duration::from_secs(300));
        let now = unix_now();
        r.revoke_user("u");
        // The login's own token, and one refreshed from it (later iat, same auth_time).
        assert!(r.is_revoked(&claims("a", "u", now - 100, now + 200, now + 3600)));
        let mut refreshed = claims("a", "u", now - 100, now + 290, now + 3600);
        refreshed.iat = now;
        assert!(r.is_revoked(&refreshed));
        // A session begun after the cut-off, and another user's, are not.
        assert!(!r.is_revoked(&claims("b", "u", now + 2, now + 300, now + 3600)));
        assert!(!r.is_revoked(&claims("c", "v", now - 100, now + 200, now + 3600)));
    }
}
