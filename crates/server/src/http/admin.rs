//! Admin API behind the console's admin pages. Every route takes
//! `AdminAuth`, so the role is checked on the server for every action, and
//! everything is scoped to the admin's own site (`admin` re-checks both).
//! Canned responses are also readable by every agent, for `/shortcut`
//! completion.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{AdminAuth, AgentAuth, ApiJson, ApiPath, ApiQuery};
use super::page;
use crate::admin::greetings::{self, GreetingInput};
use crate::admin::invitations::{self, AcceptRequest, InviteRequest};
use crate::admin::{self, AgentChange, GroupChange, GroupNow, GroupView, NewAgentRequest, WidgetSettings};
use crate::app::AppState;
use crate::auth::AgentProfile;
use crate::chat::service::AgentCtx;
use crate::error::{Error, Result};
use crate::hours::Schedule;
use crate::store::audit::AuditEntry;
use crate::store::greetings::GreetingRule;
use crate::store::invitations::Invitation;
use crate::store::{CannedResponse, Group};
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/site", get(site).patch(rename_site))
        .route("/api/v1/me/password", post(change_password))
        .route("/api/v1/admin/site/settings", put(set_settings))
        .route("/api/v1/admin/site/hours", put(set_site_hours))
        .route("/api/v1/admin/agents", get(agents).post(create_agent))
        .route("/api/v1/admin/agents/{id}", patch(update_agent))
        .route("/api/v1/admin/invitations", get(invitations).post(invite))
        .route("/api/v1/admin/invitations/{id}", delete(revoke_invitation))
        .route("/api/v1/invitations/accept", post(accept_invitation))
        .route("/api/v1/admin/groups", get(groups).post(create_group))
        .route("/api/v1/admin/groups/{id}", patch(update_group).delete(delete_group))
        .route("/api/v1/admin/groups/{id}/members", post(add_member))
        .route("/api/v1/admin/groups/{id}/members/{agent_id}", delete(remove_member))
        .route("/api/v1/me/lead-emails", put(set_lead_emails))
        .route("/api/v1/admin/canned", post(create_canned))
        .route("/api/v1/admin/canned/{id}", delete(delete_canned).patch(update_canned))
        .route("/api/v1/canned", get(canned))
        .route("/api/v1/groups", get(site_groups))
        .route("/api/v1/admin/deliveries", get(deliveries))
        .route("/api/v1/admin/deliveries/{id}/retry", post(retry_delivery))
        .route("/api/v1/admin/audit", get(audit_log))
        .route("/api/v1/admin/greetings", get(greeting_rules).post(create_greeting))
        .route("/api/v1/admin/greetings/{id}", put(update_greeting).delete(delete_greeting))
        .route("/api/v1/admin/visitors/{id}/export", get(export_visitor))
        .route("/api/v1/admin/visitors/{id}/erase", post(erase_visitor))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    site,
    rename_site,
    change_password,
    set_settings,
    set_site_hours,
    agents,
    create_agent,
    update_agent,
    invitations,
    invite,
    revoke_invitation,
    accept_invitation,
    groups,
    create_group,
    update_group,
    delete_group,
    add_member,
    remove_member,
    set_lead_emails,
    create_canned,
    update_canned,
    delete_canned,
    canned,
    site_groups,
    deliveries,
    retry_delivery,
    audit_log,
    greeting_rules,
    create_greeting,
    update_greeting,
    delete_greeting,
    export_visitor,
    erase_visitor
))]
pub(super) struct Api;

/// The site's proactive greeting rules, each with its greetings shown and
/// chats started.
#[utoipa::path(get, path = "/api/v1/admin/greetings", tag = "site",
    responses((status = 200, description = "The rules", body = Vec<GreetingRule>)))]
async fn greeting_rules(State(state): State<AppState>, AdminAuth(me): AdminAuth) -> Result<Json<Vec<GreetingRule>>> {
    Ok(Json(greetings::list(state.store.as_ref(), &me).await?))
}

#[utoipa::path(post, path = "/api/v1/admin/greetings", tag = "site", request_body = GreetingInput,
    responses((status = 201, description = "Made", body = GreetingRule)))]
async fn create_greeting(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiJson(input): ApiJson<GreetingInput>,
) -> Result<(StatusCode, Json<GreetingRule>)> {
    let rule = greetings::create(state.store.as_ref(), &me, input).await?;
    audit(&state, &me, "greeting.created", Some(&rule.id), None, json_of(&rule)).await;
    Ok((StatusCode::CREATED, Json(rule)))
}

/// Replace a rule (all of it, as when it was made); its counts stay.
#[utoipa::path(put, path = "/api/v1/admin/greetings/{id}", tag = "site", params(("id" = String, Path)), request_body = GreetingInput,
    responses((status = 200, description = "Replaced", body = GreetingRule)))]
async fn update_greeting(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<GreetingInput>,
) -> Result<Json<GreetingRule>> {
    let (before, after) = greetings::update(state.store.as_ref(), &me, &id, input).await?;
    audit(&state, &me, "greeting.changed", Some(&id), json_of(&before), json_of(&after)).await;
    Ok(Json(after))
}

#[utoipa::path(delete, path = "/api/v1/admin/greetings/{id}", tag = "site", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted")))]
async fn delete_greeting(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode> {
    let before = greetings::delete(state.store.as_ref(), &me, &id).await?;
    audit(&state, &me, "greeting.deleted", Some(&id), json_of(&before), None).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Erase a visitor of the admin's site for good (`privacy`); audited.
#[utoipa::path(post, path = "/api/v1/admin/visitors/{id}/erase", tag = "visitors", params(("id" = String, Path)),
    responses((status = 200, description = "What was erased", body = ErasedVisitor)))]
async fn erase_visitor(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ErasedVisitor>> {
    let erased = crate::privacy::erase_visitor(state.store.as_ref(), &me.site_id, &id).await?;
    audit(&state, &me, "visitor.erased", Some(&id), None, json_of(&erased)).await;
    Ok(Json(ErasedVisitor { erased }))
}

/// What erasing a visitor did.
#[derive(Serialize, ToSchema)]
struct ErasedVisitor {
    erased: crate::store::erasure::Erased,
}

/// Everything kept about one visitor of the admin's site, as one JSON
/// document to download (`privacy`); recorded in the audit log.
#[utoipa::path(get, path = "/api/v1/admin/visitors/{id}/export", tag = "visitors", params(("id" = String, Path)),
    responses((status = 200, description = "The visitor's data, as a file to download",
        body = crate::privacy::VisitorExport)))]
async fn export_visitor(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Response> {
    let document = crate::privacy::export_visitor(state.store.as_ref(), &me.site_id, &id).await?;
    audit(&state, &me, "visitor.exported", Some(&id), None, None).await;
    let file = format!(
        "attachment; filename=\"visitor-{}.json\"",
        id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "")
    );
    let disposition = header::HeaderValue::from_str(&file).unwrap_or(header::HeaderValue::from_static("attachment"));
    Ok((
        [
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, header::HeaderValue::from_static("no-store")),
        ],
        Json(document),
    )
        .into_response())
}

/// Record an admin action (`audit`).
pub(super) async fn audit(
    state: &AppState,
    me: &AgentCtx,
    name: &str,
    target: Option<&str>,
    before: Option<Value>,
    after: Option<Value>,
) {
    let action = crate::audit::Action { name, target, before, after };
    crate::audit::record(state.store.as_ref(), me, action).await;
}

pub(super) fn json_of(value: &impl Serialize) -> Option<Value> {
    serde_json::to_value(value).ok()
}

/// The operator's actions (the status page's incidents, components,
/// maintenances, monitors; sites) are recorded here, around their
/// handlers: what was asked (the JSON body, secrets redacted) once it
/// succeeded. Their values before are the status page's own history.
pub(super) async fn audit_operator(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let operator_route = path.starts_with("/api/v1/status/") || path.starts_with("/api/v1/operator/");
    if !operator_route || matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let token = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let who = token.and_then(|t| t.strip_prefix("Bearer ")).and_then(|t| state.auth.verify_agent(t.trim()).ok());
    let Some(claims) = who else { return next.run(req).await };
    let method = req.method().clone();
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, state.config.max_body_bytes).await else {
        return Error::TooLarge("the request body is too large".into()).into_response();
    };
    let asked: Option<Value> = serde_json::from_slice(&bytes).ok();
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    if response.status().is_success() {
        let me = AgentCtx {
            agent_id: claims.sub,
            site_id: claims.site,
            session_id: claims.sid,
            role: claims.role,
            api_token: None,
        };
        audit(&state, &me, &format!("{method} {path}"), Some(&path), None, asked).await;
    }
    response
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Entries made before this time (Unix ms); `cursor` pages exactly.
    before: Option<i64>,
    /// 1 to 500 (default 100).
    limit: Option<i64>,
    /// The `Next-Cursor` of the previous page.
    cursor: Option<String>,
}

/// The site's audit log, newest first, a page at a time (`Next-Cursor`).
#[utoipa::path(get, path = "/api/v1/admin/audit", tag = "site", params(AuditQuery),
    responses((status = 200, description = "Entries, newest first", body = Vec<AuditEntry>,
        headers(("Next-Cursor" = String, description = "The next page's `cursor`; absent on the last page")))))]
async fn audit_log(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Response> {
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let after = match (q.cursor.as_deref(), q.before) {
        (Some(_), Some(_)) => return Err(Error::bad_request("give cursor or before, not both")),
        (Some(cursor), None) => Some(page::parse_cursor(cursor)?),
        (None, before) => before.map(|at| (at, String::new())),
    };
    let found = crate::audit::page(state.store.as_ref(), &me, after, limit + 1).await?;
    let (found, next) = page::split(found, limit, |e| (e.at, &e.id));
    Ok(page::array_page(found, next))
}

#[derive(Serialize, ToSchema)]
struct SiteView {
    id: String,
    name: String,
    widget_key: String,
    settings: WidgetSettings,
    /// Whether email is configured: invitations need it.
    mail_enabled: bool,
}

/// The admin's site and its settings.
#[utoipa::path(get, path = "/api/v1/admin/site", tag = "site",
    responses((status = 200, description = "The site", body = SiteView)))]
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SiteChange {
    name: String,
}

/// Rename the site.
#[utoipa::path(patch, path = "/api/v1/admin/site", tag = "site", request_body = SiteChange,
    responses((status = 200, description = "The site", body = SiteView)))]
async fn rename_site(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiJson(change): ApiJson<SiteChange>,
) -> Result<Json<SiteView>> {
    let before = state.store.site(&me.site_id).await?.map(|s| Value::String(s.name));
    admin::rename_site(state.store.as_ref(), &me, &change.name).await?;
    state.chat.site_changed(&me.site_id).await;
    let view = site(State(state.clone()), AdminAuth(me.clone())).await?;
    audit(&state, &me, "site.renamed", Some(&me.site_id), before, Some(Value::String(view.name.clone()))).await;
    Ok(view)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// `204`, and every session of the agent ends (this one too).
#[utoipa::path(post, path = "/api/v1/me/password", tag = "auth", request_body = PasswordChange,
    security(("access_token" = [])), responses((status = 204, description = "Changed")))]
async fn change_password(
    State(state): State<AppState>,
    AgentAuth(me): AgentAuth,
    ApiJson(change): ApiJson<PasswordChange>,
) -> Result<StatusCode> {
    admin::change_own_password(&state.auth, &state.chat, &me, &change.current_password, &change.new_password).await?;
    audit(&state, &me, "password.changed_own", Some(&me.agent_id), None, None).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Replace the site's settings (the widget's look, texts, limits, ...).
#[utoipa::path(put, path = "/api/v1/admin/site/settings", tag = "site", request_body = WidgetSettings,
    responses((status = 200, description = "The settings as kept", body = WidgetSettings)))]
async fn set_settings(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiJson(settings): ApiJson<WidgetSettings>,
) -> Result<Json<WidgetSettings>> {
    let before = state.store.site(&me.site_id).await?.map(|s| WidgetSettings::from_stored(&s.settings));
    let settings = admin::set_settings(state.store.as_ref(), &me, settings).await?;
    audit(&state, &me, "settings.changed", Some(&me.site_id), before.as_ref().and_then(json_of), json_of(&settings))
        .await;
    // New flood limits hold on this node at once (elsewhere within 10 s),
    // new settings for new sessions too (elsewhere within 1 s).
    state.chat.floodgate.forget(&me.site_id);
    state.chat.site_changed(&me.site_id).await;
    Ok(Json(settings))
}

/// The site's business hours (a `hours::Schedule`), or `null` for always
/// open; every other setting stays. Answers the settings.
#[utoipa::path(put, path = "/api/v1/admin/site/hours", tag = "site", request_body = Option<Schedule>,
    responses((status = 200, description = "The settings", body = WidgetSettings)))]
async fn set_site_hours(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiJson(hours): ApiJson<Option<Schedule>>,
) -> Result<Json<WidgetSettings>> {
    let (before, after) = admin::set_site_hours(state.store.as_ref(), &me, hours).await?;
    state.chat.site_changed(&me.site_id).await;
    audit(&state, &me, "hours.changed", Some(&me.site_id), json_of(&before.hours), json_of(&after.hours)).await;
    Ok(Json(after))
}

/// The site's agents, for the admin.
#[utoipa::path(get, path = "/api/v1/admin/agents", tag = "agents",
    responses((status = 200, description = "The agents", body = Vec<AgentProfile>)))]
async fn agents(State(state): State<AppState>, AdminAuth(me): AdminAuth) -> Result<Json<Vec<AgentProfile>>> {
    Ok(Json(state.store.agents(&me.site_id).await?.into_iter().map(Into::into).collect()))
}

/// Make an agent with a password.
#[utoipa::path(post, path = "/api/v1/admin/agents", tag = "agents", request_body = NewAgentRequest,
    responses((status = 201, description = "Made", body = AgentProfile)))]
async fn create_agent(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiJson(req): ApiJson<NewAgentRequest>,
) -> Result<(StatusCode, Json<AgentProfile>)> {
    let agent: AgentProfile = admin::create_agent(&state.auth, state.store.as_ref(), &me, req).await?.into();
    audit(&state, &me, "agent.created", Some(&agent.id), None, json_of(&agent)).await;
    Ok((StatusCode::CREATED, Json(agent)))
}

/// `202`: the invitation is made and its email queued. The answer is the
/// same whether or not the address has an account on another site.
#[utoipa::path(post, path = "/api/v1/admin/invitations", tag = "agents", request_body = InviteRequest,
    responses((status = 202, description = "Invited", body = Invitation)))]
async fn invite(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiJson(req): ApiJson<InviteRequest>,
) -> Result<(StatusCode, Json<Invitation>)> {
    let invitation = invitations::invite(state.store.as_ref(), &state.outbox, &me, req).await?;
    audit(&state, &me, "invitation.sent", Some(&invitation.id), None, json_of(&invitation)).await;
    Ok((StatusCode::ACCEPTED, Json(invitation)))
}

/// The open invitations.
#[utoipa::path(get, path = "/api/v1/admin/invitations", tag = "agents",
    responses((status = 200, description = "The invitations", body = Vec<Invitation>)))]
async fn invitations(State(state): State<AppState>, AdminAuth(me): AdminAuth) -> Result<Json<Vec<Invitation>>> {
    Ok(Json(invitations::open(state.store.as_ref(), &me).await?))
}

/// Revoke an open invitation.
#[utoipa::path(delete, path = "/api/v1/admin/invitations/{id}", tag = "agents", params(("id" = String, Path)),
    responses((status = 204, description = "Revoked")))]
async fn revoke_invitation(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode> {
    invitations::revoke(state.store.as_ref(), &me, &id).await?;
    audit(&state, &me, "invitation.revoked", Some(&id), None, None).await;
    Ok(StatusCode::NO_CONTENT)
}

/// No credential but the link's token: `201` and the new agent, who then
/// logs in with their email and this password.
#[utoipa::path(post, path = "/api/v1/invitations/accept", tag = "agents", security(()),
    request_body = AcceptRequest, responses((status = 201, description = "The new agent", body = AgentProfile)))]
async fn accept_invitation(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<AcceptRequest>,
) -> Result<(StatusCode, Json<AgentProfile>)> {
    let agent = invitations::accept(&state.auth, state.store.as_ref(), req).await?;
    Ok((StatusCode::CREATED, Json(agent.into())))
}

/// Rename a group, set its email or its own hours.
#[utoipa::path(patch, path = "/api/v1/admin/groups/{id}", tag = "groups", params(("id" = String, Path)), request_body = GroupChange,
    responses((status = 200, description = "The group", body = Group)))]
async fn update_group(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(change): ApiJson<GroupChange>,
) -> Result<Json<Group>> {
    let (before, after) = admin::update_group(state.store.as_ref(), &me, &id, change).await?;
    audit(&state, &me, "group.changed", Some(&id), json_of(&before), json_of(&after)).await;
    Ok(Json(after))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LeadEmails {
    on: bool,
}

/// Any agent: whether the site's lead emails (offline messages, missed
/// chats) go to them. Answers their profile.
#[utoipa::path(put, path = "/api/v1/me/lead-emails", tag = "auth", request_body = LeadEmails,
    security(("access_token" = [])), responses((status = 200, description = "The agent", body = AgentProfile)))]
async fn set_lead_emails(
    State(state): State<AppState>,
    AgentAuth(me): AgentAuth,
    ApiJson(choice): ApiJson<LeadEmails>,
) -> Result<Json<AgentProfile>> {
    Ok(Json(admin::set_own_lead_emails(state.store.as_ref(), &me, choice.on).await?.into()))
}

/// Rename, change the role, limit or password, deactivate or reactivate.
#[utoipa::path(patch, path = "/api/v1/admin/agents/{id}", tag = "agents", params(("id" = String, Path)), request_body = AgentChange,
    responses((status = 200, description = "The agent", body = AgentProfile)))]
async fn update_agent(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(change): ApiJson<AgentChange>,
) -> Result<Json<AgentProfile>> {
    let before = state.store.agent(&id).await?.filter(|a| a.site_id == me.site_id).map(AgentProfile::from);
    let name = if change.password.is_some() { "agent.password_reset" } else { "agent.changed" };
    let after: AgentProfile = admin::update_agent(&state.auth, &state.chat, &me, &id, change).await?.into();
    audit(&state, &me, name, Some(&id), before.as_ref().and_then(json_of), json_of(&after)).await;
    Ok(Json(after))
}

/// The site's groups with their members.
#[utoipa::path(get, path = "/api/v1/admin/groups", tag = "groups",
    responses((status = 200, description = "The groups", body = Vec<GroupView>)))]
async fn groups(State(state): State<AppState>, AdminAuth(me): AdminAuth) -> Result<Json<Vec<GroupView>>> {
    Ok(Json(admin::groups(state.store.as_ref(), &me).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewGroup {
    name: String,
}

#[utoipa::path(post, path = "/api/v1/admin/groups", tag = "groups", request_body = NewGroup,
    responses((status = 201, description = "Made", body = Group)))]
async fn create_group(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiJson(req): ApiJson<NewGroup>,
) -> Result<(StatusCode, Json<Group>)> {
    let group = admin::create_group(state.store.as_ref(), &me, &req.name).await?;
    audit(&state, &me, "group.created", Some(&group.id), None, json_of(&group)).await;
    Ok((StatusCode::CREATED, Json(group)))
}

/// Delete a group (soft): 204; the chats queued for it moved to the
/// site's default queue, as the audit entry records.
#[utoipa::path(delete, path = "/api/v1/admin/groups/{id}", tag = "groups", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted; its queued chats moved to the default queue")))]
async fn delete_group(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode> {
    let (group, moved) = state.chat.delete_group(&me, &id).await?;
    let detail = json!({"name": group.name, "moved_conversations": moved});
    audit(&state, &me, "group.deleted", Some(&group.id), json_of(&group), Some(detail)).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewMember {
    agent_id: String,
}

/// Add an agent of the site to a group.
#[utoipa::path(post, path = "/api/v1/admin/groups/{id}/members", tag = "groups", params(("id" = String, Path)), request_body = NewMember,
    responses((status = 204, description = "Added")))]
async fn add_member(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<NewMember>,
) -> Result<StatusCode> {
    admin::add_to_group(state.store.as_ref(), &me, &id, &req.agent_id).await?;
    audit(&state, &me, "group.member_added", Some(&id), None, Some(json!({"agent_id": req.agent_id}))).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Take an agent out of a group.
#[utoipa::path(delete, path = "/api/v1/admin/groups/{id}/members/{agent_id}", tag = "groups",
    params(("id" = String, Path), ("agent_id" = String, Path)), responses((status = 204, description = "Removed")))]
async fn remove_member(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiPath((id, agent_id)): ApiPath<(String, String)>,
) -> Result<StatusCode> {
    admin::remove_from_group(state.store.as_ref(), &me, &id, &agent_id).await?;
    audit(&state, &me, "group.member_removed", Some(&id), Some(json!({"agent_id": agent_id})), None).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Change a canned response.
#[utoipa::path(patch, path = "/api/v1/admin/canned/{id}", tag = "canned", params(("id" = String, Path)), request_body = NewCanned,
    responses((status = 200, description = "Changed", body = CannedResponse)))]
async fn update_canned(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<NewCanned>,
) -> Result<Json<CannedResponse>> {
    let before = state.store.canned_responses(&me.site_id).await?.into_iter().find(|c| c.id == id);
    let after = admin::update_canned(state.store.as_ref(), &me, &id, &req.shortcut, &req.body).await?;
    audit(&state, &me, "canned.changed", Some(&id), before.as_ref().and_then(json_of), json_of(&after)).await;
    Ok(Json(after))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewCanned {
    shortcut: String,
    body: String,
}

#[utoipa::path(post, path = "/api/v1/admin/canned", tag = "canned", request_body = NewCanned,
    responses((status = 201, description = "Made", body = CannedResponse)))]
async fn create_canned(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiJson(req): ApiJson<NewCanned>,
) -> Result<(StatusCode, Json<CannedResponse>)> {
    let canned = admin::create_canned(state.store.as_ref(), &me, &req.shortcut, &req.body).await?;
    audit(&state, &me, "canned.created", Some(&canned.id), None, json_of(&canned)).await;
    Ok((StatusCode::CREATED, Json(canned)))
}

/// Delete a canned response.
#[utoipa::path(delete, path = "/api/v1/admin/canned/{id}", tag = "canned", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted")))]
async fn delete_canned(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode> {
    let before = state.store.canned_responses(&me.site_id).await?.into_iter().find(|c| c.id == id);
    admin::delete_canned(state.store.as_ref(), &me, &id).await?;
    audit(&state, &me, "canned.deleted", Some(&id), before.as_ref().and_then(json_of), None).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Every agent of the site may read the canned responses.
#[utoipa::path(get, path = "/api/v1/canned", tag = "canned",
    responses((status = 200, description = "The canned responses", body = Vec<CannedResponse>)))]
async fn canned(State(state): State<AppState>, AgentAuth(me): AgentAuth) -> Result<Json<Vec<CannedResponse>>> {
    Ok(Json(state.store.canned_responses(&me.site_id).await?))
}

/// The site's groups, for every agent (transfers name them), each with
/// whether it is open now; members are the admin's business.
#[utoipa::path(get, path = "/api/v1/groups", tag = "groups",
    responses((status = 200, description = "The groups", body = Vec<GroupNow>)))]
async fn site_groups(State(state): State<AppState>, AgentAuth(me): AgentAuth) -> Result<Json<Vec<GroupNow>>> {
    Ok(Json(admin::groups_now(state.store.as_ref(), &me.site_id).await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeliveriesQuery {
    /// `queued`, `sent` or `failed`.
    status: Option<String>,
    /// 1 to 1000 (default 100).
    limit: Option<i64>,
    /// The `Next-Cursor` of the previous page.
    cursor: Option<String>,
}

/// The outbox of the admin's site: queued, sent and failed deliveries with
/// their attempts and last error, a page at a time (`Next-Cursor`).
#[utoipa::path(get, path = "/api/v1/admin/deliveries", tag = "integrations", params(DeliveriesQuery),
    responses((status = 200, description = "Deliveries, newest first", body = Vec<crate::outbox::DeliveryView>,
        headers(("Next-Cursor" = String, description = "The next page's `cursor`; absent on the last page")))))]
async fn deliveries(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> Result<Response> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let before = q.cursor.as_deref().map(page::parse_cursor).transpose()?;
    let found = state.outbox.list(&me, q.status.as_deref(), None, before, limit + 1).await?;
    let (found, next) = page::split(found, limit, |d| (d.delivery.created_at, &d.delivery.id));
    Ok(page::array_page(found, next))
}

/// Send a delivery again, now.
#[utoipa::path(post, path = "/api/v1/admin/deliveries/{id}/retry", tag = "integrations", params(("id" = String, Path)),
    responses((status = 202, description = "Queued to be sent now")))]
async fn retry_delivery(
    State(state): State<AppState>,
    AdminAuth(me): AdminAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode> {
    state.outbox.retry(&me, &id).await?;
    audit(&state, &me, "delivery.retried", Some(&id), None, None).await;
    Ok(StatusCode::ACCEPTED)
}
