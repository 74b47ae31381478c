use super::*;

const OURS: Ours<'static> = Ours {
    issuer: "drawbridge",
};

/// A compact JWT-shaped string with `claims` as its payload (the signature is not looked at).
fn jwt(claims: &serde_json::Value) -> String {
    let enc = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.c2lnbmF0dXJl",
        enc(&serde_json::json!({"alg": "EdDSA", "kid": "k1"})),
        enc(claims)
    )
}

fn ours() -> String {
    jwt(&serde_json::json!({"iss": "drawbridge", "aud": "drawbridge", "sub": "alice", "exp": 1}))
}

fn third_party() -> String {
    jwt(&serde_json::json!({"iss": "https://idp.example/", "sub": "alice"}))
}

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn values<'a>(h: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

#[test]
fn recognition_reads_the_issuer_and_nothing_else() {
    assert!(OURS.recognises(&ours()));
    // Expired (exp 1) and unsigned tokens of ours are still ours.
    assert!(OURS.recognises(&jwt(&serde_json::json!({"iss": "drawbridge"}))));
    for not_ours in [
        third_party(),
        jwt(&serde_json::json!({"sub": "no issuer"})),
        jwt(&serde_json::json!({"iss": 7})),
        jwt(&serde_json::json!({"iss": "drawbridge-other"})),
        "opaque-access-token".to_owned(),
        "a.b.c".to_owned(),
        format!("{}.extra", ours()),
        String::new(),
    ] {
        assert!(!OURS.recognises(&not_ours), "{not_ours}");
    }
    // Padding some encoders add does not hide it.
    let t = ours();
    let mut parts: Vec<&str> = t.split('.').collect();
    let padded = format!("{}==", parts[1]);
    parts[1] = &padded;
    assert!(OURS.recognises(&parts.join(".")));
}

#[test]
fn bearer_scheme_is_case_insensitive_and_tolerates_spaces() {
    for (value, want) in [
        ("Bearer abc.def", Some("abc.def")),
        ("bearer abc", Some("abc")),
        ("BEARER abc", Some("abc")),
        ("BeArEr   abc  ", Some("abc")),
        ("  Bearer\tabc", Some("abc")),
        ("Bearer", None),
        ("Bearer    ", None),
        ("Basic YWxhZGRpbjpvcGVuc2VzYW1l", None),
        ("Bearerabc", None),
        ("", None),
    ] {
        assert_eq!(bearer(value), want, "{value:?}");
    }
    let h = map(&[("authorization", "Basic x"), ("authorization", "bearer t")]);
    assert_eq!(authorization_bearer(&h), Some("t"));
    assert_eq!(authorization_bearer(&HeaderMap::new()), None);
}

#[test]
fn authorization_holding_our_token_is_stripped_in_any_spelling() {
    let t = ours();
    for value in [
        format!("Bearer {t}"),
        format!("bearer {t}"),
        format!("BEARER   {t}  "),
        format!("Token {t}"),
        format!("Bearer token=\"{t}\""),
        t.clone(),
    ] {
        let mut h = map(&[("authorization", &value), ("accept", "*/*")]);
        strip_authorization(&mut h, &OURS);
        assert!(!h.contains_key("authorization"), "{value}");
        assert_eq!(h.len(), 1);
    }
}

#[test]
fn authorization_of_others_passes_untouched() {
    let third = format!("Bearer {}", third_party());
    for value in [
        third.as_str(),
        "Bearer opaque-ditto-access-token",
        "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
    ] {
        let mut h = map(&[("authorization", value)]);
        strip_authorization(&mut h, &OURS);
        assert_eq!(values(&h, "authorization"), [value]);
    }
    // Of two headers, only ours goes; the other stays.
    let mine = format!("Bearer {}", ours());
    let mut h = map(&[("authorization", &mine), ("authorization", &third)]);
    strip_authorization(&mut h, &OURS);
    assert_eq!(values(&h, "authorization"), [third.as_str()]);
}

#[test]
fn cookie_splitter_handles_spaces_several_headers_and_bare_names() {
    let h = map(&[
        ("cookie", "a=1;b=2 ;  c = 3 "),
        ("cookie", "flag; d=x=y"),
        ("cookie", ";;"),
    ]);
    let pairs: Vec<(&[u8], &[u8], &[u8])> =
        cookie_pairs(&h).map(|p| (p.name, p.value, p.raw)).collect();
    assert_eq!(
        pairs,
        [
            (&b"a"[..], &b"1"[..], &b"a=1"[..]),
            (b"b", b"2", b"b=2"),
            (b"c", b"3", b"c = 3"),
            (b"flag", b"", b"flag"),
            (b"d", b"x=y", b"d=x=y"),
        ]
    );
    assert_eq!(cookie(&h, "c"), Some("3"));
    assert_eq!(cookie(&h, "d"), Some("x=y"));
    assert_eq!(cookie(&h, "flag"), None, "a bare name has no value");
    assert_eq!(cookie(&h, "A"), None, "names are case-sensitive");
    let h = map(&[("cookie", "drawbridge_session=; drawbridge_session=tok")]);
    assert_eq!(cookie(&h, SESSION_COOKIE), Some("tok"));
}

#[test]
fn session_cookie_is_stripped_and_the_others_kept_in_order() {
    let t = ours();
    let cases: Vec<(Vec<String>, Option<String>)> = vec![
        (
            vec!["a=1; drawbridge_session=tok; b=2".into()],
            Some("a=1; b=2".into()),
        ),
        (vec!["drawbridge_session=tok".into()], None),
        (
            vec!["a=1;drawbridge_session=tok;b=2".into()],
            Some("a=1; b=2".into()),
        ),
        (
            vec!["  drawbridge_session = tok ;  theme=dark ".into()],
            Some("theme=dark".into()),
        ),
        (
            vec![
                "a=1".into(),
                "drawbridge_session=tok".into(),
                "b=2; c=3".into(),
            ],
            Some("a=1; b=2; c=3".into()),
        ),
        (
            vec!["Drawbridge_Session=tok; x=1; DRAWBRIDGE_SESSION=tok2".into()],
            Some("x=1".into()),
        ),
        // Names that only contain the session cookie's name are someone else's.
        (
            vec![
                "my_drawbridge_session=1; drawbridge_session_pref=2; drawbridge_sessions=3".into(),
            ],
            Some(
                "my_drawbridge_session=1; drawbridge_session_pref=2; drawbridge_sessions=3".into(),
            ),
        ),
        // A drawbridge token under another name, quoted, or bare, goes too.
        (
            vec![format!("a=1; sess={t}; b=\"{t}\"; {t}; c=2")],
            Some("a=1; c=2".into()),
        ),
        // Third-party tokens stay.
        (
            vec![format!("idp={}", third_party())],
            Some(format!("idp={}", third_party())),
        ),
    ];
    for (sent, want) in cases {
        let mut h = HeaderMap::new();
        for v in &sent {
            h.append(header::COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_cookies(&mut h, &OURS);
        let got = values(&h, "cookie");
        match want {
            Some(w) => assert_eq!(got, [w.as_str()], "{sent:?}"),
            None => assert!(got.is_empty(), "{sent:?} left {got:?}"),
        }
        assert_eq!(values(&h, "accept"), ["*/*"]);
    }
}

#[test]
fn one_cookie_header_without_a_session_is_left_byte_for_byte() {
    let sent = "a=1;b=2 ;  c = 3";
    let mut h = map(&[("cookie", sent)]);
    strip_cookies(&mut h, &OURS);
    assert_eq!(values(&h, "cookie"), [sent]);
    // Several headers (HTTP/2) become one on the way to HTTP/1.1.
    let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2")]);
    strip_cookies(&mut h, &OURS);
    assert_eq!(values(&h, "cookie"), ["a=1; b=2"]);
}

#[test]
fn cookie_value_that_is_not_utf8_is_still_split() {
    let mut h = HeaderMap::new();
    h.insert(
        header::COOKIE,
        HeaderValue::from_bytes(b"x=\xff\xfe; drawbridge_session=tok; y=2").unwrap(),
    );
    strip_cookies(&mut h, &OURS);
    assert_eq!(h["cookie"].as_bytes(), b"x=\xff\xfe; y=2");
}

#[test]
fn carrier_protocol_entries_are_stripped_and_the_rest_kept() {
    let t = ours();
    for (sent, want) in [
        (
            vec![format!("chat.v2, drawbridge.bearer.{t}")],
            Some("chat.v2"),
        ),
        (vec![format!("drawbridge.bearer.{t}")], None),
        (
            vec!["a, Drawbridge.Bearer.xyz,b".to_owned(), "c".to_owned()],
            Some("a, b, c"),
        ),
        (vec![format!("x-token.{t}, chat")], Some("chat")),
        (
            vec!["drawbridge, chat".to_owned()],
            Some("drawbridge, chat"),
        ),
    ] {
        let mut h = HeaderMap::new();
        for v in &sent {
            h.append(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_str(v).unwrap(),
            );
        }
        strip_protocols(&mut h, &OURS);
        let got = values(&h, "sec-websocket-protocol");
        match want {
            Some(w) => assert_eq!(got, [w], "{sent:?}"),
            None => assert!(got.is_empty(), "{sent:?} left {got:?}"),
        }
    }
    assert_eq!(protocol_bearer("drawbridge.bearer.abc"), Some("abc"));
    assert_eq!(protocol_bearer("drawbridge.bearer."), None);
    assert_eq!(protocol_bearer("chat"), None);
}

#[test]
fn ticket_is_removed_however_it_is_spelled() {
    for (query, want) in [
        ("ticket=abc", ""),
        ("room=1&ticket=abc&x=2", "room=1&x=2"),
        ("ticket=abc&room=1", "room=1"),
        ("room=1&ticket=abc", "room=1"),
        ("%74icket=abc&room=1", "room=1"),
        ("ticke%74=abc&room=1", "room=1"),
        ("%74%69%63%6B%65%74=abc", ""),
        ("TICKET=abc&room=1", "room=1"),
        ("+ticket=abc&room=1", "room=1"),
        ("ticket%20=abc&room=1", "room=1"),
        ("ticket[]=abc&room=1", "room=1"),
        ("ticket%5B0%5D=abc&room=1", "room=1"),
        ("room=1&ticket=a+b%20c", "room=1"),
        ("ticket=1&ticket=2&room=1&ticket=3", "room=1"),
        ("room=1&ticket", "room=1"),
        ("room=1&ticket&x=2", "room=1&x=2"),
        ("room=1&ticket%3Dabc", "room=1"),
        ("room=1;ticket=abc;x=2", "room=1;x=2"),
        ("room=1&ticket=abc;x=2", "room=1;x=2"),
        ("ticket=abc&", ""),
        ("&ticket=abc&a=%41+b", "&a=%41+b"),
        // Other pairs stay byte for byte, encodings and all.
        ("q=a%2Bb+c&ticket=x&r=%7E~&&s", "q=a%2Bb+c&r=%7E~&&s"),
    ] {
        assert_eq!(without_ticket(query).as_deref(), Some(want), "{query}");
    }
    for untouched in [
        "room=1",
        "tickets=1",
        "my_ticket=1",
        "x=ticket",
        "ticketing=1&a=ticket%3D1",
        "%2574icket=1",
        "",
    ] {
        assert_eq!(without_ticket(untouched), None, "{untouched}");
    }
}

#[test]
fn ticket_reader_decodes_the_key_and_value() {
    assert_eq!(query_ticket("a=1&ticket=abc"), Some("abc".into()));
    assert_eq!(query_ticket("%74icket=a%2Bb+c"), Some("a+b c".into()));
    assert_eq!(query_ticket("tickets=1"), None);
}

#[test]
fn strip_ticket_rewrites_only_the_query() {
    for (uri, want) in [
        ("/sync/d?room=1&ticket=abc&x=2", "/sync/d?room=1&x=2"),
        ("/sync?ticket=abc", "/sync"),
        ("/sync?room=1", "/sync?room=1"),
        ("/sync", "/sync"),
        (
            "http://127.0.0.1:9/p?%74icket=1&a=b",
            "http://127.0.0.1:9/p?a=b",
        ),
    ] {
        let mut u: Uri = uri.parse().unwrap();
        strip_query(&mut u, &OURS);
        assert_eq!(u.to_string(), want, "{uri}");
    }
}

#[test]
fn any_header_holding_our_token_is_stripped_and_the_rest_kept() {
    let (token, theirs) = (ours(), third_party());
    let mut h = map(&[
        ("x-ditto-auth", &token),
        ("X-DITTO-AUTH", &format!("Bearer {token}")),
        ("x-access-token", &format!("\"{token}\"")),
        ("x-forwarded-access-token", &token),
        ("x-ditto-auth", "ditto-own-token"),
        ("x-id-token", &theirs),
        ("x-version", "1.2.3"),
        ("x-note", "a.b.c"),
    ]);
    strip_other_headers(&mut h, &OURS);
    assert_eq!(values(&h, "x-ditto-auth"), ["ditto-own-token"]);
    assert!(h.get("x-access-token").is_none());
    assert!(h.get("x-forwarded-access-token").is_none());
    assert_eq!(values(&h, "x-id-token"), [theirs.as_str()]);
    assert_eq!(values(&h, "x-version"), ["1.2.3"]);
    assert_eq!(values(&h, "x-note"), ["a.b.c"]);
}

#[test]
fn query_pair_holding_our_token_is_stripped_in_any_spelling() {
    let token = ours();
    let theirs = third_party();
    let encoded: String = token
        .bytes()
        .map(|b| {
            if b == b'.' {
                "%2E".to_owned()
            } else {
                (b as char).to_string()
            }
        })
        .collect();
    for (query, want) in [
        (format!("access_token={token}&room=1"), "room=1".to_owned()),
        (format!("room=1&token={token}"), "room=1".to_owned()),
        (
            format!("room=1;access_token={token};x=2"),
            "room=1;x=2".to_owned(),
        ),
        (
            format!("access_token={encoded}&room=1"),
            "room=1".to_owned(),
        ),
        (format!("{token}&room=1"), "room=1".to_owned()),
        (format!("auth=Bearer+{token}&room=1"), "room=1".to_owned()),
        (
            format!("id_token={theirs}&room=1"),
            format!("id_token={theirs}&room=1"),
        ),
        ("v=1.2.3&room=1".to_owned(), "v=1.2.3&room=1".to_owned()),
    ] {
        let mut u: Uri = format!("/sync/d?{query}").parse().unwrap();
        strip_query(&mut u, &OURS);
        let got = u.query().unwrap_or_default();
        assert_eq!(got, want, "{query}");
    }
}

#[test]
fn forwardable_headers_keep_the_apps_credentials_and_drop_ours() {
    let token = ours();
    let other = third_party();
    let cookie = format!("a=1; drawbridge_session={token}; b=2");
    let bearer = format!("Bearer {token}");
    let protocol = format!("chat, drawbridge.bearer.{token}");
    let h = forwardable_for(
        &map(&[
            ("cookie", &cookie),
            ("cookie", "c=3"),
            ("authorization", &bearer),
            ("sec-websocket-protocol", &protocol),
            ("sec-websocket-protocol", "v2"),
            ("x-other", "kept out"),
        ]),
        &OURS,
    );
    assert_eq!(values(&h, "cookie"), ["a=1; b=2; c=3"]);
    assert_eq!(values(&h, "authorization"), [""], "ours: answered empty");
    assert_eq!(values(&h, "sec-websocket-protocol"), ["chat, v2"]);
    assert_eq!(h.len(), 3, "only the three credential headers: {h:?}");

    let basic = "Basic YTpi";
    let third = format!("Bearer {other}");
    for (auth, want) in [(basic, basic), (third.as_str(), third.as_str())] {
        let h = forwardable_for(&map(&[("authorization", auth)]), &OURS);
        assert_eq!(values(&h, "authorization"), [want], "not ours: kept");
        assert_eq!(values(&h, "cookie"), [""]);
        assert_eq!(values(&h, "sec-websocket-protocol"), [""]);
    }
    // Nothing but ours: every header answered empty, so the ingress removes the client's.
    let only = format!("drawbridge_session={token}");
    let h = forwardable_for(&map(&[("cookie", &only)]), &OURS);
    assert_eq!(values(&h, "cookie"), [""]);
    let h = forwardable_for(&map(&[]), &OURS);
    assert!(h.values().all(|v| v.is_empty()) && h.len() == 3, "{h:?}");
    // A token of ours under any cookie name goes too.
    let h = forwardable_for(&map(&[("cookie", &format!("x={token}; y=2"))]), &OURS);
    assert_eq!(values(&h, "cookie"), ["y=2"]);
}
