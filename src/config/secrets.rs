//! `${env:NAME}` and `${file:PATH}` references, resolved in every string value of the file.

use std::collections::HashMap;
use std::path::Path;

use super::problem::Problem;

/// Where references are looked up. Tests pass a map instead of the process environment.
pub trait Sources {
    /// The value of environment variable `name`, if set.
    fn env(&self, name: &str) -> Option<String>;
    /// The contents of `path`, trailing newline removed.
    ///
    /// # Errors
    /// Returns the I/O error that reading the file gave.
    fn file(&self, path: &Path) -> std::io::Result<String>;
}

/// The real process environment and file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct System;

impl Sources for System {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn file(&self, path: &Path) -> std::io::Result<String> {
        secret_text(std::fs::read(path)?)
    }
}

/// A `${file:..}` secret's bytes as the value it stands for: UTF-8, its trailing line ends removed
/// (editors and `echo` add one; a secret never ends in one).
///
/// # Errors
/// [`std::io::ErrorKind::InvalidData`] when the bytes are not UTF-8.
pub fn secret_text(bytes: Vec<u8>) -> std::io::Result<String> {
    let mut s = String::from_utf8(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let trimmed = s.trim_end_matches(['\n', '\r']).len();
    s.truncate(trimmed);
    Ok(s)
}

/// The real environment and file system, remembering which files were read, so a watcher can
/// watch the directories of `${file:..}` secrets too.
#[derive(Debug, Default)]
pub struct Recording {
    files: std::sync::Mutex<Vec<std::path::PathBuf>>,
}

impl Recording {
    /// The files read so far.
    pub fn files(&self) -> Vec<std::path::PathBuf> {
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Sources for Recording {
    fn env(&self, name: &str) -> Option<String> {
        System.env(name)
    }

    fn file(&self, path: &Path) -> std::io::Result<String> {
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(path.to_owned());
        System.file(path)
    }
}

/// Environment from a map; files from the file system.
impl Sources for HashMap<String, String> {
    fn env(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }

    fn file(&self, path: &Path) -> std::io::Result<String> {
        System.file(path)
    }
}

/// Replaces every string that is exactly `${env:NAME}` or `${file:PATH}` with what it names.
/// Problems name the key path and never the resolved value.
pub(super) fn resolve(
    value: &mut toml::Value,
    path: &mut Vec<String>,
    src: &dyn Sources,
    problems: &mut Vec<Problem>,
) {
    match value {
        toml::Value::String(s) => {
            if let Some(resolved) = resolve_one(s, path, src, problems) {
                *s = resolved;
            }
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                resolve(item, path, src, problems);
                path.pop();
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                path.push(key.clone());
                resolve(item, path, src, problems);
                path.pop();
            }
        }
        _ => {}
    }
}

fn resolve_one(
    s: &str,
    path: &[String],
    src: &dyn Sources,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    let inner = s.strip_prefix("${")?.strip_suffix('}')?;
    let at = path.join(".");
    if let Some(name) = inner.strip_prefix("env:") {
        match src.env(name) {
            Some(v) => Some(v),
            None => {
                problems.push(Problem::new(
                    at,
                    format!("environment variable {name} is not set"),
                ));
                None
            }
        }
    } else if let Some(file) = inner.strip_prefix("file:") {
        match src.file(Path::new(file)) {
            Ok(v) => Some(v),
            Err(e) => {
                problems.push(Problem::new(at, format!("cannot read {file}: {e}")));
                None
            }
        }
    } else {
        problems.push(Problem::new(
            at,
            "unknown reference; use ${env:NAME} or ${file:PATH}",
        ));
        None
    }
}

/// The real environment, but every `${file:..}` stands in as a fixed placeholder: for checking a
/// config on a machine without the files it names (`drawbridge check --skip-files`).
#[derive(Debug, Default, Clone, Copy)]
pub struct SkipFiles;

/// What `${file:..}` reads as under [`SkipFiles`]: valid base64 and a valid header value.
pub const SKIPPED_FILE_PLACEHOLDER: &str = "c2tpcHBlZA==";

impl Sources for SkipFiles {
    fn env(&self, name: &str) -> Option<String> {
        System.env(name)
    }

    fn file(&self, _path: &Path) -> std::io::Result<String> {
        Ok(SKIPPED_FILE_PLACEHOLDER.to_owned())
    }
}
