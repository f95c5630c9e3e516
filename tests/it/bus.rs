//! The bus's behaviour against both buses: the in-process one and NATS
//! (two real connections as two nodes on the machine's NATS server).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use holdfast::bus::local::LocalBus;
use holdfast::bus::nats::NatsBus;
use holdfast::bus::{Audience, Bus, BusSink, Envelope, Payload};

use crate::services::{nats_prefix, nats_url};

#[derive(Default)]
struct Recorder(Mutex<Vec<Arc<Envelope>>>);

impl BusSink for Recorder {
    fn deliver(&self, envelope: Arc<Envelope>) {
        self.0.lock().unwrap().push(envelope);
    }
}

impl Recorder {
    fn texts(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match &e.payload {
                Payload::Frame { text } => Some(String::from_utf8_lossy(text).into_owned()),
                _ => None,
            })
            .collect()
    }

    /// Wait until `n` frames arrived, then a little longer to catch extras.
    async fn settle(&self, n: usize) -> Vec<String> {
        let start = Instant::now();
        while self.texts().len() < n && start.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.texts()
    }
}

fn frame(site: &str, text: &str, event: Option<(&str, i64)>) -> Envelope {
    Envelope {
        site_id: site.into(),
        audience: Audience::Conversation { visitor_id: "v1".into(), agent_ids: vec!["a1".into()] },
        event: event.map(|(c, s)| (c.to_owned(), s)),
        payload: Payload::Frame { text: text.to_owned().into() },
    }
}

async fn nats_node(prefix: &str, node: &str) -> NatsBus {
    let bus = NatsBus::connect(&nats_url(), prefix, node).await.expect("NATS is needed for this test");
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
    assert_eq!(sink.settle(3).await, ["{\"n\":0}", "{\"n\":1}", "{\"n\":2}"]);
}

#[tokio::test]
async fn nats_bus_delivers_each_envelope_once_on_every_node_in_order() {
    let prefix = nats_prefix();
    let (a, b) = (nats_node(&prefix, "node-a").await, nats_node(&prefix, "node-b").await);
    let (sink_a, sink_b) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    a.attach(sink_a.clone());
    b.attach(sink_b.clone());
    // The subscriptions are live once a round trip has passed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent: Vec<String> = (0..50).map(|i| format!("{{\"type\":\"message\",\"body\":\"line\\n{i}\"}}")).collect();
    for (i, text) in sent.iter().enumerate() {
        a.publish(frame("site-1", text, Some(("conv", i as i64 + 1)))).await;
    }
    assert_eq!(sink_a.settle(50).await, sent, "the publishing node: once each, not again from its echo");
    assert_eq!(sink_b.settle(50).await, sent, "the other node: once each, in order, bytes intact");
    let got = sink_b.0.lock().unwrap()[7].clone();
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
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.publish(Envelope {
        site_id: String::new(),
        audience: Audience::SiteAgents,
        event: None,
        payload: Payload::Presence { node_id: "node-a".into(), agents: vec!["agent-1".into()] },
    })
    .await;
    a.publish(Envelope {
        site_id: "s".into(),
        audience: Audience::Session { session_id: "sess".into() },
        event: None,
        payload: Payload::Disconnect { code: "session ended".into() },
    })
    .await;
    let start = Instant::now();
    while sink_b.0.lock().unwrap().len() < 2 && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got_b = sink_b.0.lock().unwrap().clone();
    assert!(
        matches!(&got_b[0].payload, Payload::Presence { node_id, agents } if node_id == "node-a" && agents == &["agent-1"])
    );
    assert!(matches!(&got_b[1].audience, Audience::Session { session_id } if session_id == "sess"));
    let got_a = sink_a.0.lock().unwrap().clone();
    assert_eq!(got_a.len(), 1, "a node does not hear its own heartbeat");
    assert!(matches!(got_a[0].payload, Payload::Disconnect { .. }));
}

#[tokio::test]
async fn nats_bus_without_a_server_is_unhealthy_but_still_delivers_locally() {
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bus = NatsBus::connect(&format!("nats://127.0.0.1:{port}"), &nats_prefix(), "alone").await.unwrap();
    let sink = Arc::new(Recorder::default());
    bus.attach(sink.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!bus.healthy());
    bus.publish(frame("s", "{}", None)).await;
    assert_eq!(sink.settle(1).await, ["{}"], "this node's sockets still hear this node");
}
