//! The provider end to end: keys made at test time, a real JWKS server on 127.0.0.1:0 that
//! counts its hits, the shared HTTP client, and tokens signed with jsonwebtoken.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::super::check::{Check, ProviderError, http_client};
use super::super::{Access, Allow, Decision, Permissions, Reason};
use super::JwtProvider;
use crate::clock::unix_now;
use crate::config::auth::{JwksSource, JwtConfig};

const ISSUER: &str = "https://issuer.test/";
const AUDIENCE: &str = "drawbridge";

// --- keys and tokens ---

/// A signing key and the public JWK that verifies it.
struct Signer {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

impl Signer {
    fn es256(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = pair.public_key_raw();
        assert_eq!(point.len(), 65, "uncompressed P-256 point");
        Self {
            kid: kid.to_owned(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                "x": b64url(&point[1..33]), "y": b64url(&point[33..]),
            }),
        }
    }

    fn ed25519(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        Self {
            kid: kid.to_owned(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(&pair.serialize_der()),
            jwk: json!({
                "kty": "OKP", "crv": "Ed25519", "kid": kid,
                "x": b64url(pair.public_key_raw()),
            }),
        }
    }

    /// rcgen's ring backend cannot generate RSA keys, so this one comes from aws-lc-rs.
    /// Also returns the public key as SPKI DER, for the key-confusion tests.
    fn rs256(kid: &str) -> (Self, RsaPublic) {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs8 = pair.as_der().unwrap();
        let public = pair.public_key();
        let parts = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(public);
        let spki = public.as_der().unwrap().as_ref().to_vec();
        let signer = Self {
            kid: kid.to_owned(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes())
                .unwrap(),
            jwk: json!({
                "kty": "RSA", "kid": kid, "use": "sig",
                "n": b64url(&parts.n), "e": b64url(&parts.e),
            }),
        };
        let public = RsaPublic {
            pkcs1_der: public.as_ref().to_vec(),
            spki_pem: pem("PUBLIC KEY", &spki),
            spki_der: spki,
        };
        (signer, public)
    }

    fn mint(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    fn mint_without_kid(&self, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(self.alg), claims, &self.encoding).unwrap()
    }
}

/// The encodings of an RSA public key an attacker might try as an HMAC secret.
struct RsaPublic {
    pkcs1_der: Vec<u8>,
    spki_der: Vec<u8>,
    spki_pem: String,
}

impl RsaPublic {
    fn as_hmac_secrets(&self) -> [&[u8]; 3] {
        [&self.pkcs1_der, &self.spki_der, self.spki_pem.as_bytes()]
    }
}

fn jwks(signers: &[&Signer]) -> String {
    json!({ "keys": signers.iter().map(|s| s.jwk.clone()).collect::<Vec<_>>() }).to_string()
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": [AUDIENCE, "someone-else"],
        "sub": "user-1",
        "org": "acme",
        "iat": unix_now(),
        "exp": unix_now() + 600,
    })
}

fn with(mut base: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

/// A token with any header, signed with nothing (the `alg: none` shape).
fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

// --- the JWKS server ---

/// A JWKS endpoint whose reply can be changed and whose hits are counted.
struct JwksServer {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    reply: Arc<Mutex<(StatusCode, String)>>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(body: String) -> Self {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let reply = Arc::new(Mutex::new((StatusCode::OK, body)));
        let (h, r) = (hits.clone(), reply.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = tcp.accept().await {
                let (h, r) = (h.clone(), r.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |_req| {
                        h.fetch_add(1, Ordering::SeqCst);
                        let (status, body) = r.lock().unwrap().clone();
                        let mut resp = Response::new(Full::new(Bytes::from(body)));
                        *resp.status_mut() = status;
                        async move { Ok::<_, Infallible>(resp) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            hits,
            reply,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn serve(&self, status: StatusCode, body: String) {
        *self.reply.lock().unwrap() = (status, body);
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// --- the provider ---

fn permissions_template() -> Permissions {
    Permissions {
        read: Access {
            everything: false,
            queries_by_collection: BTreeMap::from([(
                "notes".to_owned(),
                vec!["owner == '{sub}' || org == '{org}'".to_owned()],
            )]),
        },
        write: Access {
            everything: false,
            queries_by_collection: BTreeMap::from([(
                "notes".to_owned(),
                vec!["owner == '{sub}'".to_owned()],
            )]),
        },
        remote_query: Some(false),
    }
}

fn config(keys: JwksSource) -> JwtConfig {
    JwtConfig {
        issuer: ISSUER.to_owned(),
        audiences: vec![AUDIENCE.to_owned()],
        keys,
        refresh: Duration::from_secs(3600),
        algorithms: vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
        user_claim: "sub".to_owned(),
        leeway: Duration::from_secs(5),
        profile_claims: crate::config::auth::ProfileClaims {
            email: "email".to_owned(),
            displayname: "name".to_owned(),
            image: String::new(),
        },
        permissions: permissions_template(),
    }
}

fn url_config(server: &JwksServer) -> JwtConfig {
    config(JwksSource::Url(server.url().parse().unwrap()))
}

fn provider(config: &JwtConfig) -> JwtProvider {
    JwtProvider::new("oidc", config, http_client().expect("native roots"))
}

/// Polls `cond` every 10 ms until it holds, failing after 10 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn ready_provider(config: &JwtConfig) -> JwtProvider {
    let p = provider(config);
    eventually("keys loaded", || p.ready()).await;
    p
}

async fn check(p: &JwtProvider, token: &str) -> Result<Decision, ProviderError> {
    p.check(&Check {
        app: "app",
        provider: "oidc",
        token,
    })
    .await
}

#[track_caller]
fn allowed(result: Result<Decision, ProviderError>) -> Arc<Allow> {
    match result {
        Ok(Decision::Allow(a)) => a,
        other => panic!("expected an allow, got {other:?}"),
    }
}

#[track_caller]
fn denied(result: Result<Decision, ProviderError>) -> String {
    match result {
        Ok(Decision::Deny(d)) => {
            assert_eq!(d.reason, Reason::InvalidCredentials);
            assert_eq!(d.client_info, None);
            d.description.clone()
        }
        other => panic!("expected a denial, got {other:?}"),
    }
}

// --- tests ---

#[tokio::test]
async fn valid_token_is_allowed_with_user_expiry_and_filled_permissions() {
    let es = Signer::es256("es-1");
    let server = JwksServer::start(jwks(&[&es])).await;
    let p = ready_provider(&url_config(&server)).await;

    let c = with(claims(), json!({"sub": "x' || true || '"}));
    let a = allowed(check(&p, &es.mint(&c)).await);
    assert_eq!(a.user_id, "x' || true || '");
    assert_eq!(a.expires_at, c["exp"].as_u64().unwrap());
    assert_eq!(
        a.permissions.read.queries_by_collection["notes"],
        [r"owner == 'x\' || true || \'' || org == 'acme'"]
    );
    assert_eq!(
        a.permissions.write.queries_by_collection["notes"],
        [r"owner == 'x\' || true || \''"]
    );
    assert_eq!(a.permissions.remote_query, Some(false));
    assert_eq!((a.client_info.clone(), a.metadata.clone()), (None, None));
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn rs256_and_eddsa_tokens_are_allowed() {
    let (rs, _) = Signer::rs256("rs-1");
    let ed = Signer::ed25519("ed-1");
    let server = JwksServer::start(jwks(&[&rs, &ed])).await;
    let p = ready_provider(&url_config(&server)).await;
    for signer in [&rs, &ed] {
        assert_eq!(
            allowed(check(&p, &signer.mint(&claims())).await).user_id,
            "user-1"
        );
    }
}

#[tokio::test]
async fn numeric_user_claim_is_stringified() {
    let es = Signer::es256("es-1");
    let server = JwksServer::start(jwks(&[&es])).await;
    let mut cfg = url_config(&server);
    cfg.user_claim = "uid".to_owned();
    let p = ready_provider(&cfg).await;
    let a = allowed(check(&p, &es.mint(&with(claims(), json!({"uid": 1234})))).await);
    assert_eq!(a.user_id, "1234");
}

#[tokio::test]
async fn missing_user_or_template_claim_is_denied() {
    let es = Signer::es256("es-1");
    let server = JwksServer::start(jwks(&[&es])).await;
    let p = ready_provider(&url_config(&server)).await;
    for c in [
        with(claims(), json!({"sub": null})),
        with(claims(), json!({"sub": ""})),
        with(claims(), json!({"sub": ["user-1"]})),
        with(claims(), json!({"org": null})),
        with(claims(), json!({"org": {"id": 1}})),
    ] {
        denied(check(&p, &es.mint(&c)).await);
    }
}

#[tokio::test]
async fn rotated_key_with_new_kid_is_accepted_after_one_refetch() {
    let old = Signer::es256("2024");
    let new = Signer::ed25519("2025");
    let server = JwksServer::start(jwks(&[&old])).await;
    let p = ready_provider(&url_config(&server)).await;
    assert_eq!(server.hits(), 1);
    allowed(check(&p, &old.mint(&claims())).await);

    // The issuer publishes the next key and starts signing with it.
    server.serve(StatusCode::OK, jwks(&[&old, &new]));
    allowed(check(&p, &new.mint(&claims())).await);
    assert_eq!(server.hits(), 2);
    // Known now: no further fetch.
    allowed(check(&p, &new.mint(&claims())).await);
    allowed(check(&p, &old.mint(&claims())).await);
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn unknown_kids_within_interval_cause_at_most_one_refetch() {
    let es = Signer::es256("es-1");
    let server = JwksServer::start(jwks(&[&es])).await;
    let p = ready_provider(&url_config(&server)).await;
    assert_eq!(server.hits(), 1);

    let stranger = Signer::es256("ghost-1");
    denied(check(&p, &stranger.mint(&claims())).await);
    assert_eq!(server.hits(), 2);
    let stranger = Signer::es256("ghost-2");
    denied(check(&p, &stranger.mint(&claims())).await);
    assert_eq!(server.hits(), 2, "second unknown kid within the interval");
    // Known keys keep working meanwhile.
    allowed(check(&p, &es.mint(&claims())).await);
}

#[tokio::test]
async fn concurrent_unknown_kids_share_one_refetch() {
    let es = Signer::es256("es-1");
    let server = JwksServer::start(jwks(&[&es])).await;
    let p = ready_provider(&url_config(&server)).await;
    assert_eq!(server.hits(), 1);

    let tokens: Vec<String> = (0..8)
        .map(|i| Signer::es256(&format!("ghost-{i}")).mint(&claims()))
        .collect();
    let results = futures_util::future::join_all(tokens.iter().map(|t| check(&p, t))).await;
    for r in results {
        denied(r);
    }
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn wrong_audience_token_is_denied() {
    let es = Signer::es256("es-1");
    let server = JwksServer::start(jwks(&[&es])).await;
    let p = ready_provider(&url_config(&server)).await;
    for aud in [
        json!("someone-else"),
        json!(["a", "b"]),
        json!([]),
        json!(null),
    ] {
        let description = denied(check(&p, &es.mint(&with(claims(), json!({"aud": aud})))).await);
        assert_eq!(description, "invalid token");
    }
    // A single-string audience is fine.
    allowed(check(&p, &es.mint(&with(claims(), json!({"aud": AUDIENCE})))).await);
}

#[tokio::test]
async fn wrong_issuer_token_is_denied() {
    let es = Signer::es256("es-1");
    let server = JwksServer::start(jwks(&[&es])).await;
    let p = ready_provider(&url_config(&server)).await;
    for iss in [
        json!("https://evil.test/"),
        json!("https://issuer.test"),
        json!([ISSUER, "https://evil.test/"]),
        json!([ISSUER]),
        json!(null),
    ] {
        denied(check(&p, &es.mint(&with(claims(), json!({"iss": iss})))).await);
    }
}

#[tokio::test]
async fn expired_or_not_yet_valid_token_is_denied() {
    let es = Signer::es256("es-1");
    let server = JwksServer::start(jwks(&[&es])).await;
    let p = ready_provider(&url_config(&server)).await;
    let now = unix_now();
    for c in [
        with(claims(), json!({"exp": now - 60})),
        with(claims(), json!({"exp": null})),
        with(claims(), json!({"exp": "tomorrow"})),
        with(claims(), json!({"nbf": now + 60})),
    ] {
        denied(check(&p, &es.mint(&c)).await);
    }
    // Within the 5 s leeway.
    allowed(
        check(
            &p,
            &es.mint(&with(claims(), json!({"exp": now - 1, "nbf": now + 1}))),
        )
        .await,
    );
}

#[tokio::test]
async fn token_at_the_end_of_its_leeway_is_denied() {
    let es = Signer::es256("es-1");
    let server = JwksServer::start(jwks(&[&es])).await;
    let p = ready_provider(&url_config(&server)).await;
    // At the start of a second, so both checks below run within it.
    let first = unix_now();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while unix_now() == first {
        assert!(
            std::time::Instant::now() < deadline,
            "the clock stands still"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let now = unix_now();
    // exp + leeway (5 s) = now: no longer acceptable; one second more still is.
    denied(check(&p, &es.mint(&with(claims(), json!({"exp": now - 5})))).await);
    allowed(check(&p, &es.mint(&with(claims(), json!({"exp": now - 4})))).await);
}

#[tokio::test]
async fn alg_none_token_is_denied() {
    let es = Signer::es256("es-1");
    let server = JwksServer::start(jwks(&[&es])).await;
    let p = ready_provider(&url_config(&server)).await;
    for alg in ["none", "None", "NONE", "nOnE"] {
        for header in [
            json!({"alg": alg, "typ": "JWT"}),
            json!({"alg": alg, "typ": "JWT", "kid": "es-1"}),
        ] {
            denied(check(&p, &unsigned(&header, &claims())).await);
        }
    }
    // The same with a real signature pasted on.
    let real = es.mint(&claims());
    let signature = real.rsplit('.').next().unwrap();
    let forged = format!(
        "{}{signature}",
        unsigned(&json!({"alg": "none", "kid": "es-1"}), &claims())
    );
    denied(check(&p, &forged).await);
}

#[tokio::test]
async fn hs256_token_signed_with_rsa_public_key_is_denied() {
    let (rs, public) = Signer::rs256("rs-1");
    let server = JwksServer::start(jwks(&[&rs])).await;
    // Config validation refuses HS*; the key-family check must hold even if it did not.
    let mut lax = url_config(&server);
    lax.algorithms.push(Algorithm::HS256);
    for cfg in [url_config(&server), lax] {
        let p = ready_provider(&cfg).await;
        for secret in public
            .as_hmac_secrets()
            .into_iter()
            .chain([rs.jwk["n"].as_str().unwrap().as_bytes()])
        {
            let forger = Signer {
                kid: "rs-1".to_owned(),
                alg: Algorithm::HS256,
                encoding: EncodingKey::from_secret(secret),
                jwk: Value::Null,
            };
            denied(check(&p, &forger.mint(&claims())).await);
            denied(check(&p, &forger.mint_without_kid(&claims())).await);
        }
        allowed(check(&p, &rs.mint(&claims())).await);
    }
}

#[tokio::test]
async fn symmetric_key_in_jwks_is_never_used() {
    let es = Signer::es256("es-1");
    let secret = b"shared-secret-published-by-mistake";
    let mut doc: Value = serde_json::from_str(&jwks(&[&es])).unwrap();
    doc["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kty": "oct", "kid": "hmac", "k": b64url(secret)}));
    let server = JwksServer::start(doc.to_string()).await;
    let mut cfg = url_config(&server);
    cfg.algorithms.push(Algorithm::HS256);
    let p = ready_provider(&cfg).await;
    let forger = Signer {
        kid: "hmac".to_owned(),
        alg: Algorithm::HS256,
        encoding: EncodingKey::from_secret(secret),
        jwk: Value::Null,
    };
    denied(check(&p, &forger.mint(&claims())).await);
}

#[tokio::test]
async fn token_with_bad_signature_or_shape_is_denied() {
    let es = Signer::es256("es-1");
    let server = JwksServer::start(jwks(&[&es])).await;
    let p = ready_provider(&url_config(&server)).await;
    // Same kid, different key.
    let impostor = Signer::es256("es-1");
    denied(check(&p, &impostor.mint(&claims())).await);
    // Claims swapped after signing.
    let good = es.mint(&claims());
    let parts: Vec<&str> = good.split('.').collect();
    let evil = b64url(
        with(claims(), json!({"sub": "admin"}))
            .to_string()
            .as_bytes(),
    );
    denied(check(&p, &format!("{}.{evil}.{}", parts[0], parts[2])).await);
    // Not a JWT, or a header with a critical extension we do not understand.
    for junk in ["", "a.b", "a.b.c", "not a token", &format!("{good}.extra")] {
        denied(check(&p, junk).await);
    }
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("es-1".to_owned());
    header.crit = Some(vec!["exp-ext".to_owned()]);
    denied(
        check(
            &p,
            &jsonwebtoken::encode(&header, &claims(), &es.encoding).unwrap(),
        )
        .await,
    );
}

#[tokio::test]
async fn token_without_kid_uses_the_only_key_and_is_denied_among_several() {
    let es = Signer::es256("es-1");
    let server = JwksServer::start(jwks(&[&es])).await;
    let p = ready_provider(&url_config(&server)).await;
    allowed(check(&p, &es.mint_without_kid(&claims())).await);

    let other = Signer::es256("es-2");
    let server = JwksServer::start(jwks(&[&es, &other])).await;
    let p = ready_provider(&url_config(&server)).await;
    denied(check(&p, &es.mint_without_kid(&claims())).await);
    allowed(check(&p, &es.mint(&claims())).await);
}

#[tokio::test]
async fn keys_file_source_token_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let first = Signer::es256("file-1");
    std::fs::write(&path, jwks(&[&first])).unwrap();
    let p = ready_provider(&config(JwksSource::File(path.clone()))).await;
    allowed(check(&p, &first.mint(&claims())).await);

    // A key added to the file is picked up by the unknown-kid reload.
    let second = Signer::ed25519("file-2");
    std::fs::write(&path, jwks(&[&first, &second])).unwrap();
    allowed(check(&p, &second.mint(&claims())).await);
}

#[tokio::test]
async fn jwks_unreachable_at_start_is_not_ready_and_check_errors() {
    // A port nobody listens on.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let es = Signer::es256("es-1");
    let cfg = config(JwksSource::Url(
        format!("http://{addr}/jwks.json").parse().unwrap(),
    ));
    let p = provider(&cfg);
    assert!(!p.ready());
    assert!(matches!(
        check(&p, &es.mint(&claims())).await,
        Err(ProviderError::Keys)
    ));
    assert!(!p.ready());
}

#[tokio::test]
async fn jwks_failing_at_start_is_not_ready_until_it_recovers() {
    let es = Signer::es256("es-1");
    let server = JwksServer::start(String::new()).await;
    server.serve(StatusCode::SERVICE_UNAVAILABLE, jwks(&[&es]));
    let p = provider(&url_config(&server));
    eventually("first fetch attempt", || server.hits() >= 1).await;
    assert!(!p.ready());
    assert!(matches!(
        check(&p, &es.mint(&claims())).await,
        Err(ProviderError::Keys)
    ));
    // Garbage with a 200 is no better.
    server.serve(StatusCode::OK, "<html>login</html>".to_owned());
    eventually("second fetch attempt", || server.hits() >= 2).await;
    assert!(!p.ready());
    // The loader retries on its own until the keys arrive.
    server.serve(StatusCode::OK, jwks(&[&es]));
    eventually("keys loaded after recovery", || p.ready()).await;
    allowed(check(&p, &es.mint(&claims())).await);
}

#[tokio::test]
async fn jwks_reply_over_one_mib_is_refused() {
    let es = Signer::es256("es-1");
    let mut doc: Value = serde_json::from_str(&jwks(&[&es])).unwrap();
    doc["padding"] = json!("x".repeat(super::keys::MAX_JWKS_BYTES));
    let server = JwksServer::start(doc.to_string()).await;
    let p = provider(&url_config(&server));
    eventually("fetch attempt", || server.hits() >= 1).await;
    assert!(matches!(
        check(&p, &es.mint(&claims())).await,
        Err(ProviderError::Keys)
    ));
}

#[tokio::test]
async fn failed_refresh_keeps_the_previous_keys() {
    let es = Signer::es256("es-1");
    let server = JwksServer::start(jwks(&[&es])).await;
    let mut cfg = url_config(&server);
    cfg.refresh = Duration::from_millis(50);
    let p = ready_provider(&cfg).await;
    for (status, body) in [
        (StatusCode::INTERNAL_SERVER_ERROR, jwks(&[&es])),
        (StatusCode::OK, "not json".to_owned()),
        (StatusCode::OK, r#"{"keys":[]}"#.to_owned()),
    ] {
        server.serve(status, body);
        let seen = server.hits();
        eventually("a refresh after the change", || server.hits() >= seen + 2).await;
        assert!(p.ready());
        allowed(check(&p, &es.mint(&claims())).await);
    }
}

#[tokio::test]
async fn scheduled_refresh_picks_up_new_keys_without_a_token() {
    let old = Signer::es256("old");
    let new = Signer::es256("new");
    let server = JwksServer::start(jwks(&[&old])).await;
    let mut cfg = url_config(&server);
    cfg.refresh = Duration::from_millis(50);
    let p = ready_provider(&cfg).await;
    server.serve(StatusCode::OK, jwks(&[&new]));
    let seen = server.hits();
    eventually("a scheduled refresh", || server.hits() >= seen + 2).await;
    // The new key works and the old one is gone, with no token having asked for either.
    allowed(check(&p, &new.mint(&claims())).await);
    denied(check(&p, &old.mint(&claims())).await);
}

#[tokio::test]
async fn dropped_provider_stops_fetching() {
    let es = Signer::es256("es-1");
    let server = JwksServer::start(jwks(&[&es])).await;
    let mut cfg = url_config(&server);
    cfg.refresh = Duration::from_millis(20);
    let p = ready_provider(&cfg).await;
    drop(p);
    // At most a fetch already on the wire may still arrive; an absence can only be shown
    // over a window, here ten refresh intervals.
    let at_drop = server.hits();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(server.hits() <= at_drop + 1);
}
