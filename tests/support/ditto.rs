//! A Ditto sync-server stand-in: the SDK's challenge and login endpoints and its websocket,
//! recording exactly what reached it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub struct DittoServer {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    access_seconds: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// The challenge reply, byte for byte.
pub const CHALLENGE_REPLY: &str = r#"{"token":"ch-0b1c2d3e4f"}"#;

impl DittoServer {
    pub async fn start() -> Self {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let access_seconds = Arc::new(AtomicU64::new(3600));
        let (log, secs) = (received.clone(), access_seconds.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = tcp.accept().await {
                let (log, secs) = (log.clone(), secs.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(req, log.clone(), secs.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self {
            addr,
            received,
            access_seconds,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Lifetime of the access tokens the next logins get.
    pub fn set_access_seconds(&self, s: u64) {
        self.access_seconds.store(s, Ordering::SeqCst);
    }
}

impl Drop for DittoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    r.headers_mut()
        .insert("x-ditto-server", "stand-in".parse().unwrap());
    r
}

async fn handle(
    mut req: Request<Incoming>,
    log: Arc<Mutex<Vec<Received>>>,
    secs: Arc<AtomicU64>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let headers = req.headers().clone();
    let path = req.uri().path().to_owned();
    if let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() {
        log.lock().unwrap().push(Received {
            method,
            uri,
            headers,
            body: Bytes::new(),
        });
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, None).await;
                while let Some(Ok(m)) = ws.next().await {
                    if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                        break;
                    }
                }
            }
        });
        return Ok(super::ws::switching_protocols(&key));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    log.lock().unwrap().push(Received {
        method,
        uri,
        headers,
        body: body.clone(),
    });
    Ok(if path.ends_with("/_ditto/auth/challenge") {
        reply(StatusCode::OK, CHALLENGE_REPLY.to_owned())
    } else if path.ends_with("/_ditto/auth/login") {
        let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
        let token = form
            .iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let expiry = time::OffsetDateTime::now_utc()
            + time::Duration::seconds(secs.load(Ordering::SeqCst) as i64);
        let expiry = expiry
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        reply(
            StatusCode::OK,
            serde_json::json!({
                "result": "success",
                "userId": format!("ditto-{token}"),
                "identityB64": "aWRlbnRpdHk=",
                "accessToken": format!("access-for-{token}"),
                "accessExpiry": expiry,
                "refreshToken": "refresh-xyz",
                "clientInfo": {"from": "sync server"},
            })
            .to_string(),
        )
    } else {
        reply(StatusCode::NOT_FOUND, "{}".to_owned())
    })
}
