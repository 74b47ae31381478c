//! The one outbound HTTP(S) client builder: rustls over the platform's roots, `http://` and
//! `https://` both, pooled and kept alive. The upstream forwarder, the providers and the trace
//! exporter each build theirs here and differ only in [`Options`].

use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// The connector every outbound client uses.
pub(crate) type Connector = HttpsConnector<HttpConnector>;

/// What differs between the outbound clients.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// Offer HTTP/2 by ALPN besides HTTP/1.1.
    pub(crate) http2: bool,
    /// How long a TCP connect may take; `None` leaves it to the OS.
    pub(crate) connect_timeout: Option<Duration>,
    /// How long an idle pooled connection is kept.
    pub(crate) pool_idle_timeout: Duration,
}

/// Builds a pooled client with `options`.
///
/// # Errors
/// When the platform's root certificates cannot be loaded.
pub(crate) fn client<B>(options: Options) -> std::io::Result<Client<Connector, B>>
where
    B: hyper::body::Body + Send,
    B::Data: Send,
{
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(options.connect_timeout);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())?
        .https_or_http()
        .enable_http1();
    let https = if options.http2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.wrap_connector(http)
    };
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(options.pool_idle_timeout)
        .build(https))
}
