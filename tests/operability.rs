//! What an operator sees of a running binary: `process_*` and build info on `/metrics`, flat
//! JSON log lines, and the open-file limit raised at start and weighed against
//! `limits.max_connections`.

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use support::process::Running;
use support::{Gateway, Upstream, client};

/// The samples of `name` in a Prometheus text exposition: labels and value.
fn samples(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, labels) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            (metric == name).then(|| {
                let labels = labels
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .filter_map(|p| {
                        let (k, v) = p.split_once('=')?;
                        Some((k.to_owned(), v.trim_matches('"').to_owned()))
                    })
                    .collect();
                (labels, value.parse().unwrap())
            })
        })
        .collect()
}

/// What `git rev-parse --short HEAD` says here, if git and the repository are there.
fn git_revision() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap().trim().to_owned())
}

/// The revision the binary should report: the override it was built with, else git's, else
/// "unknown".
fn expected_revision() -> String {
    std::env::var("DRAWBRIDGE_BUILD_REVISION")
        .ok()
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".to_owned())
}

#[tokio::test]
async fn metrics_of_running_binary_have_process_series_and_build_info() {
    let up = Upstream::start().await;
    let gw = Running::start(&up.url(), "", &[]);
    let (status, text) = client::get_text(&format!("http://{}/metrics", gw.admin)).await;
    assert_eq!(status, 200, "{text}");

    for name in [
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        let found = samples(&text, name);
        assert_eq!(found.len(), 1, "{name} missing or repeated:\n{text}");
        assert!(found[0].1 > 0.0, "{name} = {}", found[0].1);
    }
    assert!(
        !samples(&text, "process_cpu_seconds_total").is_empty(),
        "{text}"
    );
    // The file descriptors counted are the binary's own: its listeners at least.
    assert!(samples(&text, "process_open_fds")[0].1 >= 3.0);

    let build = samples(&text, "drawbridge_build_info");
    assert_eq!(build.len(), 1, "{text}");
    let (labels, value) = &build[0];
    assert_eq!(*value, 1.0);
    assert_eq!(labels["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(labels["revision"], expected_revision(), "{labels:?}");
    assert_eq!(labels.len(), 2, "{labels:?}");

    // `--version` names the same revision.
    let out = Command::new(env!("CARGO_BIN_EXE_drawbridge"))
        .arg("--version")
        .output()
        .unwrap();
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        printed.trim(),
        format!(
            "drawbridge {} (revision {})",
            env!("CARGO_PKG_VERSION"),
            expected_revision()
        )
    );
}

#[tokio::test]
async fn json_log_lines_start_with_ts_level_message_target_then_fields() {
    let up = Upstream::start().await;
    let gw = Running::start(&up.url(), "", &[]);
    let logs = gw.logs();
    let lines: Vec<&str> = logs.lines().collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("fields").is_none(), "fields nested: {line}");
        // The four fixed keys come first, in this order.
        let prefix = ["ts", "level", "message", "target"]
            .iter()
            .map(|k| format!("\"{k}\":{}", v[k]))
            .collect::<Vec<_>>()
            .join(",");
        assert!(line.starts_with(&format!("{{{prefix}")), "{line}");
        let ts = v["ts"].as_str().unwrap();
        time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("ts is not RFC 3339 ({e}): {line}"));
        assert!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&v["level"].as_str().unwrap()),
            "{line}"
        );
    }
    let serving: serde_json::Value = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["message"] == "drawbridge serving")
        .expect("the serving line");
    assert_eq!(serving["level"], "INFO");
    assert!(
        serving["target"]
            .as_str()
            .unwrap()
            .starts_with("drawbridge"),
        "{serving}"
    );
    // The event's own fields sit at the top level.
    assert_eq!(serving["addr"], gw.addr.to_string(), "{serving}");
    assert_eq!(serving["admin"], gw.admin.to_string(), "{serving}");
}

/// The binary under `ulimit` settings: `limits` is a shell fragment run before it is exec'd.
fn start_with_ulimit(limits: &str, extra: &str, upstream: &str) -> Running {
    let script = format!("{limits} && exec \"$0\" \"$@\"");
    Running::start_under(
        Gateway::builder(upstream).extra(extra),
        &["bash", "-c", &script],
    )
}

/// The parsed log lines whose message starts with `prefix`.
fn log_lines(gw: &Running, prefix: &str) -> Vec<serde_json::Value> {
    gw.logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
        .collect()
}

/// `Max open files` soft and hard limits of process `pid`, from /proc.
fn proc_nofile(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

#[tokio::test]
async fn open_file_limit_low_soft_is_raised_to_hard_and_logged() {
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
    assert!(
        hard > 256,
        "the hard limit here ({hard}) leaves nothing to raise"
    );
    let up = Upstream::start().await;
    let gw = start_with_ulimit("ulimit -S -n 256", "", &up.url());

    let raised = log_lines(&gw, "open file limit");
    assert_eq!(raised.len(), 1, "{}", gw.logs());
    let line = &raised[0];
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["soft_before"], 256, "{line}");
    assert_eq!(line["soft"], hard, "{line}");
    assert_eq!(line["hard"], hard, "{line}");
    assert_eq!(
        line["message"],
        format!("open file limit: soft limit raised from 256 to {hard} (hard limit {hard})")
    );
    // The process really runs with it.
    assert_eq!(proc_nofile(gw.child.id()), (hard, hard));
}

#[tokio::test]
async fn open_file_limit_below_max_connections_need_warns_naming_both() {
    let up = Upstream::start().await;
    let low = "ulimit -S -n 256 && ulimit -H -n 512";
    let gw = start_with_ulimit(low, "[limits]\nmax_connections = 1000\n", &up.url());

    let raised = log_lines(&gw, "open file limit");
    assert_eq!(raised.len(), 1, "{}", gw.logs());
    assert_eq!(raised[0]["soft"], 512);
    assert_eq!(raised[0]["hard"], 512);
    let warned = log_lines(&gw, "limits.max_connections");
    assert_eq!(warned.len(), 1, "{}", gw.logs());
    let line = &warned[0];
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["max_connections"], 1000, "{line}");
    assert_eq!(line["needed"], 2 * 1000 + 64, "{line}");
    assert_eq!(line["soft"], 512, "{line}");
    let message = line["message"].as_str().unwrap();
    assert!(
        message.contains("2064") && message.contains("512"),
        "{message}"
    );
    drop(gw);

    // The same limits with room for every connection: no warning.
    let fits = start_with_ulimit(low, "[limits]\nmax_connections = 200\n", &up.url());
    assert_eq!(
        log_lines(&fits, "open file limit").len(),
        1,
        "{}",
        fits.logs()
    );
    assert!(
        log_lines(&fits, "limits.max_connections").is_empty(),
        "{}",
        fits.logs()
    );
}
