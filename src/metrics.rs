//! `Metrics` owns the Prometheus registry; each part registers its own families into it.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric family drawbridge exports, in its own registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub(crate) http: HttpMetrics,
    pub(crate) conn: ConnMetrics,
    pub(crate) tls: TlsMetrics,
    pub(crate) upstream: UpstreamMetrics,
    pub(crate) auth: AuthMetrics,
    pub(crate) tunnel: TunnelMetrics,
    pub(crate) config: ConfigMetrics,
}

impl Metrics {
    /// A fresh registry with every family registered.
    ///
    /// # Errors
    /// A prometheus error if two families collide (a programming error).
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        register_build_and_process(&registry)?;
        Ok(Self {
            http: HttpMetrics::register(&registry)?,
            conn: ConnMetrics::register(&registry)?,
            tls: TlsMetrics::register(&registry)?,
            upstream: UpstreamMetrics::register(&registry)?,
            auth: AuthMetrics::register(&registry)?,
            tunnel: TunnelMetrics::register(&registry)?,
            config: ConfigMetrics::register(&registry)?,
            registry,
        })
    }

    /// The registry, for parts registered later.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every family.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The version this binary was built from (Cargo.toml).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The source revision this binary was built from: `git rev-parse --short HEAD` at build time,
/// `DRAWBRIDGE_BUILD_REVISION` when set, or "unknown" (a build without git).
pub const REVISION: &str = env!("DRAWBRIDGE_REVISION");

/// Registers `drawbridge_build_info` and, on Linux, the standard `process_*` families
/// (CPU seconds, resident and virtual memory, open and maximum file descriptors, start time).
fn register_build_and_process(registry: &Registry) -> Result<(), prometheus::Error> {
    let build = IntGaugeVec::new(
        Opts::new(
            "drawbridge_build_info",
            "1, labelled with the version and source revision of this binary",
        ),
        &["version", "revision"],
    )?;
    build.with_label_values(&[VERSION, REVISION]).set(1);
    registry.register(Box::new(build))?;
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    Ok(())
}

/// Status class label for a response status.
pub(crate) fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Requests on the main listener, by route class and status class.
#[derive(Debug, Clone)]
pub(crate) struct HttpMetrics {
    pub(crate) requests: IntCounterVec,
    pub(crate) duration: HistogramVec,
}

impl HttpMetrics {
    fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "drawbridge_http_requests_total",
                "Requests answered, by route class and status class",
            ),
            &["route", "status_class"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "drawbridge_http_request_duration_seconds",
                "Time from request head to response head, by route class",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["route"],
        )?;
        r.register(Box::new(requests.clone()))?;
        r.register(Box::new(duration.clone()))?;
        Ok(Self { requests, duration })
    }

    pub(crate) fn observe(&self, route: &str, status: http::StatusCode, seconds: f64) {
        self.requests
            .with_label_values(&[route, status_class(status)])
            .inc();
        self.duration.with_label_values(&[route]).observe(seconds);
    }
}

/// Client connections on the main listener.
#[derive(Debug, Clone)]
pub(crate) struct ConnMetrics {
    pub(crate) open: IntGauge,
    pub(crate) accepted: IntCounter,
    pub(crate) refused: IntCounter,
    /// Connections closed because their client already had `limits.max_connections_per_client`.
    pub(crate) refused_per_client: IntCounter,
    /// Connections closed for a missing or bad PROXY protocol header, by reason.
    pub(crate) proxy_header_refused: IntCounterVec,
    /// Requests from a trusted proxy whose forwarding header did not parse, by header.
    pub(crate) forwarded_invalid: IntCounterVec,
    /// Connections closed by the gateway for saying nothing, by reason.
    pub(crate) reaped: IntCounterVec,
}

/// Why a quiet connection was closed; the `reason` label of `drawbridge_connections_reaped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReapReason {
    /// A request head did not complete within `limits.header_read_timeout_ms`: the first one
    /// counted from the handshake, a later HTTP/1 one from its first byte.
    NoRequest,
    /// No request in flight for `limits.idle_timeout_ms`.
    Idle,
    /// Idle longest when `limits.max_connections` were open and another client arrived.
    Capacity,
}

impl ReapReason {
    const ALL: [Self; 3] = [Self::NoRequest, Self::Idle, Self::Capacity];

    /// The label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::NoRequest => "no_request",
            Self::Idle => "idle",
            Self::Capacity => "capacity",
        }
    }
}

impl ConnMetrics {
    fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let open = IntGauge::new("drawbridge_connections_open", "Client connections open now")?;
        let accepted = IntCounter::new(
            "drawbridge_connections_accepted_total",
            "Client connections accepted",
        )?;
        let refused = IntCounter::new(
            "drawbridge_connections_refused_total",
            "Client connections closed at once because limits.max_connections were open and busy",
        )?;
        let refused_per_client = IntCounter::new(
            "drawbridge_connections_refused_per_client_total",
            "Client connections closed at once because their address had limits.max_connections_per_client open",
        )?;
        let proxy_header_refused = IntCounterVec::new(
            Opts::new(
                "drawbridge_connections_proxy_header_refused_total",
                "Client connections closed for a missing or bad PROXY protocol header, by reason (invalid, timeout, closed)",
            ),
            &["reason"],
        )?;
        for reason in ["invalid", "timeout", "closed"] {
            proxy_header_refused.with_label_values(&[reason]);
        }
        let forwarded_invalid = IntCounterVec::new(
            Opts::new(
                "drawbridge_forwarded_headers_invalid_total",
                "Requests from a trusted proxy whose forwarding header did not parse (the proxy's address was used), by header",
            ),
            &["header"],
        )?;
        for header in ["x-forwarded-for", "forwarded"] {
            forwarded_invalid.with_label_values(&[header]);
        }
        let reaped = IntCounterVec::new(
            Opts::new(
                "drawbridge_connections_reaped_total",
                "Client connections the gateway closed for saying nothing, by reason (no_request, idle, capacity)",
            ),
            &["reason"],
        )?;
        for reason in ReapReason::ALL {
            reaped.with_label_values(&[reason.label()]);
        }
        r.register(Box::new(open.clone()))?;
        r.register(Box::new(accepted.clone()))?;
        r.register(Box::new(refused.clone()))?;
        r.register(Box::new(refused_per_client.clone()))?;
        r.register(Box::new(proxy_header_refused.clone()))?;
        r.register(Box::new(forwarded_invalid.clone()))?;
        r.register(Box::new(reaped.clone()))?;
        Ok(Self {
            open,
            accepted,
            refused,
            refused_per_client,
            proxy_header_refused,
            forwarded_invalid,
            reaped,
        })
    }

    /// Counts one connection closed for `reason`.
    pub(crate) fn reap(&self, reason: ReapReason) {
        self.reaped.with_label_values(&[reason.label()]).inc();
    }
}

/// TLS handshakes and the serving certificate.
#[derive(Debug, Clone)]
pub(crate) struct TlsMetrics {
    pub(crate) handshake_failures: IntCounterVec,
    pub(crate) handshake_duration: Histogram,
    pub(crate) reloads: IntCounterVec,
    pub(crate) not_after: Gauge,
}

impl TlsMetrics {
    fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let handshake_failures = IntCounterVec::new(
            Opts::new(
                "drawbridge_tls_handshake_failures_total",
                "Failed TLS handshakes, by reason",
            ),
            &["reason"],
        )?;
        let handshake_duration = Histogram::with_opts(
            HistogramOpts::new(
                "drawbridge_tls_handshake_duration_seconds",
                "Successful TLS handshake time",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
            ]),
        )?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "drawbridge_tls_cert_reloads_total",
                "Certificate reloads after the files changed, by result",
            ),
            &["result"],
        )?;
        let not_after = Gauge::new(
            "drawbridge_tls_cert_not_after_timestamp_seconds",
            "notAfter of the serving certificate, in Unix seconds",
        )?;
        // Known label values start at zero so dashboards and alerts see the series from the start.
        for reason in ["timeout", "error"] {
            handshake_failures.with_label_values(&[reason]);
        }
        for result in ["success", "failure"] {
            reloads.with_label_values(&[result]);
        }
        r.register(Box::new(handshake_failures.clone()))?;
        r.register(Box::new(handshake_duration.clone()))?;
        r.register(Box::new(reloads.clone()))?;
        r.register(Box::new(not_after.clone()))?;
        Ok(Self {
            handshake_failures,
            handshake_duration,
            reloads,
            not_after,
        })
    }
}

/// Failures talking to the sync server.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamMetrics {
    pub(crate) errors: IntCounterVec,
}

impl UpstreamMetrics {
    fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let errors = IntCounterVec::new(
            Opts::new(
                "drawbridge_upstream_errors_total",
                "Forwarded requests that failed at the upstream, by kind (refused, timeout, body_too_large, error)",
            ),
            &["kind"],
        )?;
        for kind in ["refused", "timeout", "body_too_large", "error"] {
            errors.with_label_values(&[kind]);
        }
        r.register(Box::new(errors.clone()))?;
        Ok(Self { errors })
    }
}

/// Logins, provider calls, the decision cache and sessions.
#[derive(Debug, Clone)]
pub(crate) struct AuthMetrics {
    pub(crate) logins: IntCounterVec,
    pub(crate) provider_requests: IntCounterVec,
    pub(crate) provider_duration: HistogramVec,
    pub(crate) circuit_open: IntGaugeVec,
    pub(crate) cache_requests: IntCounterVec,
    pub(crate) cache_entries: IntGauge,
    /// The forward-auth door's verified-session lookups, by `hit`/`miss`.
    pub(crate) forward_auth_cache: IntCounterVec,
    pub(crate) sessions_issued: IntCounter,
    pub(crate) sessions_revoked: IntCounter,
}

impl AuthMetrics {
    fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let logins = IntCounterVec::new(
            Opts::new(
                "drawbridge_logins_total",
                "Login decisions, by door, provider and result (allow, deny, or the error)",
            ),
            &["door", "provider", "result"],
        )?;
        let provider_requests = IntCounterVec::new(
            Opts::new(
                "drawbridge_provider_requests_total",
                "Calls to provider webhooks, by provider and outcome",
            ),
            &["provider", "outcome"],
        )?;
        let provider_duration = HistogramVec::new(
            HistogramOpts::new(
                "drawbridge_provider_duration_seconds",
                "Time to a provider's answer on a cache miss, by provider",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["provider"],
        )?;
        let circuit_open = IntGaugeVec::new(
            Opts::new(
                "drawbridge_provider_circuit_open",
                "1 while a provider's circuit breaker fails fast",
            ),
            &["provider"],
        )?;
        let cache_requests = IntCounterVec::new(
            Opts::new(
                "drawbridge_decision_cache_requests_total",
                "Decision cache lookups, by result",
            ),
            &["result"],
        )?;
        for result in ["hit", "miss", "coalesced", "stale"] {
            cache_requests.with_label_values(&[result]);
        }
        let cache_entries = IntGauge::new(
            "drawbridge_decision_cache_entries",
            "Decisions cached (approximate)",
        )?;
        let forward_auth_cache = IntCounterVec::new(
            Opts::new(
                "drawbridge_forward_auth_cache_requests_total",
                "Forward-auth checks of a session token, by whether the token was verified already (hit) or had to be (miss)",
            ),
            &["result"],
        )?;
        for result in ["hit", "miss"] {
            forward_auth_cache.with_label_values(&[result]);
        }
        let sessions_issued = IntCounter::new(
            "drawbridge_sessions_issued_total",
            "Session tokens minted, refreshes included",
        )?;
        let sessions_revoked = IntCounter::new(
            "drawbridge_sessions_revoked_total",
            "Sessions revoked by logout or the admin port",
        )?;
        r.register(Box::new(logins.clone()))?;
        r.register(Box::new(provider_requests.clone()))?;
        r.register(Box::new(provider_duration.clone()))?;
        r.register(Box::new(circuit_open.clone()))?;
        r.register(Box::new(cache_requests.clone()))?;
        r.register(Box::new(cache_entries.clone()))?;
        r.register(Box::new(forward_auth_cache.clone()))?;
        r.register(Box::new(sessions_issued.clone()))?;
        r.register(Box::new(sessions_revoked.clone()))?;
        Ok(Self {
            logins,
            provider_requests,
            provider_duration,
            circuit_open,
            cache_requests,
            cache_entries,
            forward_auth_cache,
            sessions_issued,
            sessions_revoked,
        })
    }
}

/// Websocket tunnels.
#[derive(Debug, Clone)]
pub(crate) struct TunnelMetrics {
    pub(crate) active: IntGauge,
    pub(crate) total: IntCounterVec,
    pub(crate) closes: IntCounterVec,
    pub(crate) bytes: IntCounterVec,
    pub(crate) duration: Histogram,
}

impl TunnelMetrics {
    fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let active = IntGauge::new("drawbridge_tunnels_active", "Websocket tunnels open now")?;
        let total = IntCounterVec::new(
            Opts::new(
                "drawbridge_tunnels_total",
                "Websocket handshakes, by result (accepted, rejected)",
            ),
            &["result"],
        )?;
        let closes = IntCounterVec::new(
            Opts::new(
                "drawbridge_tunnel_closes_total",
                "Tunnels ended, by reason (expired, revoked, client, upstream, client_lost, upstream_lost, shutdown, error)",
            ),
            &["reason"],
        )?;
        let bytes = IntCounterVec::new(
            Opts::new(
                "drawbridge_tunnel_bytes_total",
                "Bytes relayed through tunnels, by direction",
            ),
            &["direction"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "drawbridge_tunnel_duration_seconds",
                "How long tunnels stayed open",
            )
            .buckets(vec![
                0.1, 1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 14_400.0, 86_400.0,
            ]),
        )?;
        for result in ["accepted", "rejected"] {
            total.with_label_values(&[result]);
        }
        for reason in [
            "expired",
            "revoked",
            "client",
            "upstream",
            "client_lost",
            "upstream_lost",
            "shutdown",
            "error",
        ] {
            closes.with_label_values(&[reason]);
        }
        for direction in ["client_to_upstream", "upstream_to_client"] {
            bytes.with_label_values(&[direction]);
        }
        r.register(Box::new(active.clone()))?;
        r.register(Box::new(total.clone()))?;
        r.register(Box::new(closes.clone()))?;
        r.register(Box::new(bytes.clone()))?;
        r.register(Box::new(duration.clone()))?;
        Ok(Self {
            active,
            total,
            closes,
            bytes,
            duration,
        })
    }
}

/// Config reloads, the live config's hash, and the re-checks of open sessions.
#[derive(Debug, Clone)]
pub(crate) struct ConfigMetrics {
    /// `drawbridge_config_reloads_total{result}`: `success` or `failure`.
    pub(crate) reloads: IntCounterVec,
    /// `drawbridge_config_info{hash}`: 1 for the live config's hash.
    pub(crate) info: IntGaugeVec,
    /// `drawbridge_session_revalidations_total{result}`: `allow`, `narrowed`, `deny`, `unreachable`.
    pub(crate) revalidations: IntCounterVec,
}

impl ConfigMetrics {
    fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let reloads = IntCounterVec::new(
            Opts::new(
                "drawbridge_config_reloads_total",
                "Config reloads (SIGHUP or file change), by result",
            ),
            &["result"],
        )?;
        let info = IntGaugeVec::new(
            Opts::new(
                "drawbridge_config_info",
                "1 for the SHA-256 prefix of the config file that is live",
            ),
            &["hash"],
        )?;
        let revalidations = IntCounterVec::new(
            Opts::new(
                "drawbridge_session_revalidations_total",
                "Re-checks of the decision behind an open tunnel, by result",
            ),
            &["result"],
        )?;
        for result in ["success", "failure"] {
            reloads.with_label_values(&[result]);
        }
        for result in ["allow", "narrowed", "deny", "unreachable"] {
            revalidations.with_label_values(&[result]);
        }
        r.register(Box::new(reloads.clone()))?;
        r.register(Box::new(info.clone()))?;
        r.register(Box::new(revalidations.clone()))?;
        Ok(Self {
            reloads,
            info,
            revalidations,
        })
    }

    /// Shows `hash` as the live config (and only it).
    pub(crate) fn set_live(&self, hash: &str) {
        self.info.reset();
        self.info.with_label_values(&[hash]).set(1);
    }
}
