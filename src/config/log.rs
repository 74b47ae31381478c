//! `[log]`: the diagnostic log's format and level, and the access log.

use serde::{Deserialize, Serialize};

use super::audit::{Audit, DEFAULT_LOG_QUEUE_LINES, sink};
use super::problem::Problem;
use super::section::{Section, restart_if_changed};

/// Default log level (a tracing `EnvFilter` directive).
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// `log.access`: no access log.
pub const DEFAULT_LOG_ACCESS: bool = false;
/// Default access log destination when `log.access = true`: standard output.
pub const DEFAULT_ACCESS_PATH: &str = "-";

/// Log line format.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RawLogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// `text` or `json`.
    pub format: RawLogFormat,
    /// A tracing `EnvFilter` directive, e.g. `info` or `drawbridge=debug,info`.
    pub level: String,
    /// One JSON line per HTTP request.
    pub access: bool,
    /// Where access lines go: a file, or `-` for standard output.
    pub access_path: String,
    /// Access lines queued before new ones are dropped.
    pub access_queue_lines: usize,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: RawLogFormat::default(),
            level: DEFAULT_LOG_LEVEL.to_owned(),
            access: DEFAULT_LOG_ACCESS,
            access_path: DEFAULT_ACCESS_PATH.to_owned(),
            access_queue_lines: DEFAULT_LOG_QUEUE_LINES,
        }
    }
}

/// `[log]`
#[derive(Debug, Clone)]
pub struct Log {
    /// Line format.
    pub format: RawLogFormat,
    /// `EnvFilter` directive.
    pub level: String,
    /// The access log, when on.
    pub access: Option<Audit>,
}

/// `[log]`: a level the filter parses, and the access log's sink when it is on.
pub(super) fn validate(raw: &RawLog, p: &mut Vec<Problem>) -> Log {
    if tracing_subscriber::EnvFilter::builder()
        .parse(&raw.level)
        .is_err()
    {
        p.push(Problem::new(
            "log.level",
            "not a valid level or filter (e.g. \"info\" or \"drawbridge=debug,info\")",
        ));
    }
    let access = if raw.access {
        sink(
            Some(&raw.access_path),
            raw.access_queue_lines,
            "log.access",
            p,
        )
    } else {
        None
    };
    Log {
        format: raw.format,
        level: raw.level.clone(),
        access,
    }
}

/// The format and the access log's writer are set up once, at start. The level reloads where
/// the process gave the reloader a hook for it; the reloader decides that.
impl Section for Log {
    fn restart_keys(&self, next: &Self, keys: &mut Vec<&'static str>) {
        restart_if_changed("log.format", &self.format, &next.format, keys);
        restart_if_changed("log.access", &self.access, &next.access, keys);
    }
}
