//! Attachments over HTTP (`crate::attachments`): uploads for agents and
//! for visitors (CORS for any origin, like the visitor session: the
//! visitor token is the credential), signed links for whoever may see the
//! conversation, and the download those links open. The body of an
//! upload is read as a stream, never through the JSON body limit.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{AgentAuth, ApiPath, ApiQuery, VisitorAuth};
use crate::abuse::limits::Start;
use crate::app::AppState;
use crate::attachments::{AttachmentLimits, Upload, is_inline};
use crate::chat::service::Peer;
use crate::error::{Error, Result};
use crate::store::Author;
use crate::store::attachments::AttachmentRef;

#[derive(utoipa::OpenApi)]
#[openapi(paths(agent_upload, limits, agent_link, download, visitor_upload, visitor_link))]
pub(super) struct Api;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/attachments", post(agent_upload))
        .route("/api/v1/attachments/limits", get(limits))
        .route("/api/v1/attachments/{id}/link", post(agent_link))
        .route("/api/v1/attachments/{id}/download", get(download))
        .merge(
            Router::new()
                .route("/api/v1/visitor/attachments", post(visitor_upload))
                .route("/api/v1/visitor/attachments/{id}/link", post(visitor_link))
                .layer(middleware::from_fn(super::visitor::cors)),
        )
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct UploadQuery {
    /// The file's name as the client knows it (sanitised by the server).
    #[serde(default)]
    name: Option<String>,
}

async fn upload(
    state: &AppState,
    site_id: &str,
    uploader: Author,
    query: UploadQuery,
    headers: &HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<AttachmentRef>)> {
    let name = query.name.unwrap_or_default();
    if name.len() > 1024 {
        return Err(Error::bad_request("name is longer than 1024 bytes"));
    }
    let declared = match headers.get(header::CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| Error::bad_request("Content-Length is not a number"))?,
        ),
    };
    let request = Upload { site_id, uploader, name: &name, declared };
    let stored = state.attachments.upload(request, Box::pin(body.into_data_stream())).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// The agent's site's limits, for the console to refuse a file early.
/// What the site lets agents and visitors attach.
#[utoipa::path(get, path = "/api/v1/attachments/limits", tag = "attachments",
    responses((status = 200, description = "The limits", body = AttachmentLimits)))]
async fn limits(State(state): State<AppState>, AgentAuth(me): AgentAuth) -> Result<Json<AttachmentLimits>> {
    Ok(Json(state.attachments.limits(&me.site_id).await?))
}

/// `201` and the attachment as a message will carry it.
/// Upload a file (the raw bytes as the body) to send in a message.
#[utoipa::path(post, path = "/api/v1/attachments", tag = "attachments", params(UploadQuery), request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes"),
    responses(
        (status = 201, description = "Stored", body = AttachmentRef),
        (status = 415, description = "A type the site does not accept", body = super::error::ErrorBody)))]
async fn agent_upload(
    State(state): State<AppState>,
    AgentAuth(me): AgentAuth,
    ApiQuery(query): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<AttachmentRef>)> {
    upload(&state, &me.site_id, Author::agent(&me.agent_id), query, &headers, body).await
}

/// A visitor's upload, as `POST /api/v1/attachments`.
#[utoipa::path(post, path = "/api/v1/visitor/attachments", tag = "attachments", params(UploadQuery), request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes"), security(("visitor_token" = [])),
    responses(
        (status = 201, description = "Stored", body = AttachmentRef),
        (status = 415, description = "A type the site does not accept", body = super::error::ErrorBody)))]
async fn visitor_upload(
    State(state): State<AppState>,
    VisitorAuth(me): VisitorAuth,
    ApiQuery(query): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<AttachmentRef>)> {
    state.chat.bans.check(&me.site_id, Some(&me.visitor_id), me.ip)?;
    // An upload counts as a message against the site's flood limits: a
    // visitor cannot fill the disk faster than they may chat.
    let store = state.store.as_ref();
    state.chat.floodgate.admit(store, &me.site_id, Start::Message, Some(&me.visitor_id), me.ip).await?;
    upload(&state, &me.site_id, Author::visitor(&me.visitor_id), query, &headers, body).await
}

/// A download link, and the file it opens.
#[derive(Serialize, ToSchema)]
struct Link {
    /// A path on this server, with the link's token.
    url: String,
    /// When the link stops working (Unix ms).
    expires_at: i64,
    attachment: AttachmentRef,
}

async fn link(state: &AppState, peer: Peer, id: &str) -> Result<Json<Link>> {
    let (attachment, token, expires_at) = state.attachments.link(&state.chat, &peer, id).await?;
    let url = format!("/api/v1/attachments/{}/download?t={token}", attachment.id);
    Ok(Json(Link { url, expires_at, attachment: crate::attachments::reference(&attachment) }))
}

/// A short-lived signed link to an attachment of a conversation the
/// caller may see.
/// A short-lived download link to a file of a conversation the caller may see.
#[utoipa::path(post, path = "/api/v1/attachments/{id}/link", tag = "attachments", params(("id" = String, Path)),
    responses((status = 200, description = "The link", body = Link)))]
async fn agent_link(
    State(state): State<AppState>,
    AgentAuth(me): AgentAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Link>> {
    link(&state, Peer::Agent(me), &id).await
}

/// A visitor's link, as `POST /api/v1/attachments/{id}/link`.
#[utoipa::path(post, path = "/api/v1/visitor/attachments/{id}/link", tag = "attachments", params(("id" = String, Path)), security(("visitor_token" = [])),
    responses((status = 200, description = "The link", body = Link)))]
async fn visitor_link(
    State(state): State<AppState>,
    VisitorAuth(me): VisitorAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Link>> {
    link(&state, Peer::Visitor(me), &id).await
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DownloadQuery {
    /// The link's signed token.
    t: String,
}

/// The bytes behind a signed link. Raster images are shown inline;
/// everything else is a download of `application/octet-stream`, and
/// neither may be sniffed into something else or run anything.
/// The file, by a link's token (no bearer: the link is the credential).
#[utoipa::path(get, path = "/api/v1/attachments/{id}/download", tag = "attachments", security(()),
    params(("id" = String, Path), DownloadQuery),
    responses((status = 200, description = "The bytes: an image inline, anything else as an attachment",
        content_type = "*/*", body = Vec<u8>)))]
async fn download(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<DownloadQuery>,
) -> Result<Response> {
    let (attachment, bytes) = state.attachments.open(&id, &query.t).await?;
    let inline = is_inline(&attachment.content_type);
    let (content_type, disposition) =
        if inline { (attachment.content_type.as_str(), "inline") } else { ("application/octet-stream", "attachment") };
    let mut response = Body::from_stream(bytes).into_response();
    let h = response.headers_mut();
    let value = |s: &str| HeaderValue::from_str(s).map_err(Error::internal);
    h.insert(header::CONTENT_TYPE, value(content_type)?);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(attachment.size));
    h.insert(header::CONTENT_DISPOSITION, value(&content_disposition(disposition, &attachment.name))?);
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox; default-src 'none'"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=300"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // The widget shows images on customers' pages, another origin.
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("cross-origin"));
    Ok(response)
}

/// `inline` or `attachment` with the name twice: an ASCII fallback, and
/// the exact name (RFC 6266, RFC 8187).
fn content_disposition(kind: &str, name: &str) -> String {
    let fallback: String =
        name.chars().map(|c| if c.is_ascii_graphic() && !"\"\\%".contains(c) || c == ' ' { c } else { '_' }).collect();
    let mut exact = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            exact.push(b as char);
        } else {
            exact.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{exact}")
}
