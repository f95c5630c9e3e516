//! One integration binary (faster to link than one per file). Every test
//! starts a real server on 127.0.0.1:0 over a real SQLite file (or, for the
//! cluster tests, the machine's PostgreSQL and NATS) and talks to it over
//! real HTTP and WebSocket connections.

mod api_tokens;
mod architecture;
mod attachments;
mod audit;
mod bad_input;
mod bans;
mod bench;
mod browser;
mod bus;
mod chat;
mod chat_api;
mod cli;
mod cluster;
mod connections;
mod greetings;
mod groups;
mod health;
mod hours;
mod idempotency;
mod integrations_guide;
mod invitations;
mod languages;
mod missed;
mod notes;
mod openapi;
mod outbox;
mod pages;
mod photos;
mod privacy;
mod ratings;
mod reply;
mod reports;
mod resilience;
mod restart;
mod resume;
mod routing;
mod search;
mod security;
mod services;
mod status;
mod status_guard;
mod status_store;
mod status_tls;
mod store;
mod storm;
mod support;
mod transcript;
mod web;
mod webhooks;
