//! Operator endpoints: plan banners for the console, and fault injection
//! for rehearsals (only when the server was started with it enabled, and
//! only for admins).

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::extract::{AdminAuth, AgentAuth, ApiJson};
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::side::plan::Banners;
use crate::store::FaultMode;

#[derive(utoipa::OpenApi)]
#[openapi(paths(banners))]
pub(super) struct Api;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/banners", get(banners)).route("/api/v1/ops/faults", post(faults))
}

/// The last known plan banners; never waits for the plan service.
#[utoipa::path(get, path = "/api/v1/banners", tag = "meta",
    responses((status = 200, description = "The banners", body = Banners)))]
async fn banners(State(state): State<AppState>, AgentAuth(_): AgentAuth) -> Json<Banners> {
    Json(state.plan.banners())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    #[serde(default)]
    store: Option<FaultMode>,
    /// Drop every socket of this node at once, as a network blip would.
    #[serde(default)]
    cut_sockets: bool,
}

async fn faults(
    State(state): State<AppState>,
    AdminAuth(_): AdminAuth,
    ApiJson(req): ApiJson<FaultRequest>,
) -> Result<Json<serde_json::Value>> {
    if !state.config.fault_injection {
        return Err(Error::NotFound("route"));
    }
    let faults = state.store.faults();
    if let Some(mode) = req.store {
        faults.set(mode);
        tracing::warn!(?mode, "fault injection: store");
    }
    let cut = if req.cut_sockets { state.chat.hub.cut_all() } else { 0 };
    if cut > 0 {
        tracing::warn!(cut, "fault injection: sockets cut");
    }
    Ok(Json(serde_json::json!({"store": faults.mode(), "cut": cut})))
}
