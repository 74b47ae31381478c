//! Which door a request goes to, decided from its method, canonical path and headers only.

use http::{Method, Request, Uri};

use crate::canonical::{self, TargetError};
use crate::config::Config;
use crate::doors::forward_auth::{self, Rule};
use crate::doors::login::Action;
use crate::headers;
use crate::respond::Refusal;
use crate::tunnel::{Gate, Handshake};

/// The door a request takes, with what the router read on the way, so the dispatcher never parses
/// the request again; its label is the bounded `route` metric label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// The native login API, `/auth/<action>`.
    Login(Action),
    /// The webhook aggregator, `/auth/webhook[/<provider>]`, with the provider the path names.
    Aggregator(Option<String>),
    /// The forward-auth door, `/auth/check[/..]`, with the rule for the forwarded target, or why
    /// that target is refused.
    ForwardAuth(Result<Rule, Refusal>),
    /// The session verification keys, `/.well-known/jwks.json`.
    Jwks,
    /// The Ditto SDK's challenge, relayed as is.
    DittoChallenge,
    /// The Ditto SDK's login, pre-checked then relayed.
    DittoLogin,
    /// A websocket handshake on the Ditto sync path, and what it needs to open.
    DittoWs(Gate, Handshake),
    /// A websocket handshake that needs a session: every one not under a public path.
    Sync(Handshake),
    /// A websocket handshake under `upstream.public_upgrade_paths`: relayed without a session.
    PublicUpgrade(Handshake),
    /// `OPTIONS *`: answered by the gateway itself.
    ServerOptions,
    /// A plain HTTP request, forwarded to the sync server.
    Forward,
}

/// Refuses what no door may see, and rewrites the target of everything else to its canonical
/// path (query unchanged), so every routing decision, every door and the sync server see one spelling.
///
/// # Errors
/// [`Refusal`] for CONNECT other than a websocket extended CONNECT, a websocket upgrade that is not
/// an HTTP/1.1 GET, and a target without a canonical form.
pub(crate) fn screen<B>(req: &mut Request<B>) -> Result<(), Refusal> {
    if req.method() == Method::CONNECT {
        match req.extensions().get::<hyper::ext::Protocol>() {
            None => return Err(Refusal::Connect),
            // RFC 8441 registers the token `websocket`; another spelling is not this protocol.
            Some(protocol) if protocol.as_str() != Handshake::PROTOCOL => {
                return Err(Refusal::ConnectProtocol);
            }
            Some(_) => {}
        }
    }
    if req.version() <= http::Version::HTTP_11
        && headers::is_upgrade(req.headers())
        && Handshake::upgrade_is_websocket(req.headers())
        && Handshake::of(req).is_none()
    {
        return Err(Refusal::UpgradeMethod);
    }
    if req.method() == Method::OPTIONS && req.uri().path() == "*" {
        return Ok(());
    }
    if let Some(target) = canonical::canonical_target(req.uri())? {
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = Some(target);
        *req.uri_mut() = Uri::from_parts(parts).map_err(|_| TargetError::NotAbsolutePath)?;
    }
    Ok(())
}

impl Route {
    /// Classifies `req`, whose target [`screen`] has made canonical, under `config`.
    pub(crate) fn classify<B>(req: &Request<B>, config: &Config) -> Self {
        let path = req.uri().path();
        if path == "*" {
            return Self::ServerOptions;
        }
        let handshake = Handshake::of(req);
        if config.ditto.enabled
            && let Some(route) = Self::ditto(path, handshake, config)
        {
            return route;
        }
        if path == "/auth/webhook" {
            return Self::Aggregator(None);
        }
        if let Some(provider) = path.strip_prefix("/auth/webhook/") {
            return Self::Aggregator(Some(provider).filter(|p| !p.is_empty()).map(str::to_owned));
        }
        if forward_auth::is_door(path) {
            return Self::ForwardAuth(forward_auth_rule(req, config));
        }
        if let Some(what) = path.strip_prefix("/auth/") {
            return Self::Login(Action::parse(what));
        }
        if path == JWKS_PATH {
            return Self::Jwks;
        }
        match handshake {
            Some(kind) if is_public_upgrade(path, config) => Self::PublicUpgrade(kind),
            Some(kind) => Self::Sync(kind),
            None => Self::Forward,
        }
    }

    fn ditto(path: &str, handshake: Option<Handshake>, config: &Config) -> Option<Self> {
        let rest = path.strip_prefix(config.ditto.path_prefix.as_str())?;
        match (rest, handshake) {
            ("/_ditto/auth/challenge", _) => Some(Self::DittoChallenge),
            ("/_ditto/auth/login", _) => Some(Self::DittoLogin),
            (_, Some(kind)) if canonical::has_segment_prefix(rest, "/_ditto/ws") => {
                Some(Self::DittoWs(ditto_ws_gate(path, config), kind))
            }
            _ => None,
        }
    }

    /// The metric label.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Login(_) => "login",
            Self::Aggregator(_) => "aggregator",
            Self::ForwardAuth(_) => "forward_auth",
            Self::Jwks => "jwks",
            Self::DittoChallenge | Self::DittoLogin => "ditto_auth",
            Self::DittoWs(..) => "ditto_ws",
            Self::Sync(_) => "sync",
            Self::PublicUpgrade(_) => "public_upgrade",
            Self::ServerOptions => "options",
            Self::Forward => "forward",
        }
    }
}

/// Where the session verification keys are published.
pub(crate) const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Whether a websocket handshake on the canonical `path` may open without a session: only under an
/// entry of `upstream.public_upgrade_paths`, matched case-sensitively on whole segments.
pub(crate) fn is_public_upgrade(path: &str, config: &Config) -> bool {
    config
        .upstream
        .public_upgrade_paths
        .iter()
        // Config refuses `/`; should one ever get here, it still opens nothing.
        .filter(|prefix| !prefix.trim_end_matches('/').is_empty())
        .any(|prefix| canonical::has_segment_prefix(path, prefix))
}

/// The rule for a forward-auth check: the sync-path rule on the forwarded target's canonical
/// path (public upgrade paths open, everything else needs a session), read from the one source
/// `forward_auth.uri_from` names.
fn forward_auth_rule<B>(req: &Request<B>, config: &Config) -> Result<Rule, Refusal> {
    let path = forward_auth::forwarded_path(
        req.headers(),
        req.uri().path(),
        &config.auth.forward_auth.uri_from,
    )?;
    Ok(if is_public_upgrade(&path, config) {
        Rule::Open
    } else {
        Rule::Session
    })
}

/// What a websocket on the Ditto sync path needs: a token the sync server issued when so
/// configured, else nothing under a public path, else a session.
fn ditto_ws_gate(path: &str, config: &Config) -> Gate {
    if config.ditto.require_known_token {
        Gate::DittoToken
    } else if is_public_upgrade(path, config) {
        Gate::Open
    } else {
        Gate::Session
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::from_toml(
            &format!("[upstream]\nurl = \"http://127.0.0.1:1\"\n{extra}"),
            &std::collections::HashMap::new(),
        )
        .unwrap()
    }

    fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    const WS: [(&str, &str); 2] = [("connection", "Upgrade"), ("upgrade", "websocket")];

    fn route(req: &mut Request<()>, config: &Config) -> Result<Route, Refusal> {
        screen(req)?;
        Ok(Route::classify(req, config))
    }

    #[test]
    fn every_websocket_upgrade_is_gated_unless_public() {
        let c = config("public_upgrade_paths = [\"/public\"]");
        for path in [
            "/sync",
            "//sync",
            "/./sync",
            "/x/../sync",
            "/%2e%2e/sync",
            "/%73ync",
            "/SYNC",
            "/anything",
            "/publicx",
            "/PUBLIC",
            "/public/../sync",
            "/public/%2e%2e/sync",
            "/sync;jsessionid=x",
            "http://gw.example//sync",
        ] {
            let mut req = request("GET", path, &WS);
            assert_eq!(
                route(&mut req, &c),
                Ok(Route::Sync(Handshake::Upgrade)),
                "{path}"
            );
        }
        for path in [
            "/public",
            "/public/",
            "/public/room",
            "//public//room",
            "/%70ublic",
        ] {
            let mut req = request("GET", path, &WS);
            assert_eq!(
                route(&mut req, &c),
                Ok(Route::PublicUpgrade(Handshake::Upgrade)),
                "{path}"
            );
        }
    }

    #[test]
    fn screen_rewrites_the_target_to_its_canonical_form() {
        let mut req = request("GET", "//sync/./room/../x?ticket=a%2Fb", &WS);
        screen(&mut req).unwrap();
        assert_eq!(req.uri().to_string(), "/sync/x?ticket=a%2Fb");
        let mut req = request("GET", "https://gw.example:8443/%73ync//a", &[]);
        screen(&mut req).unwrap();
        assert_eq!(req.uri().to_string(), "https://gw.example:8443/sync/a");
        assert_eq!(req.uri().authority().unwrap().as_str(), "gw.example:8443");
    }

    #[test]
    fn doors_see_the_canonical_path() {
        let c = config("[ditto]\nenabled = true\n");
        for (path, want) in [
            ("//auth/login", Route::Login(Action::Login)),
            ("/auth/./token", Route::Login(Action::Token)),
            ("/auth/other", Route::Login(Action::Unknown)),
            ("/x/../auth/webhook", Route::Aggregator(None)),
            ("/auth/webhook/", Route::Aggregator(None)),
            (
                "/auth//webhook/%61uth0",
                Route::Aggregator(Some("auth0".to_owned())),
            ),
            ("/.well-known/%6Awks.json", Route::Jwks),
            ("/_ditto/auth/./login", Route::DittoLogin),
            ("//_ditto//auth/challenge", Route::DittoChallenge),
            ("/api/items", Route::Forward),
        ] {
            let mut req = request("POST", path, &[]);
            assert_eq!(route(&mut req, &c), Ok(want), "{path}");
        }
        let mut req = request("GET", "//_ditto/ws", &WS);
        assert_eq!(
            route(&mut req, &c),
            Ok(Route::DittoWs(Gate::Session, Handshake::Upgrade))
        );
    }

    #[test]
    fn ambiguous_targets_are_refused() {
        let c = config("");
        for (path, want) in [
            ("/sync%2Froom", TargetError::EncodedSlash),
            ("/sync%5Croom", TargetError::EncodedBackslash),
            ("/sync%00", TargetError::ControlCharacter),
            ("/sync%zz", TargetError::InvalidEscape),
        ] {
            for headers in [&WS[..], &[]] {
                let mut req = request("GET", path, headers);
                assert_eq!(route(&mut req, &c), Err(Refusal::Target(want)), "{path}");
            }
        }
    }

    #[test]
    fn connect_is_refused_whatever_its_form() {
        let c = config("");
        let mut req = request("CONNECT", "example.com:443", &[]);
        assert_eq!(route(&mut req, &c), Err(Refusal::Connect));
        for protocol in ["h2c", "WebSocket", "connect-udp", "websocket "] {
            let mut req = request("CONNECT", "https://gw.example/sync", &[]);
            req.extensions_mut()
                .insert(hyper::ext::Protocol::from(protocol));
            assert_eq!(
                route(&mut req, &c),
                Err(Refusal::ConnectProtocol),
                "{protocol}"
            );
        }
        let mut req = request("CONNECT", "https://gw.example//sync", &[]);
        req.extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        req.headers_mut().clear();
        *req.version_mut() = http::Version::HTTP_2;
        assert_eq!(route(&mut req, &c), Ok(Route::Sync(Handshake::Connect)));
        assert_eq!(req.uri().path(), "/sync");
    }

    #[test]
    fn websocket_upgrade_on_anything_but_an_http11_get_is_refused() {
        let c = config("");
        for method in ["POST", "PUT", "HEAD", "OPTIONS", "DELETE"] {
            let mut req = request(method, "/sync", &WS);
            assert_eq!(route(&mut req, &c), Err(Refusal::UpgradeMethod), "{method}");
        }
        let mut req = request("GET", "/sync", &WS);
        *req.version_mut() = http::Version::HTTP_10;
        assert_eq!(route(&mut req, &c), Err(Refusal::UpgradeMethod));
    }

    #[test]
    fn other_upgrades_are_plain_requests() {
        let c = config("public_upgrade_paths = [\"/public\"]");
        for upgrade in [
            "h2c",
            "websocket, h2c",
            "h2c, websocket",
            "TLS/1.2",
            "websocket2",
        ] {
            for path in ["/sync", "/public"] {
                let mut req = request(
                    "GET",
                    path,
                    &[
                        ("connection", "Upgrade, HTTP2-Settings"),
                        ("upgrade", upgrade),
                    ],
                );
                assert_eq!(route(&mut req, &c), Ok(Route::Forward), "{upgrade} {path}");
            }
        }
        let mut req = request("GET", "/sync", &[("upgrade", "websocket")]);
        assert_eq!(
            route(&mut req, &c),
            Ok(Route::Forward),
            "no Connection: upgrade"
        );
        for upgrade in ["WebSocket", "WEBSOCKET", " websocket "] {
            let mut req = request(
                "GET",
                "/sync",
                &[("connection", "upgrade"), ("upgrade", upgrade)],
            );
            assert_eq!(
                route(&mut req, &c),
                Ok(Route::Sync(Handshake::Upgrade)),
                "{upgrade}"
            );
        }
    }

    #[test]
    fn options_asterisk_is_answered_here_and_asterisk_elsewhere_refused() {
        let c = config("");
        let mut req = request("OPTIONS", "*", &[]);
        assert_eq!(route(&mut req, &c), Ok(Route::ServerOptions));
        let mut req = request("GET", "*", &[]);
        assert_eq!(
            route(&mut req, &c),
            Err(Refusal::Target(TargetError::NotAbsolutePath))
        );
    }

    #[test]
    fn forward_auth_applies_the_sync_path_rule_to_the_forwarded_target() {
        let c = config(
            "public_upgrade_paths = [\"/public\"]\n[forward_auth]\nuri_from = \"header:x-original-uri\"",
        );
        for (headers, want) in [
            (vec![], Err(Refusal::ForwardedTargetMissing)),
            (vec![("x-original-uri", "/sync")], Ok(Rule::Session)),
            (vec![("x-original-uri", "/public/room?x=1")], Ok(Rule::Open)),
            (vec![("x-original-uri", "/%70ublic/room")], Ok(Rule::Open)),
            (
                vec![("x-original-uri", "/public/../sync")],
                Ok(Rule::Session),
            ),
            (
                vec![("x-original-uri", "/public%2F..%2Fsync")],
                Err(Refusal::Target(TargetError::EncodedSlash)),
            ),
            (
                vec![
                    ("x-original-uri", "/sync"),
                    ("x-forwarded-uri", "/public/x"),
                ],
                Err(Refusal::ForwardedTarget),
            ),
            (
                vec![("x-forwarded-uri", "/public/x")],
                Err(Refusal::ForwardedTargetMissing),
            ),
        ] {
            for method in ["GET", "POST", "HEAD"] {
                let mut req = request(method, "/auth/check", &headers);
                assert_eq!(
                    route(&mut req, &c),
                    Ok(Route::ForwardAuth(want)),
                    "{method} {headers:?}"
                );
            }
        }
    }

    #[test]
    fn forward_auth_by_default_reads_the_path_under_the_door_only() {
        let c = config("public_upgrade_paths = [\"/public\"]");
        for (path, headers, want) in [
            ("/auth/check/public/room", vec![], Ok(Rule::Open)),
            ("/auth/check//public/./room", vec![], Ok(Rule::Open)),
            ("/auth/check/sync", vec![], Ok(Rule::Session)),
            ("/auth/check/", vec![], Ok(Rule::Session)),
            ("/auth/check/public/../sync", vec![], Ok(Rule::Session)),
            ("/auth/check", vec![], Err(Refusal::ForwardedTargetMissing)),
            (
                "/auth/check",
                vec![("x-original-uri", "/public/x")],
                Err(Refusal::ForwardedTargetMissing),
            ),
            (
                "/auth/check/sync",
                vec![("x-original-uri", "/public/x")],
                Err(Refusal::ForwardedTarget),
            ),
            (
                "/auth/check/sync",
                vec![("x-original-url", "https://h/public/x")],
                Err(Refusal::ForwardedTarget),
            ),
            (
                "/auth/check/sync",
                vec![("x-forwarded-uri", "/sync?agrees")],
                Ok(Rule::Session),
            ),
        ] {
            let mut req = request("GET", path, &headers);
            assert_eq!(
                route(&mut req, &c),
                Ok(Route::ForwardAuth(want)),
                "{path} {headers:?}"
            );
        }
        let mut req = request("GET", "/auth/check/public%2F..%2Fsync", &[]);
        assert_eq!(
            route(&mut req, &c),
            Err(Refusal::Target(TargetError::EncodedSlash)),
            "refused before routing, like every ambiguous target"
        );
    }

    #[test]
    fn public_root_opens_nothing() {
        let mut c = config("");
        c.upstream.public_upgrade_paths = vec!["/".to_owned(), String::new()];
        assert!(!is_public_upgrade("/sync", &c));
    }
}
