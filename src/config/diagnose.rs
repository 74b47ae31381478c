//! Every problem of a config file in one pass, each at its line, in the config's own words.
//!
//! serde stops at the first structural error (an unknown key, a wrong type). So the document is
//! read again with each offending key taken out, until the rest reads, and the value checks then
//! run over the rest: one run reports every structural and value problem. Each problem is placed
//! at the line of its key (or of the nearest enclosing table the file has) and the list is put in
//! file order. A type is named in words ("a whole number of milliseconds"), and an unknown key
//! close to a known one gets "did you mean".

use std::collections::HashMap;

use serde_path_to_error::Segment;

use super::problem::Problem;
use super::raw::RawConfig;

/// Most structural problems reported from one file, however broken it is.
const MAX_STRUCTURAL_PROBLEMS: usize = 64;

/// Reads `value` as a [`RawConfig`], taking out each key serde refuses and reading again, so
/// that every structural problem is reported at once. `None` when the rest still does not read
/// (a problem at the root, or too many).
pub(super) fn read_all(mut value: toml::Value) -> (Option<RawConfig>, Vec<Problem>) {
    let mut problems = Vec::new();
    while problems.len() < MAX_STRUCTURAL_PROBLEMS {
        match serde_path_to_error::deserialize::<_, RawConfig>(value.clone()) {
            Ok(raw) => return (Some(raw), problems),
            Err(error) => {
                let (problem, remove) = structural_problem(&error);
                problems.push(problem);
                if !take_out(&mut value, &remove) {
                    return (None, problems);
                }
            }
        }
    }
    (None, problems)
}

/// A path into the document: table keys and array indices.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

fn path_of(error: &serde_path_to_error::Error<toml::de::Error>) -> Vec<Step> {
    error
        .path()
        .iter()
        .filter_map(|segment| match segment {
            Segment::Map { key } => Some(Step::Key(key.clone())),
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

fn dotted(path: &[Step]) -> String {
    path.iter()
        .map(|s| match s {
            Step::Key(k) => k.clone(),
            Step::Index(i) => i.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Takes the value at `path` out of `value`; when it is not there (serde's path stops short
/// inside a tagged provider table), the deepest enclosing value that is. False when nothing but
/// the root would go.
fn take_out(value: &mut toml::Value, path: &[Step]) -> bool {
    for len in (1..=path.len()).rev() {
        if remove(value, &path[..len]) {
            return true;
        }
    }
    false
}

fn remove(value: &mut toml::Value, path: &[Step]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut at = value;
    for step in parents {
        at = match (step, at) {
            (Step::Key(k), toml::Value::Table(t)) => match t.get_mut(k) {
                Some(v) => v,
                None => return false,
            },
            (Step::Index(i), toml::Value::Array(a)) => match a.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, at) {
        (Step::Key(k), toml::Value::Table(t)) => t.remove(k).is_some(),
        (Step::Index(i), toml::Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
            true
        }
        _ => false,
    }
}

/// serde's structural error as a problem at its key path, and the path to take out so the rest
/// reads. The message never holds the value (it may be a secret).
fn structural_problem(error: &serde_path_to_error::Error<toml::de::Error>) -> (Problem, Vec<Step>) {
    let mut path = path_of(error);
    let message = error.inner().message().trim().to_owned();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        if path.last() != Some(&Step::Key(field.to_owned())) {
            path.push(Step::Key(field.to_owned()));
        }
        let known: Vec<&str> = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|k| !k.is_empty())
            .collect();
        let hint = match closest(field, &known) {
            Some(near) => format!("; did you mean `{near}`?"),
            None if known.is_empty() => String::new(),
            None => format!(" (expected one of {})", known.join(", ")),
        };
        return (
            Problem::new(dotted(&path), format!("unknown field{hint}")),
            path,
        );
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or_default();
        let table = path.clone();
        path.push(Step::Key(field.to_owned()));
        return (Problem::new(dotted(&path), "missing"), table);
    }
    let key = path
        .iter()
        .rev()
        .find_map(|s| match s {
            Step::Key(k) => Some(k.as_str()),
            Step::Index(_) => None,
        })
        .unwrap_or_default();
    (Problem::new(dotted(&path), in_words(&message, key)), path)
}

/// The known key closest to `field`, when it is close enough to be a slip of the keyboard.
fn closest<'a>(field: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(field, k), *k))
        .filter(|(d, k)| *d <= (k.len().max(field.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// A serde type message in the config's words, without the value it quotes:
/// `invalid type: string "soon", expected u64` at `request_timeout_ms` becomes
/// `expected a whole number of milliseconds, found a string`.
fn in_words(message: &str, key: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let (found, expected) = rest.split_once(", expected").unwrap_or((rest, ""));
            let found = found
                .split(['"', '`', '\''])
                .next()
                .unwrap_or_default()
                .trim();
            return format!(
                "expected {}, found {}",
                expected_words(expected.trim(), key),
                found_words(found)
            );
        }
    }
    if let Some(rest) = message.strip_prefix("invalid length ") {
        let (_, expected) = rest.split_once(", expected").unwrap_or((rest, ""));
        return format!("wrong number of entries, expected {}", expected.trim());
    }
    message.replace('`', "")
}

/// What a key holds, in words, from serde's name for the Rust type and the key's own name.
fn expected_words(expected: &str, key: &str) -> String {
    let integer = matches!(
        expected,
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize"
    ) || expected.starts_with("an integer")
        || expected.starts_with("a nonzero");
    if integer {
        let unit = [
            ("_ms", " of milliseconds"),
            ("_seconds", " of seconds"),
            ("_secs", " of seconds"),
            ("_bytes", " of bytes"),
        ]
        .iter()
        .find(|(suffix, _)| key.ends_with(suffix))
        .map_or("", |(_, unit)| unit);
        return format!("a whole number{unit}");
    }
    match expected {
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" => "true or false".to_owned(),
        "a string" | "a borrowed string" | "a character" => match key {
            k if k.ends_with("_url") || k == "url" => "a URL string".to_owned(),
            k if k.ends_with("_file") || k.ends_with("_files") => "a file path string".to_owned(),
            k if k.ends_with("addr") => "an address string (\"host:port\")".to_owned(),
            _ => "a string".to_owned(),
        },
        "a sequence" => match key {
            "trusted_proxies" => "a list of CIDRs (\"10.0.0.0/8\")".to_owned(),
            k if k.ends_with("_paths") => "a list of paths".to_owned(),
            "providers" | "members" => "a list of provider names".to_owned(),
            k if k.ends_with("origins") => "a list of origins".to_owned(),
            k if k.ends_with("_files") => "a list of file paths".to_owned(),
            _ => "a list".to_owned(),
        },
        e if e == "a map" || e.starts_with("struct ") || e.starts_with("a table") => {
            "a table".to_owned()
        }
        e if e.starts_with("one of") => e.replace('`', ""),
        e => e.replace('`', ""),
    }
}

/// serde's name for the kind of value the file holds, in words.
fn found_words(found: &str) -> &'static str {
    match found {
        "string" => "a string",
        "integer" => "a whole number",
        "floating point" => "a number",
        "boolean" => "true or false",
        "sequence" => "a list",
        "map" => "a table",
        "datetime" | "date" | "time" => "a date or time",
        "unit" | "unit value" => "nothing",
        _ => "another kind of value",
    }
}

/// The line of every key and table header of `text` by its dotted path (array entries by index).
fn key_lines(text: &str) -> HashMap<String, usize> {
    let mut lines = HashMap::new();
    if let Ok(table) = toml::de::DeTable::parse(text) {
        let line_at = |at: usize| text[..at.min(text.len())].matches('\n').count() + 1;
        walk_table(table.get_ref(), "", &line_at, &mut lines);
    }
    lines
}

fn walk_table(
    table: &toml::de::DeTable<'_>,
    prefix: &str,
    line_at: &dyn Fn(usize) -> usize,
    lines: &mut HashMap<String, usize>,
) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        lines
            .entry(path.clone())
            .or_insert_with(|| line_at(key.span().start));
        walk_value(value.get_ref(), &path, line_at, lines);
    }
}

fn walk_value(
    value: &toml::de::DeValue<'_>,
    path: &str,
    line_at: &dyn Fn(usize) -> usize,
    lines: &mut HashMap<String, usize>,
) {
    match value {
        toml::de::DeValue::Table(t) => walk_table(t, path, line_at, lines),
        toml::de::DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let entry = format!("{path}.{i}");
                lines
                    .entry(entry.clone())
                    .or_insert_with(|| line_at(item.span().start));
                walk_value(item.get_ref(), &entry, line_at, lines);
            }
        }
        _ => {}
    }
}

/// `problems` each at the line of its key in `text` (or of the nearest enclosing key the file
/// has), in file order; problems of no line keep their order, after the others.
pub(super) fn in_file_order(mut problems: Vec<Problem>, text: &str) -> Vec<Problem> {
    let lines = key_lines(text);
    for problem in &mut problems {
        let mut path = problem.path.as_str();
        problem.line = loop {
            if let Some(line) = lines.get(path) {
                break Some(*line);
            }
            match path.rsplit_once('.') {
                Some((parent, _)) => path = parent,
                None => break None,
            }
        };
    }
    problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_key_is_offered_only_when_near() {
        let known = ["timeout_ms", "url", "headers"];
        assert_eq!(closest("timeout", &known), Some("timeout_ms"));
        assert_eq!(closest("timout_ms", &known), Some("timeout_ms"));
        assert_eq!(closest("timeout_sm", &known), Some("timeout_ms"));
        assert_eq!(closest("bogus_key", &known), None);
        assert_eq!(closest("ulr", &known), Some("url"));
    }

    #[test]
    fn types_are_named_in_words() {
        assert_eq!(
            in_words(
                "invalid type: string \"soon\", expected u64",
                "request_timeout_ms"
            ),
            "expected a whole number of milliseconds, found a string"
        );
        assert_eq!(
            in_words(
                "invalid type: integer `1`, expected a sequence",
                "trusted_proxies"
            ),
            "expected a list of CIDRs (\"10.0.0.0/8\"), found a whole number"
        );
        assert_eq!(
            in_words(
                "invalid type: string \"yes\", expected a boolean",
                "plaintext"
            ),
            "expected true or false, found a string"
        );
    }

    #[test]
    fn lines_of_keys_tables_and_array_entries() {
        let text = "[listen]\naddr = \"x\"\n\n[upstream]\nurl = \"u\"\npublic_upgrade_paths = [\n  \"/a\",\n  \"/b\",\n]\n";
        let lines = key_lines(text);
        assert_eq!(lines["listen"], 1);
        assert_eq!(lines["listen.addr"], 2);
        assert_eq!(lines["upstream"], 4);
        assert_eq!(lines["upstream.public_upgrade_paths.1"], 8);
    }
}
