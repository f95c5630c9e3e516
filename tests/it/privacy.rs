//! A person's data, through the real server on SQLite and PostgreSQL: an
//! admin exports everything kept about a visitor (details, address,
//! conversations with every event, bans) as one JSON document; agents and
//! another site's admins cannot; the export is audited; and the operator
//! gets the same document from the command line.

use std::process::Command;

use holdfast_server::store::VisitorUpdate;
use serde_json::{Value, json};

use crate::outbox::admin;
use crate::services::{Node, both_stores};
use crate::support::{Client, TestServer};

async fn sqlite() -> Node {
    Node::sqlite(|_| {}).await
}

async fn postgres() -> Node {
    Node::postgres(|_| {}).await
}

const HOSTILE_NAME: &str = "<script>alert(1)</script> Eve";

/// Eve chats with Ann and is banned; returns Eve's id.
async fn arrange(s: &TestServer) -> String {
    let site = s.site().await;
    admin(s.state.store.as_ref(), &site, "boss@shop.example").await;
    s.agent(&site, "ann@shop.example", 5).await;
    let (mut ann, ann_token) = s.online_agent("ann@shop.example").await;
    let (eve, token) = s.visitor(&site).await;
    let update =
        VisitorUpdate { name: Some(HOSTILE_NAME.into()), email: Some("eve@example.com".into()), ..Default::default() };
    s.state.store.update_visitor(&eve, update).await.unwrap();
    let mut visitor = Client::connect(s, "/api/v1/visitor/socket", &token, Default::default()).await;
    let conv = visitor.say(None, "e1", "my order 1234 is late").await["conv"].as_str().unwrap().to_owned();
    ann.wait_for(|f| f["type"] == "message" && f["conv"] == conv.as_str()).await;
    assert_eq!(ann.say(Some(&conv), "a1", "Sorry Eve, on it").await["type"], "ack");
    let (status, _) = s.post("/api/v1/bans", Some(&ann_token), json!({"visitor_id": eve, "reason": "rude"})).await;
    assert_eq!(status, 201);
    eve
}

async fn an_admin_exports_a_visitors_data(node: Node) {
    let s = &node.server;
    let eve = arrange(s).await;
    let (boss, _) = s.login("boss@shop.example", "password123").await;
    let (ann, _) = s.login("ann@shop.example", "password123").await;
    let other = s.new_site("Other").await;
    admin(s.state.store.as_ref(), &other, "olga@other.example").await;
    let (olga, _) = s.login("olga@other.example", "password123").await;

    let path = format!("/api/v1/admin/visitors/{eve}/export");
    let res = s.http.get(format!("{}{path}", s.base)).bearer_auth(&boss).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let disposition = res.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert_eq!(disposition, format!("attachment; filename=\"visitor-{eve}.json\""));
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["format"], 1);
    assert_eq!(doc["visitor"]["name"], HOSTILE_NAME);
    assert_eq!(doc["visitor"]["email"], "eve@example.com");
    assert_eq!(doc["visitor"]["last_ip"], "127.0.0.1");
    let conv = &doc["conversations"][0];
    assert_eq!(conv["status"], "closed", "the ban ended it: {conv}");
    let bodies: Vec<&str> = conv["events"].as_array().unwrap().iter().filter_map(|e| e["body"].as_str()).collect();
    assert_eq!(bodies, ["my order 1234 is late", "Sorry Eve, on it"]);
    let seqs: Vec<i64> = conv["events"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "every event, in order");
    assert_eq!(doc["bans"][0]["reason"], "rude");

    // An agent may not; another site's admin finds no such visitor.
    assert_eq!(s.get(&path, Some(&ann)).await.0, 403);
    assert_eq!(s.get(&path, Some(&olga)).await.0, 404);
    assert_eq!(s.get("/api/v1/admin/visitors/nobody/export", Some(&boss)).await.0, 404);
    let long = format!("/api/v1/admin/visitors/{}/export", "x".repeat(200));
    assert_eq!(s.get(&long, Some(&boss)).await.0, 404);
    assert_eq!(s.get(&path, None).await.0, 401);

    // The export is in the audit log.
    let (_, log) = s.get("/api/v1/admin/audit", Some(&boss)).await;
    assert_eq!(log[0]["action"], "visitor.exported");
    assert_eq!(log[0]["target"], eve.as_str());
}

both_stores!(an_admin_exports_a_visitors_data);

/// `holdfast visitor export` prints the same document from the data dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_exports_a_visitor_from_the_command_line() {
    let s = TestServer::start().await;
    let eve = arrange(&s).await;
    let site = s.site().await;
    let dir = s.dir.clone();
    let _keep = s.stop().await;
    let out = Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(["visitor", "export", "--site", &site.id, &eve, "--data", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["visitor"]["id"], eve.as_str());
    assert_eq!(doc["conversations"][0]["events"][0]["body"], "my order 1234 is late");
    let out = Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(["visitor", "export", "--site", "no-such-site", &eve, "--data", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("visitor not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
