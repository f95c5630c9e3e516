//! The admin API of integrations: API tokens (`auth::api_tokens`) and
//! webhook endpoints (`outbox::webhooks`). Every route takes `AdminAuth`,
//! scoped to the admin's own site; every change is audited. A token's or
//! an endpoint's secret is in the answer that makes it, and nowhere else.
//! A webhook delivery is sent again through the outbox's own route
//! (`POST /api/v1/admin/deliveries/{id}/retry`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::admin::{audit, json_of};
use super::extract::{AdminAuth, ApiJson, ApiPath, ApiQuery};
use super::idempotency::ShownOnce;
use super::page;
use crate::app::AppState;
use crate::auth::api_tokens::NewToken;
use crate::error::Result;
use crate::outbox::DeliveryView;
use crate::outbox::webhooks::{EndpointRequest, EndpointView};
use crate::store::api_tokens::ApiToken;

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    tokens,
    create_token,
    revoke_token,
    webhooks,
    create_webhook,
    update_webhook,
    delete_webhook,
    rotate_webhook_secret,
    webhook_deliveries
))]
pub(super) struct Api;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/api-tokens", get(tokens).post(create_token))
        .route("/api/v1/admin/api-tokens/{id}", delete(revoke_token))
        .route("/api/v1/admin/webhooks", get(webhooks).post(create_webhook))
        .route("/api/v1/admin/webhooks/{id}", patch(update_webhook).delete(delete_webhook))
        .route("/api/v1/admin/webhooks/{id}/rotate-secret", post(rotate_webhook_secret))
        .route("/api/v1/admin/webhooks/{id}/deliveries", get(webhook_deliveries))
}

/// The site's webhook endpoints.
#[utoipa::path(get, path = "/api/v1/admin/webhooks", tag = "integrations",
    responses((status = 200, description = "The endpoints", body = Vec<EndpointView>)))]
async fn webhooks(State(state): State<AppState>, AdminAuth(me): AdminAuth) -> Result<Json<Vec<EndpointView>>> {
    Ok(Json(state.outbox.webhooks(&me).await?))
}

/// A new endpoint, with its signing secret shown this once.
#[derive(Serialize, ToSchema)]
struct CreatedEndpoint {
    #[serde(flatten)]
    endpoint: EndpointView,
    secret: String,
}

#[utoipa::path(post, path = "/api/v1/admin/webhooks", tag = "integrations", request_body = EndpointRequest,
    responses((status = 201, description = "Made; the secret is shown this once", body = CreatedEndpoint)))]
async fn create_webhook(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiJson(req): ApiJson<EndpointRequest>,
) -> Result<Response> {
    let (endpoint, secret) = state.outbox.create_webhook(&me, req).await?;
    audit(&state, &me, "webhook.created", Some(&endpoint.id), None, json_of(&endpoint)).await;
    Ok(shown_once(StatusCode::CREATED, CreatedEndpoint { endpoint, secret }))
}

/// An answer holding a secret shown this once: never kept for a retry
/// (`http::idempotency`).
fn shown_once(status: StatusCode, body: impl Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    response.extensions_mut().insert(ShownOnce);
    response
}

/// Delete an endpoint: nothing more is sent to it, and what was queued
/// for it ends as failed (its delivery log stays).
#[utoipa::path(delete, path = "/api/v1/admin/webhooks/{id}", tag = "integrations", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted")))]
async fn delete_webhook(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode> {
    let gone = state.outbox.delete_webhook(&me, &id).await?;
    audit(&state, &me, "webhook.deleted", Some(&id), json_of(&gone), None).await;
    Ok(StatusCode::NO_CONTENT)
}

/// A new signing secret, shown this once; the old one signs nothing from
/// now on (no overlap: deliveries the receiver refuses while it changes
/// over are retried with the new one).
#[utoipa::path(post, path = "/api/v1/admin/webhooks/{id}/rotate-secret", tag = "integrations",
    params(("id" = String, Path)),
    responses((status = 200, description = "The new secret, shown this once", body = CreatedEndpoint)))]
async fn rotate_webhook_secret(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Response> {
    let (endpoint, secret) = state.outbox.rotate_webhook_secret(&me, &id).await?;
    audit(&state, &me, "webhook.secret_rotated", Some(&id), None, None).await;
    Ok(shown_once(StatusCode::OK, CreatedEndpoint { endpoint, secret }))
}

/// Rename, point elsewhere, change the events, disable or enable.
#[utoipa::path(patch, path = "/api/v1/admin/webhooks/{id}", tag = "integrations", params(("id" = String, Path)),
    request_body = EndpointRequest, responses((status = 200, description = "The endpoint", body = EndpointView)))]
async fn update_webhook(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<EndpointRequest>,
) -> Result<Json<EndpointView>> {
    let (before, after) = state.outbox.update_webhook(&me, &id, req).await?;
    audit(&state, &me, "webhook.changed", Some(&id), json_of(&before), json_of(&after)).await;
    Ok(Json(after))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct LogQuery {
    /// 1 to 1000 (default 100).
    limit: Option<i64>,
    /// The `Next-Cursor` of the previous page.
    cursor: Option<String>,
}

/// The endpoint's delivery log, newest first, a page at a time
/// (`Next-Cursor`).
#[utoipa::path(get, path = "/api/v1/admin/webhooks/{id}/deliveries", tag = "integrations",
    params(("id" = String, Path), LogQuery),
    responses((status = 200, description = "Deliveries, newest first", body = Vec<DeliveryView>,
        headers(("Next-Cursor" = String, description = "The next page's `cursor`; absent on the last page")))))]
async fn webhook_deliveries(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Result<Response> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let before = q.cursor.as_deref().map(page::parse_cursor).transpose()?;
    let found = state.outbox.webhook_deliveries(&me, &id, before, limit + 1).await?;
    let (found, next) = page::split(found, limit, |d| (d.delivery.created_at, &d.delivery.id));
    Ok(page::array_page(found, next))
}

/// The site's API tokens (never their secrets).
#[utoipa::path(get, path = "/api/v1/admin/api-tokens", tag = "integrations",
    responses((status = 200, description = "The tokens", body = Vec<ApiToken>)))]
async fn tokens(State(state): State<AppState>, AdminAuth(me): AdminAuth) -> Result<Json<Vec<ApiToken>>> {
    Ok(Json(state.api_tokens.list(&me).await?))
}

/// A new token, with its secret shown this once.
#[derive(Serialize, ToSchema)]
struct CreatedToken {
    #[serde(flatten)]
    token: ApiToken,
    secret: String,
}

#[utoipa::path(post, path = "/api/v1/admin/api-tokens", tag = "integrations", request_body = NewToken,
    responses((status = 201, description = "Made; the secret is shown this once", body = CreatedToken)))]
async fn create_token(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiJson(req): ApiJson<NewToken>,
) -> Result<Response> {
    let (token, secret) = state.api_tokens.create(&me, req).await?;
    audit(&state, &me, "api_token.created", Some(&token.id), None, json_of(&token)).await;
    Ok(shown_once(StatusCode::CREATED, CreatedToken { token, secret }))
}

/// Revoke a token: it opens nothing from now on.
#[utoipa::path(delete, path = "/api/v1/admin/api-tokens/{id}", tag = "integrations", params(("id" = String, Path)),
    responses((status = 204, description = "Revoked")))]
async fn revoke_token(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode> {
    let token = state.api_tokens.revoke(&me, &id).await?;
    audit(&state, &me, "api_token.revoked", Some(&id), None, json_of(&token)).await;
    Ok(StatusCode::NO_CONTENT)
}
