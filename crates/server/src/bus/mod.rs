//! Event fan-out between the code that changes state and the sockets that
//! must hear of it. In one process the [`local::LocalBus`] hands each
//! envelope straight to the hub; across nodes a broker-backed bus carries
//! the same envelopes ([`nats::NatsBus`]). The bus is a wake-up and delivery path, never the
//! record: every durable event is in the store first, so a lost envelope
//! costs latency (the socket fills the gap from the store), not data.

pub mod local;
pub mod nats;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Who an envelope is for. Resolved to sockets by each node's hub.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "snake_case")]
pub enum Audience {
    /// The visitor of a conversation and the listed agents (its current
    /// agent, and on a reassignment the previous one too).
    Conversation {
        visitor_id: String,
        agent_ids: Vec<String>,
    },
    /// Every agent connected for the site.
    SiteAgents,
    /// Every visitor connected for the site.
    SiteVisitors,
    Agent {
        agent_id: String,
    },
    Visitor {
        visitor_id: String,
    },
    /// Every socket opened with one agent session (used to end them on logout).
    Session {
        session_id: String,
    },
}

/// What to do with the sockets of the audience.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Payload {
    /// Send this JSON text frame (encoded once, shared by every socket).
    Frame { text: Bytes },
    /// A durable event the audience may not see (an internal note, for a
    /// visitor): the socket moves its cursor past `event` and sends nothing,
    /// so the next event it may see follows without a gap. Carries no text.
    Unseen,
    /// Close the sockets with this error code (e.g. the session was revoked).
    Disconnect { code: String },
    /// A node's heartbeat: the agents present on it (connected, or gone for
    /// less than the presence grace), and how many envelopes it could not
    /// send to the others since it started (`Bus::dropped`). For hubs, not
    /// for sockets; only sent between nodes of a cluster.
    Presence { node_id: String, agents: Vec<String>, dropped: u64 },
    /// A ban made or lifted (`abuse::bans`): every node's `Bans` applies
    /// it at once. For nodes, not for sockets.
    Ban { ban: crate::store::bans::Ban },
}

/// A durable event's place in its conversation, so sockets can drop
/// duplicates and fill gaps.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Seq(pub i64);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub site_id: String,
    pub audience: Audience,
    /// Set for durable conversation events: (conversation id, seq).
    pub event: Option<(String, i64)>,
    pub payload: Payload,
}

/// Where a bus delivers what it receives (the hub).
pub trait BusSink: Send + Sync + 'static {
    fn deliver(&self, envelope: Arc<Envelope>);
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Send an envelope to every node's sink (this node's included).
    async fn publish(&self, envelope: Envelope);
    /// Set the sink this node delivers to. Called once at start.
    fn attach(&self, sink: Arc<dyn BusSink>);
    /// Envelopes this node could not send to the others since it started
    /// (NATS away, or the send queue full): the others' sockets missed
    /// them, and re-read the store when they hear the count grow.
    fn dropped(&self) -> u64 {
        0
    }
    /// Whether this node failed to take in envelopes the others sent since
    /// the last call (its subscription fell behind): its own sockets must
    /// re-read the store.
    fn take_missed(&self) -> bool {
        false
    }
    /// Envelopes queued for the other nodes and not yet handed to the bus.
    fn backlog(&self) -> usize {
        0
    }
    /// A draining node's last word: hand what is queued for the other
    /// nodes to the bus before the process ends (bounded by `within`), so
    /// events committed just before the drain are not lost to their
    /// sockets on other nodes.
    async fn flush(&self, within: std::time::Duration) {
        let _ = within;
    }
    /// Whether the bus is connected, for `/readyz`.
    fn healthy(&self) -> bool {
        true
    }
}
