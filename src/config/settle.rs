//! `[reload]`: how a changed file is picked up, after it has settled.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::problem::Problem;
use super::section::Section;

/// Default time a changed watched file must stay unchanged before a reload applies it.
pub const DEFAULT_RELOAD_SETTLE_MS: u64 = 500;
/// Shortest `reload.settle_ms`: below it, a writer's pause between two pieces is likely longer.
pub(super) const MIN_RELOAD_SETTLE_MS: u64 = 50;
/// Longest `reload.settle_ms` (one minute).
pub(super) const MAX_RELOAD_SETTLE_MS: u64 = 60_000;

/// `[reload]`: how a changed file is picked up.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawReload {
    /// Time a changed watched file must stay unchanged before it is applied.
    pub settle_ms: u64,
}

impl Default for RawReload {
    fn default() -> Self {
        Self {
            settle_ms: DEFAULT_RELOAD_SETTLE_MS,
        }
    }
}

/// `[reload]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reload {
    /// Time a changed watched file must stay unchanged before it is applied (SIGHUP applies at once).
    pub settle: Duration,
}

/// The settle time is read at each change.
impl Section for Reload {}

/// `[reload]`: the settle time, within its bounds.
pub(super) fn settings(raw: &RawReload, p: &mut Vec<Problem>) -> Reload {
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
