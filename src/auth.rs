//! The auth core: `AuthCore::decide(app, provider, token)` answers one `Decision` for every door.

pub(crate) mod breaker;
pub(crate) mod cache;
pub(crate) mod check;
pub(crate) mod credentials;
pub(crate) mod decision;
pub(crate) mod gate;
pub(crate) mod grant;
pub(crate) mod group;
pub(crate) mod identity;
pub(crate) mod jwt;
pub(crate) mod known_tokens;
pub(crate) mod provider;
pub(crate) mod revocation;
pub mod session;
pub mod signature;
pub(crate) mod verified;
pub(crate) mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use crate::audit::{self, Audit};
use crate::config::auth::Auth;
use crate::metrics::AuthMetrics;
pub use crate::permissions::{Access, Permissions};
pub(crate) use cache::CacheOutcome;
use cache::DecisionCache;
pub(crate) use check::Check;
pub use check::ProviderError;
pub use decision::{Allow, CompactJson, Decision, Deny, Reason};
pub(crate) use provider::Provider;

/// Which door asked, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// `/auth/login`
    Login,
    /// `/auth/webhook`
    Aggregator,
    /// `/_ditto/auth/login`
    Ditto,
    /// The periodic re-check of an open tunnel (`session.revalidate_seconds`).
    Revalidate,
    /// `/auth/check`, deciding a provider token
    ForwardAuth,
}

impl Door {
    fn label(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Aggregator => "aggregator",
            Self::Ditto => "ditto",
            Self::Revalidate => "revalidate",
            Self::ForwardAuth => "forward_auth",
        }
    }
}

/// Providers by name, the app restrictions, and the decision cache.
pub struct AuthCore {
    providers: HashMap<String, Arc<Provider>>,
    /// What each provider was built from, so a reload can keep the unchanged ones.
    fingerprints: HashMap<String, check::Fingerprint>,
    apps: Option<BTreeMap<String, Vec<String>>>,
    /// Shared with the core a reload builds when the cache settings stay the same.
    cache: Arc<DecisionCache>,
    metrics: AuthMetrics,
    audit: Audit,
    client: check::HttpClient,
}

/// What a reload did to the providers, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ProviderChanges {
    /// New names.
    pub(crate) added: Vec<String>,
    /// Names no longer configured.
    pub(crate) removed: Vec<String>,
    /// Names whose settings, secrets, keys or members changed: built again, answers dropped.
    pub(crate) changed: Vec<String>,
    /// Whether the decision cache was rebuilt (its settings changed), dropping every answer.
    pub(crate) cache_rebuilt: bool,
}

impl AuthCore {
    /// Builds every provider from the validated config over the shared HTTP client.
    pub(crate) fn new(auth: &Auth, client: &check::HttpClient, metrics: AuthMetrics) -> Self {
        let providers = provider::build_all(&auth.providers, client, &metrics, &|_| None);
        Self {
            providers,
            fingerprints: provider::fingerprints(&auth.providers),
            apps: auth.apps.clone(),
            cache: Arc::new(DecisionCache::new(&auth.cache, metrics.clone())),
            metrics,
            client: client.clone(),
            audit: Audit::default(),
        }
    }

    /// The same core, writing each decision to `audit`.
    #[must_use]
    pub(crate) fn with_audit(mut self, audit: Audit) -> Self {
        self.audit = audit;
        self
    }

    /// The core for a reloaded config. Providers whose [`check::Fingerprint`] is unchanged are
    /// kept as they run (connections, circuit breaker, JWKS), and so are their cached answers; a
    /// changed or removed provider's answers are dropped. Logins in flight hold the old core and
    /// finish on the providers they started with.
    pub(crate) fn reconfigure(&self, auth: &Auth) -> (Self, ProviderChanges) {
        let fingerprints = provider::fingerprints(&auth.providers);
        let unchanged = |name: &str| {
            self.fingerprints
                .get(name)
                .is_some_and(|f| fingerprints.get(name) == Some(f))
        };
        let reuse = |name: &str| {
            if unchanged(name) {
                self.providers.get(name).cloned()
            } else {
                None
            }
        };
        let providers = provider::build_all(&auth.providers, &self.client, &self.metrics, &reuse);
        let mut changes = ProviderChanges::default();
        for name in self.fingerprints.keys() {
            if !fingerprints.contains_key(name) {
                changes.removed.push(name.clone());
            } else if !unchanged(name) {
                changes.changed.push(name.clone());
            }
        }
        changes.added = fingerprints
            .keys()
            .filter(|n| !self.fingerprints.contains_key(*n))
            .cloned()
            .collect();
        for list in [
            &mut changes.added,
            &mut changes.removed,
            &mut changes.changed,
        ] {
            list.sort();
        }
        let cache = if self.cache.same_settings(&auth.cache) {
            let gone: std::collections::BTreeSet<String> = changes
                .removed
                .iter()
                .chain(&changes.changed)
                .cloned()
                .collect();
            self.cache.forget_providers(&gone);
            self.cache.clone()
        } else {
            changes.cache_rebuilt = true;
            let mut cache = DecisionCache::new(&auth.cache, self.metrics.clone());
            if let Some(cluster) = self.cache.shared_level() {
                cache.share(cluster);
            }
            Arc::new(cache)
        };
        let core = Self {
            providers,
            fingerprints,
            apps: auth.apps.clone(),
            cache,
            metrics: self.metrics.clone(),
            client: self.client.clone(),
            audit: self.audit.clone(),
        };
        (core, changes)
    }

    /// An auth core with its own provider client and an unexported metrics registry, for tools and
    /// benchmarks that use the library directly.
    ///
    /// # Errors
    /// When the provider client cannot load the platform's root certificates.
    pub fn from_config(auth: &Auth) -> std::io::Result<Self> {
        let metrics = crate::metrics::Metrics::new().map_err(std::io::Error::other)?;
        Ok(Self::new(auth, &check::http_client()?, metrics.auth))
    }

    /// Gives the decision cache a second level shared with the other replicas.
    /// Called on a core just built, so no answer is lost.
    pub(crate) fn share_decisions(&mut self, cluster: Arc<crate::cluster::Cluster>) {
        let mut cache = DecisionCache::new(self.cache.settings(), self.metrics.clone());
        cache.share(cluster);
        self.cache = Arc::new(cache);
    }

    /// Whether every provider is ready (JWT providers: first key fetch done).
    pub(crate) fn ready(&self) -> bool {
        self.providers.values().all(|p| p.ready())
    }

    /// Decides a login. An unknown app or provider is a denial without any call; a provider
    /// error is returned as `Err` (fail closed) and not cached.
    ///
    /// # Errors
    /// [`ProviderError`] when the provider could not give an answer.
    pub async fn decide(
        &self,
        door: Door,
        app: &str,
        provider: &str,
        token: &str,
    ) -> Result<Decision, ProviderError> {
        self.decide_within(door, app, provider, token, None)
            .await
            .map(|(d, _)| d)
    }

    /// Decides the login behind an open tunnel again: a cached answer serves only if the provider
    /// was asked for it less than `max_age` ago, so the answer is never older than that. Also
    /// says how the cache answered: [`CacheOutcome::Stale`] is a `stale_if_error` allow served
    /// because the provider failed, which is no fresh answer.
    ///
    /// # Errors
    /// [`ProviderError`] when the provider could not give an answer.
    pub(crate) async fn recheck(
        &self,
        app: &str,
        provider: &str,
        token: &str,
        max_age: std::time::Duration,
    ) -> Result<(Decision, Option<CacheOutcome>), ProviderError> {
        self.decide_within(Door::Revalidate, app, provider, token, Some(max_age))
            .await
    }

    async fn decide_within(
        &self,
        door: Door,
        app: &str,
        provider: &str,
        token: &str,
        max_age: Option<std::time::Duration>,
    ) -> Result<(Decision, Option<CacheOutcome>), ProviderError> {
        let label = if self.providers.contains_key(provider) {
            provider
        } else {
            "unknown"
        };
        let mut cache = None;
        let result = self
            .decide_inner(app, provider, token, max_age, &mut cache)
            .await;
        let result_label = match &result {
            Ok(d) => d.label(),
            Err(e) => e.label(),
        };
        self.metrics
            .logins
            .with_label_values(&[door.label(), label, result_label])
            .inc();
        if self.audit.enabled() {
            let (result, user, reason) = match &result {
                Ok(Decision::Allow(a)) => ("allow", Some(a.user_id.as_str()), None),
                Ok(Decision::Deny(d)) => ("deny", None, Some(d.reason.as_str())),
                Err(e) => ("error", None, Some(e.reason().as_str())),
            };
            self.audit.emit(&audit::Event::Login {
                result,
                user,
                app,
                provider,
                door: door.label(),
                client_ip: audit::client_ip(),
                reason,
                cache: cache.map(CacheOutcome::label),
            });
        }
        if let Ok(Decision::Allow(a)) = &result {
            audit::note_user(&a.user_id);
        }
        result.map(|d| (d, cache))
    }

    async fn decide_inner(
        &self,
        app: &str,
        provider_name: &str,
        token: &str,
        max_age: Option<std::time::Duration>,
        cache_outcome: &mut Option<CacheOutcome>,
    ) -> Result<Decision, ProviderError> {
        if let Some(apps) = &self.apps {
            match apps.get(app) {
                None => return Ok(Decision::deny(Reason::InvalidApp, "unknown app", None)),
                Some(allowed) if !allowed.iter().any(|p| p == provider_name) => {
                    return Ok(Decision::deny(
                        Reason::InvalidApp,
                        "provider not enabled for this app",
                        None,
                    ));
                }
                Some(_) => {}
            }
        }
        let Some(provider) = self.providers.get(provider_name) else {
            return Ok(Decision::deny(
                Reason::InvalidCredentials,
                "unknown provider",
                None,
            ));
        };
        if token.is_empty() {
            return Ok(Decision::deny(
                Reason::InvalidCredentials,
                "empty token",
                None,
            ));
        }
        let check = Check {
            app,
            provider: provider_name,
            token,
        };
        let key = cache::key(app, provider_name, token);
        let lookup = crate::telemetry::child_span(|| {
            tracing::trace_span!(
                target: crate::telemetry::TARGET,
                "cache_lookup",
                drawbridge.cache = tracing::field::Empty,
            )
        });
        let scope = self
            .fingerprints
            .get(provider_name)
            .copied()
            .unwrap_or_default();
        let looked_up = self
            .cache
            .get_or_check(key, provider_name, &scope, max_age, || async {
                let started = Instant::now();
                let result = provider.check(&check).await;
                self.metrics
                    .provider_duration
                    .with_label_values(&[provider_name])
                    .observe(started.elapsed().as_secs_f64());
                result
            });
        let (decision, outcome) = tracing::Instrument::instrument(looked_up, lookup.clone())
            .await
            .inspect_err(|_| {
                lookup.record("drawbridge.cache", "error");
            })?;
        lookup.record("drawbridge.cache", outcome.label());
        *cache_outcome = Some(outcome);
        if outcome == CacheOutcome::Stale {
            tracing::warn!(
                provider = provider_name,
                "provider failing; served a stale cached allow"
            );
        }
        Ok(decision)
    }

    /// Drops every cached decision, or only those of `user`.
    pub fn purge(&self, user: Option<&str>) {
        self.cache.purge(user);
    }
}
