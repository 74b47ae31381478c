//! The service hyper calls: the gateway's own, with each request marking its connection busy
//! from the moment its head arrives until hyper drops its response body.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::Service;

use super::activity::{Activity, Busy};
use crate::body::{self, BoxError};
use crate::gateway::GatewayService;

/// [`GatewayService`] plus the connection's [`Activity`].
#[derive(Clone)]
pub(super) struct Tracked {
    inner: GatewayService,
    activity: Arc<Activity>,
}

// === impl Tracked ===

impl Tracked {
    /// Serves with `inner`, recording requests in `activity`.
    pub(super) fn new(inner: GatewayService, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl Service<Request<Incoming>> for Tracked {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let busy = self.activity.begin();
        let connect = req.method() == Method::CONNECT;
        let answer = self.inner.call(req);
        Box::pin(async move {
            let resp = answer.await?;
            // A 101 (HTTP/1.1) or a 2xx to CONNECT (RFC 8441) hands the stream to a tunnel.
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS
                || (connect && resp.status().is_success())
            {
                busy.tunnel();
            }
            Ok(resp.map(|inner| TrackedBody { inner, _busy: busy }))
        })
    }
}

/// A response body that keeps its request counted as in flight until hyper drops it.
pub(super) struct TrackedBody {
    inner: body::Body,
    _busy: Busy,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
