//! Holdfast: self-hosted live chat for websites that keeps agents logged in
//! and chats flowing through reconnect storms, node loss and overloaded
//! side services.
//!
//! Layout (see `docs/architecture.md` for how a request flows):
//!
//! - `config`    — server configuration, one documented field each.
//! - `admin`     — what admins change: widget settings, agents, groups, canned responses.
//! - `abuse`     — who is refused chat: bans, flood limits, the client's address.
//! - `attachments` — files and images in chat: streamed uploads, sniffed types, signed links.
//! - `app`       — wiring the parts into `AppState`; first-run bootstrap.
//! - `audit`     — the append-only log of admin actions: who, when, what, before and after.
//! - `server`    — bind, accept, serve, drain; connection caps, timeouts and the reserve.
//! - `http`      — the only module that knows axum: routes, extractors, sockets.
//! - `chat`      — protocol frames, socket sessions, hub, routing, chat actions.
//! - `auth`      — password hashing pool, tokens, sessions, login rate limits.
//! - `admission` — priority lanes with their own capacity; shedding with 503.
//! - `side`      — side services (plan banners) behind timeouts, breakers, caches.
//! - `status`    — the status page (`holdfast-status`, re-exported) and its chat side: probes, runner, relay.
//! - `store`     — the `Store` trait, SQLite and PostgreSQL implementations; the only SQL.
//! - `bus`       — the `Bus` trait (event fan-out): in-process, and NATS between nodes.
//! - `error`     — one error type and its mapping to HTTP status codes.
//! - `hours`     — business hours: weekly schedules in a time zone, holidays; open at T, next change.
//! - `json`      — strict JSON: a repeated key is refused.
//! - `low_priority` — a thread at the lowest CPU priority, for work that must not slow chat (reports).
//! - `outbox`    — the durable outbox of chat: offline-message emails, the deliverer.
//! - `reports`   — chats, waits, durations, CSAT and the weekday × hour heatmap, in the site's time zone.
//! - `privacy`   — a person's data: one visitor's everything, exported as one document.
//! - `tls`       — outgoing TLS: system roots plus an extra CA bundle; failure reasons (`holdfast-core`'s).
//! - `widget_i18n` — the widget's string tables other than English, served on demand.
//! - `telemetry` — logs and Prometheus metrics.

pub mod abuse;
pub mod admin;
pub mod admission;
pub mod app;
pub mod attachments;
pub mod audit;
pub mod auth;
pub mod bus;
pub mod chat;
pub mod config;
pub mod error;
pub mod hours;
pub mod http;
pub mod json;
pub(crate) mod low_priority;
pub mod outbox;
pub mod privacy;
pub mod reports;
pub mod server;
pub mod side;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod widget_i18n;

/// Outgoing TLS (the `holdfast-core` crate), where the server always had it.
pub use holdfast_core::tls;
