//! What the chat server (`holdfast-server`) and the status page
//! (`holdfast-status`) both need and neither owns. Kept small on purpose:
//! nothing here knows chat, the status page, HTTP serving or SQL.
//!
//! - `tls`   — outgoing TLS: system roots plus an extra CA bundle; failure reasons.
//! - `email` — what counts as an email address, and how two are compared.
//! - [`now_ms`], [`new_id`] — the stores' time format and ids.

pub mod email;
pub mod tls;

/// Milliseconds since the Unix epoch, the stores' one time format.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A new UUID v7, as text: time-ordered, so indexes stay append-mostly.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
