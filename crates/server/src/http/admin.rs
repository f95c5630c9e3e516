//! Admin API behind the console's admin pages. Every route takes
//! `AdminAuth`, so the role is checked on the server for every action, and
//! everything is scoped to the admin's own site (`admin` re-checks both).
//! Canned responses are also readable by every agent, for `/shortcut`
//! completion.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::extract::{AdminAuth, AgentAuth, ApiJson, ApiQuery};
use crate::admin::invitations::{self, AcceptRequest, InviteRequest};
use crate::admin::{self, AgentChange, GroupChange, GroupView, NewAgentRequest, WidgetSettings};
use crate::app::AppState;
use crate::auth::AgentProfile;
use crate::error::{Error, Result};
use crate::store::invitations::Invitation;
use crate::store::{CannedResponse, Group};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/site", get(site).patch(rename_site))
        .route("/api/v1/me/password", post(change_password))
        .route("/api/v1/admin/site/settings", put(set_settings))
        .route("/api/v1/admin/agents", get(agents).post(create_agent))
        .route("/api/v1/admin/agents/{id}", patch(update_agent))
        .route("/api/v1/admin/invitations", get(invitations).post(invite))
        .route("/api/v1/admin/invitations/{id}", delete(revoke_invitation))
        .route("/api/v1/invitations/accept", post(accept_invitation))
        .route("/api/v1/admin/groups", get(groups).post(create_group))
        .route("/api/v1/admin/groups/{id}", patch(update_group))
        .route("/api/v1/admin/groups/{id}/members", post(add_member))
        .route("/api/v1/me/lead-emails", put(set_lead_emails))
        .route("/api/v1/admin/canned", post(create_canned))
        .route("/api/v1/admin/canned/{id}", delete(delete_canned))
        .route("/api/v1/canned", get(canned))
        .route("/api/v1/groups", get(site_groups))
        .route("/api/v1/admin/deliveries", get(deliveries))
        .route("/api/v1/admin/deliveries/{id}/retry", post(retry_delivery))
}

#[derive(Serialize)]
struct SiteView {
    id: String,
    name: String,
    widget_key: String,
    settings: WidgetSettings,
    /// Whether email is configured: invitations need it.
    mail_enabled: bool,
}

async fn site(State(state): State<AppState>, AdminAuth(me): AdminAuth) -> Result<Json<SiteView>> {
    let site = state.store.site(&me.site_id).await?.ok_or(Error::NotFound("site"))?;
    Ok(Json(SiteView {
        settings: WidgetSettings::from_stored(&site.settings),
        id: site.id,
        name: site.name,
        widget_key: site.widget_key,
        mail_enabled: state.outbox.mail_enabled(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteChange {
    name: String,
}

async fn rename_site(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiJson(change): ApiJson<SiteChange>,
) -> Result<Json<SiteView>> {
    admin::rename_site(state.store.as_ref(), &me, &change.name).await?;
    site(State(state), AdminAuth(me)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// `204`, and every session of the agent ends (this one too).
async fn change_password(
    State(state): State<AppState>,
    AgentAuth(me): AgentAuth,
    ApiJson(change): ApiJson<PasswordChange>,
) -> Result<StatusCode> {
    admin::change_own_password(&state.auth, &state.chat, &me, &change.current_password, &change.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_settings(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiJson(settings): ApiJson<WidgetSettings>,
) -> Result<Json<WidgetSettings>> {
    let settings = admin::set_settings(state.store.as_ref(), &me, settings).await?;
    // New flood limits hold on this node at once (elsewhere within 10 s).
    state.chat.floodgate.forget(&me.site_id);
    Ok(Json(settings))
}

async fn agents(State(state): State<AppState>, AdminAuth(me): AdminAuth) -> Result<Json<Vec<AgentProfile>>> {
    Ok(Json(state.store.agents(&me.site_id).await?.into_iter().map(Into::into).collect()))
}

async fn create_agent(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiJson(req): ApiJson<NewAgentRequest>,
) -> Result<(StatusCode, Json<AgentProfile>)> {
    let agent = admin::create_agent(&state.auth, state.store.as_ref(), &me, req).await?;
    Ok((StatusCode::CREATED, Json(agent.into())))
}

/// `202`: the invitation is made and its email queued. The answer is the
/// same whether or not the address has an account on another site.
async fn invite(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiJson(req): ApiJson<InviteRequest>,
) -> Result<(StatusCode, Json<Invitation>)> {
    let invitation = invitations::invite(state.store.as_ref(), &state.outbox, &me, req).await?;
    Ok((StatusCode::ACCEPTED, Json(invitation)))
}

async fn invitations(State(state): State<AppState>, AdminAuth(me): AdminAuth) -> Result<Json<Vec<Invitation>>> {
    Ok(Json(invitations::open(state.store.as_ref(), &me).await?))
}

async fn revoke_invitation(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    invitations::revoke(state.store.as_ref(), &me, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// No credential but the link's token: `201` and the new agent, who then
/// logs in with their email and this password.
async fn accept_invitation(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<AcceptRequest>,
) -> Result<(StatusCode, Json<AgentProfile>)> {
    let agent = invitations::accept(&state.auth, state.store.as_ref(), req).await?;
    Ok((StatusCode::CREATED, Json(agent.into())))
}

async fn update_group(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    Path(id): Path<String>,
    ApiJson(change): ApiJson<GroupChange>,
) -> Result<Json<Group>> {
    Ok(Json(admin::update_group(state.store.as_ref(), &me, &id, change).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeadEmails {
    on: bool,
}

/// Any agent: whether the site's lead emails (offline messages, missed
/// chats) go to them. Answers their profile.
async fn set_lead_emails(
    State(state): State<AppState>,
    AgentAuth(me): AgentAuth,
    ApiJson(choice): ApiJson<LeadEmails>,
) -> Result<Json<AgentProfile>> {
    Ok(Json(admin::set_own_lead_emails(state.store.as_ref(), &me, choice.on).await?.into()))
}

async fn update_agent(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    Path(id): Path<String>,
    ApiJson(change): ApiJson<AgentChange>,
) -> Result<Json<AgentProfile>> {
    Ok(Json(admin::update_agent(&state.auth, &state.chat, &me, &id, change).await?.into()))
}

async fn groups(State(state): State<AppState>, AdminAuth(me): AdminAuth) -> Result<Json<Vec<GroupView>>> {
    Ok(Json(admin::groups(state.store.as_ref(), &me).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGroup {
    name: String,
}

async fn create_group(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiJson(req): ApiJson<NewGroup>,
) -> Result<(StatusCode, Json<Group>)> {
    Ok((StatusCode::CREATED, Json(admin::create_group(state.store.as_ref(), &me, &req.name).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMember {
    agent_id: String,
}

async fn add_member(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<NewMember>,
) -> Result<StatusCode> {
    admin::add_to_group(state.store.as_ref(), &me, &id, &req.agent_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCanned {
    shortcut: String,
    body: String,
}

async fn create_canned(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiJson(req): ApiJson<NewCanned>,
) -> Result<(StatusCode, Json<CannedResponse>)> {
    let canned = admin::create_canned(state.store.as_ref(), &me, &req.shortcut, &req.body).await?;
    Ok((StatusCode::CREATED, Json(canned)))
}

async fn delete_canned(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    admin::delete_canned(state.store.as_ref(), &me, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every agent of the site may read the canned responses.
async fn canned(State(state): State<AppState>, AgentAuth(me): AgentAuth) -> Result<Json<Vec<CannedResponse>>> {
    Ok(Json(state.store.canned_responses(&me.site_id).await?))
}

/// The site's groups, for every agent (transfers name them); members are
/// the admin's business.
async fn site_groups(State(state): State<AppState>, AgentAuth(me): AgentAuth) -> Result<Json<Vec<Group>>> {
    Ok(Json(state.store.groups(&me.site_id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    status: Option<String>,
    limit: Option<i64>,
}

/// The outbox of the admin's site: queued, sent and failed deliveries with
/// their attempts and last error.
async fn deliveries(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> Result<Json<Vec<crate::outbox::DeliveryView>>> {
    Ok(Json(state.outbox.list(&me, q.status.as_deref(), q.limit.unwrap_or(100)).await?))
}

/// Send a delivery again, now.
async fn retry_delivery(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    state.outbox.retry(&me, &id).await?;
    Ok(StatusCode::ACCEPTED)
}
