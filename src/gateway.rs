//! `GatewayService`: route a request to its door, and record what it answered.
//!
//! The floor above the doors and the tunnel: [`route`] decides the door from the canonical request,
//! the dispatcher hands the request to it, and every refusal becomes a response through
//! [`DoorError::respond`](crate::respond::DoorError::respond).

pub(crate) mod access;
pub(crate) mod route;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::audit;
use crate::body::Body;
use crate::clock::Throttle;
use crate::config::Config;
use crate::doors;
use crate::forward::Peer;
use crate::headers::forwarded;
use crate::respond::{self, DoorError, Front, Refusal};
use crate::state::{Ctx, Shared};
use crate::telemetry;
use crate::tunnel::{self, Gate};
use route::Route;

/// The per-connection service: shared state plus who is on the other end.
#[derive(Clone)]
pub(crate) struct GatewayService {
    shared: Arc<Shared>,
    peer: Peer,
}

/// Spaces out the warning about a trusted proxy's unreadable forwarding header.
static FORWARDED_WARNING: Throttle = Throttle::new();
/// Seconds between two such warnings; the ones in between go to debug.
const FORWARDED_WARNING_EVERY_SECS: u64 = 60;

impl GatewayService {
    /// The service for one connection from `addr` (the TCP peer, or the PROXY protocol source),
    /// over TLS or not.
    pub(crate) fn new(shared: Arc<Shared>, addr: SocketAddr, tls: bool) -> Self {
        let proto = if tls { "https" } else { "http" };
        // A dual-stack socket shows IPv4 peers as `::ffff:a.b.c.d`; logs and limits use `a.b.c.d`.
        let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        Self {
            shared,
            peer: Peer {
                addr,
                client: addr.ip(),
                keep_chain: false,
                proto,
            },
        }
    }

    /// Who sent a request with `headers` over this connection: the connection's address, or, when
    /// that is one of `listen.trusted_proxies`, the client its forwarding headers name. A trusted
    /// proxy's header that does not parse is counted and logged, and the proxy's own address
    /// stands (garbage is never believed in part).
    fn peer_for(&self, headers: &HeaderMap, config: &Config) -> Peer {
        let trusted = &config.listen.trusted_proxies;
        let mut peer = self.peer;
        if trusted.is_empty() || !trusted.contains(peer.addr.ip()) {
            return peer;
        }
        match forwarded::client(headers, |ip| trusted.contains(ip)) {
            Ok(named) => {
                peer.keep_chain = true;
                if let Some(ip) = named {
                    peer.client = ip;
                }
            }
            Err(malformed) => {
                self.shared
                    .metrics
                    .conn
                    .forwarded_invalid
                    .with_label_values(&[malformed.label()])
                    .inc();
                if FORWARDED_WARNING.ready(FORWARDED_WARNING_EVERY_SECS) {
                    tracing::warn!(proxy = %peer.addr, header = malformed.label(), %malformed, "a trusted proxy sent a forwarding header that does not parse: the proxy's address stands for the client (more of these at debug for a minute; see drawbridge_forwarded_headers_invalid_total)");
                } else {
                    tracing::debug!(proxy = %peer.addr, header = malformed.label(), %malformed, "forwarding header from a trusted proxy does not parse");
                }
            }
        }
        peer
    }

    async fn handle(mut self, mut req: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        // One generation for the whole request: every door below answers under it.
        let live = self.shared.live();
        let config = &live.config;
        self.peer = self.peer_for(req.headers(), config);
        let span = crate::telemetry::root_span(Some(req.headers()), || {
            tracing::trace_span!(
                target: crate::telemetry::TARGET,
                "request",
                otel.name = tracing::field::Empty,
                otel.kind = "server",
                http.request.method = %req.method(),
                client.address = %self.peer.client,
                url.path = tracing::field::Empty,
                drawbridge.route = tracing::field::Empty,
                http.response.status_code = tracing::field::Empty,
            )
        });
        telemetry::continue_from(&span, req.headers());
        // Canonical target first: every routing decision, door and the sync server see the same path.
        let screened = route::screen(&mut req);
        if !span.is_disabled() {
            // The canonical path only: the query may carry a ticket.
            span.record("url.path", req.uri().path());
        }
        let method = req.method().clone();
        let access = self
            .shared
            .access_log
            .as_ref()
            .map(|sink| (sink, req.uri().path().to_owned()));
        let answer = async {
            match screened {
                Err(refusal) => {
                    tracing::debug!(client = %self.peer.client, %refusal, "request refused before routing");
                    let mut resp = DoorError::Refused(refusal).respond(Front::Gateway);
                    if refusal == Refusal::Connect && req.version() <= http::Version::HTTP_11 {
                        // Whatever a CONNECT client sends next is tunnel bytes, never a request.
                        resp.headers_mut().insert(
                            http::header::CONNECTION,
                            http::HeaderValue::from_static("close"),
                        );
                    }
                    (Refusal::LABEL, resp)
                }
                Ok(()) => {
                    let route = Route::classify(&req, config);
                    let cx = Ctx {
                        shared: &self.shared,
                        live: &live,
                    };
                    (route.label(), self.dispatch(route, req, cx).await)
                }
            }
        };
        // Boxed once: the answer's state is kilobytes, and every wrapper (the span, the audit
        // note) would copy it again.
        let answer = Box::pin(answer).instrument(span.clone());
        // The audit and access logs learn the client and the user through a task-local note.
        let ((label, resp), user) = if access.is_some() || self.shared.audit.enabled() {
            audit::RequestNote::new(self.peer.client, access.is_some())
                .scope(answer)
                .await
        } else {
            (answer.await, None)
        };
        if !span.is_disabled() {
            span.record("otel.name", format!("{method} {label}"));
            span.record("drawbridge.route", label);
            span.record("http.response.status_code", resp.status().as_u16());
        }
        self.shared
            .metrics
            .http
            .observe(label, resp.status(), started.elapsed().as_secs_f64());
        match access {
            Some((sink, path)) => {
                let request = access::Request {
                    method,
                    path,
                    route: label,
                    client_ip: self.peer.client,
                    user,
                };
                span.in_scope(|| access::wrap(sink, resp, request, started))
            }
            None => resp,
        }
    }

    async fn dispatch(&self, route: Route, req: Request<Incoming>, cx: Ctx<'_>) -> Response<Body> {
        match route {
            Route::Login(action) => self.login(action, req, cx).await,
            Route::Aggregator(provider) => {
                // Rate-limited like the login routes, signed or not, before any work is done.
                let answer = match self.admit(cx).await {
                    Ok(()) => doors::aggregator::handle(cx, provider.as_deref(), req).await,
                    Err(error) => Err(error),
                };
                answer.unwrap_or_else(|e| e.respond(Front::Aggregator))
            }
            Route::ForwardAuth(rule) => {
                // Not rate-limited: behind an ingress every check comes from the ingress's address.
                let answer = match rule {
                    Ok(rule) => doors::forward_auth::check(cx, &req, rule).await,
                    Err(refusal) => Err(DoorError::Refused(refusal)),
                };
                answer.unwrap_or_else(|e| e.respond(Front::ForwardAuth))
            }
            Route::Jwks => {
                let mut resp = respond::json(http::StatusCode::OK, &cx.live.sessions.jwks());
                resp.headers_mut().insert(
                    http::header::CACHE_CONTROL,
                    http::HeaderValue::from_static("public, max-age=300"),
                );
                resp
            }
            Route::DittoChallenge => self.forward(req, cx).await,
            Route::DittoLogin => {
                let answer = match self.admit(cx).await {
                    Ok(()) => doors::ditto::login(cx, req, self.peer).await,
                    Err(error) => Err(error),
                };
                answer.unwrap_or_else(|e| e.respond(Front::Ditto))
            }
            Route::DittoWs(gate, kind) => self.tunnel(req, cx, gate, kind).await,
            Route::Sync(kind) => self.tunnel(req, cx, Gate::Session, kind).await,
            Route::PublicUpgrade(kind) => self.tunnel(req, cx, Gate::Open, kind).await,
            Route::ServerOptions => respond::server_options(),
            Route::Forward => self.forward(req, cx).await,
        }
    }

    async fn login(
        &self,
        action: doors::login::Action,
        req: Request<Incoming>,
        cx: Ctx<'_>,
    ) -> Response<Body> {
        let origins = &cx.live.config.auth.cors_allowed_origins;
        if req.method() == http::Method::OPTIONS {
            return doors::preflight(origins, req.headers());
        }
        let origin = req.headers().get(http::header::ORIGIN).cloned();
        let answer = match self.admit(cx).await {
            Ok(()) => doors::login::handle(cx, action, req).await,
            Err(error) => Err(error),
        };
        let mut resp = answer.unwrap_or_else(|e| e.respond(Front::Login));
        doors::cors(origins, origin.as_ref(), resp.headers_mut());
        resp
    }

    /// The login rate limit every auth door shares, checked before any work is done.
    async fn admit(&self, cx: Ctx<'_>) -> Result<(), DoorError> {
        if cx.shared.rate_limited(cx.live, self.peer.client).await {
            Err(DoorError::RateLimited)
        } else {
            Ok(())
        }
    }

    async fn tunnel(
        &self,
        req: Request<Incoming>,
        cx: Ctx<'_>,
        gate: Gate,
        kind: tunnel::Handshake,
    ) -> Response<Body> {
        tunnel::handle(cx, req, self.peer, gate, kind)
            .await
            .unwrap_or_else(|e| e.respond(Front::Tunnel))
    }

    async fn forward(&self, req: Request<Incoming>, cx: Ctx<'_>) -> Response<Body> {
        let live = cx.live;
        match live
            .forwarder
            .forward(req, self.peer, &live.config, live.sessions.issuer())
            .await
        {
            Ok(resp) => resp,
            Err(error) => {
                self.shared.count_upstream_error(&error);
                tracing::warn!(client = %self.peer.client, error = %error, cause = ?std::error::Error::source(&error).map(ToString::to_string), "forward failed");
                DoorError::Upstream(error).respond(Front::Gateway)
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
