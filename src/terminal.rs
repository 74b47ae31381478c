//! Log text a terminal cannot act on: which characters a log line may never hold raw, and how
//! the JSON lines and the diagnostic log escape them.
//!
//! Control characters in a log reach whoever reads it with `tail` or `less -R`: C0 (ESC starts
//! a CSI sequence), DEL, and the C1 controls U+0080–U+009F (U+009B is an 8-bit CSI on many
//! terminals). User IDs, paths and header values come from clients and providers, so every log
//! writes these as escapes. serde_json escapes only C0, and tracing-subscriber escapes only the
//! message of an event, so both are completed here; the code is written by hand because no crate
//! does exactly this.

use std::io::{self, Write};

/// Whether `c` must never reach a log raw: C0, DEL or C1.
pub(crate) fn is_unsafe(c: char) -> bool {
    let code = u32::from(c);
    code < 0x20 || (0x7f..=0x9f).contains(&code)
}

/// Writes `value` as a JSON string in which, besides what JSON requires (`"`, `\`, C0), DEL and
/// C1 are written as `\u00XX` too.
pub(crate) fn json_string(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    let mut start = 0;
    for (i, c) in value.char_indices() {
        let short: &[u8] = match c {
            '"' => b"\\\"",
            '\\' => b"\\\\",
            '\n' => b"\\n",
            '\r' => b"\\r",
            '\t' => b"\\t",
            c if is_unsafe(c) => b"",
            _ => continue,
        };
        out.extend_from_slice(&value.as_bytes()[start..i]);
        if short.is_empty() {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.extend_from_slice(short);
        }
        start = i + c.len_utf8();
    }
    out.extend_from_slice(&value.as_bytes()[start..]);
    out.push(b'"');
}

/// How the diagnostic log is formatted, which decides how an escape is spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spelling {
    /// `tracing`'s text format: `\x7f`, `\u{9b}`, as `tracing` spells the escapes it makes itself.
    Text,
    /// JSON lines: `\u007f`, `\u009b` (inside a JSON string, where alone such a character can be).
    Json,
}

/// A writer for the diagnostic log that escapes every C0 control but tab and the line's final
/// newline, DEL and C1 before the bytes reach `inner`. The formatter hands it one whole event per
/// write, so a newline inside a value (which would start a forged line) is escaped too.
///
/// Use it with colours off: the formatter's own colour codes would be escaped as well.
#[derive(Debug)]
pub struct SafeWriter<W> {
    inner: W,
    spelling: Spelling,
    buf: Vec<u8>,
}

impl<W: Write> SafeWriter<W> {
    /// Escapes what is written to `inner` as `spelling` spells it.
    pub fn new(inner: W, spelling: Spelling) -> Self {
        Self {
            inner,
            spelling,
            buf: Vec::new(),
        }
    }

    fn escape(&mut self, bytes: &[u8]) {
        self.buf.clear();
        let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        // Invalid UTF-8 is written as it is: neither formatter produces it.
        let Ok(text) = std::str::from_utf8(body) else {
            self.buf.extend_from_slice(bytes);
            return;
        };
        let mut start = 0;
        for (i, c) in text.char_indices() {
            if c == '\t' || !is_unsafe(c) {
                continue;
            }
            self.buf.extend_from_slice(&body[start..i]);
            let code = u32::from(c);
            let _ = match (self.spelling, code) {
                (Spelling::Json, _) => write!(self.buf, "\\u{code:04x}"),
                (Spelling::Text, 0..=0x7f) => write!(self.buf, "\\x{code:02x}"),
                (Spelling::Text, _) => write!(self.buf, "\\u{{{code:x}}}"),
            };
            start = i + c.len_utf8();
        }
        self.buf.extend_from_slice(&body[start..]);
        if body.len() < bytes.len() {
            self.buf.push(b'\n');
        }
    }
}

impl<W: Write> Write for SafeWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.write_all(bytes)?;
        Ok(bytes.len())
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.escape(bytes);
        self.inner.write_all(&self.buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_string_escapes_c0_del_and_c1_and_stays_json() {
        let value = "a\"b\\c\nd\te\u{0}f\u{1b}[31mg\u{7f}h\u{80}i\u{9b}31mj\u{9f}k\u{a0}é✓";
        let mut out = Vec::new();
        json_string(&mut out, value);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.chars().any(is_unsafe), "{text:?}");
        assert_eq!(serde_json::from_str::<String>(&text).unwrap(), value);
        for escape in [
            r"\u0000", r"\u001b", r"\u007f", r"\u0080", r"\u009b", r"\u009f",
        ] {
            assert!(text.contains(escape), "{escape} missing in {text}");
        }
        assert!(text.contains("\u{a0}é✓"), "printable text stays: {text}");
    }

    /// Formats one event with a real `tracing` formatter writing through [`SafeWriter`].
    fn logged(json: bool) -> String {
        use tracing_subscriber::layer::SubscriberExt;
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = out.clone();
        let spelling = if json { Spelling::Json } else { Spelling::Text };
        let make = move || SafeWriter::new(Sink(sink.clone()), spelling);
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(make);
        let emit = || {
            let user = "mallory\u{9b}2J\u{7f}\u{1b}[31m\nforged line";
            tracing::warn!(user = %user, debug = ?user, "hello \u{85}there");
        };
        if json {
            tracing::subscriber::with_default(
                tracing_subscriber::registry().with(layer.json()),
                emit,
            );
        } else {
            tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), emit);
        }
        let bytes = out.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn diagnostic_log_line_with_controls_in_fields_is_escaped() {
        for json in [false, true] {
            let text = logged(json);
            assert_eq!(text.lines().count(), 1, "one event, one line: {text:?}");
            assert!(text.ends_with('\n'));
            let line = text.trim_end_matches('\n');
            assert!(
                !line.chars().any(|c| c != '\t' && is_unsafe(c)),
                "a control left raw (json: {json}): {line:?}"
            );
            assert!(line.contains("mallory"), "{line}");
            if json {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(
                    v["fields"]["user"],
                    "mallory\u{9b}2J\u{7f}\u{1b}[31m\nforged line"
                );
            } else {
                assert!(line.contains(r"mallory\u{9b}2J\x7f"), "{line}");
            }
        }
    }
}
