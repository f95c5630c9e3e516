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

/// An event's frame, written from the stored event in place: the JSON of
/// its `EventView` (a test holds the two equal) without copying its
/// strings first. For the frames every message sends.
pub struct EventFrame<'a>(pub &'a StoredEvent);

impl serde::Serialize for EventFrame<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let e = self.0;
        // EventView's fields in their order, then its flattened `data`.
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", &e.kind)?;
        map.serialize_entry("conv", &e.conversation_id)?;
        map.serialize_entry("seq", &e.seq)?;
        map.serialize_entry("id", &e.id)?;
        map.serialize_entry("at", &e.created_at)?;
        map.serialize_entry("author", &AuthorRef { kind: e.author.kind, id: e.author.id.as_deref() })?;
        if let Some(client_id) = &e.client_id {
            map.serialize_entry("client_id", client_id)?;
        }
        if let Some(body) = &e.body {
            map.serialize_entry("body", body)?;
        }
        for (key, value) in e.data.as_object().into_iter().flatten() {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// `AuthorView`, borrowed.
#[derive(serde::Serialize)]
struct AuthorRef<'a> {
    kind: crate::store::AuthorKind,
    id: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Author;

    fn event(
        kind: &str,
        author: Author,
        client_id: Option<&str>,
        body: Option<&str>,
        data: serde_json::Value,
    ) -> StoredEvent {
        StoredEvent {
            conversation_id: "c-1".into(),
            seq: 7,
            id: "e-\"quoted\"".into(),
            kind: kind.into(),
            author,
            client_id: client_id.map(str::to_owned),
            body: body.map(str::to_owned),
            data,
            created_at: 1_764_000_000_123,
        }
    }

    #[test]
    fn an_events_frame_is_its_views_json_byte_for_byte() {
        let attachments = serde_json::json!({"attachments": [{"id": "a1", "name": "<b>x.png</b>"}]});
        let events = [
            event(
                "message",
                Author::visitor("v-1"),
                Some("k1"),
                Some("hi \"there\"\n</script>"),
                serde_json::json!({}),
            ),
            event("message", Author::agent("a-1"), Some("k2"), Some(""), attachments),
            event("assigned", Author::system(), None, None, serde_json::json!({"agent": "a-1", "group": "g"})),
            event("closed", Author::agent("a-1"), None, None, serde_json::Value::Null),
        ];
        for e in &events {
            let view = serde_json::to_string(&EventView::from(e)).unwrap();
            assert_eq!(serde_json::to_string(&EventFrame(e)).unwrap(), view);
        }
    }
}
