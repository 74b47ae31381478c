//! The wall clock in Unix seconds, the one time base of tokens, sessions and caches.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch; 0 should the clock stand before it.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
