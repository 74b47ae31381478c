//! Plain HTTP forwarding to the sync server over one pooled, kept-alive client.

use std::error::Error as _;
use std::net::{IpAddr, SocketAddr};

use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;

use crate::body::{Body, BoxError};
use crate::config::{self, Config};
use crate::{headers, https};

/// Why a forwarded request got no upstream response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// The TCP (or TLS) connection to the upstream could not be made.
    #[error("upstream connection refused")]
    Refused(#[source] hyper_util::client::legacy::Error),
    /// The connect or the response head took longer than configured.
    #[error("upstream timed out")]
    Timeout,
    /// The client's body passed `limits.max_request_body_bytes`.
    #[error("request body larger than the limit")]
    BodyTooLarge,
    /// The upstream connection failed after it was made.
    #[error("upstream request failed")]
    Failed(#[source] hyper_util::client::legacy::Error),
    /// The upstream answered a plain request with 101 Switching Protocols.
    #[error("upstream switched protocols on a plain request")]
    Switched,
}

impl UpstreamError {
    /// The bounded `kind` metric label.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Refused(_) => "refused",
            Self::Timeout => "timeout",
            Self::BodyTooLarge => "body_too_large",
            Self::Failed(_) | Self::Switched => "error",
        }
    }
}

/// Per-request facts the forwarder needs from the connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer {
    /// The connection's address: the TCP peer, or the source a PROXY protocol header named.
    pub(crate) addr: SocketAddr,
    /// The client: `addr`'s address, or the one a trusted proxy at `addr` named in its forwarding
    /// headers. Rate limits, logs and traces use this.
    pub(crate) client: IpAddr,
    /// `addr` is a trusted proxy whose forwarding headers parsed: the sync server receives its
    /// `X-Forwarded-For` list with `addr` appended, instead of `addr` alone.
    pub(crate) keep_chain: bool,
    /// `https` or `http`, as the client reached us.
    pub(crate) proto: &'static str,
}

/// The shared upstream client and where it points.
pub(crate) struct Forwarder {
    client: Client<https::Connector, Body>,
}

impl Forwarder {
    /// One pooled client for the life of the process.
    ///
    /// # Errors
    /// When the platform's root certificates cannot be loaded for an https upstream.
    /// Only the connect timeout is fixed here; everything else is read from the live config per request.
    pub(crate) fn new(upstream: &config::Upstream) -> std::io::Result<Self> {
        let client = https::client(https::Options {
            http2: false,
            connect_timeout: Some(upstream.connect_timeout),
            pool_idle_timeout: std::time::Duration::from_secs(60),
        })?;
        Ok(Self { client })
    }

    /// Forwards `req` and returns the upstream's response with its body streaming.
    /// Never an upgrade: websocket handshakes go through `tunnel`, and any other `Upgrade` offer
    /// (h2c, ...) loses its `Upgrade`/`Connection` headers here, so the upstream cannot switch.
    pub(crate) async fn forward(
        &self,
        req: Request<Incoming>,
        peer: Peer,
        config: &Config,
        issuer: &str,
    ) -> Result<Response<Body>, UpstreamError> {
        let max_body = config.limits.max_request_body_bytes;
        if let Some(len) = content_length(req.headers())
            && len > max_body
        {
            return Err(UpstreamError::BodyTooLarge);
        }
        let (mut parts, body) = req.into_parts();
        rewrite_head(&mut parts, peer, config, issuer, false);
        let body: Body = Limited::new(body, usize::try_from(max_body).unwrap_or(usize::MAX))
            .map_err(BoxError::from)
            .boxed_unsync();
        let resp = self.send(Request::from_parts(parts, body), config).await?;
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            // Nothing offered an upgrade; a switch would leave the client on a protocol nobody gated.
            return Err(UpstreamError::Switched);
        }
        let (mut parts, body) = resp.into_parts();
        headers::remove_hop_by_hop(&mut parts.headers, false);
        Ok(Response::from_parts(
            parts,
            body.map_err(BoxError::from).boxed_unsync(),
        ))
    }
}

impl Forwarder {
    /// Sends a request already rewritten for the upstream, over the pool, within `upstream.request_timeout_ms`.
    pub(crate) async fn send(
        &self,
        mut request: Request<Body>,
        config: &Config,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let span = crate::telemetry::child_span(|| {
            tracing::trace_span!(
                target: crate::telemetry::TARGET,
                "upstream_request",
                otel.kind = "client",
                http.request.method = %request.method(),
                http.response.status_code = tracing::field::Empty,
                error.type = tracing::field::Empty,
            )
        });
        // The sync server continues this span's trace, whatever `traceparent` the client sent.
        span.in_scope(|| crate::telemetry::inject(request.headers_mut()));
        let sent = tokio::time::timeout(
            config.upstream.request_timeout,
            tracing::Instrument::instrument(self.client.request(request), span.clone()),
        )
        .await;
        let result = match sent {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Err(e)) => Err(classify(e)),
            Ok(Ok(resp)) => Ok(resp),
        };
        match &result {
            Ok(resp) => span.record("http.response.status_code", resp.status().as_u16()),
            Err(error) => span.record("error.type", error.kind()),
        };
        result
    }
}

/// Rewrites a client request head for the upstream: its URI, HTTP/1.1, hop-by-hop headers removed
/// (the upgrade pair kept when `upgrade`, the `Sec-WebSocket-*` handshake headers dropped when not),
/// identity headers and the credentials of `issuer`'s sessions stripped, `X-Forwarded-*` and
/// `Host` set.
pub(crate) fn rewrite_head(
    parts: &mut http::request::Parts,
    peer: Peer,
    config: &Config,
    issuer: &str,
    upgrade: bool,
) {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.as_str().to_owned()));
    parts.uri = upstream_uri(&config.upstream, parts.uri.path_and_query());
    parts.version = http::Version::HTTP_11;
    headers::remove_hop_by_hop(&mut parts.headers, upgrade);
    if !upgrade {
        strip_websocket_handshake(&mut parts.headers);
    }
    headers::strip_identity(&mut parts.headers);
    crate::auth::credentials::strip(parts, issuer);
    headers::set_forwarded(
        &mut parts.headers,
        peer.addr.ip(),
        peer.keep_chain,
        peer.proto,
        host.as_deref(),
    );
    if let Some(h) = host.as_deref().and_then(|h| HeaderValue::from_str(h).ok()) {
        parts.headers.insert(header::HOST, h);
    }
}

/// The request headers of a websocket handshake (RFC 6455 §11.3). A plain forward is never a
/// handshake: HTTP/2 has no `Connection: upgrade`, so a client that offers an upgrade over it (curl
/// does) arrives here as a plain GET still holding the key. Left on, it lets a sync server that
/// upgrades on the key alone switch protocols on a request nobody gated.
const WEBSOCKET_HANDSHAKE: [header::HeaderName; 4] = [
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_PROTOCOL,
    header::SEC_WEBSOCKET_EXTENSIONS,
];

/// Removes the websocket handshake headers from a plain request's head.
fn strip_websocket_handshake(headers: &mut http::HeaderMap) {
    for name in &WEBSOCKET_HANDSHAKE {
        headers.remove(name);
    }
}

pub(crate) fn upstream_uri(upstream: &config::Upstream, pq: Option<&PathAndQuery>) -> Uri {
    let builder = Uri::builder()
        .scheme(upstream.scheme.clone())
        .authority(upstream.authority.clone());
    let builder = match pq {
        Some(pq) => builder.path_and_query(pq.clone()),
        None => builder.path_and_query("/"),
    };
    // Every part comes from an already-valid URI, so this cannot fail.
    builder.build().unwrap_or_default()
}

fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Sorts a client error into refused, timed out, body too large, or failed.
fn classify(e: hyper_util::client::legacy::Error) -> UpstreamError {
    let mut source = e.source();
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return UpstreamError::BodyTooLarge;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return UpstreamError::Timeout;
        }
        source = s.source();
    }
    if e.is_connect() {
        UpstreamError::Refused(e)
    } else {
        UpstreamError::Failed(e)
    }
}
