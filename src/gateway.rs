//! `GatewayService`: route a request to its door, and record what it answered.

pub(crate) mod headers;
pub(crate) mod respond;
pub(crate) mod route;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;

use crate::config::Config;
use crate::forward::{Forwarder, Peer};
use crate::metrics::Metrics;
use respond::Body;
use route::Route;

/// State every connection shares; read through `Arc`, never cloned per request.
pub(crate) struct Shared {
    pub(crate) config: ArcSwap<Config>,
    pub(crate) forwarder: Forwarder,
    pub(crate) metrics: Metrics,
}

/// The per-connection service: shared state plus who is on the other end.
#[derive(Clone)]
pub(crate) struct GatewayService {
    shared: Arc<Shared>,
    peer: Peer,
}

impl GatewayService {
    pub(crate) fn new(shared: Arc<Shared>, addr: SocketAddr, tls: bool) -> Self {
        let proto = if tls { "https" } else { "http" };
        Self {
            shared,
            peer: Peer { addr, proto },
        }
    }

    async fn handle(self, req: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let config = self.shared.config.load_full();
        let route = Route::classify(&req, &config);
        let resp = match route {
            // Session gating on sync paths arrives with the tunnel; until then upgrades are relayed as is.
            Route::Sync | Route::Upgrade | Route::Forward => self.forward(req, &config).await,
        };
        self.shared.metrics.http.observe(
            route.label(),
            resp.status(),
            started.elapsed().as_secs_f64(),
        );
        resp
    }

    async fn forward(&self, req: Request<Incoming>, config: &Config) -> Response<Body> {
        match self.shared.forwarder.forward(req, self.peer, config).await {
            Ok(resp) => resp,
            Err(error) => {
                self.shared
                    .metrics
                    .upstream
                    .errors
                    .with_label_values(&[error.kind()])
                    .inc();
                tracing::warn!(peer = %self.peer.addr, error = %error, cause = ?std::error::Error::source(&error).map(ToString::to_string), "forward failed");
                respond::upstream_error(&error)
            }
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for GatewayService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}
