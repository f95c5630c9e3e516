//! The status page over HTTP, in a lane of its own (a concurrency limit
//! shared by these routes only, so a rush on the status page during an
//! incident waits here and never takes capacity from chat or login).
//!
//! Public: `/status` (HTML), incident pages, Atom/RSS feeds, the compatible
//! read-only API under `/api/v2/` (any origin may read it; short public
//! caching keeps an incident-time spike cheap), subscribing (limited per
//! client address). The installation's operator (never a site's admin: the
//! page belongs to whoever runs the installation): components, incidents,
//! maintenances, postmortems, monitors and subscribers under
//! `/api/v1/status/`.

use axum::extract::rejection::FormRejection;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::{Form, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use super::extract::{ApiJson, ApiPath, ClientIp, OperatorAuth};
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::status::api::{self, IncidentView, SubscriberView, Summary};
use crate::status::page::{self, UPTIME_DAYS, escape};
use crate::status::time::parse_iso8601;
use crate::status::{IncidentInput, feed};
use crate::store::now_ms;
use crate::store::status::{
    Component, ComponentFields, ComponentStatus, Impact, IncidentKind, IncidentStatus, Monitor,
};

const API_DOC: &str = include_str!("../../../../docs/status-api.md");
/// Public responses may be cached this long by browsers and proxies.
const PUBLIC_CACHE: &str = "public, max-age=10, stale-while-revalidate=30";
const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
                        form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    admin_components,
    create_component,
    update_component,
    admin_incidents,
    admin_incident,
    open_incident,
    schedule_maintenance,
    update_incident,
    resolve_incident,
    postmortem,
    monitors,
    add_monitor,
    delete_monitor,
    subscribers
))]
pub(super) struct Api;

pub fn routes(max_concurrent: usize) -> Router<AppState> {
    let public_api = Router::new()
        .route("/api/v2/summary.json", get(summary))
        .route("/api/v2/status.json", get(status_only))
        .route("/api/v2/components.json", get(components))
        .route("/api/v2/incidents.json", get(incidents))
        .route("/api/v2/incidents/unresolved.json", get(unresolved))
        .route("/api/v2/scheduled-maintenances.json", get(maintenances))
        .route("/api/v2/scheduled-maintenances/upcoming.json", get(upcoming))
        .route("/api/v2/scheduled-maintenances/active.json", get(active))
        .route("/status/history.atom", get(atom))
        .route("/status/history.rss", get(rss))
        .route("/status/api.md", get(api_doc))
        .layer(SetResponseHeaderLayer::overriding(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*")))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static(PUBLIC_CACHE)));
    let pages = Router::new()
        .route("/status", get(status_page))
        .route("/status/", get(status_page))
        .route("/status/status.css", get(stylesheet))
        .route("/status/status.js", get(script))
        .route("/status/incidents/{id}", get(incident_page))
        .route("/status/subscribe", post(subscribe_form))
        .route("/status/subscribers/confirm", get(confirm))
        .route("/status/subscribers/unsubscribe", get(unsubscribe_page).post(unsubscribe))
        .route("/api/v2/subscribers.json", post(subscribe_api))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_CSP),
        ));
    let admin = Router::new()
        .route("/api/v1/status/components", get(admin_components).post(create_component))
        .route("/api/v1/status/components/{id}", patch(update_component))
        .route("/api/v1/status/incidents", get(admin_incidents).post(open_incident))
        .route("/api/v1/status/incidents/{id}", get(admin_incident))
        .route("/api/v1/status/incidents/{id}/updates", post(update_incident))
        .route("/api/v1/status/incidents/{id}/resolve", post(resolve_incident))
        .route("/api/v1/status/incidents/{id}/postmortem", put(postmortem))
        .route("/api/v1/status/maintenances", post(schedule_maintenance))
        .route("/api/v1/status/monitors", get(monitors).post(add_monitor))
        .route("/api/v1/status/monitors/{id}", delete(delete_monitor))
        .route("/api/v1/status/subscribers", get(subscribers))
        .layer(SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    Router::new()
        .merge(public_api)
        .merge(pages)
        .merge(admin)
        .layer(GlobalConcurrencyLimitLayer::new(max_concurrent.max(1)))
}

// ---- the compatible API ----

async fn summary(State(state): State<AppState>) -> Result<Json<Value>> {
    let s = Summary::load(&state.status).await?;
    Ok(Json(s.summary_json(&state.status)))
}

async fn status_only(State(state): State<AppState>) -> Result<Json<Value>> {
    Ok(Json(Summary::load(&state.status).await?.status_json()))
}

async fn components(State(state): State<AppState>) -> Result<Json<Value>> {
    Ok(Json(Summary::load(&state.status).await?.components_json()))
}

async fn incidents(State(state): State<AppState>) -> Result<Json<Value>> {
    let s = Summary::load(&state.status).await?;
    let list = state.status.store.incidents(IncidentKind::Incident, false, 50).await?;
    Ok(Json(s.incidents_json(&state.status, &list)))
}

async fn unresolved(State(state): State<AppState>) -> Result<Json<Value>> {
    let s = Summary::load(&state.status).await?;
    Ok(Json(s.incidents_json(&state.status, &s.incidents)))
}

async fn maintenances(State(state): State<AppState>) -> Result<Json<Value>> {
    let s = Summary::load(&state.status).await?;
    let list = state.status.store.incidents(IncidentKind::Maintenance, false, 50).await?;
    Ok(Json(s.maintenances_json(&state.status, &list)))
}

async fn upcoming(State(state): State<AppState>) -> Result<Json<Value>> {
    let s = Summary::load(&state.status).await?;
    Ok(Json(s.maintenances_json(&state.status, &api::upcoming(&s.maintenances))))
}

async fn active(State(state): State<AppState>) -> Result<Json<Value>> {
    let s = Summary::load(&state.status).await?;
    Ok(Json(s.maintenances_json(&state.status, &api::active(&s.maintenances))))
}

async fn atom(State(state): State<AppState>) -> Result<Response> {
    let list = state.status.store.incidents(IncidentKind::Incident, false, 50).await?;
    Ok(([(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")], feed::atom(&state.status, &list))
        .into_response())
}

async fn rss(State(state): State<AppState>) -> Result<Response> {
    let list = state.status.store.incidents(IncidentKind::Incident, false, 50).await?;
    Ok(([(header::CONTENT_TYPE, "application/rss+xml; charset=utf-8")], feed::rss(&state.status, &list))
        .into_response())
}

async fn api_doc() -> Response {
    ([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], API_DOC).into_response()
}

// ---- the page ----

async fn status_page(State(state): State<AppState>) -> Result<Response> {
    let status = &state.status;
    let summary = Summary::load(status).await?;
    let history = status.store.incidents(IncidentKind::Incident, false, 50).await?;
    let today = now_ms().div_euclid(86_400_000);
    let uptime = status.store.uptime(today - UPTIME_DAYS + 1).await?;
    let html = page::render_status(status, &summary, &history, &uptime, today);
    Ok(([(header::CACHE_CONTROL, PUBLIC_CACHE)], Html(html)).into_response())
}

async fn incident_page(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<Response> {
    if id.len() > 64 {
        return Err(Error::NotFound("incident"));
    }
    let incident = state.status.store.incident(&id).await?.ok_or(Error::NotFound("incident"))?;
    let components = state.status.store.components().await?;
    let html = page::render_incident(&state.status, &incident, &components);
    Ok(([(header::CACHE_CONTROL, PUBLIC_CACHE)], Html(html)).into_response())
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        page::STYLESHEET,
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        page::SCRIPT,
    )
        .into_response()
}

/// A short HTML page for the subscribe/confirm/unsubscribe steps.
fn message_page(code: StatusCode, title: &str, text: &str, extra: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <link rel=\"stylesheet\" href=\"/status/status.css\"></head><body><main><h1>{t}</h1>\
         <section><p>{}</p>{extra}</section><p><a href=\"/status\">Back to the status page</a></p></main></body></html>",
        escape(text),
        t = escape(title)
    );
    (code, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

#[derive(Deserialize)]
struct SubscribeRequest {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    endpoint: Option<String>,
}

/// What a subscribe request asks for: exactly one of email and endpoint.
enum Subscription {
    Email(String),
    Webhook(String),
}

fn subscription(req: SubscribeRequest) -> Result<Subscription> {
    let email = req.email.filter(|e| !e.trim().is_empty());
    let endpoint = req.endpoint.filter(|e| !e.trim().is_empty());
    match (email, endpoint) {
        (Some(e), None) => Ok(Subscription::Email(e)),
        (None, Some(u)) => Ok(Subscription::Webhook(u)),
        _ => Err(Error::bad_request("give either an email or a webhook endpoint")),
    }
}

async fn subscribe_form(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    form: Result<Form<SubscribeRequest>, FormRejection>,
) -> Response {
    let outcome = async {
        state.status.subscribe_limit.check(client)?;
        let Form(req) = form.map_err(|e| Error::bad_request(e.body_text()))?;
        match subscription(req)? {
            Subscription::Email(e) => {
                state.status.subscribe_email(&e).await?;
                Ok::<_, Error>(("Check your inbox", "We sent you a link to confirm your subscription.".to_owned()))
            }
            Subscription::Webhook(u) => {
                let (_, secret) = state.status.subscribe_webhook(&u).await?;
                Ok((
                    "Webhook subscribed",
                    format!("Notifications will be signed with this secret (shown once): {secret}"),
                ))
            }
        }
    }
    .await;
    match outcome {
        Ok((title, text)) => message_page(StatusCode::OK, title, &text, ""),
        Err(e) => {
            let code = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            let text =
                if e.is_server_fault() { "Something went wrong; please retry.".to_owned() } else { e.to_string() };
            let mut page = message_page(code, "Could not subscribe", &text, "");
            if let Some(secs) = e.retry_after() {
                page.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            page
        }
    }
}

async fn subscribe_api(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    ApiJson(req): ApiJson<SubscribeRequest>,
) -> Result<Response> {
    state.status.subscribe_limit.check(client)?;
    let body = match subscription(req)? {
        Subscription::Email(e) => {
            let s = state.status.subscribe_email(&e).await?;
            json!({"subscriber": {"id": s.id, "email": s.target, "mode": "email",
                "confirmed": s.confirmed_at.is_some(), "created_at": crate::status::time::iso8601(s.created_at)}})
        }
        Subscription::Webhook(u) => {
            let (s, secret) = state.status.subscribe_webhook(&u).await?;
            json!({"subscriber": {"id": s.id, "endpoint": s.target, "mode": "webhook", "confirmed": true,
                "created_at": crate::status::time::iso8601(s.created_at)}, "secret": secret})
        }
    };
    Ok((StatusCode::CREATED, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

#[derive(Deserialize)]
struct TokenQuery {
    token: String,
}

async fn confirm(
    State(state): State<AppState>,
    query: Result<axum::extract::Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(q)) = query else {
        return message_page(StatusCode::BAD_REQUEST, "Invalid link", "This link is incomplete.", "");
    };
    match state.status.confirm(&q.token).await {
        Ok(_) => message_page(StatusCode::OK, "Subscription confirmed", "You will get an email on every update.", ""),
        Err(_) => message_page(StatusCode::NOT_FOUND, "Invalid link", "This link is not valid (any more).", ""),
    }
}

async fn unsubscribe_page(
    query: Result<axum::extract::Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(q)) = query else {
        return message_page(StatusCode::BAD_REQUEST, "Invalid link", "This link is incomplete.", "");
    };
    // A button, not a GET that acts: mail scanners follow links.
    let form = format!(
        "<form method=\"post\" action=\"/status/subscribers/unsubscribe\"><input type=\"hidden\" name=\"token\" \
         value=\"{}\"><button type=\"submit\">Unsubscribe</button></form>",
        escape(&q.token)
    );
    message_page(StatusCode::OK, "Unsubscribe", "Stop receiving status updates?", &form)
}

async fn unsubscribe(State(state): State<AppState>, form: Result<Form<TokenQuery>, FormRejection>) -> Response {
    let Ok(Form(q)) = form else {
        return message_page(StatusCode::BAD_REQUEST, "Invalid request", "The unsubscribe token is missing.", "");
    };
    match state.status.unsubscribe(&q.token).await {
        Ok(()) => message_page(StatusCode::OK, "Unsubscribed", "You will not receive status updates any more.", ""),
        Err(_) => {
            message_page(StatusCode::NOT_FOUND, "Invalid link", "This subscription does not exist (any more).", "")
        }
    }
}

// ---- admin ----

fn parse_enum<T>(value: Option<&str>, parse: fn(&str) -> Option<T>, field: &str, choices: String) -> Result<Option<T>> {
    value.map(|v| parse(v).ok_or_else(|| Error::bad_request(format!("{field} must be one of: {choices}")))).transpose()
}

fn parse_time(value: Option<&str>, field: &str) -> Result<Option<i64>> {
    value
        .map(|v| {
            parse_iso8601(v)
                .ok_or_else(|| Error::bad_request(format!("{field} must be an ISO-8601 time with an offset")))
        })
        .transpose()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ComponentRequest {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<Option<String>>,
    #[serde(default)]
    group: Option<Option<String>>,
    #[serde(default)]
    position: Option<i64>,
    #[serde(default)]
    only_show_if_degraded: Option<bool>,
    #[serde(default)]
    status: Option<String>,
}

impl ComponentRequest {
    fn fields(&self) -> ComponentFields {
        ComponentFields {
            name: self.name.clone(),
            description: self.description.clone(),
            group: self.group.clone(),
            position: self.position,
            only_show_if_degraded: self.only_show_if_degraded,
        }
    }
}

/// `{"components": [...]}`.
#[derive(Serialize, utoipa::ToSchema)]
struct ComponentsAnswer {
    components: Vec<Component>,
}

/// `{"component": ...}`.
#[derive(Serialize, utoipa::ToSchema)]
struct ComponentAnswer {
    component: Component,
}

/// The status page's components.
#[utoipa::path(get, path = "/api/v1/status/components", tag = "status", responses((status = 200, description = "The components", body = ComponentsAnswer)))]
async fn admin_components(State(state): State<AppState>, _operator: OperatorAuth) -> Result<Json<ComponentsAnswer>> {
    Ok(Json(ComponentsAnswer { components: state.status.store.components().await? }))
}

/// A new component.
#[utoipa::path(post, path = "/api/v1/status/components", tag = "status", request_body = ComponentRequest, responses((status = 201, description = "Made", body = ComponentAnswer)))]
async fn create_component(
    State(state): State<AppState>,
    _operator: OperatorAuth,
    ApiJson(req): ApiJson<ComponentRequest>,
) -> Result<(StatusCode, Json<ComponentAnswer>)> {
    let status = parse_enum(req.status.as_deref(), ComponentStatus::parse, "status", ComponentStatus::choices())?;
    let name = req.name.clone().ok_or_else(|| Error::bad_request("name is required"))?;
    let mut component = state.status.create_component(&name, req.fields()).await?;
    if let Some(s) = status {
        component = state.status.set_component_status(&component.id, s).await?;
    }
    Ok((StatusCode::CREATED, Json(ComponentAnswer { component })))
}

/// Change a component.
#[utoipa::path(patch, path = "/api/v1/status/components/{id}", tag = "status", params(("id" = String, Path)), request_body = ComponentRequest, responses((status = 200, description = "Changed", body = ComponentAnswer)))]
async fn update_component(
    State(state): State<AppState>,
    _operator: OperatorAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ComponentRequest>,
) -> Result<Json<ComponentAnswer>> {
    let status = parse_enum(req.status.as_deref(), ComponentStatus::parse, "status", ComponentStatus::choices())?;
    let mut component = state.status.update_component(&id, req.fields()).await?;
    if let Some(s) = status {
        component = state.status.set_component_status(&id, s).await?;
    }
    Ok(Json(ComponentAnswer { component }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct IncidentRequest {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    impact: Option<String>,
    #[serde(default)]
    message: Option<String>,
    /// Component id or name → its state now.
    #[serde(default)]
    components: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    scheduled_for: Option<String>,
    #[serde(default)]
    scheduled_until: Option<String>,
}

impl IncidentRequest {
    async fn input(self, state: &AppState) -> Result<IncidentInput> {
        let mut components = Vec::with_capacity(self.components.len());
        if self.components.len() > 100 {
            return Err(Error::bad_request("too many components"));
        }
        for (key, value) in &self.components {
            let c = state.status.find_component(key).await?;
            let s = ComponentStatus::parse(value).ok_or_else(|| {
                Error::bad_request(format!("components.{key} must be one of: {}", ComponentStatus::choices()))
            })?;
            components.push((c.id, s));
        }
        Ok(IncidentInput {
            name: self.name,
            status: parse_enum(self.status.as_deref(), IncidentStatus::parse, "status", IncidentStatus::choices())?,
            impact: parse_enum(self.impact.as_deref(), Impact::parse, "impact", Impact::choices())?,
            message: self.message,
            components,
            scheduled_for: parse_time(self.scheduled_for.as_deref(), "scheduled_for")?,
            scheduled_until: parse_time(self.scheduled_until.as_deref(), "scheduled_until")?,
        })
    }
}

/// One incident or maintenance, and its postmortem (Markdown).
#[derive(Serialize, utoipa::ToSchema)]
struct IncidentAnswer {
    incident: IncidentView,
    postmortem: Option<String>,
}

/// Incidents and scheduled maintenances, newest first.
#[derive(Serialize, utoipa::ToSchema)]
struct IncidentsAnswer {
    incidents: Vec<IncidentView>,
    scheduled_maintenances: Vec<IncidentView>,
}

async fn incident_json(state: &AppState, incident: &crate::store::status::Incident) -> Result<IncidentAnswer> {
    let s = Summary::load(&state.status).await?;
    Ok(IncidentAnswer { incident: s.incident_view(&state.status, incident), postmortem: incident.postmortem.clone() })
}

/// Incidents and scheduled maintenances, newest first.
#[utoipa::path(get, path = "/api/v1/status/incidents", tag = "status", responses((status = 200, description = "The incidents", body = IncidentsAnswer)))]
async fn admin_incidents(State(state): State<AppState>, _operator: OperatorAuth) -> Result<Json<IncidentsAnswer>> {
    let s = Summary::load(&state.status).await?;
    let incidents = state.status.store.incidents(IncidentKind::Incident, false, 200).await?;
    let maintenances = state.status.store.incidents(IncidentKind::Maintenance, false, 200).await?;
    let view =
        |l: &[crate::store::status::Incident]| l.iter().map(|i| s.incident_view(&state.status, i)).collect::<Vec<_>>();
    Ok(Json(IncidentsAnswer { incidents: view(&incidents), scheduled_maintenances: view(&maintenances) }))
}

/// One incident (`{"incident": ..., "postmortem": ...}`).
#[utoipa::path(get, path = "/api/v1/status/incidents/{id}", tag = "status", params(("id" = String, Path)), responses((status = 200, description = "The incident", body = IncidentAnswer)))]
async fn admin_incident(
    State(state): State<AppState>,
    _operator: OperatorAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<IncidentAnswer>> {
    let incident = state.status.store.incident(&id).await?.ok_or(Error::NotFound("incident"))?;
    Ok(Json(incident_json(&state, &incident).await?))
}

/// Open an incident.
#[utoipa::path(post, path = "/api/v1/status/incidents", tag = "status", request_body = IncidentRequest, responses((status = 201, description = "Opened", body = IncidentAnswer)))]
async fn open_incident(
    State(state): State<AppState>,
    _operator: OperatorAuth,
    ApiJson(req): ApiJson<IncidentRequest>,
) -> Result<(StatusCode, Json<IncidentAnswer>)> {
    let input = req.input(&state).await?;
    if input.status.is_some_and(|s| s.kind() != IncidentKind::Incident) {
        return Err(Error::bad_request("status must be investigating, identified, monitoring or resolved"));
    }
    let incident = state.status.open_incident(input, false).await?;
    Ok((StatusCode::CREATED, Json(incident_json(&state, &incident).await?)))
}

/// Schedule a maintenance.
#[utoipa::path(post, path = "/api/v1/status/maintenances", tag = "status", request_body = IncidentRequest, responses((status = 201, description = "Scheduled", body = IncidentAnswer)))]
async fn schedule_maintenance(
    State(state): State<AppState>,
    _operator: OperatorAuth,
    ApiJson(req): ApiJson<IncidentRequest>,
) -> Result<(StatusCode, Json<IncidentAnswer>)> {
    let mut input = req.input(&state).await?;
    match input.status {
        None => input.status = Some(IncidentStatus::Scheduled),
        Some(s) if s.kind() == IncidentKind::Maintenance => {}
        Some(_) => return Err(Error::bad_request("status must be scheduled, in_progress, verifying or completed")),
    }
    let incident = state.status.open_incident(input, false).await?;
    Ok((StatusCode::CREATED, Json(incident_json(&state, &incident).await?)))
}

/// Post an update to an incident.
#[utoipa::path(post, path = "/api/v1/status/incidents/{id}/updates", tag = "status", params(("id" = String, Path)), request_body = IncidentRequest, responses((status = 200, description = "Updated", body = IncidentAnswer)))]
async fn update_incident(
    State(state): State<AppState>,
    _operator: OperatorAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<IncidentRequest>,
) -> Result<Json<IncidentAnswer>> {
    if req.name.is_some() {
        return Err(Error::bad_request("name cannot be changed by an update"));
    }
    let input = req.input(&state).await?;
    let incident = state.status.update_incident(&id, input).await?;
    Ok(Json(incident_json(&state, &incident).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ResolveRequest {
    #[serde(default)]
    message: Option<String>,
}

/// Resolve an incident.
#[utoipa::path(post, path = "/api/v1/status/incidents/{id}/resolve", tag = "status", params(("id" = String, Path)), request_body = ResolveRequest, responses((status = 200, description = "Resolved", body = IncidentAnswer)))]
async fn resolve_incident(
    State(state): State<AppState>,
    _operator: OperatorAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ResolveRequest>,
) -> Result<Json<IncidentAnswer>> {
    let incident = state.status.resolve_incident(&id, req.message).await?;
    Ok(Json(incident_json(&state, &incident).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PostmortemRequest {
    body: String,
}

/// Set an incident's postmortem (Markdown).
#[utoipa::path(put, path = "/api/v1/status/incidents/{id}/postmortem", tag = "status", params(("id" = String, Path)), request_body = PostmortemRequest, responses((status = 200, description = "Set", body = IncidentAnswer)))]
async fn postmortem(
    State(state): State<AppState>,
    _operator: OperatorAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<PostmortemRequest>,
) -> Result<Json<IncidentAnswer>> {
    let incident = state.status.set_postmortem(&id, &req.body).await?;
    Ok(Json(incident_json(&state, &incident).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MonitorRequest {
    name: String,
    component: String,
    url: String,
    #[serde(default)]
    interval_ms: Option<i64>,
}

/// `{"monitors": [...]}`.
#[derive(Serialize, utoipa::ToSchema)]
struct MonitorsAnswer {
    monitors: Vec<Monitor>,
}

/// `{"monitor": ...}`.
#[derive(Serialize, utoipa::ToSchema)]
struct MonitorAnswer {
    monitor: Monitor,
}

/// The monitors.
#[utoipa::path(get, path = "/api/v1/status/monitors", tag = "status", responses((status = 200, description = "The monitors", body = MonitorsAnswer)))]
async fn monitors(State(state): State<AppState>, _operator: OperatorAuth) -> Result<Json<MonitorsAnswer>> {
    Ok(Json(MonitorsAnswer { monitors: state.status.store.monitors().await? }))
}

/// A new monitor of a component.
#[utoipa::path(post, path = "/api/v1/status/monitors", tag = "status", request_body = MonitorRequest, responses((status = 201, description = "Made", body = MonitorAnswer)))]
async fn add_monitor(
    State(state): State<AppState>,
    _operator: OperatorAuth,
    ApiJson(req): ApiJson<MonitorRequest>,
) -> Result<(StatusCode, Json<MonitorAnswer>)> {
    let monitor =
        state.status.add_monitor(&req.name, &req.component, &req.url, req.interval_ms.unwrap_or(30_000)).await?;
    Ok((StatusCode::CREATED, Json(MonitorAnswer { monitor })))
}

/// Delete a monitor.
#[utoipa::path(delete, path = "/api/v1/status/monitors/{id}", tag = "status", params(("id" = String, Path)), responses((status = 204, description = "Deleted")))]
async fn delete_monitor(
    State(state): State<AppState>,
    _operator: OperatorAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode> {
    if id.len() > 64 {
        return Err(Error::NotFound("monitor"));
    }
    state.status.delete_monitor(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `{"subscribers": [...]}`.
#[derive(Serialize, utoipa::ToSchema)]
struct SubscribersAnswer {
    subscribers: Vec<SubscriberView>,
}

/// The status page's subscribers, without their secrets.
#[utoipa::path(get, path = "/api/v1/status/subscribers", tag = "status", responses((status = 200, description = "The subscribers", body = SubscribersAnswer)))]
async fn subscribers(State(state): State<AppState>, _operator: OperatorAuth) -> Result<Json<SubscribersAnswer>> {
    let subscribers = state.status.store.subscribers().await?.into_iter().map(Into::into).collect();
    Ok(Json(SubscribersAnswer { subscribers }))
}
