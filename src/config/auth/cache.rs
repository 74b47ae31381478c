//! `[cache]`: the decision cache's size and lifetimes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::super::problem::Problem;

/// Default decision cache size.
pub const DEFAULT_CACHE_MAX_ENTRIES: u64 = 100_000;
/// Default cap on how long an allow is cached.
pub const DEFAULT_CACHE_MAX_TTL_SECONDS: u64 = 300;
/// Default lifetime of a cached denial.
pub const DEFAULT_CACHE_NEGATIVE_TTL_SECONDS: u64 = 5;
/// Default window in which an expired allow may be served while its provider fails: none.
pub const DEFAULT_CACHE_STALE_IF_ERROR_SECONDS: u64 = 0;

/// `[cache]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCache {
    /// Entries kept at most.
    pub max_entries: u64,
    /// Cap on an allow's lifetime in the cache.
    pub max_ttl_seconds: u64,
    /// Lifetime of a cached denial.
    pub negative_ttl_seconds: u64,
    /// How long past its expiry an allow may be served while its provider fails.
    pub stale_if_error_seconds: u64,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            max_entries: DEFAULT_CACHE_MAX_ENTRIES,
            max_ttl_seconds: DEFAULT_CACHE_MAX_TTL_SECONDS,
            negative_ttl_seconds: DEFAULT_CACHE_NEGATIVE_TTL_SECONDS,
            stale_if_error_seconds: DEFAULT_CACHE_STALE_IF_ERROR_SECONDS,
        }
    }
}

/// `[cache]`
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Entries kept at most.
    pub max_entries: u64,
    /// Cap on an allow's lifetime.
    pub max_ttl: Duration,
    /// Lifetime of a denial.
    pub negative_ttl: Duration,
    /// Window in which an expired allow may be served while its provider fails.
    pub stale_if_error: Duration,
}

/// `[cache]`: a bounded cache that keeps allows for some time.
pub(in crate::config) fn validate(c: &RawCache, p: &mut Vec<Problem>) -> CacheConfig {
    if c.max_entries == 0 {
        p.push(Problem::new("cache.max_entries", "must be greater than 0"));
    }
    if c.max_ttl_seconds == 0 {
        p.push(Problem::new(
            "cache.max_ttl_seconds",
            "must be greater than 0 (set negative_ttl_seconds to 0 to never cache denials)",
        ));
    }
    CacheConfig {
        max_entries: c.max_entries,
        max_ttl: Duration::from_secs(c.max_ttl_seconds),
        negative_ttl: Duration::from_secs(c.negative_ttl_seconds),
        stale_if_error: Duration::from_secs(c.stale_if_error_seconds),
    }
}
