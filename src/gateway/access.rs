//! The access log: one JSON line per HTTP request, written when hyper is done with the response
//! body, so its size and duration are what the client got.
//!
//! The path is the canonical one without its query (a query may carry a ticket), and the user
//! is the one the request's session or login named, if any. Never a header.

use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::Response;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use prometheus::IntCounter;

use crate::body::{Body, BoxError};
use crate::config::{Audit, SinkError};
use crate::jsonlines::Sink;
use crate::metrics::Metrics;

/// Starts the access log's writer when `config` is set (`log.access = true`), and registers
/// `drawbridge_access_log_dropped_total` either way.
///
/// # Errors
/// [`SinkError`] when the file cannot be opened.
pub(crate) fn start(config: Option<&Audit>, metrics: &Metrics) -> Result<Option<Sink>, SinkError> {
    let dropped = IntCounter::new(
        "drawbridge_access_log_dropped_total",
        "Access log lines dropped because the writer fell behind",
    )
    .expect("a valid metric name");
    let _ = metrics.registry().register(Box::new(dropped.clone()));
    config
        .map(|c| Sink::start("access_log", c.target.clone(), c.queue_lines, dropped))
        .transpose()
}

/// What the line says about the request, known before the response body is sent.
pub(crate) struct Request {
    /// The method.
    pub(crate) method: http::Method,
    /// The canonical path, without the query.
    pub(crate) path: String,
    /// The route class (the metrics' `route` label).
    pub(crate) route: &'static str,
    /// The client.
    pub(crate) client_ip: IpAddr,
    /// The user, when a session or a login named one.
    pub(crate) user: Option<String>,
}

/// `resp` with a body that writes the access line once hyper drops it.
pub(crate) fn wrap(
    sink: &Sink,
    resp: Response<Body>,
    request: Request,
    started: Instant,
) -> Response<Body> {
    let status = resp.status().as_u16();
    let trace_id = crate::telemetry::current_trace_id();
    resp.map(|inner| {
        Counted {
            inner,
            bytes: 0,
            pending: Some(Pending {
                sink: sink.clone(),
                request,
                status,
                started,
                trace_id,
            }),
        }
        .boxed_unsync()
    })
}

struct Pending {
    sink: Sink,
    request: Request,
    status: u16,
    started: Instant,
    trace_id: Option<String>,
}

/// A body that counts what it yields and logs its request when dropped.
struct Counted {
    inner: Body,
    bytes: u64,
    pending: Option<Pending>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.bytes += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let (request, bytes) = (&p.request, self.bytes);
        let duration_ms = (p.started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
        p.sink.write("http_request", p.trace_id.as_deref(), |l| {
            l.str("method", request.method.as_str());
            l.str("path", &request.path);
            l.word("route", request.route);
            l.ip("client_ip", request.client_ip);
            l.opt_str("user", request.user.as_deref());
            l.num("status", p.status);
            l.num("duration_ms", duration_ms);
            l.num("bytes", bytes);
        });
    }
}
