//! `GatewayService`: route a request to its door, and record what it answered.

pub(crate) mod credentials;
pub(crate) mod respond;
pub(crate) mod route;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;

use crate::auth::AuthCore;
use crate::auth::revocation::Revocations;
use crate::auth::session::{SessionClaims, Sessions};
use crate::body::Body;
use crate::config::Config;
use crate::doors;
use crate::doors::ditto::KnownTokens;
use crate::forward::{Forwarder, Peer};
use crate::metrics::Metrics;
use crate::tunnel::registry::{CloseReason, Registry};
use crate::tunnel::{self, Gate};
use route::Route;

/// Per-client-IP limiter on the login routes.
pub(crate) type Limiter = governor::DefaultKeyedRateLimiter<IpAddr>;

/// State every connection shares; read through `Arc`, never cloned per request.
pub(crate) struct Shared {
    pub(crate) config: ArcSwap<Config>,
    pub(crate) forwarder: Forwarder,
    pub(crate) metrics: Metrics,
    pub(crate) auth: AuthCore,
    pub(crate) sessions: Sessions,
    pub(crate) revocations: Revocations,
    /// Single-use upgrade tickets.
    pub(crate) tickets: moka::sync::Cache<String, Arc<SessionClaims>>,
    pub(crate) limiter: Option<Limiter>,
    /// Open tunnels by session.
    pub(crate) tunnels: Arc<Registry>,
    /// Access tokens learned from relayed Ditto logins.
    pub(crate) ditto_tokens: KnownTokens,
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

    pub(crate) fn ticket_ttl_seconds(&self) -> u64 {
        self.config.load().auth.session.ticket_ttl.as_secs()
    }

    /// Revokes the session `claims` came from (every token of it, not only this one) and closes
    /// its tunnels; returns until when (Unix seconds) the revocation is kept.
    pub(crate) fn revoke_session(&self, claims: &SessionClaims) -> u64 {
        let until = self.revocations.revoke_session(claims);
        self.metrics.auth.sessions_revoked.inc();
        self.tunnels.close_sid(&claims.sid, CloseReason::Revoked);
        until
    }

    /// Revokes a session known only by its ID and closes its tunnels; returns until when the
    /// revocation is kept.
    pub(crate) fn revoke_sid(&self, sid: &str) -> u64 {
        let until = self.revocations.revoke_sid(sid);
        self.metrics.auth.sessions_revoked.inc();
        self.tunnels.close_sid(sid, CloseReason::Revoked);
        until
    }

    /// Revokes every current session of `user` and drops their cached decisions; returns until
    /// when the cut-off is kept.
    pub(crate) fn revoke_user(&self, user: &str) -> u64 {
        let until = self.revocations.revoke_user(user);
        self.auth.purge(Some(user));
        self.metrics.auth.sessions_revoked.inc();
        self.tunnels.close_user(user, CloseReason::Revoked);
        until
    }

    /// A session was refreshed: its new expiry applies from now on.
    pub(crate) fn on_refresh(&self, claims: &SessionClaims) {
        let grace = self.config.load().auth.session.close_grace;
        let moved = self
            .tunnels
            .extend(&claims.sid, tunnel::deadline_for(Some(claims.exp), grace));
        tracing::debug!(exp = claims.exp, tunnels = moved, "session refreshed");
    }

    /// Counts a failed upstream call by its kind.
    pub(crate) fn count_upstream_error(&self, error: &crate::forward::UpstreamError) {
        self.metrics
            .upstream
            .errors
            .with_label_values(&[error.kind()])
            .inc();
    }

    /// Whether this client may call a login route now.
    fn rate_limited(&self, ip: IpAddr) -> bool {
        self.limiter
            .as_ref()
            .is_some_and(|l| l.check_key(&ip).is_err())
    }
}

/// The per-connection service: shared state plus who is on the other end.
#[derive(Clone)]
pub(crate) struct GatewayService {
    shared: Arc<Shared>,
    peer: Peer,
}

impl GatewayService {
    pub(crate) fn new(shared: Arc<Shared>, addr: SocketAddr, tls: bool) -> Self {
        let proto = if tls { "https" } else { "http" };
        Self {
            shared,
            peer: Peer { addr, proto },
        }
    }

    async fn handle(self, mut req: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let config = self.shared.config.load_full();
        // Canonical target first: every routing decision, door and the sync server see the same path.
        let (label, resp) = match route::screen(&mut req) {
            Err(refusal) => {
                tracing::debug!(peer = %self.peer.addr, %refusal, "request refused before routing");
                let mut resp = respond::refused(&refusal);
                if refusal == route::Refusal::Connect && req.version() <= http::Version::HTTP_11 {
                    // Whatever a CONNECT client sends next is tunnel bytes, never a request.
                    resp.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                (route::Refusal::LABEL, resp)
            }
            Ok(()) => {
                let route = Route::classify(&req, &config);
                (route.label(), self.dispatch(route, req, &config).await)
            }
        };
        self.shared
            .metrics
            .http
            .observe(label, resp.status(), started.elapsed().as_secs_f64());
        resp
    }

    async fn dispatch(
        &self,
        route: Route,
        req: Request<Incoming>,
        config: &Config,
    ) -> Response<Body> {
        match route {
            Route::Login => self.login(req, config).await,
            Route::Aggregator => {
                // Rate-limited like the login routes, signed or not, before any work is done.
                if self.shared.rate_limited(self.peer.addr.ip()) {
                    respond::rate_limited()
                } else {
                    let path = req.uri().path().to_owned();
                    let provider = path
                        .strip_prefix("/auth/webhook/")
                        .filter(|p| !p.is_empty());
                    doors::aggregator::handle(&self.shared, provider, req).await
                }
            }
            Route::Jwks => {
                let mut resp = respond::json(http::StatusCode::OK, &self.shared.sessions.jwks());
                resp.headers_mut().insert(
                    http::header::CACHE_CONTROL,
                    http::HeaderValue::from_static("public, max-age=300"),
                );
                resp
            }
            Route::DittoChallenge => self.forward(req, config).await,
            Route::DittoLogin => {
                if self.shared.rate_limited(self.peer.addr.ip()) {
                    respond::rate_limited()
                } else {
                    doors::ditto::login(&self.shared, req, self.peer, config).await
                }
            }
            Route::DittoWs(kind) => {
                let gate = if config.ditto.require_known_token {
                    Gate::DittoToken
                } else if route::is_public_upgrade(req.uri().path(), config) {
                    Gate::Open
                } else {
                    Gate::Session
                };
                tunnel::handle(&self.shared, req, self.peer, config, gate, kind).await
            }
            Route::Sync(kind) => {
                tunnel::handle(&self.shared, req, self.peer, config, Gate::Session, kind).await
            }
            Route::PublicUpgrade(kind) => {
                tunnel::handle(&self.shared, req, self.peer, config, Gate::Open, kind).await
            }
            Route::ServerOptions => respond::server_options(),
            Route::Forward => self.forward(req, config).await,
        }
    }

    async fn login(&self, req: Request<Incoming>, config: &Config) -> Response<Body> {
        let origins = &config.auth.cors_allowed_origins;
        if req.method() == http::Method::OPTIONS {
            return doors::preflight(origins, req.headers());
        }
        let origin = req.headers().get(http::header::ORIGIN).cloned();
        let mut resp = if self.shared.rate_limited(self.peer.addr.ip()) {
            respond::rate_limited()
        } else {
            let path = req.uri().path().to_owned();
            let what = path.trim_start_matches("/auth/");
            doors::login::handle(&self.shared, what, req).await
        };
        doors::cors(origins, origin.as_ref(), resp.headers_mut());
        resp
    }

    async fn forward(&self, req: Request<Incoming>, config: &Config) -> Response<Body> {
        match self.shared.forwarder.forward(req, self.peer, config).await {
            Ok(resp) => resp,
            Err(error) => {
                self.shared.count_upstream_error(&error);
                tracing::warn!(peer = %self.peer.addr, error = %error, cause = ?std::error::Error::source(&error).map(ToString::to_string), "forward failed");
                respond::upstream_error(&error)
            }
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for GatewayService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}
