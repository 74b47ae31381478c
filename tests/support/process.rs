//! `drawbridge run` as a real child process, with its bound addresses read from its JSON start line
//! and every log line kept for inspection.

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::{Ca, Gateway, GatewayBuilder};

pub struct Running {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub ca: Ca,
    pub logs: Arc<Mutex<Vec<String>>>,
    /// The file the diagnostic log goes to, when not to the pipe `logs` reads.
    log_file: Option<std::path::PathBuf>,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// Starts `drawbridge run` in front of `upstream` with JSON logs; `extra` is appended to the config.
    // The child is owned by `Running`, whose Drop kills and waits for it.
    #[allow(clippy::zombie_processes)]
    pub fn start(upstream: &str, extra: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with(Gateway::builder(upstream).extra(extra), env)
    }

    /// Starts `drawbridge run` with the config `builder` makes, plus JSON logs.
    // The child is owned by `Running`, whose Drop kills and waits for it.
    #[allow(clippy::zombie_processes)]
    pub fn start_with(builder: GatewayBuilder, env: &[(&str, &str)]) -> Self {
        Self::spawn(tempfile::tempdir().unwrap(), builder, env, &[], "", None)
    }

    /// Starts `drawbridge run` with its config in `dir`, `log` lines added to its `[log]` table
    /// (after `format = "json"`), and its diagnostic log written to `file` in `dir`, beside the
    /// config, as `drawbridge run 2>dir/file` would.
    #[allow(clippy::zombie_processes)]
    pub fn start_logging_beside_config(
        dir: tempfile::TempDir,
        builder: GatewayBuilder,
        log: &str,
        file: &str,
    ) -> Self {
        Self::spawn(dir, builder, &[], &[], log, Some(file))
    }

    /// Starts `drawbridge run` allowed onto one CPU only (`taskset -c 0`), as a pinned sidecar is.
    #[allow(clippy::zombie_processes)]
    pub fn start_on_one_cpu(builder: GatewayBuilder) -> Self {
        Self::spawn(
            tempfile::tempdir().unwrap(),
            builder,
            &[],
            &["taskset", "-c", "0"],
            "",
            None,
        )
    }

    /// Starts `drawbridge run` through `launcher`, a command that ends by exec'ing its arguments
    /// (`bash -c '...; exec "$0" "$@"'`), so the child's pid is drawbridge's.
    #[allow(clippy::zombie_processes)]
    pub fn start_under(builder: GatewayBuilder, launcher: &[&str]) -> Self {
        Self::spawn(
            tempfile::tempdir().unwrap(),
            builder,
            &[],
            launcher,
            "",
            None,
        )
    }

    // The child is owned by `Running`, whose Drop kills and waits for it.
    #[allow(clippy::zombie_processes)]
    fn spawn(
        dir: tempfile::TempDir,
        builder: GatewayBuilder,
        env: &[(&str, &str)],
        launcher: &[&str],
        log: &str,
        log_file: Option<&str>,
    ) -> Self {
        let ca = Ca::new();
        let text = builder
            .extra(&format!("[log]\nformat = \"json\"\n{log}"))
            .config_text(dir.path(), &ca);
        let path = dir.path().join("drawbridge.toml");
        std::fs::write(&path, text).unwrap();
        let bin = env!("CARGO_BIN_EXE_drawbridge");
        let mut command = match launcher.split_first() {
            // The launcher execs drawbridge, so the child's pid is drawbridge's.
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let log_file = log_file.map(|name| dir.path().join(name));
        let stderr = match &log_file {
            Some(file) => Stdio::from(std::fs::File::create(file).unwrap()),
            None => Stdio::piped(),
        };
        let mut child = command
            .args(["run", "--config"])
            .arg(&path)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        if let Some(file) = log_file {
            return Self::serving_from_file(child, file, ca, dir);
        }
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let keep = logs.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                keep.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("drawbridge never logged that it was serving");
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if v["message"] == "drawbridge serving" {
                let addr = v["addr"].as_str().unwrap().parse().unwrap();
                let admin = v["admin"].as_str().unwrap().parse().unwrap();
                return Self {
                    child,
                    addr,
                    admin,
                    ca,
                    logs,
                    log_file: None,
                    _dir: dir,
                };
            }
        }
    }

    /// Polls the log `file` until the process logs that it is serving.
    fn serving_from_file(
        child: Child,
        file: std::path::PathBuf,
        ca: Ca,
        dir: tempfile::TempDir,
    ) -> Self {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let serving = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["message"] == "drawbridge serving");
            if let Some(v) = serving {
                return Self {
                    child,
                    addr: v["addr"].as_str().unwrap().parse().unwrap(),
                    admin: v["admin"].as_str().unwrap().parse().unwrap(),
                    ca,
                    logs: Arc::default(),
                    log_file: Some(file),
                    _dir: dir,
                };
            }
            assert!(
                Instant::now() < deadline,
                "drawbridge never logged that it was serving"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit and returns its code.
    pub fn wait_exit(&mut self, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(code) = self.exit_code(deadline, within) {
                return code;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit code once the process has exited; fails the test past `deadline`.
    fn exit_code(&mut self, deadline: Instant, within: Duration) -> Option<i32> {
        if let Some(status) = self.child.try_wait().unwrap() {
            return Some(status.code().unwrap_or(-1));
        }
        assert!(
            Instant::now() < deadline,
            "drawbridge did not exit within {within:?}"
        );
        None
    }

    /// [`Running::wait_exit`] without blocking the runtime: servers the test runs on it (a trace
    /// collector) keep answering the process while it shuts down.
    pub async fn exited(&mut self, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(code) = self.exit_code(deadline, within) {
                return code;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    /// The directory holding the config file (`drawbridge.toml`) and the TLS files.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// The config file the process was started with (rewrite it to reload).
    pub fn config_path(&self) -> std::path::PathBuf {
        self._dir.path().join("drawbridge.toml")
    }

    /// Every diagnostic log line so far.
    pub fn logs(&self) -> String {
        match &self.log_file {
            Some(file) => std::fs::read_to_string(file).unwrap_or_default(),
            None => self.logs.lock().unwrap().join("\n"),
        }
    }

    /// The file the diagnostic log goes to, when it goes to one.
    pub fn log_file(&self) -> Option<&std::path::Path> {
        self.log_file.as_deref()
    }
}

/// `drawbridge check --skip-files` on a config file holding `text`, with no `DRAWBRIDGE_CONFIG`
/// from the environment.
pub fn check_config(text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drawbridge.toml");
    std::fs::write(&path, text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_drawbridge"))
        .args(["check", "--skip-files", "--config"])
        .arg(&path)
        .env_remove("DRAWBRIDGE_CONFIG")
        .output()
        .unwrap()
}

/// A running `drawbridge demo`, killed (and waited for) when dropped, if the test has not stopped it.
pub struct Demo(pub Child);

impl Demo {
    /// `drawbridge demo` on free ports, what it prints on a pipe.
    pub fn start() -> Self {
        Self(
            Command::new(env!("CARGO_BIN_EXE_drawbridge"))
                .args([
                    "demo",
                    "--addr",
                    "127.0.0.1:0",
                    "--admin-addr",
                    "127.0.0.1:0",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every config key with its default, as the binary lists them (`drawbridge config-keys`).
pub fn config_keys() -> std::collections::BTreeMap<String, serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_drawbridge"))
        .arg("config-keys")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["key"].as_str().unwrap().to_owned(), v["default"].clone())
        })
        .collect()
}
