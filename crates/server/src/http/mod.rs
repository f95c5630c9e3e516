//! The only module that knows axum: routes, extractors, the socket adapter,
//! the error-to-response mapping and embedded pages.

mod actions;
mod admin;
mod agent;
mod assets;
mod attachments;
mod auth;
mod bans;
mod console;
mod demo;
mod error;
pub mod extract;
mod health;
mod idempotency;
mod integrations;
mod lanes;
mod openapi;
mod operator;
mod ops;
mod page;
mod photos;
mod reports;
mod socket;
mod status;
mod transcript;
mod visitor;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::app::AppState;
use crate::error::Error;

pub use lanes::served_from_reserve;
pub use openapi::document as openapi_document;

pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    let chat = Router::new()
        .merge(auth::routes())
        .merge(visitor::routes())
        .merge(agent::routes())
        .merge(actions::routes())
        .merge(bans::routes())
        .merge(socket::routes())
        .merge(ops::routes())
        .merge(assets::routes())
        .merge(console::routes())
        .merge(admin::routes())
        .merge(integrations::routes())
        .merge(transcript::routes())
        .merge(attachments::routes())
        .merge(photos::routes())
        .merge(reports::routes())
        .merge(operator::routes())
        .merge(openapi::routes());
    // Retried POSTs run once (after admission: a shed request claims no key).
    let chat = chat.layer(axum::middleware::from_fn_with_state(state.clone(), idempotency::honour));
    // `/demo` only where the operator asked for it (`--demo`).
    let chat = if state.config.demo { chat.merge(demo::routes()) } else { chat };
    // `serve --only status`: the status page runs apart from chat.
    let chat = if state.config.status.only { Router::new() } else { chat };
    // Chat and health are admitted by priority lane; the status page has a
    // lane of its own (see `status::routes`), so it is never shed with them.
    let laned = Router::new()
        .merge(health::routes())
        .merge(chat)
        .layer(axum::middleware::from_fn_with_state(state.clone(), lanes::admit));
    Router::new()
        .merge(laned)
        .merge(status::routes(state.config.status.max_concurrent))
        .fallback(|| async { Error::NotFound("route") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), admin::audit_operator))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .with_state(state)
}
