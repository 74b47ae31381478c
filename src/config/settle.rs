//! `[reload]`: how a changed file is picked up, after it has settled.

use std::time::Duration;

use super::problem::Problem;
use super::raw;

/// Shortest `reload.settle_ms`: below it, a writer's pause between two pieces is likely longer.
pub(super) const MIN_RELOAD_SETTLE_MS: u64 = 50;
/// Longest `reload.settle_ms` (one minute).
pub(super) const MAX_RELOAD_SETTLE_MS: u64 = 60_000;

/// `[reload]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reload {
    /// Time a changed watched file must stay unchanged before it is applied (SIGHUP applies at once).
    pub settle: Duration,
}

/// `[reload]`: the settle time, within its bounds.
pub(super) fn settings(raw: &raw::RawReload, p: &mut Vec<Problem>) -> Reload {
    if !(MIN_RELOAD_SETTLE_MS..=MAX_RELOAD_SETTLE_MS).contains(&raw.settle_ms) {
        p.push(Problem::new(
            "reload.settle_ms",
            format!("must be between {MIN_RELOAD_SETTLE_MS} and {MAX_RELOAD_SETTLE_MS}"),
        ));
    }
    Reload {
        settle: Duration::from_millis(raw.settle_ms),
    }
}
