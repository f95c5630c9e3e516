//! A visitor and an agent chat both ways through the real sockets.

use std::collections::HashMap;

use serde_json::json;

use crate::support::{Client, TestServer};

#[tokio::test]
async fn visitor_and_agent_chat_both_ways() {
    let server = TestServer::start().await;
    let site = server.site().await;
    server.agent(&site, "ann@example.com", 3).await;
    let (mut agent, _) = server.online_agent("ann@example.com").await;
    let (visitor_id, vtoken) = server.visitor(&site).await;
    let mut visitor = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    assert_eq!(visitor.welcome["agents_online"], true);
    assert_eq!(visitor.welcome["id"], visitor_id.as_str());

    // The visitor's first message starts a conversation, routed to Ann.
    let ack = visitor.say(None, "v-1", "Hello, is my order shipped?").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["seq"], 1);
    let conv = ack["conv"].as_str().unwrap().to_owned();
    let assigned = visitor.wait_for(|f| f["type"] == "assigned").await;
    assert_eq!(assigned["agent"]["name"], "ann");

    // Ann gets the history (the message) and the assignment, in order.
    let first = agent.wait_for(|f| f["type"] == "message").await;
    assert_eq!(first["body"], "Hello, is my order shipped?");
    assert_eq!(first["author"]["kind"], "visitor");
    agent.wait_for(|f| f["type"] == "assigned").await;

    // Typing goes across without being stored.
    agent.send(json!({"type": "typing", "conv": conv, "on": true})).await;
    let typing = visitor.wait_for(|f| f["type"] == "typing").await;
    assert_eq!(typing["on"], true);
    assert!(typing.get("seq").is_none(), "typing is ephemeral");

    let ack = agent.say(Some(&conv), "a-1", "Yes, it left this morning.").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let reply = visitor.wait_for(|f| f["type"] == "message" && f["author"]["kind"] == "agent").await;
    assert_eq!(reply["body"], "Yes, it left this morning.");
    assert_eq!(reply["seq"], ack["seq"]);

    // Read receipt reaches the agent as a durable event.
    visitor.send(json!({"type": "read", "conv": conv, "seq": reply["seq"]})).await;
    let read = agent.wait_for(|f| f["type"] == "read").await;
    assert_eq!(read["up_to"], reply["seq"]);

    // The transcript over HTTP has both messages, in order.
    let (status, events) = server.get(&format!("/api/v1/conversations/{conv}/events"), Some(&vtoken)).await;
    assert_eq!(status, 200);
    let bodies: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "message")
        .map(|e| e["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["Hello, is my order shipped?", "Yes, it left this morning."]);
    let seqs: Vec<i64> = events.as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "gap-free sequence");

    // Visitor details are visible to the agent (page, browser).
    let (access, _) = server.login("ann@example.com", "password123").await;
    let (status, v) = server.get(&format!("/api/v1/visitors/{visitor_id}"), Some(&access)).await;
    assert_eq!(status, 200);
    assert_eq!(v["page_url"], "https://shop.example/p/1");
    assert!(v["user_agent"].is_string());

    // Search finds the message.
    let (status, hits) = server.get("/api/v1/search?q=shipped", Some(&access)).await;
    assert_eq!(status, 200);
    assert_eq!(hits["chats"].as_array().unwrap().len(), 1);

    // Closing reaches both sides.
    agent.send(json!({"type": "close", "conv": conv})).await;
    visitor.wait_for(|f| f["type"] == "closed").await;
    let ack = visitor.say(Some(&conv), "v-2", "one more thing").await;
    crate::support::assert_error(&ack, "conflict");
    server.stop().await;
}

/// Once an agent's console shows their new availability, every visitor who
/// arrives after is told the truth, even while the site's queue is still
/// being drained for the agent's connect: the brief cache of "anyone
/// online?" is dropped when the change is made, not by that drain.
#[tokio::test]
async fn a_visitor_arriving_after_an_availability_change_is_told_of_it() {
    let server = TestServer::start().await;
    let site = server.site().await;
    let agents_online = || async {
        let (status, session) =
            server.post("/api/v1/visitor/session", None, json!({"widget_key": site.widget_key})).await;
        assert_eq!(status, 200, "{session}");
        session["agents_online"].clone()
    };
    for round in 0..15 {
        let email = format!("agent{round}@example.com");
        server.agent(&site, &email, 3).await;
        // Online the moment the socket is up, as the console does.
        let (mut agent, _) = server.online_agent(&email).await;
        assert_eq!(agents_online().await, true, "round {round}, online");
        agent.send(json!({"type": "set_availability", "availability": "away"})).await;
        agent.wait_for(|f| f["type"] == "availability" && f["agent"]["availability"] == "away").await;
        assert_eq!(agents_online().await, false, "round {round}, away");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_resent_message_is_stored_once_and_acknowledged_with_the_original() {
    let server = TestServer::start().await;
    let site = server.site().await;
    let (_, vtoken) = server.visitor(&site).await;
    let mut visitor = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;

    let first = visitor.say(None, "same-id", "only once please").await;
    let again = visitor.say(None, "same-id", "only once please").await;
    assert_eq!(first["duplicate"], false);
    assert_eq!(again["duplicate"], true);
    assert_eq!(first["seq"], again["seq"]);
    assert_eq!(first["id"], again["id"]);

    // Even from a new socket (a reconnect), the retry is recognised.
    visitor.close().await;
    let mut visitor = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    let third = visitor.say(None, "same-id", "only once please").await;
    assert_eq!(third["duplicate"], true);
    assert_eq!(third["seq"], first["seq"]);

    let conv = first["conv"].as_str().unwrap();
    let (_, events) = server.get(&format!("/api/v1/conversations/{conv}/events"), Some(&vtoken)).await;
    let copies = events.as_array().unwrap().iter().filter(|e| e["client_id"] == "same-id").count();
    assert_eq!(copies, 1);
    server.stop().await;
}

#[tokio::test]
async fn logout_ends_the_session_and_its_sockets() {
    let server = TestServer::start().await;
    let site = server.site().await;
    server.agent(&site, "bo@example.com", 3).await;
    let (access, refresh) = server.login("bo@example.com", "password123").await;
    let mut sock = Client::connect(&server, "/api/v1/agent/socket", &access, HashMap::new()).await;

    let (status, _) = server.post("/api/v1/auth/logout", Some(&access), json!({})).await;
    assert!(status == 204 || status == 200, "logout status {status}");
    let err = sock.wait_for(|f| f["type"] == "error").await;
    assert_eq!(err["code"], "unauthorized");
    assert!(sock.next().await.is_none(), "socket closed after logout");

    let (status, body) = server.post("/api/v1/auth/refresh", None, json!({"refresh_token": refresh})).await;
    assert_eq!(status, 401, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn refresh_issues_a_new_access_token_without_a_password_hash() {
    let server = TestServer::start().await;
    let site = server.site().await;
    server.agent(&site, "cy@example.com", 3).await;
    let (_, refresh) = server.login("cy@example.com", "password123").await;
    let hashes_before = server.state.auth.hashes.computed();
    for _ in 0..5 {
        let (status, body) = server.post("/api/v1/auth/refresh", None, json!({"refresh_token": refresh})).await;
        assert_eq!(status, 200, "{body}");
        let access = body["access_token"].as_str().unwrap();
        let (status, me) = server.get("/api/v1/me", Some(access)).await;
        assert_eq!(status, 200);
        assert_eq!(me["email"], "cy@example.com");
        assert!(me.get("password_hash").is_none(), "never serialise the hash");
    }
    assert_eq!(server.state.auth.hashes.computed(), hashes_before, "refresh never hashes");
    server.stop().await;
}
