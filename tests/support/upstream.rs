//! A real upstream stand-in that records what it was sent: JSON echo, slow replies,
//! large bodies both ways, and a websocket echo (tokio-tungstenite).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// What one request looked like on arrival.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
}

pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start() -> Self {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = tcp.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(req, log.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self { addr, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A URL where nothing listens: bound once, then released.
pub async fn dead_url() -> String {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    drop(tcp);
    format!("http://{addr}")
}

type Body = Full<Bytes>;

fn json(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn query_u64(req: &Request<Incoming>, key: &str) -> u64 {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

async fn handle(
    mut req: Request<Incoming>,
    log: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<Body>, Infallible> {
    log.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        uri: req.uri().to_string(),
        headers: req.headers().clone(),
    });
    if req.uri().path().ends_with("/refuse") {
        return Ok(json(
            StatusCode::FORBIDDEN,
            serde_json::json!({"refused": "by the sync server"}),
        ));
    }
    if let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = upgrade.await {
                let mut ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, None).await;
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            }
        });
        return Ok(super::ws::switching_protocols(&key));
    }
    let path = req.uri().path().to_owned();
    Ok(match path.as_str() {
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(query_u64(&req, "ms"))).await;
            json(StatusCode::OK, serde_json::json!({"slow": true}))
        }
        "/bytes" => {
            let n = usize::try_from(query_u64(&req, "n")).unwrap();
            Response::new(Full::new(Bytes::from(vec![b'x'; n])))
        }
        "/upload" => {
            let mut body = req.into_body();
            let mut n = 0usize;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => n += f.data_ref().map_or(0, Bytes::len),
                    Err(_) => break,
                }
            }
            json(StatusCode::OK, serde_json::json!({"bytes": n}))
        }
        _ => json(
            StatusCode::OK,
            serde_json::json!({"method": req.method().as_str(), "path": path, "version": format!("{:?}", req.version())}),
        ),
    })
}
