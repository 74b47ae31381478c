//! A real Redis (Debian's `redis-server`) on a free loopback port, without persistence, that a
//! test can kill and start again on the same port; killed when dropped.

use std::net::{SocketAddr, TcpStream};

use super::free_port;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs redis-server.
pub const REDIS_BIN: &str = "/usr/bin/redis-server";

/// Attempts at finding a port nobody takes between probing and redis binding it.
const START_ATTEMPTS: usize = 5;

pub struct Redis {
    pub addr: SocketAddr,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts redis-server on a free loopback port and waits until it answers.
    ///
    /// # Panics
    /// When redis-server is not installed or does not start.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// [`Redis::start`] with extra redis-server arguments (e.g. `["--requirepass", "pw"]`).
    ///
    /// # Panics
    /// When redis-server is not installed or does not start.
    pub async fn start_with(args: &[&str]) -> Self {
        assert!(
            Path::new(REDIS_BIN).exists(),
            "{REDIS_BIN} is missing: install it: apt-get install redis-server"
        );
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..START_ATTEMPTS {
            let addr = free_port();
            if let Ok(child) = spawn(addr, dir.path(), args).await {
                return Self {
                    addr,
                    child: Some(child),
                    dir,
                };
            }
        }
        panic!("redis-server did not start after {START_ATTEMPTS} attempts");
    }

    /// A loopback address nothing listens on, for "Redis down" (a port free a moment ago).
    pub fn dead_url() -> String {
        format!("redis://{}", free_port())
    }

    /// `redis://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Kills the server (SIGKILL: no goodbye to clients) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): it keeps accepting connections in the kernel but answers
    /// nothing, as a stalled Redis does.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Lets a [paused](Self::pause) server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("redis-server is running");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// Starts the server again on the same port, empty (nothing was persisted).
    ///
    /// # Panics
    /// When it does not come back within 10 s.
    pub async fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match spawn(self.addr, self.dir.path(), &[]).await {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(why) if Instant::now() > deadline => panic!("redis-server not back: {why}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs redis-server on `addr` in the foreground and waits until it accepts connections.
// The child is returned to `Redis`, whose Drop kills and waits for it; on failure it is killed here.
#[allow(clippy::zombie_processes)]
async fn spawn(addr: SocketAddr, dir: &Path, args: &[&str]) -> Result<Child, String> {
    let mut child = Command::new(REDIS_BIN)
        .args(["--bind", "127.0.0.1", "--port"])
        .arg(addr.port().to_string())
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(["--protected-mode", "no", "--loglevel", "warning"])
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {REDIS_BIN}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("redis-server exited with {status}"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("redis-server never accepted on {addr}"));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
