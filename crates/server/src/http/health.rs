//! Health and metrics. `/livez` depends on nothing outside the process;
//! `/readyz` checks only what serving needs (the store) with a short
//! timeout, and reports each dependency: a node whose bus (NATS) is down is
//! still ready — its sockets stay open and read the store — but shows
//! `"bus": {"status": "degraded"}` here and `holdfast_bus_up 0` in metrics.

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::app::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/livez", get(livez)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

async fn livez() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let started = std::time::Instant::now();
    let store = match tokio::time::timeout(Duration::from_millis(500), state.store.ping()).await {
        Ok(Ok(())) => "ok",
        Ok(Err(_)) => "down",
        Err(_) => "timeout",
    };
    let bus = if state.chat.bus.healthy() { "ok" } else { "degraded" };
    let ready = store == "ok";
    let (agents, visitors) = state.chat.hub.counts();
    // Side services show as degraded, never as not-ready.
    let body = serde_json::json!({
        "ready": ready,
        "node_id": state.config.node_id,
        "cluster": state.config.nats_url.is_some(),
        "checks": {
            "store": {"status": store, "latency_ms": started.elapsed().as_secs_f64() * 1000.0},
            "bus": {"status": bus},
            "plan": state.plan.health(),
        },
        "lanes": state.admission.stats(),
        "connections": {"agents": agents, "visitors": visitors, "max": state.max_sockets},
        "uptime_s": state.started.elapsed().as_secs(),
    });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.admission.export_metrics();
    // Dependencies as 1 (up) or 0 (down): a degraded node shows here too.
    let store_up = matches!(tokio::time::timeout(Duration::from_millis(300), state.store.ping()).await, Ok(Ok(())));
    metrics::gauge!("holdfast_store_up").set(f64::from(u8::from(store_up)));
    metrics::gauge!("holdfast_bus_up").set(f64::from(u8::from(state.chat.bus.healthy())));
    metrics::gauge!("holdfast_bus_backlog").set(state.chat.bus.backlog() as f64);
    let (agents, visitors) = state.chat.hub.counts();
    metrics::gauge!("holdfast_sockets", "kind" => "agent").set(agents as f64);
    metrics::gauge!("holdfast_sockets", "kind" => "visitor").set(visitors as f64);
    metrics::gauge!("holdfast_tcp_connections_open").set(state.connections.open() as f64);
    metrics::gauge!("holdfast_tcp_connections_max").set(state.connections.max() as f64);
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    metrics::gauge!("holdfast_runtime_workers").set(workers as f64);
    state.metrics.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}
