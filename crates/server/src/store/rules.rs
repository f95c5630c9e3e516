//! The rules of conversation changes, shared by every store: which changes
//! a conversation in a given state accepts, what state follows, and what the
//! recorded event says. Pure functions; each store keeps only its SQL (the
//! limit count and the last read receipt are the store's to look up).

use super::{Author, Conversation, ConversationStatus, Rating, StoredEvent};
use crate::error::{Error, Result};

/// The event a change records: kind, author, client id, body, detail.
pub(crate) type EventParts = (&'static str, Author, Option<String>, Option<String>, serde_json::Value);

fn open(conv: &Conversation) -> Result<()> {
    if conv.status.is_open() { Ok(()) } else { Err(Error::conflict("the conversation is not open")) }
}

/// Checks before an assignment (the store then checks the agent's limit).
pub(crate) fn check_assign(conv: &Conversation, agent_id: &str, only_if_unassigned: bool) -> Result<()> {
    open(conv)?;
    if conv.agent_id.as_deref() == Some(agent_id) {
        return Err(Error::conflict("the conversation is already assigned to this agent"));
    }
    if only_if_unassigned && conv.agent_id.is_some() {
        return Err(Error::conflict("the conversation is already assigned"));
    }
    Ok(())
}

/// The conversation after assigning it to `agent_id`, and its event: it
/// names the agent, with their photo's URL when they have one (`photo_at`),
/// so the visitor sees who joined.
pub(crate) fn assign(
    conv: &Conversation,
    agent_id: &str,
    agent_name: &str,
    photo_at: Option<i64>,
    by: &Author,
    now: i64,
) -> (Conversation, Option<String>, EventParts) {
    let previous_agent = conv.agent_id.clone();
    let mut next = conv.clone();
    next.agent_id = Some(agent_id.to_owned());
    next.status = ConversationStatus::Active;
    next.assigned_at = Some(now);
    let mut agent = serde_json::json!({"id": agent_id, "name": agent_name});
    if let Some(at) = photo_at {
        agent["photo_url"] = super::agent_photo_url(agent_id, at).into();
    }
    let data = serde_json::json!({"agent": agent, "previous_agent": previous_agent});
    (next, previous_agent, ("assigned", by.clone(), None, None, data))
}

/// The conversation put back in a group's queue, and its event.
pub(crate) fn transfer_to_group(
    conv: &Conversation,
    group_id: &str,
    group_name: &str,
    by: &Author,
) -> Result<(Conversation, Option<String>, EventParts)> {
    open(conv)?;
    let previous_agent = conv.agent_id.clone();
    let mut next = conv.clone();
    next.agent_id = None;
    next.group_id = group_id.to_owned();
    next.status = ConversationStatus::Queued;
    next.assigned_at = None;
    let data = serde_json::json!({
        "group": {"id": group_id, "name": group_name},
        "previous_agent": previous_agent,
    });
    Ok((next, previous_agent, ("transferred", by.clone(), None, None, data)))
}

/// The closed conversation, and its event.
pub(crate) fn close(conv: &Conversation, by: &Author, now: i64) -> Result<(Conversation, EventParts)> {
    if conv.status == ConversationStatus::Closed {
        return Err(Error::conflict("the conversation is already closed"));
    }
    let mut next = conv.clone();
    next.status = ConversationStatus::Closed;
    next.closed_at = Some(now);
    Ok((next, ("closed", by.clone(), None, None, serde_json::json!({}))))
}

/// A read receipt must point inside the conversation.
pub(crate) fn check_read(conv: &Conversation, up_to: i64) -> Result<()> {
    if up_to < 0 || up_to > conv.last_seq {
        return Err(Error::bad_request("read receipt beyond the conversation's last event"));
    }
    Ok(())
}

/// The event of a read receipt that moves the reader forward.
pub(crate) fn read(reader: &Author, up_to: i64) -> EventParts {
    ("read", reader.clone(), None, None, serde_json::json!({"up_to": up_to}))
}

/// Whether an agent's emailed answer may be added: only to an offline
/// message (a live chat is answered in the chat).
pub(crate) fn check_reply(conv: &Conversation) -> Result<()> {
    if conv.status == ConversationStatus::Offline {
        Ok(())
    } else {
        Err(Error::conflict("only an offline message is answered by email; answer a chat in the chat"))
    }
}

/// The event of an answer by email: a message, marked as emailed.
pub(crate) fn reply(author: &Author, client_id: &str, body: &str) -> EventParts {
    (
        "message",
        author.clone(),
        Some(client_id.to_owned()),
        Some(body.to_owned()),
        serde_json::json!({"by_email": true}),
    )
}

/// The event of an internal note (any status: a note may follow a chat).
pub(crate) fn note(author: &Author, client_id: &str, body: &str) -> EventParts {
    ("note", author.clone(), Some(client_id.to_owned()), Some(body.to_owned()), serde_json::json!({}))
}

/// Whether a message may be added: to an open conversation, or as the one
/// first message of an offline one.
pub(crate) fn check_message(conv: &Conversation) -> Result<()> {
    let first_offline = conv.status == ConversationStatus::Offline && conv.last_seq == 0;
    if conv.status.is_open() || first_offline { Ok(()) } else { Err(Error::conflict("the conversation is closed")) }
}

/// A rating: of a closed conversation an agent took (not an offline
/// message, nor a chat its visitor left in the queue), once. `existing` is the conversation's rating
/// event if it has one: the same rater's retry gets it back (`Ok(Some)`),
/// anyone else's second rating is refused.
pub(crate) fn check_rate(
    conv: &Conversation,
    existing: Option<StoredEvent>,
    by: &Author,
    client_id: &str,
) -> Result<Option<StoredEvent>> {
    if let Some(event) = existing {
        return if event.author == *by && event.client_id.as_deref() == Some(client_id) {
            Ok(Some(event))
        } else {
            Err(Error::conflict("the conversation is already rated"))
        };
    }
    if conv.status != ConversationStatus::Closed {
        return Err(Error::conflict("only a closed conversation can be rated"));
    }
    if conv.agent_id.is_none() {
        return Err(Error::conflict("only a chat an agent took can be rated"));
    }
    Ok(None)
}

/// The event of a rating.
pub(crate) fn rate(by: &Author, client_id: &str, rating: Rating, comment: Option<&str>) -> EventParts {
    let mut data = serde_json::json!({"rating": rating.as_str(), "score": rating.score()});
    if let Some(comment) = comment {
        data["comment"] = comment.into();
    }
    ("rating", by.clone(), Some(client_id.to_owned()), None, data)
}
