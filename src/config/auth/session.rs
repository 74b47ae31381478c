//! `[session]`: the session tokens drawbridge mints: key, algorithm, names, lifetimes, and the
//! key files a reload reads again.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::super::problem::Problem;
use super::super::section::Section;

/// Default session issuer and audience.
pub const DEFAULT_SESSION_ISSUER: &str = "drawbridge";
/// Default cap on a session token's lifetime.
pub const DEFAULT_SESSION_MAX_TTL_SECONDS: u64 = 3_600;
/// Default upgrade ticket lifetime.
pub const DEFAULT_TICKET_TTL_SECONDS: u64 = 30;
/// `session.revalidate_seconds`: open tunnels are not re-checked.
pub const DEFAULT_SESSION_REVALIDATE_SECONDS: u64 = 0;
/// `session.token_signing`: sessions under a MAC key derived from the session key.
pub const DEFAULT_SESSION_TOKEN_SIGNING: &str = "hmac";
/// Largest `session.revalidate_seconds` (one day).
pub const MAX_SESSION_REVALIDATE_SECONDS: u64 = 86_400;
/// Default `aud` of minted tokens: the issuer's name.
pub const DEFAULT_SESSION_AUDIENCE: &str = DEFAULT_SESSION_ISSUER;
/// Default extra time a tunnel stays open past its session's expiry: none.
pub const DEFAULT_SESSION_CLOSE_GRACE_SECONDS: u64 = 0;

/// `[session]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSession {
    /// `EdDSA` (default), `ES256`, `RS256` or `HS256`.
    pub algorithm: Option<String>,
    /// PEM private key (HS256: the secret itself); absent = an ephemeral key.
    pub key_file: Option<String>,
    /// Keys that still verify during a rotation.
    pub previous_key_files: Vec<String>,
    /// `iss` of minted tokens.
    pub issuer: String,
    /// `aud` of minted tokens.
    pub audience: String,
    /// Cap on a session token's lifetime.
    pub max_ttl_seconds: u64,
    /// Extra time a tunnel stays open past its session's expiry.
    pub close_grace_seconds: u64,
    /// Lifetime of an upgrade ticket.
    pub ticket_ttl_seconds: u64,
    /// Re-check each open tunnel's decision this often (0: never).
    pub revalidate_seconds: u64,
    /// `hmac` (default): session tokens under a MAC key derived from the session key; `key`: signed
    /// with the session key, verifiable with the JWKS.
    pub token_signing: String,
}

impl Default for RawSession {
    fn default() -> Self {
        Self {
            algorithm: None,
            key_file: None,
            previous_key_files: Vec::new(),
            issuer: DEFAULT_SESSION_ISSUER.to_owned(),
            audience: DEFAULT_SESSION_AUDIENCE.to_owned(),
            max_ttl_seconds: DEFAULT_SESSION_MAX_TTL_SECONDS,
            close_grace_seconds: DEFAULT_SESSION_CLOSE_GRACE_SECONDS,
            ticket_ttl_seconds: DEFAULT_TICKET_TTL_SECONDS,
            revalidate_seconds: DEFAULT_SESSION_REVALIDATE_SECONDS,
            token_signing: DEFAULT_SESSION_TOKEN_SIGNING.to_owned(),
        }
    }
}

/// `[session]`
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Signing algorithm; `None` = from the key file (EdDSA for an ephemeral key).
    pub algorithm: Option<jsonwebtoken::Algorithm>,
    /// Private key (PEM), or the HS256 secret.
    pub key_file: Option<PathBuf>,
    /// Keys that still verify.
    pub previous_key_files: Vec<PathBuf>,
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// Cap on a token's lifetime.
    pub max_ttl: Duration,
    /// Extra time a tunnel stays open past expiry.
    pub close_grace: Duration,
    /// Upgrade ticket lifetime.
    pub ticket_ttl: Duration,
    /// How often an open tunnel's decision is asked again; zero: never.
    pub revalidate: Duration,
    /// What signs session tokens (identity assertions are always signed with the session key).
    pub token_signing: TokenSigning,
}

/// `session.token_signing`: what signs the session tokens drawbridge hands to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSigning {
    /// HS256 under a key derived from the session key: only drawbridge (every replica with the
    /// same key) verifies sessions; an HMAC costs about a microsecond.
    Hmac,
    /// The session key itself: sessions verify with the published JWKS too, at the cost of a
    /// public-key signature per login and refresh.
    Key,
}

/// Every key reloads live (a new key signs from then on; the old one keeps verifying). A reload
/// reads the key files again: the signing key and those that still verify.
impl Section for SessionConfig {
    fn named_files(&self, files: &mut Vec<PathBuf>) {
        files.extend(self.key_file.iter().cloned());
        files.extend(self.previous_key_files.iter().cloned());
    }
}

/// `[session]`: an allowed algorithm, a key where HS256 needs one, non-zero lifetimes, names.
pub(in crate::config) fn validate(s: &RawSession, p: &mut Vec<Problem>) -> SessionConfig {
    let session_algorithm = match s.algorithm.as_deref() {
        None => None,
        Some(a) => match a.parse::<jsonwebtoken::Algorithm>().ok() {
            Some(
                alg @ (jsonwebtoken::Algorithm::EdDSA
                | jsonwebtoken::Algorithm::ES256
                | jsonwebtoken::Algorithm::RS256
                | jsonwebtoken::Algorithm::HS256),
            ) => Some(alg),
            _ => {
                p.push(Problem::new(
                    "session.algorithm",
                    "must be EdDSA, ES256, RS256 or HS256",
                ));
                None
            }
        },
    };
    if session_algorithm == Some(jsonwebtoken::Algorithm::HS256) && s.key_file.is_none() {
        p.push(Problem::new(
            "session.key_file",
            "HS256 needs a key_file holding the shared secret",
        ));
    }
    for (key, v) in [
        ("session.max_ttl_seconds", s.max_ttl_seconds),
        ("session.ticket_ttl_seconds", s.ticket_ttl_seconds),
    ] {
        if v == 0 {
            p.push(Problem::new(key, "must be greater than 0"));
        }
    }
    if s.revalidate_seconds > MAX_SESSION_REVALIDATE_SECONDS {
        p.push(Problem::new(
            "session.revalidate_seconds",
            format!(
                "must be at most {} (one day); 0 turns it off",
                MAX_SESSION_REVALIDATE_SECONDS
            ),
        ));
    }
    let token_signing = match s.token_signing.as_str() {
        "hmac" => TokenSigning::Hmac,
        "key" => TokenSigning::Key,
        _ => {
            p.push(Problem::new(
                "session.token_signing",
                "must be \"hmac\" (sessions verified by drawbridge only) or \"key\" (by the JWKS too)",
            ));
            TokenSigning::Hmac
        }
    };
    if s.issuer.is_empty() || s.audience.is_empty() {
        p.push(Problem::new(
            "session.issuer",
            "issuer and audience must not be empty",
        ));
    }
    SessionConfig {
        algorithm: session_algorithm,
        key_file: s.key_file.as_ref().map(PathBuf::from),
        previous_key_files: s.previous_key_files.iter().map(PathBuf::from).collect(),
        issuer: s.issuer.clone(),
        audience: s.audience.clone(),
        max_ttl: Duration::from_secs(s.max_ttl_seconds),
        close_grace: Duration::from_secs(s.close_grace_seconds),
        ticket_ttl: Duration::from_secs(s.ticket_ttl_seconds),
        revalidate: Duration::from_secs(s.revalidate_seconds),
        token_signing,
    }
}
