//! Chat actions over REST, through HTTP on both stores with a visitor's
//! socket listening: an integration's message (under its token's name)
//! and an agent's reach the visitor live; transfer and close are the
//! socket's events; a visitor's name and email change; another site's
//! token finds none of it; bad input is a 400 in our error shape.

use std::collections::HashMap;

use holdfast_server::store::Role;
use serde_json::{Value, json};

use crate::services::TestDb;
use crate::support::{Client, TestServer};

async fn call(server: &TestServer, method: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
    server.call(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), path, token, body).await
}

async fn token(server: &TestServer, admin: &str, name: &str, scopes: &[&str]) -> String {
    let (status, made) =
        server.post("/api/v1/admin/api-tokens", Some(admin), json!({"name": name, "scopes": scopes})).await;
    assert_eq!(status, 201, "{made}");
    made["secret"].as_str().unwrap().to_owned()
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

const BOT: &str = "CRM <img src=x onerror=alert(1)>";

async fn send_close_transfer_and_visitors(server: TestServer) {
    let shop = server.site().await;
    let boss = server.person(&shop, "boss@shop.example", "Boss", Role::Admin).await;
    let ann = server.agent(&shop, "ann@shop.example", 5).await;
    let (boss_token, _) = server.login("boss@shop.example", "password123").await;
    let write = token(&server, &boss_token, BOT, &["write"]).await;
    let read = token(&server, &boss_token, "Reader", &["read"]).await;

    let (visitor_id, vtoken) = server.visitor(&shop).await;
    let mut v = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    v.send(json!({"type": "send", "client_id": "m1", "body": "hello"})).await;
    let conv = v.wait_for(|f| f["type"] == "ack").await["conv"].as_str().unwrap().to_owned();
    let messages = format!("/api/v1/conversations/{conv}/messages");

    // The integration writes into the queued chat: the visitor sees it live,
    // under the token's name.
    let (status, event) = call(&server, "POST", &messages, &write, json!({"body": "Thanks, <b>we</b> got it"})).await;
    assert_eq!(status, 201, "{event}");
    assert_eq!((event["type"].as_str(), event["integration"].as_str()), (Some("message"), Some(BOT)), "{event}");
    assert_eq!(event["author"], json!({"kind": "agent", "id": boss.id}));
    let live = v.wait_for(|f| f["type"] == "message" && f["seq"] == event["seq"]).await;
    assert_eq!((live["body"].as_str(), live["integration"].as_str()), (Some("Thanks, <b>we</b> got it"), Some(BOT)));

    // A client_id repeated: the original, once.
    let once = json!({"body": "Order shipped", "client_id": "crm-42"});
    let (status, first) = call(&server, "POST", &messages, &write, once.clone()).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = call(&server, "POST", &messages, &write, once).await;
    assert_eq!((status, &again["seq"]), (200, &first["seq"]), "{again}");

    // As the agent (the token's maker), only into a chat assigned to them.
    let (status, body) = call(&server, "POST", &messages, &write, json!({"body": "x", "as": "agent"})).await;
    assert!(status == 403 || status == 409, "{status} {body}");

    // Transfer to Ann: the socket's `assigned` event.
    let (status, after) =
        call(&server, "POST", &format!("/api/v1/conversations/{conv}/transfer"), &write, json!({"to_agent": ann.id}))
            .await;
    assert_eq!(
        (status, after["agent_id"].as_str(), after["status"].as_str()),
        (200, Some(ann.id.as_str()), Some("active"))
    );
    let assigned = v.wait_for(|f| f["type"] == "assigned").await;
    assert_eq!(assigned["agent"]["id"], ann.id.as_str(), "{assigned}");

    // Ann, signed in, sends as herself (the default for a session).
    let (ann_token, _) = server.login("ann@shop.example", "password123").await;
    let (status, event) = call(&server, "POST", &messages, &ann_token, json!({"body": "Ann here"})).await;
    assert_eq!(status, 201, "{event}");
    assert!(event.get("integration").is_none(), "{event}");
    let live = v.wait_for(|f| f["type"] == "message" && f["body"] == "Ann here").await;
    assert_eq!(live["author"]["id"], ann.id.as_str());
    let (status, body) = call(&server, "POST", &messages, &ann_token, json!({"body": "x", "as": "integration"})).await;
    assert_eq!((status, code(&body)), (400, "bad_request"), "{body}");

    // Scope: read sends nothing.
    let (status, body) = call(&server, "POST", &messages, &read, json!({"body": "x"})).await;
    assert_eq!((status, code(&body)), (403, "forbidden"), "{body}");

    // Bad input.
    let long = "x".repeat(5001);
    for bad in [
        json!({}),
        json!({"body": ""}),
        json!({"body": "   "}),
        json!({"body": long}),
        json!({"body": "x", "as": "robot"}),
        json!({"body": "x", "extra": 1}),
        json!({"body": "x", "client_id": ""}),
    ] {
        let (status, body) = call(&server, "POST", &messages, &write, bad.clone()).await;
        assert_eq!((status, code(&body)), (400, "bad_request"), "{bad}: {body}");
    }
    let transfer = format!("/api/v1/conversations/{conv}/transfer");
    for bad in [json!({}), json!({"to_agent": ann.id, "to_group": "g"}), json!({"to_agent": "a".repeat(65)})] {
        let (status, body) = call(&server, "POST", &transfer, &write, bad.clone()).await;
        assert_eq!((status, code(&body)), (400, "bad_request"), "{bad}: {body}");
    }
    let (status, body) = call(&server, "POST", &transfer, &write, json!({"to_agent": "nobody"})).await;
    assert_eq!((status, code(&body)), (404, "not_found"), "{body}");
    let far = format!("/api/v1/conversations/{}/messages", "c".repeat(100));
    let (status, body) = call(&server, "POST", &far, &write, json!({"body": "x"})).await;
    assert_eq!((status, code(&body)), (404, "not_found"), "{body}");

    // Another site: its token finds nothing of this one, and this one's
    // token cannot hand a chat to its agent.
    let other = server.new_site("Other").await;
    server.person(&other, "boss@other.example", "Other boss", Role::Admin).await;
    let stranger_agent = server.agent(&other, "olga@other.example", 5).await;
    let (stranger, _) = server.login("boss@other.example", "password123").await;
    let theirs = token(&server, &stranger, "Theirs", &["write"]).await;
    for (path, body) in [
        (messages.clone(), json!({"body": "hi"})),
        (format!("/api/v1/conversations/{conv}/close"), json!({})),
        (transfer.clone(), json!({"to_agent": stranger_agent.id})),
    ] {
        let (status, answer) = call(&server, "POST", &path, &theirs, body).await;
        assert_eq!((status, code(&answer)), (404, "not_found"), "{path}: {answer}");
    }
    let (status, body) = call(&server, "POST", &transfer, &write, json!({"to_agent": stranger_agent.id})).await;
    assert_eq!((status, code(&body)), (404, "not_found"), "{body}");

    // Back to the queue of the default group, then closed by the integration.
    let group = server.state.store.groups(&shop.id).await.unwrap().remove(0);
    let (status, after) = call(&server, "POST", &transfer, &write, json!({"to_group": group.id})).await;
    assert_eq!((status, after["status"].as_str()), (200, Some("queued")), "{after}");
    v.wait_for(|f| f["type"] == "transferred").await;
    let close = format!("/api/v1/conversations/{conv}/close");
    let (status, after) = call(&server, "POST", &close, &write, json!({})).await;
    assert_eq!((status, after["status"].as_str()), (200, Some("closed")), "{after}");
    v.wait_for(|f| f["type"] == "closed").await;
    let (status, body) = call(&server, "POST", &close, &write, json!({})).await;
    assert_eq!((status, code(&body)), (409, "conflict"), "{body}");
    let (status, body) = call(&server, "POST", &messages, &write, json!({"body": "late"})).await;
    assert_eq!((status, code(&body)), (409, "conflict"), "{body}");

    // The history holds it all, in order.
    let (_, events) = server.get(&format!("/api/v1/conversations/{conv}/events"), Some(&read)).await;
    let kinds: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["message", "message", "message", "assigned", "message", "transferred", "closed"], "{events}");

    // The visitor's name and email.
    let path = format!("/api/v1/visitors/{visitor_id}");
    let (_, before) = server.get(&path, Some(&read)).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let change = json!({"name": "Ada <script>alert(1)</script>", "email": "ada@example.com"});
    let (status, visitor) = call(&server, "PATCH", &path, &write, change).await;
    assert_eq!(status, 200, "{visitor}");
    assert_eq!(
        (visitor["name"].as_str(), visitor["email"].as_str()),
        (Some("Ada <script>alert(1)</script>"), Some("ada@example.com"))
    );
    let (_, seen) = server.get(&path, Some(&read)).await;
    assert_eq!(seen["email"], "ada@example.com");
    assert_eq!(seen["last_seen"], before["last_seen"], "an edit is no visit (retention reads last_seen)");
    let (status, visitor) = call(&server, "PATCH", &path, &write, json!({"name": "Ada L."})).await;
    assert_eq!(
        (status, visitor["name"].as_str(), visitor["email"].as_str()),
        (200, Some("Ada L."), Some("ada@example.com"))
    );
    for bad in [
        json!({"email": "not an address"}),
        json!({"email": ""}),
        json!({"name": " "}),
        json!({"name": "n".repeat(201)}),
        json!({"email": format!("{}@example.com", "a".repeat(250))}),
        json!({"phone": "1"}),
        json!({"name": 7}),
    ] {
        let (status, body) = call(&server, "PATCH", &path, &write, bad.clone()).await;
        assert_eq!((status, code(&body)), (400, "bad_request"), "{bad}: {body}");
    }
    let (status, _) = call(&server, "PATCH", &path, &read, json!({"name": "x"})).await;
    assert_eq!(status, 403, "read changes nothing");
    let (status, body) = call(&server, "PATCH", &path, &theirs, json!({"name": "x"})).await;
    assert_eq!((status, code(&body)), (404, "not_found"), "{body}");
    let (status, _) = call(&server, "PATCH", "/api/v1/visitors/nobody", &write, json!({"name": "x"})).await;
    assert_eq!(status, 404);
    let (_, seen) = server.get(&path, Some(&read)).await;
    assert_eq!(seen["name"], "Ada L.", "unchanged by the refused requests");
    let (_, log) = server.get("/api/v1/admin/audit", Some(&boss_token)).await;
    assert!(
        log.as_array().unwrap().iter().any(|e| e["action"] == "visitor.changed" && e["target"] == visitor_id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_close_transfer_and_visitors_on_sqlite() {
    send_close_transfer_and_visitors(TestServer::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_close_transfer_and_visitors_on_postgres() {
    let db = TestDb::create().await;
    let server = TestServer::start_with(|c| {
        c.database_url = Some(db.url.clone());
        c.database_max_connections = 6;
    })
    .await;
    send_close_transfer_and_visitors(server).await;
}
