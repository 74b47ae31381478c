//! The native login API: `/auth/login`, `/auth/token`, `/auth/ticket`, `/auth/userinfo`, `/auth/logout`.

use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde::Deserialize;

use super::{bearer, parse_json, read_body, rfc3339};
use crate::auth::session::{Minted, SessionClaims, SessionError};
use crate::auth::{Decision, Door, Reason};
use crate::body::Body;
use crate::clock::unix_now;
use crate::gateway::Shared;
use crate::gateway::respond;

#[derive(Deserialize)]
struct LoginRequest {
    #[serde(rename = "appID")]
    app_id: String,
    provider: String,
    token: String,
}

#[derive(Deserialize)]
struct RefreshRequest {
    refresh: String,
}

/// Answers one request on `/auth/<what>`.
pub(crate) async fn handle(shared: &Shared, what: &str, req: Request<Incoming>) -> Response<Body> {
    match (req.method().clone(), what) {
        (Method::POST, "login") => login(shared, req).await,
        (Method::POST, "token") => refresh(shared, req).await,
        (Method::POST, "ticket") => ticket(shared, &req),
        (Method::GET, "userinfo") => userinfo(shared, &req),
        (Method::POST, "logout") => logout(shared, &req),
        (_, "login" | "token" | "ticket" | "logout" | "userinfo") => respond::failure(
            StatusCode::METHOD_NOT_ALLOWED,
            Reason::MalformedRequest,
            "method not allowed",
            None,
        ),
        _ => respond::failure(
            StatusCode::NOT_FOUND,
            Reason::MalformedRequest,
            "no such auth route",
            None,
        ),
    }
}

fn session_body(minted: &Minted) -> serde_json::Value {
    let c = &minted.claims;
    serde_json::json!({
        "result": "success",
        "userID": c.sub,
        "sessionToken": minted.token,
        "expiresAt": rfc3339(c.exp),
        "expirationSeconds": c.exp.saturating_sub(unix_now()),
        "clientInfo": c.cli,
        "permissions": c.permissions,
    })
}

/// 200 with the session, and the session cookie for browsers.
fn session_response(shared: &Shared, minted: &Minted) -> Response<Body> {
    shared.metrics.auth.sessions_issued.inc();
    let mut resp = respond::json(StatusCode::OK, &session_body(minted));
    let max_age = minted.claims.exp.saturating_sub(unix_now());
    let cookie = format!(
        "{}={}; Path=/; Max-Age={max_age}; Secure; HttpOnly; SameSite=Strict",
        super::SESSION_COOKIE,
        minted.token
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn login(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let (_, body) = match read_body(req, shared.config.load().limits.header_read_timeout).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let login: LoginRequest = match parse_json(&body) {
        Ok(l) => l,
        Err(resp) => return resp,
    };
    match shared
        .auth
        .decide(Door::Login, &login.app_id, &login.provider, &login.token)
        .await
    {
        Ok(Decision::Allow(allow)) => {
            match shared.sessions.mint(&allow, &login.app_id, &login.provider) {
                Ok(minted) => session_response(shared, &minted),
                Err(error) => {
                    tracing::warn!(%error, "cannot mint a session");
                    respond::failure(
                        StatusCode::UNAUTHORIZED,
                        Reason::InvalidCredentials,
                        "the login has already expired",
                        allow.client_info.as_ref(),
                    )
                }
            }
        }
        Ok(Decision::Deny(deny)) => respond::denied(&deny),
        Err(error) => respond::provider_error(&error),
    }
}

/// Verifies a session token and checks the revocation list.
pub(crate) fn verify_session(
    shared: &Shared,
    token: &str,
) -> Result<Arc<SessionClaims>, Response<Body>> {
    match shared.sessions.verify(token) {
        Ok(claims) if shared.revocations.is_revoked(&claims) => {
            Err(respond::invalid_token("session revoked"))
        }
        Ok(claims) => Ok(Arc::new(claims)),
        Err(SessionError::Expired) => Err(respond::invalid_token("session expired")),
        Err(_) => Err(respond::invalid_token("session token invalid")),
    }
}

fn bearer_session(
    shared: &Shared,
    req: &Request<Incoming>,
) -> Result<Arc<SessionClaims>, Response<Body>> {
    match bearer(req.headers()) {
        Some(token) => verify_session(shared, token),
        None => Err(respond::invalid_token("no session token")),
    }
}

async fn refresh(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let (_, body) = match read_body(req, shared.config.load().limits.header_read_timeout).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let r: RefreshRequest = match parse_json(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let claims = match verify_session(shared, &r.refresh) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    match shared.sessions.refresh(&claims) {
        Ok(minted) => {
            shared.on_refresh(&minted.claims);
            session_response(shared, &minted)
        }
        Err(SessionError::DecisionExpired) => {
            respond::invalid_token("the login behind this session has expired; log in again")
        }
        Err(error) => {
            tracing::warn!(%error, "cannot refresh a session");
            respond::failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                Reason::Internal,
                "cannot refresh",
                None,
            )
        }
    }
}

fn ticket(shared: &Shared, req: &Request<Incoming>) -> Response<Body> {
    let claims = match bearer_session(shared, req) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let ticket = shared.issue_ticket(claims);
    respond::json(
        StatusCode::OK,
        &serde_json::json!({"result": "success", "ticket": ticket, "expiresIn": shared.ticket_ttl_seconds()}),
    )
}

fn userinfo(shared: &Shared, req: &Request<Incoming>) -> Response<Body> {
    match bearer_session(shared, req) {
        Ok(c) => respond::json(
            StatusCode::OK,
            &serde_json::json!({
                "userID": c.sub,
                "app": c.app,
                "provider": c.prv,
                "permissions": c.permissions,
                "clientInfo": c.cli,
                "expiresAt": rfc3339(c.exp),
            }),
        ),
        Err(resp) => resp,
    }
}

fn logout(shared: &Shared, req: &Request<Incoming>) -> Response<Body> {
    match bearer_session(shared, req) {
        Ok(c) => {
            // Any token of the session may log it out, and the whole session goes.
            shared.revoke_session(&c);
            let mut resp = respond::json(StatusCode::OK, &serde_json::json!({"result": "success"}));
            let clear = format!(
                "{}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict",
                super::SESSION_COOKIE
            );
            if let Ok(v) = HeaderValue::from_str(&clear) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Err(resp) => resp,
    }
}
