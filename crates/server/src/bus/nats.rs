//! The cluster bus: envelopes between nodes over NATS (core publish and
//! subscribe; the store is the record, so no broker persistence is needed).
//!
//! One connection per node. Every envelope is delivered to this node's hub
//! at once, in `publish`, and sent to the other nodes on the subject
//! `PREFIX.site.SITE_ID` (presence heartbeats on `PREFIX.node.NODE_ID`).
//! The connection asks NATS not to hand a node its own publishes back
//! (`no_echo`); each also carries the origin node's id, and one that came
//! back anyway would be dropped, so each envelope reaches a local socket
//! exactly once (sessions also drop duplicates by seq). Publishing never
//! waits for NATS: envelopes go through a bounded queue to a sender task, and are
//! dropped when NATS is down or the queue is full — sockets then fill the
//! gap from the store (see `chat::session`) when a later event shows it.
//! For the gaps no later event shows (a conversation's last messages), a
//! node's heartbeat carries how many envelopes it dropped, and a node whose
//! subscription fell behind (NATS's slow consumer) notes it: either way
//! the sockets that missed something re-read the store.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Audience, Bus, BusSink, Envelope, Payload};
use crate::error::{Error, Result};

/// Envelopes waiting for the sender task before new ones are dropped.
const OUTBOX: usize = 16_384;

pub struct NatsBus {
    client: async_nats::Client,
    /// This node's id: stamped on what it sends, so an echo of its own is dropped.
    node_id: String,
    /// Subject prefix: nodes of one cluster share it; clusters sharing a
    /// NATS server must not.
    prefix: String,
    sink: Arc<OnceLock<Arc<dyn BusSink>>>,
    outbox: mpsc::Sender<(String, Bytes)>,
    /// Envelopes not sent to the others (`Bus::dropped`).
    dropped: Arc<AtomicU64>,
    /// The subscription fell behind since the last `take_missed`.
    missed: Arc<AtomicBool>,
    /// This node's own envelopes NATS handed back (none, with `no_echo`).
    echoes: Arc<AtomicU64>,
}

/// Count an envelope the others will not get.
fn count_drop(dropped: &AtomicU64) {
    dropped.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("holdfast_bus_dropped_total").increment(1);
}

/// What travels in front of the frame text: everything but the text.
#[derive(Serialize, Deserialize)]
struct Meta {
    origin: String,
    site_id: String,
    audience: Audience,
    event: Option<(String, i64)>,
    kind: Kind,
    /// When the origin queued it (Unix ms, its clock): how long the way
    /// between nodes took (`holdfast_bus_delay_seconds`). Added after the
    /// first release: an envelope without it is not timed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sent_ms: Option<i64>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum Kind {
    Frame,
    Unseen,
    Disconnect {
        code: String,
    },
    Presence {
        node_id: String,
        agents: Vec<String>,
        /// Added after the first release: a heartbeat without it says 0.
        #[serde(default)]
        dropped: u64,
    },
    Ban {
        ban: crate::store::bans::Ban,
    },
}

/// A subject token from an id: NATS tokens cannot hold `.`, `*`, `>` or spaces.
fn token(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// `meta JSON` + `\n` + frame text (compact JSON never holds a raw newline).
fn encode(origin: &str, envelope: &Envelope) -> Result<Bytes> {
    let (kind, text) = match &envelope.payload {
        Payload::Frame { text } => (Kind::Frame, Some(text)),
        Payload::Unseen => (Kind::Unseen, None),
        Payload::Disconnect { code } => (Kind::Disconnect { code: code.clone() }, None),
        Payload::Presence { node_id, agents, dropped } => {
            (Kind::Presence { node_id: node_id.clone(), agents: agents.clone(), dropped: *dropped }, None)
        }
        Payload::Ban { ban } => (Kind::Ban { ban: ban.clone() }, None),
    };
    let meta = Meta {
        origin: origin.to_owned(),
        site_id: envelope.site_id.clone(),
        audience: envelope.audience.clone(),
        event: envelope.event.clone(),
        kind,
        sent_ms: Some(crate::store::now_ms()),
    };
    let meta = serde_json::to_vec(&meta).map_err(Error::internal)?;
    let mut out = BytesMut::with_capacity(meta.len() + 1 + text.map_or(0, |t| t.len()));
    out.put_slice(&meta);
    out.put_u8(b'\n');
    if let Some(t) = text {
        out.put_slice(t);
    }
    Ok(out.freeze())
}

/// The origin node, when it queued the envelope (Unix ms, if it says) and
/// the envelope; `None` for anything malformed.
fn decode(payload: &Bytes) -> Option<(String, Option<i64>, Envelope)> {
    let split = payload.iter().position(|b| *b == b'\n')?;
    let meta: Meta = serde_json::from_slice(&payload[..split]).ok()?;
    let payload = match meta.kind {
        Kind::Frame => Payload::Frame { text: payload.slice(split + 1..) },
        Kind::Unseen => Payload::Unseen,
        Kind::Disconnect { code } => Payload::Disconnect { code },
        Kind::Presence { node_id, agents, dropped } => Payload::Presence { node_id, agents, dropped },
        Kind::Ban { ban } => Payload::Ban { ban },
    };
    let envelope = Envelope { site_id: meta.site_id, audience: meta.audience, event: meta.event, payload };
    Some((meta.origin, meta.sent_ms, envelope))
}

impl NatsBus {
    /// Connect to `url` (in the background: a node starts, and stays up,
    /// while NATS is away; `healthy()` says which), subscribe to the
    /// cluster's subjects and start the sender.
    pub async fn connect(url: &str, prefix: &str, node_id: &str) -> Result<NatsBus> {
        let missed = Arc::new(AtomicBool::new(false));
        let on_missed = missed.clone();
        let client = async_nats::ConnectOptions::new()
            .name(format!("holdfast-{node_id}"))
            .no_echo()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .ping_interval(Duration::from_secs(5))
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(|attempts| Duration::from_millis((100u64 << attempts.min(5)).min(2000)))
            .event_callback(move |event| {
                let missed = on_missed.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => tracing::info!("bus: connected to NATS"),
                        async_nats::Event::Disconnected => tracing::warn!("bus: lost NATS; degraded"),
                        // The subscription's queue was full: NATS dropped
                        // envelopes for this node.
                        async_nats::Event::SlowConsumer(_) => {
                            metrics::counter!("holdfast_bus_missed_total").increment(1);
                            if !missed.swap(true, Ordering::Relaxed) {
                                tracing::warn!("bus: fell behind the other nodes; sockets will re-read the store");
                            }
                        }
                        other => tracing::debug!(event = %other, "bus event"),
                    }
                }
            })
            .connect(url)
            .await
            .map_err(|e| Error::internal(anyhow::anyhow!("cannot use NATS at {url}: {e}")))?;
        let prefix = token(prefix);
        let sink: Arc<OnceLock<Arc<dyn BusSink>>> = Arc::default();
        let subscriber = client
            .subscribe(format!("{prefix}.>"))
            .await
            .map_err(|e| Error::internal(anyhow::anyhow!("cannot subscribe on NATS: {e}")))?;
        let echoes = Arc::new(AtomicU64::new(0));
        tokio::spawn(receive(subscriber, node_id.to_owned(), sink.clone(), echoes.clone()));
        let (outbox, rx) = mpsc::channel(OUTBOX);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(send(client.clone(), rx, dropped.clone()));
        Ok(NatsBus { client, node_id: node_id.to_owned(), prefix, sink, outbox, dropped, missed, echoes })
    }

    /// How many of this node's own envelopes came back from NATS.
    pub fn echoes(&self) -> u64 {
        self.echoes.load(Ordering::Relaxed)
    }

    fn subject(&self, envelope: &Envelope) -> String {
        match &envelope.payload {
            Payload::Presence { node_id, .. } => format!("{}.node.{}", self.prefix, token(node_id)),
            _ => format!("{}.site.{}", self.prefix, token(&envelope.site_id)),
        }
    }
}

async fn receive(
    mut subscriber: async_nats::Subscriber,
    node_id: String,
    sink: Arc<OnceLock<Arc<dyn BusSink>>>,
    echoes: Arc<AtomicU64>,
) {
    while let Some(message) = subscriber.next().await {
        let Some((origin, sent_ms, envelope)) = decode(&message.payload) else {
            metrics::counter!("holdfast_bus_malformed_total").increment(1);
            continue;
        };
        if origin == node_id {
            echoes.fetch_add(1, Ordering::Relaxed);
            continue; // already delivered here by `publish`
        }
        metrics::counter!("holdfast_bus_received_total").increment(1);
        if let Some(sent_ms) = sent_ms {
            let delay_ms = (crate::store::now_ms() - sent_ms).max(0);
            metrics::histogram!("holdfast_bus_delay_seconds").record(delay_ms as f64 / 1000.0);
        }
        if let Some(sink) = sink.get() {
            sink.deliver(Arc::new(envelope));
        }
    }
    tracing::error!("bus: the NATS subscription ended");
}

async fn send(client: async_nats::Client, mut rx: mpsc::Receiver<(String, Bytes)>, dropped: Arc<AtomicU64>) {
    while let Some((subject, payload)) = rx.recv().await {
        // While disconnected, drop rather than pile up stale envelopes for
        // the reconnect: the store has everything durable.
        if client.connection_state() != async_nats::connection::State::Connected {
            count_drop(&dropped);
            continue;
        }
        if client.publish(subject, payload).await.is_err() {
            count_drop(&dropped);
        }
    }
}

#[async_trait]
impl Bus for NatsBus {
    async fn publish(&self, envelope: Envelope) {
        let payload = match encode(&self.node_id, &envelope) {
            Ok(p) => p,
            Err(err) => {
                tracing::error!(error = ?err, "bus: cannot encode an envelope");
                return;
            }
        };
        if self.outbox.try_send((self.subject(&envelope), payload)).is_err() {
            count_drop(&self.dropped);
        }
        // A heartbeat is about this node, for the others.
        if !matches!(envelope.payload, Payload::Presence { .. })
            && let Some(sink) = self.sink.get()
        {
            sink.deliver(Arc::new(envelope));
        }
    }

    fn attach(&self, sink: Arc<dyn BusSink>) {
        let _ = self.sink.set(sink);
    }

    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    async fn flush(&self, within: Duration) {
        let flushed = async {
            // The sender task empties the queue, then NATS writes its buffer.
            while self.outbox.capacity() < self.outbox.max_capacity() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            self.client.flush().await
        };
        match tokio::time::timeout(within, flushed).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "bus: could not flush to NATS while draining"),
            Err(_) => tracing::warn!("bus: NATS did not take the last envelopes while draining"),
        }
    }

    fn take_missed(&self) -> bool {
        self.missed.swap(false, Ordering::Relaxed)
    }

    fn backlog(&self) -> usize {
        OUTBOX - self.outbox.capacity()
    }

    fn healthy(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_survive_the_wire_and_garbage_is_refused() {
        let envelope = Envelope {
            site_id: "s.1".into(),
            audience: Audience::Conversation { visitor_id: "v".into(), agent_ids: vec!["a".into()] },
            event: Some(("c".into(), 7)),
            payload: Payload::Frame { text: Bytes::from_static(b"{\"type\":\"message\",\"body\":\"a\\nb\"}") },
        };
        let before = crate::store::now_ms();
        let (origin, sent_ms, back) = decode(&encode("node-1", &envelope).unwrap()).unwrap();
        assert_eq!(origin, "node-1");
        assert!(sent_ms.is_some_and(|at| (before..=crate::store::now_ms()).contains(&at)), "{sent_ms:?}");
        let older =
            br#"{"origin":"n","site_id":"s","audience":{"to":"site_agents"},"event":null,"kind":{"k":"unseen"}}"#;
        let (_, unstamped, _) = decode(&Bytes::from([&older[..], b"\n"].concat())).expect("an older node's envelope");
        assert_eq!(unstamped, None);
        assert_eq!(back.event, Some(("c".into(), 7)));
        let Payload::Frame { text } = back.payload else { panic!("a frame") };
        assert_eq!(&text[..], b"{\"type\":\"message\",\"body\":\"a\\nb\"}");
        assert!(decode(&Bytes::from_static(b"not json\n{}")).is_none());
        assert!(decode(&Bytes::from_static(b"no newline")).is_none());
        assert_eq!(token("a.b*c>d e"), "a_b_c_d_e");
    }
}
