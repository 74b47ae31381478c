//! `POST /auth/login` with a `kind = "jwt"` provider, through a real gateway, against a real
//! JWKS server: a good token logs in, a bad one is a 401 with `InvalidCredentials`.

mod support;

use serde_json::json;
use support::tokens::{ISSUER, Issuer};
use support::{Gateway, Login, Upstream, login};

const AUDIENCE: &str = "drawbridge";

async fn gateway(issuer: &Issuer) -> (Gateway, Upstream) {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url())
        .extra(&format!(
            r#"
[providers.oidc]
kind = "jwt"
issuer = "{ISSUER}"
audiences = ["{AUDIENCE}"]
jwks_url = "{jwks}"
algorithms = ["ES256"]

[providers.oidc.permissions.read.queriesByCollection]
notes = ["owner == '{{sub}}'"]
"#,
            jwks = issuer.jwks_url(),
        ))
        .spawn()
        .await;
    (gw, up)
}

#[tokio::test]
async fn login_with_valid_jwt_gets_200_and_user_id() {
    let issuer = Issuer::start().await;
    let (gw, _up) = gateway(&issuer).await;
    let token = issuer.mint(&issuer.claims("user-1", AUDIENCE));
    let Login { status, body, .. } = login(&gw, "app", "oidc", &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "success");
    assert_eq!(body["userID"], "user-1");
}

#[tokio::test]
async fn login_with_bad_jwt_gets_401_invalid_credentials() {
    let issuer = Issuer::start().await;
    let (gw, _up) = gateway(&issuer).await;
    let mut expired = issuer.claims("user-1", AUDIENCE);
    expired["exp"] = json!(expired["iat"].as_u64().unwrap() - 3600);
    let good = issuer.mint(&issuer.claims("user-1", AUDIENCE));
    let payload = good.split('.').nth(1).unwrap();
    for (what, token) in [
        (
            "wrong audience",
            issuer.mint(&issuer.claims("user-1", "someone-else")),
        ),
        ("expired", issuer.mint(&expired)),
        // eyJhbGciOiJub25lIn0 is {"alg":"none"}.
        ("alg none", format!("eyJhbGciOiJub25lIn0.{payload}.")),
        ("not a JWT", "not-a-jwt".to_owned()),
    ] {
        let Login { status, body, .. } = login(&gw, "app", "oidc", &token).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["result"], "failure", "{what}");
        assert_eq!(body["reason"], "InvalidCredentials", "{what}");
    }
}
