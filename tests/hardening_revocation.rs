//! Revocation covers the whole session: whichever token of a session is logged out (or revoked
//! by sid or by user on the admin port), every token of it, on every route and carrier, answers
//! 401 until the last of them could have expired. Real TLS, a real provider webhook, a real
//! websocket stand-in.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::ws::{close_code, raw_handshake, read_exact};
use support::{Gateway, Upstream, Webhook, client, get_bearer, post_bearer};
use tokio::io::AsyncReadExt;

/// Short sessions (so "past the old token's exp" comes soon), a decision that lasts an hour.
const MAX_TTL: u64 = 5;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Waits on the wall clock until Unix second `t` has begun (polling, with a deadline).
async fn until_unix(t: u64) {
    assert_eventually!(unix_now() >= t, "the clock never reached {t}");
}

fn claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap()
}

fn exp(token: &str) -> u64 {
    claims(token)["exp"].as_u64().unwrap()
}

struct Bed {
    hook: Webhook,
    up: Upstream,
    gw: Gateway,
    http: client::HttpsClient,
}

async fn bed() -> Bed {
    let hook = Webhook::users(3600).await;
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url())
        .demo_provider(&hook)
        .extra(&format!("[session]\nmax_ttl_seconds = {MAX_TTL}"))
        .spawn()
        .await;
    let http = client::https(&gw.ca.pem(), false);
    Bed { hook, up, gw, http }
}

impl Bed {
    async fn login(&self, user: &str) -> String {
        support::login(&self.gw, "app", "demo", &format!("{user}-token"))
            .await
            .session()
    }

    async fn refresh(&self, token: &str) -> (u16, serde_json::Value) {
        let (status, _, body) = support::refresh(&self.http, &self.gw, token).await;
        (status, body)
    }

    async fn refreshed(&self, token: &str) -> String {
        let (status, body) = self.refresh(token).await;
        assert_eq!(status, 200, "{body}");
        let new = body["sessionToken"].as_str().unwrap().to_owned();
        assert_eq!(claims(&new)["sid"], claims(token)["sid"]);
        new
    }

    async fn ticket(&self, token: &str) -> String {
        let (status, _, body) = post_bearer(&self.http, &self.gw.url("/auth/ticket"), token).await;
        assert_eq!(status, 200, "{body}");
        body["ticket"].as_str().unwrap().to_owned()
    }

    async fn logout(&self, token: &str) -> u16 {
        post_bearer(&self.http, &self.gw.url("/auth/logout"), token)
            .await
            .0
    }

    /// `POST /sessions/revoke` on the admin port; the JSON answer.
    async fn admin_revoke(&self, body: serde_json::Value) -> serde_json::Value {
        let admin =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let req = http::Request::post(format!("http://{}/sessions/revoke", self.gw.admin_addr))
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .unwrap();
        let resp = admin.request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        client::json(resp).await
    }

    /// A websocket handshake on the sync path: its status and, for a refusal, its JSON body.
    async fn upgrade(&self, path: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let (mut tls, status, head) =
            raw_handshake(self.gw.addr, &self.gw.ca.pem(), path, headers).await;
        if status == 101 {
            return (status, serde_json::Value::Null);
        }
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let body = if len > 0 {
            read_exact(&mut tls, len).await
        } else {
            Vec::new()
        };
        (
            status,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Every route and carrier refuses `token` (and the ticket minted earlier) because the
    /// session is revoked, not because something expired; the sync server sees no upgrade.
    async fn refused_everywhere(&self, token: &str, ticket: &str, case: &str) {
        assert!(
            unix_now() <= exp(token),
            "{case}: inconclusive, the token had expired before the checks began"
        );
        let hits = self.up.hits();
        let revoked = |what: &str, status: u16, body: &serde_json::Value| {
            assert_eq!(status, 401, "{case}: {what} answered {status} {body}");
            assert_eq!(body["reason"], "InvalidToken", "{case}: {what} {body}");
        };
        // Refused, and for the revocation itself.
        let said_revoked = |what: &str, (status, body): (u16, serde_json::Value)| {
            revoked(what, status, &body);
            assert_eq!(
                body["description"], "session revoked",
                "{case}: {what} refused for another reason"
            );
        };
        let without_headers =
            |(status, _, body): (u16, http::HeaderMap, serde_json::Value)| (status, body);

        let (http, gw) = (&self.http, &self.gw);
        for (what, answer) in [
            (
                "userinfo",
                without_headers(get_bearer(http, &gw.url("/auth/userinfo"), token).await),
            ),
            ("refresh", self.refresh(token).await),
            (
                "ticket",
                without_headers(post_bearer(http, &gw.url("/auth/ticket"), token).await),
            ),
            (
                "logout",
                without_headers(post_bearer(http, &gw.url("/auth/logout"), token).await),
            ),
        ] {
            said_revoked(what, answer);
        }

        let bearer = format!("Bearer {token}");
        let protocol = format!("drawbridge.bearer.{token}");
        let cookie = format!("theme=dark; drawbridge_session={token}");
        for (carrier, headers) in [
            ("bearer", vec![("authorization", bearer.as_str())]),
            (
                "protocol",
                vec![("sec-websocket-protocol", protocol.as_str())],
            ),
            ("cookie", vec![("cookie", cookie.as_str())]),
        ] {
            said_revoked(carrier, self.upgrade("/sync/room", &headers).await);
        }
        let (status, body) = self
            .upgrade(&format!("/sync/room?ticket={ticket}"), &[])
            .await;
        revoked("ticket minted before the revocation", status, &body);

        assert!(
            unix_now() <= exp(token),
            "{case}: inconclusive, the checks ran past the token's exp ({})",
            exp(token)
        );
        assert_eq!(
            self.up.hits(),
            hits,
            "{case}: an upgrade reached the sync server"
        );
    }
}

#[tokio::test]
async fn logout_with_an_older_token_revokes_the_refreshed_one_past_the_old_expiry() {
    let bed = bed().await;
    let old = bed.login("alice").await;
    let login_at = claims(&old)["iat"].as_u64().unwrap();
    // Refresh late in the old token's life, so the refreshed one outlives it by seconds.
    until_unix(login_at + MAX_TTL - 2).await;
    let new = bed.refreshed(&old).await;
    assert!(
        exp(&new) >= exp(&old) + 2,
        "old {} new {}",
        exp(&old),
        exp(&new)
    );
    let ticket = bed.ticket(&new).await;
    // A tunnel opened with the refreshed token closes when the old token logs out.
    let bearer = format!("Bearer {new}");
    let (mut tunnel, status, head) = raw_handshake(
        bed.gw.addr,
        &bed.gw.ca.pem(),
        "/sync/open",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(status, 101, "{head}");
    let (status, _, _) = get_bearer(&bed.http, &bed.gw.url("/auth/userinfo"), &new).await;
    assert_eq!(status, 200);

    assert_eq!(bed.logout(&old).await, 200, "the old token was still valid");
    let closing = tokio::time::timeout(Duration::from_secs(5), async {
        let mut first = [0u8; 4];
        tunnel.read_exact(&mut first).await.map(|_| first)
    })
    .await
    .expect("the tunnel was not closed")
    .unwrap();
    assert_eq!(close_code(&closing), Some(4003));

    // Past the old token's expiry, the refreshed token is still refused everywhere.
    until_unix(exp(&old) + 1).await;
    bed.refused_everywhere(&new, &ticket, "logout with the old token")
        .await;
    assert_eq!(bed.hook.calls(), 1);
}

#[tokio::test]
async fn admin_revoke_by_sid_refuses_every_token_of_the_session() {
    let bed = bed().await;
    let old = bed.login("bob").await;
    let new = bed.refreshed(&old).await;
    let ticket_old = bed.ticket(&old).await;
    let ticket_new = bed.ticket(&new).await;
    let sid = claims(&old)["sid"].as_str().unwrap().to_owned();
    let answer = bed.admin_revoke(serde_json::json!({ "sid": sid })).await;
    assert_eq!(answer["revoked"], "sid");
    let until = answer["until"].as_u64().unwrap();
    assert!(
        until >= unix_now() + MAX_TTL && until >= exp(&new),
        "kept only until {until}"
    );
    bed.refused_everywhere(&new, &ticket_new, "admin revoke, refreshed token")
        .await;
    bed.refused_everywhere(&old, &ticket_old, "admin revoke, login token")
        .await;
    // Another session of the same user is untouched.
    let other = bed.login("bob").await;
    let (status, _, _) = get_bearer(&bed.http, &bed.gw.url("/auth/userinfo"), &other).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn user_revocation_refuses_tokens_refreshed_before_the_cutoff() {
    let bed = bed().await;
    let old = bed.login("carol").await;
    let login_at = claims(&old)["iat"].as_u64().unwrap();
    // A refresh in a later second: its iat is after the login's auth_time.
    until_unix(login_at + 1).await;
    let new = bed.refreshed(&old).await;
    let c = claims(&new);
    assert!(c["iat"].as_u64() > c["auth_time"].as_u64(), "{c}");
    let ticket = bed.ticket(&new).await;
    let answer = bed
        .admin_revoke(serde_json::json!({ "userID": "carol" }))
        .await;
    assert_eq!(answer["revoked"], "user");
    assert!(answer["until"].as_u64().unwrap() >= exp(&new));
    bed.refused_everywhere(&new, &ticket, "user revoke, refreshed token")
        .await;
    // A login after the cut-off's second begins a session the cut-off does not touch.
    until_unix(unix_now() + 1).await;
    let later = bed.login("carol").await;
    let (status, _, body) = get_bearer(&bed.http, &bed.gw.url("/auth/userinfo"), &later).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn logout_with_the_newest_token_refuses_the_older_one() {
    let bed = bed().await;
    let old = bed.login("dave").await;
    let new = bed.refreshed(&old).await;
    let ticket = bed.ticket(&old).await;
    assert_eq!(bed.logout(&new).await, 200);
    bed.refused_everywhere(&old, &ticket, "logout with the newest token")
        .await;
}
