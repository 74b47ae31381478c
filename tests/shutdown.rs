//! SIGTERM on the real binary: readiness drops, the listener closes, in-flight requests finish.

mod support;

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use http::StatusCode;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{Ca, Gateway, Upstream, client};

struct Running {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    ca: Ca,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `drawbridge run` with JSON logs and reads the bound addresses from its start line.
// The child is owned by `Running`, whose Drop kills and waits for it.
#[allow(clippy::zombie_processes)]
fn start(upstream: &str, extra: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let text = Gateway::builder(upstream)
        .extra(&format!("[log]\nformat = \"json\"\n{extra}"))
        .config_text(dir.path(), &ca);
    let path = dir.path().join("drawbridge.toml");
    std::fs::write(&path, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_drawbridge"))
        .args(["run", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("drawbridge never logged that it was serving");
        let v: serde_json::Value = serde_json::from_str(&line).expect("log lines are JSON");
        if v["fields"]["message"] == "drawbridge serving" {
            let addr = v["fields"]["addr"].as_str().unwrap().parse().unwrap();
            let admin = v["fields"]["admin"].as_str().unwrap().parse().unwrap();
            std::thread::spawn(move || while rx.recv().is_ok() {});
            return Running {
                child,
                addr,
                admin,
                ca,
                _dir: dir,
            };
        }
    }
}

fn wait_exit(child: &mut Child, within: Duration) -> i32 {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(
            Instant::now() < deadline,
            "drawbridge did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn sigterm_lets_the_in_flight_request_finish_then_exits_zero() {
    let up = Upstream::start().await;
    let mut gw = start(&up.url(), "[shutdown]\ngrace_seconds = 10");
    let http = client::https(&gw.ca.pem(), false);
    let url = format!("https://127.0.0.1:{}/slow?ms=1500", gw.addr.port());
    let in_flight =
        tokio::spawn(async move { http.get(url.parse().unwrap()).await.map(|r| r.status()) });
    assert_eventually!(
        up.hits() == 1,
        "the slow request never reached the upstream"
    );

    kill(Pid::from_raw(gw.child.id() as i32), Signal::SIGTERM).unwrap();
    let ready = format!("http://{}/readyz", gw.admin);
    assert_eventually!(
        client::get_text(&ready).await.0 == 503,
        "readiness never went 503 while draining"
    );
    assert_eventually!(
        tokio::net::TcpStream::connect(gw.addr).await.is_err(),
        "the listener still accepted connections while draining"
    );
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        StatusCode::OK,
        "the in-flight request was cut"
    );
    assert_eq!(wait_exit(&mut gw.child, Duration::from_secs(10)), 0);
}

#[tokio::test]
async fn sigterm_with_a_stuck_request_exits_when_the_grace_period_ends() {
    let up = Upstream::start().await;
    let mut gw = start(&up.url(), "[shutdown]\ngrace_seconds = 1");
    let http = client::https(&gw.ca.pem(), false);
    let url = format!("https://127.0.0.1:{}/slow?ms=20000", gw.addr.port());
    let _stuck =
        tokio::spawn(async move { http.get(url.parse().unwrap()).await.map(|r| r.status()) });
    assert_eventually!(
        up.hits() == 1,
        "the slow request never reached the upstream"
    );

    let started = Instant::now();
    kill(Pid::from_raw(gw.child.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(wait_exit(&mut gw.child, Duration::from_secs(8)), 0);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "exited before the grace period"
    );
}
