//! What an authenticated user may do, in the Ditto permissions shape, and how two grants combine.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Read or write rules, in the Ditto permissions shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Access {
    /// Everything in every collection.
    #[serde(default)]
    pub everything: bool,
    /// Per collection, the queries a document must match.
    #[serde(default, rename = "queriesByCollection")]
    pub queries_by_collection: BTreeMap<String, Vec<String>>,
}

/// What an authenticated user may do, in the Ditto permissions shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Permissions {
    /// Read rules.
    #[serde(default)]
    pub read: Access,
    /// Write rules.
    #[serde(default)]
    pub write: Access,
    /// Whether remote queries are allowed.
    #[serde(
        default,
        rename = "remoteQuery",
        skip_serializing_if = "Option::is_none"
    )]
    pub remote_query: Option<bool>,
}

impl Access {
    /// Rules that allow only what both `self` and `other` allow.
    fn intersect(&self, other: &Self) -> Self {
        match (self.everything, other.everything) {
            (true, true) => Self {
                everything: true,
                queries_by_collection: BTreeMap::new(),
            },
            (true, false) => other.clone(),
            (false, true) => self.clone(),
            (false, false) => {
                let either = |qs: &[String]| format!("({})", qs.join(") || ("));
                let queries_by_collection = self
                    .queries_by_collection
                    .iter()
                    .filter_map(|(coll, mine)| {
                        let theirs = other.queries_by_collection.get(coll)?;
                        if mine.is_empty() || theirs.is_empty() {
                            return None;
                        }
                        Some((
                            coll.clone(),
                            vec![format!("{} && {}", either(mine), either(theirs))],
                        ))
                    })
                    .collect();
                Self {
                    everything: false,
                    queries_by_collection,
                }
            }
        }
    }
}

impl Permissions {
    /// Whether `self` allows at least what `earlier` allowed, rule by rule: `everything` stays, and
    /// every collection keeps every query it had. Any other change counts as narrower, since
    /// queries are not compared by meaning.
    pub fn covers(&self, earlier: &Self) -> bool {
        let access = |now: &Access, then: &Access| {
            now.everything
                || (!then.everything
                    && then.queries_by_collection.iter().all(|(coll, qs)| {
                        now.queries_by_collection
                            .get(coll)
                            .is_some_and(|mine| qs.iter().all(|q| mine.contains(q)))
                    }))
        };
        let remote = match (earlier.remote_query, self.remote_query) {
            (Some(true), now) => now == Some(true),
            (None, now) => now != Some(false),
            (Some(false), _) => true,
        };
        access(&self.read, &earlier.read) && access(&self.write, &earlier.write) && remote
    }

    /// Permissions that allow only what both allow.
    pub fn intersect(&self, other: &Self) -> Self {
        Self {
            read: self.read.intersect(&other.read),
            write: self.write.intersect(&other.write),
            // Unsaid means the sync server's default; where only one side speaks, allow nothing extra.
            remote_query: match (self.remote_query, other.remote_query) {
                (None, None) => None,
                (Some(a), Some(b)) => Some(a && b),
                _ => Some(false),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(colls: &[(&str, &[&str])]) -> Permissions {
        Permissions {
            read: Access {
                everything: false,
                queries_by_collection: colls
                    .iter()
                    .map(|(c, qs)| {
                        (
                            (*c).to_owned(),
                            qs.iter().map(|q| (*q).to_owned()).collect(),
                        )
                    })
                    .collect(),
            },
            ..Permissions::default()
        }
    }

    #[test]
    fn covers_same_or_wider_but_not_narrower() {
        let before = reading(&[("cars", &["true"])]);
        assert!(before.covers(&before));
        assert!(reading(&[("cars", &["true"]), ("boats", &["true"])]).covers(&before));
        let mut all = Permissions::default();
        all.read.everything = true;
        assert!(all.covers(&before));
        assert!(!before.covers(&all));
        assert!(!reading(&[]).covers(&before));
        assert!(!reading(&[("cars", &["owner == 1"])]).covers(&before));
    }
}
