//! OpenTelemetry traces: the OTLP/HTTP exporter and its `tracing` layer, W3C `traceparent` in
//! (from clients) and out (to provider webhooks and the sync server), and the current trace ID.
//!
//! Spans meant for export are `tracing` spans with the target [`TARGET`] at TRACE level. Without
//! `[tracing]` no layer wants them, so each span macro costs a cached "not interested" check, and
//! the propagation helpers return at a relaxed atomic load. With it, only spans of this target
//! are exported (never the diagnostic log's events), and their attributes are fixed fields:
//! route classes, canonical paths, provider names, outcomes — never a header, token or query.
//!
//! Sampling is decided once per trace, before its root span (a request, a TLS handshake) is
//! created ([`root_span`]): an incoming `traceparent`'s sampled flag, or else `sample_ratio`.
//! Every other span is created only inside a sampled one ([`child_span`]). An unsampled request
//! so creates no span at all, not even one `tracing` would create and no layer would keep, and
//! costs what it costs with traces off plus one random draw; the SDK itself then samples
//! everything it is handed.
//!
//! The exporter's HTTP client is the crate's own hyper client (no second TLS stack), driven on
//! the tokio runtime from the SDK's batch thread.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_http::{HeaderExtractor, HeaderInjector, HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

use crate::config;

/// The `tracing` target of every exported span.
pub const TARGET: &str = "drawbridge_otel";
/// The OTLP/HTTP path for traces, added to an endpoint given without a path.
const TRACES_PATH: &str = "/v1/traces";
/// Largest collector reply read.
const MAX_REPLY_BYTES: usize = 64 * 1024;

static ENABLED: AtomicBool = AtomicBool::new(false);
/// `sample_ratio`, as `f64` bits.
static RATIO: AtomicU64 = AtomicU64::new(0);

/// Why traces could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter rejected its settings.
    #[error("tracing.otlp_endpoint: {0}")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    /// The exporter needs a tokio runtime to send from.
    #[error("traces must be started inside the tokio runtime")]
    NoRuntime,
    /// The HTTP client could not load the platform's root certificates.
    #[error("cannot build the OTLP client: {0}")]
    Client(#[source] std::io::Error),
}

/// Exported traces, while this lives; [`Telemetry::shutdown`] sends what is still queued.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

// === impl Telemetry ===

impl Telemetry {
    /// Builds the exporter and sampler from `config` and returns the layer to add to the
    /// subscriber. Call it inside the tokio runtime.
    ///
    /// # Errors
    /// [`TelemetryError`] when the endpoint is unusable or no runtime is running.
    pub fn start<S>(
        config: &config::Tracing,
    ) -> Result<(Self, Box<dyn Layer<S> + Send + Sync>), TelemetryError>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
        let client = OtlpClient {
            client: otlp_client().map_err(TelemetryError::Client)?,
            runtime,
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(traces_url(&config.otlp_endpoint))
            .with_timeout(config.export_timeout)
            .build()
            .map_err(TelemetryError::Exporter)?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(config.service_name.clone())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            // The layer's filter has sampled already (see the module docs): a span that reaches the
            // SDK is one to export, and a remote parent that was not sampled never gets here.
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("drawbridge");
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        RATIO.store(config.sample_ratio.to_bits(), Ordering::Relaxed);
        ENABLED.store(true, Ordering::Relaxed);
        // Only sampled traces create spans of this target (see the module docs): the filter
        // needs no context, and callsites can cache it.
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(Targets::new().with_target(TARGET, tracing::Level::TRACE));
        Ok((Self { provider }, Box::new(layer)))
    }

    /// Sends the spans still queued and stops the exporter. Blocks: call it off the runtime's
    /// worker threads (e.g. in `spawn_blocking`).
    pub fn shutdown(self) {
        ENABLED.store(false, Ordering::Relaxed);
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "traces: the last spans could not be sent");
        }
    }
}

/// `endpoint` with the OTLP traces path when it has none.
fn traces_url(endpoint: &str) -> String {
    match endpoint.parse::<http::Uri>() {
        Ok(uri) if matches!(uri.path(), "" | "/") => {
            format!("{}{TRACES_PATH}", endpoint.trim_end_matches('/'))
        }
        _ => endpoint.to_owned(),
    }
}

/// Whether traces are exported.
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The root span of a trace `make` creates, when the trace is sampled: by the sampled flag of a
/// valid `traceparent` in `headers` when there is one (the caller's trace is kept whole or not at
/// all), otherwise by `sample_ratio`. A disabled span, which costs nothing, when it is not or
/// traces are off.
pub(crate) fn root_span(
    headers: Option<&HeaderMap>,
    make: impl FnOnce() -> tracing::Span,
) -> tracing::Span {
    if !enabled() {
        return tracing::Span::none();
    }
    let sampled = headers
        .and_then(valid_traceparent)
        .and_then(traceparent_sampled)
        .unwrap_or_else(|| {
            let ratio = f64::from_bits(RATIO.load(Ordering::Relaxed));
            ratio >= 1.0 || rand::random::<f64>() < ratio
        });
    if sampled {
        make()
    } else {
        tracing::Span::none()
    }
}

/// The span `make` creates when the current span belongs to a sampled trace; otherwise a
/// disabled span, which costs nothing.
pub(crate) fn child_span(make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if in_sampled_trace() {
        make()
    } else {
        tracing::Span::none()
    }
}

/// Whether the current span belongs to a sampled trace (only those create spans).
fn in_sampled_trace() -> bool {
    sampled_current().is_some()
}

/// The current span, when it belongs to a sampled trace.
fn sampled_current() -> Option<tracing::Span> {
    if !enabled() {
        return None;
    }
    Some(tracing::Span::current()).filter(|span| !span.is_disabled())
}

/// The one `traceparent` of `headers`; `None` when there is none, or several (a caller that
/// sends two has no single parent to continue).
fn valid_traceparent(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all("traceparent").iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v.to_str().ok().filter(|v| traceparent_sampled(v).is_some()),
        _ => None,
    }
}

/// The sampled flag of a version-00 W3C `traceparent`; `None` when it is malformed: not exactly
/// four fields, not lowercase hex of the right lengths (W3C Trace Context §3.2.2: uppercase is
/// invalid), an all-zero trace or parent ID, or another version than `00` (`ff` is forbidden, and
/// later versions are not known here).
fn traceparent_sampled(value: &str) -> Option<bool> {
    let mut parts = value.trim_matches([' ', '\t']).split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex =
        |s: &str, len| s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if version != "00"
        || parts.next().is_some()
        || !hex(trace, 32)
        || !hex(parent, 16)
        || !hex(flags, 2)
    {
        return None;
    }
    if trace.bytes().all(|b| b == b'0') || parent.bytes().all(|b| b == b'0') {
        return None;
    }
    Some(u8::from_str_radix(flags, 16).ok()? & 1 == 1)
}

/// Makes `span` continue the trace of an incoming W3C `traceparent`, if any.
pub(crate) fn continue_from(span: &tracing::Span, headers: &HeaderMap) {
    // An invalid `traceparent` is ignored as a whole, `tracestate` with it (W3C Trace Context
    // §3.3.1): the propagator is asked only about one this module accepts.
    if span.is_disabled() || valid_traceparent(headers).is_none() {
        return;
    }
    let parent =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    let _ = span.set_parent(parent);
}

/// Sets `traceparent` (and `tracestate`) to the current span, for a request leaving drawbridge.
pub(crate) fn inject(headers: &mut HeaderMap) {
    let Some(span) = sampled_current() else {
        return;
    };
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// The W3C trace ID (32 hex digits) of the current span, when traces are exported.
pub(crate) fn current_trace_id() -> Option<String> {
    let context = sampled_current()?.context();
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

type Client = hyper_util::client::legacy::Client<crate::https::Connector, Full<Bytes>>;

/// A pooled hyper client for `http://` and `https://` collectors (rustls, the platform's roots).
fn otlp_client() -> std::io::Result<Client> {
    crate::https::client(crate::https::Options {
        http2: false,
        connect_timeout: None,
        // hyper's own default.
        pool_idle_timeout: std::time::Duration::from_secs(90),
    })
}

/// The exporter's client: a hyper client like the providers', each request run on the tokio runtime (the
/// SDK's batch processor calls it from a thread of its own, outside any runtime).
struct OtlpClient {
    client: Client,
    runtime: tokio::runtime::Handle,
}

impl fmt::Debug for OtlpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpClient").finish_non_exhaustive()
    }
}

impl HttpClient for OtlpClient {
    // The trait is declared with `async_trait`; this is the signature it expands to.
    fn send_bytes<'a, 'b>(
        &'a self,
        request: http::Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<http::Response<Bytes>, HttpError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let resp = client.request(request.map(Full::new)).await?;
            let (parts, body) = resp.into_parts();
            let bytes = Limited::new(body, MAX_REPLY_BYTES)
                .collect()
                .await?
                .to_bytes();
            Ok::<_, HttpError>(http::Response::from_parts(parts, bytes))
        });
        Box::pin(async move { sent.await.map_err(HttpError::from)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_path_is_added_only_to_a_bare_endpoint() {
        assert_eq!(
            traces_url("http://collector:4318"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://otlp.example/custom/traces"),
            "https://otlp.example/custom/traces"
        );
    }

    #[test]
    fn traceparent_sampled_flag_is_read_only_from_a_valid_header() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let parent = "00f067aa0ba902b7";
        assert_eq!(
            traceparent_sampled(&format!("00-{trace}-{parent}-01")),
            Some(true)
        );
        assert_eq!(
            traceparent_sampled(&format!("00-{trace}-{parent}-00")),
            Some(false)
        );
        assert_eq!(
            traceparent_sampled(&format!("00-{trace}-{parent}-03")),
            Some(true)
        );
        for bad in [
            format!("01-{trace}-{parent}-01"),
            format!("00-{trace}-{parent}-01-extra"),
            format!("00-{}-{parent}-01", "0".repeat(32)),
            format!("00-{trace}-{}-01", "0".repeat(16)),
            format!("00-{trace}-{parent}-1"),
            format!("00-{trace}-{parent}"),
            format!("00-{trace}-zz{}-01", &parent[2..]),
            String::new(),
            format!("00-{}-{parent}-01", trace.to_ascii_uppercase()),
            format!("00-{trace}-{}-01", parent.to_ascii_uppercase()),
            format!("00-{trace}-{parent}-0A"),
            format!("00-{}-{parent}-01", &trace.replace('f', "F")),
            format!("ff-{trace}-{parent}-01"),
            format!("FF-{trace}-{parent}-01"),
            format!("0a-{trace}-{parent}-01"),
            format!("00-{trace}-{parent}-01-"),
            format!("00-+{}-{parent}-01", &trace[1..]),
            format!("00-{trace}--{parent}-01"),
        ] {
            assert_eq!(traceparent_sampled(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn traceparent_repeated_or_invalid_is_ignored_as_a_whole() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut h = HeaderMap::new();
        h.insert("traceparent", http::HeaderValue::from_static(good));
        assert_eq!(valid_traceparent(&h), Some(good));
        h.append("traceparent", http::HeaderValue::from_static(good));
        assert_eq!(valid_traceparent(&h), None, "two headers");
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            ),
        );
        assert_eq!(valid_traceparent(&h), None, "uppercase");
    }

    #[test]
    fn propagation_does_nothing_while_traces_are_off() {
        let mut headers = HeaderMap::new();
        inject(&mut headers);
        assert!(headers.is_empty());
        assert_eq!(current_trace_id(), None);
    }
}
