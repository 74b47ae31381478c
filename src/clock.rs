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

/// A gate that opens at most once per interval, so a warning that a flood could repeat reaches
/// the log at warn once in a while (and at debug in between) instead of once per event.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    /// Unix seconds of the last opening; 0 before the first.
    last: std::sync::atomic::AtomicU64,
}

// === impl Throttle ===

impl Throttle {
    /// A gate that opens on its first call.
    pub(crate) const fn new() -> Self {
        Self {
            last: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether `every_secs` have passed since the last time this returned `true` (or it never did).
    pub(crate) fn ready(&self, every_secs: u64) -> bool {
        use std::sync::atomic::Ordering;
        let now = unix_now().max(1);
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now < last.saturating_add(every_secs) {
            return false;
        }
        self.last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_opens_once_per_interval() {
        let t = Throttle::new();
        assert!(t.ready(60));
        assert!(!t.ready(60));
        assert!(!t.ready(60));
        assert!(t.ready(0), "an interval of zero always opens");
    }
}
