//! Cluster mode on a Redis Cluster: six real cluster-enabled `redis-server` nodes (three
//! masters, each with a replica) under three gateways. One token logged in on every replica
//! makes one provider call, a logout on one closes the others' tunnels, a ticket opens once; then
//! the master holding the revocation set is killed and the same holds once its replica took over,
//! and a purge empties the shared decisions on every master.

mod support;

use std::time::Duration;

use support::fleet::Fleet;
use support::redis::RedisCluster;

async fn shares_everything(f: &Fleet, user: &str) {
    let calls = f.hook.calls();
    let tokens: Vec<String> = {
        let mut tokens = Vec::new();
        for i in 0..3 {
            tokens.push(f.login(i, user).await);
        }
        tokens
    };
    assert_eq!(
        f.hook.calls(),
        calls + 1,
        "one token on three replicas asked the provider more than once"
    );
    let token = &tokens[0];
    let mut tunnels = vec![f.tunnel(1, token).await, f.tunnel(2, token).await];
    assert_eq!(f.post(0, "/auth/logout", token).await.0, 200);
    for ws in &mut tunnels {
        assert_eq!(
            support::ws::close_of(ws, Duration::from_secs(1)).await,
            Some(4003),
            "a logout on replica 0 did not close a tunnel elsewhere with 4003"
        );
    }
    f.ticket_opens_once(0, 1, &f.login(0, &format!("{user}-t")).await)
        .await;
}

#[tokio::test]
async fn redis_cluster_shares_state_and_follows_a_master_failover() {
    let mut cluster = RedisCluster::start().await;
    let topology = format!("cluster_nodes = {}\n", cluster.urls_toml());
    let f = Fleet::start(3, &topology).await;
    shares_everything(&f, "ada").await;

    // Kill the master holding the revocation set; its replica takes over.
    let victim = cluster
        .master_of("drawbridge:rev")
        .expect("a master holds the set");
    cluster.nodes[victim].kill();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while cluster
        .master_of("drawbridge:rev")
        .is_none_or(|master| master == victim)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the killed master's replica never took over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.wait_ok(Duration::from_secs(30)).await;
    for i in 0..3 {
        assert_eventually!(
            f.cluster_up(i).await,
            "replica {i} never followed the failover"
        );
    }
    shares_everything(&f, "bea").await;

    // A purge on one replica empties the shared level on every master: the next login asks again.
    let calls = f.hook.calls();
    for user in ["cy", "dee", "eve", "fay"] {
        f.login(0, user).await;
    }
    assert_eq!(f.hook.calls(), calls + 4);
    assert_eq!(admin_post(&f, 0, "/cache/purge").await, 200);
    // The purge answered once done (well within the command timeout for these few keys).
    for user in ["cy", "dee", "eve", "fay"] {
        f.login(2, user).await;
    }
    assert_eq!(
        f.hook.calls(),
        calls + 8,
        "a purged decision survived on some master"
    );
}

/// `POST <path>` on replica `i`'s admin port: the status.
async fn admin_post(f: &Fleet, i: usize, path: &str) -> u16 {
    let admin = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let req = http::Request::post(format!("http://{}{path}", f.gws[i].admin_addr))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    admin.request(req).await.unwrap().status().as_u16()
}
