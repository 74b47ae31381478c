//! The restdb-style auth API: `POST /auth/token {"code"}` exchanges an identity provider's access
//! token for a session through `[native] code_provider`/`code_app`; with `native.token_field =
//! "token"` the token replies carry restdb's `token`, `iat` and `exp`; `GET /auth/userinfo` answers the profile (`email`,
//! `displayname`, `image`) from jwt claims or a webhook's `userInfo`, carried in the session.
//! Against a real gateway, a real JWKS-backed jwt provider and a real webhook.

mod support;

use serde_json::{Value, json};
use support::client::{self, HttpsClient};
use support::tokens::{ISSUER, Issuer};
use support::{Gateway, Reply, Upstream, Webhook, get_bearer, post_bearer, post_json};

const AUDIENCE: &str = "restdb-app";

fn jwt_provider(issuer: &Issuer, name: &str, extra: &str) -> String {
    format!(
        r#"
[providers.{name}]
kind = "jwt"
issuer = "{ISSUER}"
audiences = ["{AUDIENCE}"]
jwks_url = "{jwks}"
algorithms = ["ES256"]
{extra}
"#,
        jwks = issuer.jwks_url(),
    )
}

struct Client {
    http: HttpsClient,
    gw: Gateway,
    _up: Upstream,
}

impl Client {
    async fn start(config: &str) -> Self {
        let up = Upstream::start().await;
        let gw = Gateway::builder(up.url())
            .rate_limit_off()
            .extra(config)
            .spawn()
            .await;
        Self {
            http: client::https(&gw.ca.pem(), false),
            gw,
            _up: up,
        }
    }

    async fn token(&self, body: Value) -> (u16, Value) {
        let (status, _, body) =
            post_json(&self.http, &self.gw.url("/auth/token"), &body, None).await;
        (status, body)
    }

    async fn userinfo(&self, token: &str) -> (u16, Value) {
        let (status, _, body) = get_bearer(&self.http, &self.gw.url("/auth/userinfo"), token).await;
        (status, body)
    }

    async fn logout(&self, token: &str) -> (u16, Value) {
        let (status, _, body) = post_bearer(&self.http, &self.gw.url("/auth/logout"), token).await;
        (status, body)
    }
}

/// The restdb reply (`native.token_field = "token"`): `token`, `iat`, `exp`, beside the native
/// fields, consistent with each other, and the token carried once.
fn assert_restdb_token(body: &Value) -> String {
    assert_eq!(body["result"], "success", "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    assert!(
        body.get("sessionToken").is_none(),
        "the token is carried once: {body}"
    );
    let (iat, exp) = (body["iat"].as_u64().unwrap(), body["exp"].as_u64().unwrap());
    assert!(exp > iat, "{body}");
    let seconds = body["expirationSeconds"].as_u64().unwrap();
    assert!(seconds.abs_diff(exp - iat) <= 1, "{body}");
    token
}

fn failure(status: u16, body: &Value, reason: &str) {
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["result"], "failure", "{body}");
    assert_eq!(body["reason"], reason, "{body}");
}

#[tokio::test]
async fn restdb_client_flow_code_token_userinfo_refresh_logout() {
    let issuer = Issuer::start().await;
    let c = Client::start(&format!(
        "{}\n[native]\ntoken_field = \"token\"\ncode_provider = \"auth0\"\ncode_app = \"todo\"\n",
        jwt_provider(&issuer, "auth0", "")
    ))
    .await;
    let mut claims = issuer.claims("auth0|alice", AUDIENCE);
    claims["email"] = json!("alice@example.com");
    claims["name"] = json!("Alice Liddell");
    claims["picture"] = json!("https://img.example/alice.png");
    let code = issuer.mint(&claims);

    let (status, body) = c.token(json!({"code": code})).await;
    assert_eq!(status, 200, "{body}");
    let token = assert_restdb_token(&body);
    assert_eq!(body["userID"], "auth0|alice");

    let (status, info) = c.userinfo(&token).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["userID"], "auth0|alice");
    assert_eq!(info["app"], "todo");
    assert_eq!(info["provider"], "auth0");
    assert_eq!(info["email"], "alice@example.com");
    assert_eq!(info["displayname"], "Alice Liddell");
    assert_eq!(info["image"], "https://img.example/alice.png");

    let (status, body) = c.token(json!({"refresh": token})).await;
    assert_eq!(status, 200, "{body}");
    let refreshed = assert_restdb_token(&body);
    let (status, info) = c.userinfo(&refreshed).await;
    assert_eq!(status, 200);
    assert_eq!(
        info["email"], "alice@example.com",
        "the profile rides in the session"
    );

    let (status, body) = c.logout(&refreshed).await;
    assert_eq!((status, body), (200, json!({"result": "success"})));
    for t in [&token, &refreshed] {
        let (status, body) = c.userinfo(t).await;
        failure(status, &body, "InvalidToken");
        let (status, body) = c.token(json!({"refresh": t})).await;
        failure(status, &body, "InvalidToken");
    }
}

#[tokio::test]
async fn code_the_provider_rejects_gets_401_in_the_failure_shape() {
    let issuer = Issuer::start().await;
    let c = Client::start(&format!(
        "{}\n[native]\ntoken_field = \"token\"\ncode_provider = \"auth0\"\ncode_app = \"todo\"\n",
        jwt_provider(&issuer, "auth0", "")
    ))
    .await;
    let mut expired = issuer.claims("bob", AUDIENCE);
    expired["exp"] = json!(expired["iat"].as_u64().unwrap() - 3600);
    for code in [
        issuer.mint(&expired),
        issuer.mint(&issuer.claims("bob", "another-audience")),
        "not-a-jwt".to_owned(),
    ] {
        let (status, body) = c.token(json!({"code": code})).await;
        failure(status, &body, "InvalidCredentials");
        assert!(body.get("token").is_none(), "{body}");
    }
}

#[tokio::test]
async fn token_request_needs_exactly_one_of_code_and_refresh() {
    let c = Client::start("").await;
    for body in [json!({}), json!({"code": "a", "refresh": "b"})] {
        let (status, reply) = c.token(body.clone()).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert_eq!(reply["result"], "failure");
        assert_eq!(reply["reason"], "MalformedRequest");
    }
    let (status, reply) = c.token(json!({"code": "anything"})).await;
    assert_eq!(status, 400, "no exchange provider configured: {reply}");
    assert_eq!(reply["reason"], "MalformedRequest");
    assert!(
        reply["description"]
            .as_str()
            .unwrap()
            .contains("native.code_provider"),
        "{reply}"
    );
}

#[tokio::test]
async fn jwt_profile_claims_follow_the_configured_mapping() {
    let issuer = Issuer::start().await;
    let c = Client::start(&format!(
        "{}\n[native]\ntoken_field = \"token\"\ncode_provider = \"oidc\"\ncode_app = \"todo\"\n",
        jwt_provider(
            &issuer,
            "oidc",
            "[providers.oidc.profile_claims]\nemail = \"mail\"\ndisplayname = \"nickname\"\nimage = \"\"\n"
        )
    ))
    .await;
    let mut claims = issuer.claims("carol", AUDIENCE);
    claims["mail"] = json!("carol@example.com");
    claims["email"] = json!("not-this@example.com");
    claims["nickname"] = json!("Caz");
    claims["picture"] = json!("https://img.example/c.png");
    let (status, body) = c.token(json!({"code": issuer.mint(&claims)})).await;
    assert_eq!(status, 200, "{body}");
    let (_, info) = c.userinfo(body["token"].as_str().unwrap()).await;
    assert_eq!(info["email"], "carol@example.com");
    assert_eq!(info["displayname"], "Caz");
    assert!(
        info.get("image").is_none(),
        "an empty mapping reads nothing: {info}"
    );

    // A token without the claims: no profile fields at all.
    let (status, body) = c
        .token(json!({"code": issuer.mint(&issuer.claims("dan", AUDIENCE))}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, info) = c.userinfo(body["token"].as_str().unwrap()).await;
    for field in ["email", "displayname", "image"] {
        assert!(info.get(field).is_none(), "{field}: {info}");
    }
}

#[tokio::test]
async fn webhook_user_info_becomes_the_profile_for_login_and_code() {
    let hook = Webhook::start(|req| {
        let token = req["token"].as_str().unwrap_or_default().to_owned();
        let Reply {
            status,
            body,
            delay,
        } = Reply::allow("erin", 600);
        let mut reply: Value = serde_json::from_slice(&body).unwrap();
        if token == "with-profile" {
            reply["userInfo"] = json!({
                "email": "erin@example.com",
                "displayname": "Erin",
                "image": "https://img.example/erin.png",
                "ignored": 1
            });
        } else if token == "odd-profile" {
            reply["userInfo"] = json!("not an object");
        }
        Reply {
            status,
            body: reply.to_string().into(),
            delay,
        }
    })
    .await;
    let c = Client::start(&format!(
        "[providers.hook]\nkind = \"webhook\"\nurl = \"{}\"\n[native]\ntoken_field = \"token\"\ncode_provider = \"hook\"\ncode_app = \"todo\"\n",
        hook.url()
    ))
    .await;
    let login = support::login(&c.gw, "todo", "hook", "with-profile").await;
    assert_eq!(login.status, 200, "{}", login.body);
    let (_, info) = c.userinfo(&assert_restdb_token(&login.body)).await;
    assert_eq!(info["email"], "erin@example.com");
    assert_eq!(info["displayname"], "Erin");
    assert_eq!(info["image"], "https://img.example/erin.png");
    assert!(info.get("ignored").is_none());
    assert_eq!(
        info["clientInfo"]["greeting"], "hello erin",
        "the contract's fields keep their meaning"
    );

    let (status, body) = c.token(json!({"code": "with-profile"})).await;
    assert_eq!(status, 200, "{body}");
    assert_restdb_token(&body);
    let (_, info) = c.userinfo(body["token"].as_str().unwrap()).await;
    assert_eq!(info["email"], "erin@example.com");

    let (status, body) = c.token(json!({"code": "odd-profile"})).await;
    assert_eq!(
        status, 200,
        "a malformed userInfo is ignored, the login stands: {body}"
    );
    let (_, info) = c.userinfo(body["token"].as_str().unwrap()).await;
    assert!(info.get("email").is_none(), "{info}");
}
