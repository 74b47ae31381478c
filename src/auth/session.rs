//! Session tokens: minted after an allow, verified on every session route and upgrade.
//!
//! Each key is parsed once: a compact JWS is its encoded header, the encoded claims, and one
//! signature, so minting costs one signing operation and no key parsing. By default
//! (`session.token_signing = "hmac"`) a session token is an HS256 JWT under a key derived from the
//! session key (HKDF-SHA256 over its private key): only drawbridge verifies sessions, since they
//! never leave it for the sync server, and an HMAC costs about a microsecond where an Ed25519
//! signature costs tens. What the sync server and other parties verify, the identity assertion,
//! stays signed with the session key itself and verifiable with the JWKS. `"key"` signs session
//! tokens with the session key too, for deployments that verify sessions elsewhere.
//!
//! A token carries the claims in their compact form (`session/compact.rs`): parts that grant
//! nothing and values equal to another claim are left out, permissions go under short keys. Both
//! forms verify, so tokens minted before the compact form stay valid until their `exp`. An HMAC
//! token names its permissions and clientInfo by reference where the set outlives the tokens
//! (`session/claim_sets.rs`): with an ephemeral key, or shared through the cluster store.
//!
//! What replicas share about a session that must stay secret (the provider token its re-checks
//! send) is sealed with AES-256-GCM under another key derived from the session key, so only
//! replicas holding the session key can read it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use aws_lc_rs::{aead, hkdf, hmac, rand::SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub(crate) mod claim_sets;
mod compact;

pub use super::decision::Profile;
use super::decision::{Allow, CompactJson};
use crate::clock::unix_now;
use crate::config::auth::{SessionConfig, TokenSigning};
use crate::permissions::Permissions;
pub use claim_sets::ClaimSets;
pub(crate) use claim_sets::{ClaimSet, Reference};

/// HKDF salt of the session-token MAC key derived from a session key; a new salt would be a new key.
const MAC_SALT: &[u8] = b"drawbridge session-token mac v1";
/// Suffix of the `kid` of a derived MAC key: `<kid of the session key>.hmac`.
const MAC_KID_SUFFIX: &str = ".hmac";
/// HKDF salt of the sealing key derived from a session key; a new salt would be a new key.
const SEAL_SALT: &[u8] = b"drawbridge session seal v1";
/// First byte of a sealed value: its layout (`version, kid length, kid, nonce, ciphertext+tag`).
const SEAL_VERSION: u8 = 1;

/// The claims of a drawbridge session token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// Issuer (`session.issuer`).
    pub iss: String,
    /// Audience (`session.audience`).
    pub aud: String,
    /// The user ID the provider named.
    pub sub: String,
    /// The app ID.
    pub app: String,
    /// The provider name.
    pub prv: String,
    /// What the user may do.
    pub permissions: Permissions,
    /// Provider clientInfo, handed back by userinfo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cli: Option<serde_json::Value>,
    /// The user's profile as the provider gave it, handed back by userinfo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pro: Option<Profile>,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
    /// When the login happened (kept across refreshes).
    pub auth_time: u64,
    /// The provider decision's expiry: no refresh goes past it.
    pub dex: u64,
    /// Session ID, kept across refreshes.
    pub sid: String,
    /// Token ID, new on every mint.
    pub jti: String,
}

impl SessionClaims {
    /// The user's e-mail address, when the provider gave one.
    pub fn email(&self) -> Option<&str> {
        self.pro.as_ref()?.email.as_deref()
    }

    /// The claims in a token's compact form, borrowed for one signing; `reference` names the
    /// permissions and clientInfo in their place.
    fn written<'a>(&'a self, reference: Option<&'a str>) -> compact::Written<'a> {
        let inline = reference.is_none();
        compact::Written {
            iss: &self.iss,
            aud: &self.aud,
            sub: &self.sub,
            app: &self.app,
            prv: &self.prv,
            reference,
            prm: inline.then_some(compact::Grants(&self.permissions)),
            cli: self.cli.as_ref().filter(|_| inline),
            pro: self.pro.as_ref(),
            iat: self.iat,
            exp: self.exp,
            auth_time: (self.auth_time != self.iat).then_some(self.auth_time),
            dex: (self.dex != self.exp).then_some(self.dex),
            sid: &self.sid,
            jti: &self.jti,
        }
    }

    /// The claims a token carried, in either form, with a claim set it names by reference read
    /// from `sets`.
    ///
    /// # Errors
    /// [`SessionError::UnknownClaims`] when `sets` holds no set by the reference the token
    /// carries; [`SessionError::Invalid`] for a token naming its permissions twice or carrying a
    /// reference beside claims of its own (no token drawbridge signed does either).
    fn read(mut r: compact::Read, sets: &ClaimSets) -> Result<Self, SessionError> {
        let (permissions, cli) = match r.reference.take() {
            Some(_) if r.carries_claims() => return Err(SessionError::Invalid),
            Some(text) => {
                let reference = claim_sets::decode(&text).ok_or(SessionError::Invalid)?;
                let set = sets.get(&reference).ok_or(SessionError::UnknownClaims {
                    reference,
                    until: r.dex.unwrap_or(r.exp),
                })?;
                (set.permissions.clone(), set.cli.clone())
            }
            None => (r.permissions().ok_or(SessionError::Invalid)?, r.cli.take()),
        };
        Ok(Self {
            permissions,
            cli,
            auth_time: r.auth_time.unwrap_or(r.iat),
            dex: r.dex.unwrap_or(r.exp),
            iss: r.iss,
            aud: r.aud,
            sub: r.sub,
            app: r.app,
            prv: r.prv,
            pro: r.pro,
            iat: r.iat,
            exp: r.exp,
            sid: r.sid,
            jti: r.jti,
        })
    }
}

/// A freshly signed token and its claims.
#[derive(Debug, Clone)]
pub struct Minted {
    /// The compact JWT.
    pub token: String,
    /// What it says.
    pub claims: SessionClaims,
    /// The claim set the token names by reference, to write to the cluster store before the
    /// token is handed out, and until when (Unix seconds); `None` when nothing needs writing.
    pub(crate) publish: Option<(Reference, Arc<ClaimSet>, u64)>,
}

/// Why a key could not be used or a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// A key file could not be read.
    #[error("cannot read session key {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A key file held no usable key.
    #[error("{}: {what}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: &'static str,
    },
    /// A key could not be generated or signed with.
    #[error("session key: {0}")]
    Crypto(String),
    /// Signature, issuer, audience or shape is wrong.
    #[error("session token invalid")]
    Invalid,
    /// Past `exp`.
    #[error("session token expired")]
    Expired,
    /// The provider's decision behind the session has expired; only a new login helps.
    #[error("the login behind this session has expired")]
    DecisionExpired,
    /// The token names its claim set by reference, and none is held here by that reference: it
    /// may be in the cluster store, else only a new login helps.
    #[error("the claims this session names are not held here")]
    UnknownClaims {
        /// The reference.
        reference: Reference,
        /// The token's last possible expiry (Unix seconds): how long a set read back is held.
        until: u64,
    },
}

/// A private key (or HMAC secret), parsed once. Built once per key and kept behind an `Arc`.
#[allow(clippy::large_enum_variant)]
enum Signer {
    Ed25519(Ed25519KeyPair),
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Hmac(hmac::Key),
}

// === impl Signer ===

impl Signer {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SessionError> {
        Ok(match self {
            Self::Ed25519(k) => k.sign(message).as_ref().to_vec(),
            Self::Ecdsa(k) => k
                .sign(&SystemRandom::new(), message)
                .map_err(crypto)?
                .as_ref()
                .to_vec(),
            Self::Rsa(k) => {
                let mut out = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut out)
                    .map_err(crypto)?;
                out
            }
            Self::Hmac(k) => hmac::sign(k, message).as_ref().to_vec(),
        })
    }
}

/// What signs tokens: the key, and the encoded header (`alg`, `kid`) every token of it starts with.
#[derive(Clone)]
struct SigningKey {
    signer: std::sync::Arc<Signer>,
    /// `base64url(header) + "."`.
    header: String,
}

// === impl SigningKey ===

impl SigningKey {
    fn new(signer: Signer, alg: Algorithm, kid: &str) -> Result<Self, SessionError> {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        let json = serde_json::to_vec(&header).map_err(crypto)?;
        Ok(Self {
            signer: std::sync::Arc::new(signer),
            header: format!("{}.", URL_SAFE_NO_PAD.encode(json)),
        })
    }

    /// A compact JWS of `claims`.
    fn sign<T: Serialize>(&self, claims: &T) -> Result<String, SessionError> {
        let json = serde_json::to_vec(claims).map_err(crypto)?;
        let mut token = String::with_capacity(self.header.len() + json.len() * 4 / 3 + 90);
        token.push_str(&self.header);
        URL_SAFE_NO_PAD.encode_string(json, &mut token);
        let signature = self.signer.sign(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }
}

/// One configured key, loaded: what it signs with and how its tokens verify, and the MAC key
/// derived from it for session tokens (none for an HS256 secret, which is one already).
#[derive(Clone)]
struct LoadedKey {
    signing: SigningKey,
    verify: VerifyKey,
    mac: Option<(SigningKey, VerifyKey)>,
    seal: SealKey,
}

/// The AES-256-GCM key that seals what replicas share about a session, derived from one session
/// key and named by that key's `kid`.
#[derive(Clone)]
struct SealKey {
    kid: String,
    key: std::sync::Arc<aead::LessSafeKey>,
    /// A key a reload took out of the config still opens until then (Unix seconds).
    retire_at: Option<u64>,
}

impl SealKey {
    fn live(&self, now: u64) -> bool {
        self.retire_at.is_none_or(|t| t > now)
    }
}

/// The sealing key of a session key: HKDF-SHA256 over its private bytes (PKCS#8, or the HS256
/// secret), bound to its `kid`.
fn derive_seal(material: &[u8], kid: &str) -> Result<SealKey, SessionError> {
    let mut secret = [0u8; 32];
    hkdf::Salt::new(hkdf::HKDF_SHA256, SEAL_SALT)
        .extract(material)
        .expand(&[kid.as_bytes()], hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut secret))
        .map_err(|_| SessionError::Crypto("cannot derive the session sealing key".into()))?;
    let key = aead::UnboundKey::new(&aead::AES_256_GCM, &secret)
        .map_err(|_| SessionError::Crypto("cannot use the session sealing key".into()))?;
    Ok(SealKey {
        kid: kid.to_owned(),
        key: std::sync::Arc::new(aead::LessSafeKey::new(key)),
        retire_at: None,
    })
}

/// The session-token MAC key of a private key: HKDF-SHA256 over its PKCS#8 bytes, bound to its `kid`.
fn derive_mac(der: &[u8], kid: &str) -> Result<(SigningKey, VerifyKey), SessionError> {
    let mut secret = [0u8; 32];
    hkdf::Salt::new(hkdf::HKDF_SHA256, MAC_SALT)
        .extract(der)
        .expand(&[kid.as_bytes()], hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut secret))
        .map_err(|_| SessionError::Crypto("cannot derive the session MAC key".into()))?;
    let mac_kid = format!("{kid}{MAC_KID_SUFFIX}");
    let signing = SigningKey::new(
        Signer::Hmac(hmac::Key::new(hmac::HMAC_SHA256, &secret)),
        Algorithm::HS256,
        &mac_kid,
    )?;
    let verify = VerifyKey {
        kid: mac_kid,
        alg: Algorithm::HS256,
        decoding: DecodingKey::from_secret(&secret),
        public: None,
        validation: Validation::new(Algorithm::HS256),
        retire_at: None,
    };
    Ok((signing, verify))
}

/// A verification key, and its public JWK when it has one (not for HS256).
#[derive(Clone)]
struct VerifyKey {
    kid: String,
    alg: Algorithm,
    decoding: DecodingKey,
    public: Option<Jwk>,
    /// Built once: the checks every token of this key gets.
    validation: Validation,
    /// A key a reload took out of the config verifies (and is published) until then (Unix seconds).
    retire_at: Option<u64>,
}

impl VerifyKey {
    fn live(&self, now: u64) -> bool {
        self.retire_at.is_none_or(|t| t > now)
    }
}

/// Mints and verifies session tokens with the configured keys.
pub struct Sessions {
    alg: Algorithm,
    kid: String,
    /// The configured key, as loaded (kept for a reload that keeps an ephemeral key).
    current: LoadedKey,
    /// Signs identity assertions: the session key itself.
    signing: SigningKey,
    /// Signs session tokens: the derived MAC key, or the session key (`token_signing = "key"`).
    session_signing: SigningKey,
    /// The `kid` of new session tokens.
    session_kid: String,
    keys: Vec<VerifyKey>,
    /// Sealing keys: the current one first, then those of the keys that still verify.
    seal_keys: Vec<SealKey>,
    issuer: String,
    audience: String,
    max_ttl: Duration,
    ephemeral: bool,
    /// Session tokens are HMAC-signed under a key only drawbridge holds (`token_signing = "hmac"`).
    hmac_tokens: bool,
    /// The claim sets tokens name by reference, kept across reloads.
    claim_sets: Arc<ClaimSets>,
    /// New tokens name their claim sets by reference: HMAC tokens, and sets that live as long as
    /// the tokens (an ephemeral key, or the cluster store).
    by_reference: bool,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("ephemeral", &self.ephemeral)
            .field("by_reference", &self.by_reference)
            .finish_non_exhaustive()
    }
}

fn random_id() -> String {
    let bytes: [u8; 16] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn crypto(e: impl std::fmt::Display) -> SessionError {
    SessionError::Crypto(e.to_string())
}

/// Loads one key; `alg` pins the algorithm, otherwise the PEM's key type decides.
fn load_key(path: &Path, alg: Option<Algorithm>) -> Result<LoadedKey, SessionError> {
    let bytes = std::fs::read(path).map_err(|source| SessionError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_key(&bytes, path, alg)
}

/// Parses key material; `path` only names it in errors.
fn parse_key(bytes: &[u8], path: &Path, alg: Option<Algorithm>) -> Result<LoadedKey, SessionError> {
    if alg == Some(Algorithm::HS256) {
        let secret = bytes.trim_ascii();
        if secret.len() < 32 {
            return Err(SessionError::Key {
                path: path.to_owned(),
                what: "an HS256 secret must be at least 32 bytes",
            });
        }
        let digest = Sha256::digest(secret);
        let kid = format!("hs-{}", hex::encode(&digest[..8]));
        let key = VerifyKey {
            kid: kid.clone(),
            alg: Algorithm::HS256,
            decoding: DecodingKey::from_secret(secret),
            public: None,
            validation: Validation::new(Algorithm::HS256),
            retire_at: None,
        };
        let signer = Signer::Hmac(hmac::Key::new(hmac::HMAC_SHA256, secret));
        return Ok(LoadedKey {
            signing: SigningKey::new(signer, Algorithm::HS256, &kid)?,
            verify: key,
            mac: None,
            seal: derive_seal(secret, &kid)?,
        });
    }
    let bad = |what| SessionError::Key {
        path: path.to_owned(),
        what,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| bad("not PEM text"))?;
    let pair = rcgen::KeyPair::from_pem(text)
        .map_err(|_| bad("no PKCS#8 PRIVATE KEY in PEM (make one with `drawbridge keygen`)"))?;
    let found = if pair.algorithm() == &rcgen::PKCS_ED25519 {
        Algorithm::EdDSA
    } else if pair.algorithm() == &rcgen::PKCS_ECDSA_P256_SHA256 {
        Algorithm::ES256
    } else if pair.is_compatible(&rcgen::PKCS_RSA_SHA256) {
        Algorithm::RS256
    } else {
        return Err(bad("the key is not Ed25519, P-256 or RSA"));
    };
    if alg.is_some_and(|a| a != found) {
        return Err(bad("the key does not match session.algorithm"));
    }
    let der = pair.serialize_der();
    let signer = match found {
        Algorithm::EdDSA => Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map(Signer::Ed25519),
        Algorithm::ES256 => {
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).map(Signer::Ecdsa)
        }
        _ => RsaKeyPair::from_pkcs8(&der).map(Signer::Rsa),
    }
    .map_err(|_| bad("the private key cannot sign"))?;
    let public = pair.public_key_pem();
    let decoding = match found {
        Algorithm::EdDSA => DecodingKey::from_ed_pem(public.as_bytes()),
        Algorithm::ES256 => DecodingKey::from_ec_pem(public.as_bytes()),
        _ => DecodingKey::from_rsa_pem(public.as_bytes()),
    }
    .map_err(crypto)?;
    let jwk = Jwk::from_decoding_key(&decoding, Some(found)).map_err(crypto)?;
    let verify = verify_key(jwk, found)?;
    let mac = derive_mac(&der, &verify.kid)?;
    let seal = derive_seal(&der, &verify.kid)?;
    Ok(LoadedKey {
        signing: SigningKey::new(signer, found, &verify.kid)?,
        verify,
        mac: Some(mac),
        seal,
    })
}

/// Names a public JWK by its RFC 7638 thumbprint and makes its verifier.
fn verify_key(mut public: Jwk, alg: Algorithm) -> Result<VerifyKey, SessionError> {
    let kid = public.thumbprint(ThumbprintHash::SHA256).map_err(crypto)?;
    public.common.key_id = Some(kid.clone());
    public.common.public_key_use = Some(PublicKeyUse::Signature);
    let decoding = DecodingKey::from_jwk(&public).map_err(crypto)?;
    Ok(VerifyKey {
        kid,
        alg,
        decoding,
        public: Some(public),
        validation: Validation::new(alg),
        retire_at: None,
    })
}

/// A new private key in PEM for `alg` (EdDSA, ES256 or RS256), or a random HS256 secret.
///
/// # Errors
/// [`SessionError::Crypto`] if the algorithm is not one drawbridge signs with.
pub fn keygen(alg: Algorithm) -> Result<String, SessionError> {
    let sig = match alg {
        Algorithm::EdDSA => &rcgen::PKCS_ED25519,
        Algorithm::ES256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        Algorithm::RS256 => {
            use aws_lc_rs::encoding::AsDer;
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(crypto)?;
            let der =
                AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'static>>::as_der(&pair).map_err(crypto)?;
            return Ok(pem::encode(&pem::Pem::new(
                "PRIVATE KEY",
                der.as_ref().to_vec(),
            )));
        }
        Algorithm::HS256 => {
            let bytes: [u8; 32] = rand::random();
            return Ok(format!("{}\n", URL_SAFE_NO_PAD.encode(bytes)));
        }
        other => {
            return Err(SessionError::Crypto(format!(
                "{other:?} is not a session algorithm"
            )));
        }
    };
    Ok(rcgen::KeyPair::generate_for(sig)
        .map_err(crypto)?
        .serialize_pem())
}

impl Sessions {
    /// Loads `session.key_file` (or makes an ephemeral Ed25519 key, with a warning) and the
    /// previous keys that still verify.
    ///
    /// # Errors
    /// [`SessionError`] when a key file is unreadable or holds no usable key.
    pub fn from_config(config: &SessionConfig) -> Result<Self, SessionError> {
        let (current, ephemeral) = match &config.key_file {
            Some(path) => (load_key(path, config.algorithm)?, false),
            None => {
                let pem = keygen(Algorithm::EdDSA)?;
                let key = parse_key(
                    pem.as_bytes(),
                    Path::new("<ephemeral key>"),
                    Some(Algorithm::EdDSA),
                )?;
                (key, true)
            }
        };
        Self::assemble(config, current, ephemeral)
    }

    /// The sessions for a reloaded `config`, built from its key files again. Without a
    /// `session.key_file` the running ephemeral key stays. Every key that verified before and is
    /// not configured any more keeps verifying, and stays in the JWKS, for the old `max_ttl`: every
    /// token it signed has expired by then, so no session breaks on a key rotation.
    ///
    /// # Errors
    /// [`SessionError`] when a key file cannot be read or used; the running sessions stay then.
    pub fn reconfigure(&self, config: &SessionConfig) -> Result<Self, SessionError> {
        let next = if config.key_file.is_none() && self.ephemeral {
            Self::assemble(config, self.current.clone(), true)?
        } else {
            Self::from_config(config)?
        };
        // Tokens minted before name their sets here, whatever the new config says of new ones.
        let mut next = next.with_claim_sets(self.claim_sets.clone());
        let now = unix_now();
        let until = now + self.max_ttl.as_secs();
        for key in self.keys.iter().filter(|k| k.live(now)) {
            if next.keys.iter().any(|k| k.kid == key.kid) {
                continue;
            }
            // It keeps its own checks (issuer, audience): the tokens it signed carry the old ones.
            let mut kept = key.clone();
            kept.retire_at = Some(key.retire_at.unwrap_or(until));
            next.keys.push(kept);
        }
        // What a retired key sealed stays readable as long as what it signed stays valid.
        for key in self.seal_keys.iter().filter(|k| k.live(now)) {
            if next.seal_keys.iter().any(|k| k.kid == key.kid) {
                continue;
            }
            let mut kept = key.clone();
            kept.retire_at = Some(key.retire_at.unwrap_or(until));
            next.seal_keys.push(kept);
        }
        Ok(next)
    }

    /// The issuer of the tokens minted and accepted here (`session.issuer`): the one source of
    /// what drawbridge calls its own tokens, for verifying, and for stripping them off requests.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `kid` new session tokens are signed under.
    pub fn signing_kid(&self) -> &str {
        &self.session_kid
    }

    fn assemble(
        config: &SessionConfig,
        mut current: LoadedKey,
        ephemeral: bool,
    ) -> Result<Self, SessionError> {
        current.verify.retire_at = None;
        let mut loaded = vec![current.clone()];
        for path in &config.previous_key_files {
            loaded.push(load_key(path, None)?);
        }
        let mut keys = Vec::new();
        for key in &loaded {
            keys.push(key.verify.clone());
            keys.extend(key.mac.as_ref().map(|(_, v)| v.clone()));
        }
        let seal_keys = loaded.iter().map(|k| k.seal.clone()).collect();
        for key in &mut keys {
            let v = &mut key.validation;
            v.leeway = 0;
            v.set_issuer(&[&config.issuer]);
            v.set_audience(&[&config.audience]);
            v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        }
        let (session_signing, session_kid) = match (&current.mac, config.token_signing) {
            (Some((mac, v)), TokenSigning::Hmac) => (mac.clone(), v.kid.clone()),
            _ => (current.signing.clone(), current.verify.kid.clone()),
        };
        let hmac_tokens = config.token_signing == TokenSigning::Hmac;
        Ok(Self {
            alg: current.verify.alg,
            kid: current.verify.kid.clone(),
            signing: current.signing.clone(),
            session_signing,
            session_kid,
            current,
            keys,
            seal_keys,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            max_ttl: config.max_ttl,
            ephemeral,
            hmac_tokens,
            claim_sets: Arc::new(ClaimSets::new(false)),
            by_reference: hmac_tokens && ephemeral,
        })
    }

    /// These sessions with `sets` for the claim sets tokens name by reference: new tokens name
    /// theirs by reference when they are HMAC-signed and the sets live as long as the tokens
    /// (an ephemeral key, or `sets` shared through the cluster store).
    #[must_use]
    pub fn with_claim_sets(mut self, sets: Arc<ClaimSets>) -> Self {
        self.by_reference = self.hmac_tokens && (self.ephemeral || sets.shared());
        self.claim_sets = sets;
        self
    }

    /// The claim sets tokens name by reference.
    pub(crate) fn claim_sets(&self) -> &ClaimSets {
        &self.claim_sets
    }

    /// Signs `claims`, naming their permissions and clientInfo by reference where that is how
    /// new tokens carry them.
    fn sign(&self, claims: SessionClaims) -> Result<Minted, SessionError> {
        let named = self
            .by_reference
            .then(|| {
                self.claim_sets
                    .name(&claims.permissions, claims.cli.as_ref(), claims.dex)
            })
            .flatten();
        let reference = named.as_ref().map(|n| claim_sets::encode(&n.reference));
        Ok(Minted {
            token: self
                .session_signing
                .sign(&claims.written(reference.as_deref()))?,
            publish: named.and_then(|n| n.publish.map(|(set, until)| (n.reference, set, until))),
            claims,
        })
    }

    /// The same claims signed again, carrying their permissions and clientInfo themselves: for
    /// a token whose claim set could not be shared.
    ///
    /// # Errors
    /// [`SessionError::Crypto`] if signing fails.
    pub(crate) fn inline(&self, claims: SessionClaims) -> Result<Minted, SessionError> {
        Ok(Minted {
            token: self.session_signing.sign(&claims.written(None))?,
            publish: None,
            claims,
        })
    }

    /// True when the signing key was made at start: tokens die with the process and replicas disagree.
    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// The session key's algorithm (what signs assertions; sessions are HS256 under `"hmac"`).
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// A session for `allow`: expires at the earlier of `session.max_ttl_seconds` and the decision's expiry.
    ///
    /// # Errors
    /// [`SessionError::DecisionExpired`] if the decision has already expired.
    pub fn mint(&self, allow: &Allow, app: &str, provider: &str) -> Result<Minted, SessionError> {
        let now = unix_now();
        let claims = SessionClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: allow.user_id.clone(),
            app: app.to_owned(),
            prv: provider.to_owned(),
            permissions: (*allow.permissions).clone(),
            cli: allow.client_info.as_ref().map(CompactJson::value),
            pro: allow.profile.as_deref().cloned(),
            iat: now,
            exp: (now + self.max_ttl.as_secs()).min(allow.expires_at),
            auth_time: now,
            dex: allow.expires_at,
            sid: random_id(),
            jti: random_id(),
        };
        if claims.exp <= now {
            return Err(SessionError::DecisionExpired);
        }
        self.sign(claims)
    }

    /// A new token for the same session, never past the decision's expiry.
    ///
    /// # Errors
    /// [`SessionError::DecisionExpired`] when the decision behind the session has run out.
    pub fn refresh(&self, claims: &SessionClaims) -> Result<Minted, SessionError> {
        let now = unix_now();
        if claims.dex <= now {
            return Err(SessionError::DecisionExpired);
        }
        let claims = SessionClaims {
            iat: now,
            exp: (now + self.max_ttl.as_secs()).min(claims.dex),
            jti: random_id(),
            ..claims.clone()
        };
        self.sign(claims)
    }

    /// Checks signature (any configured key, by `kid`), issuer, audience and expiry. Not revocation.
    ///
    /// # Errors
    /// [`SessionError::Expired`] past `exp`, [`SessionError::Invalid`] for anything else.
    pub fn verify(&self, token: &str) -> Result<SessionClaims, SessionError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| SessionError::Invalid)?;
        let kid = header.kid.as_deref().ok_or(SessionError::Invalid)?;
        let now = unix_now();
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == kid && k.live(now))
            .ok_or(SessionError::Invalid)?;
        if header.alg != key.alg {
            return Err(SessionError::Invalid);
        }
        match jsonwebtoken::decode::<compact::Read>(token, &key.decoding, &key.validation) {
            // jsonwebtoken accepts a token through the second its `exp` names; RFC 7519 §4.1.4
            // says it must not be accepted on or after that time.
            Ok(data) if data.claims.exp <= unix_now() => Err(SessionError::Expired),
            Ok(data) => SessionClaims::read(data.claims, &self.claim_sets),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                Err(SessionError::Expired)
            }
            Err(_) => Err(SessionError::Invalid),
        }
    }

    /// The public keys, current first, as served at `/.well-known/jwks.json` (none for HS256).
    pub fn jwks(&self) -> serde_json::Value {
        let now = unix_now();
        let keys: Vec<&Jwk> = self
            .keys
            .iter()
            .filter(|k| k.live(now))
            .filter_map(|k| k.public.as_ref())
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Seals `plaintext` for the other replicas (AES-256-GCM under the current session key's
    /// sealing key, a random nonce), bound to `context`: it opens only with the same context.
    ///
    /// # Errors
    /// [`SessionError::Crypto`] if no nonce can be drawn or sealing fails.
    pub(crate) fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SessionError> {
        let key = self
            .seal_keys
            .first()
            .ok_or_else(|| SessionError::Crypto("no sealing key".into()))?;
        let kid_len = u8::try_from(key.kid.len())
            .map_err(|_| SessionError::Crypto("key ID too long to seal under".into()))?;
        let mut nonce = [0u8; aead::NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(crypto)?;
        let mut sealed = plaintext.to_vec();
        key.key
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(context),
                &mut sealed,
            )
            .map_err(crypto)?;
        let mut out = Vec::with_capacity(2 + key.kid.len() + nonce.len() + sealed.len());
        out.push(SEAL_VERSION);
        out.push(kid_len);
        out.extend_from_slice(key.kid.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`seal`](Self::seal) made under any live key, with the same `context`; `None`
    /// for anything else (another key, another context, a changed byte, another layout).
    pub(crate) fn open(&self, context: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let (&version, rest) = sealed.split_first()?;
        let (&kid_len, rest) = rest.split_first()?;
        if version != SEAL_VERSION {
            return None;
        }
        let (kid, rest) = rest.split_at_checked(usize::from(kid_len))?;
        let (nonce, ciphertext) = rest.split_at_checked(aead::NONCE_LEN)?;
        let now = unix_now();
        let key = self
            .seal_keys
            .iter()
            .find(|k| k.kid.as_bytes() == kid && k.live(now))?;
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = ciphertext.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, aead::Aad::from(context), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }

    /// A short-lived assertion of `claims` for the sync server, signed with the session key.
    ///
    /// # Errors
    /// [`SessionError::Crypto`] if signing fails.
    pub fn assertion(
        &self,
        claims: &SessionClaims,
        audience: &str,
        ttl: Duration,
    ) -> Result<String, SessionError> {
        let now = unix_now();
        self.signing.sign(&serde_json::json!({
            "iss": self.issuer,
            "aud": audience,
            "sub": claims.sub,
            "app": claims.app,
            "prv": claims.prv,
            "sid": claims.sid,
            "iat": now,
            "exp": now + ttl.as_secs(),
            "jti": random_id(),
        }))
    }
}

/// The session settings unit tests start from: issuer `drawbridge`, audience `sync`, a
/// ten-minute cap, 30-second tickets, no re-checks, HMAC-signed sessions.
#[cfg(test)]
pub(crate) fn test_config(
    key_file: Option<PathBuf>,
    algorithm: Option<Algorithm>,
) -> SessionConfig {
    SessionConfig {
        algorithm,
        key_file,
        previous_key_files: Vec::new(),
        issuer: "drawbridge".into(),
        audience: "sync".into(),
        max_ttl: Duration::from_secs(600),
        close_grace: Duration::ZERO,
        ticket_ttl: Duration::from_secs(30),
        revalidate: Duration::ZERO,
        token_signing: TokenSigning::Hmac,
    }
}

#[cfg(test)]
mod tests;
