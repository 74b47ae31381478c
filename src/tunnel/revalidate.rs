//! Re-authorization of open tunnels: every `session.revalidate_seconds`, the login behind a
//! tunnel's session is asked again, through the decision cache, so one provider call serves every
//! tunnel of one token.
//!
//! A denial revokes the session (close 4003, and the revocation reaches every tunnel of it).
//! Narrower permissions or another user close the session's tunnels with 4009, so the client
//! reconnects and the sync server sees the new identity. A provider that cannot answer closes
//! nothing: the cache's `stale_if_error` rules, and the failure is logged and counted. The first
//! check of each tunnel falls at a random point of the first interval, so tunnels opened together
//! (after a restart, say) do not ask together.

use std::time::Duration;

use tokio::time::Instant;

use crate::auth::session::SessionClaims;
use crate::auth::{Decision, Door};
use crate::registry::CloseReason;
use crate::state::Shared;

/// How a re-check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Still allowed, with at least the same permissions.
    Allow,
    /// Allowed with less, or as another user: the tunnels close with 4009.
    Narrowed,
    /// Denied: the session is revoked.
    Deny,
    /// The provider could not answer: nothing closes.
    Error,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Narrowed => "narrowed",
            Self::Deny => "deny",
            Self::Error => "error",
        }
    }
}

/// Re-checks the session behind one tunnel until it is closed for a reason found here (then it
/// returns), or forever while it stays good. Without a remembered login (revalidation was off at
/// login, or another replica minted the session) there is nothing to ask and it returns.
pub(crate) async fn run(shared: &Shared, claims: &SessionClaims) {
    let mut changed = shared.config_changed.subscribe();
    let mut every = Duration::ZERO;
    let mut next = Instant::now();
    loop {
        // A reload that keeps the interval keeps the schedule: frequent reloads must not keep
        // putting the checks off. A new interval starts a new, spread-out schedule.
        let now_every = shared.config.load().auth.session.revalidate;
        if now_every != every {
            every = now_every;
            next = Instant::now() + every.mul_f64(rand::random::<f64>());
        }
        if every.is_zero() {
            // Off: wait for a reload that may turn it on.
            if changed.changed().await.is_err() {
                return;
            }
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            res = changed.changed() => {
                if res.is_err() {
                    return;
                }
                continue;
            }
        }
        next = (next + every).max(Instant::now());
        // Boxed: a check's futures (the provider call among them) would otherwise stay in every
        // open tunnel's task for its whole life, most of it idle.
        match Box::pin(check(shared, claims)).await {
            None => return,
            Some(Outcome::Allow | Outcome::Error) => {}
            Some(Outcome::Narrowed | Outcome::Deny) => return,
        }
    }
}

/// One re-check, and what it did. `None` when there is nothing to ask.
pub(crate) async fn check(shared: &Shared, claims: &SessionClaims) -> Option<Outcome> {
    let grant = shared.grants.get(claims.sid.as_str())?;
    let auth = shared.auth.load_full();
    let outcome = match auth
        .decide(Door::Revalidate, &grant.app, &grant.provider, &grant.token)
        .await
    {
        Ok(Decision::Allow(allow)) => {
            if allow.user_id == claims.sub && allow.permissions.covers(&claims.permissions) {
                Outcome::Allow
            } else {
                let n = shared
                    .tunnels
                    .close_sid(&claims.sid, CloseReason::PermissionsChanged);
                tracing::info!(
                    provider = %grant.provider,
                    tunnels = n,
                    "re-check: permissions changed; closing the session's tunnels"
                );
                Outcome::Narrowed
            }
        }
        Ok(Decision::Deny(_)) => {
            tracing::info!(provider = %grant.provider, "re-check: the provider denies; revoking the session");
            shared.revoke_session(claims);
            Outcome::Deny
        }
        Err(error) => {
            tracing::warn!(provider = %grant.provider, %error, "re-check: provider failing; tunnel kept");
            Outcome::Error
        }
    };
    shared
        .metrics
        .config
        .revalidations
        .with_label_values(&[outcome.label()])
        .inc();
    Some(outcome)
}
