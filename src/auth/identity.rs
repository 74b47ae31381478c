//! What the sync server learns of a session: the identity headers and the signed assertion.
//!
//! The tunnel sets them on the handshake it opens upstream, and the forward-auth door answers
//! them for the ingress to forward: one writer, so the two can never present a user differently.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::session::{SessionClaims, Sessions};
use crate::config::Upstream;

/// Lifetime of the identity assertion sent to the sync server.
const ASSERTION_TTL: Duration = Duration::from_secs(60);

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

/// The identity headers of `claims`, in the order they are written: `x-drawbridge-user`, `-app`,
/// `-provider` and `-permissions` (base64url JSON). The same claims always render the same values,
/// so a door may keep them rendered for as long as it keeps the claims.
pub(crate) fn headers(claims: &SessionClaims) -> Vec<(HeaderName, HeaderValue)> {
    let x = |n: &'static str| HeaderName::from_static(n);
    let mut out = Vec::with_capacity(4);
    out.push((x("x-drawbridge-user"), header_text(&claims.sub)));
    out.push((x("x-drawbridge-app"), header_text(&claims.app)));
    out.push((x("x-drawbridge-provider"), header_text(&claims.prv)));
    let perms = serde_json::to_vec(&claims.permissions).unwrap_or_default();
    if let Ok(v) = HeaderValue::from_str(&URL_SAFE_NO_PAD.encode(perms)) {
        out.push((x("x-drawbridge-permissions"), v));
    }
    out
}

/// Sets `x-drawbridge-assertion`: a short JWT of `claims` signed by `sessions` for the audience of
/// `upstream`, signed now with a `jti` of its own, never one used before.
pub(crate) fn sign_assertion(
    headers: &mut HeaderMap,
    claims: &SessionClaims,
    sessions: &Sessions,
    upstream: &Upstream,
) {
    let audience = format!("{}://{}", upstream.scheme, upstream.authority);
    match sessions.assertion(claims, &audience, ASSERTION_TTL) {
        Ok(jwt) => {
            if let Ok(v) = HeaderValue::from_str(&jwt) {
                headers.insert(HeaderName::from_static("x-drawbridge-assertion"), v);
            }
        }
        Err(error) => tracing::warn!(%error, "cannot sign the identity assertion"),
    }
}

/// Sets the identity headers of `claims` ([`headers`]) and a fresh assertion ([`sign_assertion`]).
pub(crate) fn present(
    headers: &mut HeaderMap,
    claims: &SessionClaims,
    sessions: &Sessions,
    upstream: &Upstream,
) {
    for (name, value) in self::headers(claims) {
        headers.insert(name, value);
    }
    sign_assertion(headers, claims, sessions, upstream);
}
