//! `Idempotency-Key` on the REST API's POSTs, through HTTP on both
//! stores: a retry gets the first answer and creates nothing more, even
//! when the copies arrive at once; the same key with another request is a
//! 409; keys are per site and caller; a failed request keeps its key
//! free; a bad key is a 400 in our error shape.

use std::collections::HashMap;

use holdfast_server::store::Role;
use serde_json::{Value, json};

use crate::services::TestDb;
use crate::support::{Client, TestServer};

/// POST with a bearer and an optional key: (status, replayed?, body).
async fn post(server: &TestServer, path: &str, token: &str, key: Option<&str>, body: Value) -> (u16, bool, Value) {
    let mut req = server.http.post(format!("{}{path}", server.base)).bearer_auth(token).json(&body);
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    let res = req.send().await.expect("http");
    let status = res.status().as_u16();
    let replayed = res.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
    (status, replayed, res.json().await.unwrap_or(Value::Null))
}

async fn token(server: &TestServer, admin: &str, scopes: &[&str]) -> String {
    let (status, made) =
        server.post("/api/v1/admin/api-tokens", Some(admin), json!({"name": "Sync", "scopes": scopes})).await;
    assert_eq!(status, 201, "{made}");
    made["secret"].as_str().unwrap().to_owned()
}

/// The names of the groups the admin signed in as `token` sees.
async fn groups(server: &TestServer, token: String) -> Vec<String> {
    let (_, list) = server.get("/api/v1/admin/groups", Some(&token)).await;
    list.as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap_or("").to_owned()).collect()
}

async fn retries_create_once(server: TestServer) {
    let shop = server.site().await;
    server.person(&shop, "boss@shop.example", "Boss", Role::Admin).await;
    let (boss, _) = server.login("boss@shop.example", "password123").await;
    let admin = token(&server, &boss, &["admin"]).await;

    // The first request runs; its retry gets the same answer, marked as
    // replayed, and makes nothing more.
    let sales = json!({"name": "Sales"});
    let (status, replayed, first) = post(&server, "/api/v1/admin/groups", &admin, Some("k-1"), sales.clone()).await;
    assert_eq!((status, replayed), (201, false), "{first}");
    let (status, replayed, again) = post(&server, "/api/v1/admin/groups", &admin, Some("k-1"), sales.clone()).await;
    assert_eq!((status, replayed), (201, true), "{again}");
    assert_eq!(again, first);
    let names = groups(&server, boss.clone()).await;
    assert_eq!(names.iter().filter(|n| *n == "Sales").count(), 1, "{names:?}");

    // The same key with another request: refused, nothing made.
    let (status, _, body) =
        post(&server, "/api/v1/admin/groups", &admin, Some("k-1"), json!({"name": "Billing"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
    assert!(!groups(&server, boss.clone()).await.contains(&"Billing".to_owned()));

    // Keys are per caller: the admin signed in, with the same key, is
    // another caller, and so is another site's admin.
    let (status, replayed, body) =
        post(&server, "/api/v1/admin/groups", &boss, Some("k-1"), json!({"name": "Billing"})).await;
    assert_eq!((status, replayed), (201, false), "{body}");
    let other = server.new_site("Other").await;
    server.person(&other, "boss@other.example", "Other boss", Role::Admin).await;
    let (stranger, _) = server.login("boss@other.example", "password123").await;
    let (status, replayed, body) = post(&server, "/api/v1/admin/groups", &stranger, Some("k-1"), sales.clone()).await;
    assert_eq!((status, replayed), (201, false), "{body}");
    assert_ne!(body["id"], first["id"]);
    assert!(!groups(&server, stranger.clone()).await.contains(&"Billing".to_owned()), "nothing of site A");

    // A failed request keeps nothing: its key is free for the next one.
    let (status, _, body) = post(&server, "/api/v1/admin/groups", &admin, Some("k-2"), json!({"name": ""})).await;
    assert_eq!(status, 400, "{body}");
    let (status, replayed, _) =
        post(&server, "/api/v1/admin/groups", &admin, Some("k-2"), json!({"name": "Returns"})).await;
    assert_eq!((status, replayed), (201, false));

    // Bad keys: a 400 in our error shape; nothing made.
    for bad in ["", "two words", &"k".repeat(256), "ключ"] {
        let (status, _, body) = post(&server, "/api/v1/admin/groups", &admin, Some(bad), json!({"name": "X"})).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{bad:?}: {body}");
    }
    assert!(!groups(&server, boss.clone()).await.contains(&"X".to_owned()));

    // Without a key, nothing changes: each request runs.
    let (status, _, _) =
        post(&server, "/api/v1/admin/canned", &admin, None, json!({"shortcut": "hi", "body": "Hi!"})).await;
    assert_eq!(status, 201);

    // Copies sent at once: one runs, the others wait for its answer; one
    // message is stored (no client_id: without the key each would be new).
    let write = token(&server, &boss, &["write", "read"]).await;
    let (_, vtoken) = server.visitor(&shop).await;
    let mut v = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    v.send(json!({"type": "send", "client_id": "m1", "body": "hello"})).await;
    let conv = v.wait_for(|f| f["type"] == "ack").await["conv"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/conversations/{conv}/messages");
    // A copy told to come back (503, "retry in 1 s": a loaded machine's
    // admission) does, with the same key, as a client would.
    let send = || post(&server, &path, &write, Some("send-1"), json!({"body": "We are on it"}));
    let copies = (0..8).map(|_| async {
        let mut answer = send().await;
        for _ in 0..5 {
            if answer.0 != 503 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            answer = send().await;
        }
        answer
    });
    let answers = futures_util::future::join_all(copies).await;
    let first = &answers[0].2;
    for (status, _, body) in &answers {
        assert_eq!(*status, 201, "{body}");
        assert_eq!(body, first);
    }
    assert_eq!(answers.iter().filter(|(_, replayed, _)| !replayed).count(), 1, "one ran");
    let (_, events) = server.get(&format!("/api/v1/conversations/{conv}/events"), Some(&boss)).await;
    let sent = events.as_array().unwrap().iter().filter(|e| e["body"] == "We are on it").count();
    assert_eq!(sent, 1, "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_create_once_on_sqlite() {
    retries_create_once(TestServer::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_create_once_on_postgres() {
    let db = TestDb::create().await;
    let server = TestServer::start_with(|c| {
        c.database_url = Some(db.url.clone());
        c.database_max_connections = 6;
    })
    .await;
    retries_create_once(server).await;
}
