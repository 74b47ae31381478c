//! A client's drawbridge credentials on a request: found in one place, and taken off every request
//! before it leaves for the sync server, so the session never leaves the gateway.
//!
//! A session rides as `Authorization: Bearer <token>`, a `Sec-WebSocket-Protocol` entry
//! `drawbridge.bearer.<token>`, the `drawbridge_session` cookie, or a single-use ticket in
//! `?ticket=`. Each carrier has one parser here, used where the session is looked for (the login
//! doors, the tunnel gate, the Ditto token gate) and where it is removed ([`strip`], called by `forward::rewrite_head`,
//! which plain requests, upgrades and relayed Ditto logins all go through), so finding and removing
//! can never disagree on what a carrier looks like.
//!
//! The stripper reads wider than the finders, because what matters is what the sync server's
//! framework would read: `%74icket`, `ticket` after a `;`, a `Drawbridge_Session` cookie, and a
//! drawbridge token under any cookie name or in any `Authorization` scheme are all removed.
//!
//! Whether a token is drawbridge's is decided by its `iss` claim, read without verifying the token
//! ([`Ours::recognises`]): an expired, revoked or forged token naming our issuer must be stripped as
//! surely as a live one, and checking a signature per forwarded request would cost for nothing.
//! A bearer token of another issuer is the client's business with the sync server and passes.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Uri, header};
use serde::Deserialize;

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "drawbridge_session";
/// The `Sec-WebSocket-Protocol` entry prefix that carries a session token.
pub(crate) const PROTOCOL_BEARER_PREFIX: &str = "drawbridge.bearer.";
/// The query parameter that carries an upgrade ticket.
pub(crate) const TICKET_PARAM: &str = "ticket";

/// Removes every drawbridge credential from a request head about to be forwarded: an
/// `Authorization` header holding a drawbridge token, `drawbridge.bearer.*` protocol entries, the
/// session cookie (and any cookie holding a drawbridge token), any other header holding a
/// drawbridge token (`X-DITTO-AUTH`, `X-Access-Token`, ..), `ticket` pairs in the query, and any
/// query pair holding a drawbridge token (`access_token=`, ..). Everything else is kept as sent.
pub(crate) fn strip(parts: &mut http::request::Parts, issuer: &str) {
    let ours = Ours::new(issuer);
    strip_authorization(&mut parts.headers, &ours);
    strip_protocols(&mut parts.headers, &ours);
    strip_cookies(&mut parts.headers, &ours);
    strip_other_headers(&mut parts.headers, &ours);
    strip_query(&mut parts.uri, &ours);
}

/// The headers an ingress in front of the sync server should forward in place of the client's own
/// `Authorization`, `Cookie` and `Sec-WebSocket-Protocol`: those headers with drawbridge's
/// credentials taken out by the same rules as [`strip`]. A header with nothing left is answered
/// empty, so an ingress that copies it over the client's removes the client's (nginx's
/// `proxy_set_header` drops an empty value; Envoy and Traefik overwrite).
pub(crate) fn forwardable(headers: &HeaderMap, issuer: &str) -> HeaderMap {
    forwardable_for(headers, &Ours::new(issuer))
}

/// [`forwardable`] for the tokens `ours` recognises.
fn forwardable_for(headers: &HeaderMap, ours: &Ours<'_>) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(3);
    for name in [
        header::AUTHORIZATION,
        header::COOKIE,
        header::SEC_WEBSOCKET_PROTOCOL,
    ] {
        for v in headers.get_all(&name) {
            out.append(name.clone(), v.clone());
        }
    }
    strip_authorization(&mut out, ours);
    strip_protocols(&mut out, ours);
    strip_cookies(&mut out, ours);
    // One field each, as an ingress copies one value per name.
    for (name, sep) in [
        (header::COOKIE, &b"; "[..]),
        (header::SEC_WEBSOCKET_PROTOCOL, &b", "[..]),
    ] {
        let joined = out
            .get_all(&name)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect::<Vec<_>>()
            .join(sep);
        replace(&mut out, name, &joined);
    }
    for name in [
        header::AUTHORIZATION,
        header::COOKIE,
        header::SEC_WEBSOCKET_PROTOCOL,
    ] {
        if !out.contains_key(&name) {
            out.insert(name, HeaderValue::from_static(""));
        }
    }
    out
}

/// Why a presented session credential opens nothing; the text is what the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SessionRejected {
    /// No carrier held a session token.
    #[error("no session token")]
    Missing,
    /// A websocket handshake without any session.
    #[error("a session is required to open this websocket")]
    Required,
    /// The session was revoked (logout or admin).
    #[error("session revoked")]
    Revoked,
    /// The session token's `exp` has passed.
    #[error("session expired")]
    Expired,
    /// Not a session token drawbridge signed.
    #[error("session token invalid")]
    Invalid,
    /// The login decision behind the session has expired, so it cannot be refreshed.
    #[error("the login behind this session has expired; log in again")]
    LoginExpired,
    /// An upgrade ticket that is unknown, already redeemed, revoked or expired.
    #[error("ticket invalid, used or expired")]
    Ticket,
    /// A Ditto websocket handshake without an access token drawbridge saw issued.
    #[error("an access token issued by the sync server is required")]
    UnknownAccessToken,
}

/// A bearer token (`Authorization: Bearer`, any case), else the session cookie's value: where a
/// Ditto SDK may carry the sync server's own access token. Sessions are found by the gate
/// (`auth::gate`), on every carrier in one order.
pub(crate) fn session_token(headers: &HeaderMap) -> Option<&str> {
    authorization_bearer(headers).or_else(|| cookie(headers, SESSION_COOKIE))
}

// === Ours ===

/// Recognises drawbridge's own tokens (sessions and identity assertions) by their issuer.
pub(crate) struct Ours<'a> {
    issuer: &'a str,
}

/// The one claim recognition reads.
#[derive(Deserialize)]
struct Issuer {
    iss: Option<String>,
}

impl<'a> Ours<'a> {
    /// Tokens that `issuer` issued: the live generation's, as its `Sessions` holds it.
    pub(crate) fn new(issuer: &'a str) -> Self {
        Self { issuer }
    }

    /// Whether `token` is a compact JWT whose `iss` is ours. The signature and the times are not
    /// checked: this decides what to strip, never what to trust.
    pub(crate) fn recognises(&self, token: &str) -> bool {
        let mut parts = token.split('.');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(_), Some(payload), Some(_), None) => self.payload_is_ours(payload),
            _ => false,
        }
    }

    /// Whether a JWT payload segment decodes to claims with our `iss`.
    fn payload_is_ours(&self, payload: &str) -> bool {
        URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()
            .and_then(|json| serde_json::from_slice::<Issuer>(&json).ok())
            .and_then(|claims| claims.iss)
            .is_some_and(|iss| iss == self.issuer)
    }

    /// Whether a token of ours appears anywhere in `text`, however it is quoted or prefixed: any
    /// three consecutive dot-separated segments of a run of base64url characters and dots.
    fn within(&self, text: &[u8]) -> bool {
        String::from_utf8_lossy(text)
            .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=')))
            .filter(|run| run.bytes().filter(|b| *b == b'.').count() >= 2)
            .any(|run| {
                let segments: Vec<&str> = run.split('.').collect();
                segments
                    .windows(3)
                    .any(|w| !w[0].is_empty() && !w[2].is_empty() && self.payload_is_ours(w[1]))
            })
    }
}

// === Authorization ===

/// The credentials of one `Authorization` value whose scheme is Bearer: the scheme in any case
/// (RFC 9110 §11.1), any run of spaces or tabs after it, surrounding whitespace trimmed.
pub(crate) fn bearer(value: &str) -> Option<&str> {
    let value = value.trim_matches([' ', '\t']);
    let (scheme, token) = value.split_once([' ', '\t'])?;
    let token = token.trim_matches([' ', '\t']);
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The token of the first `Authorization: Bearer` header.
pub(crate) fn authorization_bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(bearer)
}

/// Removes each `Authorization` header that holds a drawbridge token, in whatever scheme; the
/// others (Basic, a third party's bearer token) are kept in order.
fn strip_authorization(headers: &mut HeaderMap, ours: &Ours<'_>) {
    let mine = |v: &HeaderValue| ours.within(v.as_bytes());
    if !headers.get_all(header::AUTHORIZATION).iter().any(mine) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter(|v| !mine(v))
        .cloned()
        .collect();
    headers.remove(header::AUTHORIZATION);
    for v in kept {
        headers.append(header::AUTHORIZATION, v);
    }
}

// === Any other header ===

/// Whether a value may hold a compact JWT at all (two dots): most header values do not, and
/// are passed without decoding anything.
fn may_hold_jwt(value: &[u8]) -> bool {
    value.iter().filter(|b| **b == b'.').nth(1).is_some()
}

/// Removes every value of any header that holds a drawbridge token, whatever the header's name:
/// the sync server (or a framework in front of it) may read a token from a header drawbridge does
/// not know as a carrier, such as the Ditto SDK's `X-DITTO-AUTH`.
fn strip_other_headers(headers: &mut HeaderMap, ours: &Ours<'_>) {
    let holding: Vec<header::HeaderName> = headers
        .iter()
        .filter(|(_, v)| may_hold_jwt(v.as_bytes()) && ours.within(v.as_bytes()))
        .map(|(name, _)| name.clone())
        .collect();
    for name in holding {
        let kept: Vec<HeaderValue> = headers
            .get_all(&name)
            .iter()
            .filter(|v| !(may_hold_jwt(v.as_bytes()) && ours.within(v.as_bytes())))
            .cloned()
            .collect();
        headers.remove(&name);
        for v in kept {
            headers.append(&name, v);
        }
    }
}

// === Sec-WebSocket-Protocol ===

/// The entries of every `Sec-WebSocket-Protocol` header, trimmed, in order.
pub(crate) fn protocol_entries(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The session token of a `drawbridge.bearer.<token>` entry.
pub(crate) fn protocol_bearer(entry: &str) -> Option<&str> {
    entry
        .strip_prefix(PROTOCOL_BEARER_PREFIX)
        .filter(|t| !t.is_empty())
}

/// Whether an entry is a carrier (the prefix in any case) or holds a drawbridge token.
fn is_carrier_entry(entry: &[u8], ours: &Ours<'_>) -> bool {
    let prefix = PROTOCOL_BEARER_PREFIX.as_bytes();
    entry
        .get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        || ours.within(entry)
}

/// Removes carrier entries; the rest stay in order, in one header.
fn strip_protocols(headers: &mut HeaderMap, ours: &Ours<'_>) {
    let entries: Vec<&[u8]> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|e| !e.is_empty())
        .collect();
    if !entries.iter().any(|e| is_carrier_entry(e, ours)) {
        return;
    }
    let kept = entries
        .into_iter()
        .filter(|e| !is_carrier_entry(e, ours))
        .collect::<Vec<_>>()
        .join(&b", "[..]);
    replace(headers, header::SEC_WEBSOCKET_PROTOCOL, &kept);
}

// === Cookie ===

/// One pair of a `Cookie` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CookiePair<'a> {
    /// The pair as sent, without the spaces around it.
    pub(crate) raw: &'a [u8],
    /// Before the first `=`, trimmed; the whole pair when it has no `=`.
    pub(crate) name: &'a [u8],
    /// After the first `=`, trimmed; empty when the pair has no `=`.
    pub(crate) value: &'a [u8],
}

/// Every pair of every `Cookie` header, in order (HTTP/2 clients send one header per pair).
pub(crate) fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = CookiePair<'_>> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| split_cookie(v.as_bytes()))
}

/// Splits one `Cookie` value at `;` (RFC 6265 §4.2.1), tolerating missing or extra spaces.
fn split_cookie(value: &[u8]) -> impl Iterator<Item = CookiePair<'_>> {
    value
        .split(|b| *b == b';')
        .map(<[u8]>::trim_ascii)
        .filter(|p| !p.is_empty())
        .map(|raw| match raw.iter().position(|b| *b == b'=') {
            Some(i) => CookiePair {
                raw,
                name: raw[..i].trim_ascii(),
                value: raw[i + 1..].trim_ascii(),
            },
            None => CookiePair {
                raw,
                name: raw,
                value: b"",
            },
        })
}

/// The value of the first non-empty cookie named exactly `name` (cookie names are case-sensitive).
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    cookie_pairs(headers)
        .filter(|p| p.name == name.as_bytes())
        .filter_map(|p| std::str::from_utf8(p.value).ok())
        .find(|v| !v.is_empty())
}

/// Whether the stripper removes a pair: the session cookie by name in any case (some frameworks
/// fold cookie names), or any cookie holding a drawbridge token.
fn is_session_cookie(pair: &CookiePair<'_>, ours: &Ours<'_>) -> bool {
    pair.name.eq_ignore_ascii_case(SESSION_COOKIE.as_bytes()) || ours.within(pair.raw)
}

/// Removes session cookies, keeping every other pair as sent and in order. Several `Cookie`
/// headers become one, as RFC 9113 §8.2.3 asks of a request leaving HTTP/2 (the sync server is
/// reached over HTTP/1.1); a single header with nothing to remove is left byte for byte.
fn strip_cookies(headers: &mut HeaderMap, ours: &Ours<'_>) {
    let fields = headers.get_all(header::COOKIE).iter().count();
    if fields == 0 {
        return;
    }
    let mut removed = false;
    let mut kept: Vec<&[u8]> = Vec::new();
    for pair in cookie_pairs(headers) {
        if is_session_cookie(&pair, ours) {
            removed = true;
        } else {
            kept.push(pair.raw);
        }
    }
    if !removed && fields == 1 {
        return;
    }
    let joined = kept.join(&b"; "[..]);
    replace(headers, header::COOKIE, &joined);
}

/// Sets `name` to `value` as one header, or removes it when `value` is empty.
fn replace(headers: &mut HeaderMap, name: header::HeaderName, value: &[u8]) {
    // Made of pieces of valid header values joined by ASCII, so it is valid; if not, drop it all.
    match HeaderValue::from_bytes(value) {
        Ok(v) if !value.is_empty() => {
            headers.insert(name, v);
        }
        _ => {
            headers.remove(name);
        }
    }
}

// === Query ticket ===

/// The `ticket` of a query, decoded as `application/x-www-form-urlencoded`; the first one wins.
pub(crate) fn query_ticket(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == TICKET_PARAM)
        .map(|(_, v)| v.into_owned())
}

/// Whether a query pair's key reads as `ticket` to some framework: percent- and `+`-decoded, up to
/// an `=` that was itself encoded (`ticket%3Dabc`, read by parsers that decode before splitting),
/// trimmed, in any case, and PHP's `ticket[]` arrays.
fn is_ticket_pair(pair: &str) -> bool {
    let raw_key = pair.split('=').next().unwrap_or_default();
    let Some((decoded, _)) = form_urlencoded::parse(raw_key.as_bytes()).next() else {
        return false;
    };
    let key = decoded
        .split('=')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    key == TICKET_PARAM || key.starts_with("ticket[")
}

/// Whether a query pair holds a drawbridge token, as sent or percent- and `+`-decoded, in its
/// key or its value (`access_token=<token>`, `token=<token>`, `<token>` alone).
fn holds_ours(pair: &str, ours: &Ours<'_>) -> bool {
    if !pair.contains('.') && !pair.contains('%') {
        return false;
    }
    ours.within(pair.as_bytes())
        || form_urlencoded::parse(pair.as_bytes())
            .any(|(k, v)| ours.within(k.as_bytes()) || ours.within(v.as_bytes()))
}

/// `query` without its `ticket` pairs, split at `&` and at `;` (which some frameworks also split
/// at); the other pairs and the separators between them stay byte for byte. `None` when there was
/// no ticket pair.
pub(crate) fn without_ticket(query: &str) -> Option<String> {
    without_pairs(query, is_ticket_pair)
}

/// `query` without the pairs `drop` picks, split and rejoined as [`without_ticket`] does; `None`
/// when none was dropped.
fn without_pairs(query: &str, drop: impl Fn(&str) -> bool) -> Option<String> {
    let mut out = String::with_capacity(query.len());
    let (mut removed, mut kept_any) = (false, false);
    let (mut rest, mut sep) = (query, "");
    loop {
        let end = rest.find(['&', ';']).unwrap_or(rest.len());
        let pair = &rest[..end];
        if drop(pair) {
            removed = true;
        } else {
            if kept_any {
                out.push_str(sep);
            }
            out.push_str(pair);
            kept_any = true;
        }
        if end == rest.len() {
            break;
        }
        sep = &rest[end..=end];
        rest = &rest[end + 1..];
    }
    removed.then_some(out)
}

/// Removes `ticket` pairs and pairs holding a drawbridge token from a request URI's query (and
/// the `?` when nothing is left).
fn strip_query(uri: &mut Uri, ours: &Ours<'_>) {
    let Some(kept) = uri
        .query()
        .and_then(|q| without_pairs(q, |pair| is_ticket_pair(pair) || holds_ours(pair, ours)))
    else {
        return;
    };
    let path = uri.path();
    let pq: Cow<'_, str> = if kept.is_empty() {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(format!("{path}?{kept}"))
    };
    // What remains of a valid path and query is valid; should it not be, drop the whole query.
    let pq = pq
        .parse::<PathAndQuery>()
        .or_else(|_| path.parse())
        .unwrap_or_else(|_| PathAndQuery::from_static("/"));
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(pq.clone());
    *uri = Uri::from_parts(parts).unwrap_or_else(|_| Uri::from(pq));
}

#[cfg(test)]
mod tests;
