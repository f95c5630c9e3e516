//! Visitor sessions: the widget exchanges its site's widget key (and the
//! visitor token it kept, if any) for a visitor token.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::extract::ApiJson;
use crate::app::AppState;
use crate::chat::service::clean_field;
use crate::error::{Error, Result};
use crate::store::VisitorUpdate;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/visitor/session", post(session))
}

#[derive(Deserialize)]
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

#[derive(Serialize)]
struct SessionResponse {
    visitor_id: String,
    visitor_token: String,
    site: SiteInfo,
    agents_online: bool,
}

#[derive(Serialize)]
struct SiteInfo {
    id: String,
    name: String,
    settings: serde_json::Value,
}

async fn session(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SessionRequest>,
) -> Result<Json<SessionResponse>> {
    if req.widget_key.len() > 64 {
        return Err(Error::NotFound("site"));
    }
    let site = state.store.site_by_widget_key(&req.widget_key).await?.ok_or(Error::NotFound("site"))?;
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|s| s.to_owned());
    let update = VisitorUpdate {
        page_url: clean_field(req.page_url, 2048, "page_url")?,
        referrer: clean_field(req.referrer, 2048, "referrer")?,
        user_agent: clean_field(user_agent.map(|u| u.chars().take(512).collect()), 2048, "user agent")?,
        ..Default::default()
    };
    // A kept token is honoured only for the same site and a visitor that
    // exists; anything else quietly gets a fresh visitor.
    let known = match req.visitor_token.as_deref().map(|t| state.auth.verify_visitor(t)) {
        Some(Ok(claims)) if claims.sub.len() <= 64 && claims.site == site.id => {
            state.store.visitor(&claims.sub).await?.filter(|v| v.site_id == site.id)
        }
        _ => None,
    };
    let visitor_id = match known {
        Some(v) => {
            state.store.update_visitor(&v.id, update).await?;
            v.id
        }
        None => state.store.create_visitor(&site.id, update).await?.id,
    };
    let visitor_token = state.auth.issue_visitor(&visitor_id, &site.id)?;
    let agents_online = state.chat.agents_online(&site.id).await?;
    Ok(Json(SessionResponse {
        visitor_id,
        visitor_token,
        site: SiteInfo { id: site.id, name: site.name, settings: site.settings },
        agents_online,
    }))
}
