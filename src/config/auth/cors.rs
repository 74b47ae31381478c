//! `[cors]`: the browser origins allowed to call the auth routes.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::super::problem::Problem;

/// `[cors]` for the auth routes.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCors {
    /// Origins allowed to call the auth routes from a browser (`"*"` for any).
    pub allowed_origins: Vec<String>,
}

/// `[cors]`: each allowed origin once.
pub(in crate::config) fn validate(c: &RawCors, p: &mut Vec<Problem>) -> Vec<String> {
    let unique: BTreeSet<&String> = c.allowed_origins.iter().collect();
    if unique.len() != c.allowed_origins.len() {
        p.push(Problem::new(
            "cors.allowed_origins",
            "lists an origin twice",
        ));
    }
    c.allowed_origins.clone()
}
