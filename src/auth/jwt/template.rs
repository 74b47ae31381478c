//! The permissions template of a jwt provider: `{claim}` placeholders in each query string,
//! filled with the token's claim values escaped for a quoted DQL string literal.
//!
//! A placeholder is `{` + a claim name + `}`, where the name is one or more ASCII letters,
//! digits or `_ - . : /` (so namespaced claims such as `{https://example.com/org}` work) and
//! names a top-level claim. Any other `{` is kept as written. Values are inserted once and never
//! rescanned, so a claim value cannot smuggle in a placeholder of its own.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::permissions::{Access, Permissions};

/// Why a template could not be filled from a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum TemplateError {
    /// A placeholder names a claim the token does not carry.
    #[error("the token has no claim {0:?}, which the permissions template needs")]
    MissingClaim(String),
    /// A placeholder names a claim that is not a string, number or boolean.
    #[error("claim {0:?} is not a string, number or boolean")]
    NotScalar(String),
}

/// The template with every placeholder in every query filled from `claims`.
///
/// # Errors
/// [`TemplateError`] when a placeholder names a missing or non-scalar claim.
pub(super) fn fill_permissions(
    template: &Permissions,
    claims: &Map<String, Value>,
) -> Result<Permissions, TemplateError> {
    Ok(Permissions {
        read: fill_access(&template.read, claims)?,
        write: fill_access(&template.write, claims)?,
        remote_query: template.remote_query,
    })
}

fn fill_access(template: &Access, claims: &Map<String, Value>) -> Result<Access, TemplateError> {
    let queries_by_collection = template
        .queries_by_collection
        .iter()
        .map(|(collection, queries)| {
            let filled = queries
                .iter()
                .map(|q| fill_query(q, claims))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((collection.clone(), filled))
        })
        .collect::<Result<_, TemplateError>>()?;
    Ok(Access {
        everything: template.everything,
        queries_by_collection,
    })
}

/// One query with its placeholders filled from `claims`, each value escaped by [`escape_dql`].
///
/// # Errors
/// [`TemplateError`] when a placeholder names a missing or non-scalar claim.
pub(super) fn fill_query(
    query: &str,
    claims: &Map<String, Value>,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match placeholder(after) {
            Some(name) => {
                let value = match claims.get(name) {
                    None => return Err(TemplateError::MissingClaim(name.to_owned())),
                    Some(Value::String(s)) => s.clone(),
                    Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
                    Some(_) => return Err(TemplateError::NotScalar(name.to_owned())),
                };
                escape_dql(&value, &mut out);
                rest = &after[name.len() + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The claim name at the start of `s` when `s` continues with `name}`.
fn placeholder(s: &str) -> Option<&str> {
    let end = s.find(|c: char| !is_name_char(c))?;
    (end > 0 && s[end..].starts_with('}')).then(|| &s[..end])
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/')
}

/// Appends `value` escaped so that, inside a quoted DQL string literal (single or double
/// quotes), it stays one literal: backslash and both quotes get a backslash, and control
/// characters become escapes.
pub(super) fn escape_dql(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("claims are an object"),
        }
    }

    fn escaped(value: &str) -> String {
        let mut out = String::new();
        escape_dql(value, &mut out);
        out
    }

    #[test]
    fn escape_quotes_and_backslash_get_a_backslash() {
        assert_eq!(escaped(r#"a'b"c\d"#), r#"a\'b\"c\\d"#);
        assert_eq!(
            escaped("plain user-1@example.com"),
            "plain user-1@example.com"
        );
        assert_eq!(escaped("ünïcødé"), "ünïcødé");
    }

    #[test]
    fn escape_control_characters_become_escapes() {
        assert_eq!(escaped("a\nb\rc\td"), r"a\nb\rc\td");
        assert_eq!(
            escaped("\u{0}\u{8}\u{c}\u{1b}\u{7f}"),
            r"\u0000\b\f\u001b\u007f"
        );
    }

    #[test]
    fn fill_malicious_value_stays_inside_its_literal() {
        let c = claims(json!({"sub": "x' || true || '"}));
        let q = fill_query("owner == '{sub}'", &c).unwrap();
        assert_eq!(q, r"owner == 'x\' || true || \''");
        let c = claims(json!({"sub": "x\" || true || \""}));
        let q = fill_query(r#"owner == "{sub}""#, &c).unwrap();
        assert_eq!(q, r#"owner == "x\" || true || \"""#);
        // A trailing backslash cannot escape the closing quote.
        let c = claims(json!({"sub": "x\\"}));
        assert_eq!(
            fill_query("owner == '{sub}'", &c).unwrap(),
            r"owner == 'x\\'"
        );
    }

    #[test]
    fn fill_every_placeholder_with_its_claim() {
        let c = claims(json!({
            "sub": "u1", "org_id": 42, "admin": false, "https://example.com/team": "blue"
        }));
        let q = fill_query(
            "owner == '{sub}' && org == {org_id} && a == {admin} && t == '{https://example.com/team}' && again == '{sub}'",
            &c,
        )
        .unwrap();
        assert_eq!(
            q,
            "owner == 'u1' && org == 42 && a == false && t == 'blue' && again == 'u1'"
        );
    }

    #[test]
    fn fill_non_placeholder_braces_are_kept() {
        let c = claims(json!({"sub": "u1"}));
        for q in ["{}", "{ sub }", "a { b", "{sub", "}{", "{{sub}}x"] {
            let expected = if q == "{{sub}}x" { "{u1}x" } else { q };
            assert_eq!(fill_query(q, &c).unwrap(), expected, "{q}");
        }
    }

    #[test]
    fn fill_value_is_not_rescanned_for_placeholders() {
        let c = claims(json!({"sub": "{secret}", "secret": "s3"}));
        assert_eq!(fill_query("'{sub}'", &c).unwrap(), "'{secret}'");
    }

    #[test]
    fn fill_missing_or_structured_claim_is_an_error() {
        let c = claims(json!({"sub": "u1", "roles": ["a"], "nothing": null}));
        assert_eq!(
            fill_query("'{team}'", &c),
            Err(TemplateError::MissingClaim("team".into()))
        );
        assert_eq!(
            fill_query("'{roles}'", &c),
            Err(TemplateError::NotScalar("roles".into()))
        );
        assert_eq!(
            fill_query("'{nothing}'", &c),
            Err(TemplateError::NotScalar("nothing".into()))
        );
    }

    #[test]
    fn fill_permissions_fills_read_and_write_and_keeps_the_rest() {
        let template = Permissions {
            read: Access {
                everything: false,
                queries_by_collection: BTreeMap::from([(
                    "{sub}".to_owned(),
                    vec!["owner == '{sub}'".to_owned(), "true".to_owned()],
                )]),
            },
            write: Access {
                everything: true,
                queries_by_collection: BTreeMap::from([(
                    "notes".to_owned(),
                    vec!["org == '{org}'".to_owned()],
                )]),
            },
            remote_query: Some(true),
        };
        let c = claims(json!({"sub": "a'b", "org": "o1"}));
        let filled = fill_permissions(&template, &c).unwrap();
        // Collection names are not templated.
        assert_eq!(
            filled.read.queries_by_collection["{sub}"],
            [r"owner == 'a\'b'", "true"]
        );
        assert_eq!(filled.write.queries_by_collection["notes"], ["org == 'o1'"]);
        assert!(filled.write.everything && !filled.read.everything);
        assert_eq!(filled.remote_query, Some(true));
        let c = claims(json!({"sub": "u"}));
        assert_eq!(
            fill_permissions(&template, &c),
            Err(TemplateError::MissingClaim("org".into()))
        );
    }
}
