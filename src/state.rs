//! `Shared`: the state every connection, door and tunnel reads, owned below all of them.
//!
//! The live config, the upstream forwarder, the metrics, the auth core with its sessions,
//! revocations, tickets and learned Ditto tokens, the login rate limiter and the tunnel registry.
//! The doors, the tunnel and the dispatcher above use it; it imports none of them.

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::auth::AuthCore;
use crate::auth::credentials::{self, SessionRejected};
use crate::auth::known_tokens::KnownTokens;
use crate::auth::revocation::Revocations;
use crate::auth::session::{SessionClaims, Sessions};
use crate::config::Config;
use crate::forward::{Forwarder, UpstreamError};
use crate::metrics::Metrics;
use crate::registry::{CloseReason, Registry, deadline_for};

/// Per-client-IP limiter on the login routes.
pub(crate) type Limiter = governor::DefaultKeyedRateLimiter<IpAddr>;

/// State every connection shares; read through `Arc`, never cloned per request.
pub(crate) struct Shared {
    pub(crate) config: ArcSwap<Config>,
    /// Swapped by a reload that changes `upstream.connect_timeout_ms`.
    pub(crate) forwarder: ArcSwap<Forwarder>,
    pub(crate) metrics: Metrics,
    /// Swapped whole by a reload; a login holds the `Arc` it started with.
    pub(crate) auth: ArcSwap<AuthCore>,
    /// Swapped by a reload; retired keys keep verifying inside the new value.
    pub(crate) sessions: ArcSwap<Sessions>,
    pub(crate) revocations: Revocations,
    /// Single-use upgrade tickets.
    pub(crate) tickets: moka::sync::Cache<String, Arc<SessionClaims>>,
    /// Swapped by a reload that changes `[rate_limit]`.
    pub(crate) limiter: ArcSwapOption<Limiter>,
    /// Open tunnels by session.
    pub(crate) tunnels: Arc<Registry>,
    /// Access tokens learned from relayed Ditto logins.
    pub(crate) ditto_tokens: KnownTokens,
    /// Bumped after each applied reload, so long-lived tasks read the settings again.
    pub(crate) config_changed: tokio::sync::watch::Sender<u64>,
    /// The login behind each session, kept in memory while `session.revalidate_seconds` is on so
    /// its tunnels can ask the provider again.
    pub(crate) grants: moka::sync::Cache<Arc<str>, Arc<Grant>>,
}

/// What a session's login asked, so an open tunnel can ask again. Held in memory only.
pub(crate) struct Grant {
    /// The app ID.
    pub(crate) app: String,
    /// The provider name.
    pub(crate) provider: String,
    /// The client's provider token. Never logged.
    pub(crate) token: String,
    /// The provider decision's expiry (Unix seconds): the grant is forgotten then.
    pub(crate) until: u64,
}

impl std::fmt::Debug for Grant {
    /// Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("app", &self.app)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

/// Each grant lives until its decision expires.
struct GrantExpiry;

impl moka::Expiry<Arc<str>, Arc<Grant>> for GrantExpiry {
    fn expire_after_create(
        &self,
        _: &Arc<str>,
        grant: &Arc<Grant>,
        _: std::time::Instant,
    ) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(
            grant.until.saturating_sub(crate::clock::unix_now()),
        ))
    }
}

/// The grant store [`Shared::grants`] uses.
pub(crate) fn grant_store() -> moka::sync::Cache<Arc<str>, Arc<Grant>> {
    moka::sync::Cache::builder()
        .max_capacity(1_000_000)
        .expire_after(GrantExpiry)
        .build()
}

// === impl Shared ===

impl Shared {
    /// A single-use ticket standing for `claims` for `session.ticket_ttl_seconds`.
    pub(crate) fn issue_ticket(&self, claims: Arc<SessionClaims>) -> String {
        let bytes: [u8; 24] = rand::random();
        let ticket =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes);
        self.tickets.insert(ticket.clone(), claims);
        ticket
    }

    /// Redeems a ticket once; a second use finds nothing.
    pub(crate) fn redeem_ticket(&self, ticket: &str) -> Option<Arc<SessionClaims>> {
        self.tickets.remove(ticket)
    }

    /// How long a ticket stays redeemable, for the ticket reply.
    pub(crate) fn ticket_ttl_seconds(&self) -> u64 {
        self.config.load().auth.session.ticket_ttl.as_secs()
    }

    /// Revokes the session `claims` came from (every token of it, not only this one) and closes
    /// its tunnels; returns until when (Unix seconds) the revocation is kept.
    pub(crate) fn revoke_session(&self, claims: &SessionClaims) -> u64 {
        let until = self.revocations.revoke_session(claims);
        self.grants.invalidate(claims.sid.as_str());
        self.metrics.auth.sessions_revoked.inc();
        self.tunnels.close_sid(&claims.sid, CloseReason::Revoked);
        until
    }

    /// Revokes a session known only by its ID and closes its tunnels; returns until when the
    /// revocation is kept.
    pub(crate) fn revoke_sid(&self, sid: &str) -> u64 {
        let until = self.revocations.revoke_sid(sid);
        self.grants.invalidate(sid);
        self.metrics.auth.sessions_revoked.inc();
        self.tunnels.close_sid(sid, CloseReason::Revoked);
        until
    }

    /// Revokes every current session of `user` and drops their cached decisions; returns until
    /// when the cut-off is kept.
    pub(crate) fn revoke_user(&self, user: &str) -> u64 {
        let until = self.revocations.revoke_user(user);
        self.auth.load().purge(Some(user));
        self.metrics.auth.sessions_revoked.inc();
        self.tunnels.close_user(user, CloseReason::Revoked);
        until
    }

    /// A session was refreshed: its new expiry applies from now on.
    pub(crate) fn on_refresh(&self, claims: &SessionClaims) {
        let grace = self.config.load().auth.session.close_grace;
        let moved = self
            .tunnels
            .extend(&claims.sid, deadline_for(Some(claims.exp), grace));
        tracing::debug!(exp = claims.exp, tunnels = moved, "session refreshed");
    }

    /// Keeps what the login of `claims` asked, when open tunnels are re-checked.
    pub(crate) fn remember_grant(&self, claims: &SessionClaims, provider_token: &str) {
        if self.config.load().auth.session.revalidate.is_zero() {
            return;
        }
        self.grants.insert(
            Arc::from(claims.sid.as_str()),
            Arc::new(Grant {
                app: claims.app.clone(),
                provider: claims.prv.clone(),
                token: provider_token.to_owned(),
                until: claims.dex,
            }),
        );
    }

    /// Counts a failed upstream call by its kind.
    pub(crate) fn count_upstream_error(&self, error: &UpstreamError) {
        self.metrics
            .upstream
            .errors
            .with_label_values(&[error.kind()])
            .inc();
    }

    /// Whether this client may call a login route now.
    pub(crate) fn rate_limited(&self, ip: IpAddr) -> bool {
        self.limiter
            .load()
            .as_ref()
            .is_some_and(|l| l.check_key(&ip).is_err())
    }

    /// Verifies a session token and checks the revocation list.
    ///
    /// # Errors
    /// [`SessionRejected`] for a token that is invalid, expired or revoked.
    pub(crate) fn verify_session(
        &self,
        token: &str,
    ) -> Result<Arc<SessionClaims>, SessionRejected> {
        credentials::verify_session(&self.sessions.load(), &self.revocations, token)
    }
}
