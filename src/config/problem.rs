//! `Problem`: one thing wrong with a config, as every section's validation reports it.

use std::fmt;

/// One thing wrong with a config, at a key path such as `listen.addr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path.
    pub path: String,
    /// What is wrong, without the value (it may be a secret).
    pub message: String,
    /// The 1-based line of the file the key (or its nearest enclosing table) is on, when known.
    pub line: Option<usize>,
}

impl Problem {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            line: None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}
