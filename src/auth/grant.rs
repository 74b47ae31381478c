//! What the login behind a session asked (app, provider, provider token), kept so its open
//! tunnels can ask again, and its sealed form for the other replicas.
//!
//! The provider token never leaves a replica in the clear: what goes to the cluster store is
//! sealed (AES-256-GCM, [`Sessions::seal`]) under a key derived from the session key and bound to
//! the session ID, so only a replica holding the session key reads it, and only for that session.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::session::{SessionError, Sessions};
use crate::clock::unix_now;

/// Prefix of the sealing context, so a value sealed for another purpose never opens as a grant.
const CONTEXT_PREFIX: &[u8] = b"drawbridge grant\0";

/// What a session's login asked, so an open tunnel can ask again.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Grant {
    /// The app ID.
    pub(crate) app: String,
    /// The provider name.
    pub(crate) provider: String,
    /// The client's provider token. Never logged.
    pub(crate) token: String,
    /// The session's last possible expiry (Unix seconds): the grant is forgotten then.
    pub(crate) until: u64,
}

impl std::fmt::Debug for Grant {
    /// Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("app", &self.app)
            .field("provider", &self.provider)
            .field("until", &self.until)
            .finish_non_exhaustive()
    }
}

// === impl Grant ===

impl Grant {
    /// How long it is still needed.
    pub(crate) fn ttl(&self) -> Duration {
        Duration::from_secs(self.until.saturating_sub(unix_now()))
    }

    /// The sealed form of this grant for session `sid`.
    ///
    /// # Errors
    /// [`SessionError::Crypto`] when sealing fails.
    pub(crate) fn seal(&self, sessions: &Sessions, sid: &str) -> Result<Vec<u8>, SessionError> {
        let json = serde_json::to_vec(self)
            .map_err(|_| SessionError::Crypto("cannot encode a grant".into()))?;
        sessions.seal(&context(sid), &json)
    }

    /// The grant `sealed` holds for session `sid`; `None` when no key of `sessions` opens it for
    /// that session, or what it holds is not a grant.
    pub(crate) fn open(sessions: &Sessions, sid: &str, sealed: &[u8]) -> Option<Self> {
        let json = sessions.open(&context(sid), sealed)?;
        serde_json::from_slice(&json).ok()
    }
}

fn context(sid: &str) -> Vec<u8> {
    [CONTEXT_PREFIX, sid.as_bytes()].concat()
}

/// Each grant lives until its session's last possible expiry.
struct GrantExpiry;

impl moka::Expiry<Arc<str>, Arc<Grant>> for GrantExpiry {
    fn expire_after_create(
        &self,
        _: &Arc<str>,
        grant: &Arc<Grant>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(grant.ttl())
    }
}

/// The store of grants by session ID, kept in memory.
pub(crate) fn grant_store() -> moka::sync::Cache<Arc<str>, Arc<Grant>> {
    moka::sync::Cache::builder()
        .max_capacity(1_000_000)
        .expire_after(GrantExpiry)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions() -> Sessions {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(
            &path,
            super::super::session::keygen(jsonwebtoken::Algorithm::ES256).unwrap(),
        )
        .unwrap();
        Sessions::from_config(&super::super::session::test_config(Some(path), None)).unwrap()
    }

    fn grant() -> Grant {
        Grant {
            app: "app".into(),
            provider: "demo".into(),
            token: "secret-provider-token".into(),
            until: unix_now() + 60,
        }
    }

    #[test]
    fn sealed_grant_opens_for_its_session_only_and_hides_the_token() {
        let s = sessions();
        let g = grant();
        let sealed = g.seal(&s, "sid-a").unwrap();
        let token = g.token.as_bytes();
        assert!(!sealed.windows(token.len()).any(|w| w == token));
        assert_eq!(Grant::open(&s, "sid-a", &sealed), Some(g.clone()));
        assert_eq!(Grant::open(&s, "sid-b", &sealed), None);
        // Sealed for another purpose with the same session ID: not a grant.
        let other = s.seal(b"sid-a", b"{}").unwrap();
        assert_eq!(Grant::open(&s, "sid-a", &other), None);
    }

    #[test]
    fn grant_debug_never_prints_the_token() {
        let text = format!("{:?}", grant());
        assert!(!text.contains("secret-provider-token"), "{text}");
        assert!(text.contains("demo"), "{text}");
    }
}
