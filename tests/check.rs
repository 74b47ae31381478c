//! `drawbridge check`: the committed example passes; bad configs exit 64 naming each key.

use std::path::Path;
use std::process::{Command, Output};

fn check(path: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drawbridge"))
        .arg("check")
        .arg("--config")
        .arg(path)
        .args(extra)
        .env_remove("DRAWBRIDGE_CONFIG")
        .output()
        .expect("drawbridge runs")
}

fn check_text(text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drawbridge.toml");
    std::fs::write(&path, text).unwrap();
    let out = check(&path, &["--skip-files"]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn example_config_passes() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/drawbridge.example.toml");
    let out = check(&example, &["--skip-files"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("upstream    http://127.0.0.1:8080"),
        "{stdout}"
    );
    assert!(stdout.contains("sync paths  /sync, /_ditto/ws"), "{stdout}");
}

#[test]
fn example_config_documents_every_default() {
    // The example must stay a faithful copy of the defaults: parse it and a minimal file and compare.
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/drawbridge.example.toml"),
    )
    .unwrap();
    let full = drawbridge::Config::from_toml(&example, &drawbridge::config::System).unwrap();
    let minimal = drawbridge::Config::from_toml(
        "[upstream]\nurl = \"http://127.0.0.1:8080\"\n[tls]\ncert_file = \"/etc/drawbridge/tls/tls.crt\"\nkey_file = \"/etc/drawbridge/tls/tls.key\"\n",
        &drawbridge::config::System,
    )
    .unwrap();
    assert_eq!(full.summary(), minimal.summary());
}

#[test]
fn unknown_key_exits_64_naming_it() {
    let (code, _, err) =
        check_text("[listen]\nbogus_key = true\n[upstream]\nurl = \"http://127.0.0.1:1\"\n");
    assert_eq!(code, 64);
    assert!(err.contains("listen.bogus_key: unknown field"), "{err}");
}

#[test]
fn missing_upstream_url_exits_64_naming_it() {
    let (code, _, err) = check_text("[listen]\naddr = \"0.0.0.0:8443\"\n");
    assert_eq!(code, 64);
    assert!(err.contains("upstream.url: missing"), "{err}");
}

#[test]
fn every_bad_value_gets_its_own_line() {
    let (code, _, err) = check_text(
        "[listen]\naddr = \"not-an-address\"\n[admin]\naddr = \"127.0.0.1:99999\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\nsync_paths = [\"sync\"]\n[limits]\nmax_connections = 0\n",
    );
    assert_eq!(code, 64);
    for key in [
        "listen.addr: ",
        "admin.addr: ",
        "upstream.sync_paths.0: ",
        "limits.max_connections: ",
    ] {
        assert!(
            err.lines().any(|l| l.contains(key)),
            "no line for {key}: {err}"
        );
    }
}

#[test]
fn wrong_type_exits_64_naming_it() {
    let (code, _, err) =
        check_text("[upstream]\nurl = \"http://127.0.0.1:1\"\nrequest_timeout_ms = \"soon\"\n");
    assert_eq!(code, 64);
    assert!(err.contains("upstream.request_timeout_ms: "), "{err}");
}

#[test]
fn missing_tls_files_are_reported_unless_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drawbridge.toml");
    std::fs::write(
        &path,
        "[tls]\ncert_file = \"/nonexistent/tls.crt\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n",
    )
    .unwrap();
    let out = check(&path, &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/tls.crt"));
    assert_eq!(check(&path, &["--skip-files"]).status.code(), Some(0));
}

#[test]
fn unreadable_config_exits_64() {
    let out = check(Path::new("/nonexistent/drawbridge.toml"), &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}
