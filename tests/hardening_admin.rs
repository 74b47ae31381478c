//! The admin port on a dual-stack `[::]` listener: an IPv4 caller on 127.0.0.1 arrives as
//! `::ffff:127.0.0.1` and may still make admin changes; a caller on another address may not.

mod support;

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use support::{Ca, Gateway, Upstream, client};

/// A drawbridge whose admin port listens on `[::]:0`; `None` (with the reason printed) when this
/// machine cannot bind `[::]`.
struct DualStack {
    admin: SocketAddr,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn dual_stack(upstream: &Upstream) -> Option<DualStack> {
    if let Err(error) = std::net::TcpListener::bind("[::]:0") {
        eprintln!(
            "SKIP: this machine cannot bind [::] ({error}); the predicate is unit-tested in src/admin.rs"
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let text = Gateway::builder(upstream.url()).config_text(dir.path(), &Ca::new());
    let admin_line = "[admin]\naddr = \"127.0.0.1:0\"";
    assert!(text.contains(admin_line), "the test config changed shape");
    let text = text.replace(admin_line, "[admin]\naddr = \"[::]:0\"");
    let config = drawbridge::Config::from_toml(&text, &drawbridge::config::System).unwrap();
    let app = drawbridge::App::bind(config).await.expect("binds [::]:0");
    let admin = app.admin_addr();
    assert!(admin.ip().is_unspecified() && admin.is_ipv6(), "{admin}");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));
    Some(DualStack {
        admin,
        _dir: dir,
        _stop: stop,
    })
}

/// `POST <path>` to the admin port at `to`, from `from` when given; the status.
async fn post_from(from: Option<IpAddr>, to: SocketAddr, path: &str, body: &str) -> u16 {
    let mut connector = HttpConnector::new();
    connector.set_local_address(from);
    let admin: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let req = http::Request::post(format!("http://{to}{path}"))
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    admin.request(req).await.unwrap().status().as_u16()
}

/// One of this machine's own addresses that is not loopback, found by asking the routing table
/// (a UDP "connect" sends nothing); `None` when there is none.
fn non_loopback_address() -> Option<IpAddr> {
    [
        "192.0.2.1:9",
        "198.51.100.1:9",
        "203.0.113.1:9",
        "10.255.255.1:9",
        "[2001:db8::1]:9",
    ]
    .iter()
    .find_map(|target| {
        let bind = if target.starts_with('[') {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        let socket = std::net::UdpSocket::bind(bind).ok()?;
        socket.connect(target).ok()?;
        let ip = socket.local_addr().ok()?.ip();
        (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
    })
}

#[tokio::test]
async fn ipv4_loopback_on_a_dual_stack_admin_port_may_make_changes() {
    let up = Upstream::start().await;
    let Some(gw) = dual_stack(&up).await else {
        return;
    };
    let port = gw.admin.port();
    let v4: SocketAddr = ([127, 0, 0, 1], port).into();
    let v6: SocketAddr = (std::net::Ipv6Addr::LOCALHOST, port).into();
    assert_eventually!(
        client::get_text(&format!("http://{v4}/healthz")).await.0 == 200,
        "the admin port never answered on 127.0.0.1"
    );
    for to in [v4, v6] {
        assert_eq!(
            post_from(None, to, "/cache/purge", "").await,
            200,
            "a loopback caller via {to} was refused"
        );
        assert_eq!(
            post_from(None, to, "/sessions/revoke", r#"{"sid": "s-1"}"#).await,
            200,
            "{to}"
        );
    }
}

#[tokio::test]
async fn caller_on_another_address_is_refused_admin_changes() {
    let up = Upstream::start().await;
    let Some(gw) = dual_stack(&up).await else {
        return;
    };
    let Some(ip) = non_loopback_address() else {
        eprintln!(
            "SKIP: this machine has no non-loopback address; the predicate is unit-tested in src/admin.rs"
        );
        return;
    };
    let to = SocketAddr::new(ip, gw.admin.port());
    // Reads answer anyone: the connection itself works from there.
    assert_eventually!(
        client::get_text(&format!("http://{to}/healthz")).await.0 == 200,
        "the admin port never answered on {to}"
    );
    for (path, body) in [
        ("/cache/purge", ""),
        ("/sessions/revoke", r#"{"sid": "s-1"}"#),
        ("/sessions/revoke", r#"{"userID": "u"}"#),
    ] {
        assert_eq!(
            post_from(Some(ip), to, path, body).await,
            403,
            "{path} accepted a caller on {ip}"
        );
    }
}
