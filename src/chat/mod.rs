//! Live chat: the wire protocol, socket sessions, the hub that delivers to
//! connected sockets, routing, and the chat actions themselves. No axum
//! here; transports adapt to `session::run`.

mod coalesce;
pub mod hub;
pub mod protocol;
mod reorder;
pub mod routing;
pub mod service;
pub mod session;
