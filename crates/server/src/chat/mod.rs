//! Live chat: the wire protocol, socket sessions, the hub that delivers to
//! connected sockets, routing, and the chat actions themselves. No axum
//! here; transports adapt to `session::run`.

mod coalesce;
pub mod hub;
mod reorder;
pub mod routing;
pub mod service;
pub mod session;

/// The wire frames, from their own crate (shared with clients).
pub use holdfast_protocol as protocol;

use self::protocol::{AuthorView, ConversationView, EventView};
use crate::store::{Conversation, StoredEvent};

impl From<&StoredEvent> for EventView {
    fn from(e: &StoredEvent) -> Self {
        EventView {
            kind: e.kind.clone(),
            conv: e.conversation_id.clone(),
            seq: e.seq,
            id: e.id.clone(),
            at: e.created_at,
            author: AuthorView { kind: e.author.kind, id: e.author.id.clone() },
            client_id: e.client_id.clone(),
            body: e.body.clone(),
            data: e.data.as_object().cloned().unwrap_or_default(),
        }
    }
}

impl From<&Conversation> for ConversationView {
    fn from(c: &Conversation) -> Self {
        ConversationView {
            id: c.id.clone(),
            status: c.status,
            visitor_id: c.visitor_id.clone(),
            group_id: c.group_id.clone(),
            agent_id: c.agent_id.clone(),
            last_seq: c.last_seq,
            created_at: c.created_at,
            missed: None,
        }
    }
}
