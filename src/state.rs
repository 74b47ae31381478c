//! `Shared`: the state every connection, door and tunnel reads, owned below all of them, and
//! `Live`: the one generation of everything a reload may change.
//!
//! A reload builds a whole new [`Live`] (config, auth core, session keys, forwarder, limiter, TLS
//! settings) and publishes it with one store, so a request that loads it once (and passes it down
//! in a [`Ctx`]) never sees parts of two configs. What outlives generations stays in `Shared`:
//! the metrics, the session gate with its revocations, tickets and learned Ditto tokens, the
//! tunnel registry, the logs, and the link to the other replicas. The doors, the tunnel and the
//! dispatcher above use it; it imports none of them.

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::audit::{self, Audit};
use crate::auth::AuthCore;
use crate::auth::gate::Gate;
pub(crate) use crate::auth::grant::{Grant, grant_store};
use crate::auth::known_tokens::KnownToken;
use crate::auth::session::{Minted, SessionClaims, SessionError, Sessions, claim_sets};
use crate::auth::verified::VerifiedSessions;
use crate::clock::unix_now;
use crate::cluster::{Cluster, Kind, Replica, Revocation};
use crate::config::Config;
use crate::forward::{Forwarder, UpstreamError};
use crate::jsonlines::Sink;
use crate::metrics::Metrics;
use crate::registry::{CloseReason, Registry, deadline_for};
use crate::tls::TlsGeneration;

/// Per-client-IP limiter on the login routes.
pub(crate) type Limiter = governor::DefaultKeyedRateLimiter<IpAddr>;

/// One generation of everything a reload may change, published whole. Parts a reload leaves as
/// they were are shared with the last generation by `Arc` (the upstream pool, the rate-limit
/// buckets, an unchanged provider's cache and breaker inside the auth core).
pub(crate) struct Live {
    /// The validated config this generation was built from.
    pub(crate) config: Config,
    /// The providers and their decision caches.
    pub(crate) auth: AuthCore,
    /// The session keys (retired ones keep verifying) and the issuer.
    pub(crate) sessions: Sessions,
    /// The upstream client.
    pub(crate) forwarder: Arc<Forwarder>,
    /// The per-IP login limiter, when `[rate_limit]` is set.
    pub(crate) limiter: Option<Arc<Limiter>>,
    /// The main listener's TLS settings, when it speaks TLS.
    pub(crate) tls: Option<Arc<TlsGeneration>>,
    /// Sessions the forward-auth door verified under this generation's keys, by token hash;
    /// a new generation starts empty.
    pub(crate) verified: VerifiedSessions,
}

/// What one request reads: the shared state, and the live generation it loaded once.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    /// State that outlives generations.
    pub(crate) shared: &'a Arc<Shared>,
    /// The generation this request answers under.
    pub(crate) live: &'a Live,
}

/// State every connection shares; read through `Arc`, never cloned per request.
pub(crate) struct Shared {
    /// The live generation; a reload replaces it with one store.
    live: ArcSwap<Live>,
    pub(crate) metrics: Metrics,
    /// Sessions, tickets, learned Ditto tokens and revocations.
    pub(crate) gate: Gate,
    /// Open tunnels by session.
    pub(crate) tunnels: Arc<Registry>,
    /// The audit log (off unless `[audit]` is set).
    pub(crate) audit: Audit,
    /// The access log's writer when `log.access = true`.
    pub(crate) access_log: Option<Sink>,
    /// Bumped after each published generation, so long-lived tasks read the settings again.
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

/// What `Shared` is built from besides the first generation.
pub(crate) struct Parts {
    pub(crate) metrics: Metrics,
    pub(crate) audit: Audit,
    pub(crate) access_log: Option<Sink>,
    pub(crate) cluster: Option<Arc<Cluster>>,
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

// === impl Shared ===

impl Shared {
    /// Shared state serving `first` as its first generation.
    pub(crate) fn new(first: Live, parts: Parts) -> Self {
        let gate = Gate::new(first.config.auth.session.max_ttl, parts.cluster.clone());
        let tunnels = Arc::new(Registry::new(parts.metrics.tunnel.active.clone()));
        Self {
            live: ArcSwap::from_pointee(first),
            metrics: parts.metrics,
            gate,
            tunnels,
            audit: parts.audit,
            access_log: parts.access_log,
            config_changed: tokio::sync::watch::Sender::new(0),
            grants: grant_store(),
            cluster: parts.cluster,
            signed_calls: crate::auth::signature::SeenCalls::new(
                crate::auth::signature::MAX_REMEMBERED_CALLS,
            ),
        }
    }

    /// The live generation: a request loads it once and answers under it whole.
    pub(crate) fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// Publishes `next` with one store, then wakes the long-lived tasks that follow the latest
    /// generation (tunnel re-checks).
    pub(crate) fn publish(&self, next: Live) {
        self.gate
            .revocations()
            .widen_max_ttl(next.config.auth.session.max_ttl);
        self.live.store(Arc::new(next));
        self.config_changed.send_modify(|n| *n += 1);
    }

    /// A single-use ticket standing for `claims`, for the generation's `session.ticket_ttl_seconds`.
    pub(crate) async fn issue_ticket(&self, live: &Live, claims: Arc<SessionClaims>) -> String {
        self.gate
            .issue_ticket(claims, live.config.auth.session.ticket_ttl)
            .await
    }

    /// Remembers a Ditto access token from a relayed login success, with the login it came from
    /// (`grant`) while tunnels are re-checked. Both are written before this returns, so another
    /// replica finds them as soon as the client has the token.
    pub(crate) async fn learn_ditto_token(
        &self,
        live: &Live,
        token: &str,
        known: KnownToken,
        grant: Grant,
    ) {
        let sid = known.sid.clone();
        self.gate.learn_ditto_token(token, known).await;
        self.remember_grant(live, &sid, grant).await;
    }

    /// Revokes the session `claims` came from (every token of it, not only this one) and closes
    /// its tunnels; returns until when (Unix seconds) the revocation is kept.
    pub(crate) fn revoke_session(&self, claims: &SessionClaims) -> u64 {
        let until = self.gate.revoke_session(claims);
        self.revoked_sid(&claims.sid);
        until
    }

    /// Revokes a session known only by its ID and closes its tunnels; returns until when the
    /// revocation is kept.
    pub(crate) fn revoke_sid(&self, sid: &str) -> u64 {
        let until = self.gate.revoke_sid(sid);
        self.revoked_sid(sid);
        until
    }

    /// What follows a session's revocation here: its re-check material goes, it is counted, and
    /// its tunnels close.
    fn revoked_sid(&self, sid: &str) {
        self.forget_grant(sid);
        self.metrics.auth.sessions_revoked.inc();
        self.tunnels.close_sid(sid, CloseReason::Revoked);
    }

    /// Revokes every current session of `user` and drops their cached decisions; returns until
    /// when the cut-off is kept.
    pub(crate) fn revoke_user(&self, user: &str) -> u64 {
        let until = self.gate.revoke_user(user);
        self.live().auth.purge(Some(user));
        self.metrics.auth.sessions_revoked.inc();
        self.tunnels.close_user(user, CloseReason::Revoked);
        until
    }

    /// Drops cached decisions (all, or `user`'s) here and, in cluster mode, on every replica and
    /// in the shared level.
    pub(crate) async fn purge_decisions(&self, user: Option<&str>) {
        self.live().auth.purge(user);
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

    /// The token `minted` as it may be handed out: in cluster mode, the claim set it names by
    /// reference is in the cluster store first (unless an earlier write covers the session), so
    /// any replica reads it; when that cannot be written, the token carries its claims itself.
    ///
    /// # Errors
    /// [`SessionError::Crypto`] when signing the token again fails.
    pub(crate) async fn shareable(
        &self,
        live: &Live,
        minted: Minted,
    ) -> Result<Minted, SessionError> {
        let Some((reference, set, until)) = minted.publish.clone() else {
            return Ok(minted);
        };
        if let Some(cluster) = &self.cluster
            && cluster
                .put_claim_set(&claim_sets::encode(&reference), set.text(), until)
                .await
        {
            live.sessions.claim_sets().published(&reference, until);
            return Ok(minted);
        }
        tracing::warn!(
            "cannot share a session's claim set (Redis away, or older than 7.0); its token carries \
             its permissions and clientInfo itself"
        );
        live.sessions.inline(minted.claims)
    }

    /// A session was refreshed: its new expiry applies from now on.
    pub(crate) fn on_refresh(&self, live: &Live, claims: &SessionClaims) {
        let grace = live.config.auth.session.close_grace;
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
    pub(crate) async fn remember_grant(&self, live: &Live, sid: &str, grant: Grant) {
        if live.config.auth.session.revalidate.is_zero() {
            return;
        }
        if let Some(cluster) = &self.cluster {
            match grant.seal(&live.sessions, sid) {
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
    /// sealed in the cluster store by the replica that minted the session (then kept here too),
    /// opened with the session keys of `sessions`.
    pub(crate) async fn grant(&self, sessions: &Sessions, sid: &str) -> GrantLookup {
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
        match Grant::open(sessions, sid, &sealed) {
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
        self.gate.forget_ditto_token(sid);
    }

    /// Whether this client may call a login route now, under `live`'s `[rate_limit]`. In cluster
    /// mode the limit is counted across replicas; this replica's own limiter answers only while
    /// Redis cannot.
    pub(crate) async fn rate_limited(&self, live: &Live, ip: IpAddr) -> bool {
        let Some(limiter) = &live.limiter else {
            return false;
        };
        if let (Some(cluster), Some(limit)) = (&self.cluster, live.config.auth.rate_limit)
            && let Some(admitted) = cluster
                .login_admitted(ip, limit.per_second, limit.burst)
                .await
        {
            return !admitted;
        }
        limiter.check_key(&ip).is_err()
    }

    /// Counts a failed upstream call by its kind.
    pub(crate) fn count_upstream_error(&self, error: &UpstreamError) {
        self.metrics
            .upstream
            .errors
            .with_label_values(&[error.kind()])
            .inc();
    }
}

// === impl Replica for Shared ===

impl Replica for Shared {
    fn apply_revocation(&self, r: &Revocation) {
        if !self.gate.apply_revocation(r) {
            return;
        }
        self.metrics.auth.sessions_revoked.inc();
        match r.kind {
            Kind::Sid => {
                self.grants.invalidate(r.id.as_str());
                self.tunnels.close_sid(&r.id, CloseReason::Revoked);
            }
            Kind::User => {
                self.live().auth.purge(Some(&r.id));
                self.tunnels.close_user(&r.id, CloseReason::Revoked);
            }
        }
    }

    fn apply_purge(&self, user: Option<&str>) {
        self.live().auth.purge(user);
    }

    fn revocations(&self) -> Vec<Revocation> {
        self.gate.revocations().entries()
    }

    fn learn_claim_set(&self, reference: &str, set: &[u8], until: u64) -> bool {
        claim_sets::decode(reference).is_some_and(|reference| {
            self.live()
                .sessions
                .claim_sets()
                .learn(&reference, set, until)
                .is_some()
        })
    }
}
