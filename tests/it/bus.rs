//! The bus's behaviour against both buses: the in-process one and NATS
//! (two real connections as two nodes on the machine's NATS server).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use holdfast_server::bus::local::LocalBus;
use holdfast_server::bus::nats::NatsBus;
use holdfast_server::bus::{Audience, Bus, BusSink, Envelope, Payload};

use crate::services::{nats_prefix, nats_url};

/// The node id of marker heartbeats. A bus keeps a publisher's order, so
/// once a marker has arrived, everything published before it has too
/// (extras included): a positive end to "nothing more arrives".
const MARKER: &str = "marker";

#[derive(Default)]
struct Recorder {
    got: Mutex<Vec<Arc<Envelope>>>,
    /// Markers heard, kept apart from what the test sent.
    markers: AtomicUsize,
}

impl BusSink for Recorder {
    fn deliver(&self, envelope: Arc<Envelope>) {
        match &envelope.payload {
            Payload::Presence { node_id, .. } if node_id == MARKER => {
                self.markers.fetch_add(1, Ordering::SeqCst);
            }
            _ => self.got.lock().unwrap().push(envelope),
        }
    }
}

impl Recorder {
    fn got(&self) -> Vec<Arc<Envelope>> {
        self.got.lock().unwrap().clone()
    }

    fn texts(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match &e.payload {
                Payload::Frame { text } => Some(String::from_utf8_lossy(text).into_owned()),
                _ => None,
            })
            .collect()
    }
}

/// Publish a marker on `from` until `to` hears one: then `to` has whatever
/// `from` published before, and whatever reached the bus before `from`
/// heard it. Republished every 100 ms, for a subscription not yet live.
async fn mark(from: &dyn Bus, to: &Recorder) {
    let heard = to.markers.load(Ordering::SeqCst);
    let start = Instant::now();
    loop {
        from.publish(Envelope {
            site_id: String::new(),
            audience: Audience::SiteAgents,
            event: None,
            payload: Payload::Presence { node_id: MARKER.into(), agents: Vec::new(), dropped: 0 },
        })
        .await;
        let sent = Instant::now();
        while sent.elapsed() < Duration::from_millis(100) {
            if to.markers.load(Ordering::SeqCst) > heard {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no marker arrived within 5 s");
    }
}

/// Both nodes' subscriptions are live: each has heard the other.
async fn handshake(a: &NatsBus, sink_a: &Recorder, b: &NatsBus, sink_b: &Recorder) {
    mark(a, sink_b).await;
    mark(b, sink_a).await;
}

fn frame(site: &str, text: &str, event: Option<(&str, i64)>) -> Envelope {
    Envelope {
        site_id: site.into(),
        audience: Audience::Conversation { visitor_id: "v1".into(), agent_ids: vec!["a1".into()] },
        event: event.map(|(c, s)| (c.to_owned(), s)),
        payload: Payload::Frame { text: text.to_owned().into() },
    }
}

/// A heartbeat's time to live, as a node's three beats of a second.
const PEER_TTL: Duration = Duration::from_secs(3);

async fn nats_node(prefix: &str, node: &str) -> NatsBus {
    nats_node_hearing_for(prefix, node, PEER_TTL).await
}

async fn nats_node_hearing_for(prefix: &str, node: &str, peer_ttl: Duration) -> NatsBus {
    let bus = NatsBus::connect(&nats_url(), prefix, node, peer_ttl).await.expect("NATS is needed for this test");
    let start = Instant::now();
    while !bus.healthy() {
        assert!(start.elapsed() < Duration::from_secs(5), "NATS at {} did not connect", nats_url());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bus
}

#[tokio::test]
async fn local_bus_delivers_each_envelope_once_to_its_own_node() {
    let bus = LocalBus::new();
    let sink = Arc::new(Recorder::default());
    bus.attach(sink.clone());
    assert!(bus.healthy());
    for i in 0..3 {
        bus.publish(frame("s1", &format!("{{\"n\":{i}}}"), Some(("c", i)))).await;
    }
    mark(&bus, &sink).await;
    assert_eq!(sink.texts(), ["{\"n\":0}", "{\"n\":1}", "{\"n\":2}"]);
}

#[tokio::test]
async fn nats_bus_delivers_each_envelope_once_on_every_node_in_order() {
    let prefix = nats_prefix();
    let (a, b) = (nats_node(&prefix, "node-a").await, nats_node(&prefix, "node-b").await);
    let (sink_a, sink_b) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    a.attach(sink_a.clone());
    b.attach(sink_b.clone());
    handshake(&a, &sink_a, &b, &sink_b).await;
    let sent: Vec<String> = (0..50).map(|i| format!("{{\"type\":\"message\",\"body\":\"line\\n{i}\"}}")).collect();
    for (i, text) in sent.iter().enumerate() {
        a.publish(frame("site-1", text, Some(("conv", i as i64 + 1)))).await;
    }
    // B has all 50 once A's later marker is there; A has its own echoes
    // (if it failed to drop them) once B's marker, sent after, is there.
    mark(&a, &sink_b).await;
    mark(&b, &sink_a).await;
    assert_eq!(sink_a.texts(), sent, "the publishing node: once each, not again from its echo");
    assert_eq!(a.echoes(), 0, "NATS does not hand a node its own envelopes back");
    assert_eq!(sink_b.texts(), sent, "the other node: once each, in order, bytes intact");
    let got = sink_b.got()[7].clone();
    assert_eq!(got.event, Some(("conv".into(), 8)));
    assert_eq!(got.site_id, "site-1");
}

#[tokio::test]
async fn nats_bus_heartbeats_and_disconnects_reach_the_others_only() {
    let prefix = nats_prefix();
    let (a, b) = (nats_node(&prefix, "node-a").await, nats_node(&prefix, "node-b").await);
    let (sink_a, sink_b) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    a.attach(sink_a.clone());
    b.attach(sink_b.clone());
    handshake(&a, &sink_a, &b, &sink_b).await;
    a.publish(Envelope {
        site_id: String::new(),
        audience: Audience::SiteAgents,
        event: None,
        payload: Payload::Presence { node_id: "node-a".into(), agents: vec!["agent-1".into()], dropped: 3 },
    })
    .await;
    a.publish(Envelope {
        site_id: "s".into(),
        audience: Audience::Session { session_id: "sess".into() },
        event: None,
        payload: Payload::Disconnect { code: "session ended".into() },
    })
    .await;
    mark(&a, &sink_b).await;
    let got_b = sink_b.got();
    assert!(
        matches!(&got_b[0].payload, Payload::Presence { node_id, agents, dropped: 3 } if node_id == "node-a" && agents == &["agent-1"])
    );
    assert!(matches!(&got_b[1].audience, Audience::Session { session_id } if session_id == "sess"));
    // A's own heartbeat would have come back before B's marker.
    mark(&b, &sink_a).await;
    let got_a = sink_a.got();
    assert_eq!(got_a.len(), 1, "a node does not hear its own heartbeat");
    assert!(matches!(got_a[0].payload, Payload::Disconnect { .. }));
}

#[tokio::test]
async fn nats_bus_without_a_server_is_unhealthy_but_still_delivers_locally() {
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bus = NatsBus::connect(&format!("nats://127.0.0.1:{port}"), &nats_prefix(), "alone", PEER_TTL).await.unwrap();
    let sink = Arc::new(Recorder::default());
    bus.attach(sink.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!bus.healthy());
    // Publishing delivers here before it returns; nothing else can arrive.
    bus.publish(frame("s", "{}", None)).await;
    assert_eq!(sink.texts(), ["{}"], "this node's sockets still hear this node");
}

/// What a NATS message on a site's subject holds, read as the wire format
/// is written down in `bus/nats.rs`: a batch's envelopes (magic, then each
/// behind its big-endian length), or the one envelope it is.
fn on_the_wire(payload: &[u8]) -> (bool, Vec<String>) {
    let Some(mut rest) = payload.strip_prefix(b"HFB1\n") else {
        return (false, vec![String::from_utf8_lossy(payload).into_owned()]);
    };
    let mut envelopes = Vec::new();
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        envelopes.push(String::from_utf8_lossy(&rest[4..4 + len]).into_owned());
        rest = &rest[4 + len..];
    }
    (true, envelopes)
}

/// Read NATS messages off `wire` until they hold `n` envelopes: how many
/// messages that took, how many were batches, and the frames' texts.
async fn read_wire(wire: &mut async_nats::Subscriber, n: usize) -> (usize, usize, Vec<String>) {
    use futures_util::StreamExt;
    let (mut messages, mut batches, mut texts) = (0, 0, Vec::new());
    while texts.len() < n {
        let message = tokio::time::timeout(Duration::from_secs(5), wire.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {n} envelopes on the wire after 5 s", texts.len()))
            .expect("the subscription is open");
        let (batch, envelopes) = on_the_wire(&message.payload);
        messages += 1;
        batches += usize::from(batch);
        // The frame's text follows the envelope's metadata line.
        texts.extend(envelopes.iter().map(|e| e.split_once('\n').expect("metadata, then the frame").1.to_owned()));
    }
    (messages, batches, texts)
}

/// A node batches the envelopes it finds queued at once, and the other
/// node reads each once and in order; but not while a node of an earlier
/// release, whose heartbeat says nothing of batches, is heard.
#[tokio::test]
async fn nats_bus_batches_only_while_every_node_it_hears_reads_batches() {
    let prefix = nats_prefix();
    // Long beside the older node's beats (every 100 ms), so a busy
    // machine's stall does not make A forget it.
    let ttl = Duration::from_millis(1500);
    let a = nats_node_hearing_for(&prefix, "node-a", ttl).await;
    let b = nats_node_hearing_for(&prefix, "node-b", ttl).await;
    let (sink_a, sink_b) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    a.attach(sink_a.clone());
    b.attach(sink_b.clone());
    handshake(&a, &sink_a, &b, &sink_b).await;
    let raw = async_nats::connect(nats_url()).await.expect("NATS is needed for this test");
    let mut wire = raw.subscribe(format!("{prefix}.site.>")).await.unwrap();
    raw.flush().await.unwrap();
    // An older node's heartbeat, as a release before batches wrote it.
    let older = br#"{"origin":"node-old","site_id":"","audience":{"to":"site_agents"},"event":null,"kind":{"k":"presence","node_id":"node-old","agents":[],"dropped":0}}"#;
    let beats = {
        let (raw, subject) = (raw.clone(), format!("{prefix}.node.node-old"));
        tokio::spawn(async move {
            for _ in 0..100 {
                raw.publish(subject.clone(), [&older[..], b"\n"].concat().into()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // Past A's first heartbeat's life: it has listened, and heard the older node.
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    let first: Vec<String> = (0..100).map(|i| format!("{{\"n\":{i}}}")).collect();
    for (i, text) in first.iter().enumerate() {
        a.publish(frame("site-1", text, Some(("conv", i as i64 + 1)))).await;
    }
    let (messages, batches, texts) = read_wire(&mut wire, first.len()).await;
    assert_eq!((messages, batches), (100, 0), "a message each while an older node is heard");
    assert_eq!(texts, first);
    beats.abort();
    // The older node, silent, is gone after its heartbeat's life.
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    mark(&b, &sink_a).await;
    let second: Vec<String> = (100..200).map(|i| format!("{{\"n\":{i}}}")).collect();
    for (i, text) in second.iter().enumerate() {
        a.publish(frame("site-1", text, Some(("conv", i as i64 + 101)))).await;
    }
    let (messages, batches, texts) = read_wire(&mut wire, second.len()).await;
    assert!(batches >= 1 && messages < 100, "{messages} messages, {batches} batches, for 100 envelopes queued at once");
    assert_eq!(texts, second, "a batch keeps the order");
    mark(&a, &sink_b).await;
    assert_eq!(sink_b.texts(), [first, second].concat(), "the other node: each once, in order");
    // (The older node's heartbeats reached B's hub too, between the frames.)
    let frames: Vec<_> = sink_b.got().into_iter().filter(|e| matches!(e.payload, Payload::Frame { .. })).collect();
    assert_eq!(frames[150].event, Some(("conv".into(), 151)));
    assert_eq!(a.echoes(), 0);
}
