//! Bad input gets a clear error and harms neither the connection nor the
//! data; tenants and visitors never see each other's conversations.

use std::collections::HashMap;

use serde_json::json;

use crate::support::{Client, TestServer, assert_error};

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_socket_stays_usable() {
    let server = TestServer::start().await;
    let site = server.site().await;
    let (_, vtoken) = server.visitor(&site).await;
    let mut v = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    let ack = v.say(None, "ok-1", "a good message").await;
    let conv = ack["conv"].as_str().unwrap().to_owned();

    v.send_raw("{not json".into()).await;
    assert_error(&v.wait_for(|f| f["type"] == "error").await, "bad_request");

    v.send(json!({"type": "launch_missiles"})).await;
    let e = v.wait_for(|f| f["type"] == "error").await;
    assert_error(&e, "bad_request");
    assert!(e["message"].as_str().unwrap().contains("unknown frame type"), "{e}");

    v.send(json!({"type": "send", "client_id": 7, "body": "x"})).await;
    assert_error(&v.wait_for(|f| f["type"] == "error").await, "bad_request");

    v.send(json!({"type": "send", "client_id": "big", "body": "x".repeat(20_000)})).await;
    assert_error(&v.wait_for(|f| f["type"] == "error").await, "too_large");

    v.send(json!({"type": "send", "client_id": "long", "body": "x".repeat(6_000)})).await;
    assert_error(&v.wait_for(|f| f["type"] == "error").await, "bad_request");

    v.send(json!({"type": "send", "client_id": "", "body": "x"})).await;
    assert_error(&v.wait_for(|f| f["type"] == "error").await, "bad_request");

    v.send(json!({"type": "send", "client_id": "empty", "body": "   "})).await;
    assert_error(&v.wait_for(|f| f["type"] == "error").await, "bad_request");

    v.send(json!({"type": "send", "conv": "0190aaaa-0000-7000-8000-000000000000", "client_id": "w", "body": "x"}))
        .await;
    assert_error(&v.wait_for(|f| f["type"] == "error").await, "not_found");

    v.send(json!({"type": "claim", "conv": conv})).await;
    assert_error(&v.wait_for(|f| f["type"] == "error").await, "forbidden");

    v.send(json!({"type": "read", "conv": conv, "seq": 999})).await;
    assert_error(&v.wait_for(|f| f["type"] == "error").await, "bad_request");

    v.send(json!({"type": "hello", "v": 1, "token": vtoken})).await;
    assert_error(&v.wait_for(|f| f["type"] == "error").await, "bad_request");

    // Still alive, and the data is exactly the one good message plus one more.
    v.send(json!({"type": "ping"})).await;
    v.wait_for(|f| f["type"] == "pong").await;
    let ack = v.say(Some(&conv), "ok-2", "still works").await;
    assert_eq!(ack["type"], "ack");
    let (_, events) = server.get(&format!("/api/v1/conversations/{conv}/events"), Some(&vtoken)).await;
    let bodies: Vec<&str> = events.as_array().unwrap().iter().filter_map(|e| e["body"].as_str()).collect();
    assert_eq!(bodies, ["a good message", "still works"]);
    server.stop().await;
}

#[tokio::test]
async fn hello_is_checked_before_anything_else() {
    let server = TestServer::start().await;
    let site = server.site().await;
    let (_, vtoken) = server.visitor(&site).await;
    let ws = server.ws_base.clone();

    let e = Client::try_connect(&ws, "/api/v1/agent/socket", &vtoken, HashMap::new()).await.err().unwrap();
    assert_error(&e, "unauthorized");

    let e = Client::try_connect(&ws, "/api/v1/visitor/socket", "garbage", HashMap::new()).await.err().unwrap();
    assert_error(&e, "unauthorized");

    // An expired access token, signed with the server's real key.
    let key = server.state.store.meta_get("token_key").await.unwrap().unwrap();
    let claims = json!({"sub": "a", "site": site.id, "sid": "s", "role": "agent", "typ": "agent",
        "iat": 1_000_000, "exp": 1_000_100});
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap();
    let e = Client::try_connect(&ws, "/api/v1/agent/socket", &expired, HashMap::new()).await.err().unwrap();
    assert_error(&e, "token_expired");
    let (status, body) = server.get("/api/v1/me", Some(&expired)).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "token_expired", "the client knows to refresh, not to log in again");

    let (mut raw, _) = tokio_tungstenite::connect_async(format!("{ws}/api/v1/visitor/socket")).await.unwrap();
    use futures_util::{SinkExt, StreamExt};
    raw.send(tokio_tungstenite::tungstenite::Message::Text(json!({"type": "ping"}).to_string().into())).await.unwrap();
    let msg = raw.next().await.unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
    assert_error(&v, "bad_request");

    let (mut raw, _) = tokio_tungstenite::connect_async(format!("{ws}/api/v1/visitor/socket")).await.unwrap();
    raw.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({"type": "hello", "v": 99, "token": vtoken}).to_string().into(),
    ))
    .await
    .unwrap();
    let msg = raw.next().await.unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
    assert!(v["message"].as_str().unwrap().contains("version"), "{v}");
    server.stop().await;
}

#[tokio::test]
async fn bad_http_bodies_get_json_errors() {
    let server = TestServer::start().await;
    let url = format!("{}/api/v1/auth/login", server.base);
    let res = server.http.post(&url).header("content-type", "application/json").body("{oops").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");

    let huge = json!({"email": "a@b.c", "password": "x".repeat(100_000)});
    let res = server.http.post(&url).json(&huge).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 413);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_large");

    let (status, body) = server.post("/api/v1/auth/login", None, json!({"email": "a@b.c"})).await;
    assert_eq!(status, 400, "{body}");

    let (status, _) = server.post("/api/v1/visitor/session", None, json!({"widget_key": "wk_nope"})).await;
    assert_eq!(status, 404);

    let (status, body) = server.get("/api/v1/conversations?status=bogus", None).await;
    assert_eq!(status, 401, "auth first: {body}");
    server.stop().await;
}

/// A path parameter that does not decode (not UTF-8) gets our error
/// shape, not the router's plain text.
#[tokio::test]
async fn a_path_parameter_that_does_not_decode_gets_a_json_error() {
    let server = TestServer::start().await;
    let site = server.site().await;
    server.person(&site, "boss@bad.test", "Boss", holdfast_server::store::Role::Admin).await;
    let (token, _) = server.login("boss@bad.test", "password123").await;
    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/conversations/%FF"),
        (reqwest::Method::DELETE, "/api/v1/admin/canned/%FF%FE"),
        (reqwest::Method::PATCH, "/api/v1/admin/groups/%C3"),
    ] {
        let (status, body) = server.call(method, path, &token, json!({"name": "x"})).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{path}: {body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn an_agent_of_another_site_and_another_visitor_see_nothing() {
    let server = TestServer::start().await;
    let site_a = server.site().await;
    let site_b = server.new_site("Other shop").await;
    server.agent(&site_a, "owner@a.example", 5).await;
    server.agent(&site_b, "spy@b.example", 5).await;
    let (mut agent_a, access_a) = server.online_agent("owner@a.example").await;

    let (visitor_id, vtoken) = server.visitor(&site_a).await;
    let mut v = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    let ack = v.say(None, "s1", "my secret order number is 42").await;
    let conv = ack["conv"].as_str().unwrap().to_owned();
    agent_a.wait_for(|f| f["type"] == "message").await;

    // The agent of site B, over HTTP and over the socket.
    let (access_b, _) = server.login("spy@b.example", "password123").await;
    for path in [format!("/api/v1/conversations/{conv}/events"), format!("/api/v1/visitors/{visitor_id}")] {
        let (status, _) = server.get(&path, Some(&access_b)).await;
        assert_eq!(status, 404, "{path}");
    }
    let (_, list) = server.get("/api/v1/conversations", Some(&access_b)).await;
    assert_eq!(list.as_array().unwrap().len(), 0);
    let (_, hits) = server.get("/api/v1/search?q=secret", Some(&access_b)).await;
    assert_eq!(hits["chats"].as_array().unwrap().len(), 0);

    let mut spy = Client::connect(&server, "/api/v1/agent/socket", &access_b, HashMap::from([(conv.clone(), 0)])).await;
    let e = spy.wait_for(|f| f["type"] == "error").await;
    assert_error(&e, "not_found");
    assert_eq!(e["ref"], conv.as_str());
    for frame in [
        json!({"type": "claim", "conv": conv}),
        json!({"type": "send", "conv": conv, "client_id": "x", "body": "hi"}),
        json!({"type": "close", "conv": conv}),
        json!({"type": "typing", "conv": conv, "on": true}),
    ] {
        spy.send(frame).await;
        assert_error(&spy.wait_for(|f| f["type"] == "error").await, "not_found");
    }
    assert!(spy.events.is_empty(), "site B saw no event of site A");

    // Another visitor of the same site.
    let (_, other) = server.visitor(&site_a).await;
    let (status, _) = server.get(&format!("/api/v1/conversations/{conv}/events"), Some(&other)).await;
    assert_eq!(status, 404);
    let mut o = Client::connect(&server, "/api/v1/visitor/socket", &other, HashMap::new()).await;
    let e = o.say(Some(&conv), "o1", "let me in").await;
    assert_error(&e, "not_found");
    assert!(o.welcome["conversations"].as_array().unwrap().is_empty());

    // The owner's conversation is untouched.
    let (_, events) = server.get(&format!("/api/v1/conversations/{conv}/events"), Some(&access_a)).await;
    let bodies: Vec<&str> = events.as_array().unwrap().iter().filter_map(|e| e["body"].as_str()).collect();
    assert_eq!(bodies, ["my secret order number is 42"]);
    server.stop().await;
}
