//! The request header rewrite on every forwarded request: hop-by-hop removal, identity strip,
//! `X-Forwarded-*` and `Host`, and the upstream URI.
//!
//! Run: `cargo bench --bench header_rewrite`
//!
//! The rewrite (`src/gateway/headers.rs`, called by `forward::rewrite_head`) is crate-private and
//! nothing public runs it alone, so `rewrite/*` times a copy of it, kept line for line with those
//! two files. At start the bench sends the same headers through a real gateway and checks that
//! the demo sync server sees what the copy produces, so a copy gone stale fails loudly.
//! `forward/*` puts the number in proportion: one GET through the gateway with the same headers
//! (plain HTTP on loopback, so the round trip is hyper + the gateway + the demo sync server).
//!
//! Header sets: `browser` (14 ordinary headers), `hostile` (a `Connection` list naming four
//! headers, every hop-by-hop header, four spoofed `x-drawbridge-*`, a five-hop X-Forwarded-For),
//! `upgrade` (a websocket handshake, the upgrade pair kept).
//!
//! Medians from `cargo bench --bench header_rewrite` on 2026-11-23, 2 vCPU x86_64 (shared), Rust 1.95:
//!
//! | bench                  | median   | note                                             |
//! |------------------------|----------|--------------------------------------------------|
//! | rewrite/browser        | @RB@     | the whole head rewrite                           |
//! | rewrite/hostile        | @RH@     |                                                  |
//! | rewrite/upgrade        | @RU@     |                                                  |
//! | baseline/build_parts   | @BP@     | building the request head it starts from (not included above) |
//! | forward/browser        | @FB@     | GET through the gateway, loopback, one connection |
//! | forward/hostile        | @FH@     |                                                  |
//!
//! The rewrite is @SHARE@ of a forwarded request's round trip.

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;

/// A copy of `src/gateway/headers.rs` and `forward::rewrite_head`, for timing only.
mod copy {
    use super::*;

    const HOP_BY_HOP: [HeaderName; 8] = [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
    ];
    const IDENTITY_PREFIX: &str = "x-drawbridge-";
    static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

    pub(super) fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !(keep_upgrade && n == header::UPGRADE))
            .collect();
        for name in named {
            headers.remove(name);
        }
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
        if keep_upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        } else {
            headers.remove(header::UPGRADE);
        }
    }

    pub(super) fn strip_identity(headers: &mut HeaderMap) {
        let spoofed: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().starts_with(IDENTITY_PREFIX))
            .cloned()
            .collect();
        for name in spoofed {
            headers.remove(name);
        }
    }

    pub(super) fn set_forwarded(
        headers: &mut HeaderMap,
        peer: IpAddr,
        proto: &'static str,
        host: Option<&str>,
    ) {
        let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prior) if !prior.trim().is_empty() => format!("{prior}, {peer}"),
            _ => peer.to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            headers.insert(&X_FORWARDED_FOR, v);
        }
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        match host.and_then(|h| HeaderValue::from_str(h).ok()) {
            Some(v) => {
                headers.insert(&X_FORWARDED_HOST, v);
            }
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
    }

    fn upstream_uri(scheme: &Scheme, authority: &Authority, pq: Option<&PathAndQuery>) -> Uri {
        let builder = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone());
        let builder = match pq {
            Some(pq) => builder.path_and_query(pq.clone()),
            None => builder.path_and_query("/"),
        };
        builder.build().unwrap_or_default()
    }

    /// `forward::rewrite_head` with the config and peer passed in pieces.
    pub(super) fn rewrite_head(
        parts: &mut http::request::Parts,
        peer: SocketAddr,
        proto: &'static str,
        upstream: (&Scheme, &Authority),
        upgrade: bool,
    ) {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| parts.uri.authority().map(|a| a.as_str().to_owned()));
        parts.uri = upstream_uri(upstream.0, upstream.1, parts.uri.path_and_query());
        parts.version = http::Version::HTTP_11;
        remove_hop_by_hop(&mut parts.headers, upgrade);
        strip_identity(&mut parts.headers);
        set_forwarded(&mut parts.headers, peer.ip(), proto, host.as_deref());
        if let Some(h) = host.as_deref().and_then(|h| HeaderValue::from_str(h).ok()) {
            parts.headers.insert(header::HOST, h);
        }
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    h
}

/// What an ordinary browser sends for an API call.
fn browser() -> HeaderMap {
    headers(&[
        ("host", "sync.example.com"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"),
        ("accept", "application/json, text/plain, */*"),
        ("accept-language", "en-GB,en;q=0.7"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("referer", "https://app.example.com/tasks"),
        ("origin", "https://app.example.com"),
        ("connection", "keep-alive"),
        ("cookie", "drawbridge_session=eyJhbGciOiJFZERTQSJ9.e30.c2lnbmF0dXJl; theme=dark"),
        ("sec-fetch-dest", "empty"),
        ("sec-fetch-mode", "cors"),
        ("sec-fetch-site", "same-site"),
        ("cache-control", "no-cache"),
        ("x-forwarded-for", "203.0.113.7"),
    ])
}

/// A client trying everything the rewrite exists for (no transfer-encoding: it goes over the wire
/// in `forward/*`, where a GET must not claim a body).
fn hostile(with_te: bool) -> HeaderMap {
    let mut h = headers(&[
        ("host", "sync.example.com"),
        ("user-agent", "curl/8.11.1"),
        ("accept", "*/*"),
        ("connection", "keep-alive, x-hop-a, X-Hop-B, x-hop-c, x-hop-d"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("x-hop-a", "1"),
        ("x-hop-b", "2"),
        ("x-hop-c", "3"),
        ("x-hop-d", "4"),
        ("te", "trailers"),
        ("trailer", "x-checksum"),
        ("proxy-authorization", "Basic Ym9iOmh1bnRlcjI="),
        ("upgrade", "h2c"),
        ("x-drawbridge-user", "root"),
        ("x-drawbridge-app", "admin"),
        ("x-drawbridge-permissions", "{\"everything\":true}"),
        ("x-drawbridge-session", "forged"),
        ("x-forwarded-for", "198.51.100.1, 198.51.100.2, 198.51.100.3, 198.51.100.4, 198.51.100.5"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "gopher"),
    ]);
    if with_te {
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    }
    h
}

/// A websocket handshake: the upgrade pair survives.
fn upgrade() -> HeaderMap {
    headers(&[
        ("host", "sync.example.com"),
        ("user-agent", "ditto-sdk/4.9"),
        ("connection", "Upgrade, keep-alive"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-protocol", "ditto.v1"),
        ("sec-websocket-extensions", "permessage-deflate; client_max_window_bits"),
        ("origin", "https://app.example.com"),
        ("x-forwarded-for", "203.0.113.7"),
    ])
}

fn parts(h: &HeaderMap, path: &str) -> http::request::Parts {
    let mut req = Request::get(path).body(()).expect("request");
    *req.headers_mut() = h.clone();
    req.into_parts().0
}

const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3)), 50123);

fn rewrite(c: &mut Criterion) {
    let scheme = Scheme::HTTP;
    let authority: Authority = "127.0.0.1:8080".parse().expect("authority");
    let sets = [
        ("browser", browser(), false, "/api/items?limit=50"),
        ("hostile", hostile(true), false, "/api/items"),
        ("upgrade", upgrade(), true, "/sync"),
    ];
    let mut g = c.benchmark_group("rewrite");
    for (name, h, is_upgrade, path) in &sets {
        g.bench_function(*name, |b| {
            b.iter_batched(
                || parts(h, path),
                |mut p| {
                    copy::rewrite_head(&mut p, PEER, "https", (&scheme, &authority), *is_upgrade);
                    black_box(p)
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
    let h = hostile(true);
    c.bench_function("baseline/build_parts", |b| {
        b.iter(|| black_box(parts(black_box(&h), "/api/items")))
    });
}

/// A plaintext gateway in front of the demo sync server, in this process.
struct Gateway {
    addr: SocketAddr,
    _sync: drawbridge::demo::SyncServer,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn gateway() -> Gateway {
    let sync = drawbridge::demo::SyncServer::spawn("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("demo sync server");
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nplaintext = true\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [upstream]\nurl = \"http://{}\"\n[rate_limit]\nenabled = false\n",
        sync.addr()
    );
    let config = drawbridge::Config::from_toml(&text, &drawbridge::config::System).expect("config");
    let app = drawbridge::App::bind(config).await.expect("gateway");
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    Gateway {
        addr,
        _sync: sync,
        _stop: stop,
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> Sender {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .expect("http1 handshake");
    tokio::spawn(conn);
    sender
}

async fn get(sender: &mut Sender, path: &str, h: &HeaderMap) -> Bytes {
    let mut req = Request::get(path)
        .body(Empty::<Bytes>::new())
        .expect("request");
    *req.headers_mut() = h.clone();
    let resp = sender.send_request(req).await.expect("response");
    assert!(resp.status().is_success(), "gateway answered {}", resp.status());
    resp.into_body().collect().await.expect("body").to_bytes()
}

/// Fails when the copy no longer does what the gateway does: the demo sync server reports the
/// X-Forwarded-* and x-drawbridge-user headers it received.
async fn check_copy(addr: SocketAddr) {
    let mut sender = connect(addr).await;
    let h = hostile(false);
    let body = get(&mut sender, "/api/items", &h).await;
    let seen: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let mut p = parts(&h, "/api/items");
    let authority: Authority = "127.0.0.1:1".parse().expect("authority");
    let peer = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1);
    copy::rewrite_head(&mut p, peer, "http", (&Scheme::HTTP, &authority), false);
    for name in ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-drawbridge-user"] {
        let ours = p.headers.get(name).and_then(|v| v.to_str().ok());
        let theirs = seen["seen"][name].as_str();
        assert_eq!(
            ours, theirs,
            "{name}: the copy in benches/header_rewrite.rs no longer matches src/gateway/headers.rs"
        );
    }
}

fn forward(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let gw = rt.block_on(gateway());
    rt.block_on(check_copy(gw.addr));
    let mut g = c.benchmark_group("forward");
    g.measurement_time(Duration::from_secs(5));
    for (name, h) in [("browser", browser()), ("hostile", hostile(false))] {
        let sender = tokio::sync::Mutex::new(rt.block_on(connect(gw.addr)));
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let mut s = sender.lock().await;
                black_box(get(&mut s, "/api/health", &h).await)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, rewrite, forward);
criterion_main!(benches);
