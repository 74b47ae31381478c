//! A real HAProxy (Debian's `/usr/sbin/haproxy`) in TCP mode on free loopback ports, in the
//! foreground, killed when dropped.
//!
//! Each frontend passes its connections, bytes untouched, to one backend server line the test
//! gives (e.g. `127.0.0.1:8443 send-proxy-v2`), so TLS runs end to end between the client and
//! drawbridge, with the PROXY header in front.

use std::net::{SocketAddr, TcpStream};

use super::free_port;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs HAProxy.
pub const HAPROXY_BIN: &str = "/usr/sbin/haproxy";

/// Attempts at finding ports nobody takes between probing and HAProxy binding them.
const START_ATTEMPTS: usize = 5;

pub struct Haproxy {
    /// One address per frontend, in the order given.
    pub addrs: Vec<SocketAddr>,
    child: Child,
    dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts HAProxy with one TCP frontend per entry of `servers`, each forwarding to its
    /// `server` line (`<addr> [options]`), and waits until every frontend accepts.
    ///
    /// # Panics
    /// When HAProxy is not installed, or does not start (its output is in the message).
    pub async fn start(servers: &[&str]) -> Self {
        assert!(
            Path::new(HAPROXY_BIN).exists(),
            "{HAPROXY_BIN} is missing: install haproxy: apt-get install haproxy"
        );
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(servers).await {
                Ok(h) => return h,
                Err(log) => last = log,
            }
        }
        panic!("haproxy did not start after {START_ATTEMPTS} attempts; last output:\n{last}");
    }

    /// Everything HAProxy printed so far (for assertion messages).
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.out")).unwrap_or_default()
    }

    // The child is owned by `Haproxy`, whose Drop kills and waits for it; on failure it is
    // killed and waited here.
    #[allow(clippy::zombie_processes)]
    async fn try_start(servers: &[&str]) -> Result<Self, String> {
        let dir = tempfile::tempdir().unwrap();
        let addrs: Vec<SocketAddr> = servers.iter().map(|_| free_port()).collect();
        let mut conf = String::from(
            "global\n    maxconn 512\n\
             defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n",
        );
        for (i, (addr, server)) in addrs.iter().zip(servers).enumerate() {
            conf.push_str(&format!(
                "frontend fe{i}\n    bind {addr}\n    default_backend be{i}\n\
                 backend be{i}\n    server s{i} {server}\n"
            ));
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, conf).unwrap();
        let out = std::fs::File::create(dir.path().join("haproxy.out")).unwrap();
        let mut child = Command::new(HAPROXY_BIN)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {HAPROXY_BIN}: {e}"));
        let output = || std::fs::read_to_string(dir.path().join("haproxy.out")).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("haproxy exited with {status}:\n{}", output()));
            }
            if addrs
                .iter()
                .all(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok())
            {
                return Ok(Self { addrs, child, dir });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "haproxy never accepted on {addrs:?}:\n{}",
                    output()
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
