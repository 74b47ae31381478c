//! The decision cache (moka): keyed by a SHA-256 of (app, provider, token), so no raw token is kept.
//! Allows live until their expiry (capped), denials briefly, errors never.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use sha2::{Digest, Sha256};

use super::provider::ProviderError;
use super::{Allow, Decision};
use crate::clock::unix_now;
use crate::config::auth::CacheConfig;
use crate::metrics::AuthMetrics;

/// SHA-256 over length-prefixed (app, provider, token).
pub(crate) type Key = [u8; 32];

/// The cache key; length prefixes keep ("a","bc") and ("ab","c") apart.
pub(crate) fn key(app: &str, provider: &str, token: &str) -> Key {
    let mut h = Sha256::new();
    for part in [app, provider, token] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// How a lookup was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheOutcome {
    /// Found fresh.
    Hit,
    /// This call asked the provider.
    Miss,
    /// Another call was already asking; this one shared its answer.
    Coalesced,
    /// The provider failed and a recently expired allow was served.
    Stale,
}

impl CacheOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Coalesced => "coalesced",
            Self::Stale => "stale",
        }
    }
}

#[derive(Clone)]
struct Entry {
    decision: Decision,
    ttl: Duration,
    /// The provider that answered, so a reload can drop the answers of a provider it changed.
    provider: Arc<str>,
}

impl Entry {
    fn user(&self) -> Option<&str> {
        match &self.decision {
            Decision::Allow(a) => Some(&a.user_id),
            Decision::Deny(_) => None,
        }
    }
}

/// Each entry lives for its own TTL.
struct PerEntry;

impl Expiry<Key, Entry> for PerEntry {
    fn expire_after_create(&self, _: &Key, value: &Entry, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _: &Key,
        value: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

pub(crate) struct DecisionCache {
    fresh: Cache<Key, Entry>,
    /// Allows kept past their TTL for `stale_if_error`; `None` when that is 0.
    stale: Option<Cache<Key, Entry>>,
    config: CacheConfig,
    metrics: AuthMetrics,
}

impl DecisionCache {
    pub(crate) fn new(config: &CacheConfig, metrics: AuthMetrics) -> Self {
        let build = || {
            Cache::builder()
                .max_capacity(config.max_entries)
                .expire_after(PerEntry)
                .support_invalidation_closures()
                .build()
        };
        Self {
            fresh: build(),
            stale: (!config.stale_if_error.is_zero()).then(build),
            config: config.clone(),
            metrics,
        }
    }

    fn ttl(&self, d: &Decision) -> Duration {
        match d {
            Decision::Allow(a) => Duration::from_secs(a.expires_at.saturating_sub(unix_now()))
                .min(self.config.max_ttl),
            Decision::Deny(_) => self.config.negative_ttl,
        }
    }

    /// The cached decision, or `check`'s. Concurrent misses on one key run `check` once and share
    /// its result, error included; errors are not stored.
    pub(crate) async fn get_or_check<F, Fut>(
        &self,
        key: Key,
        provider: &str,
        check: F,
    ) -> Result<(Decision, CacheOutcome), ProviderError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Decision, ProviderError>>,
    {
        if let Some(e) = self.fresh.get(&key).await {
            return Ok(self.record(e.decision, CacheOutcome::Hit));
        }
        let ran = AtomicBool::new(false);
        let loaded = self
            .fresh
            .try_get_with(key, async {
                ran.store(true, Ordering::Relaxed);
                let decision = check().await?;
                let ttl = self.ttl(&decision);
                Ok::<_, ProviderError>(Entry {
                    decision,
                    ttl,
                    provider: Arc::from(provider),
                })
            })
            .await;
        let ran = ran.load(Ordering::Relaxed);
        match loaded {
            Ok(entry) => {
                if ran {
                    if let (Some(stale), Decision::Allow(allow)) = (&self.stale, &entry.decision) {
                        // Served only while the provider fails, and good until the stale window closes.
                        let extended = Allow {
                            expires_at: allow.expires_at + self.config.stale_if_error.as_secs(),
                            ..(**allow).clone()
                        };
                        let keep = Entry {
                            ttl: entry.ttl + self.config.stale_if_error,
                            decision: Decision::Allow(Arc::new(extended)),
                            provider: entry.provider.clone(),
                        };
                        stale.insert(key, keep).await;
                    }
                    self.metrics
                        .cache_entries
                        .set(i64::try_from(self.fresh.entry_count()).unwrap_or(i64::MAX));
                }
                let outcome = if ran {
                    CacheOutcome::Miss
                } else {
                    CacheOutcome::Coalesced
                };
                Ok(self.record(entry.decision, outcome))
            }
            Err(error) => {
                if let Some(stale) = &self.stale {
                    if let Some(e) = stale.get(&key).await {
                        return Ok(self.record(e.decision, CacheOutcome::Stale));
                    }
                }
                let outcome = if ran {
                    CacheOutcome::Miss
                } else {
                    CacheOutcome::Coalesced
                };
                self.metrics
                    .cache_requests
                    .with_label_values(&[outcome.label()])
                    .inc();
                Err(Arc::unwrap_or_clone(error))
            }
        }
    }

    fn record(&self, d: Decision, outcome: CacheOutcome) -> (Decision, CacheOutcome) {
        self.metrics
            .cache_requests
            .with_label_values(&[outcome.label()])
            .inc();
        (d, outcome)
    }

    /// Drops every entry, or only `user`'s allows.
    pub(crate) fn purge(&self, user: Option<&str>) {
        let caches = std::iter::once(&self.fresh).chain(self.stale.as_ref());
        for cache in caches {
            match user {
                None => cache.invalidate_all(),
                Some(user) => {
                    let user = user.to_owned();
                    // Only fails when closures are not enabled, which `new` does.
                    let _ =
                        cache.invalidate_entries_if(move |_, e| e.user() == Some(user.as_str()));
                }
            }
        }
        self.metrics
            .cache_entries
            .set(i64::try_from(self.fresh.entry_count()).unwrap_or(i64::MAX));
    }

    /// Whether a cache built from `config` would behave as this one does (a reload keeps it then).
    pub(crate) fn same_settings(&self, config: &CacheConfig) -> bool {
        let (a, b) = (&self.config, config);
        a.max_entries == b.max_entries
            && a.max_ttl == b.max_ttl
            && a.negative_ttl == b.negative_ttl
            && a.stale_if_error == b.stale_if_error
    }

    /// Drops every answer of the named providers (removed or changed by a reload); the answers of
    /// every other provider stay.
    pub(crate) fn forget_providers(&self, names: &std::collections::BTreeSet<String>) {
        if names.is_empty() {
            return;
        }
        let caches = std::iter::once(&self.fresh).chain(self.stale.as_ref());
        for cache in caches {
            let names = names.clone();
            // Only fails when closures are not enabled, which `new` does.
            let _ = cache.invalidate_entries_if(move |_, e| names.contains(&*e.provider));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_separates_fields() {
        assert_ne!(key("a", "bc", "t"), key("ab", "c", "t"));
        assert_eq!(key("a", "b", "t"), key("a", "b", "t"));
    }
}
