//! Real client addresses behind real proxies: a real HAProxy sending the PROXY protocol (v2 with
//! `send-proxy-v2`, v1 with `send-proxy`) and a real nginx setting `X-Forwarded-For`, in front of
//! a real drawbridge over real TLS, with clients bound to their own loopback addresses
//! (127.0.0.2, 127.0.0.3, …). The client address drives the login rate limit, the audit and
//! access logs and `limits.max_connections_per_client`; a client's own `X-Forwarded-For` is never
//! believed unless it came through a trusted proxy.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use rustls::pki_types::ServerName;
use serde_json::Value;
use support::haproxy::Haproxy;
use support::nginx::Nginx;
use support::process::check_config;
use support::{Gateway, Reply, Upstream, Webhook, client, metric};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

/// A TCP connection from `source` (a loopback address of the test's own) to `to`.
async fn tcp_from(source: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.parse().unwrap(), 0))?;
    socket.connect(to).await
}

/// A TLS connection (SNI `localhost`, ALPN http/1.1) from `source` to `to`.
async fn tls_from(
    source: &str,
    to: SocketAddr,
    ca_pem: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = tcp_from(source, to).await?;
    TlsConnector::from(client::tls_config(ca_pem, None, &[b"http/1.1"]))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// An HTTP/1.1 connection over TLS from `source` to `to`, kept open for several requests.
async fn https_from(source: &str, to: SocketAddr, ca_pem: &str) -> SendRequest<Full<Bytes>> {
    client::h1_over(tls_from(source, to, ca_pem).await.expect("TLS connection")).await
}

/// An HTTP/1.1 connection in plain text from `source` to `to`.
async fn http_from(source: &str, to: SocketAddr) -> SendRequest<Full<Bytes>> {
    client::h1_over(tcp_from(source, to).await.expect("TCP connection")).await
}

/// Sends `method path` with `headers` and `body`; `(status, body)`.
async fn send(
    conn: &mut SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    conn.ready().await.expect("connection usable");
    let resp = conn.send_request(req).await.expect("answered");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// `POST /auth/login` for the `demo` provider; the status.
async fn login(conn: &mut SendRequest<Full<Bytes>>, headers: &[(&str, &str)]) -> u16 {
    let body = support::login_body("app", "demo", "provider-token-ca-1").to_string();
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    send(conn, "POST", "/auth/login", &all, &body).await.0
}

/// Logs in `n` times over `conn`; every status.
async fn logins(
    conn: &mut SendRequest<Full<Bytes>>,
    n: usize,
    headers: &[(&str, &str)],
) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        statuses.push(login(conn, headers).await);
    }
    statuses
}

/// The `X-Forwarded-For` values the sync server received for the last request to `path`.
fn forwarded_for_at(up: &Upstream, path: &str) -> Vec<String> {
    let seen = up.seen();
    let last = seen
        .iter()
        .rev()
        .find(|s| s.uri.starts_with(path))
        .unwrap_or_else(|| panic!("the sync server never saw {path}"));
    last.headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The `client_ip` of every JSON line in `path` whose `key` is `value`.
fn client_ips(path: &Path, key: &str, value: &str) -> Vec<String> {
    support::json_lines(path)
        .into_iter()
        .filter(|l| l[key] == value)
        .map(|l| l["client_ip"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// A provider that allows every token, a login rate limit of 3 at once (then one a second), and
/// the audit and access logs in `logs`.
async fn logged_gateway(up: &Upstream, hook: &Webhook, logs: &Path, listen: &[&str]) -> Gateway {
    let mut builder = Gateway::builder(up.url()).demo_provider(hook).extra(&format!(
        "[rate_limit]\nper_second = 1\nburst = 3\n[audit]\npath = {:?}\n[log]\naccess = true\naccess_path = {:?}",
        logs.join("audit.log"),
        logs.join("access.log"),
    ));
    for line in listen {
        builder = builder.listen_setting(line);
    }
    builder.spawn().await
}

async fn allow_all() -> Webhook {
    Webhook::start(|_| Reply::allow("pat", 600)).await
}

/// `drawbridge_connections_proxy_header_refused_total{reason}`.
async fn proxy_refused(gw: &Gateway, reason: &str) -> f64 {
    metric(
        &gw.metrics().await,
        &format!("drawbridge_connections_proxy_header_refused_total{{reason=\"{reason}\"}}"),
    )
}

/// Whether the peer closed `s` (end of stream or reset) within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn haproxy_proxy_protocol_clients_get_their_own_login_buckets_and_log_lines() {
    let (hook, up) = (allow_all().await, Upstream::start().await);
    let logs = tempfile::tempdir().unwrap();
    let gw = logged_gateway(&up, &hook, logs.path(), &["proxy_protocol = true"]).await;
    let haproxy = Haproxy::start(&[
        &format!("{} send-proxy-v2", gw.addr),
        &format!("{} send-proxy", gw.addr),
    ])
    .await;
    let ca = gw.ca.pem();
    for (front, (a, b)) in haproxy
        .addrs
        .iter()
        .zip([("127.0.0.2", "127.0.0.3"), ("127.0.0.4", "127.0.0.5")])
    {
        // The first client spends its whole bucket (and claims another address, in vain).
        let mut first = https_from(a, *front, &ca).await;
        let statuses = logins(&mut first, 6, &[("x-forwarded-for", b)]).await;
        assert_eq!(statuses[0], 200, "{a} via {front}: {statuses:?}");
        assert!(
            statuses.contains(&429),
            "{a} was never limited: {statuses:?}"
        );
        // The second, through the same proxy, is not throttled by it.
        let mut second = https_from(b, *front, &ca).await;
        assert_eq!(
            login(&mut second, &[]).await,
            200,
            "{b} shares {a}'s bucket"
        );
        let (status, _) = send(&mut second, "GET", "/bytes?n=1", &[], "").await;
        assert_eq!(status, 200);
        assert_eq!(forwarded_for_at(&up, "/bytes"), [b]);
        let (status, _) = send(
            &mut first,
            "GET",
            "/bytes?n=2",
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-real-ip", "203.0.113.9"),
            ],
            "",
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            forwarded_for_at(&up, "/bytes?n=2"),
            [a],
            "a client's own X-Forwarded-For passed"
        );
        let seen = up.seen();
        let last = seen.iter().rev().find(|s| s.uri.starts_with("/bytes?n=2"));
        assert!(
            !last.unwrap().headers.contains_key("x-real-ip"),
            "a client's own X-Real-IP passed"
        );
    }
    let (audit, access) = (
        logs.path().join("audit.log"),
        logs.path().join("access.log"),
    );
    assert_eventually!(
        support::json_lines(&access).len() >= 2 * (6 + 1 + 2),
        "access log lines missing: {:?}",
        support::json_lines(&access)
    );
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        assert!(
            client_ips(&audit, "event", "login").iter().any(|c| c == ip),
            "no audit login names {ip}: {:?}",
            support::json_lines(&audit)
        );
        assert!(
            client_ips(&access, "path", "/auth/login")
                .iter()
                .any(|c| c == ip),
            "no access line names {ip}"
        );
    }
    let limited: Vec<Value> = support::json_lines(&access)
        .into_iter()
        .filter(|l| l["status"] == 429)
        .collect();
    assert!(!limited.is_empty());
    assert!(
        limited
            .iter()
            .all(|l| l["client_ip"] == "127.0.0.2" || l["client_ip"] == "127.0.0.4"),
        "only the clients that spent their bucket were limited: {limited:?}"
    );
    assert!(
        client_ips(&access, "event", "http_request")
            .iter()
            .all(|c| c != "127.0.0.1"),
        "a line names the proxy instead of the client"
    );
    assert_eq!(
        proxy_refused(&gw, "invalid").await,
        0.0,
        "{}",
        haproxy.output()
    );
}

#[tokio::test]
async fn proxy_protocol_on_connection_without_a_valid_header_is_refused() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url())
        .listen_setting("proxy_protocol = true")
        .extra("[limits]\nheader_read_timeout_ms = 500")
        .spawn()
        .await;
    let ca = gw.ca.pem();
    // TLS straight away, as a client that bypassed the proxy would.
    assert!(
        tls_from("127.0.0.2", gw.addr, &ca).await.is_err(),
        "a TLS handshake without a PROXY header was served"
    );
    // A PROXY line that does not parse, and a v1 line missing its ports.
    for line in [
        &b"PROXY TCP4 not-an-address 127.0.0.1 1 2\r\n"[..],
        b"PROXY TCP4 127.0.0.9 127.0.0.1 4711\r\n",
    ] {
        let mut s = tcp_from("127.0.0.2", gw.addr).await.unwrap();
        s.write_all(line).await.unwrap();
        assert!(closed_within(&mut s, Duration::from_secs(5)).await);
    }
    assert_eventually!(
        proxy_refused(&gw, "invalid").await == 3.0,
        "refusals not counted as invalid: {}",
        gw.metrics().await
    );
    // A connection that sends nothing is closed once the header is overdue.
    let mut silent = tcp_from("127.0.0.2", gw.addr).await.unwrap();
    let started = std::time::Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "closed before the header was due"
    );
    assert_eventually!(
        proxy_refused(&gw, "timeout").await == 1.0,
        "the silent connection was not counted"
    );
    // The same gateway serves a connection whose header is valid, with the address it names.
    let mut s = tcp_from("127.0.0.2", gw.addr).await.unwrap();
    s.write_all(b"PROXY TCP4 198.51.100.7 127.0.0.1 4711 443\r\n")
        .await
        .unwrap();
    let tls = TlsConnector::from(client::tls_config(&ca, None, &[b"http/1.1"]))
        .connect(ServerName::try_from("localhost").unwrap(), s)
        .await
        .expect("TLS after a valid header");
    let mut conn = client::h1_over(tls).await;
    assert_eq!(send(&mut conn, "GET", "/bytes?n=3", &[], "").await.0, 200);
    assert_eq!(forwarded_for_at(&up, "/bytes?n=3"), ["198.51.100.7"]);
}

#[tokio::test]
async fn haproxy_client_over_its_connection_share_is_refused_and_evicts_no_one() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url())
        .listen_setting("proxy_protocol = true")
        .extra("[limits]\nmax_connections = 3\nmax_connections_per_client = 2")
        .spawn()
        .await;
    let haproxy = Haproxy::start(&[&format!("{} send-proxy-v2", gw.addr)]).await;
    let (front, ca) = (haproxy.addrs[0], gw.ca.pem());
    // Client A holds its share, client B the last place: the listener is full, all idle.
    let mut a1 = https_from("127.0.0.2", front, &ca).await;
    let mut a2 = https_from("127.0.0.2", front, &ca).await;
    let mut b = https_from("127.0.0.3", front, &ca).await;
    for conn in [&mut a1, &mut a2, &mut b] {
        assert_eq!(send(conn, "GET", "/bytes?n=1", &[], "").await.0, 200);
    }
    // A third connection of A is refused, however it arrives.
    for _ in 0..3 {
        assert!(
            tls_from("127.0.0.2", front, &ca).await.is_err(),
            "a connection over the client's share was served"
        );
    }
    assert_eventually!(
        metric(
            &gw.metrics().await,
            "drawbridge_connections_refused_per_client_total"
        ) == 3.0,
        "refusals not counted: {}",
        gw.metrics().await
    );
    // None of them took B's idle place.
    assert_eq!(send(&mut b, "GET", "/bytes?n=2", &[], "").await.0, 200);
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            "drawbridge_connections_reaped_total{reason=\"capacity\"}"
        ),
        0.0
    );
    // Another client within its share still gets in, making room as before.
    let mut c = https_from("127.0.0.4", front, &ca).await;
    assert_eq!(send(&mut c, "GET", "/bytes?n=3", &[], "").await.0, 200);
    assert_eventually!(
        metric(
            &gw.metrics().await,
            "drawbridge_connections_reaped_total{reason=\"capacity\"}"
        ) == 1.0,
        "the newcomer did not take an idle place"
    );
}

#[tokio::test]
async fn direct_client_over_its_connection_share_is_refused_and_trusted_proxies_are_exempt() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url())
        .listen_setting("trusted_proxies = [\"127.0.0.4/32\"]")
        .extra("[limits]\nmax_connections_per_client = 2")
        .spawn()
        .await;
    let ca = gw.ca.pem();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = https_from("127.0.0.2", gw.addr, &ca).await;
        assert_eq!(send(&mut conn, "GET", "/bytes?n=1", &[], "").await.0, 200);
        held.push(conn);
    }
    assert!(tls_from("127.0.0.2", gw.addr, &ca).await.is_err());
    let mut other = https_from("127.0.0.3", gw.addr, &ca).await;
    assert_eq!(send(&mut other, "GET", "/bytes?n=1", &[], "").await.0, 200);
    // A trusted proxy carries many clients: it has no share.
    for _ in 0..5 {
        let mut conn = https_from("127.0.0.4", gw.addr, &ca).await;
        assert_eq!(send(&mut conn, "GET", "/bytes?n=1", &[], "").await.0, 200);
        held.push(conn);
    }
    assert_eq!(
        metric(
            &gw.metrics().await,
            "drawbridge_connections_refused_per_client_total"
        ),
        1.0
    );
    // A place given back is free again.
    held.remove(0);
    assert_eventually!(
        tls_from("127.0.0.2", gw.addr, &ca).await.is_ok(),
        "the client's place was not given back"
    );
}

#[tokio::test]
async fn nginx_forwarded_for_names_each_client_and_spoofs_are_ignored() {
    let (hook, up) = (allow_all().await, Upstream::start().await);
    let logs = tempfile::tempdir().unwrap();
    let gw = logged_gateway(
        &up,
        &hook,
        logs.path(),
        &["trusted_proxies = [\"127.0.0.1\"]"],
    )
    .await;
    let nginx = Nginx::server(&format!(
        "    location / {{\n        proxy_pass https://127.0.0.1:{};\n        proxy_ssl_verify off;\n\
         proxy_http_version 1.1;\n        proxy_set_header Host localhost;\n\
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    }}",
        gw.addr.port()
    ))
    .await;
    // Clients reach nginx from their own addresses; nginx reaches drawbridge from 127.0.0.1.
    let mut a = http_from("127.0.0.2", nginx.addr).await;
    let statuses = logins(&mut a, 6, &[("x-forwarded-for", "127.0.0.3")]).await;
    assert_eq!(statuses[0], 200, "{statuses:?}\n{}", nginx.error_log());
    assert!(statuses.contains(&429), "{statuses:?}");
    let mut b = http_from("127.0.0.3", nginx.addr).await;
    assert_eq!(login(&mut b, &[]).await, 200, "127.0.0.3 shares a bucket");

    // The chain nginx built reaches the sync server with nginx's own address appended.
    let spoof = [("x-forwarded-for", "203.0.113.9")];
    assert_eq!(send(&mut b, "GET", "/bytes?n=1", &spoof, "").await.0, 200);
    assert_eq!(
        forwarded_for_at(&up, "/bytes?n=1"),
        ["203.0.113.9, 127.0.0.3, 127.0.0.1"]
    );
    // A client talking to drawbridge directly is not a trusted proxy: its header is replaced.
    let mut direct = https_from("127.0.0.5", gw.addr, &gw.ca.pem()).await;
    let forged = [
        ("x-forwarded-for", "127.0.0.3"),
        ("forwarded", "for=127.0.0.3"),
    ];
    assert_eq!(
        send(&mut direct, "GET", "/bytes?n=2", &forged, "").await.0,
        200
    );
    assert_eq!(forwarded_for_at(&up, "/bytes?n=2"), ["127.0.0.5"]);
    let seen = up.seen();
    let last = seen.iter().rev().find(|s| s.uri.contains("n=2")).unwrap();
    assert!(last.headers.get("forwarded").is_none(), "Forwarded passed");
    // Nor does its forged address buy it a bucket.
    let statuses = logins(&mut direct, 6, &forged).await;
    assert!(statuses.contains(&429), "{statuses:?}");
    let mut b_again = http_from("127.0.0.3", nginx.addr).await;
    assert_ne!(
        login(&mut b_again, &[]).await,
        429,
        "a forged header spent 127.0.0.3's bucket"
    );

    // Garbage from the trusted proxy is never believed: the proxy's own address stands.
    let mut c = http_from("127.0.0.6", nginx.addr).await;
    assert_eq!(
        send(
            &mut c,
            "GET",
            "/bytes?n=3",
            &[("x-forwarded-for", "not-an-ip")],
            ""
        )
        .await
        .0,
        200
    );
    assert_eq!(forwarded_for_at(&up, "/bytes?n=3"), ["127.0.0.1"]);
    assert_eq!(
        metric(
            &gw.metrics().await,
            "drawbridge_forwarded_headers_invalid_total{header=\"x-forwarded-for\"}"
        ),
        1.0
    );

    let (audit, access) = (
        logs.path().join("audit.log"),
        logs.path().join("access.log"),
    );
    assert_eventually!(
        client_ips(&access, "path", "/bytes").len() >= 3,
        "access lines missing: {:?}",
        support::json_lines(&access)
    );
    let logins_logged = client_ips(&audit, "event", "login");
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.5"] {
        assert!(
            logins_logged.iter().any(|c| c == ip),
            "no audit login names {ip}: {logins_logged:?}"
        );
    }
    assert!(
        !logins_logged.iter().any(|c| c == "127.0.0.1"),
        "{logins_logged:?}"
    );
    let forwarded = client_ips(&access, "path", "/bytes");
    assert_eq!(
        forwarded,
        ["127.0.0.3", "127.0.0.5", "127.0.0.1"],
        "{forwarded:?}"
    );
}

#[test]
fn check_summary_names_where_client_addresses_come_from() {
    let out = check_config(
        "[listen]\nproxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\"]\n\
         [limits]\nmax_connections_per_client = 64\n[upstream]\nurl = \"http://127.0.0.1:1\"\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "clients     addressed by the PROXY protocol header, X-Forwarded-For believed from \
             10.0.0.0/8, 192.0.2.7/32 (exempt from the cap); at most 64 connections each"
        ),
        "{stdout}"
    );
}

#[test]
fn trusted_proxy_typo_exits_64_naming_the_key() {
    let out = check_config(
        "[listen]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0/8\"]\n[upstream]\nurl = \"http://127.0.0.1:1\"\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("listen.trusted_proxies.1: "), "{err}");
}
