//! Visitor sessions: the widget exchanges its site's widget key (and the
//! visitor token it kept, if any) for a visitor token.
//!
//! The widget runs on customers' pages, so this endpoint answers CORS for
//! any origin (it uses no cookies); a site with allowed origins refuses
//! pages of other origins here, with a clear error.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiJson, ApiPath, ClientIp, VisitorAuth};
use crate::abuse::limits::Start;
use crate::admin::WidgetSettings;
use crate::admin::greetings::WidgetGreeting;
use crate::app::AppState;
use crate::chat::service::clean_field;
use crate::error::{Error, Result};
use crate::hours::HoursState;
use crate::store::VisitorUpdate;

#[derive(utoipa::OpenApi)]
#[openapi(paths(session, greeting_shown))]
pub(super) struct Api;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/visitor/session", post(session))
        .route("/api/v1/visitor/greetings/{id}/shown", post(greeting_shown))
        .layer(middleware::from_fn(cors))
}

/// Let pages of any origin call this endpoint and read its answers
/// (including errors and `Retry-After`); which origins may really start a
/// session is the site's setting, checked in `session`.
pub(super) async fn cors(req: Request, next: Next) -> Response {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut response = if req.method() == Method::OPTIONS {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type, authorization"));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        r
    } else {
        next.run(req).await
    };
    if let Some(origin) = origin {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("retry-after"));
        h.insert(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SessionRequest {
    widget_key: String,
    /// The token this browser was given before, to keep its conversations.
    #[serde(default)]
    visitor_token: Option<String>,
    #[serde(default)]
    page_url: Option<String>,
    #[serde(default)]
    referrer: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct SessionResponse {
    visitor_id: String,
    visitor_token: String,
    site: SiteInfo,
    agents_online: bool,
    /// Whether the team is in now (business hours of the group new chats
    /// land in), and when that changes: outside hours the widget offers
    /// its offline form and says when the team is back.
    hours: HoursState,
    /// The site's proactive greetings (`admin::greetings`), only while an
    /// agent could answer one (someone online, within hours); the widget
    /// judges their conditions on the page.
    greetings: Vec<WidgetGreeting>,
    /// Whether the widget may offer "Email me this conversation" (email
    /// is configured).
    transcripts: bool,
}

#[derive(Serialize, ToSchema)]
struct SiteInfo {
    id: String,
    name: String,
    settings: WidgetSettings,
}

/// The widget opens (or resumes) a visitor's session with the site's
/// widget key.
#[utoipa::path(post, path = "/api/v1/visitor/session", tag = "visitors", security(()), request_body = SessionRequest,
    responses((status = 200, description = "The session", body = SessionResponse)))]
async fn session(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SessionRequest>,
) -> Result<Json<SessionResponse>> {
    if req.widget_key.len() > 64 {
        return Err(Error::NotFound("site"));
    }
    let site = state.chat.site_by_widget_key(&req.widget_key).await?.ok_or(Error::NotFound("site"))?;
    // A kept token is honoured only for the same site and a visitor that
    // exists; anything else quietly gets a fresh visitor. A banned visitor
    // (or address) is refused before anything is written; the token is
    // checked first in memory, so a banned visitor's retries read nothing.
    // A new visitor is counted against the site's limits before any other
    // work, so a flood's refusals cost a cached read and a counter.
    let claims = match req.visitor_token.as_deref().map(|t| state.auth.verify_visitor(t)) {
        Some(Ok(claims)) if claims.sub.len() <= 64 && claims.site == site.id => Some(claims),
        _ => None,
    };
    state.chat.bans.check(&site.id, claims.as_ref().map(|c| c.sub.as_str()), Some(ip))?;
    if claims.is_none() {
        state.chat.floodgate.admit(state.store.as_ref(), &site.id, Start::Session, None, Some(ip)).await?;
    }
    let mut settings = WidgetSettings::from_stored(&site.settings);
    settings.check_origin(headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()))?;
    // The widget needs its look, not the list of origins or the addresses.
    settings.allowed_origins.clear();
    settings.transcript_archive.clear();
    settings.reply_to.clear();
    settings.retention_days = 0;
    settings.audit_retention_days = 0;
    let site_hours = settings.hours.take();
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|s| s.to_owned());
    let update = VisitorUpdate {
        page_url: clean_field(req.page_url, 2048, "page_url")?,
        referrer: clean_field(req.referrer, 2048, "referrer")?,
        user_agent: clean_field(user_agent.map(|u| u.chars().take(512).collect()), 2048, "user agent")?,
        ip: Some(ip.to_string()),
        ..Default::default()
    };
    let kept_token = claims.is_some();
    let known = match claims {
        Some(claims) => state.store.visitor(&claims.sub).await?.filter(|v| v.site_id == site.id),
        None => None,
    };
    let visitor_id = match known {
        Some(v) => {
            state.store.update_visitor(&v.id, update).await?;
            v.id
        }
        None => {
            // A kept token whose visitor is gone was not counted above.
            if kept_token {
                state.chat.floodgate.admit(state.store.as_ref(), &site.id, Start::Session, None, Some(ip)).await?;
            }
            state.store.create_visitor(&site.id, update).await?.id
        }
    };
    let visitor_token = state.auth.issue_visitor(&visitor_id, &site.id)?;
    let agents_online = state.chat.agents_online(&site.id).await?;
    let hours = state.chat.landing_hours(&site.id, site_hours.as_ref()).await?;
    let greetings = if agents_online && hours.open {
        let agents = state.chat.site_agents(&site.id).await?;
        crate::admin::greetings::for_widget(state.store.as_ref(), &site.id, &agents.list).await?
    } else {
        Vec::new()
    };
    Ok(Json(SessionResponse {
        visitor_id,
        visitor_token,
        site: SiteInfo { id: site.id, name: site.name, settings },
        agents_online,
        hours,
        greetings,
        transcripts: state.outbox.mail_enabled(),
    }))
}

/// The widget showed a proactive greeting: count it for the rule's
/// figures. `204`; a rule that is not the site's, or not enabled → `404`.
/// The widget showed a proactive greeting (counted for the admin).
#[utoipa::path(post, path = "/api/v1/visitor/greetings/{id}/shown", tag = "visitors", params(("id" = String, Path)), security(("visitor_token" = [])),
    responses((status = 204, description = "Counted")))]
async fn greeting_shown(
    State(state): State<AppState>,
    VisitorAuth(v): VisitorAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode> {
    if id.len() > 64 || !state.store.greeting_shown(&v.site_id, &id, crate::store::now_ms()).await? {
        return Err(Error::NotFound("greeting rule"));
    }
    Ok(StatusCode::NO_CONTENT)
}
