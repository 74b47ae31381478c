//! Session-gated websocket tunnels: who may open one, the upstream handshake, and the relay's lifetime.

pub(crate) mod frames;
pub(crate) mod relay;
pub(crate) mod revalidate;
mod upstream_io;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant as StdInstant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_util::io::InspectReader;

use crate::audit;
use crate::auth::credentials::{self, PROTOCOL_BEARER_PREFIX, SessionRejected, protocol_entries};
use crate::auth::gate::Carrier;
use crate::auth::identity;
use crate::auth::session::SessionClaims;
use crate::body::{self, Body};
use crate::config::Config;
use crate::forward::{self, Peer};
use crate::headers;
use crate::registry::{CloseReason, deadline_for};
use crate::respond::DoorError;
use crate::state::{Ctx, Live, Shared};
use upstream_io::UpstreamIo;

/// What a tunnel needs before it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// A drawbridge session (every websocket upgrade not under a public path).
    Session,
    /// An access token seen in a relayed Ditto login success (the Ditto websocket path).
    DittoToken,
    /// No check: an upgrade under `upstream.public_upgrade_paths`.
    Open,
}

/// Who a tunnel belongs to and until when.
struct Admitted {
    session: Option<(Arc<SessionClaims>, Carrier)>,
    /// `None` for a public tunnel; a Ditto-token tunnel's is its token's `ditto.<hash>` ID, which
    /// a failed re-check revokes.
    sid: Option<String>,
    /// `None` for a public tunnel, which belongs to no user.
    user: Option<String>,
    exp: Option<u64>,
    /// Whose login `session.revalidate_seconds` re-checks; `None` for an open path.
    holder: Option<revalidate::Holder>,
}

/// A websocket handshake in either HTTP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handshake {
    /// HTTP/1.1 `GET` with `Connection: upgrade` and `Upgrade: websocket`.
    Upgrade,
    /// HTTP/2 extended CONNECT (RFC 8441) with `:protocol` exactly `websocket`.
    Connect,
}

impl Handshake {
    /// The websocket upgrade token (RFC 6455 §11.2, RFC 8441 §4).
    pub(crate) const PROTOCOL: &'static str = "websocket";

    /// Recognises a websocket handshake; anything else (another `Upgrade` token, another method or
    /// version, another `:protocol`) is not one and must never be relayed as an upgrade.
    pub(crate) fn of<B>(req: &Request<B>) -> Option<Self> {
        if req.method() == Method::CONNECT {
            let protocol = req.extensions().get::<hyper::ext::Protocol>()?;
            return (protocol.as_str() == Self::PROTOCOL).then_some(Self::Connect);
        }
        (req.method() == Method::GET
            && req.version() == http::Version::HTTP_11
            && headers::is_upgrade(req.headers())
            && Self::upgrade_is_websocket(req.headers()))
        .then_some(Self::Upgrade)
    }

    /// Whether the `Upgrade` header is the one token `websocket` (case-insensitive, RFC 6455 §4.2.1),
    /// in a single field: a list offers the upstream a choice drawbridge did not gate.
    pub(crate) fn upgrade_is_websocket(headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(header::UPGRADE).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => v
                .to_str()
                .is_ok_and(|v| v.trim().eq_ignore_ascii_case(Self::PROTOCOL)),
            _ => false,
        }
    }
}

/// The path and query with every `ticket` pair removed, however it is spelled.
fn without_ticket(uri: &http::Uri) -> String {
    let path = uri.path();
    let query = uri
        .query()
        .map(|q| credentials::without_ticket(q).unwrap_or_else(|| q.to_owned()));
    match query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_owned(),
    }
}

/// Answers a websocket handshake on the main listener: checks the gate, opens the upstream
/// handshake, and on success relays the two upgraded connections under the session's lifetime.
///
/// # Errors
/// [`DoorError::InvalidToken`] when the gate stays closed, [`DoorError::Upstream`] when the sync
/// server cannot be asked. A refusal by the sync server itself is relayed as it is.
pub(crate) async fn handle(
    cx: Ctx<'_>,
    mut req: Request<Incoming>,
    peer: Peer,
    gate: Gate,
    kind: Handshake,
) -> Result<Response<Body>, DoorError> {
    let (shared, live) = (cx.shared, cx.live);
    let config = &live.config;
    let metrics = &shared.metrics.tunnel;
    let rejected = || metrics.total.with_label_values(&["rejected"]).inc();
    let admitted = admit(cx, &req, gate).await.inspect_err(|_| rejected())?;
    audit::note_user(admitted.user.as_deref().unwrap_or_default());
    // Until the tunnel is registered, shutdown waits for this handshake.
    let _opening = shared.tunnels.opening();

    let log = shared.audit.enabled().then(|| {
        audit::TunnelLog::new(
            admitted.sid.as_deref().unwrap_or_default(),
            admitted.user.as_deref().unwrap_or_default(),
            req.uri().path(),
            peer.client,
        )
    });
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (parts, _body) = req.into_parts();
    let offered_protocols = protocol_entries(&parts.headers);
    let upstream_req = upstream_request(live, parts, peer, kind, &admitted);
    let mut upstream_resp = match live.forwarder.send(upstream_req, config).await {
        Ok(r) => r,
        Err(error) => {
            rejected();
            shared.count_upstream_error(&error);
            tracing::warn!(client = %peer.client, peer = %peer.addr, %error, "websocket upstream failed");
            return Err(error.into());
        }
    };
    if upstream_resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The sync server refused: its answer goes back as it is.
        rejected();
        let (mut parts, body) = upstream_resp.into_parts();
        headers::remove_hop_by_hop(&mut parts.headers, false);
        return Ok(Response::from_parts(
            parts,
            body.map_err(body::BoxError::from).boxed_unsync(),
        ));
    }

    let upstream_upgrade = hyper::upgrade::on(&mut upstream_resp);
    let resp = client_response(kind, upstream_resp.headers(), &offered_protocols);
    metrics.total.with_label_values(&["accepted"]).inc();
    spawn_relay(
        shared,
        admitted,
        config,
        client_upgrade,
        upstream_upgrade,
        log,
    );
    Ok(resp)
}

/// Who may open the tunnel under `gate`, and until when, as the session gate finds it.
async fn admit(
    cx: Ctx<'_>,
    req: &Request<Incoming>,
    gate: Gate,
) -> Result<Admitted, SessionRejected> {
    let gatekeeper = &cx.shared.gate;
    match gate {
        Gate::Open => Ok(Admitted {
            session: None,
            sid: None,
            user: None,
            exp: None,
            holder: None,
        }),
        Gate::Session => {
            let ticket = req.uri().query().and_then(credentials::query_ticket);
            gatekeeper
                .session(&cx.live.sessions, req.headers(), ticket.as_deref())
                .await
                .map(|(claims, carrier)| Admitted {
                    sid: Some(claims.sid.clone()),
                    user: Some(claims.sub.clone()),
                    exp: Some(claims.exp),
                    holder: Some(revalidate::Holder::Session(claims.clone())),
                    session: Some((claims, carrier)),
                })
        }
        Gate::DittoToken => gatekeeper
            .ditto_token(req.headers())
            .await
            .map(|known| Admitted {
                session: None,
                sid: Some(known.sid.clone()),
                user: Some(known.user.clone()),
                exp: Some(known.expires_at),
                holder: Some(revalidate::Holder::Ditto(known.sid.clone())),
            }),
    }
}

/// The handshake the sync server receives: the canonical target without any ticket, a classic
/// HTTP/1.1 upgrade whatever the client spoke, every credential removed and the identity added.
fn upstream_request(
    live: &Live,
    mut parts: http::request::Parts,
    peer: Peer,
    kind: Handshake,
    admitted: &Admitted,
) -> Request<Body> {
    let config = &live.config;
    let path_and_query = without_ticket(&parts.uri);
    parts.uri = path_and_query
        .parse()
        .unwrap_or_else(|_| http::Uri::from_static("/"));
    if kind == Handshake::Connect {
        // RFC 8441 to RFC 6455: the sync server speaks HTTP/1.1, so open it a classic handshake.
        parts.method = Method::GET;
        let key: [u8; 16] = rand::random();
        let h = &mut parts.headers;
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Ok(v) = HeaderValue::from_str(&STANDARD.encode(key)) {
            h.insert(header::SEC_WEBSOCKET_KEY, v);
        }
        h.entry(header::SEC_WEBSOCKET_VERSION)
            .or_insert(HeaderValue::from_static("13"));
    }
    forward::rewrite_head(&mut parts, peer, config, live.sessions.issuer(), true);
    if let Some((claims, carrier)) = &admitted.session {
        // `rewrite_head` removed every carrier of the live issuer; a verified `Authorization`
        // carrier goes too, in case a retired key of another issuer signed it.
        if *carrier == Carrier::Authorization {
            parts.headers.remove(header::AUTHORIZATION);
        }
        identity::present(&mut parts.headers, claims, &live.sessions, &config.upstream);
    }
    Request::from_parts(parts, body::empty())
}

/// The client's side of an accepted handshake: 101 (HTTP/1.1) or 200 (HTTP/2), with the
/// subprotocol and extensions the sync server chose.
fn client_response(
    kind: Handshake,
    upstream: &HeaderMap,
    offered_protocols: &[String],
) -> Response<Body> {
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = match kind {
        Handshake::Upgrade => StatusCode::SWITCHING_PROTOCOLS,
        Handshake::Connect => StatusCode::OK,
    };
    let h = resp.headers_mut();
    for name in [
        header::SEC_WEBSOCKET_PROTOCOL,
        header::SEC_WEBSOCKET_EXTENSIONS,
    ] {
        if let Some(v) = upstream.get(&name) {
            h.insert(name, v.clone());
        }
    }
    // A browser that offered only drawbridge's carrier entry needs one echoed back, or it fails the handshake.
    if !h.contains_key(header::SEC_WEBSOCKET_PROTOCOL)
        && let Some(ours) = offered_protocols
            .iter()
            .find(|p| *p == "drawbridge" || p.starts_with(PROTOCOL_BEARER_PREFIX))
            .filter(|_| {
                offered_protocols
                    .iter()
                    .all(|p| p == "drawbridge" || p.starts_with(PROTOCOL_BEARER_PREFIX))
            })
    {
        let ours = if offered_protocols.iter().any(|p| p == "drawbridge") {
            "drawbridge"
        } else {
            ours.as_str()
        };
        if let Ok(v) = HeaderValue::from_str(ours) {
            h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
        }
    }
    match kind {
        Handshake::Upgrade => {
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            if let Some(v) = upstream.get(header::SEC_WEBSOCKET_ACCEPT) {
                h.insert(header::SEC_WEBSOCKET_ACCEPT, v.clone());
            }
        }
        Handshake::Connect => {}
    }
    resp
}

/// Registers the tunnel under its session and relays the two upgraded connections in a task of
/// its own until a side closes or the registry closes it.
fn spawn_relay(
    shared: &Arc<Shared>,
    admitted: Admitted,
    config: &Config,
    client_upgrade: hyper::upgrade::OnUpgrade,
    upstream_upgrade: hyper::upgrade::OnUpgrade,
    log: Option<audit::TunnelLog>,
) {
    let deadline = deadline_for(admitted.exp, config.auth.session.close_grace);
    let holder = admitted.holder.clone();
    let (registration, ctl) =
        shared
            .tunnels
            .register(admitted.sid.as_deref(), admitted.user.as_deref(), deadline);
    let shared = shared.clone();
    // A child of the request's span that lives as long as the tunnel.
    let span = crate::telemetry::child_span(|| {
        tracing::trace_span!(
            target: crate::telemetry::TARGET,
            "tunnel",
            drawbridge.close_reason = tracing::field::Empty,
            drawbridge.bytes_client_to_upstream = tracing::field::Empty,
            drawbridge.bytes_upstream_to_client = tracing::field::Empty,
        )
    });
    let relay_span = span.clone();
    let relay = async move {
        let started = StdInstant::now();
        let (client, upstream) = match tokio::try_join!(client_upgrade, upstream_upgrade) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, "websocket upgrade did not complete");
                drop(registration);
                return;
            }
        };
        if let Some(log) = &log {
            log.opened(&shared.audit);
        }
        // Per-tunnel byte counts for the audit log; the metrics count all tunnels together.
        let (sent, received) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (s, r) = (sent.clone(), received.clone());
        let client = InspectReader::new(TokioIo::new(client), move |b: &[u8]| {
            s.fetch_add(b.len() as u64, Ordering::Relaxed);
        });
        let upstream = InspectReader::new(UpstreamIo::new(upstream), move |b: &[u8]| {
            r.fetch_add(b.len() as u64, Ordering::Relaxed);
        });
        let m = &shared.metrics.tunnel;
        // Boxed, like the re-check below, each at its own size: the compiler does not always
        // let a future share its room in this task with the locals around it, and an open
        // tunnel keeps its task for its whole life.
        let mut relay = Box::pin(relay::run(
            client,
            upstream,
            ctl,
            m.bytes.with_label_values(&["client_to_upstream"]),
            m.bytes.with_label_values(&["upstream_to_client"]),
        ));
        // The re-check closes the tunnel through the registry, like a logout; the relay ends it.
        let mut recheck = Box::pin(async {
            if let Some(holder) = holder {
                revalidate::run(&shared, &holder).await;
            }
            std::future::pending::<()>().await;
        });
        let ended = tokio::select! {
            ended = &mut relay => ended,
            () = &mut recheck => unreachable!("the re-check never completes"),
        };
        m.closes.with_label_values(&[ended.label()]).inc();
        m.duration.observe(started.elapsed().as_secs_f64());
        tracing::debug!(reason = ended.label(), "tunnel closed");
        if !relay_span.is_disabled() {
            relay_span.record("drawbridge.close_reason", ended.label());
            relay_span.record(
                "drawbridge.bytes_client_to_upstream",
                sent.load(Ordering::Relaxed),
            );
            relay_span.record(
                "drawbridge.bytes_upstream_to_client",
                received.load(Ordering::Relaxed),
            );
        }
        if let Some(log) = &log {
            log.closed(
                &shared.audit,
                audit::TunnelClosed {
                    reason: ended.label(),
                    close_code: ended.client_close_code(),
                    duration: started.elapsed(),
                    bytes_client_to_upstream: sent.load(Ordering::Relaxed),
                    bytes_upstream_to_client: received.load(Ordering::Relaxed),
                },
            );
        }
        drop(registration);
    };
    tokio::spawn(tracing::Instrument::instrument(relay, span));
}

/// Closes every tunnel with 1001, whatever its gate, and any still opening as it opens, and
/// waits for them, at most `within`.
pub(crate) async fn shut_down(shared: &Shared, within: Duration) {
    let n = shared.tunnels.close_all(CloseReason::Shutdown);
    if n > 0 {
        tracing::info!(tunnels = n, "closing tunnels: going away");
    }
    if tokio::time::timeout(within, shared.tunnels.drained())
        .await
        .is_err()
    {
        tracing::warn!(
            tunnels = shared.tunnels.len(),
            "tunnels still open at the end of the grace period"
        );
    }
}
