//! The diagnostic log's JSON lines (`log.format = "json"`): one flat object an event, keys
//! `ts`, `level`, `message`, `target`, then the event's own fields, in that order, all at the
//! top level (what Loki, ELK and Cloud Logging pick up without a parsing rule).
//!
//! tracing-subscriber's own JSON format names the time `timestamp`, puts `target` after the
//! fields and, flattened or not, cannot rename either; hence this small formatter.

use std::fmt;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The keys every line starts with; an event field of one of these names (other than
/// `message`) is written as `field.<name>` so that it cannot shadow them.
const RESERVED: [&str; 4] = ["ts", "level", "message", "target"];

/// Formats each event as one flat JSON object (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // A record from the `log` crate (rustls, for one) carries its real target in fields.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut ts = String::new();
        SystemTime.format_time(&mut Writer::new(&mut ts))?;
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = String::with_capacity(128);
        line.push('{');
        push(&mut line, "ts", &Value::String(ts));
        push(&mut line, "level", &Value::String(meta.level().to_string()));
        push(
            &mut line,
            "message",
            &Value::String(fields.message.unwrap_or_default()),
        );
        push(
            &mut line,
            "target",
            &Value::String(meta.target().to_owned()),
        );
        for (name, value) in &fields.rest {
            push(&mut line, name, value);
        }
        line.push('}');
        writeln!(writer, "{line}")
    }
}

/// Appends `"key":value` to the object in `line`, with a comma when it is not the first.
fn push(line: &mut String, key: &str, value: &Value) {
    if !line.ends_with('{') {
        line.push(',');
    }
    // Serializing a string or a `Value` into a String cannot fail.
    line.push_str(&serde_json::to_string(key).unwrap_or_default());
    line.push(':');
    line.push_str(&serde_json::to_string(value).unwrap_or_default());
}

/// An event's message and its other fields, in the order they were recorded.
#[derive(Debug, Default)]
struct Fields {
    message: Option<String>,
    rest: Vec<(String, Value)>,
}

impl Fields {
    fn add(&mut self, field: &Field, value: Value) {
        let name = field.name();
        if name == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else if name.starts_with("log.") {
            // tracing-log's copies of a `log` record's metadata, already in `target`.
        } else if RESERVED.contains(&name) {
            self.rest.push((format!("field.{name}"), value));
        } else {
            self.rest.push((name.to_owned(), value));
        }
    }
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let value = serde_json::Number::from_f64(value)
            .map_or_else(|| Value::String(value.to_string()), Value::Number);
        self.add(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.add(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.add(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.add(field, Value::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.add(field, Value::String(value.to_owned()));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.add(field, Value::String(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.add(field, Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, Write};
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn logged(emit: impl FnOnce()) -> String {
        let sink = Sink::default();
        let out = sink.0.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .event_format(FlatJson)
            .with_writer(move || sink.clone());
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), emit);
        let bytes = out.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn json_line_has_fixed_keys_first_then_fields() {
        let text = logged(|| {
            tracing::warn!(
                target: "drawbridge::demo",
                addr = %"127.0.0.1:1",
                n = 3u64,
                ok = true,
                ratio = 0.5,
                "hello {}",
                "there"
            );
        });
        assert_eq!(text.lines().count(), 1, "{text}");
        let line = text.trim_end();
        let keys = ["ts", "level", "message", "target", "addr", "n"];
        let positions: Vec<usize> = keys
            .iter()
            .map(|k| line.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(positions.is_sorted(), "key order: {line}");
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["message"], "hello there");
        assert_eq!(v["target"], "drawbridge::demo");
        assert_eq!(v["addr"], "127.0.0.1:1");
        assert_eq!(v["n"], 3);
        assert_eq!(v["ok"], true);
        assert_eq!(v["ratio"], 0.5);
        assert!(v.get("fields").is_none(), "{line}");
        let ts = v["ts"].as_str().unwrap();
        time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("ts {ts:?} is not RFC 3339: {e}"));
    }

    #[test]
    fn json_field_named_like_a_fixed_key_is_prefixed() {
        let text = logged(|| tracing::info!(target = "mine", level = 1, "m"));
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["target"], module_path!());
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["field.target"], "mine");
        assert_eq!(v["field.level"], 1);
    }
}
