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
//! The ingress says what the client asked for in `X-Forwarded-Method`, `-Uri`, `-Host` (Traefik),
//! `X-Original-URI` (nginx snippets), `X-Original-URL` (ingress-nginx) or the path under the door
//! (Envoy's `extAuth` appends it). Those headers are read for the rule decision only
//! (which path the request is for), never as identity: the forwarded path is made canonical by the
//! same rules as a direct request's (an ambiguous one is refused, 403), and the sync-path rule
//! applies to it as to a direct upgrade (under `upstream.public_upgrade_paths` it needs no session,
//! and the identity headers come back empty so that the ingress overwrites any a client sent).

use std::sync::Arc;

use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri};

use crate::auth::credentials;
use crate::auth::session::SessionClaims;
use crate::auth::{Decision, Door};
use crate::body::{self, Body};
use crate::canonical::{self, TargetError};
use crate::clock::unix_now;
use crate::config::Config;
use crate::respond::{DoorError, Refusal};
use crate::state::Shared;
use crate::tunnel;

/// The door's path; every path under it is the door too.
pub(crate) const PATH: &str = "/auth/check";

/// `X-Forwarded-Uri` (Traefik).
const FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
/// `X-Original-URI` (nginx `auth_request` snippets).
const ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
/// `X-Original-URL` (ingress-nginx: the whole URL the client asked for).
const ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
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

/// The forwarded request's canonical path: from `X-Forwarded-Uri` (Traefik), `X-Original-URI`
/// (nginx snippets) or `X-Original-URL` (ingress-nginx, an absolute URL), else the path under
/// the door (`/auth/check/<path>`, as Envoy's `extAuth` prefixes it); `None` when there is none.
///
/// # Errors
/// [`Refusal::ForwardedTarget`] when a header is repeated or two name different paths, and
/// [`Refusal::Target`] when a path has no canonical form: a path the gate could read one way and
/// the sync server another is never decided on.
pub(crate) fn forwarded_path(
    headers: &HeaderMap,
    door_path: &str,
) -> Result<Option<String>, Refusal> {
    let mut found: Option<String> = None;
    for name in [FORWARDED_URI, ORIGINAL_URI, ORIGINAL_URL] {
        let mut values = headers.get_all(&name).iter();
        let value = match (values.next(), values.next()) {
            (None, _) => continue,
            (Some(_), Some(_)) => return Err(Refusal::ForwardedTarget),
            (Some(v), None) => v,
        };
        let path = target_path(value, name == ORIGINAL_URL)?;
        match &found {
            Some(earlier) if *earlier != path => return Err(Refusal::ForwardedTarget),
            _ => found = Some(path),
        }
    }
    if found.is_none() {
        // The request's own path is canonical already (the router saw to it).
        found = door_path
            .strip_prefix(PATH)
            .filter(|rest| rest.len() > 1)
            .map(str::to_owned);
    }
    Ok(found)
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
    shared: &Shared,
    req: &Request<B>,
    rule: Rule,
    config: &Config,
) -> Result<Response<Body>, DoorError> {
    if tracing::enabled!(tracing::Level::DEBUG) {
        let method = req
            .headers()
            .get(FORWARDED_METHOD)
            .and_then(|v| v.to_str().ok());
        tracing::debug!(forwarded_method = ?method, ?rule, "forward-auth check");
    }
    if rule == Rule::Open {
        let mut resp = allowed();
        // Empty, so an ingress that copies them overwrites a client's own copies of these names.
        for name in IDENTITY {
            resp.headers_mut()
                .insert(HeaderName::from_static(name), HeaderValue::from_static(""));
        }
        return Ok(resp);
    }
    let fa = &config.auth.forward_auth;
    let outcome = match tunnel::find_session(shared, req.headers(), None).await {
        Ok((claims, _)) => Ok(claims),
        Err(why) => provider_token(shared, req.headers(), config)
            .await
            .unwrap_or(Err(why.into())),
    };
    match outcome {
        Ok(claims) => {
            let mut resp = allowed();
            identity(shared, resp.headers_mut(), &claims, config);
            Ok(resp)
        }
        Err(error @ (DoorError::InvalidToken(_) | DoorError::Denied(_))) => match &fa.signin_url {
            Some(url) => Err(DoorError::SignIn(url.clone())),
            None => Err(error),
        },
        Err(error) => Err(error),
    }
}

/// An identity provider's bearer token decided for the configured app and provider, when
/// accepted; `None` when not accepted or no such token was sent.
async fn provider_token(
    shared: &Shared,
    headers: &HeaderMap,
    config: &Config,
) -> Option<Result<Arc<SessionClaims>, DoorError>> {
    let accepted = config.auth.forward_auth.provider_tokens.as_ref()?;
    let ours = credentials::Ours::new(&config.auth.session);
    let token = credentials::authorization_bearer(headers).filter(|t| !ours.recognises(t))?;
    let decided = shared
        .auth
        .load_full()
        .decide(Door::ForwardAuth, &accepted.app, &accepted.provider, token)
        .await;
    Some(match decided {
        Ok(Decision::Allow(allow)) => {
            // Not a session: only what the identity headers and the assertion carry.
            let now = unix_now();
            Ok(Arc::new(SessionClaims {
                iss: config.auth.session.issuer.clone(),
                aud: config.auth.session.audience.clone(),
                sub: allow.user_id.clone(),
                app: accepted.app.clone(),
                prv: accepted.provider.clone(),
                permissions: allow.permissions.clone(),
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

/// 200 with an empty body, never cached by the ingress.
fn allowed() -> Response<Body> {
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    resp
}

/// The tunnel's identity headers, plus the oauth2-proxy names.
fn identity(shared: &Shared, headers: &mut HeaderMap, claims: &SessionClaims, config: &Config) {
    tunnel::identity_headers(shared, headers, claims, config);
    if let Some(user) = headers.get("x-drawbridge-user").cloned() {
        headers.insert(AUTH_REQUEST_USER, user);
    }
    if let Some(email) = claims.email() {
        if let Ok(v) = HeaderValue::from_str(email) {
            headers.insert(AUTH_REQUEST_EMAIL, v);
        }
    }
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

    #[test]
    fn forwarded_path_is_canonical_and_ambiguity_is_refused() {
        assert_eq!(forwarded_path(&headers(&[]), PATH), Ok(None));
        assert_eq!(forwarded_path(&headers(&[]), "/auth/check/"), Ok(None));
        assert_eq!(
            forwarded_path(&headers(&[]), "/auth/check/sync/x"),
            Ok(Some("/sync/x".to_owned())),
            "the path under the door, as Envoy sends it"
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
        ] {
            assert_eq!(
                forwarded_path(&headers(&[(name, value)]), "/auth/check/ignored"),
                Ok(Some(want.to_owned())),
                "{value}"
            );
        }
        for bad in [
            vec![("x-original-uri", "/a%2Fb")],
            vec![("x-original-uri", "sync")],
            vec![("x-original-uri", "/a"), ("x-original-uri", "/b")],
            vec![("x-original-uri", "/a"), ("x-forwarded-uri", "/b")],
            vec![("x-original-uri", "/a"), ("x-original-url", "http://h/b")],
            vec![("x-original-url", "/a")],
            vec![("x-original-url", "http://h/a%5Cb")],
        ] {
            assert!(forwarded_path(&headers(&bad), PATH).is_err(), "{bad:?}");
        }
        assert_eq!(
            forwarded_path(
                &headers(&[
                    ("x-original-uri", "/a?q"),
                    ("x-forwarded-uri", "/./a"),
                    ("x-original-url", "https://h/a")
                ]),
                PATH
            ),
            Ok(Some("/a".to_owned()))
        );
    }

    #[test]
    fn the_door_is_its_path_and_everything_under_it() {
        assert!(is_door("/auth/check"));
        assert!(is_door("/auth/check/any/thing"));
        assert!(!is_door("/auth/checkout"));
    }
}
