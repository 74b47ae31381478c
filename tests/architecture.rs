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
//! Inside the modules named in `FILE_LEVEL`, each file is a node of its own (`src/auth.rs`,
//! `src/auth/provider.rs`, `src/auth/jwt/keys.rs`): a path one file names that lies in another
//! file of the same module is an edge, whether written `crate::auth::..`, `super::..`, `self::..` or
//! as a child module's name, and the test fails on a cycle between files, naming each file and line.
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
        "pool",
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

/// The top-level modules whose files must not import each other in a circle either.
const FILE_LEVEL: &[&str] = &["auth", "config"];

#[test]
fn file_imports_inside_a_module_have_no_cycle() {
    let mut text = String::new();
    for top in FILE_LEVEL {
        let graph = file_graph_of(&src_dir(), top);
        if let Some(cycle) = find_cycle(&graph) {
            let _ = writeln!(text, "import cycle between the files of `{top}`:");
            for pair in cycle.windows(2) {
                let site = &graph[&pair[0]][&pair[1]];
                let _ = writeln!(text, "  {}:{}: imports `{}`", site.file, site.line, pair[1]);
            }
        }
    }
    assert!(text.is_empty(), "\n{text}");
}

#[test]
fn file_graph_sees_the_known_imports() {
    // Guards the file-level reader: a `super::` path, a path into a sub-folder, and a parent file
    // using its child by a relative path.
    let auth = file_graph_of(&src_dir(), "auth");
    let config = file_graph_of(&src_dir(), "config");
    for (graph, from, to) in [
        (&auth, "src/auth/provider.rs", "src/auth/webhook.rs"),
        (&auth, "src/auth/jwt/keys.rs", "src/auth/webhook.rs"),
        (&auth, "src/auth/jwt.rs", "src/auth/jwt/keys.rs"),
        (&auth, "src/auth.rs", "src/auth/cache.rs"),
        (&config, "src/config/cluster.rs", "src/config/raw.rs"),
        (&config, "src/config.rs", "src/config/settle.rs"),
        (&config, "src/config/reload.rs", "src/config.rs"),
    ] {
        assert!(
            graph.get(from).is_some_and(|e| e.contains_key(to)),
            "expected `{from}` to import `{to}`; graph: {graph:#?}"
        );
    }
}

#[test]
fn paths_resolve_from_the_file_and_its_inline_modules() {
    let text = r#"
use keys::{KeySet, Pick};
use super::{decision::{self, Allow}, Permissions};
use self::inner::Thing;

fn f() {
    let x = super::provider::http_client();
    let y = crate::auth::session::Profile::default();
}

#[cfg(test)]
mod tests {
    use super::*;
    fn g() {
        super::super::session::keygen();
    }
}

fn h() {
    super::cache::key();
}
"#;
    let module = ["auth".to_owned(), "jwt".to_owned()];
    let found: Vec<(String, usize)> = paths(text, &module)
        .into_iter()
        .map(|(p, l)| (p.join("::"), l))
        .collect();
    for want in [
        ("auth::jwt::keys::KeySet", 2),
        ("auth::jwt::keys::Pick", 2),
        ("auth::decision", 3),
        ("auth::decision::Allow", 3),
        ("auth::Permissions", 3),
        ("auth::jwt::inner::Thing", 4),
        ("auth::provider::http_client", 7),
        ("auth::session::Profile::default", 8),
        ("auth::jwt", 13),
        ("auth::session::keygen", 15),
        ("auth::cache::key", 20),
    ] {
        assert!(
            found.contains(&(want.0.to_owned(), want.1)),
            "expected {want:?} in {found:#?}"
        );
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

/// The library's files: each with its path as shown (`src/auth/jwt/keys.rs`), its module path
/// (`["auth", "jwt", "keys"]`) and its text.
fn library_files(src: &Path) -> Vec<(String, Vec<String>, String)> {
    let mut files = Vec::new();
    collect_rs(src, &mut files);
    files.sort();
    let mut out = Vec::new();
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
        if last != "mod.rs" {
            parts.push(last.trim_end_matches(".rs").to_owned());
        }
        let text = std::fs::read_to_string(&file).expect("readable source");
        out.push((format!("src/{}", rel.display()), parts, text));
    }
    out
}

/// The graph of the library's top-level modules.
fn graph_of(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for (file, parts, text) in library_files(src) {
        let module = parts[0].clone();
        let entry = graph.entry(module.clone()).or_default();
        for (to, line) in references(&text, &parts) {
            if to != module {
                entry.entry(to).or_insert_with(|| Site {
                    file: file.clone(),
                    line,
                });
            }
        }
    }
    graph
}

/// The graph of the files of one top-level module (`src/auth.rs`, `src/auth/*.rs` and below):
/// an edge for each path one file names that lies in another, found as the longest module path
/// of a file that begins the named path (`super::provider::Check` in `src/auth/jwt.rs` lies in
/// `src/auth/provider.rs`; `super::Decision` lies in `src/auth.rs`).
fn file_graph_of(src: &Path, top: &str) -> Graph {
    let files: Vec<_> = library_files(src)
        .into_iter()
        .filter(|(_, parts, _)| parts[0] == top)
        .collect();
    let file_of: BTreeMap<&[String], &str> = files
        .iter()
        .map(|(file, parts, _)| (parts.as_slice(), file.as_str()))
        .collect();
    let mut graph = Graph::new();
    for (file, parts, text) in &files {
        let entry = graph.entry(file.clone()).or_default();
        for (path, line) in paths(text, parts) {
            let Some(to) = (1..=path.len()).rev().find_map(|n| file_of.get(&path[..n])) else {
                continue;
            };
            if to != file {
                entry.entry((*to).to_owned()).or_insert_with(|| Site {
                    file: file.clone(),
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
    paths(text, module)
        .into_iter()
        .filter_map(|(path, line)| Some((path.first()?.clone(), line)))
        .collect()
}

/// Every path `text` names, resolved from the crate root, each with the line it is written on:
/// `use` trees (`crate::`, `super::`, `self::` and paths relative to the module, which name its
/// children), and `crate::`, `super::` and `self::` paths written inline in code. A path inside an
/// inline module (`mod tests { .. }`) is resolved from that module.
fn paths(text: &str, module: &[String]) -> Vec<(Vec<String>, usize)> {
    let code = strip_comments_and_strings(text);
    let mut refs = Vec::new();
    let mut pending: Option<Pending> = None;
    let mut inline = InlineModules::default();
    for (i, line) in code.lines().enumerate() {
        let n = i + 1;
        let trimmed = line.trim_start();
        let at: Vec<String> = module.iter().chain(inline.names()).cloned().collect();
        if let Some((mut decl, start, at)) = pending.take() {
            decl.push_str(trimmed);
            finish_use(decl, start, &at, &mut refs, &mut pending);
        } else if let Some(decl) = use_declaration(trimmed) {
            finish_use(decl.to_owned(), n, &at, &mut refs, &mut pending);
        } else {
            for path in inline_paths(line, &at) {
                refs.push((path, n));
            }
        }
        inline.read(line);
    }
    refs
}

/// The inline modules (`mod name {`) open at the end of the lines read so far.
#[derive(Default)]
struct InlineModules {
    depth: usize,
    /// Each open inline module and the brace depth inside it.
    open: Vec<(String, usize)>,
}

impl InlineModules {
    fn names(&self) -> impl Iterator<Item = &String> {
        self.open.iter().map(|(name, _)| name)
    }

    fn read(&mut self, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut opens = None;
        for pair in words.windows(2) {
            if pair[0] == "mod" {
                let name = first_segment(pair[1]);
                if !name.is_empty() && line[line.find(pair[1]).unwrap_or(0)..].contains('{') {
                    opens = Some(name);
                }
            }
        }
        for c in line.chars() {
            match c {
                '{' => {
                    self.depth += 1;
                    if let Some(name) = opens.take() {
                        self.open.push((name, self.depth));
                    }
                }
                '}' => {
                    if self.open.last().is_some_and(|(_, d)| *d == self.depth) {
                        self.open.pop();
                    }
                    self.depth = self.depth.saturating_sub(1);
                }
                _ => {}
            }
        }
    }
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
    refs: &mut Vec<(Vec<String>, usize)>,
    pending: &mut Option<Pending>,
) {
    match decl.split_once(';') {
        Some((tree, _)) => {
            for path in use_tree_paths(tree, module) {
                refs.push((path, start));
            }
        }
        None => *pending = Some((decl, start, module.to_vec())),
    }
}

/// The paths a use tree names, from the crate root: `crate::a::..`, `crate::{a, b::c}`,
/// `super::..`, `self::..`, and `a::..` relative to `module`. Paths that leave the crate (`std::..`)
/// come out below `module` too, where they name no file.
fn use_tree_paths(tree: &str, module: &[String]) -> Vec<Vec<String>> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let tree = tree.strip_prefix("::").unwrap_or(&tree);
    let (base, rest) = resolve_start(tree, module);
    tree_paths(rest)
        .into_iter()
        .map(|tail| base.iter().cloned().chain(tail).collect::<Vec<_>>())
        .filter(|path| !path.is_empty())
        .collect()
}

/// Where a path starting `crate::`, `super::`, `self::` or a plain name begins, written in
/// `module`: the module path it starts from and the rest of it.
fn resolve_start<'a>(path: &'a str, module: &[String]) -> (Vec<String>, &'a str) {
    if let Some(rest) = path.strip_prefix("crate::") {
        return (Vec::new(), rest);
    }
    if let Some(rest) = path.strip_prefix("self::") {
        return (module.to_vec(), rest);
    }
    let mut rest = path;
    let mut base: Vec<String> = module.to_vec();
    while let Some(r) = rest.strip_prefix("super::") {
        base.pop();
        rest = r;
    }
    (base, rest)
}

/// Each path in a use tree `a::b`, `a::{b, c::d}`, `{a, b::{self, c}}`, as segments.
fn tree_paths(tree: &str) -> Vec<Vec<String>> {
    let (prefix, group) = match tree.find('{') {
        Some(i) => (&tree[..i], Some(&tree[i + 1..])),
        None => (tree, None),
    };
    let prefix: Vec<String> = prefix
        .split("::")
        .map(first_segment)
        .filter(|s| !s.is_empty())
        .collect();
    let Some(group) = group else {
        return if prefix.last().is_some_and(|s| s == "self") {
            vec![prefix[..prefix.len() - 1].to_vec()]
        } else {
            vec![prefix]
        };
    };
    let inner = group.strip_suffix('}').unwrap_or(group);
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    items.push(current);
    items
        .iter()
        .filter(|item| !item.is_empty())
        .flat_map(|item| tree_paths(item))
        .map(|tail| prefix.iter().cloned().chain(tail).collect())
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

/// Every `crate::..`, `super::..` and `self::..` path written in a line of code, from the crate
/// root, for a line in `module`.
fn inline_paths(line: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(i) = ["crate::", "super::", "self::"]
        .iter()
        .filter_map(|start| line[from..].find(start))
        .min()
    {
        let i = from + i;
        let before = line[..i].chars().next_back();
        let path: String = line[i..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        from = i + path.len().max(1);
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let (base, rest) = resolve_start(&path, module);
        let tail = rest
            .split("::")
            .map(first_segment)
            .take_while(|s| !s.is_empty());
        let path: Vec<String> = base.into_iter().chain(tail).collect();
        if !path.is_empty() {
            found.push(path);
        }
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
