//! Agent login, refresh and logout.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::extract::{ApiJson, SessionAuth};
use crate::app::AppState;
use crate::auth::{Credentials, normalize_email};
use crate::bus::{Audience, Envelope, Payload};
use crate::error::{Error, Result};
use crate::store::Agent;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/refresh", post(refresh))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/me", get(me))
}

/// The login body, shared with the console's cookie login.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginRequest {
    pub(super) email: String,
    pub(super) password: String,
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<Credentials>> {
    state.login_limiter.check(&normalize_email(&req.email), Some(peer.ip()))?;
    Ok(Json(state.auth.login(&req.email, &req.password).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
    /// The access token being replaced: if the store cannot be asked, it is
    /// renewed from its own claims within the grace period.
    #[serde(default)]
    access_token: Option<String>,
}

async fn refresh(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Json<serde_json::Value>> {
    match state.auth.refresh(&req.refresh_token).await {
        Ok(creds) => Ok(Json(serde_json::to_value(creds).map_err(Error::internal)?)),
        Err(err @ (Error::Store(_) | Error::Unavailable(_))) => {
            // Lenient renewal: infrastructure trouble never logs anyone out.
            let grace = state.config.sessions.renewal_grace;
            let Some(old) = req.access_token.as_deref() else { return Err(err) };
            let claims = state.auth.verify_agent_lenient(old, grace).await.map_err(|_| err)?;
            Ok(Json(serde_json::json!({
                "access_token": state.auth.reissue(&claims)?,
                "expires_in": state.auth.access_ttl().as_secs(),
                "degraded": true,
            })))
        }
        Err(err) => Err(err),
    }
}

/// Ends the session of the access token, and closes its sockets everywhere.
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

async fn me(State(state): State<AppState>, SessionAuth(agent): SessionAuth) -> Result<Json<Agent>> {
    let me = state.store.agent(&agent.agent_id).await?.ok_or_else(|| Error::unauthorized("agent not found"))?;
    Ok(Json(me))
}
