//! The worked example of `docs/integrations.md`, taken from the page as it
//! is and run against a live server: it hears `conversation.closed`,
//! verifies it with `standardwebhooks`, fetches the transcript with an API
//! token and stores it; a request not signed by Holdfast is refused.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use holdfast_server::store::Role;
use serde_json::{Value, json};

use crate::outbox::{free_port, python_with};
use crate::support::Proc;
use crate::support::{Client, TestServer};

/// The page's one Python block.
fn example_script() -> String {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/integrations.md")).unwrap();
    let start = page.find("```python\n").expect("the guide has a Python example") + "```python\n".len();
    let end = start + page[start..].find("\n```").expect("the example ends");
    page[start..end].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_example_stores_the_transcript_of_a_closed_chat() {
    let server = TestServer::start_with(|c| {
        c.status.allow_private_webhooks = true;
        c.outbox.retry_min = Duration::from_millis(300);
        c.outbox.retry_max = Duration::from_millis(600);
    })
    .await;
    let site = server.site().await;
    server.person(&site, "boss@shop.example", "Boss", Role::Admin).await;
    let (boss, _) = server.login("boss@shop.example", "password123").await;
    let (status, token) =
        server.post("/api/v1/admin/api-tokens", Some(&boss), json!({"name": "Archive", "scopes": ["read"]})).await;
    assert_eq!(status, 201, "{token}");
    let port = free_port();
    let hook =
        json!({"name": "Archive", "url": format!("http://127.0.0.1:{port}/"), "events": ["conversation.closed"]});
    let (status, endpoint) = server.post("/api/v1/admin/webhooks", Some(&boss), hook).await;
    assert_eq!(status, 201, "{endpoint}");

    let work = tempfile::tempdir().unwrap();
    let script = work.path().join("store_transcripts.py");
    std::fs::write(&script, example_script()).unwrap();
    let out = work.path().join("transcripts");
    let log = work.path().join("example.log");
    let mut example = Proc(
        Command::new(python_with("standardwebhooks"))
            .arg(&script)
            .env("HOLDFAST_URL", &server.base)
            .env("HOLDFAST_TOKEN", token["secret"].as_str().unwrap())
            .env("WEBHOOK_SECRET", endpoint["secret"].as_str().unwrap())
            .env("PORT", port.to_string())
            .env("OUT_DIR", &out)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("run the example"),
    );
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        let said = || std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(exit) = example.0.try_wait().unwrap() {
            panic!("the example exited ({exit}) before listening:\n{}", said());
        }
        // Python's start and imports took over 10 s once, with the rest of
        // the suite running on two cores.
        assert!(started.elapsed() < Duration::from_secs(30), "the example never listened:\n{}", said());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Not from Holdfast: refused, nothing stored.
    let forged = server
        .http
        .post(format!("http://127.0.0.1:{port}/"))
        .json(&json!({"type": "conversation.closed", "data": {"conversation": {"id": "forged"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);

    // A chat, answered and closed.
    server.agent(&site, "agent@shop.example", 5).await;
    let (mut agent, _) = server.online_agent("agent@shop.example").await;
    let (_, vtoken) = server.visitor(&site).await;
    let mut visitor = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    visitor.send(json!({"type": "send", "client_id": "v1", "body": "Do you ship to <Norway>?"})).await;
    let conv = visitor.wait_for(|f| f["type"] == "ack").await["conv"].as_str().unwrap().to_owned();
    agent.wait_for(|f| f["type"] == "assigned" && f["conv"] == conv.as_str()).await;
    agent.send(json!({"type": "send", "conv": conv, "client_id": "a1", "body": "We do, in 3 days."})).await;
    agent.wait_for(|f| f["type"] == "ack").await;
    agent.send(json!({"type": "close", "conv": conv})).await;

    let file = out.join(format!("{conv}.json"));
    let started = Instant::now();
    while !file.exists() {
        assert!(started.elapsed() < Duration::from_secs(20), "the transcript was never stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(stored["conversation"]["id"], conv.as_str());
    assert_eq!(stored["conversation"]["status"], "closed");
    let lines: Vec<(&str, &str)> = stored["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["from"].as_str().unwrap(), m["text"].as_str().unwrap()))
        .collect();
    assert_eq!(lines, [("visitor", "Do you ship to <Norway>?"), ("agent", "We do, in 3 days.")]);
    assert!(!out.join("forged.json").exists());
}
