//! A Ditto sync-server stand-in: the SDK's challenge and login endpoints and its websocket,
//! recording exactly what reached it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;

use super::server::{Body, Served, json, read_body, serve};

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
    server: Served,
}

/// The challenge reply, byte for byte.
pub const CHALLENGE_REPLY: &str = r#"{"token":"ch-0b1c2d3e4f"}"#;

impl DittoServer {
    pub async fn start() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let access_seconds = Arc::new(AtomicU64::new(3600));
        let (log, secs) = (received.clone(), access_seconds.clone());
        let server = serve(move |req| handle(req, log.clone(), secs.clone())).await;
        Self {
            addr: server.addr,
            received,
            access_seconds,
            server,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Lifetime of the access tokens the next logins get.
    pub fn set_access_seconds(&self, s: u64) {
        self.access_seconds.store(s, Ordering::SeqCst);
    }
}

fn reply(status: u16, body: String) -> Response<Body> {
    let mut r = json(status, body);
    r.headers_mut()
        .insert("x-ditto-server", "stand-in".parse().unwrap());
    r
}

async fn handle(
    mut req: Request<Incoming>,
    log: Arc<Mutex<Vec<Received>>>,
    secs: Arc<AtomicU64>,
) -> Response<Body> {
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let headers = req.headers().clone();
    let path = req.uri().path().to_owned();
    if let Some(switching) = super::ws::echo(&mut req) {
        log.lock().unwrap().push(Received {
            method,
            uri,
            headers,
            body: Bytes::new(),
        });
        return switching;
    }
    let body = read_body(req).await;
    log.lock().unwrap().push(Received {
        method,
        uri,
        headers,
        body: body.clone(),
    });
    if path.ends_with("/_ditto/auth/challenge") {
        reply(200, CHALLENGE_REPLY.to_owned())
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
            200,
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
        reply(404, "{}".to_owned())
    }
}
