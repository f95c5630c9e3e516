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
//!
//! What the sender finds queued at once goes out as one NATS message per
//! subject (a batch: `BATCH_MAGIC`, then each envelope behind its length),
//! where each envelope used to cost NATS a message of its own. A node of an
//! earlier release reads a batch as malformed, so a node batches only once
//! it has listened for a heartbeat's time to live and every node it heard
//! in that time says, in its heartbeat, that it reads batches (`Peers`).
//! Heartbeats always go alone, readable by every release.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Audience, Bus, BusSink, Envelope, Payload};
use crate::error::{Error, Result};

/// Envelopes waiting for the sender task before new ones are dropped.
const OUTBOX: usize = 16_384;

/// In front of a batch: no envelope starts so (each starts with `{`).
const BATCH_MAGIC: &[u8] = b"HFB1\n";

/// A batch stops growing past this many bytes (NATS's own limit on a
/// message is 1 MiB by default); an envelope bigger than it goes alone.
const BATCH_BYTES: usize = 64 * 1024;

/// An envelope on its way to NATS.
struct Outgoing {
    subject: String,
    payload: Bytes,
    /// A heartbeat is not: every release must read it.
    batchable: bool,
}

pub struct NatsBus {
    client: async_nats::Client,
    /// This node's id: stamped on what it sends, so an echo of its own is dropped.
    node_id: String,
    /// Subject prefix: nodes of one cluster share it; clusters sharing a
    /// NATS server must not.
    prefix: String,
    sink: Arc<OnceLock<Arc<dyn BusSink>>>,
    outbox: mpsc::Sender<Outgoing>,
    /// Envelopes not sent to the others (`Bus::dropped`).
    dropped: Arc<AtomicU64>,
    /// The subscription fell behind since the last `take_missed`.
    missed: Arc<AtomicBool>,
    /// This node's own envelopes NATS handed back (none, with `no_echo`).
    echoes: Arc<AtomicU64>,
}

/// Count `n` envelopes the others will not get.
fn count_drop(dropped: &AtomicU64, n: u64) {
    dropped.fetch_add(n, Ordering::Relaxed);
    metrics::counter!("holdfast_bus_dropped_total").increment(n);
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
        /// Whether the sender reads batches; a release before them says
        /// nothing, which reads as no.
        #[serde(default)]
        reads_batches: bool,
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
            let (node_id, agents, dropped) = (node_id.clone(), agents.clone(), *dropped);
            (Kind::Presence { node_id, agents, dropped, reads_batches: true }, None)
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

/// An envelope as it came off the wire.
struct Received {
    /// The node that sent it.
    origin: String,
    /// When the origin queued it (Unix ms), if it says.
    sent_ms: Option<i64>,
    /// For a heartbeat: whether its node reads batches.
    reads_batches: Option<bool>,
    envelope: Envelope,
}

/// One envelope; `None` for anything malformed.
fn decode(payload: &Bytes) -> Option<Received> {
    let split = payload.iter().position(|b| *b == b'\n')?;
    let meta: Meta = serde_json::from_slice(&payload[..split]).ok()?;
    let (payload, reads_batches) = match meta.kind {
        Kind::Frame => (Payload::Frame { text: payload.slice(split + 1..) }, None),
        Kind::Unseen => (Payload::Unseen, None),
        Kind::Disconnect { code } => (Payload::Disconnect { code }, None),
        Kind::Presence { node_id, agents, dropped, reads_batches } => {
            (Payload::Presence { node_id, agents, dropped }, Some(reads_batches))
        }
        Kind::Ban { ban } => (Payload::Ban { ban }, None),
    };
    let envelope = Envelope { site_id: meta.site_id, audience: meta.audience, event: meta.event, payload };
    Some(Received { origin: meta.origin, sent_ms: meta.sent_ms, reads_batches, envelope })
}

/// The envelopes in one NATS message: a batch's, in order, or the message
/// itself; `Err` with those read before a batch turned out malformed.
fn unbatch(message: &Bytes) -> Result<Vec<Bytes>, Vec<Bytes>> {
    let Some(mut rest) = message.strip_prefix(BATCH_MAGIC) else { return Ok(vec![message.clone()]) };
    let mut out = Vec::new();
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else { return Err(out) };
        let len = u32::from_be_bytes(*len) as usize;
        if len > tail.len() {
            return Err(out);
        }
        out.push(message.slice_ref(&tail[..len]));
        rest = &tail[len..];
    }
    Ok(out)
}

/// The NATS messages for what the sender found queued, with how many
/// envelopes each holds: with `batch`, a subject's batchable envelopes
/// together (in order, a new batch past `BATCH_BYTES`), placed where the
/// first of them was; the rest alone, in order. A batch of one is sent as
/// that envelope, readable by every release.
fn messages(queued: Vec<Outgoing>, batch: bool) -> Vec<(String, Bytes, usize)> {
    let mut out: Vec<(String, Vec<Bytes>, usize)> = Vec::new();
    // The subject's batch still open, by subject: its index in `out`.
    let mut open: HashMap<String, usize> = HashMap::new();
    for item in queued {
        if batch && item.batchable {
            if let Some(&at) = open.get(&item.subject) {
                let (_, parts, bytes) = &mut out[at];
                if *bytes + 4 + item.payload.len() <= BATCH_BYTES {
                    *bytes += 4 + item.payload.len();
                    parts.push(item.payload);
                    continue;
                }
            }
            open.insert(item.subject.clone(), out.len());
        }
        let bytes = BATCH_MAGIC.len() + 4 + item.payload.len();
        out.push((item.subject, vec![item.payload], bytes));
    }
    out.into_iter()
        .map(|(subject, mut parts, bytes)| {
            if parts.len() == 1 {
                return (subject, parts.pop().unwrap_or_default(), 1);
            }
            let mut joined = BytesMut::with_capacity(bytes);
            joined.put_slice(BATCH_MAGIC);
            for part in &parts {
                joined.put_u32(part.len() as u32);
                joined.put_slice(part);
            }
            (subject, joined.freeze(), parts.len())
        })
        .collect()
}

/// The nodes this one hears and whether each reads batches. A node
/// batches once it has listened for `ttl` (a heartbeat's time to live: by
/// then it has heard every live node) and while every node heard within
/// `ttl` reads them. A node of an earlier release that starts beside
/// batching nodes can miss what they send until they hear its first
/// heartbeat (`presence_beat`); `docs/deploy.md` says so.
struct Peers {
    ttl: Duration,
    heard: Mutex<Heard>,
}

/// What `Peers` holds under its lock.
struct Heard {
    /// Since when this node has heard the others: its start, or its last
    /// reconnect to NATS (nodes may have come meanwhile).
    since: Instant,
    /// Each node heard: when last, and whether it reads batches.
    nodes: HashMap<String, (Instant, bool)>,
}

impl Peers {
    fn new(ttl: Duration) -> Peers {
        Peers { ttl, heard: Mutex::new(Heard { since: Instant::now(), nodes: HashMap::new() }) }
    }

    fn heard(&self) -> std::sync::MutexGuard<'_, Heard> {
        self.heard.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn listen_again(&self) {
        self.heard().since = Instant::now();
    }

    fn note(&self, origin: &str, reads_batches: bool) {
        self.heard().nodes.insert(origin.to_owned(), (Instant::now(), reads_batches));
    }

    fn all_read_batches(&self) -> bool {
        let now = Instant::now();
        let mut heard = self.heard();
        if now.duration_since(heard.since) < self.ttl {
            return false;
        }
        heard.nodes.retain(|_, (at, _)| now.duration_since(*at) < self.ttl);
        heard.nodes.values().all(|(_, reads)| *reads)
    }
}

impl NatsBus {
    /// Connect to `url` (in the background: a node starts, and stays up,
    /// while NATS is away; `healthy()` says which), subscribe to the
    /// cluster's subjects and start the sender. `peer_ttl` is how long a
    /// node's heartbeat lasts (`Hub::set_remote_ttl`): see `Peers`.
    pub async fn connect(url: &str, prefix: &str, node_id: &str, peer_ttl: Duration) -> Result<NatsBus> {
        let missed = Arc::new(AtomicBool::new(false));
        let peers = Arc::new(Peers::new(peer_ttl));
        let (on_missed, on_connect) = (missed.clone(), peers.clone());
        let client = async_nats::ConnectOptions::new()
            .name(format!("holdfast-{node_id}"))
            .no_echo()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .ping_interval(Duration::from_secs(5))
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(|attempts| Duration::from_millis((100u64 << attempts.min(5)).min(2000)))
            .event_callback(move |event| {
                let (missed, peers) = (on_missed.clone(), on_connect.clone());
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            peers.listen_again();
                            tracing::info!("bus: connected to NATS");
                        }
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
        tokio::spawn(receive(subscriber, node_id.to_owned(), sink.clone(), echoes.clone(), peers.clone()));
        let (outbox, rx) = mpsc::channel(OUTBOX);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(send(client.clone(), rx, dropped.clone(), peers));
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
    peers: Arc<Peers>,
) {
    while let Some(message) = subscriber.next().await {
        let (parts, whole) = match unbatch(&message.payload) {
            Ok(parts) => (parts, true),
            Err(parts) => (parts, false),
        };
        for part in parts {
            let Some(received) = decode(&part) else {
                metrics::counter!("holdfast_bus_malformed_total").increment(1);
                continue;
            };
            if received.origin == node_id {
                echoes.fetch_add(1, Ordering::Relaxed);
                continue; // already delivered here by `publish`
            }
            if let Some(reads_batches) = received.reads_batches {
                peers.note(&received.origin, reads_batches);
            }
            metrics::counter!("holdfast_bus_received_total").increment(1);
            if let Some(sent_ms) = received.sent_ms {
                let delay_ms = (crate::store::now_ms() - sent_ms).max(0);
                metrics::histogram!("holdfast_bus_delay_seconds").record(delay_ms as f64 / 1000.0);
            }
            if let Some(sink) = sink.get() {
                sink.deliver(Arc::new(received.envelope));
            }
        }
        if !whole {
            metrics::counter!("holdfast_bus_malformed_total").increment(1);
        }
    }
    tracing::error!("bus: the NATS subscription ended");
}

async fn send(
    client: async_nats::Client,
    mut rx: mpsc::Receiver<Outgoing>,
    dropped: Arc<AtomicU64>,
    peers: Arc<Peers>,
) {
    while let Some(first) = rx.recv().await {
        // The tasks woken by the same commit queue theirs meanwhile.
        tokio::task::yield_now().await;
        let mut bytes = first.payload.len();
        let mut queued = vec![first];
        while bytes < BATCH_BYTES
            && let Ok(next) = rx.try_recv()
        {
            bytes += next.payload.len();
            queued.push(next);
        }
        // While disconnected, drop rather than pile up stale envelopes for
        // the reconnect: the store has everything durable.
        if client.connection_state() != async_nats::connection::State::Connected {
            count_drop(&dropped, queued.len() as u64);
            continue;
        }
        for (subject, payload, envelopes) in messages(queued, peers.all_read_batches()) {
            metrics::counter!("holdfast_bus_sent_total").increment(1);
            if client.publish(subject, payload).await.is_err() {
                count_drop(&dropped, envelopes as u64);
            }
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
        let batchable = !matches!(envelope.payload, Payload::Presence { .. });
        if self.outbox.try_send(Outgoing { subject: self.subject(&envelope), payload, batchable }).is_err() {
            count_drop(&self.dropped, 1);
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
        let Received { origin, sent_ms, reads_batches, envelope: back } =
            decode(&encode("node-1", &envelope).unwrap()).unwrap();
        assert_eq!((origin.as_str(), reads_batches), ("node-1", None));
        assert!(sent_ms.is_some_and(|at| (before..=crate::store::now_ms()).contains(&at)), "{sent_ms:?}");
        let older =
            br#"{"origin":"n","site_id":"s","audience":{"to":"site_agents"},"event":null,"kind":{"k":"unseen"}}"#;
        let older = decode(&Bytes::from([&older[..], b"\n"].concat())).expect("an older node's envelope");
        assert_eq!(older.sent_ms, None);
        assert_eq!(back.event, Some(("c".into(), 7)));
        let Payload::Frame { text } = back.payload else { panic!("a frame") };
        assert_eq!(&text[..], b"{\"type\":\"message\",\"body\":\"a\\nb\"}");
        assert!(decode(&Bytes::from_static(b"not json\n{}")).is_none());
        assert!(decode(&Bytes::from_static(b"no newline")).is_none());
        assert_eq!(token("a.b*c>d e"), "a_b_c_d_e");
    }

    fn out(subject: &str, text: &str, batchable: bool) -> Outgoing {
        Outgoing { subject: subject.into(), payload: Bytes::copy_from_slice(text.as_bytes()), batchable }
    }

    /// Each NATS message as its subject and the texts of its envelopes.
    fn read(sent: Vec<(String, Bytes, usize)>) -> Vec<(String, Vec<String>)> {
        sent.into_iter()
            .map(|(subject, payload, n)| {
                let parts = unbatch(&payload).expect("a whole batch");
                assert_eq!(parts.len(), n, "the count says what the message holds");
                (subject, parts.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect())
            })
            .collect()
    }

    #[test]
    fn a_subjects_envelopes_go_together_in_order_and_heartbeats_alone() {
        let queued = || {
            vec![
                out("s.a", "{1}", true),
                out("s.b", "{2}", true),
                out("node.n", "{beat}", false),
                out("s.a", "{3}", true),
                out("node.n", "{beat2}", false),
                out("s.a", "{4}", true),
            ]
        };
        let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            read(messages(queued(), true)),
            [
                ("s.a".to_string(), strs(&["{1}", "{3}", "{4}"])),
                ("s.b".to_string(), strs(&["{2}"])),
                ("node.n".to_string(), strs(&["{beat}"])),
                ("node.n".to_string(), strs(&["{beat2}"])),
            ]
        );
        let sent = messages(queued(), true);
        assert!(sent[0].1.starts_with(BATCH_MAGIC), "three envelopes are a batch");
        assert_eq!(&sent[1].1[..], b"{2}", "a batch of one is the envelope itself, for every release");
        let alone = read(messages(queued(), false));
        assert_eq!(alone.len(), 6, "without batches, a message each");
        let texts: Vec<String> = alone.into_iter().flat_map(|(_, texts)| texts).collect();
        assert_eq!(texts, strs(&["{1}", "{2}", "{beat}", "{3}", "{beat2}", "{4}"]));
    }

    #[test]
    fn a_batch_stops_at_its_size_and_a_big_envelope_goes_alone() {
        let big = "x".repeat(BATCH_BYTES);
        let half = "y".repeat(BATCH_BYTES / 2);
        let queued = vec![out("s", &half, true), out("s", &half, true), out("s", &big, true), out("s", "{z}", true)];
        let sent = messages(queued, true);
        let counts: Vec<usize> = sent.iter().map(|(_, _, n)| *n).collect();
        assert_eq!(counts, [1, 1, 1, 1], "two halves and their framing do not fit one batch");
        let small: Vec<Outgoing> = (0..10).map(|i| out("s", &format!("{{{i}}}"), true)).collect();
        let sent = messages(small, true);
        assert_eq!(sent.len(), 1);
        assert!(sent.iter().all(|(_, payload, _)| payload.len() <= BATCH_BYTES));
    }

    #[test]
    fn a_cut_batch_gives_what_it_holds_and_says_so() {
        let sent = messages(vec![out("s", "{1}", true), out("s", "{2}", true)], true);
        let whole = sent[0].1.clone();
        let cut = whole.slice(..whole.len() - 1);
        assert_eq!(unbatch(&cut).expect_err("cut"), [Bytes::from_static(b"{1}")]);
        let mut lying = BytesMut::from(BATCH_MAGIC);
        lying.put_u32(u32::MAX);
        assert!(unbatch(&lying.freeze()).expect_err("too long").is_empty());
        assert_eq!(unbatch(&Bytes::from_static(b"{x}")).unwrap(), [Bytes::from_static(b"{x}")]);
    }

    #[test]
    fn a_node_batches_after_listening_and_while_every_node_heard_reads_batches() {
        let ttl = Duration::from_millis(200);
        let peers = Peers::new(ttl);
        peers.note("new", true);
        assert!(!peers.all_read_batches(), "not before it has listened for a heartbeat's life");
        std::thread::sleep(ttl);
        peers.note("new", true);
        assert!(peers.all_read_batches());
        peers.note("old", false);
        assert!(!peers.all_read_batches(), "a node of an earlier release is heard");
        std::thread::sleep(ttl);
        peers.note("new", true);
        assert!(peers.all_read_batches(), "the older node has not been heard for a heartbeat's life");
    }

    #[test]
    fn a_heartbeat_says_its_node_reads_batches_and_an_older_ones_reads_as_no() {
        let beat = Envelope {
            site_id: String::new(),
            audience: Audience::SiteAgents,
            event: None,
            payload: Payload::Presence { node_id: "n".into(), agents: vec!["a".into()], dropped: 2 },
        };
        assert_eq!(decode(&encode("n", &beat).unwrap()).unwrap().reads_batches, Some(true));
        let older = br#"{"origin":"o","site_id":"","audience":{"to":"site_agents"},"event":null,"kind":{"k":"presence","node_id":"o","agents":[],"dropped":0}}"#;
        let older = decode(&Bytes::from([&older[..], b"\n"].concat())).expect("an older heartbeat");
        assert_eq!(older.reads_batches, Some(false));
    }
}
