//! Secrets are never echoed: a config line that is not TOML, or a value of the wrong type, is
//! reported by its position and key, never with its text, in `drawbridge check` and in the log of
//! a rejected reload.

mod support;

use std::path::Path;
use std::process::Command;

use support::process::Running;
use support::{Upstream, client, metric};

/// What every secret below contains; it must never be printed.
const SECRET: &str = "hunter2";

const BASE: &str = "[listen]\naddr = \"127.0.0.1:0\"\nplaintext = true\n[upstream]\nurl = \"http://127.0.0.1:9\"\n";

/// Broken configs, each with the secret on the line that breaks it, and the line and key that
/// the report must name.
fn broken() -> Vec<(&'static str, String, usize, &'static str)> {
    let cluster = |line: &str| format!("{BASE}[cluster]\n{line}\n");
    let webhook = |line: &str| {
        format!(
            "{BASE}[providers.p]\nkind = \"webhook\"\nurl = \"https://auth.example/hook\"\n{line}\n"
        )
    };
    vec![
        (
            "unterminated URL with credentials",
            cluster("redis_url = \"redis://:hunter2@redis:6379/0"),
            7,
            "redis_url",
        ),
        (
            "text after the value",
            cluster("redis_url = \"rediss://drawbridge:hunter2@redis:6380\" x"),
            7,
            "redis_url",
        ),
        (
            "bare secret",
            cluster("password = hunter2-bare"),
            7,
            "password",
        ),
        (
            "unterminated literal secret",
            webhook("signing_secret = 'aHVudGVyMg==hunter2"),
            9,
            "signing_secret",
        ),
        (
            "unclosed inline table of headers",
            webhook("headers = { Authorization = \"Bearer hunter2-token\""),
            9,
            "headers",
        ),
        (
            "bad escape in a header",
            webhook("headers = { Authorization = \"Bearer hunter2\\q\" }"),
            9,
            "headers",
        ),
    ]
}

/// Values of the wrong type: parsed as TOML, refused by the config's shape.
fn mistyped() -> Vec<(&'static str, String, &'static str)> {
    vec![
        (
            "headers as a string",
            format!(
                "{BASE}[providers.p]\nkind = \"webhook\"\nurl = \"https://a.example/\"\nheaders = \"Authorization: Bearer hunter2\"\n"
            ),
            "providers",
        ),
        (
            "password as a number",
            format!("{BASE}[cluster]\nredis_url = \"redis://r:6379\"\npassword = 48687562\n"),
            "cluster.password",
        ),
        (
            "secret as a string where a table is expected",
            format!("{BASE}aggregator = \"hunter2-aggregator\"\n"),
            "aggregator",
        ),
        (
            "session key file as an array",
            format!("{BASE}[session]\nkey_file = [\"/run/hunter2\"]\n"),
            "session.key_file",
        ),
    ]
}

fn check(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drawbridge.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_drawbridge"))
        .args(["check", "--skip-files", "--config"])
        .arg(&path)
        .env_remove("DRAWBRIDGE_CONFIG")
        .output()
        .expect("drawbridge runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn check_syntax_error_on_a_secret_line_names_line_and_key_without_the_value() {
    for (what, text, line, key) in broken() {
        let (code, out) = check(&text);
        assert_eq!(code, Some(64), "{what}: {out}");
        assert!(
            !out.contains(SECRET),
            "{what}: the secret was printed: {out}"
        );
        assert!(out.contains("not valid TOML"), "{what}: {out}");
        assert!(out.contains(&format!("line {line}")), "{what}: {out}");
        assert!(out.contains(key), "{what}: the key is not named: {out}");
    }
}

#[test]
fn check_mistyped_secret_value_names_the_key_without_the_value() {
    // 48687562 is the secret of the numeric case: it must not be printed either.
    for (what, text, key) in mistyped() {
        let (code, out) = check(&text);
        assert_eq!(code, Some(64), "{what}: {out}");
        assert!(
            !out.contains(SECRET) && !out.contains("48687562"),
            "{what}: the value was printed: {out}"
        );
        assert!(out.contains(key), "{what}: the key is not named: {out}");
    }
}

fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn reload_rejected_for_a_secret_line_logs_no_secret() {
    let up = Upstream::start().await;
    let gw = Running::start(&up.url(), "", &[]);
    let path = gw.config_path();
    let good = std::fs::read_to_string(&path).unwrap();
    let failures = || async {
        metric(
            &client::get_text(&format!("http://{}/metrics", gw.admin))
                .await
                .1,
            "drawbridge_config_reloads_total{result=\"failure\"}",
        )
    };
    let mut rejected = 0.0;
    let lines = good.lines().count();
    let cases = [
        "[cluster]\nredis_url = \"redis://:hunter2@redis:6379/0",
        "[providers.p]\nkind = \"webhook\"\nurl = \"https://a.example/\"\nheaders = { Authorization = \"Bearer hunter2\"",
        "[providers.p]\nkind = \"webhook\"\nurl = \"https://a.example/\"\nheaders = \"Bearer hunter2\"",
    ];
    for case in cases {
        write(&path, &format!("{good}{case}\n"));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(gw.child.id() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
        assert_eventually!(
            failures().await > rejected,
            "the broken file was not rejected: {case}\n{}",
            gw.logs()
        );
        rejected = failures().await;
    }
    let logs = gw.logs();
    assert!(logs.contains("config reload rejected"), "{logs}");
    assert!(!logs.contains(SECRET), "a secret reached the log: {logs}");
    // The syntax errors are named by their line.
    assert!(
        logs.contains(&format!("line {}", lines + 2)),
        "no line named: {logs}"
    );
}
