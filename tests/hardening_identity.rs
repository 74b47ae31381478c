//! Identity headers are injective: two different user IDs never reach the sync server (through a
//! tunnel) or an ingress (through `/auth/check`) as the same `x-drawbridge-user`, and the sync
//! server gets each ID back by percent-decoding the header.

mod support;

use std::collections::BTreeMap;

use support::webhook::Reply;
use support::ws::{RawUpstream, raw_handshake};
use support::{Gateway, Webhook, client, login};

/// User IDs that a naive encoding folds together: a control byte or DEL next to its own escape,
/// a `%` that already looks like an escape, spaces a parser would trim, tab, and `+`/space (which
/// form encoding confuses).
const IDS: &[&str] = &[
    "alice",
    "alice\u{7f}",
    "alice%7F",
    "alice%257F",
    "alice\u{1}",
    "alice%01",
    " alice",
    "alice ",
    "ali ce",
    "ali+ce",
    "ali%20ce",
    "a\tb",
    "a%09b",
    "José",
    "Jos%C3%A9",
    "50%",
];

/// A provider that allows `id-<n>` as the `n`th of [`IDS`].
async fn provider() -> Webhook {
    Webhook::start(|req: &serde_json::Value| {
        let token = req["token"].as_str().unwrap_or_default();
        match token
            .strip_prefix("id-")
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| IDS.get(n))
        {
            Some(id) => Reply::allow(id, 600),
            None => Reply::deny(serde_json::json!({})),
        }
    })
    .await
}

/// Percent-decodes a header value, as the sync server is told to.
fn decoded(v: &http::HeaderValue) -> String {
    percent_encoding::percent_decode(v.as_bytes())
        .decode_utf8()
        .expect("UTF-8 after decoding")
        .into_owned()
}

/// Checks that `seen` (ID → header) holds a different header for every ID, each decoding to it.
fn assert_injective(seen: &BTreeMap<&str, http::HeaderValue>, where_: &str) {
    let mut by_header: BTreeMap<Vec<u8>, &str> = BTreeMap::new();
    for (id, header) in seen {
        if let Some(other) = by_header.insert(header.as_bytes().to_vec(), id) {
            panic!("{where_}: {other:?} and {id:?} both became {header:?}");
        }
        assert_eq!(
            decoded(header),
            *id,
            "{where_}: {header:?} does not decode to {id:?}"
        );
        assert!(
            !header.as_bytes().starts_with(b" ") && !header.as_bytes().ends_with(b" "),
            "{where_}: {header:?} would be trimmed"
        );
    }
    assert_eq!(seen.len(), IDS.len());
}

#[tokio::test]
async fn identity_headers_with_lookalike_user_ids_stay_distinct_on_tunnels_and_checks() {
    let mut up = RawUpstream::start().await;
    let hook = provider().await;
    let gw = Gateway::builder(up.url())
        .demo_provider(&hook)
        .rate_limit_off()
        .spawn()
        .await;
    let http = client::https(&gw.ca.pem(), false);
    let mut tunnels = BTreeMap::new();
    let mut checks = BTreeMap::new();
    for (n, id) in IDS.iter().enumerate() {
        let session = login(&gw, "app", "demo", &format!("id-{n}"))
            .await
            .session();
        let bearer = format!("Bearer {session}");

        let (_tls, status, head) = raw_handshake(
            gw.addr,
            &gw.ca.pem(),
            "/sync/room",
            &[("authorization", &bearer)],
        )
        .await;
        assert_eq!(status, 101, "{id:?}: {head}");
        let tunnel = up.next().await;
        tunnels.insert(*id, tunnel.headers["x-drawbridge-user"].clone());

        let mut req = client::request("GET", &gw.url("/auth/check/sync/room"), "");
        req.headers_mut()
            .insert("authorization", bearer.parse().unwrap());
        let resp = http.request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{id:?}");
        let h = resp.headers();
        assert_eq!(h["x-drawbridge-user"], h["x-auth-request-user"]);
        checks.insert(*id, h["x-drawbridge-user"].clone());
    }
    assert_injective(&tunnels, "tunnel");
    assert_injective(&checks, "/auth/check");
    // A plain ID goes as it is.
    assert_eq!(tunnels["alice"], "alice");
    assert_eq!(tunnels["ali ce"], "ali ce");
    assert_eq!(tunnels["alice\u{7f}"], "alice%7F");
    assert_eq!(tunnels["alice%7F"], "alice%257F");
}
