use super::*;

fn config(dir: &Path, key: Option<(&str, &str)>, alg: Option<Algorithm>) -> SessionConfig {
    let key_file = key.map(|(name, pem)| {
        let p = dir.join(name);
        std::fs::write(&p, pem).unwrap();
        p
    });
    test_config(key_file, alg)
}

fn allow(expires_in: u64) -> Allow {
    Allow {
        user_id: "u1".into(),
        expires_at: unix_now() + expires_in,
        permissions: Permissions::default().into(),
        client_info: Some(serde_json::json!({"name": "Ada"}).into()),
        metadata: None,
        profile: None,
    }
}

#[test]
fn every_algorithm_mints_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    for alg in [
        Algorithm::EdDSA,
        Algorithm::ES256,
        Algorithm::RS256,
        Algorithm::HS256,
    ] {
        let pem = keygen(alg).unwrap();
        let pin = (alg == Algorithm::HS256).then_some(alg);
        let s = Sessions::from_config(&config(dir.path(), Some(("k.pem", &pem)), pin)).unwrap();
        assert_eq!(s.algorithm(), alg);
        let m = s.mint(&allow(3600), "app", "prov").unwrap();
        let back = s.verify(&m.token).unwrap();
        assert_eq!(back, m.claims, "{alg:?}");
        assert_eq!(back.exp, back.iat + 600, "max_ttl caps the lifetime");
        let jwks = s.jwks();
        let n = jwks["keys"].as_array().unwrap().len();
        assert_eq!(
            n,
            usize::from(alg != Algorithm::HS256),
            "HS256 secrets are never published"
        );
    }
}

#[test]
fn session_never_outlives_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    let s = Sessions::from_config(&config(dir.path(), None, None)).unwrap();
    assert!(s.is_ephemeral());
    let m = s.mint(&allow(5), "app", "prov").unwrap();
    assert_eq!(m.claims.exp, m.claims.dex);
    let r = s.refresh(&m.claims).unwrap();
    assert_eq!(r.claims.exp, m.claims.dex);
    assert_eq!(r.claims.sid, m.claims.sid);
    assert_ne!(r.claims.jti, m.claims.jti);
    let mut spent = m.claims.clone();
    spent.dex = unix_now();
    assert!(matches!(
        s.refresh(&spent),
        Err(SessionError::DecisionExpired)
    ));
}

#[test]
fn tampered_foreign_and_expired_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Sessions::from_config(&config(dir.path(), None, None)).unwrap();
    let other = Sessions::from_config(&config(dir.path(), None, None)).unwrap();
    let m = s.mint(&allow(3600), "app", "prov").unwrap();
    assert!(matches!(other.verify(&m.token), Err(SessionError::Invalid)));
    let mut parts: Vec<String> = m.token.split('.').map(str::to_owned).collect();
    let mut claims = m.claims.clone();
    claims.sub = "admin".into();
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    assert!(matches!(
        s.verify(&parts.join(".")),
        Err(SessionError::Invalid)
    ));
    let mut old = m.claims.clone();
    old.exp = unix_now() - 10;
    let expired = s.session_signing.sign(&old).unwrap();
    assert!(matches!(s.verify(&expired), Err(SessionError::Expired)));
    // alg: none with a valid kid is refused.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","kid":"{}"}}"#, s.session_kid)),
        parts[1]
    );
    assert!(matches!(s.verify(&none), Err(SessionError::Invalid)));
}

#[test]
fn previous_keys_keep_verifying_after_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let old_pem = keygen(Algorithm::EdDSA).unwrap();
    let old =
        Sessions::from_config(&config(dir.path(), Some(("old.pem", &old_pem)), None)).unwrap();
    let token = old.mint(&allow(3600), "app", "prov").unwrap().token;
    let mut cfg = config(
        dir.path(),
        Some(("new.pem", &keygen(Algorithm::ES256).unwrap())),
        None,
    );
    cfg.previous_key_files = vec![dir.path().join("old.pem")];
    let rotated = Sessions::from_config(&cfg).unwrap();
    assert_eq!(rotated.verify(&token).unwrap().sub, "u1");
    let kids: Vec<_> = rotated.jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].clone())
        .collect();
    assert_eq!(kids.len(), 2);
    assert_eq!(kids[0], serde_json::json!(rotated.kid));
}

#[test]
fn kid_is_the_rfc7638_thumbprint() {
    let dir = tempfile::tempdir().unwrap();
    let s = Sessions::from_config(&config(dir.path(), None, None)).unwrap();
    let jwk = &s.jwks()["keys"][0];
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        jwk["x"].as_str().unwrap()
    );
    let expected = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    assert_eq!(jwk["kid"], serde_json::json!(expected));
}

#[test]
fn unusable_key_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = Sessions::from_config(&config(dir.path(), Some(("bad.pem", "not a key")), None))
        .unwrap_err();
    assert!(e.to_string().contains("bad.pem"), "{e}");
    let e = Sessions::from_config(&config(
        dir.path(),
        Some(("short", "tooshort")),
        Some(Algorithm::HS256),
    ))
    .unwrap_err();
    assert!(e.to_string().contains("at least 32 bytes"), "{e}");
    let ed = keygen(Algorithm::EdDSA).unwrap();
    assert!(
        Sessions::from_config(&config(
            dir.path(),
            Some(("ed.pem", &ed)),
            Some(Algorithm::ES256)
        ))
        .is_err()
    );
}

#[test]
fn reconfigure_with_new_key_keeps_old_tokens_verifying() {
    let dir = tempfile::tempdir().unwrap();
    let old_pem = keygen(Algorithm::EdDSA).unwrap();
    let old = Sessions::from_config(&config(dir.path(), Some(("a.pem", &old_pem)), None)).unwrap();
    let before = old.mint(&allow(300), "app", "p").unwrap();
    let new_pem = keygen(Algorithm::EdDSA).unwrap();
    let rotated = old
        .reconfigure(&config(dir.path(), Some(("b.pem", &new_pem)), None))
        .unwrap();
    assert_ne!(rotated.signing_kid(), old.signing_kid());
    assert_eq!(
        rotated.verify(&before.token).unwrap().sid,
        before.claims.sid
    );
    let after = rotated.mint(&allow(300), "app", "p").unwrap();
    let kid = jsonwebtoken::decode_header(&after.token).unwrap().kid;
    assert_eq!(kid.as_deref(), Some(rotated.signing_kid()));
    assert_eq!(rotated.jwks()["keys"].as_array().unwrap().len(), 2);
    // A key that only rides along is not carried into a third generation past its deadline.
    assert!(old.verify(&after.token).is_err());
}

#[test]
fn reconfigure_without_key_file_keeps_the_ephemeral_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = Sessions::from_config(&config(dir.path(), None, None)).unwrap();
    let minted = s.mint(&allow(300), "app", "p").unwrap();
    let again = s.reconfigure(&config(dir.path(), None, None)).unwrap();
    assert_eq!(again.signing_kid(), s.signing_kid());
    assert!(again.verify(&minted.token).is_ok());
    assert_eq!(again.jwks()["keys"].as_array().unwrap().len(), 1);
}

fn header(token: &str) -> jsonwebtoken::Header {
    jsonwebtoken::decode_header(token).unwrap()
}

#[test]
fn session_tokens_are_hmac_by_default_and_assertions_stay_signed_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let pem = keygen(Algorithm::EdDSA).unwrap();
    let s = Sessions::from_config(&config(dir.path(), Some(("k.pem", &pem)), None)).unwrap();
    let m = s.mint(&allow(3600), "app", "prov").unwrap();
    let h = header(&m.token);
    assert_eq!(h.alg, Algorithm::HS256);
    assert_eq!(h.kid.as_deref(), Some(format!("{}.hmac", s.kid).as_str()));
    assert_eq!(h.kid.as_deref(), Some(s.signing_kid()));
    assert_eq!(s.verify(&m.token).unwrap(), m.claims);
    // The JWKS publishes the signing key only: the MAC key is never published.
    let jwks = s.jwks();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(jwks["keys"][0]["kid"], serde_json::json!(s.kid));
    // The assertion for the sync server verifies with the published key.
    let assertion = s
        .assertion(&m.claims, "sync-server", Duration::from_secs(30))
        .unwrap();
    assert_eq!(header(&assertion).alg, Algorithm::EdDSA);
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
    let jwk = set.find(&s.kid).unwrap();
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_audience(&["sync-server"]);
    let got = jsonwebtoken::decode::<serde_json::Value>(
        &assertion,
        &DecodingKey::from_jwk(jwk).unwrap(),
        &v,
    )
    .unwrap();
    assert_eq!(got.claims["sid"], serde_json::json!(m.claims.sid));
    // A session is never accepted as an assertion's stand-in and vice versa: different audiences.
    assert!(s.verify(&assertion).is_err());
}

#[test]
fn replicas_with_the_same_key_derive_the_same_mac_key_and_other_keys_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let pem = keygen(Algorithm::EdDSA).unwrap();
    let a = Sessions::from_config(&config(dir.path(), Some(("k.pem", &pem)), None)).unwrap();
    let b = Sessions::from_config(&config(dir.path(), Some(("k.pem", &pem)), None)).unwrap();
    let token = a.mint(&allow(3600), "app", "prov").unwrap().token;
    assert_eq!(b.verify(&token).unwrap().sub, "u1");
    let other = keygen(Algorithm::EdDSA).unwrap();
    let c = Sessions::from_config(&config(dir.path(), Some(("o.pem", &other)), None)).unwrap();
    assert!(matches!(c.verify(&token), Err(SessionError::Invalid)));
}

#[test]
fn public_key_as_hmac_secret_forges_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pem = keygen(Algorithm::EdDSA).unwrap();
    let s = Sessions::from_config(&config(dir.path(), Some(("k.pem", &pem)), None)).unwrap();
    let claims = s.mint(&allow(3600), "app", "prov").unwrap().claims;
    let public = s.jwks()["keys"][0]["x"].as_str().unwrap().to_owned();
    for kid in [s.kid.clone(), s.session_kid.clone()] {
        for secret in [
            public.as_bytes().to_vec(),
            URL_SAFE_NO_PAD.decode(&public).unwrap(),
        ] {
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some(kid.clone());
            let forged = jsonwebtoken::encode(
                &h,
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(&secret),
            )
            .unwrap();
            assert!(
                matches!(s.verify(&forged), Err(SessionError::Invalid)),
                "kid {kid}"
            );
        }
    }
}

#[test]
fn key_signing_makes_sessions_verifiable_with_the_jwks() {
    let dir = tempfile::tempdir().unwrap();
    for alg in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
        let pem = keygen(alg).unwrap();
        let mut cfg = config(dir.path(), Some(("k.pem", &pem)), None);
        cfg.token_signing = TokenSigning::Key;
        let s = Sessions::from_config(&cfg).unwrap();
        let m = s.mint(&allow(3600), "app", "prov").unwrap();
        let h = header(&m.token);
        assert_eq!((h.alg, h.kid.as_deref()), (alg, Some(s.kid.as_str())));
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(s.jwks()).unwrap();
        let mut v = Validation::new(alg);
        v.set_audience(&["sync"]);
        let got = jsonwebtoken::decode::<compact::Read>(
            &m.token,
            &DecodingKey::from_jwk(set.find(&s.kid).unwrap()).unwrap(),
            &v,
        )
        .unwrap();
        // Read with no claim set held: the token carries everything itself.
        assert_eq!(
            SessionClaims::read(got.claims, &ClaimSets::new(false)).ok(),
            Some(m.claims.clone()),
            "{alg:?}"
        );
        // Tokens of the other kind still verify, so switching is no logout.
        cfg.token_signing = TokenSigning::Hmac;
        let hmac = Sessions::from_config(&cfg).unwrap();
        assert_eq!(hmac.verify(&m.token).unwrap(), m.claims);
        let back = hmac.mint(&allow(3600), "app", "prov").unwrap();
        assert_eq!(s.verify(&back.token).unwrap(), back.claims);
    }
}

#[test]
fn hs256_sessions_use_the_secret_itself() {
    let dir = tempfile::tempdir().unwrap();
    let secret = keygen(Algorithm::HS256).unwrap();
    let s = Sessions::from_config(&config(
        dir.path(),
        Some(("s", &secret)),
        Some(Algorithm::HS256),
    ))
    .unwrap();
    let m = s.mint(&allow(3600), "app", "prov").unwrap();
    assert_eq!(header(&m.token).kid.as_deref(), Some(s.kid.as_str()));
    let mut v = Validation::new(Algorithm::HS256);
    v.set_audience(&["sync"]);
    let got = jsonwebtoken::decode::<compact::Read>(
        &m.token,
        &DecodingKey::from_secret(secret.trim().as_bytes()),
        &v,
    )
    .unwrap();
    assert_eq!(
        SessionClaims::read(got.claims, &ClaimSets::new(false)).ok(),
        Some(m.claims)
    );
}

#[test]
fn sealed_value_opens_only_with_its_context_and_a_shared_key() {
    let dir = tempfile::tempdir().unwrap();
    let pem = keygen(Algorithm::EdDSA).unwrap();
    let a = Sessions::from_config(&config(dir.path(), Some(("k.pem", &pem)), None)).unwrap();
    // A replica that loads the same key file opens it.
    let b = Sessions::from_config(&config(dir.path(), Some(("k.pem", &pem)), None)).unwrap();
    let secret = b"provider-token-3f9a7c";
    let sealed = a.seal(b"sid-1", secret).unwrap();
    assert!(
        !sealed.windows(secret.len()).any(|w| w == secret),
        "the plaintext shows in the sealed bytes"
    );
    assert_eq!(b.open(b"sid-1", &sealed).as_deref(), Some(&secret[..]));
    // Another session's ID, a changed byte, or a cut value opens nothing.
    assert!(b.open(b"sid-2", &sealed).is_none());
    let mut flipped = sealed.clone();
    *flipped.last_mut().unwrap() ^= 1;
    assert!(b.open(b"sid-1", &flipped).is_none());
    assert!(b.open(b"sid-1", &sealed[..sealed.len() - 1]).is_none());
    assert!(b.open(b"sid-1", &sealed[..3]).is_none());
    // Two seals of one value differ (a fresh nonce each time).
    assert_ne!(a.seal(b"sid-1", secret).unwrap(), sealed);
    // A replica with another key opens nothing.
    let other = keygen(Algorithm::EdDSA).unwrap();
    let c = Sessions::from_config(&config(dir.path(), Some(("o.pem", &other)), None)).unwrap();
    assert!(c.open(b"sid-1", &sealed).is_none());
    // After a key rotation, what the old key sealed still opens.
    let rotated = a
        .reconfigure(&config(dir.path(), Some(("o2.pem", &other)), None))
        .unwrap();
    assert_eq!(
        rotated.open(b"sid-1", &sealed).as_deref(),
        Some(&secret[..])
    );
}

/// Waits for the start of the next second, so the lines after it run within one second.
fn at_a_second_start() -> u64 {
    let first = unix_now();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let now = unix_now();
        if now != first {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the clock stands still"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn session_in_the_second_of_its_exp_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Sessions::from_config(&config(dir.path(), None, None)).unwrap();
    let m = s.mint(&allow(3600), "app", "prov").unwrap();
    let now = at_a_second_start();
    // exp = now: the token's last valid instant has passed (RFC 7519 §4.1.4).
    let mut edge = m.claims.clone();
    edge.exp = now;
    let token = s.session_signing.sign(&edge).unwrap();
    assert!(matches!(s.verify(&token), Err(SessionError::Expired)));
    // One second later is still good, with the key that signs assertions as well.
    edge.exp = now + 1;
    let token = s.session_signing.sign(&edge).unwrap();
    assert_eq!(s.verify(&token).unwrap(), edge);
    let keyed = Sessions::from_config(&SessionConfig {
        token_signing: TokenSigning::Key,
        ..config(dir.path(), None, None)
    })
    .unwrap();
    let now = at_a_second_start();
    edge.exp = now;
    let token = keyed.session_signing.sign(&edge).unwrap();
    assert!(matches!(keyed.verify(&token), Err(SessionError::Expired)));
}

/// alice's answer from the demo provider: read and write everything, her clientInfo.
fn demo_allow() -> Allow {
    Allow {
        user_id: "alice".into(),
        expires_at: unix_now() + 3600,
        permissions: std::sync::Arc::new(
            serde_json::from_value(serde_json::json!({
                "read": {"everything": true, "queriesByCollection": {}},
                "write": {"everything": true, "queriesByCollection": {}},
            }))
            .unwrap(),
        ),
        client_info: Some(serde_json::json!({"displayName": "alice", "readOnly": false}).into()),
        metadata: None,
        profile: None,
    }
}

fn payload(token: &str) -> serde_json::Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[test]
fn compact_claims_round_trip_whatever_they_hold() {
    let dir = tempfile::tempdir().unwrap();
    let s = Sessions::from_config(&config(dir.path(), None, None)).unwrap();
    let base = s.mint(&allow(3600), "app", "prov").unwrap().claims;
    let rules = |everything: bool, colls: &[(&str, &[&str])]| crate::permissions::Access {
        everything,
        queries_by_collection: colls
            .iter()
            .map(|(c, qs)| {
                (
                    (*c).to_owned(),
                    qs.iter().map(|q| (*q).to_owned()).collect(),
                )
            })
            .collect(),
    };
    let mut cases = Vec::new();
    for read in [
        rules(false, &[]),
        rules(true, &[]),
        rules(true, &[("cars", &["true"])]),
        rules(
            false,
            &[
                ("cars", &["owner == 'u1'", "shared == true"]),
                ("boats", &[]),
            ],
        ),
    ] {
        for remote_query in [None, Some(false), Some(true)] {
            let mut c = base.clone();
            c.permissions = Permissions {
                read: read.clone(),
                write: rules(false, &[("tasks", &["_id.owner == 'u1'"])]),
                remote_query,
            };
            cases.push(c);
        }
    }
    let mut odd = base.clone();
    odd.permissions = Permissions::default();
    odd.cli = None;
    odd.pro = Some(Profile {
        email: Some("u1@example.com".into()),
        displayname: None,
        image: Some("https://img.example/u1.png".into()),
    });
    odd.auth_time = odd.iat - 100;
    odd.dex = odd.exp + 3000;
    cases.push(odd);
    let mut empty_info = base.clone();
    empty_info.cli = Some(serde_json::json!({}));
    cases.push(empty_info);
    for claims in cases {
        let token = s.session_signing.sign(&claims.written(None)).unwrap();
        assert_eq!(s.verify(&token).unwrap(), claims, "{}", payload(&token));
    }
}

#[test]
fn compact_claims_leave_out_what_grants_nothing_or_repeats_a_claim() {
    let dir = tempfile::tempdir().unwrap();
    // The default cap, as long as the demo's decision: `exp` is the decision's expiry. A key
    // file: its tokens carry their claims themselves.
    let pem = keygen(Algorithm::EdDSA).unwrap();
    let mut cfg = config(dir.path(), Some(("k.pem", &pem)), None);
    cfg.max_ttl = Duration::from_secs(3600);
    let s = Sessions::from_config(&cfg).unwrap();
    let m = s.mint(&demo_allow(), "app", "demo").unwrap();
    assert_eq!(m.claims.exp, m.claims.dex);
    let p = payload(&m.token);
    assert_eq!(p["prm"], serde_json::json!({"r": true, "w": true}), "{p}");
    for gone in ["permissions", "auth_time", "dex"] {
        assert!(p.get(gone).is_none(), "{gone} in {p}");
    }
    // The earlier form of the same claims is longer.
    let old = s.session_signing.sign(&m.claims).unwrap();
    assert!(
        m.token.len() + 100 < old.len(),
        "{} vs {}",
        m.token.len(),
        old.len()
    );
    // Nothing granted: no `prm` at all.
    let mut none = demo_allow();
    none.permissions = std::sync::Arc::default();
    let p = payload(&s.mint(&none, "app", "demo").unwrap().token);
    assert!(p.get("prm").is_none(), "{p}");
    // A refresh keeps the login's time and the decision's expiry once they differ from iat and exp.
    let refreshed = Sessions::refresh(
        &s,
        &SessionClaims {
            iat: m.claims.iat - 5,
            auth_time: m.claims.iat - 5,
            exp: m.claims.exp - 5,
            ..m.claims.clone()
        },
    )
    .unwrap();
    let p = payload(&refreshed.token);
    assert_eq!(p["auth_time"], m.claims.iat - 5, "{p}");
    assert_eq!(s.verify(&refreshed.token).unwrap(), refreshed.claims);
}

#[test]
fn token_of_the_earlier_claim_form_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    for signing in [TokenSigning::Hmac, TokenSigning::Key] {
        let mut cfg = config(
            dir.path(),
            Some(("k.pem", &keygen(Algorithm::EdDSA).unwrap())),
            None,
        );
        cfg.token_signing = signing;
        let s = Sessions::from_config(&cfg).unwrap();
        let now = unix_now();
        // Exactly what drawbridge minted before the compact form, field for field.
        let earlier = serde_json::json!({
            "iss": "drawbridge", "aud": "sync", "sub": "alice", "app": "app", "prv": "demo",
            "permissions": {
                "read": {"everything": true, "queriesByCollection": {}},
                "write": {"everything": false, "queriesByCollection": {"tasks": ["_id.owner == 'alice'"]}},
            },
            "cli": {"displayName": "alice"},
            "iat": now, "exp": now + 600, "auth_time": now, "dex": now + 3600,
            "sid": "c2lkLW9mLWFuLWVhcmxpZXItdG9rZW4", "jti": "anRpLW9mLWFuLWVhcmxpZXItdG9rZW4",
        });
        let token = s.session_signing.sign(&earlier).unwrap();
        let claims = s.verify(&token).expect("an earlier token verifies");
        assert_eq!(
            serde_json::to_value(&claims).unwrap(),
            earlier,
            "{signing:?}"
        );
        // Its permissions read as they were granted, so re-checks compare like with like.
        assert_eq!(
            claims.permissions.write.queries_by_collection["tasks"],
            vec!["_id.owner == 'alice'".to_owned()]
        );
    }
}

#[test]
fn token_naming_its_permissions_in_both_forms_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pem = keygen(Algorithm::EdDSA).unwrap();
    let s = Sessions::from_config(&config(dir.path(), Some(("k.pem", &pem)), None)).unwrap();
    let m = s.mint(&demo_allow(), "app", "demo").unwrap();
    let mut both = payload(&m.token);
    both["permissions"] = serde_json::json!({"read": {"everything": true}});
    let token = s.session_signing.sign(&both).unwrap();
    assert!(matches!(s.verify(&token), Err(SessionError::Invalid)));
    let mut unknown = payload(&m.token);
    unknown["prm"] = serde_json::json!({"r": true, "x": true});
    let token = s.session_signing.sign(&unknown).unwrap();
    assert!(matches!(s.verify(&token), Err(SessionError::Invalid)));
}

// --- claims by reference ---

/// A set with per-collection queries and clientInfo: long enough to be named by reference.
fn ruled_allow(user: &str) -> Allow {
    Allow {
        user_id: user.into(),
        expires_at: unix_now() + 3600,
        permissions: std::sync::Arc::new(
            serde_json::from_value(serde_json::json!({
                "read": {"everything": true, "queriesByCollection": {}},
                "write": {"everything": false, "queriesByCollection": {"tasks": [format!("_id.owner == '{user}'")]}},
            }))
            .unwrap(),
        ),
        client_info: Some(serde_json::json!({"greeting": format!("hello {user}")}).into()),
        metadata: None,
        profile: None,
    }
}

#[test]
fn ephemeral_hmac_tokens_name_their_claims_by_reference() {
    let dir = tempfile::tempdir().unwrap();
    let s = Sessions::from_config(&config(dir.path(), None, None)).unwrap();
    let m = s.mint(&ruled_allow("ann"), "app", "demo").unwrap();
    let p = payload(&m.token);
    let reference = p["ref"].as_str().unwrap_or_else(|| panic!("{p}"));
    assert_eq!(reference.len(), 32);
    assert!(p.get("prm").is_none() && p.get("cli").is_none(), "{p}");
    assert!(m.publish.is_none(), "nothing to share without a cluster");
    assert_eq!(s.verify(&m.token).unwrap(), m.claims);
    // The same claims inline make a longer token that verifies the same.
    let inline = s.inline(m.claims.clone()).unwrap();
    assert!(payload(&inline.token).get("ref").is_none());
    assert!(
        m.token.len() + 40 < inline.token.len(),
        "{} vs {}",
        m.token.len(),
        inline.token.len()
    );
    assert_eq!(s.verify(&inline.token).unwrap(), m.claims);
    // One set for every token naming it: a refresh, and another login with the same claims.
    let r = s.refresh(&m.claims).unwrap();
    assert_eq!(payload(&r.token)["ref"], reference);
    let again = s.mint(&ruled_allow("ann"), "app", "demo").unwrap();
    assert_eq!(payload(&again.token)["ref"], reference);
    let other = s.mint(&ruled_allow("bob"), "app", "demo").unwrap();
    assert_ne!(payload(&other.token)["ref"], reference);
    assert_eq!(s.verify(&other.token).unwrap(), other.claims);
    assert_eq!(s.claim_sets().len(), 2);
    // A set too small to gain from a reference stays inline, and so does a huge one.
    let small = s.mint(&allow(3600), "app", "demo").unwrap();
    assert!(
        payload(&small.token).get("ref").is_none(),
        "{}",
        payload(&small.token)
    );
    let mut huge = ruled_allow("cy");
    huge.client_info = Some(serde_json::json!({"notes": "x".repeat(5000)}).into());
    let huge = s.mint(&huge, "app", "demo").unwrap();
    assert!(payload(&huge.token).get("ref").is_none());
    assert_eq!(s.verify(&huge.token).unwrap(), huge.claims);
}

#[test]
fn tokens_that_outlive_the_sets_held_here_carry_their_claims() {
    let dir = tempfile::tempdir().unwrap();
    let pem = keygen(Algorithm::EdDSA).unwrap();
    let inline = |s: &Sessions| {
        let m = s.mint(&ruled_allow("ann"), "app", "demo").unwrap();
        let p = payload(&m.token);
        p.get("ref").is_none() && p["prm"].is_object() && p["cli"].is_object()
    };
    // A key file outlives the process: standalone, the claims stay in the token.
    let keyed_file =
        Sessions::from_config(&config(dir.path(), Some(("k.pem", &pem)), None)).unwrap();
    assert!(inline(&keyed_file));
    // Tokens signed with the session key stay verifiable through the JWKS alone, cluster or not.
    for shared in [false, true] {
        for key_file in [None, Some(("k.pem", pem.as_str()))] {
            let mut cfg = config(dir.path(), key_file, None);
            cfg.token_signing = TokenSigning::Key;
            let s = Sessions::from_config(&cfg)
                .unwrap()
                .with_claim_sets(Arc::new(ClaimSets::new(shared)));
            assert!(
                inline(&s),
                "key-signed, shared {shared}, key file {}",
                key_file.is_some()
            );
        }
    }
    // With the cluster store keeping the sets, a key file's HMAC tokens name them too, and the
    // first token naming a set says to share it; later ones, once it is shared, do not.
    let shared = Sessions::from_config(&config(dir.path(), Some(("k.pem", &pem)), None))
        .unwrap()
        .with_claim_sets(Arc::new(ClaimSets::new(true)));
    assert!(!inline(&shared));
    let m = shared.mint(&ruled_allow("dee"), "app", "demo").unwrap();
    let (reference, set, until) = m.publish.clone().expect("a new set is to be shared");
    assert!(
        until >= m.claims.dex,
        "shared for less than the session can live"
    );
    assert!(
        shared
            .mint(&ruled_allow("dee"), "app", "demo")
            .unwrap()
            .publish
            .is_some()
    );
    shared.claim_sets().published(&reference, until);
    assert!(
        shared
            .mint(&ruled_allow("dee"), "app", "demo")
            .unwrap()
            .publish
            .is_none()
    );

    // Another replica with the same key holds nothing: the token names claims it must read back,
    // and only the exact bytes the reference names are taken.
    let replica = Sessions::from_config(&config(dir.path(), Some(("k.pem", &pem)), None))
        .unwrap()
        .with_claim_sets(Arc::new(ClaimSets::new(true)));
    let Err(SessionError::UnknownClaims {
        reference: asked,
        until: asked_until,
    }) = replica.verify(&m.token)
    else {
        panic!("a set held nowhere verified");
    };
    assert_eq!(asked, reference);
    assert_eq!(asked_until, m.claims.dex);
    let wider = br#"{"prm":{"r":true,"w":true},"cli":{"greeting":"hello dee"}}"#;
    assert!(
        replica
            .claim_sets()
            .learn(&reference, wider, until)
            .is_none()
    );
    assert!(
        replica
            .claim_sets()
            .learn(&reference, b"not json", until)
            .is_none()
    );
    assert!(replica.verify(&m.token).is_err());
    assert!(
        replica
            .claim_sets()
            .learn(&reference, set.text().as_bytes(), until)
            .is_some()
    );
    assert_eq!(replica.verify(&m.token).unwrap(), m.claims);
    // A later message naming the same set for less time shortens nothing, and a replica that
    // learned it for longer does not write it to the store again.
    let soon = unix_now() + 5;
    assert!(
        replica
            .claim_sets()
            .learn(&reference, set.text().as_bytes(), soon)
            .is_some()
    );
    let again = replica.mint(&ruled_allow("dee"), "app", "demo").unwrap();
    assert_eq!(payload(&again.token)["ref"], payload(&m.token)["ref"]);
    assert!(again.publish.is_none(), "re-shared a set the store keeps");
}

#[test]
fn reference_beside_claims_or_malformed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Sessions::from_config(&config(dir.path(), None, None)).unwrap();
    let m = s.mint(&ruled_allow("ann"), "app", "demo").unwrap();
    for (claim, value) in [
        ("prm", serde_json::json!({"r": true, "w": true})),
        ("cli", serde_json::json!({"greeting": "hi"})),
        (
            "permissions",
            serde_json::json!({"read": {"everything": true}}),
        ),
    ] {
        let mut both = payload(&m.token);
        both[claim] = value;
        let token = s.session_signing.sign(&both).unwrap();
        assert!(
            matches!(s.verify(&token), Err(SessionError::Invalid)),
            "{claim}"
        );
    }
    for bad in [
        "",
        "short",
        &"A".repeat(33),
        &"*".repeat(32),
        &"A".repeat(31),
    ] {
        let mut odd = payload(&m.token);
        odd["ref"] = serde_json::json!(bad);
        let token = s.session_signing.sign(&odd).unwrap();
        assert!(
            matches!(s.verify(&token), Err(SessionError::Invalid)),
            "{bad:?}"
        );
    }
    // A well-formed reference to nothing held is not a valid session either.
    let mut unknown = payload(&m.token);
    unknown["ref"] = serde_json::json!("A".repeat(32));
    let token = s.session_signing.sign(&unknown).unwrap();
    assert!(matches!(
        s.verify(&token),
        Err(SessionError::UnknownClaims { .. })
    ));
}

#[test]
fn reconfigure_keeps_the_sets_earlier_tokens_name() {
    let dir = tempfile::tempdir().unwrap();
    let s = Sessions::from_config(&config(dir.path(), None, None)).unwrap();
    let m = s.mint(&ruled_allow("ann"), "app", "demo").unwrap();
    assert!(payload(&m.token).get("ref").is_some());
    // Now with a key file: new tokens carry their claims, the earlier one still verifies.
    let pem = keygen(Algorithm::EdDSA).unwrap();
    let next = s
        .reconfigure(&config(dir.path(), Some(("k.pem", &pem)), None))
        .unwrap();
    assert_eq!(next.verify(&m.token).unwrap(), m.claims);
    let fresh = next.mint(&ruled_allow("ann"), "app", "demo").unwrap();
    assert!(payload(&fresh.token).get("ref").is_none());
}
