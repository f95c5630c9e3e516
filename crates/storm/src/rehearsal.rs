//! A stand-in plan/subscription service for rehearsals: it answers banners
//! normally, hangs, or fails with 500, as told. Lives here because it is an
//! HTTP server (only `http/` knows axum).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// How the stand-in behaves right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanMode {
    Ok = 0,
    Hang = 1,
    Fail = 2,
}

#[derive(Clone, Default)]
pub struct PlanSwitch(Arc<AtomicU8>);

impl PlanSwitch {
    pub fn set(&self, mode: PlanMode) {
        self.0.store(mode as u8, Ordering::Relaxed);
    }

    fn get(&self) -> PlanMode {
        match self.0.load(Ordering::Relaxed) {
            1 => PlanMode::Hang,
            2 => PlanMode::Fail,
            _ => PlanMode::Ok,
        }
    }
}

async fn banners(State(switch): State<PlanSwitch>) -> Response {
    match switch.get() {
        PlanMode::Ok => {
            axum::Json(serde_json::json!([{"id": "trial", "text": "Your trial ends in 3 days"}])).into_response()
        }
        PlanMode::Hang => {
            // Longer than any sane client timeout; the connection just sits.
            tokio::time::sleep(std::time::Duration::from_secs(120)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        PlanMode::Fail => (StatusCode::INTERNAL_SERVER_ERROR, "plan service exploded").into_response(),
    }
}

/// Serve the stand-in on `listener` until the process ends.
pub async fn serve_plan_service(listener: tokio::net::TcpListener, switch: PlanSwitch) {
    let app = Router::new().route("/banners", get(banners)).with_state(switch);
    let _ = axum::serve(listener, app).await;
}
