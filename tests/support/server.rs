//! One stub HTTP server for every stand-in: `serve(handler)` binds 127.0.0.1:0, answers each
//! connection with hyper's HTTP/1 server (upgrades allowed), and records the head of every
//! request it hands to the handler. The webhook, the recording upstream, the Ditto sync server,
//! the JWKS endpoint and the raw websocket sync server are each only a handler on top of it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The body every stand-in answers with.
pub type Body = Full<Bytes>;

/// What one request looked like on arrival.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
}

/// A running stub server; dropping it stops accepting connections.
pub struct Served {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Serves `handler` over HTTP/1 (with upgrades) on 127.0.0.1:0 until the returned handle drops.
pub async fn serve<H, F>(handler: H) -> Served
where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (handler, log) = (Arc::new(handler), seen.clone());
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = tcp.accept().await {
            let (handler, log) = (handler.clone(), log.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    log.lock().unwrap().push(Seen {
                        method: req.method().to_string(),
                        uri: req.uri().to_string(),
                        headers: req.headers().clone(),
                    });
                    let answer = handler(req);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Served { addr, seen, task }
}

impl Served {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request that reached the handler, in order of arrival.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests reached the handler.
    pub fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The whole body of `req`; empty when the client broke off sending it.
pub async fn read_body(req: Request<Incoming>) -> Bytes {
    req.into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default()
}

/// A JSON answer.
pub fn json(status: u16, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}
