//! Session-gated websocket tunnels: who may open one, the upstream handshake, and the relay's lifetime.

pub(crate) mod frames;
pub(crate) mod relay;
pub(crate) mod revalidate;
mod upstream_io;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant as StdInstant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_util::io::InspectReader;

use crate::audit;
use crate::auth::credentials::{
    self, PROTOCOL_BEARER_PREFIX, SESSION_COOKIE, SessionRejected, protocol_entries,
};
use crate::auth::session::SessionClaims;
use crate::body::{self, Body};
use crate::clock::unix_now;
use crate::config::Config;
use crate::forward::{self, Peer};
use crate::headers;
use crate::registry::{CloseReason, deadline_for};
use crate::respond::DoorError;
use crate::state::Shared;
use upstream_io::UpstreamIo;

/// Lifetime of the identity assertion sent to the sync server.
const ASSERTION_TTL: Duration = Duration::from_secs(60);

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

/// Where the session came from. Every carrier is removed before forwarding (`credentials::strip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Carrier {
    /// `Authorization: Bearer`.
    Authorization,
    /// A `drawbridge.bearer.<token>` protocol entry.
    Protocol,
    /// The session cookie.
    Cookie,
    /// A single-use `?ticket=`.
    Ticket,
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

/// Finds and checks a session, trying each carrier in turn.
async fn session(
    shared: &Shared,
    req: &Request<Incoming>,
) -> Result<(Arc<SessionClaims>, Carrier), SessionRejected> {
    let ticket = req.uri().query().and_then(credentials::query_ticket);
    find_session(shared, req.headers(), ticket.as_deref()).await
}

/// Finds and checks a session in `headers` (and `ticket`, redeemed once, when given), trying each
/// carrier in turn. A bearer token that is not drawbridge's (the client's own business with the
/// sync server) is tried last, so it does not hide a session riding on another carrier.
///
/// # Errors
/// [`SessionRejected::Required`] when no carrier holds a session, else why the one found opens nothing.
pub(crate) async fn find_session(
    shared: &Shared,
    h: &HeaderMap,
    ticket: Option<&str>,
) -> Result<(Arc<SessionClaims>, Carrier), SessionRejected> {
    let bearer = credentials::authorization_bearer(h);
    let config = shared.config.load();
    let ours = credentials::Ours::new(&config.auth.session);
    if let Some(token) = bearer.filter(|t| ours.recognises(t)) {
        return shared
            .verify_session(token)
            .map(|c| (c, Carrier::Authorization));
    }
    if let Some(token) = protocol_entries(h)
        .iter()
        .find_map(|p| credentials::protocol_bearer(p).map(str::to_owned))
    {
        return shared
            .verify_session(&token)
            .map(|c| (c, Carrier::Protocol));
    }
    if let Some(token) = credentials::cookie(h, SESSION_COOKIE) {
        return shared.verify_session(token).map(|c| (c, Carrier::Cookie));
    }
    if let Some(ticket) = ticket {
        return match shared.redeem_ticket(ticket).await {
            Some(claims) if !shared.revocations.is_revoked(&claims) && claims.exp > unix_now() => {
                Ok((claims, Carrier::Ticket))
            }
            _ => Err(SessionRejected::Ticket),
        };
    }
    if let Some(token) = bearer {
        return shared
            .verify_session(token)
            .map(|c| (c, Carrier::Authorization));
    }
    Err(SessionRejected::Required)
}

/// What [`header_text`] percent-encodes once a value needs encoding at all: control bytes and DEL
/// (which no header may carry), `%` (so that every `%` in an encoded value starts an escape),
/// space (a parser trims it at either end) and every non-ASCII byte.
const HEADER_ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%').add(b' ');

/// An identity value (user ID, app, provider) as a header value, injectively: two different values
/// never give the same header. A value that a header carries as it is and that holds no `%` (and
/// no space at either end, which parsers trim) goes as it is; any other is percent-encoded
/// (RFC 3986 §2.1) with `%` itself as `%25`. So the sync server gets the original back by
/// percent-decoding every header value: one without a `%` decodes to itself.
pub(crate) fn header_text(s: &str) -> HeaderValue {
    let plain = !s.bytes().any(|b| b == b'%' || b.is_ascii_control())
        && !s.starts_with([' ', '\t'])
        && !s.ends_with([' ', '\t']);
    if plain && let Ok(v) = HeaderValue::from_str(s) {
        return v;
    }
    let encoded = percent_encoding::utf8_percent_encode(s, HEADER_ESCAPED).to_string();
    // Only printable ASCII is left, so this cannot fail.
    HeaderValue::from_str(&encoded).unwrap_or(HeaderValue::from_static(""))
}

/// Adds the identity headers the sync server reads. `forward::rewrite_head` has already removed
/// every carrier; a verified `Authorization` carrier is removed here as well, in case the live
/// config names another issuer than the key that signed it.
fn present_identity(
    shared: &Shared,
    headers: &mut HeaderMap,
    claims: &SessionClaims,
    carrier: Carrier,
    config: &Config,
) {
    if carrier == Carrier::Authorization {
        headers.remove(header::AUTHORIZATION);
    }
    identity_headers(shared, headers, claims, config);
}

/// Sets the identity headers of `claims`: `x-drawbridge-user`, `-app`, `-provider`,
/// `-permissions` (base64url JSON) and `-assertion` (a short JWT for the upstream's audience).
pub(crate) fn identity_headers(
    shared: &Shared,
    headers: &mut HeaderMap,
    claims: &SessionClaims,
    config: &Config,
) {
    let x = |n: &'static str| HeaderName::from_static(n);
    headers.insert(x("x-drawbridge-user"), header_text(&claims.sub));
    headers.insert(x("x-drawbridge-app"), header_text(&claims.app));
    headers.insert(x("x-drawbridge-provider"), header_text(&claims.prv));
    let perms = serde_json::to_vec(&claims.permissions).unwrap_or_default();
    if let Ok(v) = HeaderValue::from_str(&URL_SAFE_NO_PAD.encode(perms)) {
        headers.insert(x("x-drawbridge-permissions"), v);
    }
    let audience = format!("{}://{}", config.upstream.scheme, config.upstream.authority);
    match shared
        .sessions
        .load()
        .assertion(claims, &audience, ASSERTION_TTL)
    {
        Ok(jwt) => {
            if let Ok(v) = HeaderValue::from_str(&jwt) {
                headers.insert(x("x-drawbridge-assertion"), v);
            }
        }
        Err(error) => tracing::warn!(%error, "cannot sign the identity assertion"),
    }
}

/// Answers a websocket handshake on the main listener: checks the gate, opens the upstream
/// handshake, and on success relays the two upgraded connections under the session's lifetime.
///
/// # Errors
/// [`DoorError::InvalidToken`] when the gate stays closed, [`DoorError::Upstream`] when the sync
/// server cannot be asked. A refusal by the sync server itself is relayed as it is.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    mut req: Request<Incoming>,
    peer: Peer,
    config: &Config,
    gate: Gate,
    kind: Handshake,
) -> Result<Response<Body>, DoorError> {
    let metrics = &shared.metrics.tunnel;
    let rejected = || metrics.total.with_label_values(&["rejected"]).inc();
    let admitted = admit(shared, &req, gate)
        .await
        .inspect_err(|_| rejected())?;
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
    let upstream_req = upstream_request(shared, parts, peer, config, kind, &admitted);
    let mut upstream_resp = match shared
        .forwarder
        .load_full()
        .send(upstream_req, config)
        .await
    {
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

/// Who may open the tunnel under `gate`, and until when.
async fn admit(
    shared: &Shared,
    req: &Request<Incoming>,
    gate: Gate,
) -> Result<Admitted, SessionRejected> {
    match gate {
        Gate::Open => Ok(Admitted {
            session: None,
            sid: None,
            user: None,
            exp: None,
            holder: None,
        }),
        Gate::Session => session(shared, req)
            .await
            .map(|(claims, carrier)| Admitted {
                sid: Some(claims.sid.clone()),
                user: Some(claims.sub.clone()),
                exp: Some(claims.exp),
                holder: Some(revalidate::Holder::Session(claims.clone())),
                session: Some((claims, carrier)),
            }),
        Gate::DittoToken => match shared.find_ditto_token(req.headers()).await {
            // A token whose login a re-check found denied opens nothing, here or on any replica.
            Some(known) if !shared.revocations.is_sid_revoked(&known.sid) => Ok(Admitted {
                session: None,
                sid: Some(known.sid.clone()),
                user: Some(known.user.clone()),
                exp: Some(known.expires_at),
                holder: Some(revalidate::Holder::Ditto(known.sid.clone())),
            }),
            _ => Err(SessionRejected::UnknownAccessToken),
        },
    }
}

/// The handshake the sync server receives: the canonical target without any ticket, a classic
/// HTTP/1.1 upgrade whatever the client spoke, every credential removed and the identity added.
fn upstream_request(
    shared: &Shared,
    mut parts: http::request::Parts,
    peer: Peer,
    config: &Config,
    kind: Handshake,
    admitted: &Admitted,
) -> Request<Body> {
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
    forward::rewrite_head(&mut parts, peer, config, true);
    if let Some((claims, carrier)) = &admitted.session {
        present_identity(shared, &mut parts.headers, claims, *carrier, config);
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
