use super::*;

fn canon(path: &str) -> String {
    canonical_path(path)
        .unwrap_or_else(|e| panic!("{path:?} refused: {e}"))
        .into_owned()
}

fn refused(path: &str) -> TargetError {
    canonical_path(path).expect_err(path)
}

#[test]
fn canonical_paths_are_unchanged() {
    for path in [
        "/",
        "/sync",
        "/sync/",
        "/sync/room/1",
        "/a-b_c~d.e",
        "/sync;jsessionid=x",
        "/sync%3F",
        "/a%20b",
        "/%C3%A9t%C3%A9",
        "/x:y@z!$&'()*+,=",
        "/...",
        "/a/.hidden/..x",
    ] {
        assert_eq!(canon(path), path, "{path}");
        assert_eq!(canon(&canon(path)), path, "idempotent on {path}");
    }
}

#[test]
fn repeated_slashes_merge() {
    for (path, want) in [
        ("//sync", "/sync"),
        ("///sync", "/sync"),
        ("/sync//room", "/sync/room"),
        ("/sync//", "/sync/"),
        ("//", "/"),
        ("////", "/"),
        ("/a//../sync", "/sync"),
    ] {
        assert_eq!(canon(path), want, "{path}");
    }
}

#[test]
fn dot_segments_are_removed() {
    for (path, want) in [
        ("/./sync", "/sync"),
        ("/x/../sync", "/sync"),
        ("/a/b/../../sync", "/sync"),
        ("/a/./b/../sync", "/a/sync"),
        ("/sync/.", "/sync/"),
        ("/sync/..", "/"),
        ("/sync/room/..", "/sync/"),
        ("/.", "/"),
        ("/..", "/"),
        ("/../sync", "/sync"),
        ("/../../../sync", "/sync"),
        ("/sync/./", "/sync/"),
    ] {
        assert_eq!(canon(path), want, "{path}");
    }
}

#[test]
fn encoded_dots_are_dot_segments_once_decoded() {
    for (path, want) in [
        ("/%2e%2e/sync", "/sync"),
        ("/%2E%2E/sync", "/sync"),
        ("/x/%2e%2e/sync", "/sync"),
        ("/x/.%2e/sync", "/sync"),
        ("/x/%2e./sync", "/sync"),
        ("/%2e/sync", "/sync"),
        ("/public/%2e%2e/sync", "/sync"),
        ("/sync/%2e", "/sync/"),
    ] {
        assert_eq!(canon(path), want, "{path}");
    }
}

#[test]
fn unreserved_escapes_are_decoded_and_the_rest_upper_cased() {
    for (path, want) in [
        ("/%73ync", "/sync"),
        ("/%53YNC", "/SYNC"),
        ("/%73%79%6e%63", "/sync"),
        ("/a%2db%5fc%7ed%2Ee", "/a-b_c~d.e"),
        ("/%30%39", "/09"),
        ("/sync%3f", "/sync%3F"),
        ("/sync%3F", "/sync%3F"),
        ("/a%3bb", "/a%3Bb"),
        ("/a%20b", "/a%20b"),
        ("/%c3%a9", "/%C3%A9"),
        ("/%25", "/%25"),
        ("/100%25off", "/100%25off"),
    ] {
        assert_eq!(canon(path), want, "{path}");
    }
}

#[test]
fn raw_non_ascii_is_escaped() {
    assert_eq!(canon("/été"), "/%C3%A9t%C3%A9");
    assert_eq!(canon("/été"), canon("/%c3%a9t%C3%a9"));
}

#[test]
fn case_is_kept() {
    assert_eq!(canon("/SYNC"), "/SYNC");
    assert_eq!(canon("/Sync/Room"), "/Sync/Room");
}

#[test]
fn encoded_slash_and_backslash_are_refused() {
    for path in [
        "/sync%2Froom",
        "/sync%2froom",
        "/%2Fsync",
        "/%2f",
        "/a/..%2F..%2Fsync",
    ] {
        assert_eq!(refused(path), TargetError::EncodedSlash, "{path}");
    }
    for path in ["/sync%5Croom", "/%5c..%5csync", "/%5C"] {
        assert_eq!(refused(path), TargetError::EncodedBackslash, "{path}");
    }
    for path in ["/sync\\room", "/\\sync", "/..\\sync", "\\sync"] {
        let e = refused(path);
        assert!(
            matches!(e, TargetError::Backslash | TargetError::NotAbsolutePath),
            "{path}: {e}"
        );
    }
    assert_eq!(refused("/a\\b"), TargetError::Backslash);
}

#[test]
fn control_characters_are_refused_raw_or_encoded() {
    for path in [
        "/sync%00",
        "/%00/sync",
        "/sync%0a",
        "/sync%0D%0Ax",
        "/a%09b",
        "/a%1Fb",
        "/a%7fb",
        "/a\u{0}b",
        "/a\tb",
        "/a\u{7f}b",
    ] {
        assert_eq!(refused(path), TargetError::ControlCharacter, "{path:?}");
    }
}

#[test]
fn broken_escapes_are_refused() {
    for path in ["/sync%", "/sync%2", "/%zz", "/%2g", "/%%32%65", "/a%-1"] {
        assert_eq!(refused(path), TargetError::InvalidEscape, "{path}");
    }
}

#[test]
fn double_encoding_is_refused() {
    for path in ["/%252e%252e/sync", "/%252F", "/sync%2500", "/%25%32%65"] {
        let e = refused(path);
        assert!(
            matches!(e, TargetError::DoubleEncoded | TargetError::InvalidEscape),
            "{path}: {e}"
        );
    }
    assert_eq!(refused("/%252e%252e/sync"), TargetError::DoubleEncoded);
    assert_eq!(refused("/a%2541"), TargetError::DoubleEncoded);
}

#[test]
fn dot_segments_with_parameters_are_refused() {
    for path in [
        "/..;/sync",
        "/public/..;/sync",
        "/.;x/sync",
        "/%2e%2e;x/sync",
        "/sync/..;",
    ] {
        assert_eq!(refused(path), TargetError::DotSegmentParameters, "{path}");
    }
    assert_eq!(canon("/...;x"), "/...;x");
    assert_eq!(canon("/a..;x"), "/a..;x");
}

#[test]
fn paths_not_starting_with_a_slash_are_refused() {
    for path in ["", "*", "sync", "example.com:443", "?x"] {
        assert_eq!(refused(path), TargetError::NotAbsolutePath, "{path:?}");
    }
}

#[test]
fn target_keeps_the_query_as_received() {
    for (uri, want) in [
        ("/%73ync?x", "/sync?x"),
        ("//sync?ticket=a%2Fb&x=..", "/sync?ticket=a%2Fb&x=.."),
        ("/sync/.?", "/sync/?"),
        ("/a/../sync?%2e%2e=/..", "/sync?%2e%2e=/.."),
        ("http://gw.example//sync?a=b", "/sync?a=b"),
        ("https://gw.example:8443/x/%2e%2e/sync", "/sync"),
    ] {
        let uri: Uri = uri.parse().unwrap();
        let target = canonical_target(&uri).unwrap().expect("rewritten");
        assert_eq!(target.as_str(), want, "{uri}");
    }
    for canonical in ["/sync?x=/../%2F", "/sync", "/sync?", "http://gw.example"] {
        let uri: Uri = canonical.parse().unwrap();
        assert_eq!(canonical_target(&uri), Ok(None), "{uri}");
    }
    let refused: Uri = "/sync%2F?x".parse().unwrap();
    assert_eq!(canonical_target(&refused), Err(TargetError::EncodedSlash));
}

#[test]
fn every_canonical_path_is_a_fixed_point() {
    // A small exhaustive walk: every string of up to five pieces from a hostile alphabet
    // either is refused or canonicalises to a path that canonicalises to itself.
    let pieces = [
        "/", ".", "..", "%2e", "%2E", "s", "%73", "%2F", ";", "%25", "%32", "%3f", "\\", "~",
        "\u{e9}",
    ];
    let mut checked = 0;
    let mut stack: Vec<(String, usize)> = vec![("/".to_owned(), 0)];
    while let Some((path, depth)) = stack.pop() {
        if plainly_canonical(&path) {
            assert_eq!(
                normalise(&path).as_deref(),
                Ok(path.as_str()),
                "fast path on {path}"
            );
        }
        if let Ok(c) = canonical_path(&path) {
            assert_eq!(normalise(&c).as_deref(), Ok(c.as_ref()), "{path} -> {c}");
            assert!(!c.contains("//"), "{path} -> {c}");
            assert!(
                !c.split('/').any(|s| s == "." || s == ".."),
                "{path} -> {c}"
            );
            checked += 1;
        }
        if depth < 5 {
            for p in pieces {
                stack.push((format!("{path}{p}"), depth + 1));
            }
        }
    }
    assert!(checked > 1000, "{checked}");
}

#[test]
fn segment_prefix_matches_whole_segments_only() {
    assert!(has_segment_prefix("/sync", "/sync"));
    assert!(has_segment_prefix("/sync/room/1", "/sync"));
    assert!(has_segment_prefix("/sync/room", "/sync/"));
    assert!(has_segment_prefix("/sync/", "/sync"));
    assert!(!has_segment_prefix("/syncer", "/sync"));
    assert!(!has_segment_prefix("/sync;x", "/sync"));
    assert!(!has_segment_prefix("/SYNC", "/sync"));
    assert!(!has_segment_prefix("/api", "/sync"));
    assert!(has_segment_prefix("/anything", "/"));
}
