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

    /// [`Redis::start_with`], on TLS only when `tls` is given (its node certificate, replication
    /// over TLS).
    ///
    /// # Panics
    /// When redis-server is not installed or does not start.
    pub async fn start_on(tls: Option<&RedisTls>, args: &[&str]) -> Self {
        let Some(tls) = tls else {
            return Self::start_with(args).await;
        };
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..START_ATTEMPTS {
            let addr = free_port();
            // Later arguments win: the plain port is closed, the TLS one opened on `addr`.
            let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
            all.extend(tls.node_args(addr.port()));
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            if let Ok(child) = spawn(addr, dir.path(), &all).await {
                return Self {
                    addr,
                    child: Some(child),
                    dir,
                };
            }
        }
        panic!("redis-server (TLS) did not start after {START_ATTEMPTS} attempts");
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

// === Sentinel and Redis Cluster topologies ===

/// The master name the test sentinels watch.
pub const SENTINEL_MASTER: &str = "mymaster";

/// Runs `redis-cli` with `args` against 127.0.0.1:`port`; its standard output.
pub fn cli(port: u16, args: &[&str]) -> String {
    cli_with(&[], port, args)
}

/// Runs `redis-cli` with its own `options` (`--tls`, …) and `args` against 127.0.0.1:`port`; its
/// standard output.
fn cli_with(options: &[&std::ffi::OsStr], port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(options)
        .args(["-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("redis-cli runs (it ships with redis-server)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One master, one replica and three sentinels watching them, each sentinel fast to act
/// (`down-after-milliseconds` 1000, `failover-timeout` 2000); all killed when dropped.
pub struct SentinelSet {
    pub master: Redis,
    pub replica: Redis,
    /// Set when every process speaks TLS only ([`SentinelSet::start_tls`]).
    pub tls: Option<RedisTls>,
    sentinels: Vec<(SocketAddr, Child)>,
    dir: tempfile::TempDir,
}

impl SentinelSet {
    /// Starts the five processes and waits until the replica is in sync and every sentinel knows
    /// it and the other two sentinels (a failover needs both).
    ///
    /// # Panics
    /// When a process does not start or the sentinels do not find each other within 20 s.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// [`SentinelSet::start`] with every process on TLS only (`--port 0`, replication and the
    /// sentinels' links over TLS too): the data nodes present `tls`'s node certificate, the
    /// sentinels its sentinel certificate.
    ///
    /// # Panics
    /// As [`SentinelSet::start`].
    pub async fn start_tls(tls: RedisTls) -> Self {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<RedisTls>) -> Self {
        // No diskless-sync delay: the replica is in sync (listed by ROLE) within a moment.
        let master = Redis::start_on(tls.as_ref(), &["--repl-diskless-sync-delay", "0"]).await;
        let port = master.addr.port().to_string();
        let replica = Redis::start_on(tls.as_ref(), &["--replicaof", "127.0.0.1", &port]).await;
        let dir = tempfile::tempdir().unwrap();
        let mut sentinels = Vec::new();
        for i in 0..3 {
            sentinels.push(start_sentinel(dir.path(), i, master.addr.port(), tls.as_ref()).await);
        }
        let set = Self {
            master,
            replica,
            tls,
            sentinels,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = set.sentinels.iter().all(|(addr, _)| {
                let master = set.cli(addr.port(), &["SENTINEL", "master", SENTINEL_MASTER]);
                let fields: Vec<&str> = master.lines().collect();
                let field = |name: &str| {
                    fields
                        .iter()
                        .position(|l| *l == name)
                        .and_then(|i| fields.get(i + 1))
                        .copied()
                };
                field("num-slaves") == Some("1") && field("num-other-sentinels") == Some("2")
            });
            let synced = set
                .cli(set.master.addr.port(), &["INFO", "replication"])
                .contains("state=online");
            if ready && synced {
                return set;
            }
            assert!(
                Instant::now() < deadline,
                "the sentinels never saw the replica and each other, or the replica never synced"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `redis-cli` with `args` against 127.0.0.1:`port`, over TLS when the set speaks it.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        match &self.tls {
            Some(tls) => tls.cli(port, args),
            None => cli(port, args),
        }
    }

    /// `[redis://127.0.0.1:<port>, ...]` of the sentinels (`rediss://` over TLS), as TOML.
    pub fn urls_toml(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let urls: Vec<String> = self
            .sentinels
            .iter()
            .map(|(addr, _)| format!("\"{scheme}://{addr}\""))
            .collect();
        format!("[{}]", urls.join(", "))
    }

    /// The port of the first sentinel.
    pub fn sentinel_port(&self) -> u16 {
        self.sentinels[0].0.port()
    }

    /// The port of the master the sentinels name now.
    pub fn master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|(addr, _)| {
            let out = self.cli(
                addr.port(),
                &["SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER],
            );
            out.lines().nth(1).and_then(|p| p.trim().parse().ok())
        })
    }

    /// Waits (20 s at most) until the sentinels name the replica as the master, after the master
    /// was killed.
    pub async fn wait_promoted(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.master_port() != Some(self.replica.addr.port()) {
            assert!(
                Instant::now() < deadline,
                "the sentinels never promoted the replica"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        for (_, child) in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.dir.path();
    }
}

// The child goes to `SentinelSet`, whose Drop kills and waits for it; on failure it is killed here.
#[allow(clippy::zombie_processes)]
async fn start_sentinel(
    dir: &Path,
    i: usize,
    master_port: u16,
    tls: Option<&RedisTls>,
) -> (SocketAddr, Child) {
    for _ in 0..START_ATTEMPTS {
        let addr = free_port();
        let conf = dir.join(format!("sentinel-{i}.conf"));
        let listen = match tls {
            Some(tls) => tls.sentinel_conf(addr.port()),
            None => format!("port {}\n", addr.port()),
        };
        std::fs::write(
            &conf,
            format!(
                "{listen}bind 127.0.0.1\nprotected-mode no\ndaemonize no\n\
                 dir {dir:?}\nloglevel warning\n\
                 sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                 sentinel failover-timeout {SENTINEL_MASTER} 2000\n\
                 sentinel parallel-syncs {SENTINEL_MASTER} 1\n",
            ),
        )
        .unwrap();
        let mut child = Command::new(REDIS_BIN)
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs as a sentinel");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return (addr, child);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    panic!("a sentinel did not start after {START_ATTEMPTS} attempts");
}

/// Six cluster-enabled nodes joined by `redis-cli --cluster create --cluster-replicas 1`: three
/// masters, each with a replica, `cluster-node-timeout` 1000 so a failover takes seconds.
/// Killed when dropped.
pub struct RedisCluster {
    pub nodes: Vec<Redis>,
}

impl RedisCluster {
    /// Starts the nodes, joins them and waits until every node says `cluster_state:ok` and every
    /// master's replica is in sync.
    ///
    /// # Panics
    /// When a node does not start or the cluster does not form within 30 s.
    pub async fn start() -> Self {
        let mut nodes = Vec::new();
        for _ in 0..6 {
            // The bus port is given: the default (port + 10000) may not exist.
            let bus = free_port().port().to_string();
            nodes.push(
                Redis::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    "--cluster-port",
                    &bus,
                    // A replica of a quiet master may take over however long ago it last heard
                    // from it (with the default, "disconnected for longer than allowed").
                    "--cluster-replica-validity-factor",
                    "0",
                    // Replicas in sync within a moment (a master lists them, and waits for them).
                    "--repl-diskless-sync-delay",
                    "0",
                ])
                .await,
            );
        }
        let addrs: Vec<String> = nodes.iter().map(|n| n.addr.to_string()).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli --cluster create runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Self { nodes };
        cluster.wait_ok(Duration::from_secs(30)).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let synced = cluster
                .nodes
                .iter()
                .filter(|n| cli(n.addr.port(), &["ROLE"]).starts_with("master"))
                .all(|n| cli(n.addr.port(), &["INFO", "replication"]).contains("state=online"));
            if synced {
                return cluster;
            }
            assert!(Instant::now() < deadline, "the replicas never synced");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every live node says `cluster_state:ok` and agrees on the masters.
    ///
    /// # Panics
    /// When that does not happen within `within`.
    pub async fn wait_ok(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let ok = self
                .nodes
                .iter()
                .filter(|n| n.is_running())
                .all(|n| cli(n.addr.port(), &["CLUSTER", "INFO"]).contains("cluster_state:ok"));
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster never became ok");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `["redis://127.0.0.1:<port>", ...]` of every node, as TOML.
    pub fn urls_toml(&self) -> String {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("\"redis://{}\"", n.addr))
            .collect();
        format!("[{}]", urls.join(", "))
    }

    /// Index of the node that is the master of `key`'s slot now; `None` while no live master
    /// holds it (during a failover).
    pub fn master_of(&self, key: &str) -> Option<usize> {
        let live = self
            .nodes
            .iter()
            .find(|n| n.is_running())
            .expect("a live node");
        let slot: u16 = cli(live.addr.port(), &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .expect("a slot number");
        let slots = cli(live.addr.port(), &["CLUSTER", "NODES"]);
        for line in slots.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let port: u16 = fields[1]
                .split(['@', ':'])
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            for range in &fields[8..] {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>())
                    && (lo..=hi).contains(&slot)
                {
                    return self.nodes.iter().position(|n| n.addr.port() == port);
                }
            }
        }
        None
    }
}

impl Redis {
    /// Whether the process runs (it was not killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

// === TLS ===

/// Throwaway certificates for Redis on TLS, made with rcgen: a CA, the data nodes' certificate
/// naming only `node_name` (no IP address, so a client that checks it against the address the
/// sentinels announce, 127.0.0.1, refuses it) and the sentinels' naming 127.0.0.1.
pub struct RedisTls {
    dir: tempfile::TempDir,
}

impl RedisTls {
    pub fn new(node_name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = super::Ca::new();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        for (name, san, serial) in [("node", node_name, 1), ("sentinel", "127.0.0.1", 2)] {
            let issued = ca.issue(&[san], serial);
            std::fs::write(dir.path().join(format!("{name}.crt")), &issued.cert_pem).unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), &issued.key_pem).unwrap();
        }
        Self { dir }
    }

    /// The CA's PEM file: what a client trusts (`SSL_CERT_FILE`).
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// redis-server arguments for a data node on TLS only, on `port`.
    fn node_args(&self, port: u16) -> Vec<String> {
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            self.file("node.crt"),
            "--tls-key-file".into(),
            self.file("node.key"),
            "--tls-ca-cert-file".into(),
            self.file("ca.pem"),
            "--tls-auth-clients".into(),
            "no".into(),
            "--tls-replication".into(),
            "yes".into(),
        ]
    }

    /// The listening lines of a sentinel's config on TLS only, on `port`.
    fn sentinel_conf(&self, port: u16) -> String {
        format!(
            "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\n\
             tls-ca-cert-file {}\ntls-auth-clients no\ntls-replication yes\n",
            self.file("sentinel.crt"),
            self.file("sentinel.key"),
            self.file("ca.pem"),
        )
    }

    /// `redis-cli --tls` with `args` against 127.0.0.1:`port`, trusting the CA.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let ca = self.ca_file();
        cli_with(
            &["--tls".as_ref(), "--cacert".as_ref(), ca.as_ref()],
            port,
            args,
        )
    }
}
