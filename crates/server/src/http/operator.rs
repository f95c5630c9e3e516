//! The installation's operator API (`/api/v1/operator/…`, `OperatorAuth` on
//! every route): the sites of the installation, each made with its first
//! admin. A site's admin gets 403 here; `admin` re-checks the role.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::{ApiJson, OperatorAuth};
use crate::admin::{self, NewSiteRequest, SiteSummary};
use crate::app::AppState;
use crate::auth::AgentProfile;
use crate::error::Result;

#[derive(utoipa::OpenApi)]
#[openapi(paths(sites, create_site))]
pub(super) struct Api;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/operator/sites", get(sites).post(create_site))
}

/// Every site of the installation.
#[utoipa::path(get, path = "/api/v1/operator/sites", tag = "operator",
    responses((status = 200, description = "The sites", body = Vec<SiteSummary>)))]
async fn sites(State(state): State<AppState>, OperatorAuth(me): OperatorAuth) -> Result<Json<Vec<SiteSummary>>> {
    Ok(Json(admin::sites(state.store.as_ref(), &me).await?))
}

/// A new site and its first admin.
#[utoipa::path(post, path = "/api/v1/operator/sites", tag = "operator", request_body = NewSiteRequest,
    responses((status = 201, description = "Made", body = NewSite)))]
async fn create_site(
    State(state): State<AppState>,
    OperatorAuth(me): OperatorAuth,
    ApiJson(req): ApiJson<NewSiteRequest>,
) -> Result<(StatusCode, Json<NewSite>)> {
    let (site, admin) = admin::create_site(&state.auth, state.store.as_ref(), &me, req).await?;
    Ok((StatusCode::CREATED, Json(NewSite { site, admin: admin.into() })))
}

/// A site just made, and its first admin.
#[derive(Serialize, ToSchema)]
struct NewSite {
    site: SiteSummary,
    admin: AgentProfile,
}
