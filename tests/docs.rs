//! The README kept true to the code: its configuration tables against the keys and defaults the
//! binary lists (`drawbridge config-keys`), and its metrics table against what a running
//! drawbridge exports and what the code registers. A key or metric added, renamed or given
//! another default fails here until the README says so, and a README row naming something the
//! code does not have fails too.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;
use support::{Gateway, Upstream, Webhook, client, login};

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

// === Markdown ===

/// The cells of a table row, split on `|` outside backticks; `None` for a line that is no row.
fn cells(line: &str) -> Option<Vec<String>> {
    let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut in_tick = false;
    for c in inner.chars() {
        match c {
            '`' => {
                in_tick = !in_tick;
                cell.push(c);
            }
            '|' if !in_tick => out.push(std::mem::take(&mut cell).trim().to_owned()),
            _ => cell.push(c),
        }
    }
    out.push(cell.trim().to_owned());
    Some(out)
}

/// Every row (with its 1-based line number) of every table whose header starts with `header`.
/// A table ends at the first line that is not a row: rows after a blank line are loose text.
fn table_rows(text: &str, header: &[&str]) -> Vec<(usize, Vec<String>)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut rows = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let is_header = cells(lines[i])
            .is_some_and(|c| c.len() >= header.len() && c.iter().zip(header).all(|(a, b)| a == b));
        if !is_header {
            i += 1;
            continue;
        }
        i += 2; // the header and its `|---|` line
        while let Some(row) = lines.get(i).and_then(|l| cells(l)) {
            rows.push((i + 1, row));
            i += 1;
        }
    }
    rows
}

/// The backticked spans of `text`, in order.
fn ticks(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

// === Configuration ===

/// A key as the README's configuration tables name it, with its default (`null`: required, or
/// none).
#[derive(Debug)]
struct DocKey {
    key: String,
    default: Value,
    line: usize,
}

/// The keys of a key cell: "`a.b`", "`a.b`, `a.c`", "`a.b`, `c`, `d`" (siblings of the first),
/// "webhook: `url`" (a key of every webhook provider), "jwt: `jwks_url` or `keys_file`".
fn keys_of(cell: &str) -> Vec<String> {
    let (kind, rest) = match cell.split_once(": ") {
        Some((kind, rest)) if ["webhook", "jwt", "group"].contains(&kind) => (Some(kind), rest),
        _ => (None, cell),
    };
    let spans = ticks(rest);
    let Some(first) = spans.first() else {
        return Vec::new();
    };
    let (parent, first) = match kind {
        Some(kind) => {
            let parent = format!("providers.<{kind}>");
            let first = format!("{parent}.{first}");
            (parent, first)
        }
        None => (
            first
                .rsplit_once('.')
                .map(|(p, _)| p.to_owned())
                .unwrap_or_default(),
            first.clone(),
        ),
    };
    let section = first.split('.').next().unwrap_or_default().to_owned();
    let mut keys = vec![first];
    for span in &spans[1..] {
        if kind.is_none() && span.starts_with(&format!("{section}.")) {
            keys.push(span.clone());
        } else {
            keys.push(format!("{parent}.{span}"));
        }
    }
    keys
}

/// A default as the README writes it: a TOML value in backticks, or words meaning "none".
fn default_of(span: &str) -> Result<Value, String> {
    let table: toml::Table =
        toml::from_str(&format!("v = {span}")).map_err(|e| format!("`{span}`: {e}"))?;
    serde_json::to_value(&table["v"]).map_err(|e| e.to_string())
}

/// Words that say a key has no default value.
const NO_DEFAULT: [&str; 6] = [
    "required",
    "one required",
    "none",
    "nothing",
    "ephemeral",
    "from the key",
];

fn doc_keys(text: &str) -> (Vec<DocKey>, Vec<String>) {
    let mut keys = Vec::new();
    let mut problems = Vec::new();
    for (line, row) in table_rows(text, &["key", "default"]) {
        let names = keys_of(&row[0]);
        if names.is_empty() {
            problems.push(format!("README.md:{line}: no key in {:?}", row[0]));
            continue;
        }
        let spans = ticks(&row[1]);
        let defaults: Vec<Value> = if spans.is_empty() {
            let words = row[1].trim().trim_matches('*').to_ascii_lowercase();
            if !NO_DEFAULT.contains(&words.as_str()) {
                problems.push(format!(
                    "README.md:{line}: default {:?} of {} is neither a value in backticks nor one of {NO_DEFAULT:?}",
                    row[1], row[0]
                ));
                continue;
            }
            vec![Value::Null]
        } else {
            match spans.iter().map(|s| default_of(s)).collect() {
                Ok(d) => d,
                Err(e) => {
                    problems.push(format!("README.md:{line}: default {e}"));
                    continue;
                }
            }
        };
        if defaults.len() != 1 && defaults.len() != names.len() {
            problems.push(format!(
                "README.md:{line}: {} keys but {} defaults",
                names.len(),
                defaults.len()
            ));
            continue;
        }
        for (i, key) in names.into_iter().enumerate() {
            let default = defaults[if defaults.len() == 1 { 0 } else { i }].clone();
            keys.push(DocKey { key, default, line });
        }
    }
    (keys, problems)
}

/// Whether the README's `doc` default says what the code's `code` default is: equal values
/// (numbers by value, `1` and `1.0` alike), and "none" or "required" for a default that holds
/// nothing: null, `""` or `[]`.
fn same_default(doc: &Value, code: &Value) -> bool {
    match (doc, code) {
        (Value::Null, Value::Null) => true,
        (Value::Null, Value::String(s)) => s.is_empty(),
        (Value::Null, Value::Array(a)) => a.is_empty(),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_default(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, x)| b.get(k).is_some_and(|y| same_default(x, y)))
        }
        _ => doc == code,
    }
}

/// An empty default: what "nothing" says of each key of a table.
fn is_empty_default(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Bool(true) | Value::Number(_) => false,
    }
}

/// The problems between the README's keys and the code's; empty when they agree.
fn config_mismatches(readme: &str, code: &BTreeMap<String, Value>) -> Vec<String> {
    let (docs, mut problems) = doc_keys(readme);
    let mut covered = BTreeSet::new();
    for doc in &docs {
        let at = format!("README.md:{}: `{}`", doc.line, doc.key);
        if let Some(default) = code.get(&doc.key) {
            covered.insert(doc.key.clone());
            if !same_default(&doc.default, default) {
                problems.push(format!(
                    "{at}: default {} in the README, {default} in the code",
                    doc.default
                ));
            }
            continue;
        }
        // A table key (`jwt: profile_claims`) stands for every key under it.
        let prefix = format!("{}.", doc.key);
        let under: Vec<_> = code
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .collect();
        if under.is_empty() {
            problems.push(format!("{at}: no such key in the code"));
            continue;
        }
        for (key, default) in under {
            covered.insert(key.clone());
            let path = &key[prefix.len()..];
            let ok = match &doc.default {
                Value::Null => is_empty_default(default),
                table => path
                    .split('.')
                    .try_fold(table, |v, part| v.get(part))
                    .is_some_and(|want| same_default(want, default)),
            };
            if !ok {
                problems.push(format!(
                    "{at}: `{key}` defaults to {default} in the code, the README says {}",
                    doc.default
                ));
            }
        }
    }
    for (key, default) in code {
        if !covered.contains(key) {
            problems.push(format!(
                "`{key}` (default {default}) is in no README configuration table"
            ));
        }
    }
    problems
}

#[test]
fn readme_config_tables_match_config_keys_and_defaults() {
    let problems = config_mismatches(&readme(), &support::process::config_keys());
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn readme_config_check_finds_a_missing_key_a_wrong_default_and_a_loose_row() {
    let code: BTreeMap<String, Value> = [
        ("log.level", serde_json::json!("info")),
        ("log.format", serde_json::json!("text")),
        ("limits.idle_timeout_ms", serde_json::json!(60000)),
        ("session.issuer", serde_json::json!("drawbridge")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let good = "| key | default | meaning |\n|---|---|---|\n\
                | `log.level` | `\"info\"` | x |\n| `log.format` | `\"text\"` | or `\"json\"` |\n\
                | `limits.idle_timeout_ms` | `60000` | |\n| `session.issuer` | `\"drawbridge\"` | |\n";
    assert_eq!(config_mismatches(good, &code), Vec::<String>::new());
    let wrong = good.replace("`60000`", "`6000`");
    assert_eq!(config_mismatches(&wrong, &code).len(), 1);
    let loose = good.replace("| `session.issuer`", "\n| `session.issuer`");
    let problems = config_mismatches(&loose, &code);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("session.issuer"), "{problems:?}");
    let unknown = format!("{good}| `log.colour` | `false` | |\n");
    assert_eq!(config_mismatches(&unknown, &code).len(), 1);
}

#[test]
fn dockerfile_builds_the_dist_profile_with_labels_true_to_cargo_toml() {
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    let label = |name: &str| {
        let key = format!("org.opencontainers.image.{name}=\"");
        let start = dockerfile
            .find(&key)
            .unwrap_or_else(|| panic!("no {name} label"))
            + key.len();
        dockerfile[start..].split('"').next().unwrap().to_owned()
    };
    assert_eq!(label("title"), env!("CARGO_PKG_NAME"));
    assert_eq!(label("version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(label("licenses"), env!("CARGO_PKG_LICENSE"));
    assert_eq!(label("description"), env!("CARGO_PKG_DESCRIPTION"));
    assert_eq!(label("revision"), "$REVISION");
    assert!(label("source").starts_with('$'));
    assert!(
        dockerfile.contains("cargo build --profile dist --locked")
            && dockerfile.contains("target/dist/drawbridge /out/drawbridge"),
        "the image must ship the dist build"
    );
}

// === Metrics ===

/// A metric row of the README: its type and labels, each with its listed values (`None` when
/// the values are open: provider names, hashes).
#[derive(Debug)]
struct DocMetric {
    kind: String,
    labels: BTreeMap<String, Option<BTreeSet<String>>>,
    line: usize,
}

/// A lowercase label name.
fn is_label_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// The labels of a labels cell: "`route` (`a`, `b`), `status_class`", "`hash` (prose)",
/// "(prose with `config.keys`)", "`result` (`a`, `b`: prose)".
fn labels_of(cell: &str) -> BTreeMap<String, Option<BTreeSet<String>>> {
    let mut labels = BTreeMap::new();
    let mut depth = 0usize;
    let mut last: Option<String> = None;
    let mut group = String::new();
    let mut in_tick = false;
    let mut tick = String::new();
    for c in cell.chars() {
        if in_tick {
            if c == '`' {
                in_tick = false;
                if depth == 0 && is_label_name(&tick) {
                    labels.insert(tick.clone(), None);
                    last = Some(tick.clone());
                }
                if depth > 0 {
                    group.push('`');
                    group.push_str(&tick);
                    group.push('`');
                }
                tick.clear();
            } else {
                tick.push(c);
            }
            continue;
        }
        match c {
            '`' => in_tick = true,
            '(' => {
                depth += 1;
                group.clear();
            }
            ')' if depth > 0 => {
                depth -= 1;
                if depth == 0
                    && let Some(label) = last.take()
                    && let Some(values) = value_list(&group)
                {
                    labels.insert(label, Some(values));
                }
            }
            _ if depth > 0 => group.push(c),
            ',' => {}
            c if c.is_whitespace() => {}
            _ => last = None,
        }
    }
    labels
}

/// "`a`, `b`, `c`" (optionally followed by ": prose") as a set; `None` for anything else.
fn value_list(group: &str) -> Option<BTreeSet<String>> {
    let list = match group.find("`:") {
        Some(i) => &group[..=i],
        None => group,
    };
    let values = ticks(list);
    let rebuilt = values
        .iter()
        .map(|v| format!("`{v}`"))
        .collect::<Vec<_>>()
        .join(", ");
    (!values.is_empty() && rebuilt == list.trim()).then(|| values.into_iter().collect())
}

fn doc_metrics(text: &str) -> BTreeMap<String, DocMetric> {
    let mut metrics = BTreeMap::new();
    for (line, row) in table_rows(text, &["metric", "type", "labels"]) {
        let labels = labels_of(&row[2]);
        for name in ticks(&row[0]) {
            metrics.insert(
                name,
                DocMetric {
                    kind: row[1].clone(),
                    labels: labels.clone(),
                    line,
                },
            );
        }
    }
    metrics
}

/// A family as a running drawbridge exports it: type, and each label's values seen.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    labels: BTreeMap<String, BTreeSet<String>>,
}

/// The families of a Prometheus text exposition (histogram series folded into their family).
fn families(text: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.entry(name.to_owned()).or_default().kind = kind.to_owned();
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let series = line.rsplit_once(' ').unwrap().0;
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| out.get(*f).is_some_and(|f| f.kind == "histogram"))
            })
            .unwrap_or(name);
        let entry = out.entry(family.to_owned()).or_default();
        for pair in labels.trim_end_matches('}').split("\",") {
            let Some((k, v)) = pair.split_once("=\"") else {
                continue;
            };
            if k != "le" {
                entry
                    .labels
                    .entry(k.to_owned())
                    .or_default()
                    .insert(v.trim_end_matches('"').to_owned());
            }
        }
    }
    out
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(std::fs::read_to_string(path).unwrap());
        }
    }
}

/// The names the code gives metrics: a `"drawbridge_..."` literal passed as the first argument
/// of a constructor (followed by a comma), whether or not the family has a series yet.
fn registered_in_source(src: &[String]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for text in src {
        for (i, _) in text.match_indices("\"drawbridge_") {
            let rest = &text[i + 1..];
            let end = rest.find('"').unwrap();
            let name = &rest[..end];
            let after = rest[end + 1..].trim_start();
            if after.starts_with(',') && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// A drawbridge with cluster mode on a real redis-server, the audit and access logs on, a
/// provider and the Ditto door, after logins (allowed and denied), a forward, a forward-auth
/// check and a JWKS fetch: its `/metrics`.
async fn exercised_metrics() -> String {
    let redis = support::redis::Redis::start().await;
    let hook = Webhook::users(600).await;
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::builder(up.url())
        .demo_provider(&hook)
        .extra(&format!(
            "{}[cluster]\nredis_url = \"{}\"\n[audit]\npath = {:?}\n[log]\naccess = true\naccess_path = {:?}\n\
             [ditto]\nenabled = true\n",
            support::shared_session_table(),
            redis.url(),
            dir.path().join("audit.log"),
            dir.path().join("access.log"),
        ))
        .spawn()
        .await;
    let session = login(&gw, "app", "demo", "ada-token").await.session();
    assert_eq!(login(&gw, "app", "demo", "nobody").await.status, 401);
    let http = client::https(&gw.ca.pem(), false);
    for (path, bearer) in [
        ("/some/page", None),
        ("/auth/check/some/page", Some(&session)),
        ("/.well-known/jwks.json", None),
    ] {
        let mut req = client::request("GET", &gw.url(path), "");
        if let Some(token) = bearer {
            req.headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        support::send(&http, req).await;
    }
    let text = gw.metrics().await;
    drop(redis);
    text
}

#[tokio::test]
async fn readme_metrics_table_matches_the_metrics_and_label_values() {
    let readme = readme();
    let docs = doc_metrics(&readme);
    let scraped = families(&exercised_metrics().await);
    let mut src = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut src);
    let registered = registered_in_source(&src);
    let mut problems = Vec::new();

    // Code → README: every family, its type, its labels and each value seen.
    let code_names: BTreeSet<&String> = registered
        .iter()
        .chain(scraped.keys().filter(|n| n.starts_with("drawbridge_")))
        .collect();
    assert!(
        code_names.len() > 30,
        "too few metrics found: {code_names:?}"
    );
    for name in &code_names {
        let Some(doc) = docs.get(*name) else {
            problems.push(format!(
                "`{name}` is in no row of the README's metrics table"
            ));
            continue;
        };
        let Some(family) = scraped.get(*name) else {
            continue;
        };
        let at = format!("README.md:{}: `{name}`", doc.line);
        if doc.kind != family.kind {
            problems.push(format!(
                "{at}: type {} in the README, {} exported",
                doc.kind, family.kind
            ));
        }
        let doc_labels: BTreeSet<&String> = doc.labels.keys().collect();
        let code_labels: BTreeSet<&String> = family.labels.keys().collect();
        if !family.labels.is_empty() && doc_labels != code_labels {
            problems.push(format!(
                "{at}: labels {doc_labels:?} in the README, {code_labels:?} exported"
            ));
        }
        for (label, values) in &family.labels {
            if let Some(Some(listed)) = doc.labels.get(label) {
                for value in values.difference(listed) {
                    problems.push(format!(
                        "{at}: {label}=\"{value}\" is exported but not listed"
                    ));
                }
            }
        }
    }
    // README → code: every metric named exists, every value listed is one the code can set.
    let all_source = src.concat();
    for (name, doc) in &docs {
        let at = format!("README.md:{}: `{name}`", doc.line);
        if !code_names.contains(name) {
            problems.push(format!("{at}: no such metric in the code"));
            continue;
        }
        for (label, listed) in &doc.labels {
            let seen = scraped.get(name).and_then(|f| f.labels.get(label));
            for value in listed.iter().flatten() {
                let exported = seen.is_some_and(|s| s.contains(value));
                if !exported && !all_source.contains(&format!("\"{value}\"")) {
                    problems.push(format!(
                        "{at}: {label}=\"{value}\" is listed but the code never sets it"
                    ));
                }
            }
        }
    }
    // The process collector and the build info are there too.
    for name in [
        "process_open_fds",
        "process_resident_memory_bytes",
        "drawbridge_build_info",
    ] {
        assert!(scraped.contains_key(name), "{name} not exported");
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn readme_metric_labels_are_read_with_their_listed_values() {
    let labels = labels_of(
        "`door` (`login`, `ditto`), `provider` (configured names, else `unknown`), `result` (`allow`, `deny`: prose `x`)",
    );
    let want = |v: &[&str]| Some(v.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>());
    assert_eq!(labels["door"], want(&["login", "ditto"]));
    assert_eq!(labels["provider"], None);
    assert_eq!(labels["result"], want(&["allow", "deny"]));
    assert_eq!(labels.len(), 3);
    assert!(labels_of("(over `limits.max_connections` with every connection busy)").is_empty());
    assert!(labels_of("notAfter of the serving certificate").is_empty());
}
