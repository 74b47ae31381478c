//! Several real gateways sharing one signing key and one `[cluster]` table, as replicas behind a
//! load balancer are; the test itself plays the load balancer.

use std::time::Duration;

use super::{
    Gateway, Upstream, Webhook, client, get_bearer, login, metric, post_bearer,
    shared_session_table,
};

/// Short enough that a missed message is repaired quickly in the tests.
pub const RESYNC_MS: u64 = 500;

pub struct Fleet {
    pub hook: Webhook,
    pub up: Upstream,
    pub gws: Vec<Gateway>,
    cluster: String,
    rate_limit: String,
}

impl Fleet {
    /// `n` replicas whose `[cluster]` table holds `cluster` (the topology keys), without a login
    /// rate limit; each waited for until its link is up.
    pub async fn start(n: usize, cluster: &str) -> Self {
        Self::start_limited(n, cluster, "[rate_limit]\nenabled = false").await
    }

    /// [`Fleet::start`] with `rate_limit` as the `[rate_limit]` table.
    pub async fn start_limited(n: usize, cluster: &str, rate_limit: &str) -> Self {
        let mut fleet = Self {
            hook: Webhook::users(3600).await,
            up: Upstream::start().await,
            gws: Vec::new(),
            cluster: cluster.to_owned(),
            rate_limit: rate_limit.to_owned(),
        };
        for _ in 0..n {
            fleet.add().await;
        }
        fleet
    }

    /// One more replica, waited for until its link is up; its index.
    pub async fn add(&mut self) -> usize {
        let gw = Gateway::builder(self.up.url())
            .demo_provider(&self.hook)
            .extra(&self.rate_limit)
            .extra(&shared_session_table())
            .extra(&format!(
                "[cluster]\nresync_interval_ms = {RESYNC_MS}\ncommand_timeout_ms = 1000\n{}",
                self.cluster
            ))
            .spawn()
            .await;
        self.gws.push(gw);
        let i = self.gws.len() - 1;
        assert_eventually!(self.cluster_up(i).await, "replica {i} never reached Redis");
        i
    }

    pub async fn cluster_up(&self, i: usize) -> bool {
        metric(&self.gws[i].metrics().await, "drawbridge_cluster_up") == 1.0
    }

    /// Logs `user` in on replica `i`; the session token.
    pub async fn login(&self, i: usize, user: &str) -> String {
        login(&self.gws[i], "app", "demo", &format!("{user}-token"))
            .await
            .session()
    }

    /// `POST /auth/login` for `user` on replica `i`: the status only.
    pub async fn login_status(&self, i: usize, user: &str) -> u16 {
        login(&self.gws[i], "app", "demo", &format!("{user}-token"))
            .await
            .status
    }

    /// `GET /auth/userinfo` on replica `i`: its status.
    pub async fn userinfo(&self, i: usize, token: &str) -> u16 {
        let gw = &self.gws[i];
        let http = client::https(&gw.ca.pem(), false);
        get_bearer(&http, &gw.url("/auth/userinfo"), token).await.0
    }

    /// `POST <path>` with a bearer on replica `i`: status and JSON body.
    pub async fn post(&self, i: usize, path: &str, token: &str) -> (u16, serde_json::Value) {
        let gw = &self.gws[i];
        let http = client::https(&gw.ca.pem(), false);
        let (status, _, body) = post_bearer(&http, &gw.url(path), token).await;
        (status, body)
    }

    /// A tunnel on replica `i` for `token`, checked with one echo.
    pub async fn tunnel(&self, i: usize, token: &str) -> super::ws::Ws {
        let gw = &self.gws[i];
        let mut ws = super::ws::bearer_client(gw.addr, &gw.ca.pem(), "/sync", token).await;
        super::ws::echo_ok(&mut ws, "tunnel open").await;
        ws
    }

    /// Logs out `token` on replica `from` and asserts that `tunnel` (on another replica) closes
    /// with 4003 within a second.
    pub async fn logout_closes(&self, from: usize, token: &str, tunnel: &mut super::ws::Ws) {
        assert_eq!(self.post(from, "/auth/logout", token).await.0, 200);
        assert_eq!(
            super::ws::close_of(tunnel, Duration::from_secs(1)).await,
            Some(4003),
            "the tunnel did not close with 4003 after a logout on replica {from}"
        );
    }

    /// Mints a ticket on replica `from` for `token` and asserts it opens on `on` exactly once
    /// (a second use on any replica is refused).
    pub async fn ticket_opens_once(&self, from: usize, on: usize, token: &str) {
        let (status, body) = self.post(from, "/auth/ticket", token).await;
        assert_eq!(status, 200, "{body}");
        let ticket = body["ticket"].as_str().unwrap().to_owned();
        let path = format!("/sync?ticket={ticket}");
        let gw = &self.gws[on];
        let mut ws = super::ws::client(gw.addr, &gw.ca.pem(), &path, &[])
            .await
            .expect("the ticket opens a tunnel on another replica");
        super::ws::echo_ok(&mut ws, "through the ticket").await;
        for (i, gw) in self.gws.iter().enumerate() {
            let again = super::ws::client(gw.addr, &gw.ca.pem(), &path, &[]).await;
            assert!(again.is_err(), "a used ticket opened again on replica {i}");
        }
    }
}
