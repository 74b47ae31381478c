//! The wall clock in Unix seconds, the one time base of tokens, sessions and caches.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch; 0 should the clock stand before it.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch; 0 should the clock stand before it.
pub(crate) fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
