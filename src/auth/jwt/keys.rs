//! The verification keys of a jwt provider: a JWKS read from a URL or a file, reduced to the
//! public signing keys we can use, each tagged with the only algorithms it may verify.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::io::AsyncReadExt;

use super::super::check::HttpClient;
use super::super::webhook::MAX_REPLY_BYTES;
use crate::config::auth::JwksSource;

/// A JWKS larger than this (reply or file) is refused unread.
pub(super) const MAX_JWKS_BYTES: usize = MAX_REPLY_BYTES;
/// Deadline for one JWKS fetch, connect included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a JWKS could not be loaded. The previous key set, if any, stays in use.
#[derive(Debug, thiserror::Error)]
pub(super) enum KeysError {
    /// The fetch did not finish within [`FETCH_TIMEOUT`].
    #[error("JWKS fetch timed out")]
    Timeout,
    /// The JWKS URL could not be reached or the request failed.
    #[error("JWKS request failed")]
    Request(#[source] hyper_util::client::legacy::Error),
    /// The JWKS URL answered something other than 200.
    #[error("JWKS URL answered HTTP {0}")]
    Status(StatusCode),
    /// The reply body was cut short or larger than [`MAX_JWKS_BYTES`].
    #[error("JWKS reply too large or cut short")]
    Body,
    /// The keys file could not be read.
    #[error("cannot read the keys file")]
    Io(#[source] std::io::Error),
    /// The keys file is larger than [`MAX_JWKS_BYTES`].
    #[error("keys file larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    /// Not a JWKS document.
    #[error("not a JWKS document")]
    Json(#[source] serde_json::Error),
    /// A JWKS without a single public signing key we can use; taking it would lock everyone out.
    #[error("JWKS holds no usable signing key")]
    NoUsableKeys,
}

/// The curve or family of a usable key; it decides which `alg` values the key may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyKind {
    /// `kty: RSA`.
    Rsa,
    /// `kty: EC`, `crv: P-256`.
    EcP256,
    /// `kty: EC`, `crv: P-384`.
    EcP384,
    /// `kty: OKP`, `crv: Ed25519`.
    Ed25519,
}

// === impl KeyKind ===

impl KeyKind {
    /// Whether a key of this kind may verify a token signed with `alg`. Never true for HS*:
    /// a public key used as an HMAC secret is the classic key-confusion forgery.
    pub(super) fn accepts(self, alg: Algorithm) -> bool {
        use Algorithm::{ES256, ES384, EdDSA, PS256, PS384, PS512, RS256, RS384, RS512};
        match self {
            Self::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Self::EcP256 => alg == ES256,
            Self::EcP384 => alg == ES384,
            Self::Ed25519 => alg == EdDSA,
        }
    }

    /// The kind of a JWK, or `None` for keys we never verify with: symmetric (`oct`) keys,
    /// curves we do not support, and unknown key types.
    fn of(jwk: &Jwk) -> Option<Self> {
        match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Some(Self::Rsa),
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => Some(Self::EcP256),
                EllipticCurve::P384 => Some(Self::EcP384),
                _ => None,
            },
            AlgorithmParameters::OctetKeyPair(p) => match p.curve {
                EllipticCurve::Ed25519 => Some(Self::Ed25519),
                _ => None,
            },
            _ => None,
        }
    }
}

/// One public signing key.
pub(super) struct Key {
    /// The JWK `kid`.
    pub(super) kid: Option<String>,
    /// The JWK `alg`, when it pins one.
    alg: Option<Algorithm>,
    kind: KeyKind,
    /// Ready to verify.
    pub(super) decoding: DecodingKey,
}

// === impl Key ===

impl Key {
    /// The usable key a JWK describes, or `None` when it is not a public signing key we support.
    pub(super) fn from_jwk(jwk: &Jwk) -> Option<Self> {
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != PublicKeyUse::Signature)
        {
            return None;
        }
        if jwk
            .common
            .key_operations
            .as_ref()
            .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
        {
            return None;
        }
        let kind = KeyKind::of(jwk)?;
        // An `alg` we do not know (RSA-OAEP, ...) or from another family marks a key not meant
        // for us; a key that lies about its family is not worth trusting with any other alg.
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(a) => Some(Algorithm::try_from(a).ok().filter(|&a| kind.accepts(a))?),
        };
        let decoding = DecodingKey::from_jwk(jwk).ok()?;
        Some(Self {
            kid: jwk.common.key_id.clone(),
            alg,
            kind,
            decoding,
        })
    }

    /// Whether this key may verify a token signed with `alg`.
    pub(super) fn accepts(&self, alg: Algorithm) -> bool {
        self.kind.accepts(alg) && self.alg.is_none_or(|pinned| pinned == alg)
    }
}

/// Which key a token names.
pub(super) enum Pick<'a> {
    /// The key to verify with.
    Key(&'a Key),
    /// The token names a `kid` this set does not hold (the issuer may have rotated).
    UnknownKid,
    /// No usable key for this token: a `kid` whose key is of another family, or no `kid`
    /// while the set holds several keys.
    Unusable,
}

/// The usable keys of one JWKS.
pub(super) struct KeySet {
    pub(super) keys: Vec<Key>,
}

// === impl KeySet ===

impl KeySet {
    /// Parses a JWKS document (`{"keys":[...]}`), keeping the keys we can use and skipping the
    /// rest (encryption keys, unknown types), as issuers publish both side by side.
    ///
    /// # Errors
    /// [`KeysError::Json`] when it is not a JWKS; [`KeysError::NoUsableKeys`] when nothing is left.
    pub(super) fn parse(bytes: &[u8]) -> Result<Self, KeysError> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let doc: Document = serde_json::from_slice(bytes).map_err(KeysError::Json)?;
        let keys: Vec<Key> = doc
            .keys
            .into_iter()
            .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
            .filter_map(|jwk| Key::from_jwk(&jwk))
            .collect();
        if keys.is_empty() {
            return Err(KeysError::NoUsableKeys);
        }
        Ok(Self { keys })
    }

    /// The key for a token with this `kid` and `alg`: by `kid`, or the only key when the token
    /// names none.
    pub(super) fn pick(&self, kid: Option<&str>, alg: Algorithm) -> Pick<'_> {
        let found = match kid {
            Some(kid) => {
                let mut named = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .peekable();
                if named.peek().is_none() {
                    return Pick::UnknownKid;
                }
                named.find(|k| k.accepts(alg))
            }
            None => match self.keys.as_slice() {
                [only] => Some(only).filter(|k| k.accepts(alg)),
                _ => None,
            },
        };
        found.map_or(Pick::Unusable, Pick::Key)
    }
}

/// Loads the key set from its source once.
///
/// # Errors
/// [`KeysError`] when the source cannot be read or holds no usable key.
pub(super) async fn load(source: &JwksSource, client: &HttpClient) -> Result<KeySet, KeysError> {
    let bytes = match source {
        JwksSource::Url(uri) => tokio::time::timeout(FETCH_TIMEOUT, fetch(uri, client))
            .await
            .map_err(|_| KeysError::Timeout)??,
        JwksSource::File(path) => read_file(path).await?,
    };
    KeySet::parse(&bytes)
}

async fn fetch(uri: &Uri, client: &HttpClient) -> Result<Bytes, KeysError> {
    let mut req = Request::new(Full::new(Bytes::new()));
    *req.uri_mut() = uri.clone();
    req.headers_mut().insert(
        header::ACCEPT,
        http::HeaderValue::from_static("application/json"),
    );
    let resp = client.request(req).await.map_err(KeysError::Request)?;
    if resp.status() != StatusCode::OK {
        return Err(KeysError::Status(resp.status()));
    }
    Ok(Limited::new(resp.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|_| KeysError::Body)?
        .to_bytes())
}

async fn read_file(path: &Path) -> Result<Bytes, KeysError> {
    let file = tokio::fs::File::open(path).await.map_err(KeysError::Io)?;
    let mut bytes = Vec::new();
    // One byte past the cap tells "exactly at the cap" from "larger".
    file.take(MAX_JWKS_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(KeysError::Io)?;
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(KeysError::TooLarge);
    }
    Ok(bytes.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Algorithm; 12] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    // Public keys from RFC 7517 appendix A.1 and RFC 8037 appendix A.2.
    const EC_P256: &str = r#"{"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM","kid":"ec"}"#;
    const RSA: &str = r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"rsa"}"#;
    const ED25519: &str = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"ed"}"#;

    fn key(json: &str) -> Option<Key> {
        Key::from_jwk(&serde_json::from_str(json).unwrap())
    }

    fn accepted(k: &Key) -> Vec<Algorithm> {
        ALL.into_iter().filter(|&a| k.accepts(a)).collect()
    }

    #[test]
    fn key_kinds_accept_only_their_own_family() {
        let rsa = key(RSA).unwrap();
        let ec = key(EC_P256).unwrap();
        let ed = key(ED25519).unwrap();
        // The RSA key pins RS256 with `alg`.
        assert_eq!(accepted(&rsa), [Algorithm::RS256]);
        assert_eq!(accepted(&ec), [Algorithm::ES256]);
        assert_eq!(accepted(&ed), [Algorithm::EdDSA]);
        for kind in [
            KeyKind::Rsa,
            KeyKind::EcP256,
            KeyKind::EcP384,
            KeyKind::Ed25519,
        ] {
            for hs in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
                assert!(!kind.accepts(hs), "{kind:?} accepted {hs:?}");
            }
        }
        assert!(KeyKind::Rsa.accepts(Algorithm::PS512));
        assert!(!KeyKind::EcP256.accepts(Algorithm::ES384));
        assert!(!KeyKind::EcP384.accepts(Algorithm::ES256));
    }

    #[test]
    fn rsa_key_without_alg_accepts_every_rsa_alg_only() {
        let unpinned = RSA.replace(r#""alg":"RS256","#, "");
        assert_eq!(
            accepted(&key(&unpinned).unwrap()),
            [
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512
            ]
        );
    }

    #[test]
    fn non_signing_keys_are_skipped() {
        assert!(key(r#"{"kty":"oct","k":"c2VjcmV0","kid":"hmac"}"#).is_none());
        assert!(key(&RSA.replace(r#""alg":"RS256""#, r#""alg":"RSA-OAEP""#)).is_none());
        assert!(key(&RSA.replace(r#""alg":"RS256""#, r#""use":"enc""#)).is_none());
        assert!(key(&RSA.replace(r#""alg":"RS256""#, r#""key_ops":["encrypt"]"#)).is_none());
        // A key claiming an alg of another family.
        assert!(key(&RSA.replace(r#""alg":"RS256""#, r#""alg":"HS256""#)).is_none());
        assert!(key(&EC_P256.replace("P-256", "P-521")).is_none());
        assert!(key(r#"{"kty":"XYZ","kid":"odd"}"#).is_none());
    }

    #[test]
    fn jwks_with_unusable_keys_keeps_the_usable_ones() {
        let doc = format!(
            r#"{{"keys":[{RSA},{{"kty":"oct","k":"c2VjcmV0"}},{{"kty":"EC","crv":"P-256"}},{ED25519}]}}"#
        );
        let set = KeySet::parse(doc.as_bytes()).unwrap();
        let kids: Vec<_> = set.keys.iter().map(|k| k.kid.as_deref()).collect();
        assert_eq!(kids, [Some("rsa"), Some("ed")]);
    }

    #[test]
    fn jwks_without_usable_keys_is_an_error() {
        for bad in [
            &b"not json"[..],
            b"{}",
            br#"{"keys":{}}"#,
            br#"{"keys":[]}"#,
            br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#,
        ] {
            assert!(
                KeySet::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn pick_by_kid_refuses_a_key_of_another_family() {
        let set = KeySet::parse(format!(r#"{{"keys":[{RSA},{EC_P256}]}}"#).as_bytes()).unwrap();
        assert!(
            matches!(set.pick(Some("rsa"), Algorithm::RS256), Pick::Key(k) if k.kid.as_deref() == Some("rsa"))
        );
        assert!(matches!(
            set.pick(Some("rsa"), Algorithm::HS256),
            Pick::Unusable
        ));
        assert!(matches!(
            set.pick(Some("rsa"), Algorithm::ES256),
            Pick::Unusable
        ));
        assert!(matches!(
            set.pick(Some("gone"), Algorithm::RS256),
            Pick::UnknownKid
        ));
        // Two keys and no kid: no guessing.
        assert!(matches!(set.pick(None, Algorithm::RS256), Pick::Unusable));
    }

    #[test]
    fn pick_without_kid_uses_the_only_key_of_the_right_family() {
        let set = KeySet::parse(format!(r#"{{"keys":[{EC_P256}]}}"#).as_bytes()).unwrap();
        assert!(matches!(set.pick(None, Algorithm::ES256), Pick::Key(_)));
        assert!(matches!(set.pick(None, Algorithm::HS256), Pick::Unusable));
        assert!(matches!(set.pick(None, Algorithm::RS256), Pick::Unusable));
    }

    #[tokio::test]
    async fn keys_file_over_the_cap_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        let padding = " ".repeat(MAX_JWKS_BYTES);
        std::fs::write(&path, format!(r#"{{"keys":[{EC_P256}]}}{padding}"#)).unwrap();
        assert!(matches!(read_file(&path).await, Err(KeysError::TooLarge)));
    }
}
