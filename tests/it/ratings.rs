//! Post-chat ratings through the real server, on SQLite and PostgreSQL: a
//! visitor rates their own closed chat once (a retry is the same rating),
//! the agent who had it sees it live, it is in the history and replayed on
//! resume; bad input, other visitors and other sites are refused.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::services::TestDb;
use crate::support::{Client, TestServer, assert_error};

const HOSTILE_COMMENT: &str = "<img src=x onerror=\"window.pwned=1\"> great help</q><script>alert(1)</script>";

/// Send a `rate` frame and wait for its ack or error.
async fn rate(c: &mut Client, conv: &str, client_id: &str, rating: &str, comment: Option<&str>) -> Value {
    let mut frame = json!({"type": "rate", "conv": conv, "client_id": client_id, "rating": rating});
    if let Some(text) = comment {
        frame["comment"] = json!(text);
    }
    c.send(frame).await;
    let cid = client_id.to_owned();
    c.wait_for(move |f| (f["type"] == "ack" || f["type"] == "error") && (f["client_id"] == cid || f["ref"] == cid))
        .await
}

/// A visitor's chat taken by an online agent, who answered: (visitor
/// socket, visitor token, agent socket, agent token, conversation id).
async fn answered_chat(server: &TestServer, agent_email: &str) -> (Client, String, Client, String, String) {
    let site = server.site().await;
    let (mut agent, agent_token) = server.online_agent(agent_email).await;
    let (_, vtoken) = server.visitor(&site).await;
    let mut visitor = Client::connect(server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    let ack = visitor.say(None, "v1", "Where is my order?").await;
    let conv = ack["conv"].as_str().unwrap().to_owned();
    agent.wait_for(|f| f["type"] == "assigned" && f["conv"] == conv.as_str()).await;
    assert_eq!(agent.say(Some(&conv), "a1", "It ships today.").await["type"], "ack");
    visitor.wait_for(|f| f["type"] == "message" && f["client_id"] == "a1").await;
    (visitor, vtoken, agent, agent_token, conv)
}

async fn a_rating_is_a_durable_event_counted_once(server: TestServer) {
    let site = server.site().await;
    server.agent(&site, "ann@shop.example", 5).await;
    let (mut visitor, vtoken, mut agent, agent_token, conv) = answered_chat(&server, "ann@shop.example").await;

    // Not while the chat is open.
    assert_error(&rate(&mut visitor, &conv, "r0", "good", None).await, "conflict");

    agent.send(json!({"type": "close", "conv": conv})).await;
    let closed = visitor.wait_for(|f| f["type"] == "closed").await;
    let closed_seq = closed["seq"].as_i64().unwrap();

    // The visitor rates it, with a comment: acknowledged once stored, and
    // the agent who had the chat sees it live.
    let ack = rate(&mut visitor, &conv, "r1", "good", Some(&format!("  {HOSTILE_COMMENT}  "))).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["duplicate"], false);
    assert_eq!(ack["seq"], closed_seq + 1, "{ack}");
    let seen = agent.wait_for(|f| f["type"] == "rating").await;
    assert_eq!(seen["conv"], conv.as_str());
    assert_eq!(seen["seq"], ack["seq"]);
    assert_eq!(seen["rating"], "good");
    assert_eq!(seen["score"], 5);
    assert_eq!(seen["comment"], HOSTILE_COMMENT, "trimmed, otherwise kept as written");
    assert_eq!(seen["client_id"], "r1");
    assert_eq!(seen["author"]["kind"], "visitor");
    visitor.wait_for(|f| f["type"] == "rating").await;

    // Sent twice (an ack lost with the connection): the same rating back.
    let again = rate(&mut visitor, &conv, "r1", "good", Some(HOSTILE_COMMENT)).await;
    assert_eq!(again["type"], "ack", "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["seq"], ack["seq"]);
    assert_eq!(again["id"], ack["id"]);
    // A second, different rating is refused: one per chat.
    assert_error(&rate(&mut visitor, &conv, "r2", "bad", None).await, "conflict");

    // In the history, once, for the agent and for the visitor.
    for token in [&agent_token, &vtoken] {
        let (status, events) = server.get(&format!("/api/v1/conversations/{conv}/events"), Some(token)).await;
        assert_eq!(status, 200, "{events}");
        let ratings: Vec<&Value> = events.as_array().unwrap().iter().filter(|e| e["type"] == "rating").collect();
        assert_eq!(ratings.len(), 1, "{events}");
        assert_eq!(ratings[0]["rating"], "good");
        assert_eq!(ratings[0]["comment"], HOSTILE_COMMENT);
    }

    // Replayed on resume from a cursor before it.
    let cursors = HashMap::from([(conv.clone(), closed_seq)]);
    let mut back = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, cursors).await;
    let replayed = back.wait_for(|f| f["type"] == "rating").await;
    assert_eq!(replayed["seq"], closed_seq + 1);
    back.close().await;

    // A bad rating without a comment, on a second chat of the same visitor.
    let ack = visitor.say(None, "v2", "One more thing").await;
    let second = ack["conv"].as_str().unwrap().to_owned();
    agent.wait_for(|f| f["type"] == "assigned" && f["conv"] == second.as_str()).await;
    visitor.send(json!({"type": "close", "conv": second})).await;
    visitor.wait_for(|f| f["type"] == "closed" && f["conv"] == second.as_str()).await;
    let ack = rate(&mut visitor, &second, "r3", "bad", Some("   ")).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let seen = agent.wait_for(|f| f["type"] == "rating" && f["conv"] == second.as_str()).await;
    assert_eq!(seen["rating"], "bad");
    assert_eq!(seen["score"], 1);
    assert!(seen.get("comment").is_none(), "a blank comment is no comment: {seen}");
    visitor.close().await;
    agent.close().await;
    server.stop().await;
}

async fn ratings_refuse_bad_input_and_other_people(server: TestServer) {
    let site = server.site().await;
    server.agent(&site, "ann@shop.example", 5).await;
    let other = server.new_site("Other").await;
    server.agent(&other, "olaf@other.example", 5).await;
    let (mut visitor, _, mut agent, _, conv) = answered_chat(&server, "ann@shop.example").await;
    agent.send(json!({"type": "close", "conv": conv})).await;
    visitor.wait_for(|f| f["type"] == "closed").await;

    // Bad input: a clear error, the socket stays up.
    visitor.send(json!({"type": "rate", "conv": conv, "client_id": "x1", "rating": "meh"})).await;
    assert_error(&visitor.wait_for(|f| f["type"] == "error").await, "bad_request");
    visitor.send(json!({"type": "rate", "conv": conv, "client_id": "x2", "rating": 5})).await;
    assert_error(&visitor.wait_for(|f| f["type"] == "error").await, "bad_request");
    visitor.send(json!({"type": "rate", "conv": conv, "client_id": "x3", "rating": "good", "stars": 5})).await;
    assert_error(&visitor.wait_for(|f| f["type"] == "error").await, "bad_request");
    let long = "é".repeat(1001);
    let refused = rate(&mut visitor, &conv, "x4", "good", Some(&long)).await;
    assert_error(&refused, "bad_request");
    assert!(refused["message"].as_str().unwrap().contains("1000 characters"), "{refused}");
    assert_error(&rate(&mut visitor, &conv, "", "good", None).await, "bad_request");
    let bogus = "c".repeat(65);
    assert_error(&rate(&mut visitor, &bogus, "x5", "good", None).await, "not_found");

    // An agent cannot rate; another visitor of the site, or one of another
    // site, does not even learn the chat exists.
    assert_error(&rate(&mut agent, &conv, "x6", "good", None).await, "forbidden");
    let (_, stranger) = server.visitor(&site).await;
    let mut stranger = Client::connect(&server, "/api/v1/visitor/socket", &stranger, HashMap::new()).await;
    assert_error(&rate(&mut stranger, &conv, "x7", "bad", None).await, "not_found");
    let (_, foreign) = server.visitor(&other).await;
    let mut foreign = Client::connect(&server, "/api/v1/visitor/socket", &foreign, HashMap::new()).await;
    assert_error(&rate(&mut foreign, &conv, "x8", "bad", None).await, "not_found");

    // The real rating: the other site's agent, connected, hears nothing of
    // it and cannot read it.
    let (olaf_token, _) = server.login("olaf@other.example", "password123").await;
    let mut olaf = Client::connect(&server, "/api/v1/agent/socket", &olaf_token, HashMap::new()).await;
    assert_eq!(rate(&mut visitor, &conv, "r1", "good", Some("thanks")).await["type"], "ack");
    agent.wait_for(|f| f["type"] == "rating").await;
    olaf.send(json!({"type": "ping"})).await;
    olaf.wait_for(|f| f["type"] == "pong").await;
    assert!(olaf.events.is_empty(), "another site's agent got events: {:?}", olaf.events);
    let (status, _) = server.get(&format!("/api/v1/conversations/{conv}/events"), Some(&olaf_token)).await;
    assert_eq!(status, 404);

    // A chat nobody took (its visitor left the queue) has nobody to rate.
    agent.send(json!({"type": "set_availability", "availability": "away"})).await;
    agent.wait_for(|f| f["type"] == "availability" && f["agent"]["availability"] == "away").await;
    let ack = stranger.say(None, "s1", "Hello?").await;
    let unanswered = ack["conv"].as_str().unwrap().to_owned();
    stranger.send(json!({"type": "close", "conv": unanswered})).await;
    stranger.wait_for(|f| f["type"] == "closed").await;
    assert_error(&rate(&mut stranger, &unanswered, "s2", "bad", None).await, "conflict");
    for c in [visitor, agent, stranger, foreign, olaf] {
        c.close().await;
    }
    server.stop().await;
}

async fn on_postgres(db: &TestDb) -> TestServer {
    TestServer::start_with(|c| {
        c.database_url = Some(db.url.clone());
        c.database_max_connections = 6;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratings_on_sqlite() {
    a_rating_is_a_durable_event_counted_once(TestServer::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratings_on_postgres() {
    let db = TestDb::create().await;
    a_rating_is_a_durable_event_counted_once(on_postgres(&db).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratings_refused_on_sqlite() {
    ratings_refuse_bad_input_and_other_people(TestServer::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratings_refused_on_postgres() {
    let db = TestDb::create().await;
    ratings_refuse_bad_input_and_other_people(on_postgres(&db).await).await;
}
