//! API tokens, through the REST API on both stores: each scope allows what
//! it should and refuses the rest, a revoked token is refused at once, a
//! token of site A sees nothing of site B, a token opens no socket, login,
//! refresh or agent's own settings, tokens are rate-limited per token, and
//! making and revoking them is audited (never with the secret).

use std::collections::HashMap;

use holdfast_server::store::{Role, Site};
use serde_json::{Value, json};

use crate::services::TestDb;
use crate::support::{Client, TestServer};

async fn request(server: &TestServer, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = server.http.request(method, format!("{}{path}", server.base)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.expect("http");
    let status = res.status().as_u16();
    (status, res.json::<Value>().await.unwrap_or(Value::Null))
}

/// A conversation of `site` with one visitor message; its id.
async fn conversation(server: &TestServer, site: &Site) -> (String, String) {
    let (visitor_id, vtoken) = server.visitor(site).await;
    let mut v = Client::connect(server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    v.send(json!({"type": "send", "client_id": "m1", "body": "hello"})).await;
    let ack = v.wait_for(|f| f["type"] == "ack").await;
    (ack["conv"].as_str().unwrap().to_owned(), visitor_id)
}

async fn make_token(server: &TestServer, admin: &str, name: &str, scopes: &[&str]) -> (String, Value) {
    let (status, made) =
        server.post("/api/v1/admin/api-tokens", Some(admin), json!({"name": name, "scopes": scopes})).await;
    assert_eq!(status, 201, "{made}");
    let secret = made["secret"].as_str().unwrap().to_owned();
    (secret, made)
}

async fn scopes_sites_and_revocation(server: TestServer) {
    let shop = server.site().await;
    server.person(&shop, "boss@shop.example", "Boss", Role::Admin).await;
    let (boss, _) = server.login("boss@shop.example", "password123").await;
    let (conv, visitor_id) = conversation(&server, &shop).await;

    let (read, made) = make_token(&server, &boss, "CRM <b>sync</b>", &["read"]).await;
    assert!(read.starts_with("hf_") && read.len() == 3 + 43, "{read}");
    assert_eq!(made["prefix"], &read[..7], "{made}");
    assert_eq!(made["scopes"], json!(["read"]));
    assert!(made.get("token_hash").is_none(), "{made}");
    let (write, _) = make_token(&server, &boss, "Closer", &["write"]).await;
    let (admin, _) = make_token(&server, &boss, "Provisioner", &["admin"]).await;

    // read: GETs, nothing else.
    let (status, list) = request(&server, "GET", "/api/v1/conversations", &read, None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (status, events) = request(&server, "GET", &format!("/api/v1/conversations/{conv}/events"), &read, None).await;
    assert_eq!(status, 200, "{events}");
    assert_eq!(events[0]["body"], "hello", "{events}");
    let ban = json!({"visitor_id": visitor_id, "reason": "spam"});
    let (status, body) = request(&server, "POST", "/api/v1/bans", &read, Some(ban.clone())).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(body["error"]["message"].as_str().unwrap().contains("write"), "{body}");
    let (status, _) = request(&server, "GET", "/api/v1/admin/agents", &read, None).await;
    assert_eq!(status, 403, "read is not admin");

    // write: changes, but no reading.
    let (status, _) = request(&server, "GET", "/api/v1/conversations", &write, None).await;
    assert_eq!(status, 403, "write is not read");
    let (status, body) = request(&server, "POST", "/api/v1/bans", &write, Some(ban)).await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = request(&server, "POST", "/api/v1/admin/groups", &write, Some(json!({"name": "Sales"}))).await;
    assert_eq!(status, 403, "write is not admin");

    // admin: the admin API, any method.
    let (status, agents) = request(&server, "GET", "/api/v1/admin/agents", &admin, None).await;
    assert_eq!(status, 200, "{agents}");
    let (status, body) = request(&server, "POST", "/api/v1/admin/groups", &admin, Some(json!({"name": "Sales"}))).await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = request(&server, "GET", "/api/v1/conversations", &admin, None).await;
    assert_eq!(status, 403, "admin is not read");
    // …but it cannot make (or list) tokens: a signed-in admin does.
    let (status, body) =
        request(&server, "POST", "/api/v1/admin/api-tokens", &admin, Some(json!({"name": "x", "scopes": ["admin"]})))
            .await;
    assert_eq!(status, 403, "{body}");

    // The audit log names the token and its maker, and holds no secret.
    let (_, log) = server.get("/api/v1/admin/audit", Some(&boss)).await;
    let group = log.as_array().unwrap().iter().find(|e| e["action"] == "group.created").unwrap();
    assert_eq!(group["actor_name"], "Boss (API token \u{201c}Provisioner\u{201d})", "{group}");
    assert!(log.as_array().unwrap().iter().any(|e| e["action"] == "api_token.created"));
    assert!(!log.to_string().contains(&read[3..]), "no secret in the log");

    // Last use is recorded (off the request's path) and shown.
    let mut used = Value::Null;
    for _ in 0..50 {
        let (_, list) = server.get("/api/v1/admin/api-tokens", Some(&boss)).await;
        used = list.as_array().unwrap().iter().find(|t| t["name"] == "CRM <b>sync</b>").unwrap().clone();
        if used["last_used_at"].is_i64() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(used["last_used_at"].is_i64(), "{used}");
    assert!(used.get("secret").is_none() && !used.to_string().contains(&read[3..]), "{used}");

    // Site B: its admin sees and revokes none of site A's tokens, and a
    // token of site A sees nothing of site B.
    let other = server.new_site("Other").await;
    server.person(&other, "boss@other.example", "Other boss", Role::Admin).await;
    let (stranger, _) = server.login("boss@other.example", "password123").await;
    let (other_conv, _) = conversation(&server, &other).await;
    let (status, theirs) = server.get("/api/v1/admin/api-tokens", Some(&stranger)).await;
    assert_eq!((status, theirs), (200, json!([])));
    let id = made["id"].as_str().unwrap();
    let (status, _) = request(&server, "DELETE", &format!("/api/v1/admin/api-tokens/{id}"), &stranger, None).await;
    assert_eq!(status, 404);
    let (status, _) = request(&server, "GET", &format!("/api/v1/conversations/{other_conv}"), &read, None).await;
    assert_eq!(status, 404, "another site's conversation does not exist for this token");
    let (_, list) = request(&server, "GET", "/api/v1/conversations", &read, None).await;
    assert!(list.as_array().unwrap().iter().all(|c| c["id"] != other_conv.as_str()), "{list}");

    // Revoked: refused from the next request on.
    let (status, _) = request(&server, "DELETE", &format!("/api/v1/admin/api-tokens/{id}"), &boss, None).await;
    assert_eq!(status, 204);
    let (status, body) = request(&server, "GET", "/api/v1/conversations", &read, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{body}");
    let (status, _) = request(&server, "DELETE", &format!("/api/v1/admin/api-tokens/{id}"), &boss, None).await;
    assert_eq!(status, 204, "revoking twice changes nothing");
    let (_, list) = server.get("/api/v1/admin/api-tokens", Some(&boss)).await;
    assert_eq!(list.as_array().unwrap().len(), 3, "a revoked token stays listed: {list}");
    assert!(list.as_array().unwrap().iter().any(|t| t["id"] == id && t["revoked_at"].is_i64()));

    // A maker who is no longer an admin takes their tokens' power with them.
    let (status, _) = request(&server, "GET", "/api/v1/admin/agents", &admin, None).await;
    assert_eq!(status, 200);
    let me = server.state.store.agent_by_email("boss@shop.example").await.unwrap().unwrap();
    server.person(&shop, "second@shop.example", "Second", Role::Admin).await;
    let (second, _) = server.login("second@shop.example", "password123").await;
    let demote = json!({"role": "agent"});
    let (status, body) =
        request(&server, "PATCH", &format!("/api/v1/admin/agents/{}", me.id), &second, Some(demote)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = request(&server, "GET", "/api/v1/admin/agents", &admin, None).await;
    assert_eq!(status, 401, "the maker is an agent now");
}

#[tokio::test]
async fn scopes_sites_and_revocation_on_sqlite() {
    scopes_sites_and_revocation(TestServer::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_sites_and_revocation_on_postgres() {
    let db = TestDb::create().await;
    let server = TestServer::start_with(|c| {
        c.database_url = Some(db.url.clone());
        c.database_max_connections = 6;
    })
    .await;
    scopes_sites_and_revocation(server).await;
}

#[tokio::test]
async fn a_token_opens_no_socket_login_refresh_or_own_settings() {
    let server = TestServer::start().await;
    let shop = server.site().await;
    server.person(&shop, "boss@shop.example", "Boss", Role::Admin).await;
    let (boss, _) = server.login("boss@shop.example", "password123").await;
    let (token, _) = make_token(&server, &boss, "All", &["read", "write", "admin"]).await;

    for path in ["/api/v1/agent/socket", "/api/v1/visitor/socket"] {
        let refused = Client::try_connect(&server.ws_base, path, &token, HashMap::new()).await.err();
        let refused = refused.unwrap_or_else(|| panic!("{path} welcomed an API token"));
        assert_eq!(refused["type"], "error", "{path}: {refused}");
    }
    let (status, _) = server.get("/api/v1/me", Some(&token)).await;
    assert_eq!(status, 401, "me takes a session");
    let (status, _) = server.post("/api/v1/auth/logout", Some(&token), json!({})).await;
    assert_eq!(status, 401, "logout takes a session");
    let (status, _) = server.post("/api/v1/auth/refresh", None, json!({"refresh_token": token})).await;
    assert_eq!(status, 401, "a token is no refresh credential");
    let (status, _) =
        server.post("/api/v1/auth/login", None, json!({"email": "boss@shop.example", "password": token})).await;
    assert_eq!(status, 401, "nor a password");
    let change = json!({"current_password": "password123", "new_password": "pwned-by-token"});
    let (status, body) = server.post("/api/v1/me/password", Some(&token), change).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = server.put("/api/v1/me/lead-emails", Some(&token), json!({"on": false})).await;
    assert_eq!(status, 403);
    server.login("boss@shop.example", "password123").await; // the password stands

    // Made-up and malformed tokens: one 401, in our error shape.
    for bad in ["hf_", "hf_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "hf_ä'\"<>"] {
        let (status, body) = server.get("/api/v1/conversations", Some(bad)).await;
        assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{bad}: {body}");
    }
}

#[tokio::test]
async fn bad_token_requests_are_clear_4xx() {
    let server = TestServer::start().await;
    let shop = server.site().await;
    server.person(&shop, "boss@shop.example", "Boss", Role::Admin).await;
    server.agent(&shop, "agent@shop.example", 5).await;
    let (boss, _) = server.login("boss@shop.example", "password123").await;
    let (agent, _) = server.login("agent@shop.example", "password123").await;
    for (body, why) in [
        (json!({"name": "x", "scopes": ["root"]}), "unknown scope"),
        (json!({"name": "x", "scopes": []}), "no scope"),
        (json!({"name": "  ", "scopes": ["read"]}), "blank name"),
        (json!({"name": "x".repeat(101), "scopes": ["read"]}), "long name"),
        (json!({"name": "x", "scopes": ["read"], "expires": 1}), "unknown field"),
        (json!({"name": "x", "scopes": "read"}), "scopes not a list"),
    ] {
        let (status, answer) = server.post("/api/v1/admin/api-tokens", Some(&boss), body).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("bad_request")), "{why}: {answer}");
    }
    let (status, _) =
        server.post("/api/v1/admin/api-tokens", Some(&agent), json!({"name": "x", "scopes": ["read"]})).await;
    assert_eq!(status, 403, "agents make no tokens");
    let (status, _) = server.get("/api/v1/admin/api-tokens", Some(&agent)).await;
    assert_eq!(status, 403);
    let (status, body) = request(&server, "DELETE", "/api/v1/admin/api-tokens/nope", &boss, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");
}

#[tokio::test]
async fn each_token_has_its_own_rate() {
    let server = TestServer::start_with(|c| c.api_token_requests_per_minute = 3).await;
    let shop = server.site().await;
    server.person(&shop, "boss@shop.example", "Boss", Role::Admin).await;
    let (boss, _) = server.login("boss@shop.example", "password123").await;
    let (one, _) = make_token(&server, &boss, "One", &["read"]).await;
    let (two, _) = make_token(&server, &boss, "Two", &["read"]).await;
    for _ in 0..3 {
        assert_eq!(server.get("/api/v1/conversations", Some(&one)).await.0, 200);
    }
    let res = server.http.get(format!("{}/api/v1/conversations", server.base)).bearer_auth(&one).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 429);
    let wait: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&wait), "{wait}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(server.get("/api/v1/conversations", Some(&two)).await.0, 200, "another token is not held back");
    assert_eq!(server.get("/api/v1/conversations", Some(&boss)).await.0, 200, "nor the admin's own session");
}
