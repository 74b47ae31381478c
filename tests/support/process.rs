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
        Self::spawn(builder, env, &[])
    }

    /// Starts `drawbridge run` allowed onto one CPU only (`taskset -c 0`), as a pinned sidecar is.
    #[allow(clippy::zombie_processes)]
    pub fn start_on_one_cpu(builder: GatewayBuilder) -> Self {
        Self::spawn(builder, &[], &["taskset", "-c", "0"])
    }

    // The child is owned by `Running`, whose Drop kills and waits for it.
    #[allow(clippy::zombie_processes)]
    fn spawn(builder: GatewayBuilder, env: &[(&str, &str)], launcher: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new();
        let text = builder
            .extra("[log]\nformat = \"json\"\n")
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
        let mut child = command
            .args(["run", "--config"])
            .arg(&path)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
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
            if v["fields"]["message"] == "drawbridge serving" {
                let addr = v["fields"]["addr"].as_str().unwrap().parse().unwrap();
                let admin = v["fields"]["admin"].as_str().unwrap().parse().unwrap();
                return Self {
                    child,
                    addr,
                    admin,
                    ca,
                    logs,
                    _dir: dir,
                };
            }
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

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}
