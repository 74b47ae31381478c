//! Canonical request paths (RFC 3986 §6.2.2): the one spelling of a path that the gate decides on
//! and the sync server receives.
//!
//! Routers read the same bytes differently: nginx merges `//`, decodes `%73` to `s` and resolves
//! `/a/../sync` before it matches a `location`; a framework router may do some of that, or other
//! things (Tomcat reads `..;` as `..`). A gate that compares the raw path while the sync server
//! compares a normalised one lets `//sync` through where `/sync` is stopped. So drawbridge
//! rewrites every target to one canonical form *before* routing, and forwards that form: both
//! sides then decide on the same string. The rules, in order, per path segment:
//!
//! - percent-escapes of unreserved characters (`ALPHA DIGIT - . _ ~`) are decoded, every other
//!   escape keeps its byte with upper-case hex, and raw bytes above ASCII are escaped;
//! - empty segments are dropped (repeated slashes merge), then `.` and `..` segments are removed as
//!   RFC 3986 §5.2.4 does (`..` above the root stays at the root); a trailing slash is kept.
//!
//! Spellings that would still mean different things to different readers after that are refused:
//! an encoded `/` or `\` inside a segment, a raw `\`, a control character (raw or escaped, such as
//! `%00`), a double escape (`%25` followed by two hex digits), a broken escape, and a dot segment
//! carrying parameters (`..;x`). Only the path is rewritten; the query is kept as it came.
//!
//! Written here rather than taken from the `url` crate: WHATWG URL parsing reads `\` as `/`, keeps
//! empty segments and leaves unreserved escapes encoded, which is not the normalisation a gate needs.

use std::borrow::Cow;

use http::Uri;
use http::uri::PathAndQuery;

/// Why a request target has no canonical form drawbridge will forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TargetError {
    /// The path does not start with `/` (authority-form, or `*` outside `OPTIONS`).
    #[error("the request path must start with /")]
    NotAbsolutePath,
    /// `%2F` inside a segment: one reader splits there, another does not.
    #[error("an encoded slash (%2F) in a path segment is ambiguous")]
    EncodedSlash,
    /// `%5C` inside a segment: some servers read `\` as `/`.
    #[error("an encoded backslash (%5C) in a path segment is ambiguous")]
    EncodedBackslash,
    /// A raw `\`: some servers read it as `/`.
    #[error("a backslash in the path is ambiguous")]
    Backslash,
    /// A control character, raw or escaped (`%00`..`%1F`, `%7F`).
    #[error("a control character (such as %00) is not allowed in the path")]
    ControlCharacter,
    /// `%25` followed by two hex digits: a reader that decodes twice sees another path.
    #[error("a double-encoded escape (%25 followed by two hex digits) is ambiguous")]
    DoubleEncoded,
    /// A `%` not followed by two hex digits.
    #[error("a % in the path must start a two-digit hex escape")]
    InvalidEscape,
    /// `.;x` or `..;x`: some servers drop the parameters and read a dot segment.
    #[error("a dot segment with parameters (such as ..;x) is ambiguous")]
    DotSegmentParameters,
}

/// The canonical form of an absolute `path` (no query), or why it has none; borrowed when
/// `path` is canonical already, as nearly every request's is.
///
/// # Errors
/// [`TargetError`] when the path is not absolute or holds an ambiguous spelling.
pub(crate) fn canonical_path(path: &str) -> Result<Cow<'_, str>, TargetError> {
    if plainly_canonical(path) {
        Ok(Cow::Borrowed(path))
    } else {
        normalise(path).map(Cow::Owned)
    }
}

/// The canonical target of `uri`: its canonical path followed by its query exactly as received;
/// `None` when the target is canonical already.
///
/// # Errors
/// [`TargetError`] when the path has no canonical form.
pub(crate) fn canonical_target(uri: &Uri) -> Result<Option<PathAndQuery>, TargetError> {
    let Cow::Owned(path) = canonical_path(uri.path())? else {
        return Ok(None);
    };
    let target = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    // Every byte is one the original URI held, or an escape: this parses.
    PathAndQuery::try_from(target)
        .map(Some)
        .map_err(|_| TargetError::InvalidEscape)
}

/// A path with nothing to normalise or refuse: absolute, no `//`, no segment starting with `.`,
/// no `%`, no `\`, only printable ASCII. Checked without allocating.
fn plainly_canonical(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains("//")
        && !path.contains("/.")
        && path
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'%' && b != b'\\')
}

/// Resolves a path segment by segment (see the module docs).
fn normalise(path: &str) -> Result<String, TargetError> {
    let rest = path.strip_prefix('/').ok_or(TargetError::NotAbsolutePath)?;
    let mut kept: Vec<String> = Vec::new();
    let mut trailing_slash = false;
    for raw in rest.split('/') {
        let segment = canonical_segment(raw)?;
        match segment.as_str() {
            "" | "." => trailing_slash = true,
            ".." => {
                kept.pop();
                trailing_slash = true;
            }
            _ => {
                kept.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// `prefix` matches whole path segments: `/sync` matches `/sync` and `/sync/x`, not `/syncer`.
/// An empty prefix (or `/`) matches every path.
pub(crate) fn has_segment_prefix(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
        None => false,
    }
}

/// One segment (between slashes) in canonical form.
fn canonical_segment(raw: &str) -> Result<String, TargetError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let byte = escaped_byte(bytes, i).ok_or(TargetError::InvalidEscape)?;
                match byte {
                    b'/' => return Err(TargetError::EncodedSlash),
                    b'\\' => return Err(TargetError::EncodedBackslash),
                    0x00..=0x1F | 0x7F => return Err(TargetError::ControlCharacter),
                    b if is_unreserved(b) => out.push(char::from(b)),
                    b => push_escape(&mut out, b),
                }
                i += 3;
            }
            b'\\' => return Err(TargetError::Backslash),
            0x00..=0x1F | 0x7F => return Err(TargetError::ControlCharacter),
            b if b >= 0x80 => {
                push_escape(&mut out, b);
                i += 1;
            }
            b => {
                out.push(char::from(b));
                i += 1;
            }
        }
    }
    // Checked on the result: `%25%32%65` spells `%2e` only once `%32%65` is decoded.
    if out
        .match_indices("%25")
        .any(|(at, _)| hex_pair_at(out.as_bytes(), at + 3))
    {
        return Err(TargetError::DoubleEncoded);
    }
    if let Some((name, _)) = out.split_once(';')
        && (name == "." || name == "..")
    {
        return Err(TargetError::DotSegmentParameters);
    }
    Ok(out)
}

/// The byte escaped as `%XY` at `at`, if a valid escape starts there.
fn escaped_byte(bytes: &[u8], at: usize) -> Option<u8> {
    if bytes.get(at) != Some(&b'%') {
        return None;
    }
    let hi = hex_value(*bytes.get(at + 1)?)?;
    let lo = hex_value(*bytes.get(at + 2)?)?;
    Some((hi << 4) | lo)
}

/// Whether two hex digits start at `at`.
fn hex_pair_at(bytes: &[u8], at: usize) -> bool {
    let digit = |i: usize| bytes.get(i).copied().and_then(hex_value).is_some();
    digit(at) && digit(at + 1)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0x0F)]));
}

#[cfg(test)]
mod tests;
