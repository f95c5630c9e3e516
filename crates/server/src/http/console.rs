//! `/console`: the agent console page, and its cookie-held session.
//!
//! The page gets a strict Content-Security-Policy (scripts and styles only
//! from this origin, nothing inline). Login puts the refresh credential in
//! an `HttpOnly; SameSite=Strict` cookie scoped to `/api/v1/console`, so
//! page script never sees it; the page holds only the short-lived access
//! token, in memory, and renews it through `/api/v1/console/refresh`.
//! Those endpoints also demand an `X-Holdfast-Csrf` header (which a
//! cross-site form cannot send) and a same-origin `Origin` when one is sent.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::assets::versioned_url;
use super::auth::{DegradedRenewal, LoginRequest, Renewal, limited_login};
use super::extract::{ApiJson, ClientIp};
use crate::app::AppState;
use crate::auth::Credentials;
use crate::bus::{Audience, Envelope, Payload};
use crate::error::{Error, Result};

const CONSOLE_HTML: &str = include_str!("../../../../assets/console.html");

/// Name of the cookie holding the refresh credential.
pub const SESSION_COOKIE: &str = "hf_session";
/// Name of the cookie marking a browser that logged in before (a device
/// token, see `auth::ratelimit`). It outlives sessions: logging out does not
/// make the browser a stranger.
pub const DEVICE_COOKIE: &str = "hf_device";
const DEVICE_COOKIE_MAX_AGE_S: u64 = 90 * 24 * 3600;
const COOKIE_PATH: &str = "/api/v1/console";
pub const CSRF_HEADER: &str = "x-holdfast-csrf";

pub const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self' data:; media-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

#[derive(utoipa::OpenApi)]
#[openapi(paths(login, refresh, logout))]
pub(super) struct Api;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(page))
        .route("/console/", get(page))
        .route("/api/v1/console/login", post(login))
        .route("/api/v1/console/refresh", post(refresh))
        .route("/api/v1/console/logout", post(logout))
}

async fn page() -> Response {
    let html = CONSOLE_HTML
        .replace("{{CONSOLE_JS}}", &versioned_url("console.js"))
        .replace("{{CONSOLE_CSS}}", &versioned_url("console.css"));
    let mut response = Html(html).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONSOLE_CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// The request must come from our own page: the custom header (a form on
/// another site cannot add it, and a cross-origin script would need a
/// preflight we never grant) and, when present, a same-origin `Origin`.
fn check_same_origin(headers: &HeaderMap) -> Result<()> {
    if headers.get(CSRF_HEADER).is_none() {
        return Err(Error::forbidden(format!("missing {CSRF_HEADER} header")));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
        if origin_host != host {
            return Err(Error::forbidden("cross-origin request refused"));
        }
    }
    Ok(())
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_owned())
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE)
}

fn set_cookie(headers: &HeaderMap, value: &str, max_age_s: u64) -> HeaderValue {
    named_cookie(headers, SESSION_COOKIE, value, max_age_s)
}

fn named_cookie(headers: &HeaderMap, name: &str, value: &str, max_age_s: u64) -> HeaderValue {
    // Holdfast speaks plain HTTP behind a TLS proxy: the page's origin says
    // whether the browser sees https, and then the cookie is Secure too.
    let secure = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).is_some_and(|o| o.starts_with("https://"));
    let cookie = format!(
        "{name}={value}; Path={COOKIE_PATH}; Max-Age={max_age_s}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static("hf_session=; Max-Age=0"))
}

/// The console's login: as `POST /api/v1/auth/login`, but the refresh
/// credential is set as an `HttpOnly` cookie, never in the body.
#[utoipa::path(post, path = "/api/v1/console/login", tag = "auth", security(()), params(("x-holdfast-csrf" = String, Header, description = "Any value: proves the request is not a cross-site form")),
    request_body = LoginRequest, responses((status = 200, description = "Signed in", body = Credentials)))]
async fn login(
    State(state): State<AppState>,
    ClientIp(peer): ClientIp,
    headers: HeaderMap,
    ApiJson(mut req): ApiJson<LoginRequest>,
) -> Result<Response> {
    check_same_origin(&headers)?;
    // The same limits as the API login; this browser's device token rides
    // in its own cookie.
    req.device_token = cookie(&headers, DEVICE_COOKIE).or(req.device_token);
    let (mut creds, device_token): (Credentials, String) = limited_login(&state, peer, &req, true).await?;
    let secret = creds.refresh_token.take().ok_or_else(|| Error::internal(anyhow::anyhow!("no refresh token")))?;
    let max_age = state.config.auth.session_ttl.as_secs();
    let mut response = Json(creds).into_response();
    let h = response.headers_mut();
    h.append(header::SET_COOKIE, set_cookie(&headers, &secret, max_age));
    h.append(header::SET_COOKIE, named_cookie(&headers, DEVICE_COOKIE, &device_token, DEVICE_COOKIE_MAX_AGE_S));
    Ok(response)
}

/// A new access token for the cookie's session; no password hash. Like
/// `/api/v1/auth/refresh`, if the store cannot answer, the access token the
/// page still holds (sent as a bearer token) is renewed from its own claims
/// within the grace period: infrastructure trouble never logs anyone out.
#[utoipa::path(post, path = "/api/v1/console/refresh", tag = "auth", security(()), params(("x-holdfast-csrf" = String, Header, description = "Any value: proves the request is not a cross-site form"), ("hf_session" = Option<String>, Cookie, description = "The session cookie login set")),
    responses((status = 200, description = "Renewed", body = Renewal)))]
async fn refresh(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Renewal>> {
    check_same_origin(&headers)?;
    let secret = session_cookie(&headers).ok_or_else(|| Error::unauthorized("not logged in"))?;
    match state.auth.refresh(&secret).await {
        Ok(creds) => Ok(Json(Renewal::Fresh(creds))),
        Err(err @ (Error::Store(_) | Error::Unavailable(_))) => {
            let old = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            let Some(old) = old else { return Err(err) };
            let grace = state.config.sessions.renewal_grace;
            let claims = state.auth.verify_agent_lenient(old.trim(), grace).await.map_err(|_| err)?;
            Ok(Json(Renewal::Degraded(DegradedRenewal {
                access_token: state.auth.reissue(&claims)?,
                expires_in: state.auth.access_ttl().as_secs(),
                degraded: true,
            })))
        }
        Err(err) => Err(err),
    }
}

/// Ends the cookie's session, closes its sockets and clears the cookie.
#[utoipa::path(post, path = "/api/v1/console/logout", tag = "auth", security(()), params(("x-holdfast-csrf" = String, Header, description = "Any value: proves the request is not a cross-site form"), ("hf_session" = Option<String>, Cookie, description = "The session cookie login set")),
    responses((status = 204, description = "Signed out; the cookie is cleared")))]
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response> {
    check_same_origin(&headers)?;
    if let Some(secret) = session_cookie(&headers)
        && let Ok(creds) = state.auth.refresh(&secret).await
        && let Ok(claims) = state.auth.verify_agent(&creds.access_token)
    {
        state.auth.logout(&claims.sid).await?;
        state
            .chat
            .bus
            .publish(Envelope {
                site_id: claims.site.clone(),
                audience: Audience::Session { session_id: claims.sid.clone() },
                event: None,
                payload: Payload::Disconnect { code: "session ended".into() },
            })
            .await;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, set_cookie(&headers, "", 0));
    Ok(response)
}
