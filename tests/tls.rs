//! TLS at the listener: certificate hot reload (file replace and symlink swap), broken pairs,
//! client certificates, and the handshake deadline.

mod support;

use std::time::Duration;

use http::StatusCode;
use support::{Ca, Gateway, Upstream, client, metric};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn serial_now(gw: &Gateway) -> u64 {
    let tls = gw.tls(b"http/1.1").await;
    client::peer_serial(&tls)
}

#[tokio::test]
async fn replaced_files_are_served_on_the_next_handshake_and_open_connections_keep_working() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url()).spawn().await;
    assert_eq!(serial_now(&gw).await, 1001);

    // One connection opened before the swap.
    let tls = gw.tls(b"http/1.1").await;
    let mut open = client::h1_over(tls).await;
    let first = open
        .send_request(client::request("GET", "/before", ""))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);

    // Replace both files the way an atomic writer does: write aside, rename over.
    let next = gw.ca.issue(&["localhost", "127.0.0.1"], 2002);
    let aside = tempfile::tempdir_in(gw.dir.path()).unwrap();
    next.write(aside.path());
    std::fs::rename(aside.path().join("tls.key"), gw.key_file()).unwrap();
    std::fs::rename(aside.path().join("tls.crt"), gw.cert_file()).unwrap();

    assert_eventually!(
        serial_now(&gw).await == 2002,
        "the new certificate was never served"
    );
    let after = open
        .send_request(client::request("GET", "/after", ""))
        .await
        .unwrap();
    assert_eq!(
        after.status(),
        StatusCode::OK,
        "the connection opened before the reload broke"
    );
    let m = gw.metrics().await;
    assert!(
        metric(&m, "drawbridge_tls_cert_reloads_total{result=\"success\"}") >= 1.0,
        "{m}"
    );
}

#[tokio::test]
async fn symlink_swap_like_a_kubernetes_secret_volume_is_picked_up() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    // <dir>/..v1/tls.{crt,key}; <dir>/..data -> ..v1; <dir>/tls.crt -> ..data/tls.crt
    let v1 = dir.path().join("..v1");
    std::fs::create_dir(&v1).unwrap();
    ca.issue(&["localhost", "127.0.0.1"], 31).write(&v1);
    std::os::unix::fs::symlink("..v1", dir.path().join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/tls.crt", dir.path().join("tls.crt")).unwrap();
    std::os::unix::fs::symlink("..data/tls.key", dir.path().join("tls.key")).unwrap();
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[tls]\ncert_file = {:?}\nkey_file = {:?}\n[admin]\naddr = \"127.0.0.1:0\"\n[upstream]\nurl = \"{}\"\n",
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
        up.url()
    );
    let app = drawbridge::App::bind(
        drawbridge::Config::from_toml(&text, &drawbridge::config::System).unwrap(),
    )
    .await
    .unwrap();
    let addr = app.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    let serial = || async {
        match client::connect_tls(addr, &ca.pem(), None, &[]).await {
            Ok(tls) => client::peer_serial(&tls),
            Err(_) => 0,
        }
    };
    assert_eventually!(
        serial().await == 31,
        "the first certificate was never served"
    );

    // The kubelet's swap: write a new timestamped dir, point a temporary link at it, rename over ..data.
    let v2 = dir.path().join("..v2");
    std::fs::create_dir(&v2).unwrap();
    ca.issue(&["localhost", "127.0.0.1"], 32).write(&v2);
    std::os::unix::fs::symlink("..v2", dir.path().join("..data_tmp")).unwrap();
    std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
    std::fs::remove_dir_all(&v1).unwrap();

    assert_eventually!(
        serial().await == 32,
        "the swapped certificate was never served"
    );
    let _ = tx.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn broken_new_pair_keeps_the_old_certificate() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url()).spawn().await;
    // A key that does not match the certificate, then a file that is not PEM at all.
    let other = gw.ca.issue(&["localhost"], 4004);
    std::fs::write(gw.key_file(), &other.key_pem).unwrap();
    assert_eventually!(
        metric(
            &gw.metrics().await,
            "drawbridge_tls_cert_reloads_total{result=\"failure\"}"
        ) >= 1.0,
        "a mismatched pair was not counted as a failed reload"
    );
    std::fs::write(gw.cert_file(), "not a certificate").unwrap();
    assert_eventually!(
        metric(
            &gw.metrics().await,
            "drawbridge_tls_cert_reloads_total{result=\"failure\"}"
        ) >= 2.0,
        "a garbage certificate was not counted as a failed reload"
    );
    assert_eq!(
        serial_now(&gw).await,
        1001,
        "a broken pair replaced the working one"
    );
    let http = client::https(&gw.ca.pem(), false);
    let resp = http
        .get(gw.url("/still-up").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        metric(
            &gw.metrics().await,
            "drawbridge_tls_cert_reloads_total{result=\"success\"}"
        ),
        0.0
    );
}

#[tokio::test]
async fn client_without_certificate_is_refused_when_mtls_is_required() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url())
        .require_client_certs()
        .spawn()
        .await;

    // TLS 1.3 finishes the client side of the handshake before the server checks the
    // (empty) certificate, so the refusal shows on the first read at the latest.
    let refused = async {
        let mut tls = client::connect_tls(gw.addr, &gw.ca.pem(), None, &[b"http/1.1"]).await?;
        tls.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await?;
        let mut buf = [0u8; 64];
        let n = tls.read(&mut buf).await?;
        Ok::<usize, std::io::Error>(n)
    };
    match refused.await {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("a client without a certificate got {n} bytes of response"),
    }
    assert_eq!(up.hits(), 0);

    let cert = gw.ca.issue(&["client.example"], 77);
    let tls = client::connect_tls(gw.addr, &gw.ca.pem(), Some(&cert), &[b"http/1.1"])
        .await
        .unwrap();
    let mut h1 = client::h1_over(tls).await;
    let resp = h1
        .send_request(client::request("GET", "/with-cert", ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        metric(
            &gw.metrics().await,
            "drawbridge_tls_handshake_failures_total{reason=\"error\"}"
        ) >= 1.0
    );
}

#[tokio::test]
async fn silent_client_is_cut_off_at_the_handshake_deadline() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url())
        .extra("[limits]\ntls_handshake_timeout_ms = 300")
        .spawn()
        .await;
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the connection was not closed: {read:?}"
    );
    assert_eventually!(
        metric(
            &gw.metrics().await,
            "drawbridge_tls_handshake_failures_total{reason=\"timeout\"}"
        ) == 1.0,
        "the handshake timeout was not counted"
    );
}
