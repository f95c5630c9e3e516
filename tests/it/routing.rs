//! Routing through the real sockets: least busy first, round robin on
//! ties, a queue with positions when everyone is full, offline messages
//! when nobody is online, and claim / transfer by agents.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::support::{Client, TestServer};

async fn visitor_says(server: &TestServer, site: &holdfast_server::store::Site, text: &str) -> (Client, String) {
    let (_, token) = server.visitor(site).await;
    let mut v = Client::connect(server, "/api/v1/visitor/socket", &token, HashMap::new()).await;
    let ack = v.say(None, "first", text).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let conv = ack["conv"].as_str().unwrap().to_owned();
    (v, conv)
}

async fn assigned_agent(v: &mut Client) -> String {
    let f = v.wait_for(|f| f["type"] == "assigned").await;
    f["agent"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn least_busy_then_round_robin_then_queue_with_positions() {
    let server = TestServer::start().await;
    let site = server.site().await;
    let a = server.agent(&site, "a@example.com", 2).await;
    let b = server.agent(&site, "b@example.com", 2).await;
    let (mut sock_a, _) = server.online_agent("a@example.com").await;
    let (_sock_b, _) = server.online_agent("b@example.com").await;

    let (mut v1, _) = visitor_says(&server, &site, "one").await;
    let first = assigned_agent(&mut v1).await;
    let (mut v2, _) = visitor_says(&server, &site, "two").await;
    let second = assigned_agent(&mut v2).await;
    assert_ne!(first, second, "the less busy agent gets the second chat");
    let (mut v3, _) = visitor_says(&server, &site, "three").await;
    assert_eq!(assigned_agent(&mut v3).await, first, "tie: least recently assigned wins");
    let (mut v4, _) = visitor_says(&server, &site, "four").await;
    assert_eq!(assigned_agent(&mut v4).await, second);

    // Both at their limit of 2: the next visitors wait, in order.
    let (mut v5, conv5) = visitor_says(&server, &site, "five").await;
    let p5 = v5.wait_for(|f| f["type"] == "queue_position").await;
    assert_eq!(p5["position"], 1);
    let (mut v6, _) = visitor_says(&server, &site, "six").await;
    let p6 = v6.wait_for(|f| f["type"] == "queue_position").await;
    assert_eq!(p6["position"], 2);
    let queue = sock_a.wait_for(|f| f["type"] == "queue" && f["queue"].as_array().unwrap().len() == 2).await;
    assert_eq!(queue["queue"][0]["conv"], conv5.as_str());

    // Agent A closes a chat: the head of the queue goes to A, and the
    // visitor behind moves up.
    let a_conv = sock_a
        .events
        .iter()
        .find(|e| e["type"] == "assigned" && e["agent"]["id"] == a.id.as_str())
        .map(|e| e["conv"].as_str().unwrap().to_owned())
        .expect("A has a chat");
    sock_a.send(json!({"type": "close", "conv": a_conv})).await;
    assert_eq!(assigned_agent(&mut v5).await, a.id);
    let p6 = v6.wait_for(|f| f["type"] == "queue_position" && f["position"] == 1).await;
    assert_eq!(p6["position"], 1);
    let _ = b;
    server.stop().await;
}

#[tokio::test]
async fn with_nobody_online_the_visitor_leaves_a_message_that_agents_see_later() {
    let server = TestServer::start().await;
    let site = server.site().await;
    server.agent(&site, "late@example.com", 2).await;
    let (_, token) = server.visitor(&site).await;
    let mut v = Client::connect(&server, "/api/v1/visitor/socket", &token, HashMap::new()).await;
    assert_eq!(v.welcome["agents_online"], false);
    v.send(json!({"type": "leave_message", "client_id": "off-1", "name": "Dana", "email": "dana@example.com",
        "body": "Please call me back"}))
        .await;
    let ack = v.wait_for(|f| f["type"] == "ack").await;
    // A retry of the same offline message does not create a second one.
    v.send(json!({"type": "leave_message", "client_id": "off-1", "body": "Please call me back"})).await;
    let again = v.wait_for(|f| f["type"] == "ack").await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["conv"], ack["conv"]);

    let (access, _) = server.login("late@example.com", "password123").await;
    let (status, list) = server.get("/api/v1/conversations?status=offline", Some(&access)).await;
    assert_eq!(status, 200);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    let conv = list[0]["id"].as_str().unwrap();
    let (_, events) = server.get(&format!("/api/v1/conversations/{conv}/events"), Some(&access)).await;
    assert_eq!(events[0]["body"], "Please call me back");
    let (_, visitor) =
        server.get(&format!("/api/v1/visitors/{}", list[0]["visitor_id"].as_str().unwrap()), Some(&access)).await;
    assert_eq!(visitor["name"], "Dana");
    assert_eq!(visitor["email"], "dana@example.com");
    server.stop().await;
}

#[tokio::test]
async fn an_online_agent_hears_of_an_offline_message_at_once() {
    let server = TestServer::start().await;
    let site = server.site().await;
    server.agent(&site, "away@example.com", 2).await;
    let (access, _) = server.login("away@example.com", "password123").await;
    // Connected but away: not online for routing, still told of messages.
    let mut agent = Client::connect(&server, "/api/v1/agent/socket", &access, HashMap::new()).await;
    let (_, token) = server.visitor(&site).await;
    let mut v = Client::connect(&server, "/api/v1/visitor/socket", &token, HashMap::new()).await;
    v.send(json!({"type": "leave_message", "client_id": "x", "body": "Out of hours question"})).await;
    let f = agent.wait_for(|f| f["type"] == "offline_message").await;
    assert_eq!(f["body"], "Out of hours question");
    server.stop().await;
}

#[tokio::test]
async fn agents_claim_and_transfer() {
    let server = TestServer::start().await;
    let site = server.site().await;
    let _a = server.agent(&site, "a@example.com", 1).await;
    let b = server.agent(&site, "b@example.com", 1).await;
    let (mut sock_a, _) = server.online_agent("a@example.com").await;
    let (access_b, _) = server.login("b@example.com", "password123").await;
    let mut sock_b = Client::connect(&server, "/api/v1/agent/socket", &access_b, HashMap::new()).await;

    let (mut v1, _) = visitor_says(&server, &site, "first").await;
    assigned_agent(&mut v1).await;
    // A is full; the second chat waits, and B (away) claims it by hand.
    let (mut v2, conv2) = visitor_says(&server, &site, "second").await;
    v2.wait_for(|f| f["type"] == "queue_position").await;
    sock_b.send(json!({"type": "claim", "conv": conv2})).await;
    assert_eq!(assigned_agent(&mut v2).await, b.id);
    let history = sock_b.wait_for(|f| f["type"] == "message" && f["conv"] == conv2.as_str()).await;
    assert_eq!(history["body"], "second", "the claimer gets the history");

    // B transfers it to A by name; A gets it (over the limit: a human chose).
    sock_b.send(json!({"type": "transfer", "conv": conv2, "to_agent": _a.id})).await;
    let a_id = _a.id.clone();
    let moved = sock_a
        .wait_for(|f| f["type"] == "assigned" && f["conv"] == conv2.as_str() && f["agent"]["id"] == a_id.as_str())
        .await;
    assert_eq!(moved["previous_agent"], b.id.as_str());
    let a_id = _a.id.clone();
    sock_b.wait_for(|f| f["type"] == "assigned" && f["agent"]["id"] == a_id.as_str()).await;

    // B no longer owns it: replying is refused.
    let refused = sock_b.say(Some(&conv2), "b-1", "still here?").await;
    crate::support::assert_error(&refused, "forbidden");

    // Transfer back to the group queue: it waits again (A is full, B away).
    let group = server.state.store.groups(&site.id).await.unwrap().remove(0);
    sock_a.send(json!({"type": "transfer", "conv": conv2, "to_group": group.id})).await;
    let t: Value = v2.wait_for(|f| f["type"] == "transferred").await;
    assert_eq!(t["group"]["id"], group.id.as_str());
    v2.wait_for(|f| f["type"] == "queue_position").await;
    server.stop().await;
}

#[tokio::test]
async fn back_to_the_queue_never_goes_straight_back_to_the_agent_who_let_it_go() {
    let server = TestServer::start().await;
    let site = server.site().await;
    let a = server.agent(&site, "a@example.com", 3).await;
    let b = server.agent(&site, "b@example.com", 3).await;
    let group = server.state.store.groups(&site.id).await.unwrap().remove(0);
    let (mut sock_a, _) = server.online_agent("a@example.com").await;

    // Only A is online: the chat is A's; sent back, it waits rather than
    // returning to A, although A is the least busy agent online.
    let (mut v, conv) = visitor_says(&server, &site, "hello").await;
    assert_eq!(assigned_agent(&mut v).await, a.id);
    sock_a.send(json!({"type": "transfer", "conv": conv, "to_group": group.id})).await;
    v.wait_for(|f| f["type"] == "transferred").await;
    v.wait_for(|f| f["type"] == "queue_position").await;
    let waiting = server.state.store.conversation(&conv).await.unwrap().unwrap();
    assert_eq!(waiting.agent_id, None, "queued, not handed back to A");

    // B comes online: B gets it, A still does not.
    let (_sock_b, _) = server.online_agent("b@example.com").await;
    assert_eq!(assigned_agent(&mut v).await, b.id);
    // The visitor heard of the transfer once.
    let (_, events) = server
        .get(
            &format!("/api/v1/conversations/{conv}/events"),
            Some(&server.login("a@example.com", "password123").await.0),
        )
        .await;
    let transfers = events.as_array().unwrap().iter().filter(|e| e["type"] == "transferred").count();
    assert_eq!(transfers, 1, "{events}");

    // Another visitor's chat goes to A as usual: A kept their place in line.
    let (mut v2, _) = visitor_says(&server, &site, "hi").await;
    assert_eq!(assigned_agent(&mut v2).await, a.id);
    server.stop().await;
}

#[tokio::test]
async fn a_queue_drain_the_database_refused_is_tried_again_when_it_is_back() {
    use holdfast_server::store::{Author, Change, FaultMode};
    let server = TestServer::start().await;
    let site = server.site().await;
    let a = server.agent(&site, "a@example.com", 1).await;
    let (_sock_a, _) = server.online_agent("a@example.com").await;
    let (mut v1, conv1) = visitor_says(&server, &site, "one").await;
    assert_eq!(assigned_agent(&mut v1).await, a.id);
    let (mut v2, _) = visitor_says(&server, &site, "two").await;
    assert_eq!(v2.wait_for(|f| f["type"] == "queue_position").await["position"], 1);

    // A's first chat ends behind the node's back (as if on another node
    // whose word was lost), once the node's picture of A has aged out.
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    server.state.store.apply(&conv1, Change::Close { by: Author::system() }).await.unwrap();
    // The next drain meets a database that is down, and nothing else
    // happens on this site afterwards.
    server.state.store.faults().set(FaultMode::Fail);
    server.state.chat.after_queue_change(&site.id).await;
    server.state.store.faults().set(FaultMode::Ok);

    // The node drains again by itself: the waiting visitor gets A.
    assert_eq!(assigned_agent(&mut v2).await, a.id);
    server.stop().await;
}
