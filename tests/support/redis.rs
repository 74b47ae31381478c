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

// === Sentinel and Redis Cluster topologies ===

/// The master name the test sentinels watch.
pub const SENTINEL_MASTER: &str = "mymaster";

/// Runs `redis-cli` with `args` against 127.0.0.1:`port`; its standard output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
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
        // No diskless-sync delay: the replica is in sync (listed by ROLE) within a moment.
        let master = Redis::start_with(&["--repl-diskless-sync-delay", "0"]).await;
        let port = master.addr.port().to_string();
        let replica = Redis::start_with(&["--replicaof", "127.0.0.1", &port]).await;
        let dir = tempfile::tempdir().unwrap();
        let mut sentinels = Vec::new();
        for i in 0..3 {
            sentinels.push(start_sentinel(dir.path(), i, master.addr.port()).await);
        }
        let set = Self {
            master,
            replica,
            sentinels,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = set.sentinels.iter().all(|(addr, _)| {
                let master = cli(addr.port(), &["SENTINEL", "master", SENTINEL_MASTER]);
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
            let synced =
                cli(set.master.addr.port(), &["INFO", "replication"]).contains("state=online");
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

    /// `[redis://127.0.0.1:<port>, ...]` of the sentinels, as TOML.
    pub fn urls_toml(&self) -> String {
        let urls: Vec<String> = self
            .sentinels
            .iter()
            .map(|(addr, _)| format!("\"redis://{addr}\""))
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
            let out = cli(
                addr.port(),
                &["SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER],
            );
            out.lines().nth(1).and_then(|p| p.trim().parse().ok())
        })
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
async fn start_sentinel(dir: &Path, i: usize, master_port: u16) -> (SocketAddr, Child) {
    for _ in 0..START_ATTEMPTS {
        let addr = free_port();
        let conf = dir.join(format!("sentinel-{i}.conf"));
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\n\
                 dir {dir:?}\nloglevel warning\n\
                 sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                 sentinel failover-timeout {SENTINEL_MASTER} 2000\n\
                 sentinel parallel-syncs {SENTINEL_MASTER} 1\n",
                port = addr.port(),
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
