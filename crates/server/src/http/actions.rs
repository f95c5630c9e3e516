//! Chat actions over REST, for integrations and scripts: send a message
//! (as the agent, or as the integration the API token names), close and
//! transfer a conversation, change a visitor's name or email. Each calls
//! the same `Chat` path as the socket's frame, so what it does is a
//! durable, sequenced event, sent live to sockets and to webhooks. Scoped
//! to the caller's site: another site's ids answer 404.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::ToSchema;

use super::admin::{audit, json_of};
use super::extract::{AgentAuth, ApiJson, ApiPath};
use crate::app::AppState;
use crate::chat::protocol::{ConversationView, EventView};
use crate::chat::service::{Peer, clean_field};
use crate::error::{Error, Result};
use crate::store::{Visitor, VisitorUpdate, new_id};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/conversations/{id}/messages", post(send))
        .route("/api/v1/conversations/{id}/close", post(close))
        .route("/api/v1/conversations/{id}/transfer", post(transfer))
        .route("/api/v1/visitors/{id}", axum::routing::patch(update_visitor))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(send, close, transfer, update_visitor))]
pub(super) struct Api;

/// Who a message is from.
#[derive(Deserialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum SendAs {
    /// The agent (an API token's maker), as from the console: only into a
    /// conversation assigned to them.
    Agent,
    /// The integration, shown under the API token's name: into any open
    /// conversation of the site. API tokens only.
    Integration,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewMessage {
    /// The text, 1 to 5,000 characters.
    body: String,
    /// Makes a retry safe without `Idempotency-Key`: a message with the
    /// same `client_id` from the same sender is stored once (1 to 64
    /// bytes; a UUID). Default: a new one.
    #[serde(default)]
    client_id: Option<String>,
    /// Default: `integration` with an API token, `agent` with a session.
    #[serde(default, rename = "as")]
    send_as: Option<SendAs>,
}

/// Send a message into a conversation: `201` and its event (`200` and the
/// original event when `client_id` repeats an earlier one).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages", tag = "conversations",
    params(("id" = String, Path)), request_body = NewMessage,
    responses((status = 201, description = "Sent", body = EventView),
              (status = 200, description = "Sent before under this client_id: the original", body = EventView)))]
async fn send(
    State(state): State<AppState>,
    AgentAuth(me): AgentAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<NewMessage>,
) -> Result<(StatusCode, Json<EventView>)> {
    let client_id = req.client_id.unwrap_or_else(new_id);
    let send_as = req.send_as.unwrap_or(if me.api_token.is_some() { SendAs::Integration } else { SendAs::Agent });
    let applied = match send_as {
        SendAs::Agent => state.chat.agent_send(&me, &id, &client_id, &req.body, &[]).await?,
        SendAs::Integration => state.chat.integration_send(&me, &id, &client_id, &req.body).await?,
    };
    let status = if applied.duplicate { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(EventView::from(&applied.event))))
}

/// Close a conversation (its assigned agent, an admin, or an integration).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/close", tag = "conversations",
    params(("id" = String, Path)),
    responses((status = 200, description = "Closed", body = ConversationView)))]
async fn close(
    State(state): State<AppState>,
    AgentAuth(me): AgentAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ConversationView>> {
    let applied = state.chat.close(&Peer::Agent(me), &id).await?;
    Ok(Json(ConversationView::from(&applied.conversation)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Transfer {
    /// An active agent of the site; or
    #[serde(default)]
    to_agent: Option<String>,
    /// a group of the site, whose queue the chat goes back to (it must be
    /// open now). Exactly one of the two.
    #[serde(default)]
    to_group: Option<String>,
}

/// Transfer a conversation to an agent, or back to a group's queue (its
/// assigned agent, an admin, or an integration).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/transfer", tag = "conversations",
    params(("id" = String, Path)), request_body = Transfer,
    responses((status = 200, description = "Transferred", body = ConversationView)))]
async fn transfer(
    State(state): State<AppState>,
    AgentAuth(me): AgentAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<Transfer>,
) -> Result<Json<ConversationView>> {
    let too_long = |v: &Option<String>| v.as_ref().is_some_and(|v| v.len() > 64);
    if too_long(&req.to_agent) || too_long(&req.to_group) {
        return Err(Error::bad_request("to_agent and to_group are ids, at most 64 bytes"));
    }
    let applied = state.chat.transfer(&me, &id, req.to_agent.as_deref(), req.to_group.as_deref()).await?;
    Ok(Json(ConversationView::from(&applied.conversation)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VisitorChange {
    /// 1 to 200 bytes; absent: unchanged.
    #[serde(default)]
    name: Option<String>,
    /// A valid address, at most 254 bytes; absent: unchanged.
    #[serde(default)]
    email: Option<String>,
}

/// Set a visitor's name or email (what the pre-chat form asks); recorded in
/// the audit log.
#[utoipa::path(patch, path = "/api/v1/visitors/{id}", tag = "visitors", params(("id" = String, Path)),
    request_body = VisitorChange, responses((status = 200, description = "The visitor", body = Visitor)))]
async fn update_visitor(
    State(state): State<AppState>,
    AgentAuth(me): AgentAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(change): ApiJson<VisitorChange>,
) -> Result<Json<Visitor>> {
    let blank = |v: &Option<String>| v.as_ref().is_some_and(|v| v.trim().is_empty());
    if blank(&change.name) || blank(&change.email) {
        return Err(Error::bad_request("name and email, when given, must not be empty"));
    }
    let update = VisitorUpdate {
        name: clean_field(change.name, 200, "name")?,
        email: clean_field(change.email, 254, "email")?,
        not_seen: true,
        ..Default::default()
    };
    if update.email.as_deref().is_some_and(|e| !crate::auth::valid_email(e)) {
        return Err(Error::bad_request("email is not a valid address"));
    }
    let of_site = |v: Option<Visitor>| v.filter(|v| v.site_id == me.site_id).ok_or(Error::NotFound("visitor"));
    let before = of_site(if id.len() <= 64 { state.store.visitor(&id).await? } else { None })?;
    state.store.update_visitor(&before.id, update).await?;
    let after = of_site(state.store.visitor(&before.id).await?)?;
    let fields = |v: &Visitor| json_of(&serde_json::json!({"name": v.name, "email": v.email}));
    audit(&state, &me, "visitor.changed", Some(&after.id), fields(&before), fields(&after)).await;
    Ok(Json(after))
}
