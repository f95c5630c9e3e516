//! A dropped socket resumes with its credential and its cursors, and gets
//! exactly what it missed: in order, nothing lost, nothing twice, no
//! password hash.

use std::collections::HashMap;

use serde_json::json;

use crate::support::{Client, TestServer};

/// An agent and a visitor in a live conversation.
async fn live_pair(server: &TestServer) -> (Client, String, Client, String, String) {
    let site = server.site().await;
    server.agent(&site, "res@example.com", 5).await;
    let (agent, access) = server.online_agent("res@example.com").await;
    let (_, vtoken) = server.visitor(&site).await;
    let mut visitor = Client::connect(server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    let ack = visitor.say(None, "hello", "hello").await;
    let conv = ack["conv"].as_str().unwrap().to_owned();
    visitor.wait_for(|f| f["type"] == "assigned").await;
    let mut agent = agent;
    agent.wait_for(|f| f["type"] == "assigned").await;
    (agent, access, visitor, vtoken, conv)
}

fn seqs(c: &Client, conv: &str) -> Vec<i64> {
    c.events.iter().filter(|e| e["conv"] == conv).map(|e| e["seq"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn a_visitor_cut_mid_conversation_gets_exactly_what_it_missed() {
    let server = TestServer::start().await;
    let (mut agent, _, visitor, vtoken, conv) = live_pair(&server).await;
    let cursors = visitor.cursors.clone();
    let seen_before = seqs(&visitor, &conv);
    visitor.cut();

    for i in 0..5 {
        let ack = agent.say(Some(&conv), &format!("a-{i}"), &format!("while you were away {i}")).await;
        assert_eq!(ack["type"], "ack");
    }
    let mut visitor = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, cursors.clone()).await;
    visitor.wait_for(|f| f["body"] == "while you were away 4").await;
    let replayed = seqs(&visitor, &conv);
    let last_before = *seen_before.last().unwrap();
    assert_eq!(replayed, ((last_before + 1)..=(last_before + 5)).collect::<Vec<_>>(), "exactly the missed ones");
    let bodies: Vec<String> = visitor.messages().into_iter().map(|m| m.2).collect();
    assert_eq!(bodies, (0..5).map(|i| format!("while you were away {i}")).collect::<Vec<_>>());
    server.stop().await;
}

#[tokio::test]
async fn an_agent_resumes_with_the_same_token_and_no_password_hash() {
    let server = TestServer::start().await;
    let (agent, access, mut visitor, _, conv) = live_pair(&server).await;
    let cursors = agent.cursors.clone();
    agent.cut();
    let hashes = server.state.auth.hashes.computed();

    for i in 0..3 {
        visitor.say(Some(&conv), &format!("v-{i}"), &format!("are you there {i}")).await;
    }
    let mut agent = Client::connect(&server, "/api/v1/agent/socket", &access, cursors.clone()).await;
    agent.wait_for(|f| f["body"] == "are you there 2").await;
    let got: Vec<String> = agent.messages().into_iter().map(|m| m.2).collect();
    assert_eq!(got, ["are you there 0", "are you there 1", "are you there 2"]);
    assert_eq!(server.state.auth.hashes.computed(), hashes, "a resume runs no password hash");
    // Still the assigned agent: replying works without any re-login.
    let ack = agent.say(Some(&conv), "back", "sorry, back now").await;
    assert_eq!(ack["type"], "ack");
    server.stop().await;
}

#[tokio::test]
async fn events_sent_during_the_replay_are_neither_lost_nor_doubled() {
    let server = TestServer::start().await;
    let (mut agent, _, visitor, vtoken, conv) = live_pair(&server).await;
    let cursors = visitor.cursors.clone();
    visitor.cut();
    for i in 0..50 {
        agent.say(Some(&conv), &format!("pre-{i}"), "before reconnect").await;
    }
    // Keep sending while the visitor reconnects and replays.
    let conv2 = conv.clone();
    let sender = tokio::spawn(async move {
        for i in 0..50 {
            agent.say(Some(&conv2), &format!("during-{i}"), &format!("during {i}")).await;
        }
        agent
    });
    let mut visitor = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, cursors.clone()).await;
    let _agent = sender.await.unwrap();
    visitor.wait_for(|f| f["body"] == "during 49").await;
    let got = seqs(&visitor, &conv);
    let start = cursors[&conv] + 1;
    assert_eq!(got, (start..start + got.len() as i64).collect::<Vec<_>>(), "contiguous, ordered, no duplicates");
    assert_eq!(got.len(), 100, "all 100 missed or live messages arrived once");
    server.stop().await;
}

#[tokio::test]
async fn a_new_socket_without_cursors_gets_the_whole_open_conversation() {
    let server = TestServer::start().await;
    let (mut agent, _, visitor, vtoken, conv) = live_pair(&server).await;
    agent.say(Some(&conv), "r", "reply").await;
    visitor.close().await;
    // A second tab of the same visitor: no cursors, full history.
    let mut tab = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    tab.wait_for(|f| f["body"] == "reply").await;
    assert_eq!(seqs(&tab, &conv)[0], 1);
    server.stop().await;
}

#[tokio::test]
async fn a_reconnecting_console_is_not_sent_an_unchanged_agent_list() {
    let server = TestServer::start().await;
    let site = server.site().await;
    server.agent(&site, "list-a@example.com", 5).await;
    server.agent(&site, "list-b@example.com", 5).await;
    let (first, access) = server.online_agent("list-a@example.com").await;
    first.cut();
    let hello = |version: Option<&str>| {
        let mut h = json!({"type": "hello", "v": 1, "token": access});
        if let Some(v) = version {
            h["agents_version"] = json!(v);
        }
        h
    };
    let path = "/api/v1/agent/socket";
    // A console without a list gets it, and its version.
    let fresh = Client::try_hello(&server.ws_base, path, hello(None)).await.expect("welcome");
    let version = fresh.welcome["agents_version"].as_str().expect("a version").to_owned();
    let listed = fresh.welcome["agents"].as_array().expect("the list").clone();
    assert!(listed.iter().any(|a| a["availability"] == "online"), "{listed:?}");
    fresh.cut();
    // Back with that version and nothing changed: no list, same version.
    let resumed = Client::try_hello(&server.ws_base, path, hello(Some(&version))).await.expect("welcome");
    assert!(resumed.welcome.get("agents").is_none(), "{}", resumed.welcome);
    assert_eq!(resumed.welcome["agents_version"], version.as_str());
    resumed.cut();
    // Another agent comes online: the list changed, so it comes again.
    let (_other, _) = server.online_agent("list-b@example.com").await;
    let changed = Client::try_hello(&server.ws_base, path, hello(Some(&version))).await.expect("welcome");
    let now_listed = changed.welcome["agents"].as_array().expect("the new list");
    assert_eq!(now_listed.iter().filter(|a| a["availability"] == "online").count(), 2);
    assert_ne!(changed.welcome["agents_version"], version.as_str());
    // A version the server never gave is just a miss.
    let unknown = Client::try_hello(&server.ws_base, path, hello(Some("nonsense"))).await.expect("welcome");
    assert!(unknown.welcome["agents"].is_array());
    server.stop().await;
}
