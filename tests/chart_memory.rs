//! The chart's default memory limit against drawbridge's own defaults: at the load its defaults
//! allow (`cache.max_entries` cached decisions, `limits.max_connections` idle tunnels, the
//! forward-auth door's remembered sessions at their bound in `src/auth/verified.rs`, the claim sets
//! HMAC tokens name by reference at their bound in `src/auth/session/claim_sets.rs`) the pod must
//! stay under `resources.limits.memory` in `helm/drawbridge/values.yaml`, or it is OOM-killed at its
//! own configured load.
//!
//! The per-item costs are the ones the end-to-end harness measured and wrote to
//! `benches/e2e/costs.json` (`bash benches/e2e/run.sh --only decisions,idle,verified`); nothing is measured
//! here. The defaults come from the binary (`drawbridge config-keys`), overridden by what the
//! chart's values set.

mod support;

use std::collections::BTreeMap;

use serde_json::Value;

/// What the worst case gets on top of the measured costs: allocator slack after churn, TLS
/// handshakes and request buffers in flight, and tunnels that are not idle.
const HEADROOM_PERCENT: u64 = 20;

fn repo_file(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The scalars of a YAML document's block mappings, by dotted path (`resources.limits.memory`).
/// Only what values.yaml uses here: nested `key: value` mappings; comments, list items and
/// block scalars are passed over. (No YAML parser is among the dependencies, and this reads
/// one file the project writes itself.)
fn yaml_scalars(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut path: Vec<(usize, String)> = Vec::new();
    for line in text.lines() {
        let body = line.trim_start();
        if body.is_empty() || body.starts_with('#') || body.starts_with('-') {
            continue;
        }
        let indent = line.len() - body.len();
        let Some((key, rest)) = body.split_once(':') else {
            continue;
        };
        if key.contains(' ') || key.contains('"') {
            continue; // a continuation of a folded value, not a key
        }
        while path.last().is_some_and(|(i, _)| *i >= indent) {
            path.pop();
        }
        let value = rest.split(" #").next().unwrap_or("").trim();
        let full: Vec<&str> = path.iter().map(|(_, k)| k.as_str()).chain([key]).collect();
        if value.is_empty() {
            path.push((indent, key.to_owned()));
        } else {
            out.insert(full.join("."), value.trim_matches('"').to_owned());
        }
    }
    out
}

/// Bytes in a Kubernetes memory quantity (`256Mi`, `1Gi`, `500M`, `1048576`).
fn quantity_bytes(q: &str) -> Option<u64> {
    let units: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (suffix, factor) in units {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<u64>().ok()?.checked_mul(factor);
        }
    }
    q.parse().ok()
}

/// The measured per-item costs.
struct Costs {
    baseline: u64,
    per_decision: u64,
    per_tunnel: u64,
    /// A session the forward-auth door remembers (`bytes_per_verified_session`).
    per_verified: u64,
}

fn costs() -> Costs {
    let v: Value = serde_json::from_str(&repo_file("benches/e2e/costs.json")).unwrap();
    let field = |k: &str| {
        v[k].as_u64()
            .filter(|n| *n > 0)
            .unwrap_or_else(|| panic!("benches/e2e/costs.json: {k} is not a positive measurement"))
    };
    assert!(
        v["measured_at"]["commit"].is_string() && v["measured_at"]["date"].is_string(),
        "benches/e2e/costs.json says when it was measured"
    );
    Costs {
        baseline: field("baseline_rss_bytes"),
        per_decision: field("bytes_per_cached_decision"),
        per_tunnel: field("bytes_per_idle_tunnel"),
        per_verified: field("bytes_per_verified_session"),
    }
}

/// The value of `const <name>: u64 = <value>;` in the source file `path`, read from there so the
/// code and this test cannot drift: a number (`10_000`) or a shift (`16 << 20`).
fn source_constant(path: &str, name: &str) -> u64 {
    let source = repo_file(path);
    let line = source
        .lines()
        .find(|l| l.contains(&format!("const {name}: u64 =")))
        .unwrap_or_else(|| panic!("{path} defines {name}"));
    let value = line.split('=').nth(1).unwrap().trim().trim_end_matches(';');
    let number = |n: &str| {
        n.trim()
            .replace('_', "")
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("{name}: {value} is not a number or a shift"))
    };
    match value.split_once("<<") {
        Some((n, shift)) => number(n) << number(shift),
        None => number(value),
    }
}

/// The most sessions the forward-auth door remembers per generation (not a config key).
fn verified_max() -> u64 {
    source_constant("src/auth/verified.rs", "MAX_ENTRIES")
}

/// What the claim sets HMAC tokens name by reference may hold at most, in bytes (held in cluster
/// mode, which the chart renders with several replicas).
fn claim_sets_max() -> u64 {
    source_constant("src/auth/session/claim_sets.rs", "CAPACITY")
}

/// The worst case at `entries` cached decisions, `tunnels` idle tunnels and `verified` remembered
/// forward-auth sessions, with the held claim sets at `claim_sets` bytes, and the headroom.
fn worst_case(c: &Costs, entries: u64, tunnels: u64, verified: u64, claim_sets: u64) -> u64 {
    let bare = c.baseline
        + entries * c.per_decision
        + tunnels * c.per_tunnel
        + verified * c.per_verified
        + claim_sets;
    bare + bare * HEADROOM_PERCENT / 100
}

/// A key's value as the chart renders it: the chart's own setting, else drawbridge's default.
fn chart_setting(values: &BTreeMap<String, String>, chart_key: &str, config_key: &str) -> u64 {
    if let Some(v) = values.get(chart_key) {
        return v
            .parse()
            .unwrap_or_else(|_| panic!("values.yaml {chart_key}: {v} is not a number"));
    }
    support::process::config_keys()[config_key]
        .as_u64()
        .unwrap_or_else(|| panic!("config-keys: {config_key} has no numeric default"))
}

#[test]
fn chart_memory_limit_at_default_load_fits_the_worst_case() {
    let values = yaml_scalars(&repo_file("helm/drawbridge/values.yaml"));
    let limit = values
        .get("resources.limits.memory")
        .and_then(|q| quantity_bytes(q))
        .expect("values.yaml sets resources.limits.memory");
    let entries = chart_setting(&values, "cache.maxEntries", "cache.max_entries");
    let tunnels = chart_setting(
        &values,
        "config.limits.max_connections",
        "limits.max_connections",
    );
    let verified = verified_max();
    let claim_sets = claim_sets_max();
    let c = costs();
    let worst = worst_case(&c, entries, tunnels, verified, claim_sets);
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    assert!(
        worst <= limit,
        "at its defaults the pod needs {:.0} MiB ({:.1} MiB baseline + {entries} decisions × {} B + \
         {tunnels} tunnels × {} B + {verified} forward-auth sessions × {} B + {:.0} MiB of claim \
         sets, + {HEADROOM_PERCENT} %), over the chart's limit of {:.0} MiB",
        mib(worst),
        mib(c.baseline),
        c.per_decision,
        c.per_tunnel,
        c.per_verified,
        mib(claim_sets),
        mib(limit),
    );
}

#[test]
fn chart_memory_worst_case_over_a_small_limit_does_not_fit() {
    let c = Costs {
        baseline: 20 << 20,
        per_decision: 1500,
        per_tunnel: 16 << 10,
        per_verified: 1 << 10,
    };
    // 20 MiB + 100,000 × 1,500 B + 10,000 × 16 KiB + 10,000 × 1 KiB is about 329 MiB, 395 MiB
    // with the headroom.
    let worst = worst_case(&c, 100_000, 10_000, 10_000, 0);
    assert!(worst > quantity_bytes("384Mi").unwrap());
    assert!(worst < quantity_bytes("400Mi").unwrap());
    assert_eq!(worst_case(&c, 0, 0, 0, 0), (20 << 20) * 6 / 5);
    assert_eq!(
        worst_case(&c, 0, 0, 10, 0) - worst_case(&c, 0, 0, 0, 0),
        10 * 1024 * 6 / 5
    );
    assert_eq!(
        worst_case(&c, 0, 0, 0, 1 << 20) - worst_case(&c, 0, 0, 0, 0),
        (1 << 20) * 6 / 5
    );
    assert_eq!(claim_sets_max(), 16 << 20);
}

#[test]
fn chart_memory_quantities_read_binary_and_decimal_units() {
    assert_eq!(quantity_bytes("256Mi"), Some(256 << 20));
    assert_eq!(quantity_bytes("1Gi"), Some(1 << 30));
    assert_eq!(quantity_bytes("500M"), Some(500_000_000));
    assert_eq!(quantity_bytes("1048576"), Some(1 << 20));
    assert_eq!(quantity_bytes("lots"), None);
}

#[test]
fn chart_memory_yaml_paths_follow_indentation() {
    let text = "resources:\n  requests:\n    memory: 64Mi # at start\n  limits:\n    memory: \"256Mi\"\n\
                # limits:\ncache: {}\nconfig:\n  limits:\n    max_connections: 10000\n  list:\n    - a: 1\n";
    let v = yaml_scalars(text);
    assert_eq!(v["resources.requests.memory"], "64Mi");
    assert_eq!(v["resources.limits.memory"], "256Mi");
    assert_eq!(v["cache"], "{}");
    assert_eq!(v["config.limits.max_connections"], "10000");
    assert!(!v.contains_key("cache.maxEntries"));
}
