//! `Section`: what each config section tells the whole config about itself (which of its keys
//! only a restart applies, which files it names), and the checks several sections share.

use std::net::SocketAddr;

use base64::Engine;
use std::path::PathBuf;

use super::problem::Problem;

/// One section of the validated config, as a reload sees it. Every section implements it, and
/// `Config` composes [`Config::restart_changes`](super::Config::restart_changes) and
/// [`Config::named_files`](super::Config::named_files) from every section, so a section's rule is
/// written once, in its own file.
pub(crate) trait Section {
    /// Pushes the keys that differ between `self` (running) and `next` and that only a restart
    /// applies. By default a reload applies every key of the section.
    fn restart_keys(&self, next: &Self, keys: &mut Vec<&'static str>) {
        let _ = (next, keys);
    }

    /// Pushes the files the section names that a reload reads again (so a change to one of them
    /// is a change to the config). By default none.
    fn named_files(&self, files: &mut Vec<PathBuf>) {
        let _ = files;
    }
}

/// Pushes `key` when the running and next values differ: a key only a restart applies.
pub(crate) fn restart_if_changed<T: PartialEq + ?Sized>(
    key: &'static str,
    running: &T,
    next: &T,
    keys: &mut Vec<&'static str>,
) {
    if running != next {
        keys.push(key);
    }
}

/// An `IP:port` socket address at `key`.
pub(crate) fn socket_addr(s: &str, key: &str, p: &mut Vec<Problem>) -> Option<SocketAddr> {
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            p.push(Problem::new(
                key,
                "not an IP:port socket address (e.g. \"0.0.0.0:8443\")",
            ));
            None
        }
    }
}

/// A problem at each key whose value is 0.
pub(crate) fn positive(values: &[(&str, u64)], p: &mut Vec<Problem>) {
    for (key, v) in values {
        if *v == 0 {
            p.push(Problem::new(*key, "must be greater than 0"));
        }
    }
}

/// A non-empty base64 secret at `key`, decoded.
pub(crate) fn base64_secret(value: &str, key: &str, p: &mut Vec<Problem>) -> Option<Vec<u8>> {
    match base64::engine::general_purpose::STANDARD.decode(value.trim()) {
        Ok(bytes) if !bytes.is_empty() => Some(bytes),
        _ => {
            p.push(Problem::new(key, "must be non-empty base64"));
            None
        }
    }
}
