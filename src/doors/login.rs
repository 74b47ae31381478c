//! The native login API: `/auth/login`, `/auth/token`, `/auth/ticket`, `/auth/userinfo`, `/auth/logout`.
//!
//! It speaks restdb's auth API too: `/auth/token` exchanges an identity provider's access token
//! (`{"code"}`) through `[native] code_provider`/`code_app` as well as refreshing a session
//! (`{"refresh"}`), every session reply carrying restdb's `iat` and `exp` and the token once, named
//! as `native.token_field` says (`token` for restdb clients), and `/auth/userinfo` answers the
//! profile (`email`, `displayname`, `image`) the session carries.

use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde::Deserialize;

use super::{parse_json, read_body, rfc3339};
use crate::auth::credentials::{SESSION_COOKIE, SessionRejected};
use crate::auth::session::{Minted, SessionClaims, SessionError};
use crate::auth::{Decision, Deny, Door, Reason};
use crate::body::Body;
use crate::clock::unix_now;
use crate::config::auth::TokenField;
use crate::respond::{self, DoorError};
use crate::state::Ctx;

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
    cx: Ctx<'_>,
    action: Action,
    req: Request<Incoming>,
) -> Result<Response<Body>, DoorError> {
    match (req.method().clone(), action) {
        (Method::POST, Action::Login) => login(cx, req).await,
        (Method::POST, Action::Token) => token(cx, req).await,
        (Method::POST, Action::Ticket) => ticket(cx, &req).await,
        (Method::GET, Action::Userinfo) => userinfo(cx, &req).await,
        (Method::POST, Action::Logout) => logout(cx, &req).await,
        (_, Action::Unknown) => Err(DoorError::NotFound),
        _ => Err(DoorError::MethodNotAllowed),
    }
}

/// The answer to a login or refresh: the native fields and restdb's `iat` and `exp`, with the token
/// once, under the one name `native.token_field` chose (the cookie carries it for browsers).
/// Borrowed from the minted session, serialised once.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionBody<'a> {
    result: &'static str,
    #[serde(rename = "userID")]
    user_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_token: Option<&'a str>,
    expires_at: String,
    expiration_seconds: u64,
    client_info: &'a Option<serde_json::Value>,
    permissions: &'a crate::auth::Permissions,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    iat: u64,
    exp: u64,
}

fn session_body(minted: &Minted, field: TokenField) -> SessionBody<'_> {
    let c = &minted.claims;
    let token = Some(minted.token.as_str());
    let (session_token, token) = match field {
        TokenField::SessionToken => (token, None),
        TokenField::Token => (None, token),
    };
    SessionBody {
        result: "success",
        user_id: &c.sub,
        session_token,
        expires_at: rfc3339(c.exp),
        expiration_seconds: c.exp.saturating_sub(unix_now()),
        client_info: &c.cli,
        permissions: &c.permissions,
        token,
        iat: c.iat,
        exp: c.exp,
    }
}

/// The JSON body of a login or refresh reply, as the door writes it.
///
/// # Errors
/// A serialisation error (a bug: the body is always a JSON object).
pub(crate) fn session_reply_json(
    minted: &Minted,
    field: TokenField,
) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&session_body(minted, field))
}

/// 200 with the session, and the session cookie for browsers.
fn session_response(cx: Ctx<'_>, minted: &Minted) -> Response<Body> {
    cx.shared.metrics.auth.sessions_issued.inc();
    let field = cx.live.config.auth.token_field;
    let mut resp = respond::json(StatusCode::OK, &session_body(minted, field));
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

async fn login(cx: Ctx<'_>, req: Request<Incoming>) -> Result<Response<Body>, DoorError> {
    let (_, body) = read_body(req, cx.live.config.limits.header_read_timeout).await?;
    let login: LoginRequest = parse_json(&body)?;
    log_in(cx, &login.app_id, &login.provider, &login.token).await
}

/// A login through `provider` for `app`: a session when the provider allows.
async fn log_in(
    cx: Ctx<'_>,
    app: &str,
    provider: &str,
    token: &str,
) -> Result<Response<Body>, DoorError> {
    let live = cx.live;
    match live.auth.decide(Door::Login, app, provider, token).await? {
        Decision::Allow(allow) => {
            match shareable(cx, live.sessions.mint(&allow, app, provider)).await {
                Ok(minted) => {
                    let grant = crate::auth::grant::Grant {
                        app: app.to_owned(),
                        provider: provider.to_owned(),
                        token: token.to_owned(),
                        // The last moment any token of the session (refreshed or not) can be valid.
                        until: minted.claims.dex,
                    };
                    cx.shared
                        .remember_grant(live, &minted.claims.sid, grant)
                        .await;
                    Ok(session_response(cx, &minted))
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot mint a session");
                    Err(DoorError::Denied(Arc::new(Deny {
                        reason: Reason::InvalidCredentials,
                        description: "the login has already expired".to_owned(),
                        client_info: allow.client_info.clone(),
                    })))
                }
            }
        }
        Decision::Deny(deny) => Err(DoorError::Denied(deny)),
    }
}

/// A minted session as it may be handed out (its claim set shared first in cluster mode).
async fn shareable(
    cx: Ctx<'_>,
    minted: Result<Minted, SessionError>,
) -> Result<Minted, SessionError> {
    cx.shared.shareable(cx.live, minted?).await
}

/// The session the request carries, found by the gate on the carriers every door tries, in the
/// same order (no ticket: the login API never takes one).
async fn carried_session(
    cx: Ctx<'_>,
    req: &Request<Incoming>,
) -> Result<Arc<SessionClaims>, SessionRejected> {
    match cx
        .shared
        .gate
        .session(&cx.live.sessions, req.headers(), None)
        .await
    {
        Ok((claims, _)) => Ok(claims),
        Err(SessionRejected::Required) => Err(SessionRejected::Missing),
        Err(why) => Err(why),
    }
}

async fn token(cx: Ctx<'_>, req: Request<Incoming>) -> Result<Response<Body>, DoorError> {
    let (_, body) = read_body(req, cx.live.config.limits.header_read_timeout).await?;
    match parse_json::<TokenRequest>(&body)? {
        TokenRequest {
            refresh: Some(refresh),
            code: None,
        } => refresh_session(cx, &refresh).await,
        TokenRequest {
            refresh: None,
            code: Some(code),
        } => {
            let Some(exchange) = cx.live.config.auth.code_exchange.clone() else {
                return Err(DoorError::Malformed(
                    "code exchange is not configured (native.code_provider)",
                ));
            };
            log_in(cx, &exchange.app, &exchange.provider, &code).await
        }
        _ => Err(DoorError::Malformed("send exactly one of refresh or code")),
    }
}

async fn refresh_session(cx: Ctx<'_>, refresh: &str) -> Result<Response<Body>, DoorError> {
    let live = cx.live;
    let claims = cx.shared.gate.verify(&live.sessions, refresh).await?;
    match shareable(cx, live.sessions.refresh(&claims)).await {
        Ok(minted) => {
            cx.shared.on_refresh(live, &minted.claims);
            Ok(session_response(cx, &minted))
        }
        Err(SessionError::DecisionExpired) => Err(SessionRejected::LoginExpired.into()),
        Err(error) => {
            tracing::warn!(%error, "cannot refresh a session");
            Err(DoorError::Internal("cannot refresh"))
        }
    }
}

async fn ticket(cx: Ctx<'_>, req: &Request<Incoming>) -> Result<Response<Body>, DoorError> {
    let claims = carried_session(cx, req).await?;
    let ticket = cx.shared.issue_ticket(cx.live, claims).await;
    let expires_in = cx.live.config.auth.session.ticket_ttl.as_secs();
    Ok(respond::json(
        StatusCode::OK,
        &serde_json::json!({"result": "success", "ticket": ticket, "expiresIn": expires_in}),
    ))
}

async fn userinfo(cx: Ctx<'_>, req: &Request<Incoming>) -> Result<Response<Body>, DoorError> {
    let c = carried_session(cx, req).await?;
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

async fn logout(cx: Ctx<'_>, req: &Request<Incoming>) -> Result<Response<Body>, DoorError> {
    let shared = cx.shared;
    let c = carried_session(cx, req).await?;
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
