//! `[forward_auth]`: the `/auth/check` door an ingress asks: where to sign in, provider tokens,
//! and the one source of the forwarded path.

use http::{HeaderName, HeaderValue, Uri};
use serde::{Deserialize, Serialize};

use super::super::problem::Problem;
use super::apps::{AppProvider, Named, provider_ref};

/// `[forward_auth]`: the `/auth/check` door an ingress asks before it forwards a request.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawForwardAuth {
    /// Where a request without a session is sent (302); absent = 401 with `WWW-Authenticate`.
    pub signin_url: Option<String>,
    /// Also admit an identity provider's bearer token, decided through the decision cache for
    /// `app` and `provider`, without minting a session.
    pub accept_provider_tokens: bool,
    /// The app a provider token is decided for (with `accept_provider_tokens`).
    pub app: Option<String>,
    /// The provider a provider token is decided by (with `accept_provider_tokens`).
    pub provider: Option<String>,
    /// The one source of the forwarded request's path: `"path"` (the path under `/auth/check/`,
    /// as Envoy's `extAuth` sends it) or `"header:<name>"` (`X-Forwarded-Uri` for Traefik,
    /// `X-Original-URL` for ingress-nginx, `X-Original-URI` for an nginx `auth_request` snippet).
    pub uri_from: String,
    /// Sign a fresh identity assertion (`x-drawbridge-assertion`, new `jti` every time) into each
    /// passing check. Off, the header is answered empty: the ingress carries the identity to the
    /// sync server over a hop it trusts, and only tunnels through drawbridge carry an assertion.
    pub assertion: bool,
}

/// `forward_auth.assertion`: a passing check answers the identity headers without an assertion.
pub const DEFAULT_FORWARD_AUTH_ASSERTION: bool = false;
/// `forward_auth.uri_from`: the path under the door.
pub const DEFAULT_FORWARD_AUTH_URI_FROM: &str = "path";
/// `forward_auth.accept_provider_tokens`: only drawbridge's own sessions are admitted.
pub const DEFAULT_FORWARD_AUTH_ACCEPT_PROVIDER_TOKENS: bool = false;

impl Default for RawForwardAuth {
    fn default() -> Self {
        Self {
            signin_url: None,
            accept_provider_tokens: DEFAULT_FORWARD_AUTH_ACCEPT_PROVIDER_TOKENS,
            app: None,
            provider: None,
            uri_from: DEFAULT_FORWARD_AUTH_URI_FROM.to_owned(),
            assertion: DEFAULT_FORWARD_AUTH_ASSERTION,
        }
    }
}

/// `[forward_auth]`
#[derive(Debug, Clone, Default)]
pub struct ForwardAuthConfig {
    /// Where a request without a session is redirected (302); `None` answers 401.
    pub signin_url: Option<HeaderValue>,
    /// The app and provider that decide an identity provider's bearer token, when accepted.
    pub provider_tokens: Option<AppProvider>,
    /// The one source of the forwarded request's path the door decides on.
    pub uri_from: UriSource,
    /// Whether each passing check carries a freshly signed identity assertion.
    pub assertion: bool,
}

/// `forward_auth.uri_from`: where the forward-auth door reads the path it is asked about. Exactly
/// one source counts; any other that is present must agree with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UriSource {
    /// The path under `/auth/check/` (Envoy Gateway's `extAuth` appends the original path).
    #[default]
    Path,
    /// One request header, set by the ingress: a path, or an absolute URL.
    Header(HeaderName),
}

impl std::fmt::Display for UriSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Path => f.write_str("path"),
            Self::Header(name) => write!(f, "header:{name}"),
        }
    }
}

/// `[forward_auth]`: an absolute http(s) URL or absolute path to sign in at, and, when provider
/// tokens are accepted, a configured provider (enabled for the app when apps are restricted).
pub(in crate::config) fn validate(
    f: &RawForwardAuth,
    r: &Named<'_>,
    p: &mut Vec<Problem>,
) -> ForwardAuthConfig {
    let signin_url = f.signin_url.as_deref().and_then(|url| {
        let absolute = url.starts_with('/') && !url.starts_with("//")
            || url
                .parse::<Uri>()
                .ok()
                .is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
        match HeaderValue::from_str(url) {
            Ok(v) if absolute => Some(v),
            _ => {
                p.push(Problem::new(
                    "forward_auth.signin_url",
                    "must be an http(s) URL or a path starting with / (e.g. \"https://login.example.com/\")",
                ));
                None
            }
        }
    });
    let provider_tokens = if f.accept_provider_tokens {
        provider_ref(
            r,
            (f.app.as_deref(), f.provider.as_deref()),
            ("forward_auth.app", "forward_auth.provider"),
            "forward_auth.accept_provider_tokens",
            p,
        )
    } else {
        None
    };
    ForwardAuthConfig {
        signin_url,
        provider_tokens,
        uri_from: uri_source(&f.uri_from, p),
        assertion: f.assertion,
    }
}

/// `forward_auth.uri_from`: `"path"` or `"header:<name>"` with a valid header name that is not
/// one the client alone controls the meaning of (`Host`, `Authorization`, `Cookie`).
fn uri_source(value: &str, p: &mut Vec<Problem>) -> UriSource {
    const KEY: &str = "forward_auth.uri_from";
    if value == "path" {
        return UriSource::Path;
    }
    let name = value
        .strip_prefix("header:")
        .map(str::trim)
        .and_then(|n| HeaderName::from_bytes(n.as_bytes()).ok());
    match name {
        Some(name)
            if ![
                http::header::HOST,
                http::header::AUTHORIZATION,
                http::header::COOKIE,
            ]
            .contains(&name) =>
        {
            UriSource::Header(name)
        }
        _ => {
            p.push(Problem::new(
                KEY,
                "must be \"path\" or \"header:<name>\" (e.g. \"header:x-forwarded-uri\" for Traefik, \"header:x-original-url\" for ingress-nginx, \"header:x-original-uri\" for nginx auth_request)",
            ));
            UriSource::Path
        }
    }
}
