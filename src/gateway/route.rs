//! Which door a request goes to, decided from its method, path and headers only.

use http::Request;

use super::headers;
use crate::config::Config;

/// The door a request takes; its label is the bounded `route` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// The native login API, `/auth/<what>`.
    Login,
    /// The webhook aggregator, `/auth/webhook[/<provider>]`.
    Aggregator,
    /// The session verification keys, `/.well-known/jwks.json`.
    Jwks,
    /// The Ditto SDK's challenge, relayed as is.
    DittoChallenge,
    /// The Ditto SDK's login, pre-checked then relayed.
    DittoLogin,
    /// A websocket upgrade on the Ditto sync path.
    DittoWs,
    /// A websocket upgrade on a configured sync path.
    Sync,
    /// Any other upgrade, relayed as is.
    Upgrade,
    /// A plain HTTP request, forwarded to the sync server.
    Forward,
}

impl Route {
    /// Classifies `req` under `config`.
    pub(crate) fn classify<B>(req: &Request<B>, config: &Config) -> Self {
        let path = req.uri().path();
        if config.ditto.enabled {
            if let Some(route) = Self::ditto(req, path, config) {
                return route;
            }
        }
        if path == "/auth/webhook" || path.starts_with("/auth/webhook/") {
            return Self::Aggregator;
        }
        if path.starts_with("/auth/") {
            return Self::Login;
        }
        if path == JWKS_PATH {
            return Self::Jwks;
        }
        let websocket_h2 = req.method() == http::Method::CONNECT
            && req.extensions().get::<hyper::ext::Protocol>().is_some();
        if websocket_h2
            || (req.version() <= http::Version::HTTP_11 && headers::is_upgrade(req.headers()))
        {
            let path = req.uri().path();
            if config
                .upstream
                .sync_paths
                .iter()
                .any(|prefix| path_has_prefix(path, prefix))
            {
                Self::Sync
            } else {
                Self::Upgrade
            }
        } else {
            Self::Forward
        }
    }

    fn ditto<B>(req: &Request<B>, path: &str, config: &Config) -> Option<Self> {
        let rest = path.strip_prefix(config.ditto.path_prefix.as_str())?;
        match rest {
            "/_ditto/auth/challenge" => Some(Self::DittoChallenge),
            "/_ditto/auth/login" => Some(Self::DittoLogin),
            _ if path_has_prefix(rest, "/_ditto/ws")
                && crate::tunnel::Handshake::of(req).is_some() =>
            {
                Some(Self::DittoWs)
            }
            _ => None,
        }
    }

    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Aggregator => "aggregator",
            Self::Jwks => "jwks",
            Self::DittoChallenge | Self::DittoLogin => "ditto_auth",
            Self::DittoWs => "ditto_ws",
            Self::Sync => "sync",
            Self::Upgrade => "upgrade",
            Self::Forward => "forward",
        }
    }
}

/// Where the session verification keys are published.
pub(crate) const JWKS_PATH: &str = "/.well-known/jwks.json";

/// `prefix` matches whole path segments: `/sync` matches `/sync` and `/sync/x`, not `/syncer`.
pub(crate) fn path_has_prefix(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_matches_whole_segments_only() {
        assert!(path_has_prefix("/sync", "/sync"));
        assert!(path_has_prefix("/sync/room/1", "/sync"));
        assert!(path_has_prefix("/sync/room", "/sync/"));
        assert!(!path_has_prefix("/syncer", "/sync"));
        assert!(!path_has_prefix("/api", "/sync"));
        assert!(path_has_prefix("/anything", "/"));
    }
}
