//! The only module that knows axum: routes, extractors, the socket adapter,
//! the error-to-response mapping and embedded pages.

mod admin;
mod agent;
mod assets;
mod auth;
mod console;
mod demo;
mod error;
pub mod extract;
mod health;
mod lanes;
mod ops;
pub mod rehearsal;
mod socket;
mod visitor;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::app::AppState;
use crate::error::Error;

pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    Router::new()
        .merge(health::routes())
        .merge(auth::routes())
        .merge(visitor::routes())
        .merge(agent::routes())
        .merge(socket::routes())
        .merge(demo::routes())
        .merge(ops::routes())
        .merge(assets::routes())
        .merge(console::routes())
        .merge(admin::routes())
        .fallback(|| async { Error::NotFound("route") })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(state.clone(), lanes::admit))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .with_state(state)
}
