//! The forward-auth door, `/auth/check` (any method, any path under it): an ingress that stays in
//! the data path (nginx `auth_request`, Envoy Gateway `extAuth`, Traefik `ForwardAuth`,
//! ingress-nginx `auth-url`) asks it whether to let a request through.
//!
//! A valid, unrevoked session on any carrier (bearer, cookie, protocol entry; found by the same
//! parsers as the tunnel gate) gets 200 with an empty body and the identity headers a tunnel
//! sends the sync server, plus `X-Auth-Request-User`/`-Email` for snippets written for
//! oauth2-proxy. With `[forward_auth] accept_provider_tokens`, an identity provider's bearer token
//! is decided through the decision cache instead, and no session is minted. Anything else is 401
//! with `WWW-Authenticate: Bearer`, or a 302 to `forward_auth.signin_url` when one is set.
//!
//! The door decides on exactly one source of the forwarded request's path, `forward_auth.uri_from`:
//! the path under the door (`"path"`, the default: Envoy's `extAuth` appends the original path to
//! `/auth/check`) or one header (`"header:x-forwarded-uri"` for Traefik, `"header:x-original-url"`
//! for ingress-nginx, `"header:x-original-uri"` for an nginx `auth_request` snippet). The named
//! source missing is a 403; so is any other of those sources present and naming another path,
//! because an ingress that passes the client's own headers on to the door would otherwise let the
//! client name the path the rules apply to. The path is made canonical by the same rules as a
//! direct request's (an ambiguous one is refused, 403), and the sync-path rule applies to it as
//! to a direct upgrade (under `upstream.public_upgrade_paths` it needs no session). It decides
//! the rule only, never an identity.
//!
//! Every 200 carries every identity header (empty where there is nothing to say, so an ingress
//! that copies them overwrites a client's own copies of these names) and the client's
//! `Authorization`, `Cookie` and `Sec-WebSocket-Protocol` with drawbridge's credentials taken out,
//! for the ingress to forward in their place: the session stays at the gate.
//!
//! An ingress asks about the same session on every request, so a token is verified once per
//! generation and its identity headers rendered once ([`crate::auth::verified`]); each later check
//! of the same token asks only the clock and the revocation list again. The identity assertion
//! (`x-drawbridge-assertion`) is signed only with `forward_auth.assertion`, and then afresh for
//! every passing check (a new `jti` each time, never a cached one); without it the header is
//! answered empty, and the ingress carries the identity to the sync server over a hop it trusts.

use std::sync::Arc;

use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri};

use crate::auth::credentials::SessionRejected;
use crate::auth::gate::Gate;
use crate::auth::session::{SessionClaims, Sessions};
use crate::auth::verified::{Verified, VerifiedSessions};
use crate::auth::{Decision, Door};
use crate::auth::{credentials, identity};
use crate::body::{self, Body};
use crate::canonical::{self, TargetError};
use crate::clock::unix_now;
use crate::config::Upstream;
use crate::config::auth::UriSource;
use crate::respond::{DoorError, Refusal};
use crate::state::{Ctx, Live};

/// The door's path; every path under it is the door too.
pub(crate) const PATH: &str = "/auth/check";

/// `X-Forwarded-Uri` (Traefik).
const FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
/// `X-Original-URI` (nginx `auth_request` snippets).
const ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
/// `X-Original-URL` (ingress-nginx: the whole URL the client asked for).
const ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
/// Every header an ingress names the forwarded path in; whichever `forward_auth.uri_from` does not
/// name must agree with the one it names, when present.
static KNOWN_HEADERS: [HeaderName; 3] = [FORWARDED_URI, ORIGINAL_URI, ORIGINAL_URL];
/// `X-Forwarded-Method`.
const FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
/// oauth2-proxy's user header name, which many ingress snippets expect.
const AUTH_REQUEST_USER: HeaderName = HeaderName::from_static("x-auth-request-user");
/// oauth2-proxy's email header name.
const AUTH_REQUEST_EMAIL: HeaderName = HeaderName::from_static("x-auth-request-email");

/// Every identity header a passing check may answer.
const IDENTITY: [&str; 7] = [
    "x-drawbridge-user",
    "x-drawbridge-app",
    "x-drawbridge-provider",
    "x-drawbridge-permissions",
    "x-drawbridge-assertion",
    "x-auth-request-user",
    "x-auth-request-email",
];

/// Whether a canonical path is the door's.
pub(crate) fn is_door(path: &str) -> bool {
    canonical::has_segment_prefix(path, PATH)
}

/// What the rule for the forwarded request asks of it, decided by the router from the forwarded
/// target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// A session (or an accepted provider token) is required.
    Session,
    /// The forwarded path is public: 200 without identity.
    Open,
}

/// The forwarded request's canonical path, read from the one source `forward_auth.uri_from` names:
/// the path under the door (`/auth/check/<path>`, as Envoy's `extAuth` sends it) or one header.
///
/// Every other source drawbridge knows (`X-Forwarded-Uri`, `X-Original-URI`, `X-Original-URL`,
/// the path under the door) is read too: one that is present must name the same path. An ingress
/// that passes a client's headers on to the door (Envoy sends them all) would otherwise let the
/// client name the path the rules are applied to.
///
/// # Errors
/// [`Refusal::ForwardedTargetMissing`] when the named source is absent,
/// [`Refusal::ForwardedTarget`] when a header is repeated or another source names a different
/// path, and [`Refusal::Target`] when a path has no canonical form: a path the gate could read one
/// way and the sync server another is never decided on.
pub(crate) fn forwarded_path(
    headers: &HeaderMap,
    door_path: &str,
    source: &UriSource,
) -> Result<String, Refusal> {
    let under_door = door_path
        .strip_prefix(PATH)
        .filter(|rest| !rest.is_empty())
        .map(str::to_owned);
    let named = match source {
        UriSource::Path => under_door.clone(),
        UriSource::Header(name) => header_path(headers, name)?,
    };
    let path = named.ok_or(Refusal::ForwardedTargetMissing)?;
    for name in &KNOWN_HEADERS {
        if matches!(source, UriSource::Header(n) if n == name) {
            continue;
        }
        if header_path(headers, name)?.is_some_and(|other| other != path) {
            return Err(Refusal::ForwardedTarget);
        }
    }
    // The request's own path is canonical already (the router saw to it).
    if matches!(source, UriSource::Header(_)) && under_door.is_some_and(|other| other != path) {
        return Err(Refusal::ForwardedTarget);
    }
    Ok(path)
}

/// The canonical path one header names; `None` when it is absent.
fn header_path(headers: &HeaderMap, name: &HeaderName) -> Result<Option<String>, Refusal> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err(Refusal::ForwardedTarget),
        (Some(v), None) => {
            // The known headers have one form each; a header of the operator's choosing, either.
            let absolute = if *name == ORIGINAL_URL {
                true
            } else if *name == FORWARDED_URI || *name == ORIGINAL_URI {
                false
            } else {
                !v.as_bytes().starts_with(b"/")
            };
            target_path(v, absolute).map(Some)
        }
    }
}

/// The canonical path of one forwarded target: a path and query, or (`absolute`) a whole URL.
fn target_path(value: &HeaderValue, absolute: bool) -> Result<String, Refusal> {
    let uri = if absolute {
        Uri::try_from(value.as_bytes())
            .ok()
            .filter(|u| u.scheme().is_some() && u.authority().is_some())
            .ok_or(TargetError::NotAbsolutePath)?
    } else {
        let pq =
            PathAndQuery::try_from(value.as_bytes()).map_err(|_| TargetError::NotAbsolutePath)?;
        Uri::from(pq)
    };
    if !uri.path().starts_with('/') {
        return Err(TargetError::NotAbsolutePath.into());
    }
    Ok(canonical::canonical_path(uri.path())?.into_owned())
}

/// Answers one forward-auth check under `rule`.
///
/// # Errors
/// [`DoorError::InvalidToken`] or [`DoorError::Denied`] without an identity (or
/// [`DoorError::SignIn`] when a sign-in URL is configured), [`DoorError::Provider`] when a
/// provider token could not be decided.
pub(crate) async fn check<B>(
    cx: Ctx<'_>,
    req: &Request<B>,
    rule: Rule,
) -> Result<Response<Body>, DoorError> {
    let live = cx.live;
    let config = &live.config;
    if tracing::enabled!(tracing::Level::DEBUG) {
        let method = req
            .headers()
            .get(FORWARDED_METHOD)
            .and_then(|v| v.to_str().ok());
        tracing::debug!(forwarded_method = ?method, ?rule, "forward-auth check");
    }
    if rule == Rule::Open {
        return Ok(allowed(req.headers(), live.sessions.issuer()));
    }
    let fa = &config.auth.forward_auth;
    let outcome = match admit(
        &cx.shared.gate,
        &live.sessions,
        &live.verified,
        req.headers(),
    )
    .await
    {
        Ok(verified) => Ok(verified),
        Err(why) => match provider_token(live, req.headers()).await {
            Some(Ok(claims)) => Ok(Arc::new(render(claims))),
            Some(Err(error)) => Err(error),
            None => Err(why.into()),
        },
    };
    match outcome {
        Ok(verified) => Ok(answer(
            req.headers(),
            &live.sessions,
            &live.config.upstream,
            fa.assertion,
            &verified,
        )),
        Err(error @ (DoorError::InvalidToken(_) | DoorError::Denied(_))) => match &fa.signin_url {
            Some(url) => Err(DoorError::SignIn(url.clone())),
            None => Err(error),
        },
        Err(error) => Err(error),
    }
}

/// The session `headers` carry (on the gate's carriers, in its order), admitted: a token this
/// generation verified before is answered from `verified` once the gate has checked its expiry and
/// the revocation list again; any other is verified by the gate and remembered.
///
/// # Errors
/// Why the gate refuses the session ([`SessionRejected::Required`] when none is carried).
pub(crate) async fn admit(
    gate: &Gate,
    sessions: &Sessions,
    verified: &VerifiedSessions,
    headers: &HeaderMap,
) -> Result<Arc<Verified>, SessionRejected> {
    let (token, _) = Gate::token(sessions, headers).ok_or(SessionRejected::Required)?;
    let key = VerifiedSessions::key(&token);
    if let Some(known) = verified.get(&key) {
        return match gate.admit(&known.claims) {
            Ok(()) => Ok(known),
            Err(why) => {
                // Expired or revoked: this token never passes again.
                verified.forget(&key);
                Err(why)
            }
        };
    }
    let claims = gate.verify(sessions, &token).await?;
    let known = Arc::new(render(claims));
    verified.insert(key, known.clone());
    Ok(known)
}

/// The tunnel's identity headers of `claims` and the oauth2-proxy names, rendered.
pub(crate) fn render(claims: Arc<SessionClaims>) -> Verified {
    let mut headers = identity::headers(&claims);
    if let Some((_, user)) = headers.iter().find(|(n, _)| n == "x-drawbridge-user") {
        headers.push((AUTH_REQUEST_USER, user.clone()));
    }
    if let Some(email) = claims.email() {
        // Encoded like the other identity headers, so two addresses never read the same.
        headers.push((AUTH_REQUEST_EMAIL, identity::header_text(email)));
    }
    Verified {
        claims,
        headers: headers.into_boxed_slice(),
    }
}

/// A passing check's answer for `verified` ([`allowed`], with its identity headers filled in),
/// and, when `assertion` is on, an identity assertion signed now for the sync server of `upstream`:
/// never one answered before.
pub(crate) fn answer(
    request: &HeaderMap,
    sessions: &Sessions,
    upstream: &Upstream,
    assertion: bool,
    verified: &Verified,
) -> Response<Body> {
    let mut resp = allowed(request, sessions.issuer());
    let headers = resp.headers_mut();
    for (name, value) in &verified.headers {
        headers.insert(name.clone(), value.clone());
    }
    if assertion {
        identity::sign_assertion(headers, &verified.claims, sessions, upstream);
    }
    resp
}

/// An identity provider's bearer token decided for the configured app and provider, when
/// accepted; `None` when not accepted or no such token was sent.
async fn provider_token(
    live: &Live,
    headers: &HeaderMap,
) -> Option<Result<Arc<SessionClaims>, DoorError>> {
    let config = &live.config;
    let accepted = config.auth.forward_auth.provider_tokens.as_ref()?;
    let ours = credentials::Ours::new(live.sessions.issuer());
    let token = credentials::authorization_bearer(headers).filter(|t| !ours.recognises(t))?;
    let decided = live
        .auth
        .decide(Door::ForwardAuth, &accepted.app, &accepted.provider, token)
        .await;
    Some(match decided {
        Ok(Decision::Allow(allow)) => {
            // Not a session: only what the identity headers and the assertion carry.
            let now = unix_now();
            Ok(Arc::new(SessionClaims {
                iss: live.sessions.issuer().to_owned(),
                aud: config.auth.session.audience.clone(),
                sub: allow.user_id.clone(),
                app: accepted.app.clone(),
                prv: accepted.provider.clone(),
                permissions: (*allow.permissions).clone(),
                cli: None,
                pro: None,
                iat: now,
                exp: allow.expires_at,
                auth_time: now,
                dex: allow.expires_at,
                sid: String::new(),
                jti: String::new(),
            }))
        }
        Ok(Decision::Deny(deny)) => Err(DoorError::Denied(deny)),
        Err(error) => Err(DoorError::Provider(error)),
    })
}

/// 200 with an empty body, never cached by the ingress, with every identity header empty (a
/// passing session fills them in) and the client's `Authorization`, `Cookie` and
/// `Sec-WebSocket-Protocol` without drawbridge's credentials, for the ingress to forward in place
/// of the client's: an ingress that copies these names overwrites whatever the client sent under
/// them, and the session stays at the gate.
fn allowed(request: &HeaderMap, issuer: &str) -> Response<Body> {
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::OK;
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    for name in IDENTITY {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(""));
    }
    headers.extend(credentials::forwardable(request, issuer));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn header(name: &str) -> UriSource {
        UriSource::Header(HeaderName::from_bytes(name.as_bytes()).unwrap())
    }

    #[test]
    fn forwarded_path_reads_the_named_source_canonically() {
        let path = UriSource::Path;
        assert_eq!(
            forwarded_path(&headers(&[]), "/auth/check/sync/x", &path),
            Ok("/sync/x".to_owned()),
            "the path under the door, as Envoy sends it"
        );
        assert_eq!(
            forwarded_path(&headers(&[]), "/auth/check/", &path),
            Ok("/".to_owned())
        );
        for (name, value, want) in [
            ("x-original-uri", "/sync?room=1", "/sync"),
            ("x-forwarded-uri", "//a/./b/../sync", "/a/sync"),
            ("x-forwarded-uri", "/%73ync", "/sync"),
            (
                "x-original-url",
                "https://sync.example/a/../sync?x",
                "/sync",
            ),
            ("x-my-path", "/a/../sync", "/sync"),
            ("x-my-path", "https://sync.example/sync", "/sync"),
        ] {
            assert_eq!(
                forwarded_path(&headers(&[(name, value)]), PATH, &header(name)),
                Ok(want.to_owned()),
                "{value}"
            );
        }
    }

    #[test]
    fn forwarded_path_missing_from_the_named_source_is_refused() {
        assert_eq!(
            forwarded_path(&headers(&[]), PATH, &UriSource::Path),
            Err(Refusal::ForwardedTargetMissing)
        );
        // A header the source does not name never stands in for the one it names.
        for source in ["x-original-uri", "x-forwarded-uri", "x-original-url"] {
            assert_eq!(
                forwarded_path(&headers(&[]), PATH, &header(source)),
                Err(Refusal::ForwardedTargetMissing)
            );
            assert_eq!(
                forwarded_path(&headers(&[]), "/auth/check/sync", &header(source)),
                Err(Refusal::ForwardedTargetMissing),
                "{source}: the path under the door is not the named header"
            );
        }
        assert_eq!(
            forwarded_path(
                &headers(&[("x-original-uri", "/public/x")]),
                PATH,
                &UriSource::Path
            ),
            Err(Refusal::ForwardedTargetMissing)
        );
    }

    #[test]
    fn forwarded_path_from_another_source_must_agree() {
        // Every spoofable source, against each source an ingress is configured with.
        let spoofs = [
            ("x-original-uri", "/public/x"),
            ("x-forwarded-uri", "/public/x"),
            ("x-original-url", "https://sync.example/public/x"),
        ];
        for (source, door, real) in [
            ("path", "/auth/check/sync", None),
            ("x-original-uri", PATH, Some(("x-original-uri", "/sync"))),
            ("x-forwarded-uri", PATH, Some(("x-forwarded-uri", "/sync"))),
            (
                "x-original-url",
                PATH,
                Some(("x-original-url", "https://sync.example/sync")),
            ),
        ] {
            let src = if source == "path" {
                UriSource::Path
            } else {
                header(source)
            };
            let real: Vec<_> = real.into_iter().collect();
            assert_eq!(
                forwarded_path(&headers(&real), door, &src),
                Ok("/sync".to_owned())
            );
            for spoof in spoofs.iter().filter(|(n, _)| *n != source) {
                let mut pairs = real.clone();
                pairs.push(*spoof);
                assert_eq!(
                    forwarded_path(&headers(&pairs), door, &src),
                    Err(Refusal::ForwardedTarget),
                    "{source}: {spoof:?}"
                );
            }
            // Agreeing copies are fine, whatever their spelling.
            let agreeing = [
                ("x-original-uri", "/./sync"),
                ("x-forwarded-uri", "//sync?q"),
                ("x-original-url", "https://h/%73ync"),
            ];
            let mut pairs = real.clone();
            pairs.extend(agreeing.iter().filter(|(n, _)| *n != source));
            assert_eq!(
                forwarded_path(&headers(&pairs), door, &src),
                Ok("/sync".to_owned()),
                "{source}"
            );
        }
        // Under the door too, when a header is the source.
        assert_eq!(
            forwarded_path(
                &headers(&[("x-forwarded-uri", "/sync")]),
                "/auth/check/public/x",
                &header("x-forwarded-uri")
            ),
            Err(Refusal::ForwardedTarget)
        );
    }

    #[test]
    fn forwarded_path_ambiguity_is_refused() {
        for (bad, source) in [
            (vec![("x-original-uri", "/a%2Fb")], "x-original-uri"),
            (vec![("x-original-uri", "sync")], "x-original-uri"),
            (vec![("x-original-uri", "http://h/a")], "x-original-uri"),
            (
                vec![("x-original-uri", "/a"), ("x-original-uri", "/a")],
                "x-original-uri",
            ),
            (
                vec![("x-forwarded-uri", "/a"), ("x-original-uri", "/a%5Cb")],
                "x-forwarded-uri",
            ),
            (vec![("x-original-url", "/a")], "x-original-url"),
            (vec![("x-original-url", "http://h/a%5Cb")], "x-original-url"),
            (vec![("x-my-path", "a/b")], "x-my-path"),
        ] {
            assert!(
                forwarded_path(&headers(&bad), PATH, &header(source)).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_door_is_its_path_and_everything_under_it() {
        assert!(is_door("/auth/check"));
        assert!(is_door("/auth/check/any/thing"));
        assert!(!is_door("/auth/checkout"));
    }
}
