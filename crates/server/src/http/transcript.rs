//! Transcripts by email (`outbox::transcript`): an agent sends one of a
//! conversation of their site to any address; a visitor asks for their
//! own conversation's from the widget, on a customer's page (CORS for any
//! origin, as for visitor sessions; the visitor token is the credential).
//! Another site's or another visitor's conversation is "not found". Here
//! too: an offline message answered by email (`outbox::reply`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{AgentAuth, ApiJson, ApiPath, VisitorAuth};
use crate::app::AppState;
use crate::chat::protocol::EventView;
use crate::chat::service::Peer;
use crate::error::{Error, Result};

#[derive(utoipa::OpenApi)]
#[openapi(paths(agent_transcript, reply_by_email, visitor_transcript))]
pub(super) struct Api;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/conversations/{id}/transcript", post(agent_transcript))
        .route("/api/v1/conversations/{id}/reply", post(reply_by_email))
        .merge(
            Router::new()
                .route("/api/v1/visitor/transcript", post(visitor_transcript))
                .layer(middleware::from_fn(super::visitor::cors)),
        )
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AgentRequest {
    /// Where to send it.
    to: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VisitorRequest {
    /// The visitor's conversation.
    conv: String,
    /// Their address.
    to: String,
    /// The language the widget speaks (`de`, `ar`…): their copy is
    /// written in it when Holdfast has it, else in English.
    #[serde(default)]
    lang: Option<String>,
}

/// Whether a transcript was queued.
#[derive(Serialize, ToSchema)]
struct Queued {
    queued: bool,
}

async fn send(
    state: &AppState,
    peer: Peer,
    conv_id: &str,
    to: &str,
    lang: Option<&str>,
) -> Result<(StatusCode, Json<Queued>)> {
    if to.len() > 254 {
        return Err(Error::bad_request("to is longer than 254 bytes"));
    }
    if lang.is_some_and(|l| l.len() > 16) {
        return Err(Error::bad_request("lang is longer than 16 bytes"));
    }
    let conv = state.chat.conversation_for(&peer, conv_id).await?;
    let queued = state.outbox.request_transcript(&peer, &conv, to, lang).await?;
    // `queued: false`: the same transcript to the same address was queued
    // before (an admin can send it again from Deliveries).
    Ok((StatusCode::ACCEPTED, Json(Queued { queued })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ReplyRequest {
    client_id: String,
    body: String,
}

/// `201` and the answer's event (`200` for a retry's original): an offline
/// message answered by email.
/// Answer an offline message by email; the answer is a message of the
/// conversation. Idempotent on `client_id`: a retry answers `200` and the
/// message already stored.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/reply", tag = "conversations", params(("id" = String, Path)),
    request_body = ReplyRequest, responses(
        (status = 201, description = "Sent", body = EventView),
        (status = 200, description = "Already sent (a retry)", body = EventView)))]
async fn reply_by_email(
    State(state): State<AppState>,
    AgentAuth(me): AgentAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ReplyRequest>,
) -> Result<(StatusCode, Json<EventView>)> {
    let applied = crate::outbox::reply::reply_by_email(&state.chat, &me, &id, &req.client_id, &req.body).await?;
    let status = if applied.duplicate { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(EventView::from(&applied.event))))
}

/// Email the conversation's transcript.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/transcript", tag = "conversations", params(("id" = String, Path)),
    request_body = AgentRequest, responses((status = 202, description = "Queued", body = Queued)))]
async fn agent_transcript(
    State(state): State<AppState>,
    AgentAuth(me): AgentAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<AgentRequest>,
) -> Result<(StatusCode, Json<Queued>)> {
    send(&state, Peer::Agent(me), &id, &req.to, None).await
}

/// A visitor asks for their chat's transcript by email.
#[utoipa::path(post, path = "/api/v1/visitor/transcript", tag = "visitors", security(("visitor_token" = [])),
    request_body = VisitorRequest, responses((status = 202, description = "Queued", body = Queued)))]
async fn visitor_transcript(
    State(state): State<AppState>,
    VisitorAuth(me): VisitorAuth,
    ApiJson(req): ApiJson<VisitorRequest>,
) -> Result<(StatusCode, Json<Queued>)> {
    send(&state, Peer::Visitor(me), &req.conv, &req.to, req.lang.as_deref()).await
}
