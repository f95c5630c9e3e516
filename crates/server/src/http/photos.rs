//! Agent photos over HTTP (`admin::photo_from_upload`): an agent uploads
//! their own (the request's body is the image, its type sniffed), removes
//! it, an admin removes one of their site's; anyone loads one by the URL
//! the agent lists and the `assigned` event give, as the widget's visitors
//! do (no credential: it is shown to every visitor of the site, like the
//! site's logo).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};

use super::extract::{AdminAuth, AgentAuth, ApiPath};
use crate::admin::{self, MAX_PHOTO_BYTES};
use crate::app::AppState;
use crate::auth::AgentProfile;
use crate::error::{Error, Result};

#[derive(utoipa::OpenApi)]
#[openapi(paths(set_own_photo, remove_own_photo, remove_agent_photo, photo))]
pub(super) struct Api;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me/photo", put(set_own_photo).delete(remove_own_photo))
        .route("/api/v1/admin/agents/{id}/photo", delete(remove_agent_photo))
        .route("/api/v1/agents/{id}/photo", get(photo))
}

/// Any agent: their photo, the request's body (a PNG, JPEG, GIF or WebP
/// image of at most 512 KiB, typed by its bytes; a JPEG loses its
/// metadata). Answers their profile, with the photo's URL.
#[utoipa::path(put, path = "/api/v1/me/photo", tag = "agents",
    request_body(content = Vec<u8>, content_type = "image/*"),
    responses((status = 200, description = "The agent", body = AgentProfile),
        (status = 413, description = "Larger than 512 KiB", body = super::error::ErrorBody),
        (status = 415, description = "Not a PNG, JPEG, GIF or WebP image", body = super::error::ErrorBody)))]
async fn set_own_photo(
    State(state): State<AppState>,
    AgentAuth(me): AgentAuth,
    body: Body,
) -> Result<Json<AgentProfile>> {
    // One byte more than allowed tells a photo too large from one just so.
    let bytes = axum::body::to_bytes(body, MAX_PHOTO_BYTES + 1)
        .await
        .map_err(|_| Error::TooLarge(format!("a photo may be at most {} KiB", MAX_PHOTO_BYTES / 1024).into()))?;
    let photo = admin::photo_from_upload(&bytes)?;
    Ok(Json(admin::set_own_photo(&state.chat, &me, Some(photo)).await?.into()))
}

/// Any agent: remove their photo (the widget and consoles show their
/// initial again).
#[utoipa::path(delete, path = "/api/v1/me/photo", tag = "agents",
    responses((status = 200, description = "The agent", body = AgentProfile)))]
async fn remove_own_photo(State(state): State<AppState>, AgentAuth(me): AgentAuth) -> Result<Json<AgentProfile>> {
    Ok(Json(admin::set_own_photo(&state.chat, &me, None).await?.into()))
}

/// Admin: remove the photo of an agent of their site.
#[utoipa::path(delete, path = "/api/v1/admin/agents/{id}/photo", tag = "agents", params(("id" = String, Path)),
    responses((status = 200, description = "The agent", body = AgentProfile)))]
async fn remove_agent_photo(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AgentProfile>> {
    let agent: AgentProfile = admin::remove_photo(&state.chat, &me, &id).await?.into();
    super::admin::audit(&state, &me, "agent.photo_removed", Some(&id), None, None).await;
    Ok(Json(agent))
}

/// An agent's photo, as their URL (`photo_url`) gives it: the image's
/// sniffed type, never run as a page (`nosniff`, a sandbox), loadable from
/// customers' pages (the widget). The URL carries the photo's version, so
/// it may be cached for long.
#[utoipa::path(get, path = "/api/v1/agents/{id}/photo", tag = "agents", security(()), params(("id" = String, Path)),
    responses((status = 200, description = "The image", content_type = "image/*", body = Vec<u8>),
        (status = 404, description = "No such agent, or no photo", body = super::error::ErrorBody)))]
async fn photo(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<Response> {
    if id.len() > 64 {
        return Err(Error::NotFound("photo"));
    }
    let photo = state.store.agent_photo(&id).await?.ok_or(Error::NotFound("photo"))?;
    let mut response = (StatusCode::OK, Body::from(photo.bytes)).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_str(&photo.content_type).map_err(Error::internal)?);
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox; default-src 'none'"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("cross-origin"));
    Ok(response)
}
