//! The admin API of integrations: API tokens (`auth::api_tokens`). Every
//! route takes `AdminAuth`, scoped to the admin's own site; every change
//! is audited. A token's secret is in the answer that makes it, and
//! nowhere else.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Serialize;

use super::admin::{audit, json_of};
use super::extract::{AdminAuth, ApiJson};
use crate::app::AppState;
use crate::auth::api_tokens::NewToken;
use crate::error::Result;
use crate::store::api_tokens::ApiToken;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/api-tokens", get(tokens).post(create_token))
        .route("/api/v1/admin/api-tokens/{id}", delete(revoke_token))
}

async fn tokens(State(state): State<AppState>, AdminAuth(me): AdminAuth) -> Result<Json<Vec<ApiToken>>> {
    Ok(Json(state.api_tokens.list(&me).await?))
}

/// A new token, with its secret shown this once.
#[derive(Serialize)]
struct CreatedToken {
    #[serde(flatten)]
    token: ApiToken,
    secret: String,
}

async fn create_token(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiJson(req): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>)> {
    let (token, secret) = state.api_tokens.create(&me, req).await?;
    audit(&state, &me, "api_token.created", Some(&token.id), None, json_of(&token)).await;
    Ok((StatusCode::CREATED, Json(CreatedToken { token, secret })))
}

async fn revoke_token(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let token = state.api_tokens.revoke(&me, &id).await?;
    audit(&state, &me, "api_token.revoked", Some(&id), None, json_of(&token)).await;
    Ok(StatusCode::NO_CONTENT)
}
