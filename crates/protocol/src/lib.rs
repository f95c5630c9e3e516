//! Wire frames of the chat sockets, protocol version 1. This file and
//! `docs/protocol.md` are the contract; change them together.
//!
//! Frames are JSON text, tagged by `"type"`. Client frames are a closed set:
//! an unknown type is refused with an error frame, never ignored. Durable
//! conversation events carry `conv` and `seq` (gap-free per conversation)
//! and are replayed on resume; every other server frame is ephemeral state
//! and is re-sent as a fresh snapshot in `welcome` instead.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub const PROTOCOL_VERSION: u32 = 1;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    Online,
    Away,
    Offline,
}

impl Availability {
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Online => "online",
            Availability::Away => "away",
            Availability::Offline => "offline",
        }
    }

    pub fn parse(s: &str) -> Option<Availability> {
        match s {
            "online" => Some(Availability::Online),
            "away" => Some(Availability::Away),
            "offline" => Some(Availability::Offline),
            _ => None,
        }
    }
}

/// Why a chat was missed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MissedReason {
    /// The visitor waited the site's limit with no agent reply.
    Waited,
    /// The visitor closed the chat before an agent replied.
    Left,
}

impl MissedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            MissedReason::Waited => "waited",
            MissedReason::Left => "left",
        }
    }

    pub fn parse(s: &str) -> Option<MissedReason> {
        match s {
            "waited" => Some(MissedReason::Waited),
            "left" => Some(MissedReason::Left),
            _ => None,
        }
    }
}

/// The mark on a missed conversation.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Missed {
    pub reason: MissedReason,
    /// How long the visitor waited (to the verdict, or to their leaving).
    pub waited_ms: i64,
    pub missed_at: i64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConversationStatus {
    /// Waiting for an agent.
    Queued,
    /// Assigned to an agent.
    Active,
    Closed,
    /// Left as an offline message while no agent was online.
    Offline,
}

impl ConversationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationStatus::Queued => "queued",
            ConversationStatus::Active => "active",
            ConversationStatus::Closed => "closed",
            ConversationStatus::Offline => "offline",
        }
    }

    pub fn parse(s: &str) -> Option<ConversationStatus> {
        match s {
            "queued" => Some(ConversationStatus::Queued),
            "active" => Some(ConversationStatus::Active),
            "closed" => Some(ConversationStatus::Closed),
            "offline" => Some(ConversationStatus::Offline),
            _ => None,
        }
    }

    pub fn is_open(self) -> bool {
        matches!(self, ConversationStatus::Queued | ConversationStatus::Active)
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthorKind {
    Visitor,
    Agent,
    System,
}

impl AuthorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorKind::Visitor => "visitor",
            AuthorKind::Agent => "agent",
            AuthorKind::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<AuthorKind> {
        match s {
            "visitor" => Some(AuthorKind::Visitor),
            "agent" => Some(AuthorKind::Agent),
            "system" => Some(AuthorKind::System),
            _ => None,
        }
    }
}

/// A visitor's verdict on a closed chat: Olark's two-point scale, good or
/// bad. Stored as a `score` on a 1–5 scale (bad 1, good 5), so a finer
/// scale can come later without rewriting what is stored, and reports
/// count "good" as a score of 4 or more.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rating {
    Good,
    Bad,
}

impl Rating {
    pub fn as_str(self) -> &'static str {
        match self {
            Rating::Good => "good",
            Rating::Bad => "bad",
        }
    }

    /// The rating on the stored 1–5 scale.
    pub fn score(self) -> i64 {
        match self {
            Rating::Good => 5,
            Rating::Bad => 1,
        }
    }
}

/// Longest rating comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 1000;

/// Largest frame a client may send, in bytes.
pub const MAX_FRAME_BYTES: usize = 16 * 1024;
/// Longest message body, in characters.
pub const MAX_BODY_CHARS: usize = 5000;
/// Longest client message id, in bytes.
pub const MAX_CLIENT_ID: usize = 64;
/// Most conversations a `hello` may carry cursors for.
pub const MAX_CURSORS: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// First frame on every socket: the credential and, on resume, the
    /// last `seq` seen per conversation.
    Hello {
        v: u32,
        token: String,
        #[serde(default, deserialize_with = "cursors")]
        cursors: HashMap<String, i64>,
        /// Agents: the `agents_version` of the agent list the client holds;
        /// the welcome leaves the list out if it has not changed.
        #[serde(default)]
        agents_version: Option<String>,
    },
    /// A chat message. Visitors may omit `conv`: the message goes to their
    /// open conversation, or starts one.
    Send {
        #[serde(default)]
        conv: Option<String>,
        client_id: String,
        /// May be empty when the message carries attachments.
        #[serde(default)]
        body: String,
        /// Visitors: the proactive greeting rule this message answers;
        /// recorded on the chat it starts (ignored otherwise).
        #[serde(default)]
        greeting: Option<String>,
        /// Ids of the sender's own uploads (`POST …/attachments`) the
        /// message carries, at most 10; the event lists them in
        /// `attachments`.
        #[serde(default)]
        attachments: Vec<String>,
    },
    Typing {
        conv: String,
        on: bool,
    },
    /// Read receipt: everything up to `seq` has been seen.
    Read {
        conv: String,
        seq: i64,
    },
    /// Agents: set own availability.
    SetAvailability {
        availability: Availability,
    },
    /// Agents: take a queued (or another agent's) conversation.
    Claim {
        conv: String,
    },
    /// Agents: hand a conversation to another agent or back to a group's queue.
    Transfer {
        conv: String,
        #[serde(default)]
        to_agent: Option<String>,
        #[serde(default)]
        to_group: Option<String>,
    },
    Close {
        conv: String,
    },
    /// Visitors: leave a message when no agent is online.
    LeaveMessage {
        client_id: String,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        email: Option<String>,
        body: String,
    },
    /// Visitors: rate their own closed conversation, once, with an
    /// optional comment. Idempotent by `client_id`, like `send`.
    Rate {
        conv: String,
        client_id: String,
        rating: Rating,
        #[serde(default)]
        comment: Option<String>,
    },
    /// Agents: an internal note in a conversation of their site (any
    /// status, theirs or not). Agents see it; its visitor never does.
    /// Idempotent by `client_id`, like `send`.
    Note {
        conv: String,
        client_id: String,
        body: String,
    },
    /// Visitors: pre-chat details or a page change.
    Identify {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        email: Option<String>,
        #[serde(default)]
        page_url: Option<String>,
    },
    /// A struct variant, not a unit one, so that unknown fields are refused
    /// here too (serde ignores them on a unit variant of a tagged enum).
    Ping {},
}

/// A hello's cursors, refusing a conversation named twice. Serde refuses a
/// repeated `type` or field of a frame itself, but a map keeps a repeated
/// key's last value, where another JSON reader may keep the first: this is
/// the one map a client frame holds.
fn cursors<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<HashMap<String, i64>, D::Error> {
    struct Cursors;
    impl<'de> serde::de::Visitor<'de> for Cursors {
        type Value = HashMap<String, i64>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object of conversation ids and seqs")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut cursors = HashMap::with_capacity(map.size_hint().unwrap_or(0).min(MAX_CURSORS));
            while let Some(conv) = map.next_key::<String>()? {
                if cursors.contains_key(&conv) {
                    return Err(serde::de::Error::custom(format_args!("duplicate key {conv:?}")));
                }
                let seq = map.next_value()?;
                cursors.insert(conv, seq);
            }
            Ok(cursors)
        }
    }
    deserializer.deserialize_map(Cursors)
}

/// Every client frame type, to tell "unknown type" from "malformed".
pub const CLIENT_FRAME_TYPES: &[&str] = &[
    "hello",
    "send",
    "typing",
    "read",
    "set_availability",
    "claim",
    "transfer",
    "close",
    "leave_message",
    "rate",
    "identify",
    "note",
    "ping",
];

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct AuthorView {
    pub kind: AuthorKind,
    pub id: Option<String>,
}

/// A durable conversation event as clients see it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    #[serde(rename = "type")]
    pub kind: String,
    pub conv: String,
    pub seq: i64,
    pub id: String,
    pub at: i64,
    pub author: AuthorView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Kind-specific fields (`agent`, `group`, `previous_agent`, `up_to`,
    /// `rating`, `score`, `comment`, a message's `attachments`).
    #[serde(flatten)]
    pub data: serde_json::Map<String, serde_json::Value>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct ConversationView {
    pub id: String,
    pub status: ConversationStatus,
    pub visitor_id: String,
    pub group_id: String,
    pub agent_id: Option<String>,
    pub last_seq: i64,
    pub created_at: i64,
    /// Set on a missed chat (`status=missed` lists, the `missed_chat`
    /// frame); absent elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missed: Option<Missed>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueEntry {
    pub conv: String,
    pub visitor_id: String,
    pub group_id: String,
    pub position: usize,
    pub waiting_since: i64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    pub id: String,
    pub name: String,
    pub availability: Availability,
    /// Their photo (a same-origin path, versioned); absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub photo_url: Option<String>,
}

/// Ephemeral server frames (durable events are [`EventView`]s).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Answer to `hello`: who you are and a snapshot of the state you need.
    Welcome {
        v: u32,
        role: &'static str,
        /// Agent id or visitor id.
        id: String,
        site_id: String,
        /// Agents: own availability.
        #[serde(skip_serializing_if = "Option::is_none")]
        availability: Option<Availability>,
        /// Agents: their open conversations. Visitors: their open ones.
        conversations: Vec<ConversationView>,
        /// Agents: the site's queue.
        #[serde(skip_serializing_if = "Option::is_none")]
        queue: Option<Arc<Vec<QueueEntry>>>,
        /// Agents: every agent of the site with availability (an array of
        /// `AgentView`, encoded once per site for every welcome). Left out
        /// when the hello named the current `agents_version`.
        #[serde(skip_serializing_if = "Option::is_none")]
        agents: Option<Arc<RawValue>>,
        /// Agents: names this agent list, for the next hello.
        #[serde(skip_serializing_if = "Option::is_none")]
        agents_version: Option<Arc<str>>,
        /// Whether an agent is online to take a new chat.
        agents_online: bool,
    },
    /// A client `send`, `leave_message` or `rate` was stored (or had been
    /// already).
    Ack {
        client_id: String,
        conv: String,
        seq: i64,
        id: String,
        duplicate: bool,
    },
    Typing {
        conv: String,
        from: AuthorView,
        on: bool,
    },
    /// Visitors: place in the queue (1 = next).
    QueuePosition {
        conv: String,
        position: usize,
    },
    /// Agents: the site's whole queue, after any change to it.
    Queue {
        queue: Vec<QueueEntry>,
    },
    /// Agents: an agent's availability changed.
    Availability {
        agent: AgentView,
    },
    /// Visitors: whether an agent is online changed.
    AgentsOnline {
        online: bool,
    },
    /// A refused frame or a problem with the connection. `ref` echoes the
    /// client frame's `client_id` or `conv` when there was one.
    Error {
        code: &'static str,
        message: String,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    /// Visitors: the welcome's replay of `conv` is over although it ended
    /// before the welcome's `last_seq` (the events after are internal
    /// notes, never sent to a visitor). A client waiting for the replay to
    /// reach `last_seq` stops waiting.
    Replayed {
        conv: String,
    },
    Pong,
    /// The server is going away: reconnect (to any node) after `after_ms`.
    Reconnect {
        after_ms: u64,
        reason: &'static str,
    },
}
