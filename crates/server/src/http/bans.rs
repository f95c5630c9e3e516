//! Bans over HTTP: every agent bans (`POST /api/v1/bans`); the site's
//! admins list and lift them (`/api/v1/admin/bans`). The rules, and the
//! scoping to the caller's site, are `abuse::bans`'s.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::admin::{audit, json_of};
use super::extract::{AdminAuth, AgentAuth, ApiJson, ApiPath, ApiQuery};
use super::page;
use crate::abuse::bans::{self, BanRequest};
use crate::app::AppState;
use crate::error::Result;
use crate::store::bans::Ban;
use crate::store::now_ms;

#[derive(utoipa::OpenApi)]
#[openapi(paths(ban, list, lift))]
pub(super) struct Api;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/bans", post(ban))
        .route("/api/v1/admin/bans", get(list))
        .route("/api/v1/admin/bans/{id}/lift", post(lift))
}

/// A ban as the API shows it: the stored ban, and whether it holds now.
#[derive(Serialize, ToSchema)]
struct BanView {
    #[serde(flatten)]
    ban: Ban,
    in_force: bool,
}

impl From<Ban> for BanView {
    fn from(ban: Ban) -> Self {
        BanView { in_force: ban.in_force(now_ms()), ban }
    }
}

#[utoipa::path(post, path = "/api/v1/bans", tag = "visitors", request_body = BanRequest,
    responses((status = 201, description = "Banned", body = BanView)))]
async fn ban(
    State(state): State<AppState>,
    AgentAuth(me): AgentAuth,
    ApiJson(req): ApiJson<BanRequest>,
) -> Result<(StatusCode, Json<BanView>)> {
    let ban = bans::ban(&state.chat, &me, req).await?;
    audit(&state, &me, "ban.created", Some(&ban.id), None, json_of(&ban)).await;
    Ok((StatusCode::CREATED, Json(ban.into())))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// 1 to 1000 (default 200).
    limit: Option<i64>,
    /// The `Next-Cursor` of the previous page.
    cursor: Option<String>,
}

/// The site's bans, lifted and expired ones too, newest first, a page at
/// a time (`Next-Cursor`).
#[utoipa::path(get, path = "/api/v1/admin/bans", tag = "visitors", params(ListQuery),
    responses((status = 200, description = "The bans", body = Vec<BanView>,
        headers(("Next-Cursor" = String, description = "The next page's `cursor`; absent on the last page")))))]
async fn list(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response> {
    let limit = q.limit.unwrap_or(200).clamp(1, 1000);
    let after = q.cursor.as_deref().map(page::parse_cursor).transpose()?;
    let found = bans::list(&state.chat, &me, after, limit + 1).await?;
    let (found, next) = page::split(found, limit, |b| (b.created_at, &b.id));
    Ok(page::array_page(found.into_iter().map(BanView::from).collect(), next))
}

#[utoipa::path(post, path = "/api/v1/admin/bans/{id}/lift", tag = "visitors", params(("id" = String, Path)),
    responses((status = 200, description = "Lifted", body = BanView)))]
async fn lift(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<BanView>> {
    let ban = bans::lift(&state.chat, &me, &id).await?;
    audit(&state, &me, "ban.lifted", Some(&ban.id), None, json_of(&ban)).await;
    Ok(Json(ban.into()))
}
