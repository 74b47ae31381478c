//! `Provider`: the named things that answer whether a token is good (webhook, jwt, group).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use sha2::{Digest, Sha256};

use super::group::GroupProvider;
use super::jwt::JwtProvider;
use super::webhook::WebhookProvider;
use super::{Decision, Reason};
use crate::config::auth::{JwksSource, ProviderConfig};
use crate::metrics::AuthMetrics;

/// The one pooled, kept-alive HTTP(S) client every provider call and JWKS fetch shares.
pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Builds the shared provider client.
///
/// # Errors
/// When the platform's root certificates cannot be loaded.
pub(crate) fn http_client() -> std::io::Result<HttpClient> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(hyper_util::rt::TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .build(https))
}

/// One login question.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Check<'a> {
    /// The app (or database) ID.
    pub(crate) app: &'a str,
    /// The provider name the client sent.
    pub(crate) provider: &'a str,
    /// The client's token. Never logged.
    pub(crate) token: &'a str,
}

/// Why a provider gave no answer. Never cached; every door fails closed on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// No answer within the provider's timeout.
    #[error("provider timed out")]
    Timeout,
    /// The provider could not be reached.
    #[error("provider unreachable")]
    Connect(#[source] Arc<hyper_util::client::legacy::Error>),
    /// The request failed after connecting.
    #[error("provider request failed")]
    Request(#[source] Arc<hyper_util::client::legacy::Error>),
    /// An unexpected HTTP status (5xx and others but 200 and 401).
    #[error("provider answered HTTP {0}")]
    Status(http::StatusCode),
    /// The reply broke the contract: not JSON, wrong types, too large.
    #[error("provider reply unusable: {0}")]
    Reply(&'static str),
    /// The circuit breaker is open: failing fast.
    #[error("provider circuit open")]
    CircuitOpen,
    /// A JWT provider has no usable keys yet.
    #[error("provider keys unavailable")]
    Keys,
}

impl ProviderError {
    /// The failure reason a door reports.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Timeout => Reason::Timeout,
            _ => Reason::Internal,
        }
    }

    /// The bounded metric label.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect(_) => "unreachable",
            Self::Request(_) => "error",
            Self::Status(_) => "bad_status",
            Self::Reply(_) => "bad_reply",
            Self::CircuitOpen => "circuit_open",
            Self::Keys => "no_keys",
        }
    }
}

/// A configured provider.
pub(crate) enum Provider {
    Webhook(Box<WebhookProvider>),
    Jwt(JwtProvider),
    Group(GroupProvider),
}

impl Provider {
    /// Asks the provider. Denials are `Ok(Decision::Deny)`; only failures are `Err`.
    pub(crate) fn check<'a>(
        &'a self,
        check: &'a Check<'a>,
    ) -> BoxFuture<'a, Result<Decision, ProviderError>> {
        let (kind, asked): (_, BoxFuture<'a, _>) = match self {
            Self::Webhook(w) => ("webhook", Box::pin(w.check(check))),
            Self::Jwt(j) => ("jwt", Box::pin(j.check(check))),
            Self::Group(g) => ("group", Box::pin(g.check(check))),
        };
        let span = crate::telemetry::child_span(|| {
            tracing::trace_span!(
                target: crate::telemetry::TARGET,
                "provider",
                drawbridge.provider = check.provider,
                drawbridge.provider.kind = kind,
                drawbridge.outcome = tracing::field::Empty,
            )
        });
        if span.is_disabled() {
            return asked;
        }
        Box::pin(tracing::Instrument::instrument(
            async move {
                let result = asked.await;
                let outcome = match &result {
                    Ok(d) => d.label(),
                    Err(e) => e.label(),
                };
                tracing::Span::current().record("drawbridge.outcome", outcome);
                result
            },
            span,
        ))
    }

    /// Ready to answer (a JWT provider has fetched its keys once).
    pub(crate) fn ready(&self) -> bool {
        match self {
            Self::Jwt(j) => j.ready(),
            Self::Webhook(_) | Self::Group(_) => true,
        }
    }
}

/// A digest of everything a provider is built from: its settings, its secrets, the keys file of
/// a JWT provider and, for a group, its members' digests. Equal digests mean a reload may keep
/// the running provider (its connections, circuit breaker and cached answers).
pub(crate) type Fingerprint = [u8; 32];

/// The [`Fingerprint`] of every provider, by name.
pub(crate) fn fingerprints(
    configs: &BTreeMap<String, ProviderConfig>,
) -> HashMap<String, Fingerprint> {
    fn one(
        name: &str,
        configs: &BTreeMap<String, ProviderConfig>,
        done: &mut HashMap<String, Fingerprint>,
    ) -> Option<Fingerprint> {
        if let Some(f) = done.get(name) {
            return Some(*f);
        }
        let config = configs.get(name)?;
        let mut h = Sha256::new();
        // The digest is kept in memory only; nothing here is ever logged.
        h.update(format!("{config:?}").as_bytes());
        match config {
            ProviderConfig::Webhook(c) => {
                if let Some(secret) = &c.signing_secret {
                    h.update(secret);
                }
                for (name, value) in &c.headers {
                    h.update(name.as_str().as_bytes());
                    h.update(value.as_bytes());
                }
            }
            ProviderConfig::Jwt(c) => {
                if let JwksSource::File(path) = &c.keys {
                    h.update(std::fs::read(path).unwrap_or_default());
                }
            }
            ProviderConfig::Group(c) => {
                for member in &c.members {
                    if let Some(f) = one(member, configs, done) {
                        h.update(f);
                    }
                }
            }
        }
        let f: Fingerprint = h.finalize().into();
        done.insert(name.to_owned(), f);
        Some(f)
    }
    let mut done = HashMap::new();
    for name in configs.keys() {
        one(name, configs, &mut done);
    }
    done
}

/// Builds every provider; groups get `Arc`s of their members (config validation rejected cycles).
/// A provider `reuse` returns is kept as it runs instead of being built again.
pub(crate) fn build_all(
    configs: &BTreeMap<String, ProviderConfig>,
    client: &HttpClient,
    metrics: &AuthMetrics,
    reuse: &dyn Fn(&str) -> Option<Arc<Provider>>,
) -> HashMap<String, Arc<Provider>> {
    fn build(
        name: &str,
        configs: &BTreeMap<String, ProviderConfig>,
        client: &HttpClient,
        metrics: &AuthMetrics,
        reuse: &dyn Fn(&str) -> Option<Arc<Provider>>,
        built: &mut HashMap<String, Arc<Provider>>,
    ) -> Option<Arc<Provider>> {
        if let Some(p) = built.get(name) {
            return Some(p.clone());
        }
        if let Some(p) = reuse(name).filter(|_| configs.contains_key(name)) {
            built.insert(name.to_owned(), p.clone());
            return Some(p);
        }
        let provider = match configs.get(name)? {
            ProviderConfig::Webhook(c) => Provider::Webhook(Box::new(WebhookProvider::new(
                name,
                c,
                client.clone(),
                metrics,
            ))),
            ProviderConfig::Jwt(c) => Provider::Jwt(JwtProvider::new(name, c, client.clone())),
            ProviderConfig::Group(c) => {
                let members = c
                    .members
                    .iter()
                    .filter_map(|m| {
                        build(m, configs, client, metrics, reuse, built).map(|p| (m.clone(), p))
                    })
                    .collect();
                Provider::Group(GroupProvider::new(c, members))
            }
        };
        let provider = Arc::new(provider);
        built.insert(name.to_owned(), provider.clone());
        Some(provider)
    }
    let mut built = HashMap::new();
    for name in configs.keys() {
        build(name, configs, client, metrics, reuse, &mut built);
    }
    built
}
