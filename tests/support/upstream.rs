//! A real upstream stand-in that records what it was sent: JSON echo, slow replies,
//! large bodies both ways, and a websocket echo (tokio-tungstenite).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::net::TcpListener;

pub use super::server::Seen;
use super::server::{Body, Served, json, serve};

pub struct Upstream {
    pub addr: SocketAddr,
    server: Served,
}

impl Upstream {
    pub async fn start() -> Self {
        let server = serve(handle).await;
        Self {
            addr: server.addr,
            server,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.server.seen()
    }

    pub fn hits(&self) -> usize {
        self.server.requests()
    }
}

/// A URL where nothing listens: bound once, then released.
pub async fn dead_url() -> String {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    drop(tcp);
    format!("http://{addr}")
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

async fn handle(mut req: Request<Incoming>) -> Response<Body> {
    if req.uri().path().ends_with("/refuse") {
        return json(403, r#"{"refused":"by the sync server"}"#);
    }
    if let Some(switching) = super::ws::echo(&mut req) {
        return switching;
    }
    let path = req.uri().path().to_owned();
    match path.as_str() {
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(query_u64(&req, "ms"))).await;
            json(200, serde_json::json!({"slow": true}).to_string())
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
            json(200, serde_json::json!({"bytes": n}).to_string())
        }
        _ => json(
            200,
            serde_json::json!({"method": req.method().as_str(), "path": path, "version": format!("{:?}", req.version())}).to_string(),
        ),
    }
}
