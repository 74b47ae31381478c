//! The compact claim form of session tokens: defaults left out, permissions in short keys.
//!
//! A token carries `prm` instead of the Ditto-shaped `permissions`: `{"r": A, "w": A, "q": bool}`,
//! each part left out when it grants nothing (`q` when unsaid), where `A` is `true` for
//! "everything, no per-collection queries" and otherwise `{"e": true, "c": {"<collection>":
//! ["<query>", ...]}}` (`e` left out when false, `c` when empty). `auth_time` is left out when it
//! equals `iat` (a token minted at login) and `dex` when it equals `exp`. Tokens of the earlier
//! form (`permissions`, `auth_time` and `dex` always present) are still read. An HMAC-signed token
//! may name its `prm` and `cli` by reference instead (`ref`, `session/claim_sets.rs`).

use std::collections::BTreeMap;

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::auth::decision::Profile;
use crate::permissions::{Access, Permissions};

/// The claims as a token carries them, borrowed from the session's claims for one signing.
#[derive(Serialize)]
pub(super) struct Written<'a> {
    pub(super) iss: &'a str,
    pub(super) aud: &'a str,
    pub(super) sub: &'a str,
    pub(super) app: &'a str,
    pub(super) prv: &'a str,
    /// The claim set named by reference, in place of `prm` and `cli` (`session/claim_sets.rs`).
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub(super) reference: Option<&'a str>,
    #[serde(skip_serializing_if = "Grants::absent")]
    pub(super) prm: Option<Grants<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) cli: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) pro: Option<&'a Profile>,
    pub(super) iat: u64,
    pub(super) exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) auth_time: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) dex: Option<u64>,
    pub(super) sid: &'a str,
    pub(super) jti: &'a str,
}

/// The claims as read from a token of either form.
#[derive(Deserialize)]
pub(super) struct Read {
    pub(super) iss: String,
    pub(super) aud: String,
    pub(super) sub: String,
    pub(super) app: String,
    pub(super) prv: String,
    /// A claim set named by reference.
    #[serde(default, rename = "ref")]
    pub(super) reference: Option<String>,
    #[serde(default)]
    prm: Option<GrantsForm>,
    /// The earlier form's Ditto-shaped permissions.
    #[serde(default)]
    permissions: Option<Permissions>,
    #[serde(default)]
    pub(super) cli: Option<serde_json::Value>,
    #[serde(default)]
    pub(super) pro: Option<Profile>,
    pub(super) iat: u64,
    pub(super) exp: u64,
    #[serde(default)]
    pub(super) auth_time: Option<u64>,
    #[serde(default)]
    pub(super) dex: Option<u64>,
    pub(super) sid: String,
    pub(super) jti: String,
}

impl Read {
    /// Whether the token carries permissions or clientInfo of its own (never beside a reference).
    pub(super) fn carries_claims(&self) -> bool {
        self.prm.is_some() || self.permissions.is_some() || self.cli.is_some()
    }

    /// The permissions the token grants; `None` when it carries both forms (no token drawbridge
    /// signed does).
    pub(super) fn permissions(&mut self) -> Option<Permissions> {
        match (self.prm.take(), self.permissions.take()) {
            (Some(compact), None) => Some(compact.into()),
            (None, Some(ditto)) => Some(ditto),
            (None, None) => Some(Permissions::default()),
            (Some(_), Some(_)) => None,
        }
    }
}

/// Permissions in their compact form, borrowed for writing.
pub(super) struct Grants<'a>(pub(super) &'a Permissions);

impl Grants<'_> {
    /// Left out of a token: none given (they are named by reference), or granting nothing.
    pub(super) fn absent(grants: &Option<Self>) -> bool {
        grants.as_ref().is_none_or(Self::is_empty)
    }

    fn is_empty(&self) -> bool {
        let p = self.0;
        grants_nothing(&p.read) && grants_nothing(&p.write) && p.remote_query.is_none()
    }
}

fn grants_nothing(a: &Access) -> bool {
    !a.everything && a.queries_by_collection.is_empty()
}

impl Serialize for Grants<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut map = s.serialize_map(None)?;
        for (key, access) in [("r", &p.read), ("w", &p.write)] {
            if !grants_nothing(access) {
                map.serialize_entry(key, &AccessRef(access))?;
            }
        }
        if let Some(q) = p.remote_query {
            map.serialize_entry("q", &q)?;
        }
        map.end()
    }
}

struct AccessRef<'a>(&'a Access);

impl Serialize for AccessRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let a = self.0;
        if a.everything && a.queries_by_collection.is_empty() {
            return s.serialize_bool(true);
        }
        let mut map = s.serialize_map(None)?;
        if a.everything {
            map.serialize_entry("e", &true)?;
        }
        if !a.queries_by_collection.is_empty() {
            map.serialize_entry("c", &a.queries_by_collection)?;
        }
        map.end()
    }
}

/// The compact permissions, as read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GrantsForm {
    #[serde(default)]
    r: Option<AccessForm>,
    #[serde(default)]
    w: Option<AccessForm>,
    #[serde(default)]
    q: Option<bool>,
}

/// One side of the compact permissions, as read: `true`, or the rules.
#[derive(Deserialize)]
#[serde(untagged)]
enum AccessForm {
    Everything(bool),
    Rules(RulesForm),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesForm {
    #[serde(default)]
    e: bool,
    #[serde(default)]
    c: BTreeMap<String, Vec<String>>,
}

impl From<Option<AccessForm>> for Access {
    fn from(form: Option<AccessForm>) -> Self {
        match form {
            None => Self::default(),
            Some(AccessForm::Everything(everything)) => Self {
                everything,
                queries_by_collection: BTreeMap::new(),
            },
            Some(AccessForm::Rules(r)) => Self {
                everything: r.e,
                queries_by_collection: r.c,
            },
        }
    }
}

impl From<GrantsForm> for Permissions {
    fn from(g: GrantsForm) -> Self {
        Self {
            read: g.r.into(),
            write: g.w.into(),
            remote_query: g.q,
        }
    }
}
