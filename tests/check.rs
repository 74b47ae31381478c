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
    assert!(
        stdout.contains("public ws   none (every websocket upgrade needs a session)"),
        "{stdout}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "the example config must not warn: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn example_config_documents_every_default() {
    // The example must stay a faithful copy of the defaults: parse it and a minimal file and compare.
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/drawbridge.example.toml"),
    )
    .unwrap();
    let (code, full, err) = check_text(&example);
    assert_eq!(code, 0, "{err}");
    let (code, minimal, err) = check_text(
        "[upstream]\nurl = \"http://127.0.0.1:8080\"\n[tls]\ncert_file = \"/etc/drawbridge/tls/tls.crt\"\nkey_file = \"/etc/drawbridge/tls/tls.key\"\n",
    );
    assert_eq!(code, 0, "{err}");
    // Past the first line (which names the file), the summaries of both must be the same.
    let summary = |out: &str| out.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert!(
        summary(&full).contains("upstream    http://127.0.0.1:8080"),
        "{full}"
    );
    assert_eq!(summary(&full), summary(&minimal));
}

#[test]
fn example_providers_stay_valid() {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/drawbridge.example.toml"),
    )
    .unwrap();
    let start = example
        .find("# --- example providers ---")
        .expect("start marker");
    let end = example
        .find("# --- end of example providers ---")
        .expect("end marker");
    let block: String = example[start..end]
        .lines()
        .skip(1)
        .map(|l| {
            l.strip_prefix("# ")
                .or_else(|| l.strip_prefix('#'))
                .unwrap_or(l)
        })
        .collect::<Vec<_>>()
        .join("\n");
    let env = std::collections::HashMap::from([("WEBHOOK_API_KEY".to_owned(), "k".to_owned())]);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("webhook-key");
    std::fs::write(&secret, "c2VjcmV0\n").unwrap();
    let block = block.replace(
        "/etc/drawbridge/secrets/webhook-key",
        secret.to_str().unwrap(),
    );
    let text = format!("[upstream]\nurl = \"http://127.0.0.1:1\"\n{block}");
    let config =
        drawbridge::Config::from_toml(&text, &env).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config.auth.providers.len(), 3);
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
        "[listen]\naddr = \"not-an-address\"\n[admin]\naddr = \"127.0.0.1:99999\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\npublic_upgrade_paths = [\"sync\"]\n[limits]\nmax_connections = 0\n",
    );
    assert_eq!(code, 64);
    for key in [
        "listen.addr: ",
        "admin.addr: ",
        "upstream.public_upgrade_paths.0: ",
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

#[test]
fn keygen_writes_a_key_that_a_config_accepts() {
    let dir = tempfile::tempdir().unwrap();
    for alg in ["EdDSA", "ES256", "HS256"] {
        let key = dir.path().join(format!("{alg}.pem"));
        let out = Command::new(env!("CARGO_BIN_EXE_drawbridge"))
            .args(["keygen", "--algorithm", alg, "--out"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let text = format!(
            "[upstream]\nurl = \"http://127.0.0.1:1\"\n[session]\nalgorithm = \"{alg}\"\nkey_file = {key:?}\n"
        );
        let config = drawbridge::Config::from_toml(&text, &drawbridge::config::System).unwrap();
        let sessions =
            drawbridge::auth::session::Sessions::from_config(&config.auth.session).unwrap();
        assert_eq!(format!("{:?}", sessions.algorithm()), alg);
        // A second run does not overwrite the key.
        let again = Command::new(env!("CARGO_BIN_EXE_drawbridge"))
            .args(["keygen", "--algorithm", alg, "--out"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(!again.status.success());
        assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_drawbridge"))
        .args(["keygen", "--algorithm", "none"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(64));
}

#[test]
fn auth_config_problems_name_their_keys() {
    let (code, _, err) = check_text(
        "[upstream]\nurl = \"http://127.0.0.1:1\"\n\
         [providers.a]\nkind = \"webhook\"\nsigning_secret = \"%%%\"\n\
         [providers.g]\nkind = \"group\"\nmembers = [\"a\", \"ghost\", \"g\"]\n\
         [providers.j]\nkind = \"jwt\"\nalgorithms = [\"HS256\"]\n\
         [apps.app1]\nproviders = [\"missing\"]\n\
         [session]\nalgorithm = \"PS512\"\n",
    );
    assert_eq!(code, 64);
    for key in [
        "providers.a.url: missing",
        "providers.a.signing_secret: ",
        "providers.g.members.1: no provider named \"ghost\"",
        "providers.g.members: a group cannot contain itself",
        "providers.g.strategy: missing",
        "providers.j.issuer: missing",
        "providers.j.algorithms.0: symmetric",
        "providers.j.jwks_url: set exactly one",
        "apps.app1.providers.0: ",
        "session.algorithm: ",
    ] {
        assert!(
            err.lines().any(|l| l.contains(key)),
            "no line for {key}:\n{err}"
        );
    }
}

#[test]
fn unknown_provider_kind_and_field_are_named() {
    let (code, _, err) =
        check_text("[upstream]\nurl = \"http://127.0.0.1:1\"\n[providers.a]\nkind = \"ldap\"\n");
    assert_eq!(code, 64);
    assert!(
        err.contains("providers.a.kind: unknown variant ldap"),
        "{err}"
    );
    let (code, _, err) = check_text(
        "[upstream]\nurl = \"http://127.0.0.1:1\"\n[providers.a]\nkind = \"webhook\"\nurl = \"http://x\"\ntimeout = 5\n",
    );
    assert_eq!(code, 64);
    assert!(err.contains("providers.a.timeout: unknown field"), "{err}");
}

#[test]
fn skip_files_takes_file_references_as_placeholders() {
    let text = "[upstream]\nurl = \"http://127.0.0.1:1\"\n[providers.a]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:2\"\nsigning_secret = \"${file:/etc/drawbridge/secrets/nope}\"\n";
    let (code, _, err) = check_text(text);
    assert_eq!(code, 0, "{err}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drawbridge.toml");
    std::fs::write(&path, format!("{text}[listen]\nplaintext = true\n")).unwrap();
    let out = check(&path, &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("providers.a.signing_secret: cannot read /etc/drawbridge/secrets/nope")
    );
}

#[test]
fn public_upgrade_path_that_gates_nothing_exits_64_naming_the_key() {
    for entry in ["/", "//", "", "/a/../", "/%2e%2e"] {
        let (code, _, err) = check_text(&format!(
            "[upstream]\nurl = \"http://127.0.0.1:1\"\npublic_upgrade_paths = [\"/status\", {entry:?}]\n"
        ));
        assert_eq!(code, 64, "{entry:?}: {err}");
        assert!(
            err.contains("upstream.public_upgrade_paths.1: "),
            "{entry:?}: {err}"
        );
    }
}

#[test]
fn non_canonical_public_upgrade_paths_exit_64_naming_each() {
    let (code, _, err) = check_text(
        "[upstream]\nurl = \"http://127.0.0.1:1\"\n\
         public_upgrade_paths = [\"//public\", \"/a/../b\", \"/a%2Fb\", \"/%70ublic\", \"public\", \"/ok\"]\n",
    );
    assert_eq!(code, 64, "{err}");
    for i in 0..5 {
        let key = format!("upstream.public_upgrade_paths.{i}: ");
        assert!(
            err.lines().any(|l| l.contains(&key)),
            "no line for {key}: {err}"
        );
    }
    assert!(!err.contains("upstream.public_upgrade_paths.5"), "{err}");
}

#[test]
fn sync_paths_passes_with_a_migration_warning() {
    let (code, out, err) = check_text(
        "[upstream]\nurl = \"http://127.0.0.1:1\"\nsync_paths = [\"/sync\", \"/_ditto/ws\"]\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(": ok"), "{out}");
    let warning = err
        .lines()
        .find(|l| l.contains("warning: upstream.sync_paths: "))
        .unwrap_or_else(|| panic!("no migration warning: {err}"));
    for words in [
        "every websocket upgrade now needs a session",
        "upstream.public_upgrade_paths",
        "remove upstream.sync_paths",
    ] {
        assert!(warning.contains(words), "{warning}");
    }
}

#[test]
fn public_ditto_websocket_without_known_token_passes_with_a_warning_naming_both_keys() {
    let (code, _, err) = check_text(
        "[upstream]\nurl = \"http://127.0.0.1:1\"\npublic_upgrade_paths = [\"/_ditto/ws\"]\n\
         [ditto]\nenabled = true\n",
    );
    assert_eq!(code, 0, "{err}");
    let warning = err
        .lines()
        .find(|l| l.contains("warning: upstream.public_upgrade_paths: "))
        .unwrap_or_else(|| panic!("no warning: {err}"));
    assert!(warning.contains("ditto.require_known_token"), "{warning}");
    let (code, _, err) = check_text(
        "[upstream]\nurl = \"http://127.0.0.1:1\"\npublic_upgrade_paths = [\"/_ditto/ws\"]\n\
         [ditto]\nenabled = true\nrequire_known_token = true\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn cluster_with_an_ephemeral_session_key_exits_64_naming_key_file() {
    let text = "[upstream]\nurl = \"http://127.0.0.1:1\"\n\
                [cluster]\nredis_url = \"redis://127.0.0.1:6379\"\n";
    let (code, _, err) = check_text(text);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("session.key_file: required with [cluster]"),
        "{err}"
    );

    // Startup refuses it the same way, before it binds or connects anything.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drawbridge.toml");
    std::fs::write(
        &path,
        format!("[listen]\nplaintext = true\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n{text}"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_drawbridge"))
        .arg("run")
        .arg("--config")
        .arg(&path)
        .env_remove("DRAWBRIDGE_CONFIG")
        .output()
        .expect("drawbridge runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("session.key_file: required with [cluster]"),
        "{err}"
    );
}

#[test]
fn several_mistakes_are_reported_in_one_run_in_file_order_with_their_lines() {
    let text = "[listen]\n\
                addr = \"0.0.0.0:8443\"\n\
                trusted_proxies = 1\n\
                [upstream]\n\
                url = \"http://127.0.0.1:1\"\n\
                request_timeout_ms = \"soon\"\n\
                [limits]\n\
                max_connections = 0\n\
                idle_timout_ms = 5\n\
                [providers.a]\n\
                kind = \"webhook\"\n\
                url = \"http://127.0.0.1:2/auth\"\n\
                timeout = 5\n";
    let (code, out, err) = check_text(text);
    assert_eq!(code, 64, "{out}{err}");
    let lines: Vec<&str> = err.lines().collect();
    let want = [
        (":3: listen.trusted_proxies: ", "expected a list of CIDRs"),
        (
            ":6: upstream.request_timeout_ms: ",
            "expected a whole number of milliseconds, found a string",
        ),
        (":8: limits.max_connections: ", ""),
        (
            ":9: limits.idle_timout_ms: unknown field",
            "did you mean `idle_timeout_ms`?",
        ),
        (
            ":13: providers.a.timeout: unknown field",
            "did you mean `timeout_ms`?",
        ),
    ];
    assert_eq!(lines.len(), want.len(), "one line per problem:\n{err}");
    for (line, (at, words)) in lines.iter().zip(want) {
        assert!(
            line.contains(at) && line.contains(words),
            "want {at}..{words}, got {line}\n{err}"
        );
    }
}

#[test]
fn summary_speaks_the_config_s_words_and_names_every_section_that_is_on() {
    let (code, out, err) = check_text(
        "[upstream]\nurl = \"http://127.0.0.1:1\"\n\
         [providers.a]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:2/auth\"\n\
         [providers.b]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:3/auth\"\n\
         [providers.both]\nkind = \"group\"\nmembers = [\"a\", \"b\"]\nstrategy = \"first_success\"\n\
         [cache]\nstale_if_error_seconds = 0\n\
         [session]\nalgorithm = \"EdDSA\"\nkey_file = \"/keys/session.pem\"\nrevalidate_seconds = 60\n\
         [cluster]\nredis_url = \"redis://:hunter2pw@redis:6379\"\n\
         [audit]\npath = \"/var/log/drawbridge/audit.log\"\n\
         [tracing]\notlp_endpoint = \"http://collector:4318\"\n\
         [cors]\nallowed_origins = [\"https://app.example\"]\n\
         [log]\nformat = \"json\"\naccess = true\n",
    );
    assert_eq!(code, 0, "{err}");
    for words in [
        "group of a/b, first_success",
        "log         json at info",
        "stale-if-error 0 s",
        "shutdown    25 s grace",
        "cluster     redis://",
        "audit       /var/log/drawbridge/audit.log",
        "tracing     http://collector:4318",
        "access log  stdout",
        "cors        https://app.example",
        "revalidate  open tunnels re-checked every 60 s",
        "fwd auth    /auth/check, path from path",
    ] {
        assert!(out.contains(words), "no {words:?} in:\n{out}");
    }
    for debug in ["FirstSuccess", "Json", "0ns", "Some(", "hunter2pw"] {
        assert!(!out.contains(debug), "{debug:?} in:\n{out}");
    }
}
