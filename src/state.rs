//! `Shared`: the state every connection, door and tunnel reads, owned below all of them.
//!
//! The live config, the upstream forwarder, the metrics, the auth core with its sessions,
//! revocations, tickets and learned Ditto tokens, the login rate limiter and the tunnel registry.
//! The doors, the tunnel and the dispatcher above use it; it imports none of them.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::audit::{self, Audit};
use crate::auth::AuthCore;
use crate::auth::credentials::{self, SessionRejected};
pub(crate) use crate::auth::grant::{Grant, grant_store};
use crate::auth::known_tokens::{KnownToken, KnownTokens};
use crate::auth::revocation::Revocations;
use crate::auth::session::{SessionClaims, Sessions};
use crate::clock::unix_now;
use crate::cluster::{Cluster, Entry, Kind, Replica, Revocation, strict_u64};
use crate::config::Config;
use crate::forward::{Forwarder, UpstreamError};
use crate::jsonlines::Sink;
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
    /// The audit log (off unless `[audit]` is set).
    pub(crate) audit: Audit,
    /// The access log's writer when `log.access = true`.
    pub(crate) access_log: Option<Sink>,
    /// Bumped after each applied reload, so long-lived tasks read the settings again.
    pub(crate) config_changed: tokio::sync::watch::Sender<u64>,
    /// The login behind each session (and learned Ditto token), kept in memory while
    /// `session.revalidate_seconds` is on so its tunnels can ask the provider again; sealed in
    /// the cluster store for the other replicas.
    pub(crate) grants: moka::sync::Cache<Arc<str>, Arc<Grant>>,
    /// The link to the other replicas (`[cluster]`); `None` keeps everything local.
    pub(crate) cluster: Option<Arc<Cluster>>,
    /// Signed aggregator calls already answered, so none is answered twice.
    pub(crate) signed_calls: crate::auth::signature::SeenCalls,
}

/// Where the login behind a session was found.
pub(crate) enum GrantLookup {
    /// Here, or opened from the cluster store.
    Found(Arc<Grant>),
    /// Nowhere: revalidation was off when the session began, or it is gone.
    Absent,
    /// The cluster store could not be asked now.
    Unavailable,
}

/// Cluster key kind of single-use tickets.
const TICKET_KIND: &str = "ticket";
/// Cluster key kind of learned Ditto access tokens.
const DITTO_KIND: &str = "ditto";
/// Most candidate tokens of one handshake looked up in the cluster store.
const MAX_SHARED_LOOKUPS: usize = 4;

/// A learned token's shared value, `<accessExpiry, Unix seconds> <user>`, read strictly.
fn parse_learned_token(value: &[u8]) -> Option<(u64, String)> {
    let text = std::str::from_utf8(value).ok()?;
    let (expires_at, user) = text.split_once(' ')?;
    let expires_at = strict_u64(expires_at.as_bytes())?;
    (!user.is_empty()).then(|| (expires_at, user.to_owned()))
}

// === impl Shared ===

impl Shared {
    /// A single-use ticket standing for `claims` for `session.ticket_ttl_seconds`. In cluster
    /// mode it is kept in the cluster store only (any replica may redeem it, once); while that is
    /// away, locally.
    pub(crate) async fn issue_ticket(&self, claims: Arc<SessionClaims>) -> String {
        let bytes: [u8; 24] = rand::random();
        let ticket =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes);
        if let Some(cluster) = &self.cluster {
            let ttl = self.config.load().auth.session.ticket_ttl;
            if let Ok(json) = serde_json::to_vec(&*claims)
                && cluster.put(TICKET_KIND, &ticket, &json, ttl).await
            {
                return ticket;
            }
        }
        self.tickets.insert(ticket.clone(), claims);
        ticket
    }

    /// Redeems a ticket once, here or (atomically, `GETDEL`) in the cluster store; a second use
    /// anywhere finds nothing.
    pub(crate) async fn redeem_ticket(&self, ticket: &str) -> Option<Arc<SessionClaims>> {
        if let Some(claims) = self.tickets.remove(ticket) {
            return Some(claims);
        }
        let cluster = self.cluster.as_ref()?;
        let json = cluster.take(TICKET_KIND, ticket).await?;
        match serde_json::from_slice::<SessionClaims>(&json) {
            Ok(claims) if !claims.sid.is_empty() && !claims.sub.is_empty() => {
                Some(Arc::new(claims))
            }
            _ => {
                // The ticket is a credential: the log names it by a digest only.
                let digest = hex::encode(KnownTokens::key(ticket));
                let key = cluster.key(TICKET_KIND, &format!("sha256:{}", &digest[..16]));
                cluster.bad_entry(Entry::Ticket, &key, b"", "not a session's claims");
                None
            }
        }
    }

    /// Remembers a Ditto access token from a relayed login success, here and for the other
    /// replicas (by its SHA-256, until its `accessExpiry`), with the login it came from (`grant`)
    /// while tunnels are re-checked. Both are written before this returns, so another replica
    /// finds them as soon as the client has the token.
    pub(crate) async fn learn_ditto_token(&self, token: &str, known: KnownToken, grant: Grant) {
        let sid = known.sid.clone();
        if let Some(cluster) = &self.cluster {
            let ttl = known.expires_at.saturating_sub(unix_now());
            let id = hex::encode(KnownTokens::key(token));
            let value = format!("{} {}", known.expires_at, known.user);
            cluster
                .put(DITTO_KIND, &id, value.as_bytes(), Duration::from_secs(ttl))
                .await;
        }
        self.ditto_tokens.learn(token, known);
        self.remember_grant(&sid, grant).await;
    }

    /// The known Ditto access token a websocket handshake carries: learned here, or by another
    /// replica (then remembered here too).
    pub(crate) async fn find_ditto_token(
        &self,
        headers: &http::HeaderMap,
    ) -> Option<Arc<KnownToken>> {
        if let Some(known) = self.ditto_tokens.find(headers) {
            return Some(known);
        }
        let cluster = self.cluster.as_ref()?;
        // A handful of lookups at most, however many cookies the handshake carries.
        for token in KnownTokens::candidates(headers)
            .into_iter()
            .take(MAX_SHARED_LOOKUPS)
        {
            let id = hex::encode(KnownTokens::key(token));
            let Some(value) = cluster.get(DITTO_KIND, &id).await else {
                continue;
            };
            let Some((expires_at, user)) = parse_learned_token(&value) else {
                let key = cluster.key(DITTO_KIND, &id);
                cluster.bad_entry(
                    Entry::LearnedToken,
                    &key,
                    &value,
                    "not `<unix seconds> <user>`",
                );
                continue;
            };
            let sid = KnownTokens::session_id(token);
            self.ditto_tokens.learn(
                token,
                KnownToken {
                    user,
                    expires_at,
                    sid,
                },
            );
            if let Some(known) = self.ditto_tokens.get(token) {
                return Some(known);
            }
        }
        None
    }

    /// How long a ticket stays redeemable, for the ticket reply.
    pub(crate) fn ticket_ttl_seconds(&self) -> u64 {
        self.config.load().auth.session.ticket_ttl.as_secs()
    }

    /// Revokes the session `claims` came from (every token of it, not only this one) and closes
    /// its tunnels; returns until when (Unix seconds) the revocation is kept.
    pub(crate) fn revoke_session(&self, claims: &SessionClaims) -> u64 {
        let until = self.revocations.revoke_session(claims);
        self.forget_grant(&claims.sid);
        self.share_revocation(Kind::Sid, &claims.sid, until);
        self.metrics.auth.sessions_revoked.inc();
        self.tunnels.close_sid(&claims.sid, CloseReason::Revoked);
        until
    }

    /// Revokes a session known only by its ID and closes its tunnels; returns until when the
    /// revocation is kept.
    pub(crate) fn revoke_sid(&self, sid: &str) -> u64 {
        let until = self.revocations.revoke_sid(sid);
        self.forget_grant(sid);
        self.share_revocation(Kind::Sid, sid, until);
        self.metrics.auth.sessions_revoked.inc();
        self.tunnels.close_sid(sid, CloseReason::Revoked);
        until
    }

    /// Revokes every current session of `user` and drops their cached decisions; returns until
    /// when the cut-off is kept.
    pub(crate) fn revoke_user(&self, user: &str) -> u64 {
        let until = self.revocations.revoke_user(user);
        self.auth.load().purge(Some(user));
        self.share_revocation(Kind::User, user, until);
        self.metrics.auth.sessions_revoked.inc();
        self.tunnels.close_user(user, CloseReason::Revoked);
        until
    }

    /// Hands a revocation just made here to the other replicas (written with its real end and
    /// published; queued while the cluster store is away).
    fn share_revocation(&self, kind: Kind, id: &str, until: u64) {
        if let Some(cluster) = self.cluster.clone() {
            let revocation = Revocation {
                kind,
                id: id.to_owned(),
                at: unix_now(),
                until,
            };
            tokio::spawn(async move {
                let user = (revocation.kind == Kind::User).then(|| revocation.id.clone());
                cluster.revoke(revocation).await;
                if let Some(user) = user {
                    // The user's shared decisions go too, as the local ones did.
                    cluster.purge(Some(&user)).await;
                }
            });
        }
    }

    /// Drops cached decisions (all, or `user`'s) here and, in cluster mode, on every replica and
    /// in the shared level.
    pub(crate) async fn purge_decisions(&self, user: Option<&str>) {
        self.auth.load().purge(user);
        if let Some(cluster) = &self.cluster {
            cluster.purge(user).await;
        }
    }

    /// Whether `/readyz` must answer 503: cluster mode is required and Redis is unreachable.
    pub(crate) fn cluster_missing(&self) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.required() && !c.is_up())
    }

    /// A session was refreshed: its new expiry applies from now on.
    pub(crate) fn on_refresh(&self, claims: &SessionClaims) {
        let grace = self.config.load().auth.session.close_grace;
        let moved = self
            .tunnels
            .extend(&claims.sid, deadline_for(Some(claims.exp), grace));
        tracing::debug!(exp = claims.exp, tunnels = moved, "session refreshed");
        self.audit.emit(&audit::Event::SessionRefresh {
            user: &claims.sub,
            app: &claims.app,
            provider: &claims.prv,
            sid_hash: audit::sid_hash(&claims.sid),
            expires_at: claims.exp,
            client_ip: audit::client_ip(),
        });
    }

    /// Keeps what the login of session `sid` asked, when open tunnels are re-checked: here, and
    /// sealed in the cluster store until the session's last possible expiry, written before
    /// this returns so any replica can re-check a tunnel of the session as soon as it opens.
    pub(crate) async fn remember_grant(&self, sid: &str, grant: Grant) {
        if self.config.load().auth.session.revalidate.is_zero() {
            return;
        }
        if let Some(cluster) = &self.cluster {
            match grant.seal(&self.sessions.load(), sid) {
                Ok(sealed) => {
                    if !cluster.put_grant(sid, &sealed, grant.ttl()).await {
                        tracing::warn!(
                            "cannot share a session's re-check material; only this replica re-checks its tunnels"
                        );
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot seal a session's re-check material"),
            }
        }
        self.grants.insert(Arc::from(sid), Arc::new(grant));
    }

    /// The login behind session `sid`, to re-check one of its tunnels: remembered here, or
    /// sealed in the cluster store by the replica that minted the session (then kept here too).
    pub(crate) async fn grant(&self, sid: &str) -> GrantLookup {
        if let Some(grant) = self.grants.get(sid) {
            return GrantLookup::Found(grant);
        }
        let Some(cluster) = &self.cluster else {
            return GrantLookup::Absent;
        };
        let sealed = match cluster.get_grant(sid).await {
            Ok(Some(sealed)) => sealed,
            Ok(None) => return GrantLookup::Absent,
            Err(error) => {
                tracing::debug!(%error, "re-check material unavailable");
                return GrantLookup::Unavailable;
            }
        };
        match Grant::open(&self.sessions.load(), sid, &sealed) {
            Some(grant) if grant.until > unix_now() => {
                let grant = Arc::new(grant);
                self.grants.insert(Arc::from(sid), grant.clone());
                GrantLookup::Found(grant)
            }
            Some(_) => GrantLookup::Absent,
            None => {
                // Counted and logged as a bad entry: sealed under another key, or not a seal.
                cluster.bad_entry(
                    crate::cluster::Entry::Grant,
                    &cluster.grant_key(sid),
                    &sealed,
                    "does not open with this replica's session keys (do the replicas share session.key_file?); \
                     its tunnels here are not re-checked",
                );
                GrantLookup::Absent
            }
        }
    }

    /// Forgets what session `sid`'s login asked, here and in the cluster store.
    fn forget_grant(&self, sid: &str) {
        self.grants.invalidate(sid);
        if let Some(cluster) = self.cluster.clone() {
            let sid = sid.to_owned();
            tokio::spawn(async move { cluster.forget_grant(&sid).await });
        }
    }

    /// The provider denies the login behind a learned Ditto token: its session ID is revoked
    /// (its tunnels close with 4003 on every replica) and the token is forgotten here and in the
    /// cluster store, so it opens no tunnel anywhere again.
    pub(crate) fn revoke_ditto_token(&self, sid: &str) {
        self.revoke_sid(sid);
        self.ditto_tokens.forget_session(sid);
        if let (Some(cluster), Some(id)) = (
            self.cluster.clone(),
            sid.strip_prefix(crate::auth::known_tokens::SESSION_ID_PREFIX),
        ) {
            let id = id.to_owned();
            tokio::spawn(async move { cluster.remove(DITTO_KIND, &id).await });
        }
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
    pub(crate) async fn rate_limited(&self, ip: IpAddr) -> bool {
        let Some(limiter) = self.limiter.load_full() else {
            return false;
        };
        // In cluster mode the limit is counted across replicas; this replica's own limiter
        // answers only while Redis cannot.
        let limit = self.config.load().auth.rate_limit;
        if let (Some(cluster), Some(limit)) = (&self.cluster, limit)
            && let Some(admitted) = cluster
                .login_admitted(ip, limit.per_second, limit.burst)
                .await
        {
            return !admitted;
        }
        limiter.check_key(&ip).is_err()
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
            .inspect(|claims| audit::note_user(&claims.sub))
    }
}

// === impl Replica for Shared ===

impl Replica for Shared {
    fn apply_revocation(&self, r: &Revocation) {
        if !self.revocations.apply(r) {
            return;
        }
        self.metrics.auth.sessions_revoked.inc();
        match r.kind {
            Kind::Sid => {
                self.grants.invalidate(r.id.as_str());
                self.ditto_tokens.forget_session(&r.id);
                self.tunnels.close_sid(&r.id, CloseReason::Revoked);
            }
            Kind::User => {
                self.auth.load().purge(Some(&r.id));
                self.tunnels.close_user(&r.id, CloseReason::Revoked);
            }
        }
    }

    fn apply_purge(&self, user: Option<&str>) {
        self.auth.load().purge(user);
    }

    fn revocations(&self) -> Vec<Revocation> {
        self.revocations.entries()
    }
}
