//! Every key of the config file with its default, derived from the raw serde structs: the list
//! deployment tooling checks itself against (the Helm chart must offer a value for each), so a new
//! key is listed the moment it is added to a struct.

use serde_json::{Map, Value};

use super::raw::{RawCluster, RawConfig, RawProvider};

/// One config key: its dotted path and its default (`null`: none, or required).
///
/// The keys of a provider are listed per kind: `providers.<name>.kind`, then
/// `providers.<webhook>.url`, `providers.<jwt>.issuer`, `providers.<group>.members`, ...
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConfigKey {
    /// `section.key`; keys of a named table read `providers.<webhook>.url`, `apps.<appID>.providers`
    /// (the placeholder in angle brackets, for providers the kind).
    pub key: String,
    /// The default as JSON; `null` when there is none.
    pub default: Value,
}

/// Every key of drawbridge.toml, sorted by path.
///
/// Nested tables are flattened (`providers.<jwt>.profile_claims.email`); an empty table by default
/// (a map such as `headers`) is one key.
///
/// # Panics
/// Never in practice: the raw structs serialize to JSON objects.
#[must_use]
pub fn config_keys() -> Vec<ConfigKey> {
    let mut keys = Vec::new();
    let mut root = to_object(&RawConfig::default());
    // Absent by default, but every key of it exists.
    root.insert(
        "cluster".to_owned(),
        Value::Object(to_object(&RawCluster::default())),
    );
    root.remove("providers");
    root.insert(
        "apps".to_owned(),
        serde_json::json!({ "<appID>": to_object(&super::raw::RawApp::default()) }),
    );
    // `kind` picks the provider's shape: one key, required, then the keys of each kind.
    let mut providers = Map::new();
    providers.insert(
        "<name>".to_owned(),
        serde_json::json!({ "kind": Value::Null }),
    );
    for kind in ["webhook", "jwt", "group"] {
        let raw: RawProvider =
            serde_json::from_value(serde_json::json!({ "kind": kind })).expect("defaults only");
        let mut keys = to_object(&raw);
        keys.remove("kind");
        providers.insert(format!("<{kind}>"), Value::Object(keys));
    }
    root.insert("providers".to_owned(), Value::Object(providers));
    let mut sections: Vec<_> = root.into_iter().collect();
    sections.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, value) in sections {
        flatten(&name, value, &mut keys);
    }
    keys
}

fn to_object<T: serde::Serialize>(v: &T) -> Map<String, Value> {
    match serde_json::to_value(v).expect("raw config structs serialize") {
        Value::Object(m) => m,
        other => panic!("not a table: {other}"),
    }
}

fn flatten(path: &str, value: Value, out: &mut Vec<ConfigKey>) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                flatten(&format!("{path}.{k}"), v, out);
            }
        }
        default => out.push(ConfigKey {
            key: path.to_owned(),
            default,
        }),
    }
}
