//! The login rate limit in cluster mode is shared through Redis: one client alternating between
//! two replicas gets the configured rate, not twice it; with Redis gone each replica's own
//! limiter takes over. Against a real `redis-server`.

mod support;

use support::fleet::Fleet;
use support::redis::Redis;

const LIMIT: &str = "[rate_limit]\nper_second = 1\nburst = 4";

/// Ten quick logins from one client, alternating between the two replicas: how many got 429.
async fn refused_of_ten(f: &Fleet) -> usize {
    let mut refused = 0;
    for n in 0..10 {
        let status = f.login_status(n % 2, "ada").await;
        assert!(status == 200 || status == 429, "login answered {status}");
        refused += usize::from(status == 429);
    }
    refused
}

#[tokio::test]
async fn login_limit_is_shared_by_replicas_and_falls_back_locally_without_redis() {
    let mut redis = Redis::start().await;
    let f = Fleet::start_limited(2, &format!("redis_url = \"{}\"\n", redis.url()), LIMIT).await;
    let refused = refused_of_ten(&f).await;
    // Two separate limiters would admit 4 each (8 of 10); a shared one admits about 4.
    assert!(
        refused >= 4,
        "only {refused} of 10 alternating logins were refused: the replicas count separately"
    );

    redis.kill();
    for i in 0..2 {
        assert_eventually!(
            !f.cluster_up(i).await,
            "replica {i} never noticed Redis leave"
        );
    }
    // Each replica's own limiter still refuses past its burst: never unlimited.
    let mut refused = 0;
    for n in 0..14 {
        refused += usize::from(f.login_status(n % 2, "ada").await == 429);
    }
    assert!(
        refused >= 2,
        "no local limit while Redis was away: {refused} refused"
    );
}

#[tokio::test]
async fn login_limit_without_redis_is_local_and_logged_once() {
    let hook = support::Webhook::users(3600).await;
    let up = support::Upstream::start().await;
    let gw = support::process::Running::start_with(
        support::Gateway::builder(up.url())
            .demo_provider(&hook)
            .extra(LIMIT)
            .extra(&support::shared_session_table())
            .extra(&format!(
                "[cluster]\nredis_url = \"{}\"\ncommand_timeout_ms = 200",
                Redis::dead_url()
            )),
        &[],
    );
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(support::login(&gw, "app", "demo", "ada-token").await.status);
    }
    // The local limiter took over: the burst of 4 passes, the rest is refused.
    assert_eq!(&statuses[..4], &[200; 4], "{statuses:?}");
    assert!(statuses[4..].contains(&429), "{statuses:?}");
    let said = |logs: &str| {
        logs.lines()
            .filter(|l| l.contains("login rate limits are counted per replica"))
            .count()
    };
    assert_eventually!(
        said(&gw.logs()) >= 1,
        "no log line says the limit fell back: {}",
        gw.logs()
    );
    assert_eq!(
        said(&gw.logs()),
        1,
        "the fallback was logged more than once per outage"
    );
}
