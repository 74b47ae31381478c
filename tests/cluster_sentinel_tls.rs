//! Cluster mode through Sentinel over TLS, where the data nodes' certificates name only
//! `redis.internal` and the sentinels announce the master as 127.0.0.1 (all real `redis-server`
//! processes on TLS only, under real drawbridge processes that trust the test CA through
//! `SSL_CERT_FILE`). With `tls_server_name = "redis.internal"` the replicas share state; without
//! it, or with another name, the master's certificate is refused and the link stays down. After
//! the master is killed, the promoted replica is followed under the same name.

mod support;

use std::time::{Duration, Instant};

use support::process::Running;
use support::redis::{RedisTls, SENTINEL_MASTER, SentinelSet};
use support::{
    Gateway, Upstream, Webhook, client, get_bearer, metric, post_bearer, shared_session_table,
};

/// The only name in the data nodes' certificates.
const NODE_NAME: &str = "redis.internal";

/// Real drawbridge processes sharing one `[cluster]` table and one session key.
struct Replicas {
    procs: Vec<Running>,
    _hook: Webhook,
    _up: Upstream,
}

impl Replicas {
    /// `n` processes in front of one echo upstream, with `cluster` (besides the sentinels) in their
    /// `[cluster]` table and `set`'s CA as their only trusted root.
    async fn start(n: usize, set: &SentinelSet, cluster: &str) -> Self {
        let hook = Webhook::users(3600).await;
        let up = Upstream::start().await;
        let ca = set.tls.as_ref().expect("a TLS set").ca_file();
        let ca = ca.to_str().unwrap();
        let procs = (0..n)
            .map(|_| {
                let builder = Gateway::builder(up.url())
                    .demo_provider(&hook)
                    .extra("[rate_limit]\nenabled = false")
                    .extra(&shared_session_table())
                    .extra(&format!(
                        "[cluster]\nsentinels = {}\nsentinel_master = \"{SENTINEL_MASTER}\"\n\
                         command_timeout_ms = 1000\n{cluster}",
                        set.urls_toml()
                    ));
                Running::start_with(builder, &[("SSL_CERT_FILE", ca)])
            })
            .collect();
        Self {
            procs,
            _hook: hook,
            _up: up,
        }
    }

    async fn cluster_up(&self, i: usize) -> bool {
        let metrics = client::get_text(&format!("http://{}/metrics", self.procs[i].admin))
            .await
            .1;
        metric(&metrics, "drawbridge_cluster_up") == 1.0
    }

    async fn login(&self, i: usize, user: &str) -> String {
        support::login(&self.procs[i], "app", "demo", &format!("{user}-token"))
            .await
            .session()
    }

    async fn post(&self, i: usize, path: &str, token: &str) -> (u16, serde_json::Value) {
        let p = &self.procs[i];
        let http = client::https(&p.ca.pem(), false);
        let (status, _, body) = post_bearer(&http, &p.url(path), token).await;
        (status, body)
    }

    async fn userinfo(&self, i: usize, token: &str) -> u16 {
        let p = &self.procs[i];
        let http = client::https(&p.ca.pem(), false);
        get_bearer(&http, &p.url("/auth/userinfo"), token).await.0
    }

    /// A logout on replica 0 closes a tunnel on replica 1 with 4003, and a ticket minted on 0
    /// opens on 1 exactly once.
    async fn share_state(&self, user: &str) {
        let token = self.login(0, user).await;
        let p = &self.procs[1];
        let mut ws = support::ws::bearer_client(p.addr, &p.ca.pem(), "/sync", &token).await;
        support::ws::echo_ok(&mut ws, "tunnel open").await;
        assert_eq!(self.post(0, "/auth/logout", &token).await.0, 200);
        assert_eq!(
            support::ws::close_of(&mut ws, Duration::from_secs(1)).await,
            Some(4003),
            "the tunnel on replica 1 did not close with 4003 after a logout on replica 0"
        );

        let token = self.login(0, &format!("{user}-ticket")).await;
        let (status, body) = self.post(0, "/auth/ticket", &token).await;
        assert_eq!(status, 200, "{body}");
        let path = format!("/sync?ticket={}", body["ticket"].as_str().unwrap());
        let mut ws = support::ws::client(p.addr, &p.ca.pem(), &path, &[])
            .await
            .expect("a ticket minted on replica 0 opens on replica 1");
        support::ws::echo_ok(&mut ws, "through the ticket").await;
        for q in &self.procs {
            let again = support::ws::client(q.addr, &q.ca.pem(), &path, &[]).await;
            assert!(again.is_err(), "a used ticket opened again");
        }
    }

    /// Asserts that replica `i` says the link is down because of the master's certificate, and
    /// that it never came up.
    async fn refuses_the_master(&self, i: usize) {
        let p = &self.procs[i];
        assert_eventually!(
            p.logs()
                .lines()
                .any(|l| l.contains("cluster store unreachable")
                    && l.contains("certificate")
                    && l.contains("127.0.0.1")),
            "replica {i} never said the master's certificate was refused: {}",
            p.logs()
        );
        // Several link attempts later it is still down: it fails closed, not slowly.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            assert!(!self.cluster_up(i).await, "replica {i} reached the master");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            !p.logs().contains("cluster store reachable"),
            "replica {i} was up at some point: {}",
            p.logs()
        );
    }
}

#[tokio::test]
async fn sentinel_tls_with_server_name_shares_state_between_replicas() {
    let set = SentinelSet::start_tls(RedisTls::new(NODE_NAME)).await;
    let r = Replicas::start(2, &set, &format!("tls_server_name = \"{NODE_NAME}\"\n")).await;
    for i in 0..2 {
        assert_eventually!(
            r.cluster_up(i).await,
            "replica {i} never reached the master"
        );
    }
    r.share_state("ada").await;
}

#[tokio::test]
async fn sentinel_tls_without_server_name_fails_closed() {
    // The certificate names redis.internal; the sentinels announce 127.0.0.1.
    let set = SentinelSet::start_tls(RedisTls::new(NODE_NAME)).await;
    let r = Replicas::start(1, &set, "").await;
    r.refuses_the_master(0).await;
}

#[tokio::test]
async fn sentinel_tls_with_another_server_name_fails_closed() {
    let set = SentinelSet::start_tls(RedisTls::new(NODE_NAME)).await;
    let r = Replicas::start(1, &set, "tls_server_name = \"other.internal\"\n").await;
    r.refuses_the_master(0).await;
}

#[tokio::test]
async fn sentinel_tls_command_connection_killed_is_rebuilt() {
    // With a resync far away nothing else would use the command connection: only noticing that
    // it dropped brings the link back.
    let set = SentinelSet::start_tls(RedisTls::new(NODE_NAME)).await;
    let r = Replicas::start(
        2,
        &set,
        &format!("tls_server_name = \"{NODE_NAME}\"\nresync_interval_ms = 120000\n"),
    )
    .await;
    for i in 0..2 {
        assert_eventually!(
            r.cluster_up(i).await,
            "replica {i} never reached the master"
        );
    }
    let master = set.master.addr.port();
    // drawbridge's command connections (their IDs): plain clients that are neither a sentinel's
    // link nor this redis-cli.
    let commands = || -> Vec<String> {
        set.cli(master, &["CLIENT", "LIST", "TYPE", "normal"])
            .lines()
            .filter(|l| !l.contains("name=sentinel-") && !l.contains("cmd=client|list"))
            .filter_map(|l| {
                l.split(' ')
                    .find(|f| f.starts_with("id="))
                    .map(str::to_owned)
            })
            .collect()
    };
    assert_eventually!(
        commands().len() == 2,
        "not one command connection per replica"
    );
    let before = commands();
    let killed: usize = set
        .cli(master, &["CLIENT", "KILL", "TYPE", "normal"])
        .trim()
        .parse()
        .unwrap();
    assert!(killed >= 2, "killed {killed} connections");
    assert_eventually!(
        {
            let now = commands();
            now.len() == 2 && now.iter().all(|id| !before.contains(id))
        },
        "the replicas never opened new command connections"
    );
    r.share_state("bea").await;
}

#[tokio::test]
async fn sentinel_tls_failover_is_followed_under_the_server_name() {
    let mut set = SentinelSet::start_tls(RedisTls::new(NODE_NAME)).await;
    let r = Replicas::start(2, &set, &format!("tls_server_name = \"{NODE_NAME}\"\n")).await;
    for i in 0..2 {
        assert_eventually!(
            r.cluster_up(i).await,
            "replica {i} never reached the master"
        );
    }
    r.share_state("cy").await;

    // The master dies without a word; a logout made meanwhile waits locally.
    let during = r.login(0, "dee").await;
    assert_eq!(r.userinfo(1, &during).await, 200);
    set.master.kill();
    assert_eq!(r.post(0, "/auth/logout", &during).await.0, 200);
    set.wait_promoted().await;

    // Both replicas reach the promoted node, whose certificate also names only redis.internal.
    for i in 0..2 {
        assert_eventually!(
            r.cluster_up(i).await,
            "replica {i} never followed the new master"
        );
    }
    assert_eventually!(
        r.userinfo(1, &during).await == 401,
        "the logout made during the failover never reached replica 1"
    );
    r.share_state("eve").await;
}
