//! `[shutdown]`: how long a SIGTERM drains before the process exits.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::problem::Problem;
use super::section::{Section, positive};

/// Default drain deadline on SIGTERM; keep it below the pod's terminationGracePeriodSeconds.
pub const DEFAULT_GRACE_SECONDS: u64 = 25;
/// Largest `shutdown.grace_seconds` (one hour).
pub const MAX_GRACE_SECONDS: u64 = 3600;

/// `[shutdown]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawShutdown {
    /// Drain deadline after SIGTERM.
    pub grace_seconds: u64,
}

impl Default for RawShutdown {
    fn default() -> Self {
        Self {
            grace_seconds: DEFAULT_GRACE_SECONDS,
        }
    }
}

/// `[shutdown]`
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Drain deadline after SIGTERM.
    pub grace: Duration,
}

/// The grace a SIGTERM drains with is read when it comes.
impl Section for Shutdown {}

/// `[shutdown]`: a grace between one second and an hour.
pub(super) fn validate(raw: &RawShutdown, p: &mut Vec<Problem>) -> Shutdown {
    positive(&[("shutdown.grace_seconds", raw.grace_seconds)], p);
    if raw.grace_seconds > MAX_GRACE_SECONDS {
        p.push(Problem::new(
            "shutdown.grace_seconds",
            format!("must be at most {MAX_GRACE_SECONDS}"),
        ));
    }
    Shutdown {
        grace: Duration::from_secs(raw.grace_seconds),
    }
}
