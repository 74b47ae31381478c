//! `[tracing]`: OpenTelemetry traces: the collector, the share sampled, the service name.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::problem::Problem;
use super::section::{Section, positive, restart_if_changed};
use super::text::{UrlText, shown_url};

/// Default `service.name` of exported traces.
pub const DEFAULT_TRACING_SERVICE_NAME: &str = "drawbridge";
/// Default share of new traces (those without a sampled parent) that are exported.
pub const DEFAULT_TRACING_SAMPLE_RATIO: f64 = 1.0;
/// Default time allowed for one export to the collector.
pub const DEFAULT_TRACING_EXPORT_TIMEOUT_MS: u64 = 10_000;

/// `[tracing]`: OpenTelemetry traces; absent `otlp_endpoint` means off.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTracing {
    /// OTLP/HTTP (protobuf) collector URL, e.g. `http://otel-collector:4318`.
    pub otlp_endpoint: Option<UrlText>,
    /// Share of new traces exported, 0.0 to 1.0; a sampled incoming `traceparent` is always followed.
    pub sample_ratio: f64,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Time allowed for one export.
    pub export_timeout_ms: u64,
}

impl Default for RawTracing {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            sample_ratio: DEFAULT_TRACING_SAMPLE_RATIO,
            service_name: DEFAULT_TRACING_SERVICE_NAME.to_owned(),
            export_timeout_ms: DEFAULT_TRACING_EXPORT_TIMEOUT_MS,
        }
    }
}

/// `[tracing]`
#[derive(Clone, PartialEq)]
pub struct Tracing {
    /// The OTLP/HTTP collector URL (`/v1/traces` is added when it has no path).
    pub otlp_endpoint: String,
    /// Share of new traces exported.
    pub sample_ratio: f64,
    /// `service.name`.
    pub service_name: String,
    /// Time allowed for one export.
    pub export_timeout: Duration,
}

impl fmt::Debug for Tracing {
    /// Never prints the endpoint's user info or query.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracing")
            .field("otlp_endpoint", &shown_url(&self.otlp_endpoint))
            .field("sample_ratio", &self.sample_ratio)
            .field("service_name", &self.service_name)
            .field("export_timeout", &self.export_timeout)
            .finish()
    }
}

/// The exporter is set up once, at start.
impl Section for Option<Tracing> {
    fn restart_keys(&self, next: &Self, keys: &mut Vec<&'static str>) {
        restart_if_changed("tracing", self, next, keys);
    }
}

/// `[tracing]`: `None` when off; else an http(s) collector, a ratio, a name and a timeout.
pub(super) fn validate(raw: &RawTracing, p: &mut Vec<Problem>) -> Option<Tracing> {
    if !(0.0..=1.0).contains(&raw.sample_ratio) {
        p.push(Problem::new(
            "tracing.sample_ratio",
            "must be between 0.0 and 1.0",
        ));
    }
    if raw.service_name.trim().is_empty() {
        p.push(Problem::new("tracing.service_name", "must not be empty"));
    }
    positive(&[("tracing.export_timeout_ms", raw.export_timeout_ms)], p);
    let endpoint = raw.otlp_endpoint.as_ref()?;
    let usable = endpoint
        .parse::<http::Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some());
    if !usable {
        p.push(Problem::new(
            "tracing.otlp_endpoint",
            "must be an http:// or https:// URL (e.g. \"http://otel-collector:4318\")",
        ));
        return None;
    }
    Some(Tracing {
        otlp_endpoint: endpoint.0.clone(),
        sample_ratio: raw.sample_ratio,
        service_name: raw.service_name.clone(),
        export_timeout: Duration::from_millis(raw.export_timeout_ms),
    })
}
