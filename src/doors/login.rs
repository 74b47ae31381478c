//! The native login API: `/auth/login`, `/auth/token`, `/auth/ticket`, `/auth/userinfo`, `/auth/logout`.
//!
//! It speaks restdb's auth API too: `/auth/token` exchanges an identity provider's access token
//! (`{"code"}`) through `[native] code_provider`/`code_app` as well as refreshing a session
//! (`{"refresh"}`), both answering restdb's `token`, `iat` and `exp` beside the native fields, and
//! `/auth/userinfo` answers the profile (`email`, `displayname`, `image`) the session carries.

use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde::Deserialize;

use super::{parse_json, read_body, rfc3339};
use crate::auth::credentials::{self, SESSION_COOKIE, SessionRejected};
use crate::auth::session::{Minted, SessionClaims, SessionError};
use crate::auth::{Decision, Deny, Door, Reason};
use crate::body::Body;
use crate::clock::unix_now;
use crate::respond::{self, DoorError};
use crate::state::Shared;

/// The login API's action: the path after `/auth/`, parsed once by the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// `/auth/login`
    Login,
    /// `/auth/token`
    Token,
    /// `/auth/ticket`
    Ticket,
    /// `/auth/userinfo`
    Userinfo,
    /// `/auth/logout`
    Logout,
    /// Anything else under `/auth/`.
    Unknown,
}

impl Action {
    /// The action named by `what`, the path after `/auth/`.
    pub(crate) fn parse(what: &str) -> Self {
        match what {
            "login" => Self::Login,
            "token" => Self::Token,
            "ticket" => Self::Ticket,
            "userinfo" => Self::Userinfo,
            "logout" => Self::Logout,
            _ => Self::Unknown,
        }
    }
}

#[derive(Deserialize)]
struct LoginRequest {
    #[serde(rename = "appID")]
    app_id: String,
    provider: String,
    token: String,
}

/// `POST /auth/token`: exactly one of `refresh` (a session token) and `code` (an identity
/// provider's access token).
#[derive(Deserialize)]
struct TokenRequest {
    refresh: Option<String>,
    code: Option<String>,
}

/// Answers one request on `/auth/<action>`.
///
/// # Errors
/// The [`DoorError`] the request is refused with.
pub(crate) async fn handle(
    shared: &Shared,
    action: Action,
    req: Request<Incoming>,
) -> Result<Response<Body>, DoorError> {
    match (req.method().clone(), action) {
        (Method::POST, Action::Login) => login(shared, req).await,
        (Method::POST, Action::Token) => token(shared, req).await,
        (Method::POST, Action::Ticket) => ticket(shared, &req).await,
        (Method::GET, Action::Userinfo) => userinfo(shared, &req),
        (Method::POST, Action::Logout) => logout(shared, &req),
        (_, Action::Unknown) => Err(DoorError::NotFound),
        _ => Err(DoorError::MethodNotAllowed),
    }
}

/// The answer to a login or refresh: the native fields, and restdb's names for the same token and
/// its lifetime. Borrowed from the minted session, serialised once.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionBody<'a> {
    result: &'static str,
    #[serde(rename = "userID")]
    user_id: &'a str,
    session_token: &'a str,
    expires_at: String,
    expiration_seconds: u64,
    client_info: &'a Option<serde_json::Value>,
    permissions: &'a crate::auth::Permissions,
    token: &'a str,
    iat: u64,
    exp: u64,
}

fn session_body(minted: &Minted) -> SessionBody<'_> {
    let c = &minted.claims;
    SessionBody {
        result: "success",
        user_id: &c.sub,
        session_token: &minted.token,
        expires_at: rfc3339(c.exp),
        expiration_seconds: c.exp.saturating_sub(unix_now()),
        client_info: &c.cli,
        permissions: &c.permissions,
        token: &minted.token,
        iat: c.iat,
        exp: c.exp,
    }
}

/// 200 with the session, and the session cookie for browsers.
fn session_response(shared: &Shared, minted: &Minted) -> Response<Body> {
    shared.metrics.auth.sessions_issued.inc();
    let mut resp = respond::json(StatusCode::OK, &session_body(minted));
    let max_age = minted.claims.exp.saturating_sub(unix_now());
    let cookie = format!(
        "{}={}; Path=/; Max-Age={max_age}; Secure; HttpOnly; SameSite=Strict",
        SESSION_COOKIE, minted.token
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn login(shared: &Shared, req: Request<Incoming>) -> Result<Response<Body>, DoorError> {
    let (_, body) = read_body(req, shared.config.load().limits.header_read_timeout).await?;
    let login: LoginRequest = parse_json(&body)?;
    log_in(shared, &login.app_id, &login.provider, &login.token).await
}

/// A login through `provider` for `app`: a session when the provider allows.
async fn log_in(
    shared: &Shared,
    app: &str,
    provider: &str,
    token: &str,
) -> Result<Response<Body>, DoorError> {
    match shared
        .auth
        .load_full()
        .decide(Door::Login, app, provider, token)
        .await?
    {
        Decision::Allow(allow) => match shared.sessions.load().mint(&allow, app, provider) {
            Ok(minted) => {
                let grant = crate::auth::grant::Grant {
                    app: app.to_owned(),
                    provider: provider.to_owned(),
                    token: token.to_owned(),
                    // The last moment any token of the session (refreshed or not) can be valid.
                    until: minted.claims.dex,
                };
                shared.remember_grant(&minted.claims.sid, grant).await;
                Ok(session_response(shared, &minted))
            }
            Err(error) => {
                tracing::warn!(%error, "cannot mint a session");
                Err(DoorError::Denied(Arc::new(Deny {
                    reason: Reason::InvalidCredentials,
                    description: "the login has already expired".to_owned(),
                    client_info: allow.client_info.clone(),
                })))
            }
        },
        Decision::Deny(deny) => Err(DoorError::Denied(deny)),
    }
}

/// The session behind the request's bearer token or session cookie.
fn bearer_session(
    shared: &Shared,
    req: &Request<Incoming>,
) -> Result<Arc<SessionClaims>, SessionRejected> {
    let token = credentials::session_token(req.headers()).ok_or(SessionRejected::Missing)?;
    shared.verify_session(token)
}

async fn token(shared: &Shared, req: Request<Incoming>) -> Result<Response<Body>, DoorError> {
    let (_, body) = read_body(req, shared.config.load().limits.header_read_timeout).await?;
    match parse_json::<TokenRequest>(&body)? {
        TokenRequest {
            refresh: Some(refresh),
            code: None,
        } => refresh_session(shared, &refresh),
        TokenRequest {
            refresh: None,
            code: Some(code),
        } => {
            let Some(exchange) = shared.config.load().auth.code_exchange.clone() else {
                return Err(DoorError::Malformed(
                    "code exchange is not configured (native.code_provider)",
                ));
            };
            log_in(shared, &exchange.app, &exchange.provider, &code).await
        }
        _ => Err(DoorError::Malformed("send exactly one of refresh or code")),
    }
}

fn refresh_session(shared: &Shared, refresh: &str) -> Result<Response<Body>, DoorError> {
    let claims = shared.verify_session(refresh)?;
    match shared.sessions.load().refresh(&claims) {
        Ok(minted) => {
            shared.on_refresh(&minted.claims);
            Ok(session_response(shared, &minted))
        }
        Err(SessionError::DecisionExpired) => Err(SessionRejected::LoginExpired.into()),
        Err(error) => {
            tracing::warn!(%error, "cannot refresh a session");
            Err(DoorError::Internal("cannot refresh"))
        }
    }
}

async fn ticket(shared: &Shared, req: &Request<Incoming>) -> Result<Response<Body>, DoorError> {
    let claims = bearer_session(shared, req)?;
    let ticket = shared.issue_ticket(claims).await;
    Ok(respond::json(
        StatusCode::OK,
        &serde_json::json!({"result": "success", "ticket": ticket, "expiresIn": shared.ticket_ttl_seconds()}),
    ))
}

fn userinfo(shared: &Shared, req: &Request<Incoming>) -> Result<Response<Body>, DoorError> {
    let c = bearer_session(shared, req)?;
    let mut body = serde_json::json!({
        "userID": c.sub,
        "app": c.app,
        "provider": c.prv,
        "permissions": c.permissions,
        "clientInfo": c.cli,
        "expiresAt": rfc3339(c.exp),
    });
    // restdb's profile, from the session (the provider is not asked again); known fields only.
    if let (Some(profile), Some(fields)) = (&c.pro, body.as_object_mut()) {
        for (key, value) in [
            ("email", &profile.email),
            ("displayname", &profile.displayname),
            ("image", &profile.image),
        ] {
            if let Some(v) = value {
                fields.insert(key.to_owned(), serde_json::Value::from(v.as_str()));
            }
        }
    }
    Ok(respond::json(StatusCode::OK, &body))
}

fn logout(shared: &Shared, req: &Request<Incoming>) -> Result<Response<Body>, DoorError> {
    let c = bearer_session(shared, req)?;
    // Any token of the session may log it out, and the whole session goes.
    shared.revoke_session(&c);
    shared.audit.emit(&crate::audit::Event::Logout {
        user: &c.sub,
        sid_hash: crate::audit::sid_hash(&c.sid),
        client_ip: crate::audit::client_ip(),
    });
    let mut resp = respond::json(StatusCode::OK, &serde_json::json!({"result": "success"}));
    let clear = format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict");
    if let Ok(v) = HeaderValue::from_str(&clear) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}
