//! The house rules of `src/`: the top-level modules stand on floors, and a module imports only
//! from its own floor or below, never in a circle.
//!
//! Every `src/**/*.rs` file of the library is read as text: its `use` declarations (also grouped,
//! `use crate::{a, b::c}`, spread over several lines, and `super::` paths that climb to the crate
//! root) and the paths written inline in code (`crate::x::y(..)`). Comments and string literals are
//! skipped. Each reference to another top-level module is an edge; the test fails on an edge that
//! runs up a floor, on a module that has no floor (a new module is placed deliberately, below), and
//! on a cycle, naming the file and line of each offending edge.
//!
//! The binary (`src/main.rs` and the `src/cli` module it owns) is another crate and is not read.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The floors of the library, lowest first. A module may import from its own floor and below.
const FLOORS: &[&[&str]] = &[
    // Leaves: pure helpers that import nothing of the crate.
    &[
        "body",
        "canonical",
        "clock",
        "headers",
        "https",
        "jsonlines",
        "permissions",
        "shutdown",
        "terminal",
        "watch",
    ],
    &["audit", "cluster", "config", "metrics", "telemetry"],
    &["auth", "registry", "tls"],
    &["forward"],
    &["respond", "state"],
    &["doors", "tunnel"],
    &["gateway"],
    &["admin", "listener"],
    &["app"],
    &["demo"],
];

/// Files of the binary crate, which reaches the library only through `drawbridge::`.
const BINARY: &[&str] = &["main.rs", "cli.rs", "cli"];

/// Where an edge was seen first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Site {
    file: String,
    line: usize,
}

/// Edges between top-level modules, each with the first place it appears.
type Graph = BTreeMap<String, BTreeMap<String, Site>>;

#[test]
fn module_imports_run_down_the_floors_only() {
    let graph = graph_of(&src_dir());
    let floor = floor_map();
    let mut problems = String::new();
    for module in graph.keys() {
        if !floor.contains_key(module.as_str()) {
            let _ = writeln!(
                problems,
                "module `{module}` has no floor: add it to FLOORS in tests/architecture.rs"
            );
        }
    }
    for (from, edges) in &graph {
        for (to, site) in edges {
            if let (Some(f), Some(t)) = (floor.get(from.as_str()), floor.get(to.as_str()))
                && t > f
            {
                let _ = writeln!(
                    problems,
                    "{}:{}: `{from}` (floor {f}) imports `{to}` (floor {t}), which is above it",
                    site.file, site.line
                );
            }
        }
    }
    assert!(problems.is_empty(), "\n{problems}");
}

#[test]
fn module_imports_have_no_cycle() {
    let graph = graph_of(&src_dir());
    if let Some(cycle) = find_cycle(&graph) {
        let mut text = String::from("import cycle between top-level modules:\n");
        for pair in cycle.windows(2) {
            let site = &graph[&pair[0]][&pair[1]];
            let _ = writeln!(
                text,
                "  {}:{}: `{}` imports `{}`",
                site.file, site.line, pair[0], pair[1]
            );
        }
        panic!("{text}");
    }
}

#[test]
fn graph_sees_the_known_imports() {
    // Guards the reader itself: were it to parse nothing, the two tests above would pass on anything.
    let graph = graph_of(&src_dir());
    for (from, to) in [
        ("gateway", "doors"),
        ("gateway", "tunnel"),
        ("doors", "state"),
        ("tunnel", "respond"),
        ("config", "canonical"),
        ("app", "listener"),
    ] {
        assert!(
            graph.get(from).is_some_and(|e| e.contains_key(to)),
            "expected `{from}` to import `{to}`; graph: {graph:#?}"
        );
    }
}

#[test]
fn references_are_found_in_every_spelling() {
    let text = r#"
//! `crate::gateway` in a module doc is no import.
use std::sync::Arc;
use crate::auth::{self, Decision};
use crate::{body::Body, clock,
    respond::{DoorError, Front}};
pub(crate) use crate::registry::Registry;
use super::sibling;
use super::super::far;

fn f() {
    let s = "crate::app in a string"; // crate::admin in a comment
    let c = '"';
    crate::metrics::Metrics::new();
    let _ = <crate::tls::Tls>::load;
}
"#;
    let refs = references(text, &["doors".to_owned(), "login".to_owned()]);
    let found: BTreeSet<&str> = refs.iter().map(|(m, _)| m.as_str()).collect();
    let want: BTreeSet<&str> = [
        "auth", "body", "clock", "respond", "registry", "doors", "far", "metrics", "tls",
    ]
    .into_iter()
    .collect();
    assert_eq!(found, want);
    let line_of = |m: &str| refs.iter().find(|(r, _)| r == m).map(|(_, l)| *l);
    assert_eq!(
        line_of("respond"),
        Some(5),
        "a grouped use counts where it starts"
    );
    assert_eq!(line_of("metrics"), Some(14));
}

#[test]
fn a_cycle_is_found_and_a_tree_is_not() {
    let site = Site {
        file: "x.rs".to_owned(),
        line: 1,
    };
    let mut graph = Graph::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("a", "c")] {
        graph
            .entry(a.to_owned())
            .or_default()
            .insert(b.to_owned(), site.clone());
    }
    assert_eq!(find_cycle(&graph), None);
    graph
        .entry("c".to_owned())
        .or_default()
        .insert("a".to_owned(), site);
    let cycle = find_cycle(&graph).expect("c -> a closes a cycle");
    assert_eq!(cycle.first(), cycle.last());
    assert!(cycle.len() >= 3);
}

// === the graph ===

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn floor_map() -> BTreeMap<&'static str, usize> {
    FLOORS
        .iter()
        .enumerate()
        .flat_map(|(i, floor)| floor.iter().map(move |m| (*m, i)))
        .collect()
}

/// The graph of the library's top-level modules.
fn graph_of(src: &Path) -> Graph {
    let mut files = Vec::new();
    collect_rs(src, &mut files);
    files.sort();
    let mut graph = Graph::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("file under src");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.len() == 1 && parts[0] == "lib.rs" {
            continue;
        }
        if BINARY.contains(&parts[0].as_str()) {
            continue;
        }
        let last = parts.pop().expect("a file name");
        parts.push(last.trim_end_matches(".rs").to_owned());
        let module = parts[0].clone();
        let text = std::fs::read_to_string(&file).expect("readable source");
        let entry = graph.entry(module.clone()).or_default();
        for (to, line) in references(&text, &parts) {
            if to != module {
                entry.entry(to).or_insert_with(|| Site {
                    file: format!("src/{}", rel.display()),
                    line,
                });
            }
        }
    }
    graph
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules `text` refers to, each with the line of a reference, for a file whose
/// module path is `module` (`["auth", "jwt", "keys"]` for `src/auth/jwt/keys.rs`).
fn references(text: &str, module: &[String]) -> Vec<(String, usize)> {
    let code = strip_comments_and_strings(text);
    let mut refs = Vec::new();
    let mut pending: Option<Pending> = None;
    for (i, line) in code.lines().enumerate() {
        let n = i + 1;
        let trimmed = line.trim_start();
        if let Some((mut decl, start, at)) = pending.take() {
            decl.push_str(trimmed);
            finish_use(decl, start, &at, &mut refs, &mut pending);
            continue;
        }
        if let Some(decl) = use_declaration(trimmed) {
            // An indented `use` sits in an inline module (`mod tests { use super::*; }`), one
            // level below the file's own module, as far as `super::` is concerned.
            let mut at: Vec<String> = module.to_vec();
            if trimmed.len() != line.len() {
                at.push(String::from("{inline}"));
            }
            finish_use(decl.to_owned(), n, &at, &mut refs, &mut pending);
            continue;
        }
        for m in inline_crate_paths(line) {
            refs.push((m, n));
        }
    }
    refs
}

/// A `use` declaration read so far, the line it starts on, and the module path it sits in.
type Pending = (String, usize, Vec<String>);

/// The tree of a `use` line (after `use`), whatever its visibility.
fn use_declaration(line: &str) -> Option<&str> {
    let rest = if let Some(r) = line.strip_prefix("pub") {
        let r = r.trim_start();
        let r = match r.strip_prefix('(') {
            Some(r) => r.split_once(')')?.1.trim_start(),
            None => r,
        };
        r.strip_prefix("use ")?
    } else {
        line.strip_prefix("use ")?
    };
    Some(rest.trim_start())
}

fn finish_use(
    decl: String,
    start: usize,
    module: &[String],
    refs: &mut Vec<(String, usize)>,
    pending: &mut Option<Pending>,
) {
    match decl.split_once(';') {
        Some((tree, _)) => {
            for top in use_tree_tops(tree, module) {
                refs.push((top, start));
            }
        }
        None => *pending = Some((decl, start, module.to_vec())),
    }
}

/// The top-level modules a use tree names: `crate::a::..`, `crate::{a, b::c}`, `super::..` that
/// climbs to the crate root.
fn use_tree_tops(tree: &str, module: &[String]) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    if let Some(rest) = tree.strip_prefix("crate::") {
        return group_heads(rest);
    }
    // `super::` from a module at depth d: d supers reach the crate root.
    let mut rest = tree.as_str();
    let mut path: Vec<String> = module.to_vec();
    let mut climbed = false;
    while let Some(r) = rest.strip_prefix("super::") {
        path.pop();
        rest = r;
        climbed = true;
    }
    if !climbed {
        return Vec::new();
    }
    match path.first() {
        Some(top) => vec![top.clone()],
        None => group_heads(rest),
    }
}

/// The first segment of each path in `a::b` or `{a, b::c, d::{e}}`.
fn group_heads(rest: &str) -> Vec<String> {
    let Some(inner) = rest.strip_prefix('{') else {
        return Some(first_segment(rest))
            .filter(|h| !h.is_empty() && h != "self")
            .into_iter()
            .collect();
    };
    let inner = inner.strip_suffix('}').unwrap_or(inner);
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                heads.push(first_segment(&current));
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    heads.push(first_segment(&current));
    heads
        .into_iter()
        .filter(|h| !h.is_empty() && h != "self")
        .collect()
}

fn first_segment(path: &str) -> String {
    path.split("::")
        .next()
        .unwrap_or_default()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The top-level module of every `crate::x` written in a line of code.
fn inline_crate_paths(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        let after = &rest[i + "crate::".len()..];
        if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            let head = first_segment(after);
            if !head.is_empty() {
                found.push(head);
            }
        }
        rest = after;
    }
    found
}

/// `text` with comments and the contents of string and char literals blanked, lines kept.
fn strip_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                if chars[i] == '\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += 2;
        } else if c == 'r' && matches!(next, Some('#' | '"')) && !ident_before(&chars, i) {
            // A raw string: r"..", r#".."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            out.push_str("\"\"");
            while j < chars.len() {
                if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                if chars[j] == '\n' {
                    out.push('\n');
                }
                j += 1;
            }
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if chars.get(i) == Some(&'\n') {
                    out.push('\n');
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && next == Some('\\') {
            // An escaped char literal: '\'', '\n', '\u{..}'.
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            i += 3;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// A cycle as a list of modules whose first and last are the same, if the graph has one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_owned(), Mark::Open);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flat_map(BTreeMap::keys) {
            match marks.get(next.as_str()) {
                Some(Mark::Open) => {
                    let from = stack.iter().position(|m| m == next).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(cycle) = visit(next, graph, marks, stack) {
                        return Some(cycle);
                    }
                }
            }
        }
        stack.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if !marks.contains_key(node)
            && let Some(cycle) = visit(node, graph, &mut marks, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}
