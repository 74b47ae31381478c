//! Revocation propagation on each Redis topology, measured end to end: a logout on replica A
//! until the close frame of the session's tunnel on replica B, and after a Sentinel failover the
//! time from the master's SIGKILL to the first logout propagated that way. A measuring harness,
//! not part of the suite: run it with
//! `cargo test --locked --test cluster_propagation -- --ignored --nocapture --test-threads 1`
//! (add `--release` for numbers without debug-build overhead). Results are in BENCHMARKS.md.

mod support;

use std::time::{Duration, Instant};

use support::fleet::Fleet;
use support::redis::{Redis, RedisCluster, SENTINEL_MASTER, SentinelSet};

/// Logouts measured per topology.
const SAMPLES: usize = 100;

/// One logout on replica 0 of a session whose tunnel is open on replica 1: the time until the
/// tunnel's 4003 close arrived, or `None` when it did not within `within`.
async fn one(f: &Fleet, user: &str, within: Duration) -> Option<Duration> {
    let token = f.login(0, user).await;
    let mut ws = f.tunnel(1, &token).await;
    let started = Instant::now();
    let (status, code) = tokio::join!(
        f.post(0, "/auth/logout", &token),
        support::ws::close_of_or_none(&mut ws, within)
    );
    assert_eq!(status.0, 200);
    (code == Some(4003)).then(|| started.elapsed())
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i]
}

async fn measure(name: &str, f: &Fleet) {
    let mut samples = Vec::with_capacity(SAMPLES);
    for n in 0..SAMPLES {
        let took = one(f, &format!("{name}-{n}"), Duration::from_secs(2))
            .await
            .unwrap_or_else(|| panic!("{name}: logout {n} never closed the other tunnel"));
        samples.push(took);
    }
    samples.sort();
    println!(
        "{name}: n={SAMPLES} p50={:.2?} p99={:.2?} max={:.2?}",
        quantile(&samples, 0.5),
        quantile(&samples, 0.99),
        samples[SAMPLES - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measuring harness; see the module docs"]
async fn revocation_propagation_per_topology() {
    let redis = Redis::start().await;
    let f = Fleet::start(2, &format!("redis_url = \"{}\"\n", redis.url())).await;
    measure("standalone", &f).await;
    drop(f);

    let set = SentinelSet::start().await;
    let f = Fleet::start(
        2,
        &format!(
            "sentinels = {}\nsentinel_master = \"{SENTINEL_MASTER}\"\n",
            set.urls_toml()
        ),
    )
    .await;
    measure("sentinel", &f).await;
    drop(f);

    let cluster = RedisCluster::start().await;
    let f = Fleet::start(2, &format!("cluster_nodes = {}\n", cluster.urls_toml())).await;
    measure("cluster", &f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measuring harness; see the module docs"]
async fn sentinel_master_death_to_first_propagated_revocation() {
    let mut set = SentinelSet::start().await;
    let f = Fleet::start(
        2,
        &format!(
            "sentinels = {}\nsentinel_master = \"{SENTINEL_MASTER}\"\n",
            set.urls_toml()
        ),
    )
    .await;
    assert!(one(&f, "warm", Duration::from_secs(2)).await.is_some());
    set.master.kill();
    let killed = Instant::now();
    let mut promoted = None;
    let mut n = 0;
    loop {
        n += 1;
        if promoted.is_none() && set.master_port() == Some(set.replica.addr.port()) {
            promoted = Some(killed.elapsed());
        }
        if one(&f, &format!("after-{n}"), Duration::from_millis(200))
            .await
            .is_some()
        {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "no revocation propagated within 60 s of the master's death"
        );
    }
    println!(
        "sentinel failover: promotion seen after {:.2?}; first propagated revocation {:.2?} after the SIGKILL ({n} attempts)",
        promoted.unwrap_or_default(),
        killed.elapsed()
    );
}
