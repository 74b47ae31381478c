//! `[rate_limit]`: the per-client-IP limit on the auth routes.

use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

use super::super::problem::Problem;

/// `rate_limit.enabled`: the auth routes are limited.
pub const DEFAULT_RATE_LIMIT_ENABLED: bool = true;
/// Default sustained login rate per client IP.
pub const DEFAULT_RATE_PER_SECOND: u32 = 20;
/// Default login burst per client IP.
pub const DEFAULT_RATE_BURST: u32 = 100;

/// `[rate_limit]` on the auth routes, per client IP.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRateLimit {
    /// Off switch.
    pub enabled: bool,
    /// Sustained requests per second.
    pub per_second: u32,
    /// Burst size.
    pub burst: u32,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        Self {
            enabled: DEFAULT_RATE_LIMIT_ENABLED,
            per_second: DEFAULT_RATE_PER_SECOND,
            burst: DEFAULT_RATE_BURST,
        }
    }
}

/// `[rate_limit]`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Sustained requests per second per IP.
    pub per_second: NonZeroU32,
    /// Burst per IP.
    pub burst: NonZeroU32,
}

/// `[rate_limit]`: `None` when disabled, else a non-zero rate and burst.
pub(in crate::config) fn validate(
    r: &RawRateLimit,
    p: &mut Vec<Problem>,
) -> Option<RateLimitConfig> {
    if !r.enabled {
        return None;
    }
    match (NonZeroU32::new(r.per_second), NonZeroU32::new(r.burst)) {
        (Some(per_second), Some(burst)) => Some(RateLimitConfig { per_second, burst }),
        _ => {
            p.push(Problem::new(
                "rate_limit",
                "per_second and burst must be greater than 0 (or set enabled = false)",
            ));
            None
        }
    }
}
