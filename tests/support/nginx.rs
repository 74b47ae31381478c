//! A real nginx (Debian's `/usr/sbin/nginx`) on a free loopback port, configured by the test,
//! with every file it writes in a temporary directory, and killed when dropped.
//!
//! The test gives the inside of the `http { }` block; `@LISTEN@` in it becomes the
//! `127.0.0.1:<port>` nginx was started on. [`Nginx::server`] wraps one `server { }` for the
//! common case.

use std::net::{SocketAddr, TcpStream};

use super::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs nginx.
pub const NGINX_BIN: &str = "/usr/sbin/nginx";
/// Replaced by `127.0.0.1:<port>` in the configuration text.
pub const LISTEN: &str = "@LISTEN@";

/// Attempts at finding a port nobody takes between probing and nginx binding it.
const START_ATTEMPTS: usize = 5;

pub struct Nginx {
    pub addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx with `http_block` as the inside of its `http { }` block, and waits until it
    /// accepts connections on `@LISTEN@`.
    ///
    /// # Panics
    /// When nginx is not installed, or does not start (its error log is in the message).
    pub async fn start(http_block: &str) -> Self {
        assert!(
            Path::new(NGINX_BIN).exists(),
            "{NGINX_BIN} is missing: install nginx: apt-get install nginx-light"
        );
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(http_block).await {
                Ok(nginx) => return nginx,
                Err(log) => last_log = log,
            }
        }
        panic!("nginx did not start after {START_ATTEMPTS} attempts; last error log:\n{last_log}");
    }

    /// Starts nginx with one `server { listen @LISTEN@; <server_block> }`.
    pub async fn server(server_block: &str) -> Self {
        Self::start(&format!(
            "server {{\n    listen {LISTEN};\n    server_name _;\n{server_block}\n}}\n"
        ))
        .await
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The error log so far (for assertion messages).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// The access log so far, one line per request (`$request $status`).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    // The child is owned by `Nginx`, whose Drop kills and waits for it; on failure it is killed
    // and waited here.
    #[allow(clippy::zombie_processes)]
    async fn try_start(http_block: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().unwrap();
        let addr = free_port();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, main_config(dir.path(), addr, http_block)).unwrap();
        let error_log = dir.path().join("error.log");
        let mut child = Command::new(NGINX_BIN)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(&error_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {NGINX_BIN}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&error_log).unwrap_or_default();
                return Err(format!("nginx exited with {status}:\n{log}"));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(Self { addr, child, dir });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&error_log).unwrap_or_default();
                return Err(format!("nginx never accepted on {addr}:\n{log}"));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One process in the foreground, every path under `dir`, the test's text inside `http { }`.
fn main_config(dir: &Path, addr: SocketAddr, http_block: &str) -> String {
    let p = |name: &str| -> PathBuf { dir.join(name) };
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {pid};\nerror_log {err} info;\n\
         events {{\n    worker_connections 256;\n}}\n\
         http {{\n    log_format plain '$request $status';\n    access_log {access} plain;\n\
         client_body_temp_path {body};\n    proxy_temp_path {proxy};\n    fastcgi_temp_path {fcgi};\n\
         uwsgi_temp_path {uwsgi};\n    scgi_temp_path {scgi};\n\n{block}\n}}\n",
        pid = p("nginx.pid").display(),
        err = p("error.log").display(),
        access = p("access.log").display(),
        body = p("client_body").display(),
        proxy = p("proxy").display(),
        fcgi = p("fastcgi").display(),
        uwsgi = p("uwsgi").display(),
        scgi = p("scgi").display(),
        block = http_block.replace(LISTEN, &addr.to_string()),
    )
}
