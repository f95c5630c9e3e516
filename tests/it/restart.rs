//! A server restart (graceful, and kill -9 of the real binary) loses no
//! acknowledged message and needs no re-login.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::json;

use crate::support::{Client, TestServer};

#[tokio::test]
async fn a_restart_keeps_messages_and_sessions() {
    let server = TestServer::start().await;
    let site = server.site().await;
    server.agent(&site, "rs@example.com", 5).await;
    let (mut agent, access) = server.online_agent("rs@example.com").await;
    let (_, refresh) = server.login("rs@example.com", "password123").await;
    let (_, vtoken) = server.visitor(&site).await;
    let mut visitor = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    let ack = visitor.say(None, "m1", "before restart").await;
    let conv = ack["conv"].as_str().unwrap().to_owned();
    let first_seq = ack["seq"].clone();
    agent.wait_for(|f| f["body"] == "before restart").await;
    visitor.wait_for(|f| f["type"] == "message" && f["body"] == "before restart").await;
    let agent_cursors = agent.cursors.clone();
    let visitor_cursors = visitor.cursors.clone();

    let dir = server.dir.clone();
    let tmp = server.stop().await;
    let server = TestServer::start_in(&dir, |_| {}).await;

    // Same access token, same visitor token: no login, no new visitor.
    let mut agent = Client::connect(&server, "/api/v1/agent/socket", &access, agent_cursors).await;
    let mut visitor = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, visitor_cursors).await;
    assert_eq!(visitor.welcome["conversations"][0]["id"], conv.as_str());
    // A retry of a message sent before the restart is known to the new
    // process's writer, which has not seen the conversation yet.
    let again = visitor.say(Some(&conv), "m1", "before restart").await;
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["seq"], first_seq, "{again}");
    let ack = agent.say(Some(&conv), "m2", "after restart").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let (_, events) = server.get(&format!("/api/v1/conversations/{conv}/events"), Some(&vtoken)).await;
    let m1 = events.as_array().unwrap().iter().filter(|e| e["client_id"] == "m1").count();
    assert_eq!(m1, 1, "the retry stored nothing: {events}");
    visitor.wait_for(|f| f["body"] == "after restart").await;
    assert!(visitor.messages().iter().all(|m| m.2 != "before restart"), "nothing replayed twice");
    let (status, _) = server.post("/api/v1/auth/refresh", None, json!({"refresh_token": refresh})).await;
    assert_eq!(status, 200, "the session survived the restart");
    server.stop().await;
    drop(tmp);
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the real binary on a free port; returns it and its base URL.
fn spawn_binary(dir: &std::path::Path) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn holdfast");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    let base = first.rsplit(' ').next().unwrap().to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "unexpected banner {first:?}");
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Proc(child), base)
}

#[tokio::test]
async fn kill_9_loses_no_acknowledged_message() {
    let tmp = tempfile::tempdir().unwrap();
    // Arrange the site and agent through the in-process store, then close it.
    let arrange = TestServer::start_in(tmp.path(), |_| {}).await;
    let site = arrange.site().await;
    arrange.agent(&site, "k9@example.com", 5).await;
    arrange.stop().await;

    let (proc1, base) = spawn_binary(tmp.path());
    let http = crate::support::http();
    let login: serde_json::Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": "k9@example.com", "password": "password123"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = login["access_token"].as_str().unwrap().to_owned();
    let (mut visitor, _) = crate::support::visitor_at(&base, &site.widget_key).await;
    let mut acked = Vec::new();
    for i in 0..200 {
        let ack = visitor.say(None, &format!("k-{i}"), &format!("message {i}")).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        acked.push(ack["seq"].as_i64().unwrap());
    }
    let conv = visitor.events[0]["conv"].as_str().unwrap().to_owned();
    // No graceful anything: SIGKILL.
    let mut p = proc1;
    p.0.kill().unwrap();
    p.0.wait().unwrap();

    let (_proc2, base2) = spawn_binary(tmp.path());
    let res = http
        .get(format!("{base2}/api/v1/conversations/{conv}/events?limit=1000"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200, "the access token from before the crash still works");
    let events: serde_json::Value = res.json().await.unwrap();
    let stored: Vec<i64> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "message")
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    for seq in &acked {
        assert!(stored.contains(seq), "acknowledged message {seq} lost");
    }
    assert_eq!(stored.len(), acked.len(), "nothing doubled");
}
