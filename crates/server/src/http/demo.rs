//! `/demo`: a plain page to try chat by hand (a visitor pane and an agent
//! pane on one page). The real widget and console are separate assets.
//! Served only with `--demo`, and never inside another site's frame.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;

use crate::app::AppState;
use crate::error::Result;

const DEMO_HTML: &str = include_str!("../../../../assets/demo.html");
const DEMO_JS: &str = include_str!("../../../../assets/demo.js");

pub fn routes() -> Router<AppState> {
    Router::new().route("/demo", get(page)).route("/demo.js", get(script))
}

async fn page(State(state): State<AppState>) -> Result<impl IntoResponse> {
    let key = state.store.sites().await?.into_iter().next().map(|s| s.widget_key).unwrap_or_default();
    // The key is [a-z0-9_] only, so it is safe in an attribute.
    let key: String = key.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    Ok((
        [
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        Html(DEMO_HTML.replace("{{WIDGET_KEY}}", &key)),
    ))
}

async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], DEMO_JS)
}
