//! The demo's own walk through the main job: log in, open a websocket through the gateway, echo,
//! log out, and watch the gateway close the websocket.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn tls_config(cert_pem: &str, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

async fn post(
    gw: SocketAddr,
    cert_pem: &str,
    path: &str,
    body: String,
    bearer: Option<&str>,
) -> Result<(u16, serde_json::Value), String> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(cert_pem, &[])?)
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector);
    let mut req = http::Request::post(format!("https://localhost:{}{path}", gw.port()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    if let Some(t) = bearer {
        req.headers_mut().insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(&format!("Bearer {t}")).map_err(|e| e.to_string())?,
        );
    }
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, serde_json::from_slice(&bytes).unwrap_or_default()))
}

/// Runs the walk-through and returns what happened, one line per step.
pub(crate) async fn run(gw: SocketAddr, cert_pem: &str) -> Result<String, String> {
    let mut out = String::from("A websocket session through the gateway, just now:\n");
    let login =
        serde_json::json!({"appID": "demo-app", "provider": "demo", "token": "alice-token"})
            .to_string();
    let (status, body) = post(gw, cert_pem, "/auth/login", login, None).await?;
    let token = body["sessionToken"]
        .as_str()
        .ok_or(format!("login answered {status}: {body}"))?
        .to_owned();
    let _ = writeln!(
        out,
        "  login    alice-token with provider demo -> {status}, session for {} until {}",
        body["userID"], body["expiresAt"]
    );

    let tcp = tokio::net::TcpStream::connect(gw)
        .await
        .map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls_config(cert_pem, &[b"http/1.1"])?))
        .connect(
            ServerName::try_from("localhost").map_err(|e| e.to_string())?,
            tcp,
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut req = format!("wss://localhost:{}/sync", gw.port())
        .into_client_request()
        .map_err(|e| e.to_string())?;
    req.headers_mut().insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?,
    );
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tls)
        .await
        .map_err(|e| e.to_string())?;
    let _ = writeln!(
        out,
        "  open     wss://localhost:{}/sync with the session as a Bearer token -> {}",
        gw.port(),
        resp.status()
    );

    let text = "hello through the drawbridge";
    ws.send(Message::text(text))
        .await
        .map_err(|e| e.to_string())?;
    let _ = writeln!(out, "  send     {text:?}");
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        Ok(Some(Ok(m))) => {
            let _ = writeln!(
                out,
                "  receive  {:?} (echoed by the sync server)",
                m.to_text().unwrap_or_default()
            );
        }
        other => return Err(format!("no echo: {other:?}")),
    }

    let (status, _) = post(gw, cert_pem, "/auth/logout", "{}".into(), Some(&token)).await?;
    let _ = writeln!(out, "  logout   POST /auth/logout -> {status}");
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                let _ = writeln!(
                    out,
                    "  close    the gateway closed the websocket: {} {}",
                    u16::from(frame.code),
                    frame.reason
                );
                break;
            }
            Ok(Some(Ok(_))) => {}
            other => return Err(format!("no close frame after logout: {other:?}")),
        }
    }
    Ok(out)
}
