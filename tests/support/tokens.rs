//! A token issuer for tests: an ES256 key made with rcgen at test time, its JWKS served over
//! plain HTTP on 127.0.0.1:0, and `mint(claims)`.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::server::{Served, serve};

/// The `iss` every minted token carries unless the claims say otherwise.
pub const ISSUER: &str = "https://issuer.test/";
/// The `kid` of the issuer's key.
pub const KID: &str = "test-1";

/// A JWKS endpoint and the key behind it.
pub struct Issuer {
    pub addr: SocketAddr,
    key: EncodingKey,
    server: Served,
}

impl Issuer {
    /// Generates a key and starts serving its JWKS.
    pub async fn start() -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = pair.public_key_raw();
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": KID, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        }]})
        .to_string();
        let server =
            serve(move |_| std::future::ready(super::server::json(200, jwks.clone()))).await;
        Self {
            addr: server.addr,
            key: EncodingKey::from_ec_der(&pair.serialize_der()),
            server,
        }
    }

    /// `http://127.0.0.1:<port>/.well-known/jwks.json`.
    pub fn jwks_url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    /// Good claims for `sub` and `aud`, expiring in ten minutes.
    pub fn claims(&self, sub: &str, aud: &str) -> Value {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        json!({"iss": ISSUER, "aud": aud, "sub": sub, "iat": now, "exp": now + 600})
    }

    /// A token signed with the issuer's key.
    pub fn mint(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(KID.to_owned());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}
