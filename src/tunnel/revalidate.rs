//! Re-authorization of open tunnels: every `session.revalidate_seconds`, the login behind a
//! tunnel is asked again. A cached answer serves only if the provider was asked for it less than
//! one interval ago, whatever `cache.max_ttl_seconds` allows, so no tunnel acts on an answer
//! older than that; concurrent re-checks of one token (on one replica through the decision
//! cache, on several through its shared level) still make one provider call.
//!
//! Tunnels of a drawbridge session and tunnels of an access token learned from a relayed Ditto
//! login are both re-checked, on whichever replica holds them: the login behind them is found
//! here or, sealed, in the cluster store. A denial revokes the session or forgets the token
//! (close 4003, on every replica). For a session, narrower permissions or another user close its
//! tunnels with 4009, so the client reconnects and the sync server sees the new identity; a Ditto
//! token's permissions live in the sync server, so only a denial counts for it. A provider that
//! cannot answer (or only through a `stale_if_error` allow) closes nothing: it is logged and
//! counted as `unreachable`. The first check of each tunnel falls at a random point of the first
//! interval, so tunnels opened together (after a restart, say) do not ask together.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::auth::session::SessionClaims;
use crate::auth::{CacheOutcome, Decision};
use crate::registry::CloseReason;
use crate::state::{GrantLookup, Shared};

/// Whose login an open tunnel is re-checked for.
#[derive(Debug, Clone)]
pub(crate) enum Holder {
    /// A drawbridge session.
    Session(Arc<SessionClaims>),
    /// An access token learned from a relayed Ditto login, by its session ID.
    Ditto(String),
}

impl Holder {
    fn sid(&self) -> &str {
        match self {
            Self::Session(claims) => &claims.sid,
            Self::Ditto(sid) => sid,
        }
    }
}

/// How a re-check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Still allowed, with at least the same permissions.
    Allow,
    /// Allowed with less, or as another user: the tunnels close with 4009.
    Narrowed,
    /// Denied: the session is revoked.
    Deny,
    /// No fresh answer could be had (the provider or the cluster store failed): nothing closes.
    Unreachable,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Narrowed => "narrowed",
            Self::Deny => "deny",
            Self::Unreachable => "unreachable",
        }
    }
}

/// Re-checks the login behind one tunnel until it is closed for a reason found here (then it
/// returns), or forever while it stays good. Without a remembered login (revalidation was off at
/// login) there is nothing to ask and it returns.
pub(crate) async fn run(shared: &Shared, holder: &Holder) {
    let mut changed = shared.config_changed.subscribe();
    let mut every = Duration::ZERO;
    let mut next = Instant::now();
    loop {
        // A reload that keeps the interval keeps the schedule: frequent reloads must not keep
        // putting the checks off. A new interval starts a new, spread-out schedule.
        let now_every = shared.live().config.auth.session.revalidate;
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
        match Box::pin(check(shared, holder, every)).await {
            None => return,
            Some(Outcome::Allow | Outcome::Unreachable) => {}
            Some(Outcome::Narrowed | Outcome::Deny) => return,
        }
    }
}

/// One re-check, on an answer younger than `max_age`, and what it did. `None` when there is
/// nothing to ask.
pub(crate) async fn check(shared: &Shared, holder: &Holder, max_age: Duration) -> Option<Outcome> {
    // The latest generation: a tunnel outlives the one it opened under.
    let live = shared.live();
    let outcome = match shared.grant(&live.sessions, holder.sid()).await {
        GrantLookup::Found(grant) => {
            let answer = live
                .auth
                .recheck(&grant.app, &grant.provider, &grant.token, max_age)
                .await;
            judge(shared, holder, &grant.provider, answer)
        }
        GrantLookup::Absent => {
            tracing::debug!("re-check: no login remembered for this tunnel; not re-checked");
            return None;
        }
        GrantLookup::Unavailable => {
            tracing::warn!("re-check: the cluster store is unreachable; tunnel kept");
            Outcome::Unreachable
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

/// What the provider's answer means for the tunnel's holder, and the closing it calls for.
fn judge(
    shared: &Shared,
    holder: &Holder,
    provider: &str,
    answer: Result<(Decision, Option<CacheOutcome>), crate::auth::ProviderError>,
) -> Outcome {
    match (answer, holder) {
        (Ok((Decision::Allow(_), Some(CacheOutcome::Stale))), _) => {
            tracing::warn!(
                provider,
                "re-check: provider failing; a stale allow is no fresh answer; tunnel kept"
            );
            Outcome::Unreachable
        }
        (Ok((Decision::Allow(allow), _)), Holder::Session(claims)) => {
            if allow.user_id == claims.sub && allow.permissions.covers(&claims.permissions) {
                Outcome::Allow
            } else {
                let n = shared
                    .tunnels
                    .close_sid(&claims.sid, CloseReason::PermissionsChanged);
                tracing::info!(
                    provider,
                    tunnels = n,
                    "re-check: permissions changed; closing the session's tunnels"
                );
                Outcome::Narrowed
            }
        }
        (Ok((Decision::Allow(_), _)), Holder::Ditto(_)) => Outcome::Allow,
        (Ok((Decision::Deny(_), _)), Holder::Session(claims)) => {
            tracing::info!(
                provider,
                "re-check: the provider denies; revoking the session"
            );
            shared.revoke_session(claims);
            Outcome::Deny
        }
        (Ok((Decision::Deny(_), _)), Holder::Ditto(sid)) => {
            tracing::info!(
                provider,
                "re-check: the provider denies; forgetting the Ditto access token"
            );
            shared.revoke_ditto_token(sid);
            Outcome::Deny
        }
        (Err(error), _) => {
            tracing::warn!(provider, %error, "re-check: provider failing; tunnel kept");
            Outcome::Unreachable
        }
    }
}
