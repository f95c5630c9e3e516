//! Cluster mode: two real nodes on loopback sharing the machine's
//! PostgreSQL (a fresh database per test) and NATS (a subject prefix per
//! test). In-process nodes for the behaviours; the real binary, twice, for
//! `kill -9`.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use holdfast_server::config::Config;
use holdfast_server::store::outbox::Scope;
use holdfast_server::store::status::StatusStore;
use holdfast_server::store::{ConversationFilter, ConversationStatus, NewAgent, Role, Store, postgres::PostgresStore};
use reqwest::Method;
use serde_json::{Value, json};

use crate::services::{TestDb, nats_prefix, nats_url};
use crate::support::{Client, TestServer, WAIT};

struct Cluster {
    a: TestServer,
    b: TestServer,
    _db: TestDb,
}

fn cluster_config(c: &mut Config, db: &str, prefix: &str) {
    c.database_url = Some(db.to_owned());
    c.nats_url = Some(nats_url());
    c.nats_prefix = prefix.to_owned();
    c.database_max_connections = 6;
    c.presence_beat = Duration::from_millis(200);
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < WAIT, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn cluster() -> Cluster {
    cluster_with(|_| {}).await
}

async fn cluster_with(tune: impl Fn(&mut Config)) -> Cluster {
    let db = TestDb::create().await;
    let prefix = nats_prefix();
    let a = TestServer::start_with(|c| {
        cluster_config(c, &db.url, &prefix);
        tune(c)
    })
    .await;
    let b = TestServer::start_with(|c| {
        cluster_config(c, &db.url, &prefix);
        tune(c)
    })
    .await;
    eventually("both nodes are on NATS", async || a.state.chat.bus.healthy() && b.state.chat.bus.healthy()).await;
    Cluster { a, b, _db: db }
}

/// Wait until `node` sees the agent as present (heartbeats crossed).
async fn sees_agent(node: &TestServer, agent_id: &str) {
    eventually("the other node sees the agent", async || node.state.chat.hub.agent_present(agent_id)).await;
}

async fn visitor_on(node: &TestServer, site: &holdfast_server::store::Site) -> (Client, String) {
    let (_, token) = node.visitor(site).await;
    (Client::connect(node, "/api/v1/visitor/socket", &token, HashMap::new()).await, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_on_one_node_chats_with_an_agent_on_the_other() {
    let c = cluster().await;
    let site = c.a.site().await;
    let agent = c.b.agent(&site, "bee@example.com", 5).await;
    let (mut agent_sock, _) = c.b.online_agent("bee@example.com").await;
    sees_agent(&c.a, &agent.id).await;
    // Presence (the heartbeat) and availability (read from the store,
    // cached for up to 2 s) travel apart; node A counts the agent online
    // once both have reached it.
    eventually("node A counts the agent online", async || {
        c.a.state.chat.agents_online(&site.id).await.unwrap_or(false)
    })
    .await;

    let (mut visitor, _) = visitor_on(&c.a, &site).await;
    assert_eq!(visitor.welcome["agents_online"], true, "node A knows an agent is online on node B");
    let ack = visitor.say(None, "v1", "hello from node A").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let conv = ack["conv"].as_str().unwrap().to_owned();
    let assigned = visitor.wait_for(|f| f["type"] == "assigned").await;
    assert_eq!(assigned["agent"]["id"], agent.id.as_str());
    agent_sock.wait_for(|f| f["type"] == "message" && f["body"] == "hello from node A").await;

    // Typing both ways.
    agent_sock.send(json!({"type": "typing", "conv": conv, "on": true})).await;
    let typing = visitor.wait_for(|f| f["type"] == "typing").await;
    assert_eq!((typing["on"].as_bool(), typing["from"]["kind"].as_str()), (Some(true), Some("agent")));
    visitor.send(json!({"type": "typing", "conv": conv, "on": true})).await;
    agent_sock.wait_for(|f| f["type"] == "typing" && f["from"]["kind"] == "visitor").await;

    // A reply, then a read receipt back.
    let reply = agent_sock.say(Some(&conv), "a1", "hello from node B").await;
    assert_eq!(reply["type"], "ack");
    let got = visitor.wait_for(|f| f["type"] == "message" && f["body"] == "hello from node B").await;
    visitor.send(json!({"type": "read", "conv": conv, "seq": got["seq"]})).await;
    let read = agent_sock.wait_for(|f| f["type"] == "read").await;
    assert_eq!(read["up_to"], got["seq"]);

    // Availability crosses too: the agent steps away, the visitor on A hears
    // that nobody is online.
    agent_sock.send(json!({"type": "set_availability", "availability": "away"})).await;
    visitor.wait_for(|f| f["type"] == "agents_online" && f["online"] == false).await;

    let seqs: Vec<i64> =
        visitor.events.iter().filter(|e| e["conv"] == conv.as_str()).map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "in order, nothing twice: {seqs:?}");

    // Each node timed what crossed from the other, and has nothing left
    // queued for it.
    for node in [&c.a, &c.b] {
        let timed = crate::support::metric(&node.base, "holdfast_bus_delay_seconds_count").await;
        assert!(timed.is_some_and(|n| n >= 1.0), "{timed:?}");
        assert_eq!(crate::support::metric(&node.base, "holdfast_bus_backlog").await, Some(0.0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_and_positions_span_both_nodes() {
    let c = cluster().await;
    let site = c.a.site().await;
    let agent = c.b.agent(&site, "solo@example.com", 1).await;
    let (mut agent_sock, _) = c.b.online_agent("solo@example.com").await;
    sees_agent(&c.a, &agent.id).await;

    let (mut v1, _) = visitor_on(&c.a, &site).await;
    let conv1 = v1.say(None, "1", "first").await["conv"].as_str().unwrap().to_owned();
    v1.wait_for(|f| f["type"] == "assigned").await;
    let (mut v2, _) = visitor_on(&c.a, &site).await;
    let conv2 = v2.say(None, "2", "second").await["conv"].as_str().unwrap().to_owned();
    assert_eq!(v2.wait_for(|f| f["type"] == "queue_position").await["position"], 1);
    let (mut v3, _) = visitor_on(&c.b, &site).await;
    v3.say(None, "3", "third").await;
    assert_eq!(v3.wait_for(|f| f["type"] == "queue_position").await["position"], 2);
    let queue = agent_sock.wait_for(|f| f["type"] == "queue" && f["queue"].as_array().unwrap().len() == 2).await;
    assert_eq!(queue["queue"][0]["conv"], conv2.as_str());

    // The agent on B closes the first chat: the head of the queue (a
    // visitor on A) is routed to them, and the one behind moves up.
    agent_sock.send(json!({"type": "close", "conv": conv1})).await;
    let assigned = v2.wait_for(|f| f["type"] == "assigned").await;
    assert_eq!(assigned["agent"]["id"], agent.id.as_str());
    v3.wait_for(|f| f["type"] == "queue_position" && f["position"] == 1).await;
}

/// `n` agents with chat limit `limit`, alternately on node A and node B,
/// online, and seen by both nodes: their ids and their sockets.
async fn agents_on_both(
    c: &Cluster,
    site: &holdfast_server::store::Site,
    name: &str,
    n: usize,
    limit: i64,
) -> (Vec<String>, Vec<Client>) {
    let (mut agents, mut sockets) = (Vec::new(), Vec::new());
    for i in 0..n {
        let node = if i % 2 == 0 { &c.a } else { &c.b };
        let email = format!("{name}{i}@example.com");
        agents.push(node.agent(site, &email, limit).await.id);
        sockets.push(node.online_agent(&email).await.0);
    }
    for id in &agents {
        sees_agent(&c.a, id).await;
        sees_agent(&c.b, id).await;
    }
    (agents, sockets)
}

/// `n` visitors, alternately on node A and node B, each starting a chat at
/// the same moment; returned once every start is acknowledged (and, with
/// `assigned`, once each is given to an agent).
async fn chats_started_at_once(
    c: &Cluster,
    site: &holdfast_server::store::Site,
    n: usize,
    assigned: bool,
) -> Vec<Client> {
    let mut visitors = Vec::new();
    for i in 0..n {
        let node = if i % 2 == 0 { &c.a } else { &c.b };
        visitors.push(visitor_on(node, site).await.0);
    }
    let starts = visitors.into_iter().enumerate().map(|(i, mut v)| {
        tokio::spawn(async move {
            let ack = v.say(None, &format!("start-{i}"), "hello").await;
            assert_eq!(ack["type"], "ack", "{ack}");
            if assigned {
                v.wait_for(|f| f["type"] == "assigned").await;
            }
            v
        })
    });
    let mut started = Vec::new();
    for s in starts {
        started.push(s.await.unwrap());
    }
    started
}

/// Least busy first holds across nodes: as many chats as agents, started
/// at once on both nodes, give every agent one, not some two and others
/// none (each node planned against its own picture of the agents' loads;
/// `bench relay-cluster` found 21 of 200 agents with two chats).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chats_started_at_once_on_both_nodes_go_one_to_each_agent() {
    const AGENTS: usize = 8;
    let c = cluster().await;
    let site = c.a.site().await;
    let (agents, _sockets) = agents_on_both(&c, &site, "even", AGENTS, 5).await;
    let _visitors = chats_started_at_once(&c, &site, AGENTS, true).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // let any late routing show
    let filter = ConversationFilter { status: Some(ConversationStatus::Active), limit: 100, ..Default::default() };
    let active = c.a.state.store.conversations(&site.id, filter).await.unwrap();
    assert_eq!(active.len(), AGENTS);
    let per_agent: Vec<usize> =
        agents.iter().map(|id| active.iter().filter(|c| c.agent_id.as_deref() == Some(id)).count()).collect();
    assert_eq!(per_agent, vec![1; AGENTS], "chats per agent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_routing_from_both_nodes_assigns_each_chat_once_within_limits() {
    const LIMIT: i64 = 3;
    let c = cluster().await;
    let site = c.a.site().await;
    let (agents, _sockets) = agents_on_both(&c, &site, "race", 4, LIMIT).await;
    // 30 visitors, half on each node, all start a chat at once.
    let _visitors = chats_started_at_once(&c, &site, 30, false).await;
    let store = c.a.state.store.clone();
    let active = async || {
        let filter = ConversationFilter { status: Some(ConversationStatus::Active), limit: 100, ..Default::default() };
        store.conversations(&site.id, filter).await.unwrap()
    };
    eventually("every free slot is taken", async || active().await.len() == 4 * LIMIT as usize).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // let any late double-routing show
    let active = active().await;
    assert_eq!(active.len(), 12, "no more than the slots there are");
    for id in &agents {
        assert_eq!(active.iter().filter(|c| c.agent_id.as_deref() == Some(id)).count() as i64, LIMIT);
    }
    let all = store.conversations(&site.id, ConversationFilter { limit: 100, ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 30);
    for conv in &all {
        let assigned =
            store.events_after(&conv.id, 0, 100).await.unwrap().iter().filter(|e| e.kind == "assigned").count();
        assert!(assigned <= 1, "conversation {} assigned {assigned} times", conv.id);
    }
    assert_eq!(store.queue(&site.id).await.unwrap().len(), 18);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_resume_on_the_other_node_with_exactly_what_they_missed() {
    // No status-page self-probes: their login probe hashes a password on
    // the leading node every few seconds, which a slow run can catch in
    // the window this test counts hashes in.
    let c = cluster_with(|c| c.status.self_probe = false).await;
    let site = c.a.site().await;
    let agent = c.b.agent(&site, "res@example.com", 5).await;
    let (mut agent_sock, access) = c.b.online_agent("res@example.com").await;
    sees_agent(&c.a, &agent.id).await;
    let (mut visitor, vtoken) = visitor_on(&c.a, &site).await;
    let conv = visitor.say(None, "v0", "hi").await["conv"].as_str().unwrap().to_owned();
    visitor.wait_for(|f| f["type"] == "assigned").await;
    agent_sock.wait_for(|f| f["body"] == "hi").await;
    let hashes = (c.a.state.auth.hashes.computed(), c.b.state.auth.hashes.computed());

    // The visitor drops from A and comes back on B.
    let cursors = visitor.cursors.clone();
    let last = cursors[&conv];
    visitor.cut();
    for i in 0..5 {
        assert_eq!(agent_sock.say(Some(&conv), &format!("a{i}"), &format!("missed {i}")).await["type"], "ack");
    }
    let mut visitor = Client::connect(&c.b, "/api/v1/visitor/socket", &vtoken, cursors).await;
    visitor.wait_for(|f| f["body"] == "missed 4").await;
    let replayed: Vec<i64> = visitor.events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(replayed, ((last + 1)..=(last + 5)).collect::<Vec<_>>(), "exactly the missed ones, in order");

    // The agent drops from B and comes back on A with the same access token
    // (cursors taken once its own last message has come back to it).
    agent_sock.wait_for(|f| f["type"] == "message" && f["body"] == "missed 4").await;
    let cursors = agent_sock.cursors.clone();
    agent_sock.cut();
    for i in 0..3 {
        assert_eq!(visitor.say(Some(&conv), &format!("v{}", i + 1), &format!("there? {i}")).await["type"], "ack");
    }
    let mut agent_sock = Client::connect(&c.a, "/api/v1/agent/socket", &access, cursors).await;
    agent_sock.wait_for(|f| f["body"] == "there? 2").await;
    let got: Vec<String> = agent_sock.messages().into_iter().map(|m| m.2).collect();
    assert_eq!(got, ["there? 0", "there? 1", "there? 2"]);
    assert_eq!(agent_sock.say(Some(&conv), "back", "back, on node A").await["type"], "ack");
    visitor.wait_for(|f| f["body"] == "back, on node A").await;
    assert_eq!(
        (c.a.state.auth.hashes.computed(), c.b.state.auth.hashes.computed()),
        hashes,
        "no password hash on either node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_node_ends_the_session_on_every_node() {
    let c = cluster().await;
    let site = c.a.site().await;
    c.a.agent(&site, "out@example.com", 5).await;
    let (access, _) = c.a.login("out@example.com", "password123").await;
    let mut on_b = Client::connect(&c.b, "/api/v1/agent/socket", &access, HashMap::new()).await;
    let (status, _) = c.a.post("/api/v1/auth/logout", Some(&access), json!({})).await;
    assert_eq!(status, 204);
    let ended = on_b.wait_for(|f| f["type"] == "error").await;
    assert_eq!(ended["code"], "unauthorized");
    assert!(on_b.next().await.is_none(), "the socket on B is closed");
    eventually("node B refuses the token", async || c.b.get("/api/v1/me", Some(&access)).await.0 == 401).await;
    let refused = Client::try_connect(&c.b.ws_base, "/api/v1/agent/socket", &access, HashMap::new()).await;
    assert!(refused.is_err(), "a new socket on B is refused");
}

/// A ban made on node A holds on node B within two seconds: the banned
/// visitor's socket there is closed, and their new session and a new
/// visitor from the banned network are refused; lifted on B, it is gone
/// on A as fast. The two seconds run from the node's answer that the ban
/// is made (or lifted), so they time its way to the other node, not the
/// request that made it on a machine busy with other tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_on_one_node_holds_on_the_other_within_two_seconds() {
    let c = cluster().await;
    let site = c.a.site().await;
    c.a.agent(&site, "ann@example.com", 5).await;
    c.a.person(&site, "boss@example.com", "Boss", Role::Admin).await;
    let (ann, _) = c.a.login("ann@example.com", "password123").await;
    let (boss, _) = c.b.login("boss@example.com", "password123").await;
    let (eve_id, eve_token) = c.b.visitor(&site).await;
    let mut eve = Client::connect(&c.b, "/api/v1/visitor/socket", &eve_token, HashMap::new()).await;

    let ban = json!({"visitor_id": eve_id, "reason": "abuse", "cidr": "192.0.2.0/24"});
    let (status, ban) = c.a.post("/api/v1/bans", Some(&ann), ban).await;
    assert_eq!(status, 201, "{ban}");
    let made = Instant::now();
    let refused = eve.wait_for(|f| f["type"] == "error").await;
    assert_eq!(refused["code"], "banned", "{refused}");
    assert!(made.elapsed() < Duration::from_secs(2), "took {:?}", made.elapsed());
    assert!(eve.next().await.is_none(), "the socket on B is closed");
    let again = json!({"widget_key": site.widget_key, "visitor_token": eve_token});
    let (status, body) = c.b.post("/api/v1/visitor/session", None, again.clone()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("banned")), "{body}");
    assert!(
        c.b.state.chat.bans.check(&site.id, None, Some("192.0.2.77".parse().unwrap())).is_err(),
        "node B holds the network ban too"
    );

    let (status, _) =
        c.b.post(&format!("/api/v1/admin/bans/{}/lift", ban["id"].as_str().unwrap()), Some(&boss), json!({})).await;
    assert_eq!(status, 200);
    let lifted = Instant::now();
    eventually("node A lets the visitor back", async || {
        c.a.post("/api/v1/visitor/session", None, again.clone()).await.0 == 200
    })
    .await;
    assert!(lifted.elapsed() < Duration::from_secs(2), "took {:?}", lifted.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_nats_stays_ready_degraded_and_serves_its_sockets_from_the_store() {
    let db = TestDb::create().await;
    let prefix = nats_prefix();
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let a = TestServer::start_with(|c| {
        cluster_config(c, &db.url, &prefix);
        c.nats_url = Some(format!("nats://127.0.0.1:{dead_port}"));
    })
    .await;
    let b = TestServer::start_with(|c| cluster_config(c, &db.url, &prefix)).await;
    let (status, ready) = a.get("/readyz", None).await;
    assert_eq!(status, 200, "still ready: {ready}");
    assert_eq!(ready["checks"]["bus"]["status"], "degraded");
    let metrics = a.http.get(format!("{}/metrics", a.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "holdfast_bus_up 0"), "{metrics}");

    let site = a.site().await;
    b.agent(&site, "far@example.com", 5).await;
    let (mut agent_sock, _) = b.online_agent("far@example.com").await;
    let (mut visitor, _) = visitor_on(&a, &site).await;
    let conv = visitor.say(None, "v1", "anyone?").await["conv"].as_str().unwrap().to_owned();
    // Node A cannot hear node B's agent: the chat waits in the queue, and
    // the agent on B claims it by id.
    agent_sock.send(json!({"type": "claim", "conv": conv})).await;
    agent_sock.wait_for(|f| f["type"] == "assigned").await;
    agent_sock.say(Some(&conv), "a1", "here, from B").await;
    // Nothing crosses the bus to A; the visitor's socket reads the store.
    visitor.wait_for(|f| f["type"] == "assigned").await;
    visitor.wait_for(|f| f["body"] == "here, from B").await;
}

// ----- the status page ------------------------------------------------------

/// Status page settings for the cluster tests: webhooks to loopback, quick
/// rounds, and no self-probes (their incidents would be noise here).
fn status_quick(c: &mut Config) {
    c.status.self_probe = false;
    c.status.allow_private_webhooks = true;
    c.status.delivery_tick = Duration::from_millis(100);
    c.status.lead_check = Duration::from_millis(200);
}

/// Open an incident through `node`'s admin API; returns its id.
async fn open_incident(node: &TestServer, token: &str, body: Value) -> String {
    let (status, opened) = crate::status::send(node, Method::POST, "/api/v1/status/incidents", token, body).await;
    assert_eq!(status, 201, "{opened}");
    opened["incident"]["id"].as_str().unwrap().to_owned()
}

/// The one node of `nodes` that runs the status page's side tasks.
async fn status_runner(nodes: [&TestServer; 2]) -> &TestServer {
    eventually("one node runs the status page's side tasks", async || {
        nodes.iter().filter(|n| n.state.status.is_leading()).count() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let leading: Vec<_> = nodes.into_iter().filter(|n| n.state.status.is_leading()).collect();
    assert_eq!(leading.len(), 1, "exactly one runner, and it stays");
    leading[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_shows_one_status_page() {
    let c = cluster_with(status_quick).await;
    let token = crate::status::operator(&c.a).await;
    let opened = json!({"name": "Chat is slow", "components": {"Chat widget": "degraded_performance"}});
    let id = open_incident(&c.a, &token, opened).await;

    // Node B shows what was done through node A: the API, the page, the feed.
    let (_, unresolved) = c.b.get("/api/v2/incidents/unresolved.json", None).await;
    assert_eq!(unresolved["incidents"][0]["id"], id.as_str(), "{unresolved}");
    let (_, components) = c.b.get("/api/v2/components.json", None).await;
    let chat = components["components"].as_array().unwrap().iter().find(|c| c["name"] == "Chat widget").unwrap();
    assert_eq!(chat["status"], "degraded_performance");
    let page = c.b.http.get(format!("{}/status", c.b.base)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Chat is slow"), "the page on B lists the incident");
    let (_, on_a) = c.a.get("/api/v2/summary.json", None).await;
    let (_, on_b) = c.b.get("/api/v2/summary.json", None).await;
    assert_eq!(on_a["page"]["id"], on_b["page"]["id"], "one page");
    assert_eq!(on_a["components"], on_b["components"], "the same components in the same states");

    // And the other way round: resolved through B, resolved on A.
    let (s, _) =
        crate::status::send(&c.b, Method::POST, &format!("/api/v1/status/incidents/{id}/resolve"), &token, json!({}))
            .await;
    assert_eq!(s, 200);
    let (_, unresolved) = c.a.get("/api/v2/incidents/unresolved.json", None).await;
    assert_eq!(unresolved["incidents"], json!([]));
    let (_, status) = c.a.get("/api/v2/status.json", None).await;
    assert_eq!(status["status"]["description"], "All Systems Operational");
    status_runner([&c.a, &c.b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_subscriber_hears_each_notification_once_from_two_nodes() {
    let c = cluster_with(status_quick).await;
    let runner = status_runner([&c.a, &c.b]).await;
    let token = crate::status::operator(&c.a).await;
    let (addr, mut inbox) = crate::status::webhook_receiver(0).await;
    let (s, sub) = c.b.post("/api/v2/subscribers.json", None, json!({"endpoint": format!("http://{addr}/hook")})).await;
    assert_eq!(s, 201, "{sub}");

    // Notifications queued through either node, the runner and the other.
    let id = open_incident(&c.a, &token, json!({"name": "Logins fail", "components": {"Agent login": "major_outage"}}))
        .await;
    let heard = |r: crate::status::Received| -> Value { serde_json::from_str(&r.body).unwrap() };
    let first = heard(crate::status::next(&mut inbox, "the incident's notification").await);
    assert_eq!(first["incident"]["status"], "investigating");
    let updates = format!("/api/v1/status/incidents/{id}/updates");
    let (s, _) = crate::status::send(&c.b, Method::POST, &updates, &token, json!({"status": "identified"})).await;
    assert_eq!(s, 200);
    let second = heard(crate::status::next(&mut inbox, "the update's notification").await);
    assert_eq!(second["incident"]["status"], "identified");
    let login = c.b.state.status.find_component("Agent login").await.unwrap();
    let (s, _) = crate::status::send(
        &c.b,
        Method::PATCH,
        &format!("/api/v1/status/components/{}", login.id),
        &token,
        json!({"status": "partial_outage"}),
    )
    .await;
    assert_eq!(s, 200);
    let third = heard(crate::status::next(&mut inbox, "the component's notification").await);
    assert_eq!(third["component_update"]["new_status"], "partial_outage");

    // Nothing twice: a later notification marks the end, since the runner
    // claims deliveries in order, so a repeat of the three comes before it.
    let resolve = format!("/api/v1/status/incidents/{id}/resolve");
    let (s, _) = crate::status::send(&c.a, Method::POST, &resolve, &token, json!({})).await;
    assert_eq!(s, 200);
    let last = heard(crate::status::next(&mut inbox, "the resolution's notification").await);
    assert_eq!(last["incident"]["status"], "resolved", "a notification was delivered twice: {last}");
    assert!(inbox.try_recv().is_err(), "a notification was delivered twice");
    assert!(runner.state.status.is_leading(), "the runner kept the lead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_commands_act_on_the_cluster_database() {
    let c = cluster_with(status_quick).await;
    let out = Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(["incident", "open", "--name", "Opened from a shell", "--component", "Website", "--json"])
        .args(["--database-url", &c._db.url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let opened: Value = serde_json::from_slice(&out.stdout).unwrap();
    for node in [&c.a, &c.b] {
        let (_, unresolved) = node.get("/api/v2/incidents/unresolved.json", None).await;
        assert_eq!(unresolved["incidents"][0]["id"], opened["id"], "{unresolved}");
    }
}

// ----- the real binary, killed ---------------------------------------------

struct Node {
    /// Killed when the node is dropped (before its data dir goes).
    _proc: crate::support::Proc,
    base: String,
    ws_base: String,
    /// The node's own data dir (unused in a cluster: everything, the status
    /// page included, is in PostgreSQL).
    _dir: tempfile::TempDir,
}

fn spawn_node(db: &str, prefix: &str) -> Node {
    spawn_node_with(db, prefix, &[])
}

fn spawn_node_with(db: &str, prefix: &str, extra: &[&str]) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let nats = nats_url();
    let mut args = vec!["--database-pool", "6", "--nats-prefix", prefix, "--database-url", db, "--nats-url", &nats];
    args.extend_from_slice(extra);
    let (proc, base) = crate::support::spawn_serve_with(dir.path(), &args, |c| {
        c.env("RUST_LOG", "warn").stderr(Stdio::inherit());
    });
    let ws_base = base.replace("http://", "ws://");
    Node { _proc: proc, base, ws_base, _dir: dir }
}

async fn post(base: &str, path: &str, body: Value) -> Value {
    let res = crate::support::http().post(format!("{base}{path}")).json(&body).send().await.expect("http");
    assert!(res.status().is_success(), "{path}: {}", res.status());
    res.json().await.unwrap()
}

async fn online_on(node: &Node, email: &str) -> (Client, String) {
    let login = post(&node.base, "/api/v1/auth/login", json!({"email": email, "password": "password123"})).await;
    let access = login["access_token"].as_str().unwrap().to_owned();
    let mut c = Client::try_connect(&node.ws_base, "/api/v1/agent/socket", &access, HashMap::new()).await.unwrap();
    c.send(json!({"type": "set_availability", "availability": "online"})).await;
    c.wait_for(|f| f["type"] == "availability" && f["agent"]["availability"] == "online").await;
    (c, access)
}

async fn visitor_at(node: &Node, widget_key: &str) -> (Client, String) {
    crate::support::visitor_at(&node.base, widget_key).await
}

/// Message bodies a client received that start with `prefix`, checking on
/// the way that no durable event reached it twice.
fn bodies(c: &Client, prefix: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    for e in &c.events {
        assert!(seen.insert((e["conv"].to_string(), e["seq"].as_i64())), "event delivered twice: {e}");
    }
    c.messages().into_iter().map(|m| m.2).filter(|b| b.starts_with(prefix)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_moves_its_clients_to_the_other_with_nothing_lost_or_doubled() {
    let db = TestDb::create().await;
    let prefix = nats_prefix();
    let doomed = spawn_node(&db.url, &prefix);
    let survivor = spawn_node(&db.url, &prefix);
    // Unless told otherwise, a node runs one runtime worker per core.
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    assert_eq!(crate::support::metric(&survivor.base, "holdfast_runtime_workers").await, Some(cores));
    let store = PostgresStore::connect(&db.url, 2).await.unwrap();
    let site = store.sites().await.unwrap().remove(0);
    let hash = holdfast_server::auth::passwords::hash_now("password123").unwrap();
    for email in ["x@example.com", "y@example.com"] {
        let new =
            NewAgent { site_id: &site.id, email, name: email, role: Role::Agent, password_hash: &hash, chat_limit: 1 };
        store.create_agent(new).await.unwrap();
    }

    // Pair X: visitor on the doomed node, agent on the survivor.
    // Pair Y: agent on the doomed node, visitor on the survivor.
    let (mut agent_x, _) = online_on(&survivor, "x@example.com").await;
    let (mut visitor_x, vtoken_x) = visitor_at(&doomed, &site.widget_key).await;
    // As the widget does, write once the node says someone is online: the
    // doomed node hears of agent X (heartbeat, availability) over the bus.
    if visitor_x.welcome["agents_online"] != true {
        visitor_x.wait_for(|f| f["type"] == "agents_online" && f["online"] == true).await;
    }
    let conv_x = visitor_x.say(None, "x0", "x says 0").await["conv"].as_str().unwrap().to_owned();
    visitor_x.wait_for(|f| f["type"] == "assigned").await;
    let (mut agent_y, access_y) = online_on(&doomed, "y@example.com").await;
    let (mut visitor_y, _) = visitor_at(&survivor, &site.widget_key).await;
    let conv_y = visitor_y.say(None, "y0", "y says 0").await["conv"].as_str().unwrap().to_owned();
    agent_y.wait_for(|f| f["body"] == "y says 0").await;
    for i in 1..4 {
        assert_eq!(visitor_x.say(Some(&conv_x), &format!("x{i}"), &format!("x says {i}")).await["type"], "ack");
        assert_eq!(agent_y.say(Some(&conv_y), &format!("ay{i}"), &format!("agent y says {i}")).await["type"], "ack");
    }
    agent_x.wait_for(|f| f["body"] == "x says 3").await;
    visitor_y.wait_for(|f| f["body"] == "agent y says 3").await;

    // kill -9, mid-chat.
    let (cursors_x, cursors_y) = (visitor_x.cursors.clone(), agent_y.cursors.clone());
    drop(doomed);
    // The doomed node's sockets end (after what was already in flight).
    while visitor_x.next().await.is_some() {}
    while agent_y.next().await.is_some() {}
    // Meanwhile the survivor's clients keep talking.
    assert_eq!(agent_x.say(Some(&conv_x), "ax1", "agent x while you moved").await["type"], "ack");
    assert_eq!(visitor_y.say(Some(&conv_y), "y4", "y says 4").await["type"], "ack");

    // The doomed node's clients resume on the survivor: same credential, their cursors.
    let mut visitor_x = Client::try_connect(&survivor.ws_base, "/api/v1/visitor/socket", &vtoken_x, cursors_x)
        .await
        .expect("visitor resumes on the survivor");
    let mut agent_y = Client::try_connect(&survivor.ws_base, "/api/v1/agent/socket", &access_y, cursors_y)
        .await
        .expect("agent resumes on the survivor without logging in");
    visitor_x.wait_for(|f| f["body"] == "agent x while you moved").await;
    agent_y.wait_for(|f| f["body"] == "y says 4").await;
    assert_eq!(visitor_x.say(Some(&conv_x), "x4", "x says 4").await["type"], "ack");
    assert_eq!(agent_y.say(Some(&conv_y), "ay4", "agent y says 4").await["type"], "ack");
    agent_x.wait_for(|f| f["body"] == "x says 4").await;
    visitor_y.wait_for(|f| f["body"] == "agent y says 4").await;

    let x_said: Vec<String> = (0..5).map(|i| format!("x says {i}")).collect();
    assert_eq!(bodies(&agent_x, "x says"), x_said, "agent x got every visitor message once, in order");
    let y_heard: Vec<String> = (1..5).map(|i| format!("agent y says {i}")).collect();
    assert_eq!(bodies(&visitor_y, "agent y says"), y_heard, "visitor y got every agent message once, in order");
    assert_eq!(bodies(&agent_y, "y says"), ["y says 4"], "agent y's resumed socket: only what it had missed");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_applies_the_schema_and_an_older_release_serves_it_until_it_contracts() {
    let db = TestDb::create().await;
    let holdfast = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_holdfast")).args(args).output().expect("run");
    let first = holdfast(&["migrate", "--database-url", &db.url]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(String::from_utf8_lossy(&first.stdout).contains("schema created"));
    let again = holdfast(&["migrate", "--database-url", &db.url]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("up to date"));

    // A newer release added to this database (an expand migration): this
    // one still serves it, as a node of the previous release does during
    // a rolling upgrade.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', TRUE, '\\x00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let newer = holdfast(&["migrate", "--database-url", &db.url]);
    assert!(newer.status.success(), "{}", String::from_utf8_lossy(&newer.stderr));
    assert!(String::from_utf8_lossy(&newer.stdout).contains("version 9999, newer than this holdfast"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_string_lossy().into_owned();
    let serve = ["serve", "--listen", "127.0.0.1:0", "--data", &data, "--database-url", &db.url];
    let (node, base) = crate::support::spawn_serve(dir.path(), &["--database-url", &db.url]);
    let live = reqwest::get(format!("{base}/livez")).await.unwrap().status().as_u16();
    assert_eq!(live, 200, "serving a schema that only expanded: {base}");
    drop(node);

    // Then it contracted (dropped or changed something this release uses):
    // this one must not serve it.
    sqlx::query("UPDATE meta SET value = '9999' WHERE key = 'schema_requires'").execute(&mut conn).await.unwrap();
    let refused = holdfast(&serve);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("version 9999, newer than this holdfast knows"), "{stderr}");
    assert!(stderr.contains("needs one that knows version 9999"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    let _ = sqlx::Connection::close(conn).await;
}

/// Wait (up to `within`) until `check` holds.
async fn within(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < within, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_status_runner_hands_monitors_and_deliveries_to_the_other_node() {
    let db = TestDb::create().await;
    let prefix = nats_prefix();
    // Monitors may be checked every second here (5 s at least for an
    // operator), so the failover takes seconds, not a minute.
    let flags = [
        "--allow-private-webhooks",
        "--allow-private-monitors",
        "--status-fail-after",
        "100",
        "--status-min-interval-ms",
        "1000",
    ];
    let mut nodes = vec![spawn_node_with(&db.url, &prefix, &flags), spawn_node_with(&db.url, &prefix, &flags)];
    let store = PostgresStore::connect(&db.url, 2).await.unwrap();
    let site = store.sites().await.unwrap().remove(0);
    let hash = holdfast_server::auth::passwords::hash_now("password123").unwrap();
    let email = "ops@example.com";
    let new =
        NewAgent { site_id: &site.id, email, name: "Ops", role: Role::Operator, password_hash: &hash, chat_limit: 1 };
    store.create_agent(new).await.unwrap();
    let login = post(&nodes[0].base, "/api/v1/auth/login", json!({"email": email, "password": "password123"})).await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    let admin = |node: &Node, path: &str, body: Value| {
        let request = crate::support::http().post(format!("{}{path}", node.base)).bearer_auth(&token).json(&body);
        let path = path.to_owned();
        async move {
            let res = request.send().await.expect("http");
            assert!(res.status().is_success(), "{path}: {}", res.status());
            res.json::<Value>().await.unwrap()
        }
    };

    // One runner between the two.
    within("one node runs the status page", WAIT, async || {
        let mut runs = Vec::new();
        for node in &nodes {
            runs.push(crate::support::metric(&node.base, "holdfast_status_runner").await);
        }
        runs.iter().filter(|r| **r == Some(1.0)).count() == 1 && runs.iter().all(|r| r.is_some())
    })
    .await;
    let runner =
        if crate::support::metric(&nodes[0].base, "holdfast_status_runner").await == Some(1.0) { 0 } else { 1 };
    let other = 1 - runner;
    let (addr, mut inbox) = crate::status::webhook_receiver(0).await;
    admin(&nodes[other], "/api/v2/subscribers.json", json!({"endpoint": format!("http://{addr}/hook")})).await;

    // A monitor of a port that never answers, checked every second.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let monitor = json!({"name": "Dead port", "component": "Website", "url": format!("tcp://127.0.0.1:{dead_port}"),
                         "interval_ms": 1000});
    admin(&nodes[other], "/api/v1/status/monitors", monitor).await;
    let failures = async || {
        let monitors = store.status_store().monitors().await.unwrap();
        monitors.into_iter().find(|m| m.name == "Dead port").map_or(0, |m| m.failures)
    };
    within("the runner counts two failed checks", Duration::from_secs(20), async || failures().await >= 2).await;
    let counted = failures().await;

    // kill -9 of the runner.
    drop(nodes.remove(runner));
    let survivor = nodes.remove(0);
    let killed = Instant::now();
    within("the survivor takes the lead", Duration::from_secs(15), async || {
        crate::support::metric(&survivor.base, "holdfast_status_runner").await == Some(1.0)
    })
    .await;
    let takeover = killed.elapsed();

    // Its checks go on counting from the store; they do not start over.
    // (The first count that differs is the one compared: a second read
    // could already include the check after.)
    let mut next = counted;
    within("the survivor checks the monitor", Duration::from_secs(20), async || {
        next = failures().await;
        next != counted
    })
    .await;
    assert_eq!(next, counted + 1, "the count went on from {counted}");

    // And it delivers: one notification, once.
    let opened = admin(&survivor, "/api/v1/status/incidents", json!({"name": "After the failover"})).await;
    let heard = crate::status::next(&mut inbox, "the notification from the survivor").await;
    let body: Value = serde_json::from_str(&heard.body).unwrap();
    assert_eq!(body["incident"]["id"], opened["incident"]["id"]);
    // Once: a later notification marks the end (deliveries go out in order).
    let id = opened["incident"]["id"].as_str().unwrap();
    admin(&survivor, &format!("/api/v1/status/incidents/{id}/resolve"), json!({})).await;
    let last = crate::status::next(&mut inbox, "the resolution's notification").await;
    let last: Value = serde_json::from_str(&last.body).unwrap();
    assert_eq!(last["incident"]["status"], "resolved", "delivered once: {last}");
    assert!(inbox.try_recv().is_err(), "delivered once");
    eprintln!("status runner failover after kill -9: {takeover:?}");
    store.close().await;
}

/// Issue 18: two nodes on one database, offline messages left through
/// both, a real SMTP server: every email arrives, each once (one attempt
/// each in the outbox, and a later marker arrives next, with no repeat
/// before it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_left_on_both_nodes_are_emailed_once_each() {
    let port = crate::outbox::free_port();
    let mut smtp = crate::outbox::SmtpServer::start(port);
    let c = cluster_with(|c| {
        status_quick(c);
        c.status.smtp = Some(crate::outbox::relay(port));
        c.outbox.tick = Duration::from_millis(100);
    })
    .await;
    status_runner([&c.a, &c.b]).await;
    let site = c.a.site().await;
    let leave = async |node: &TestServer, n: usize| -> String {
        let (mut visitor, _) = visitor_on(node, &site).await;
        visitor.send(json!({"type": "leave_message", "client_id": format!("m{n}"), "body": format!("lead {n}")})).await;
        let conv = visitor.wait_for(|f| f["type"] == "ack").await["conv"].as_str().unwrap().to_owned();
        visitor.close().await;
        conv
    };
    let mut convs = Vec::new();
    for n in 0..10 {
        convs.push(leave(if n % 2 == 0 { &c.a } else { &c.b }, n).await);
    }
    // One recipient (the site's first admin): one email per lead.
    let mail = smtp.receive(10, Duration::from_secs(30)).await;
    let mut leads: Vec<String> = mail
        .iter()
        .map(|m| {
            let text = m["text"].as_str().unwrap();
            text.lines().find(|l| l.starts_with("lead ")).unwrap().to_owned()
        })
        .collect();
    leads.sort();
    let mut wanted: Vec<String> = (0..10).map(|n| format!("lead {n}")).collect();
    wanted.sort();
    assert_eq!(leads, wanted, "each lead once");
    let marker = leave(&c.b, 10).await;
    let next = smtp.receive(1, Duration::from_secs(30)).await.remove(0);
    assert!(next["text"].as_str().unwrap().contains("lead 10"), "a repeat came before the marker: {next:#}");
    // The marker's outcome is recorded just after the relay took it.
    eventually("every delivery's outcome is recorded", async || {
        let all = c.a.state.store.deliveries(Scope::site(&site.id), None, 100).await.unwrap();
        all.len() == 11 && all.iter().all(|d| d.sent_at.is_some())
    })
    .await;
    let sent = c.a.state.store.deliveries(Scope::site(&site.id), None, 100).await.unwrap();
    assert!(sent.iter().all(|d| d.attempts == 1 && d.sent_at.is_some()), "one attempt each: {sent:#?}");
    convs.push(marker);
    assert_eq!(convs.iter().collect::<std::collections::HashSet<_>>().len(), 11);
}

/// A node whose database hangs still beats. Hearing of another node's
/// agent makes a node read the store (which site is theirs) and drain
/// that site's queue; done in the heartbeat's own loop, a hung database
/// stopped the beats, and the other nodes counted the node's agents gone
/// once its beats were overdue (here 0.6 s, plus a grace of 1 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_database_hangs_still_tells_the_others_its_agents_are_there() {
    use holdfast_server::store::FaultMode;
    let c = cluster_with(|c| c.presence_grace = Duration::from_secs(1)).await;
    let site = c.a.site().await;
    let ann = c.a.agent(&site, "ann@example.com", 5).await;
    let bob = c.b.agent(&site, "bob@example.com", 5).await;
    let (_ann_sock, _) = c.a.online_agent("ann@example.com").await;
    sees_agent(&c.b, &ann.id).await;

    c.a.state.store.faults().set(FaultMode::Hang);
    // Bob comes online on node B; node A hears of him, and asks its store.
    let (_bob_sock, _) = c.b.online_agent("bob@example.com").await;
    sees_agent(&c.a, &bob.id).await;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert!(
            c.b.state.chat.hub.agent_present(&ann.id),
            "node B counted node A's agent gone while A's database hung"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.a.state.store.faults().set(FaultMode::Ok);
    c.a.stop().await;
    c.b.stop().await;
}
