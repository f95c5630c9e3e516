//! Agent login, refresh and logout.

use std::net::IpAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiJson, ClientIp, SessionAuth};
use crate::app::AppState;
use crate::auth::ratelimit::Attempt;
use crate::auth::{AgentProfile, Credentials, normalize_email};
use crate::bus::{Audience, Envelope, Payload};
use crate::error::{Error, Result};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/refresh", post(refresh))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/me", get(me))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(login, refresh, logout, me))]
pub(super) struct Api;

/// The login body, shared with the console's cookie login.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginRequest {
    pub(super) email: String,
    pub(super) password: String,
    /// The device token an earlier login of this account returned: its
    /// holder is not slowed by guesses from unknown devices.
    #[serde(default)]
    pub(super) device_token: Option<String>,
}

/// How long a device stays known after its last login.
const DEVICE_TTL_S: u64 = 90 * 24 * 3600;

/// A login through the rate limits: refused before any hash when the
/// address or this source's failures are over their limits; a wrong
/// password counts against this source only. Returns the credentials and a
/// renewed device token.
pub(super) async fn limited_login(
    state: &AppState,
    peer: IpAddr,
    req: &LoginRequest,
    console: bool,
) -> Result<(Credentials, String)> {
    let account = normalize_email(&req.email);
    let device = req.device_token.as_deref().and_then(|t| state.auth.tokens.verify_device(t, &account));
    let attempt = Attempt { account: &account, address: peer, known_device: device.as_deref() };
    state.login_limiter.admit(&attempt)?;
    let result = match console {
        true => state.auth.console_login(&req.email, &req.password).await,
        false => state.auth.login(&req.email, &req.password).await,
    };
    match result {
        Ok(creds) => {
            let device_token = state.auth.tokens.issue_device(&account, device.as_deref(), DEVICE_TTL_S)?;
            Ok((creds, device_token))
        }
        Err(err) => {
            if matches!(err, Error::Unauthorized(_)) {
                state.login_limiter.failed(&attempt);
            }
            Err(err)
        }
    }
}

/// Log in with email and password: an access token, a refresh token and
/// the agent. Rate-limited per account and per address (`429`).
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", security(()), request_body = LoginRequest,
    responses((status = 200, description = "Signed in", body = Credentials)))]
async fn login(
    State(state): State<AppState>,
    ClientIp(peer): ClientIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<Credentials>> {
    let (mut creds, device_token) = limited_login(&state, peer, &req, false).await?;
    creds.device_token = Some(device_token);
    Ok(Json(creds))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
    /// The access token being replaced: if the store cannot be asked, it is
    /// renewed from its own claims within the grace period.
    #[serde(default)]
    access_token: Option<String>,
}

/// What a refresh answers: new credentials, or, while the store cannot be
/// asked, the old access token renewed from its own claims.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(super) enum Renewal {
    Fresh(Credentials),
    Degraded(DegradedRenewal),
}

/// An access token renewed without the store (lenient renewal).
#[derive(Serialize, ToSchema)]
pub(super) struct DegradedRenewal {
    pub(super) access_token: String,
    /// Seconds until it expires.
    pub(super) expires_in: u64,
    /// Always `true`: refresh again once the store answers.
    pub(super) degraded: bool,
}

/// A new access token for a refresh token.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", security(()), request_body = RefreshRequest,
    responses((status = 200, description = "Renewed", body = Renewal)))]
async fn refresh(State(state): State<AppState>, ApiJson(req): ApiJson<RefreshRequest>) -> Result<Json<Renewal>> {
    match state.auth.refresh(&req.refresh_token).await {
        Ok(creds) => Ok(Json(Renewal::Fresh(creds))),
        Err(err @ (Error::Store(_) | Error::Unavailable(_))) => {
            // Lenient renewal: infrastructure trouble never logs anyone out.
            let grace = state.config.sessions.renewal_grace;
            let Some(old) = req.access_token.as_deref() else { return Err(err) };
            let claims = state.auth.verify_agent_lenient(old, grace).await.map_err(|_| err)?;
            Ok(Json(Renewal::Degraded(DegradedRenewal {
                access_token: state.auth.reissue(&claims)?,
                expires_in: state.auth.access_ttl().as_secs(),
                degraded: true,
            })))
        }
        Err(err) => Err(err),
    }
}

/// Ends the session of the access token, and closes its sockets everywhere.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("access_token" = [])),
    responses((status = 204, description = "Signed out")))]
async fn logout(State(state): State<AppState>, SessionAuth(agent): SessionAuth) -> Result<StatusCode> {
    state.auth.logout(&agent.session_id).await?;
    state
        .chat
        .bus
        .publish(Envelope {
            site_id: agent.site_id.clone(),
            audience: Audience::Session { session_id: agent.session_id.clone() },
            event: None,
            payload: Payload::Disconnect { code: "session ended".into() },
        })
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in agent.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("access_token" = [])),
    responses((status = 200, description = "The agent", body = AgentProfile)))]
async fn me(State(state): State<AppState>, SessionAuth(agent): SessionAuth) -> Result<Json<AgentProfile>> {
    let me = state.store.agent(&agent.agent_id).await?.ok_or_else(|| Error::unauthorized("agent not found"))?;
    Ok(Json(me.into()))
}
