//! A server restart (graceful, and kill -9 of the real binary) loses no
//! acknowledged message and needs no re-login; a kill in the middle of an
//! upload leaves no partial file behind.

use std::collections::HashMap;

use serde_json::json;

use crate::attachments::{png, sha};
use crate::support::{Client, TestServer, spawn_serve};

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

#[tokio::test]
async fn kill_9_loses_no_acknowledged_message() {
    let tmp = tempfile::tempdir().unwrap();
    // Arrange the site and agent through the in-process store, then close it.
    let arrange = TestServer::start_in(tmp.path(), |_| {}).await;
    let site = arrange.site().await;
    arrange.agent(&site, "k9@example.com", 5).await;
    arrange.stop().await;

    let (proc1, base) = spawn_serve(tmp.path(), &[]);
    let access = crate::support::login_at(&base, "k9@example.com").await;
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

    let (_proc2, base2) = spawn_serve(tmp.path(), &[]);
    // The access token from before the crash still reads the conversation.
    let stored = crate::support::message_seqs(&base2, &conv, &access).await;
    for seq in &acked {
        assert!(stored.contains(seq), "acknowledged message {seq} lost");
    }
    assert_eq!(stored.len(), acked.len(), "nothing doubled");
}

/// The files under `dir`, with their sizes.
fn files_in(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            found.extend(files_in(&entry.path()));
        } else {
            found.push((entry.path(), meta.len()));
        }
    }
    found
}

/// Upload `bytes` as the visitor; the attachment's id.
async fn upload_at(base: &str, token: &str, bytes: Vec<u8>) -> String {
    let res = crate::support::http()
        .post(format!("{base}/api/v1/visitor/attachments?name=shot.png"))
        .bearer_auth(token)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let body: serde_json::Value = res.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

/// Send a message carrying `id`; its acknowledgement.
async fn send_file(visitor: &mut Client, conv: Option<&str>, client_id: &str, id: &str) -> serde_json::Value {
    let mut frame = json!({"type": "send", "client_id": client_id, "body": "the file", "attachments": [id]});
    if let Some(conv) = conv {
        frame["conv"] = json!(conv);
    }
    visitor.send(frame).await;
    let cid = client_id.to_owned();
    visitor
        .wait_for(move |f| (f["type"] == "ack" || f["type"] == "error") && (f["client_id"] == cid || f["ref"] == cid))
        .await
}

#[tokio::test]
async fn kill_9_in_the_middle_of_an_upload_leaves_no_partial_file() {
    use tokio::io::AsyncWriteExt;
    let tmp = tempfile::tempdir().unwrap();
    let arrange = TestServer::start_in(tmp.path(), |_| {}).await;
    let site = arrange.site().await;
    arrange.stop().await;
    let (spool, stored) = (tmp.path().join("attachments/tmp"), tmp.path().join("attachments"));

    // A visitor sends one whole file, then starts a 4 MB upload.
    let (mut proc1, base) = spawn_serve(tmp.path(), &[]);
    let (mut visitor, token) = crate::support::visitor_at(&base, &site.widget_key).await;
    let whole = png(300_000);
    let id = upload_at(&base, &token, whole.clone()).await;
    let ack = send_file(&mut visitor, None, "w1", &id).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let conv = ack["conv"].as_str().unwrap().to_owned();
    let big = png(4 << 20);
    let mut sock = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "POST /api/v1/visitor/attachments?name=big.png HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        big.len()
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(&big[..1 << 20]).await.unwrap();
    // Once the server has written half a megabyte of it: SIGKILL.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !files_in(&spool).iter().any(|(_, len)| *len >= 512 << 10) {
        assert!(std::time::Instant::now() < deadline, "the upload never reached the spool: {:?}", files_in(&spool));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    proc1.0.kill().unwrap();
    proc1.0.wait().unwrap();
    let partial = files_in(&spool);
    assert!(partial.iter().any(|(_, len)| *len < big.len() as u64), "the kill cut an upload short: {partial:?}");
    drop(sock);
    visitor.close().await;

    // Restarted: the half-written file is gone, and every stored file is
    // whole (content-addressed: its name is its bytes' SHA-256).
    let (_proc2, base2) = spawn_serve(tmp.path(), &[]);
    assert_eq!(files_in(&spool), [], "the partial upload was removed at start");
    let kept: Vec<_> = files_in(&stored).into_iter().filter(|(p, _)| !p.starts_with(&spool)).collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    for (path, _) in &kept {
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(sha(&std::fs::read(path).unwrap()), name, "a stored file is whole");
    }
    // The conversation holds the one message, whose file downloads whole.
    let http = crate::support::http();
    let res = http.get(format!("{base2}/api/v1/conversations/{conv}/events")).bearer_auth(&token).send().await.unwrap();
    let events: serde_json::Value = res.json().await.unwrap();
    let files: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "message")
        .flat_map(|e| e["attachments"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(files.len(), 1, "{events}");
    assert_eq!(files[0]["id"], id.as_str());
    let res = http.post(format!("{base2}/api/v1/visitor/attachments/{id}/link")).bearer_auth(&token).json(&json!({}));
    let link: serde_json::Value = res.send().await.unwrap().json().await.unwrap();
    let url = link["url"].as_str().unwrap();
    let bytes = http.get(format!("{base2}{url}")).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(sha(&bytes), sha(&whole));

    // The visitor uploads the big file again, whole, and sends it.
    let ws = base2.replace("http://", "ws://");
    let mut visitor = Client::try_connect(&ws, "/api/v1/visitor/socket", &token, HashMap::new()).await.unwrap();
    let again = upload_at(&base2, &token, big.clone()).await;
    let ack = send_file(&mut visitor, Some(&conv), "w2", &again).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let big_sha = sha(&big);
    assert!(files_in(&stored).iter().any(|(p, len)| p.ends_with(&big_sha) && *len == big.len() as u64));
    visitor.close().await;
}
