//! The session never leaves the gateway: through real TLS to a recording sync-server stand-in,
//! what the upstream *received* on plain GET and POST (HTTP/1.1 and HTTP/2) and on websocket
//! upgrades (gated and open, HTTP/1.1 and RFC 8441) holds no session cookie, no drawbridge bearer
//! token, no ticket however it is encoded, and no client-made `x-drawbridge-*` header however it
//! is spelled; everything else the client sent arrives as sent.

mod support;

use bytes::Bytes;
use http::HeaderMap;
use support::upstream::Seen;
use support::ws::raw_handshake;
use support::{Gateway, Upstream, Webhook, client, login, post_bearer, tokens};

/// Read independently of the gateway: a name some stack reads as `x-drawbridge-*`.
fn reads_as_identity(name: &str) -> bool {
    name.to_ascii_lowercase()
        .replace('_', "-")
        .starts_with("x-drawbridge-")
}

struct Bed {
    _hook: Webhook,
    up: Upstream,
    gw: Gateway,
    /// A live session token.
    token: String,
    /// A logged-out session token: still ours, still stripped.
    revoked: String,
    /// A token that names our issuer but that we never signed.
    forged: String,
    /// A third party's bearer token: the client's business, passed through.
    third_party: String,
    _issuer: tokens::Issuer,
}

async fn bed() -> Bed {
    let hook = Webhook::users(3600).await;
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url())
        .public_upgrade_paths(&["/public"])
        .demo_provider(&hook)
        .spawn()
        .await;
    let token = login(&gw, "app", "demo", "alice-token").await.session();
    let revoked = login(&gw, "app", "demo", "alice-token").await.session();
    let http = client::https(&gw.ca.pem(), false);
    let (status, _, _) = post_bearer(&http, &gw.url("/auth/logout"), &revoked).await;
    assert_eq!(status, 200);
    let b64 = |v: serde_json::Value| {
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            v.to_string(),
        )
    };
    let forged = format!(
        "{}.{}.Zm9yZ2Vk",
        b64(serde_json::json!({"alg": "EdDSA", "kid": "not-ours"})),
        b64(serde_json::json!({"iss": "drawbridge", "sub": "root", "exp": 1}))
    );
    let issuer = tokens::Issuer::start().await;
    let third_party = issuer.mint(&issuer.claims("alice", "sync"));
    Bed {
        _hook: hook,
        up,
        gw,
        token,
        revoked,
        forged,
        third_party,
        _issuer: issuer,
    }
}

impl Bed {
    /// What must never be in anything the sync server saw.
    fn secrets(&self) -> [&str; 3] {
        [&self.token, &self.revoked, &self.forged]
    }

    /// Asserts `seen` holds none of our tokens, `extra` secrets (tickets) nor any spoofed
    /// identity header; `gated` upgrades carry the gateway's own identity headers, once each.
    fn assert_clean(&self, seen: &Seen, extra: &[&str], gated: bool, case: &str) {
        let text = format!("{} {:?}", seen.uri, seen.headers);
        for secret in self.secrets().iter().chain(extra) {
            assert!(
                !text.contains(secret),
                "{case}: a credential reached the sync server: {text}"
            );
        }
        for name in seen.headers.keys() {
            if reads_as_identity(name.as_str()) {
                assert!(
                    gated && !name.as_str().contains('_'),
                    "{case}: client identity header {name} crossed"
                );
            }
        }
        if gated {
            assert_eq!(
                values(&seen.headers, "x-drawbridge-user"),
                ["alice"],
                "{case}"
            );
        }
    }
}

fn values<'a>(h: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

/// The spoofed identity headers every request also sends.
const SPOOFED: [(&str, &str); 4] = [
    ("x_drawbridge_user", "root"),
    ("X-Drawbridge-User", "root"),
    ("x-drawbridge_app", "admin"),
    ("X_DRAWBRIDGE_PERMISSIONS", "e30"),
];

/// One plain request: its path, headers, and what the upstream must see for what is checked.
struct Case {
    name: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    want_uri: String,
    want_cookie: Vec<String>,
    want_authorization: Vec<String>,
    want_protocol: Vec<String>,
}

impl Bed {
    fn cases(&self) -> Vec<Case> {
        let t = &self.token;
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let s = |v: &[&str]| -> Vec<String> { v.iter().map(|x| (*x).to_owned()).collect() };
        let mut cases = vec![
            Case {
                name: "one cookie header, spaces, lookalike names",
                path: "/items".into(),
                headers: h(&[(
                    "cookie",
                    &format!(
                        "a=1; drawbridge_session={t};b=2 ;  my_drawbridge_session=3; drawbridge_session_pref=4"
                    ),
                )]),
                want_uri: "/items".into(),
                want_cookie: s(&["a=1; b=2; my_drawbridge_session=3; drawbridge_session_pref=4"]),
                want_authorization: vec![],
                want_protocol: vec![],
            },
            Case {
                name: "several cookie headers",
                path: "/items".into(),
                headers: h(&[
                    ("cookie", "a=1"),
                    ("cookie", &format!("drawbridge_session={t}")),
                    ("cookie", &format!("c=3; Drawbridge_Session={t}; d=4")),
                ]),
                want_uri: "/items".into(),
                want_cookie: s(&["a=1; c=3; d=4"]),
                want_authorization: vec![],
                want_protocol: vec![],
            },
            Case {
                name: "our token under another cookie name",
                path: "/items".into(),
                headers: h(&[("cookie", &format!("theme=dark; session={t}"))]),
                want_uri: "/items".into(),
                want_cookie: s(&["theme=dark"]),
                want_authorization: vec![],
                want_protocol: vec![],
            },
            Case {
                name: "third-party bearer passes",
                path: "/items".into(),
                headers: h(&[("authorization", &format!("Bearer {}", self.third_party))]),
                want_uri: "/items".into(),
                want_cookie: vec![],
                want_authorization: vec![format!("Bearer {}", self.third_party)],
                want_protocol: vec![],
            },
            Case {
                name: "basic credentials pass",
                path: "/items".into(),
                headers: h(&[("authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l")]),
                want_uri: "/items".into(),
                want_cookie: vec![],
                want_authorization: s(&["Basic YWxhZGRpbjpvcGVuc2VzYW1l"]),
                want_protocol: vec![],
            },
            Case {
                name: "encoded tickets in every position",
                path: "/items?a=1&%74icket=tkt-one&b=%20x&ticke%74=tkt-two&c=+&ticket&ticket=tkt-six+b%20c;d=2&TICKET=tkt-three&e=%7E"
                    .into(),
                headers: vec![],
                want_uri: "/items?a=1&b=%20x&c=+;d=2&e=%7E".into(),
                want_cookie: vec![],
                want_authorization: vec![],
                want_protocol: vec![],
            },
            Case {
                name: "only a ticket",
                path: "/items?ticket=tkt-four".into(),
                headers: vec![],
                want_uri: "/items".into(),
                want_cookie: vec![],
                want_authorization: vec![],
                want_protocol: vec![],
            },
            Case {
                name: "a later ticket with an encoded =",
                path: "/items?room=1&ticket%3Dtkt-five".into(),
                headers: vec![],
                want_uri: "/items?room=1".into(),
                want_cookie: vec![],
                want_authorization: vec![],
                want_protocol: vec![],
            },
            Case {
                name: "bearer protocol entry on a plain request",
                path: "/items".into(),
                headers: h(&[(
                    "sec-websocket-protocol",
                    &format!("chat, drawbridge.bearer.{t}"),
                )]),
                want_uri: "/items".into(),
                want_cookie: vec![],
                want_authorization: vec![],
                // A plain request is no handshake: its Sec-WebSocket-* headers go, credential or not.
                want_protocol: vec![],
            },
        ];
        for (i, (token, spelling)) in [
            (&self.token, "Bearer"),
            (&self.token, "bearer"),
            (&self.token, "BEARER  "),
            (&self.revoked, "Bearer"),
            (&self.forged, "Bearer"),
        ]
        .into_iter()
        .enumerate()
        {
            cases.push(Case {
                name: ["bearer", "lower", "upper", "revoked", "forged"][i],
                path: "/items".into(),
                headers: vec![("authorization".into(), format!("{spelling} {token}"))],
                want_uri: "/items".into(),
                want_cookie: vec![],
                want_authorization: vec![],
                want_protocol: vec![],
            });
        }
        cases
    }
}

#[tokio::test]
async fn plain_requests_reach_the_sync_server_without_credentials() {
    let bed = bed().await;
    for h2 in [false, true] {
        let http = client::https(&bed.gw.ca.pem(), h2);
        for method in ["GET", "POST"] {
            for case in bed.cases() {
                let label = format!("{} {method} h2={h2}", case.name);
                let mut req = client::request(
                    method,
                    &bed.gw.url(&case.path),
                    if method == "POST" {
                        Bytes::from_static(b"{\"x\":1}")
                    } else {
                        Bytes::new()
                    },
                );
                for (k, v) in case
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .chain(SPOOFED)
                {
                    req.headers_mut().append(
                        http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                        v.parse().unwrap(),
                    );
                }
                req.headers_mut()
                    .insert("x-client-kept", "as sent".parse().unwrap());
                let before = bed.up.hits();
                let resp = http.request(req).await.unwrap();
                assert_eq!(resp.status(), 200, "{label}");
                assert_eq!(
                    resp.version(),
                    if h2 {
                        http::Version::HTTP_2
                    } else {
                        http::Version::HTTP_11
                    }
                );
                let seen = bed.up.seen();
                assert_eq!(seen.len(), before + 1, "{label}");
                let seen = seen.last().unwrap();
                assert_eq!(seen.method, method);
                bed.assert_clean(seen, &["tkt-"], false, &label);
                assert_eq!(seen.uri, case.want_uri, "{label}");
                assert_eq!(values(&seen.headers, "cookie"), case.want_cookie, "{label}");
                assert_eq!(
                    values(&seen.headers, "authorization"),
                    case.want_authorization,
                    "{label}"
                );
                assert_eq!(
                    values(&seen.headers, "sec-websocket-protocol"),
                    case.want_protocol,
                    "{label}"
                );
                assert_eq!(seen.headers["x-client-kept"], "as sent", "{label}");
            }
        }
    }
}

#[tokio::test]
async fn upgrades_reach_the_sync_server_without_credentials() {
    let bed = bed().await;
    let http = client::https(&bed.gw.ca.pem(), false);
    let ticket = || {
        let http = http.clone();
        let token = bed.token.clone();
        let url = bed.gw.url("/auth/ticket");
        async move {
            let (status, _, body) = post_bearer(&http, &url, &token).await;
            assert_eq!(status, 200, "{body}");
            body["ticket"].as_str().unwrap().to_owned()
        }
    };
    let t = bed.token.clone();
    let third = format!("Bearer {}", bed.third_party);
    let bearer = format!("bEaReR  {t}");
    let cookie = format!("a=1; drawbridge_session={t}; b=2");
    let protocol = format!("chat, drawbridge.bearer.{t}");
    let tk1 = ticket().await;
    let tk2 = ticket().await;
    let tk3 = ticket().await;
    /// (case, path, headers, the URI the sync server must see, gated)
    type UpgradeCase<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, &'a str, bool);
    let cases: Vec<UpgradeCase> = vec![
        (
            "gated, bearer carrier, every other carrier too",
            format!("/sync/a?room=1&%74icket={tk1}&ticke%74=x;y=2"),
            vec![
                ("authorization", bearer.as_str()),
                ("cookie", cookie.as_str()),
                ("sec-websocket-protocol", protocol.as_str()),
            ],
            "/sync/a?room=1;y=2",
            true,
        ),
        (
            "gated, cookie carrier, a third-party bearer passes",
            "/sync/b?room=1".to_owned(),
            vec![
                ("authorization", third.as_str()),
                ("cookie", cookie.as_str()),
            ],
            "/sync/b?room=1",
            true,
        ),
        (
            "gated, ticket carrier with an encoded key",
            format!("/sync/c?a=%41&%74icket={tk2}&b=+"),
            vec![],
            "/sync/c?a=%41&b=+",
            true,
        ),
        (
            "open upgrade on a public path",
            format!("/public/ws?ticket={tk3}&TICKET=z&x=1"),
            vec![
                ("authorization", bearer.as_str()),
                ("cookie", cookie.as_str()),
                ("sec-websocket-protocol", protocol.as_str()),
            ],
            "/public/ws?x=1",
            false,
        ),
    ];
    for (case, path, mut headers, want_uri, gated) in cases {
        headers.extend(SPOOFED);
        let before = bed.up.hits();
        let (_tls, status, head) =
            raw_handshake(bed.gw.addr, &bed.gw.ca.pem(), &path, &headers).await;
        assert_eq!(status, 101, "{case}: {head}");
        let seen = bed.up.seen();
        assert_eq!(seen.len(), before + 1, "{case}");
        let seen = seen.last().unwrap();
        bed.assert_clean(seen, &[tk1.as_str(), &tk2, &tk3], gated, case);
        assert_eq!(seen.uri, want_uri, "{case}");
        let h = &seen.headers;
        let cookies = values(h, "cookie");
        assert!(
            cookies.is_empty() || cookies == ["a=1; b=2"],
            "{case}: {cookies:?}"
        );
        if headers.iter().any(|(k, _)| *k == "cookie") {
            assert_eq!(cookies, ["a=1; b=2"], "{case}");
        }
        if headers.iter().any(|(_, v)| *v == third) {
            assert_eq!(values(h, "authorization"), [third.as_str()], "{case}");
        } else {
            assert!(!h.contains_key("authorization"), "{case}");
        }
        if headers.iter().any(|(k, _)| *k == "sec-websocket-protocol") {
            assert_eq!(values(h, "sec-websocket-protocol"), ["chat"], "{case}");
        }
    }
}

#[tokio::test]
async fn http2_websocket_reaches_the_sync_server_without_credentials() {
    let bed = bed().await;
    let mut send = client::h2(bed.gw.addr, &bed.gw.ca.pem()).await;
    let t = &bed.token;
    let mut req = support::ws::extended_connect(
        bed.gw.addr.port(),
        "/sync/h2?ticke%74=x&room=1",
        "websocket",
        Some(&bed.third_party),
    )
    .header("cookie", "a=1")
    .header("cookie", format!("drawbridge_session={t}"))
    .header("cookie", "b=2");
    for (k, v) in SPOOFED {
        req = req.header(k, v);
    }
    let req = req.body(http_body_util::Empty::<Bytes>::new()).unwrap();
    send.ready().await.unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200, "RFC 8441 answers 200");
    let seen = bed.up.seen();
    let seen = seen.last().unwrap();
    bed.assert_clean(seen, &[], true, "h2 websocket");
    assert_eq!(seen.uri, "/sync/h2?room=1");
    assert_eq!(values(&seen.headers, "cookie"), ["a=1; b=2"]);
    assert_eq!(
        values(&seen.headers, "authorization"),
        [format!("Bearer {}", bed.third_party)]
    );
}

#[tokio::test]
async fn tokens_in_other_headers_and_query_keys_never_reach_the_sync_server() {
    let bed = bed().await;
    let third = bed.third_party.clone();
    // Plain requests, HTTP/1.1 and HTTP/2, with each of our tokens (live, revoked, forged) in
    // headers drawbridge does not read as carriers and in query pairs of any name.
    for h2 in [false, true] {
        let http = client::https(&bed.gw.ca.pem(), h2);
        for token in bed.secrets() {
            let dotted = token.replace('.', "%2E");
            let path = format!(
                "/api/x?access_token={token}&room=1&token=Bearer+{dotted};id_token={third}"
            );
            let mut req = client::request("GET", &bed.gw.url(&path), Bytes::new());
            let h = req.headers_mut();
            for (k, v) in [
                ("x-ditto-auth", token.to_owned()),
                ("X-DITTO-AUTH", format!("Bearer {token}")),
                ("x-access-token", format!("\"{token}\"")),
                ("x-ditto-auth", "ditto-own-token".to_owned()),
                ("x-id-token", third.clone()),
            ] {
                h.append(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            let before = bed.up.hits();
            let resp = http.request(req).await.unwrap();
            assert_eq!(resp.status(), 200, "h2={h2}");
            let seen = bed.up.seen();
            assert_eq!(seen.len(), before + 1);
            let seen = seen.last().unwrap();
            bed.assert_clean(seen, &[], false, &format!("plain h2={h2}"));
            assert_eq!(seen.uri, format!("/api/x?room=1;id_token={third}"));
            assert_eq!(values(&seen.headers, "x-ditto-auth"), ["ditto-own-token"]);
            assert!(!seen.headers.contains_key("x-access-token"));
            assert_eq!(values(&seen.headers, "x-id-token"), [third.as_str()]);
        }
    }
    // Upgrades, gated and open.
    let t = bed.token.clone();
    let bearer = format!("Bearer {t}");
    let revoked = bed.revoked.clone();
    for (path, gated) in [("/sync/a", true), ("/public/ws", false)] {
        let path = format!("{path}?access_token={t}&room=1&session={revoked}");
        let (_tls, status, head) = raw_handshake(
            bed.gw.addr,
            &bed.gw.ca.pem(),
            &path,
            &[
                ("authorization", bearer.as_str()),
                ("x-ditto-auth", t.as_str()),
                ("x-ditto-auth", "ditto-own-token"),
            ],
        )
        .await;
        assert_eq!(status, 101, "{path}: {head}");
        let seen = bed.up.seen();
        let seen = seen.last().unwrap();
        bed.assert_clean(seen, &[], gated, &path);
        assert!(seen.uri.ends_with("?room=1"), "{}", seen.uri);
        assert_eq!(values(&seen.headers, "x-ditto-auth"), ["ditto-own-token"]);
    }
}
