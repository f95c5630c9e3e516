//! The installation's operator API (`/api/v1/operator/…`, `OperatorAuth` on
//! every route): the sites of the installation, each made with its first
//! admin. A site's admin gets 403 here; `admin` re-checks the role.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::extract::{ApiJson, OperatorAuth};
use crate::admin::{self, NewSiteRequest, SiteSummary};
use crate::app::AppState;
use crate::auth::AgentProfile;
use crate::error::Result;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/operator/sites", get(sites).post(create_site))
}

async fn sites(State(state): State<AppState>, OperatorAuth(me): OperatorAuth) -> Result<Json<Vec<SiteSummary>>> {
    Ok(Json(admin::sites(state.store.as_ref(), &me).await?))
}

async fn create_site(
    State(state): State<AppState>,
    OperatorAuth(me): OperatorAuth,
    ApiJson(req): ApiJson<NewSiteRequest>,
) -> Result<(StatusCode, Json<Value>)> {
    let (site, admin) = admin::create_site(&state.auth, state.store.as_ref(), &me, req).await?;
    Ok((StatusCode::CREATED, Json(json!({"site": site, "admin": AgentProfile::from(admin)}))))
}
