//! The request header rewrite on every forwarded request: hop-by-hop removal, identity headers and
//! session credentials stripped, `X-Forwarded-*` and `Host`, and the upstream URI.
//!
//! Run: `cargo bench --bench header_rewrite`
//!
//! The rewrite is internal, and nothing public runs it alone, so the bench times it through
//! `drawbridge::bench`, the library's hidden re-exports: `rewrite/*` runs `forward::rewrite_head`
//! itself (URI, hop-by-hop, identity headers, session credentials, `X-Forwarded-*`, `Host`) under
//! a config built from TOML, and `hostile_by_fn/*` the header functions it calls one at a time.
//! `forward/*` puts the number in proportion: one GET through the gateway with the same headers
//! (plain HTTP on loopback, so the round trip is hyper + the gateway + the demo sync server, on
//! one core).
//!
//! Header sets: `browser` (14 ordinary headers), `hostile` (a `Connection` list naming four
//! headers, every hop-by-hop header, four spoofed `x-drawbridge-*`, a five-hop X-Forwarded-For),
//! `upgrade` (a websocket handshake, the upgrade pair kept).
//!
//! Medians from `nice -n -19 taskset -c 0 cargo bench --bench header_rewrite` on 2026-11-23,
//! 2 vCPU AMD EPYC VM (shared with other builds; runs moved by up to a third), Rust 1.95
//! (the `rewrite/*` rows were taken without the session-credential strip, which `rewrite_head`
//! also runs: measure again before quoting them):
//!
//! | bench                            | median   | note                                          |
//! |----------------------------------|----------|-----------------------------------------------|
//! | rewrite/browser                  | 1.26 µs  | the whole head rewrite, 14 headers            |
//! | rewrite/hostile                  | 2.20 µs  | 21 headers, 13 of them removed or replaced    |
//! | rewrite/upgrade                  | 1.58 µs  | websocket handshake                           |
//! | hostile_by_fn/remove_hop_by_hop  | 1.01 µs  | the `Connection` list parsed into names, 12 removals |
//! | hostile_by_fn/strip_identity     | 0.35 µs  | a scan of every key, four removals            |
//! | hostile_by_fn/set_forwarded      | 0.52 µs  | `format!` of the X-Forwarded-For chain        |
//! | baseline/build_parts             | 0.57 µs  | cloning the head it starts from (not in the rows above) |
//! | forward/browser                  | 71.6 µs  | GET through the gateway, loopback, one connection |
//! | forward/hostile                  | 80.1 µs  |                                               |
//!
//! The rewrite is under 3 % of a forwarded request's round trip here (1.3 of 71.6 µs, 2.2 of
//! 80.1 µs); the rest is hyper on both sides, the upstream pool and loopback TCP.

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::Request;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;

// The library's own rewrite, through its hidden `bench` re-exports: what is timed is the code the
// gateway runs.
use drawbridge::bench::{remove_hop_by_hop, rewrite_head, set_forwarded, strip_identity};

/// The config `rewrite/*` runs under: an upstream at 127.0.0.1:8080, the default session.
fn rewrite_config() -> drawbridge::Config {
    let text = "[listen]\naddr = \"127.0.0.1:0\"\nplaintext = true\n[admin]\naddr = \"127.0.0.1:0\"\n\
                [upstream]\nurl = \"http://127.0.0.1:8080\"\n";
    drawbridge::Config::from_toml(text, &drawbridge::config::System).expect("config")
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
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        ),
        ("accept", "application/json, text/plain, */*"),
        ("accept-language", "en-GB,en;q=0.7"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("referer", "https://app.example.com/tasks"),
        ("origin", "https://app.example.com"),
        ("connection", "keep-alive"),
        (
            "cookie",
            "drawbridge_session=eyJhbGciOiJFZERTQSJ9.e30.c2lnbmF0dXJl; theme=dark",
        ),
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
        (
            "connection",
            "keep-alive, x-hop-a, X-Hop-B, x-hop-c, x-hop-d",
        ),
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
        (
            "x-forwarded-for",
            "198.51.100.1, 198.51.100.2, 198.51.100.3, 198.51.100.4, 198.51.100.5",
        ),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "gopher"),
    ]);
    if with_te {
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
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
        (
            "sec-websocket-extensions",
            "permessage-deflate; client_max_window_bits",
        ),
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
    let config = rewrite_config();
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
                    rewrite_head(&mut p, PEER, true, "https", &config, *is_upgrade);
                    black_box(p)
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
    // Where the hostile set's time goes, one function at a time.
    let h = hostile(true);
    let mut g = c.benchmark_group("hostile_by_fn");
    g.bench_function("remove_hop_by_hop", |b| {
        b.iter_batched(
            || h.clone(),
            |mut m| {
                remove_hop_by_hop(&mut m, false);
                black_box(m)
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("strip_identity", |b| {
        b.iter_batched(
            || h.clone(),
            |mut m| {
                strip_identity(&mut m);
                black_box(m)
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("set_forwarded", |b| {
        b.iter_batched(
            || h.clone(),
            |mut m| {
                set_forwarded(&mut m, PEER.ip(), "https", Some("sync.example.com"));
                black_box(m)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
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
    sender.ready().await.expect("connection ready");
    let resp = sender.send_request(req).await.expect("response");
    assert!(
        resp.status().is_success(),
        "gateway answered {}",
        resp.status()
    );
    resp.into_body().collect().await.expect("body").to_bytes()
}

fn forward(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let gw = rt.block_on(gateway());
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
