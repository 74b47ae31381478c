//! `[audit]`: the audit log of security events, and the JSON-lines sink settings it shares with
//! the access log.

use serde::{Deserialize, Serialize};

use super::problem::Problem;
use super::section::{Section, restart_if_changed};
use crate::jsonlines::Target as LogTarget;

/// Default number of audit or access lines queued for the writer before new ones are dropped.
pub const DEFAULT_LOG_QUEUE_LINES: usize = 16_384;
/// Largest audit or access queue: each waiting line holds memory.
pub const MAX_LOG_QUEUE_LINES: usize = 1_000_000;

/// `[audit]`: the audit log; absent `path` means off.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAudit {
    /// A file (appended to, reopened on SIGUSR1), or `-` for standard output.
    pub path: Option<String>,
    /// Lines queued before new ones are dropped (and counted).
    pub queue_lines: usize,
}

impl Default for RawAudit {
    fn default() -> Self {
        Self {
            path: None,
            queue_lines: DEFAULT_LOG_QUEUE_LINES,
        }
    }
}

/// `[audit]`, and the access log's settings: where the lines go and how many may wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// The file, or standard output.
    pub target: LogTarget,
    /// Lines queued before new ones are dropped.
    pub queue_lines: usize,
}

/// `[audit]`: `None` when off.
pub(super) fn validate(raw: &RawAudit, p: &mut Vec<Problem>) -> Option<Audit> {
    sink(raw.path.as_deref(), raw.queue_lines, "audit", p)
}

/// The audit log's writer is opened once, at start.
impl Section for Option<Audit> {
    fn restart_keys(&self, next: &Self, keys: &mut Vec<&'static str>) {
        restart_if_changed("audit", self, next, keys);
    }
}

/// A JSON-lines log's settings from its `path` and queue size; `prefix` is the keys' table
/// (`audit`), or the flag that turns it on (`log.access`, whose keys are `log.access_*`).
pub(super) fn sink(
    path: Option<&str>,
    queue_lines: usize,
    prefix: &str,
    p: &mut Vec<Problem>,
) -> Option<Audit> {
    let (path_key, queue_key) = if prefix == "audit" {
        ("audit.path".to_owned(), "audit.queue_lines".to_owned())
    } else {
        (format!("{prefix}_path"), format!("{prefix}_queue_lines"))
    };
    if !(1..=MAX_LOG_QUEUE_LINES).contains(&queue_lines) {
        p.push(Problem::new(
            queue_key,
            format!("must be between 1 and {MAX_LOG_QUEUE_LINES}"),
        ));
    }
    let path = path?;
    if path.trim().is_empty() {
        p.push(Problem::new(
            path_key,
            "must be a file path, or \"-\" for standard output",
        ));
        return None;
    }
    Some(Audit {
        target: LogTarget::parse(path),
        queue_lines,
    })
}
