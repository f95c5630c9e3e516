//! Cursor pagination of the lists that grow, through HTTP on both stores:
//! conversations (missed chats too), bans, the audit log and the outbox's
//! deliveries are read a page
//! at a time by `Next-Cursor`, every row exactly once and in order, rows
//! made in the same millisecond included; the first page without a cursor
//! is what the list answered before it had pages; a cursor this server did
//! not give is a 400; another site's rows never show. Conversations are
//! also listed by the time they started (`from`, `to`).

use std::collections::HashMap;

use holdfast_server::store::Role;
use serde_json::{Value, json};

use crate::services::TestDb;
use crate::support::{Client, TestServer};

/// GET with a bearer: (status, `Next-Cursor`, body).
async fn get(server: &TestServer, path: &str, token: &str) -> (u16, Option<String>, Value) {
    let res = server.http.get(format!("{}{path}", server.base)).bearer_auth(token).send().await.expect("http");
    let status = res.status().as_u16();
    let next = res.headers().get("next-cursor").map(|v| v.to_str().unwrap().to_owned());
    (status, next, res.json().await.unwrap_or(Value::Null))
}

/// Every row of a list, page by page (`path` ends in a query), with the
/// number of pages read.
async fn every_page(server: &TestServer, path: &str, token: &str, key: &str) -> (Vec<String>, usize) {
    let (mut ids, mut pages, mut cursor) = (Vec::new(), 0, None::<String>);
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}&cursor={}", urlencoding(c)),
            None => path.to_owned(),
        };
        let (status, next, page) = get(server, &url, token).await;
        assert_eq!(status, 200, "{url}: {page}");
        pages += 1;
        ids.extend(page.as_array().unwrap().iter().map(|r| r[key].as_str().unwrap().to_owned()));
        match next {
            Some(n) => cursor = Some(n),
            None => return (ids, pages),
        }
        assert!(pages < 100, "pages never end");
    }
}

fn urlencoding(s: &str) -> String {
    s.chars()
        .map(
            |c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c.to_string()
                } else {
                    format!("%{:02X}", c as u32)
                }
            },
        )
        .collect()
}

async fn lists_page_by_cursor(server: TestServer) {
    let shop = server.site().await;
    server.person(&shop, "boss@shop.example", "Boss", Role::Admin).await;
    let (boss, _) = server.login("boss@shop.example", "password123").await;

    // A chat's events, by `seq`: for the agent and for its visitor.
    let (_, vtoken) = server.visitor(&shop).await;
    let mut v = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    let mut conv = None::<String>;
    for i in 0..5 {
        v.send(json!({"type": "send", "conv": conv, "client_id": format!("e{i}"), "body": format!("line {i}")})).await;
        let ack = v.wait_for(|f| f["type"] == "ack" && f["client_id"] == format!("e{i}").as_str()).await;
        conv = ack["conv"].as_str().map(str::to_owned);
    }
    let conv = conv.unwrap();
    let events = format!("/api/v1/conversations/{conv}/events?limit=2");
    for token in [&boss, &vtoken] {
        let (ids, pages) = every_page(&server, &events, token, "id").await;
        assert_eq!((ids.len(), pages), (5, 3));
    }
    let (status, _, body) = get(&server, &format!("{events}&cursor=2&after=2"), &boss).await;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = get(&server, &format!("{events}&cursor=two"), &boss).await;
    assert_eq!(status, 400, "{body}");

    // Seven more chats.
    for i in 0..7 {
        let (_, vtoken) = server.visitor(&shop).await;
        let mut v = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
        v.send(json!({"type": "send", "client_id": "m", "body": format!("chat {i}")})).await;
        v.wait_for(|f| f["type"] == "ack").await;
    }
    // Without a cursor or a limit: the whole list, as before; no next page.
    let (status, next, all) = get(&server, "/api/v1/conversations", &boss).await;
    assert_eq!((status, next), (200, None));
    let all: Vec<String> = all.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(all.len(), 8);
    let (paged, pages) = every_page(&server, "/api/v1/conversations?limit=3", &boss, "id").await;
    assert_eq!((paged, pages), (all.clone(), 3), "three pages, each chat once, newest first");
    let (paged, _) = every_page(&server, "/api/v1/conversations?limit=2&status=queued", &boss, "id").await;
    assert_eq!(paged, all);
    let (_, _, empty) = get(&server, "/api/v1/conversations?limit=2&status=closed", &boss).await;
    assert_eq!(empty, json!([]));

    // A time range (`from` inclusive, `to` exclusive, Unix ms), paged too.
    let (_, _, listed) = get(&server, "/api/v1/conversations", &boss).await;
    let started: Vec<(String, i64)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap().to_owned(), c["created_at"].as_i64().unwrap()))
        .collect();
    let (from, to) = (started[5].1, started[1].1);
    let within: Vec<String> =
        started.iter().filter(|(_, at)| (from..to).contains(at)).map(|(id, _)| id.clone()).collect();
    assert!(!within.is_empty());
    let range = format!("/api/v1/conversations?limit=2&from={from}&to={to}");
    let (paged, _) = every_page(&server, &range, &boss, "id").await;
    assert_eq!(paged, within, "the chats started in [from, to), newest first");
    for bad in [format!("from={to}&to={from}"), format!("from={to}&to={to}"), "from=yesterday".to_owned()] {
        let (status, _, body) = get(&server, &format!("/api/v1/conversations?{bad}"), &boss).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }

    // The audit log: entries made within the same millisecond page apart
    // without loss (the cursor holds the id, not only the time).
    for i in 0..9 {
        let (status, _) = server.post("/api/v1/admin/groups", Some(&boss), json!({"name": format!("G{i}")})).await;
        assert_eq!(status, 201);
    }
    let (_, next, log) = get(&server, "/api/v1/admin/audit", &boss).await;
    assert_eq!(next, None);
    let log: Vec<String> = log.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(log.len(), 9);
    let (paged, pages) = every_page(&server, "/api/v1/admin/audit?limit=2", &boss, "id").await;
    assert_eq!((paged, pages), (log.clone(), 5));
    let (status, _, body) = get(&server, "/api/v1/admin/audit?before=1&cursor=1_x", &boss).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{body}");
    let (_, _, old) = get(&server, "/api/v1/admin/audit?before=1", &boss).await;
    assert_eq!(old, json!([]), "before (ms) still pages back by time");

    // A cursor this server never gave: refused, never read as the start.
    for path in ["/api/v1/conversations", "/api/v1/admin/audit", "/api/v1/admin/deliveries", "/api/v1/search"] {
        for bad in ["", "x", "12", "x_y", "12_"] {
            let (status, _, body) = get(&server, &format!("{path}?cursor={bad}"), &boss).await;
            assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{path} {bad:?}: {body}");
        }
    }

    // Another site's admin, handed this site's cursor, sees only their own.
    let other = server.new_site("Other").await;
    server.person(&other, "boss@other.example", "Other boss", Role::Admin).await;
    let (stranger, _) = server.login("boss@other.example", "password123").await;
    let (_, cursor, _) = get(&server, "/api/v1/conversations?limit=1", &boss).await;
    let (status, _, theirs) =
        get(&server, &format!("/api/v1/conversations?cursor={}", urlencoding(&cursor.unwrap())), &stranger).await;
    assert_eq!((status, theirs), (200, json!([])));
    let (_, cursor, _) = get(&server, "/api/v1/admin/audit?limit=1", &boss).await;
    let (_, _, theirs) =
        get(&server, &format!("/api/v1/admin/audit?cursor={}", urlencoding(&cursor.unwrap())), &stranger).await;
    assert_eq!(theirs, json!([]));
}

/// The outbox's deliveries and one endpoint's log, a page at a time.
async fn deliveries_page_by_cursor(server: TestServer) {
    let shop = server.site().await;
    server.person(&shop, "boss@shop.example", "Boss", Role::Admin).await;
    let (boss, _) = server.login("boss@shop.example", "password123").await;
    // Nobody listens: the deliveries stay queued.
    let url = format!("http://127.0.0.1:{}/hooks", crate::outbox::free_port());
    let made = json!({"name": "CRM", "url": url, "events": ["message.created"]});
    let (status, endpoint) = server.post("/api/v1/admin/webhooks", Some(&boss), made).await;
    assert_eq!(status, 201, "{endpoint}");
    let id = endpoint["id"].as_str().unwrap();
    let (_, vtoken) = server.visitor(&shop).await;
    let mut v = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    for i in 0..5 {
        v.send(json!({"type": "send", "client_id": format!("m{i}"), "body": "x"})).await;
        v.wait_for(|f| f["type"] == "ack" && f["client_id"] == format!("m{i}").as_str()).await;
    }
    let (_, next, all) = get(&server, "/api/v1/admin/deliveries", &boss).await;
    assert_eq!(next, None);
    let all: Vec<String> = all.as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(all.len(), 5, "one message.created each");
    let (paged, pages) = every_page(&server, "/api/v1/admin/deliveries?limit=2", &boss, "id").await;
    assert_eq!((paged, pages), (all.clone(), 3));
    let log = format!("/api/v1/admin/webhooks/{id}/deliveries?limit=4");
    let (paged, pages) = every_page(&server, &log, &boss, "id").await;
    assert_eq!((paged, pages), (all, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_by_cursor_on_sqlite() {
    lists_page_by_cursor(TestServer::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_by_cursor_on_postgres() {
    let db = TestDb::create().await;
    let server = on_postgres(&db, no_tuning).await;
    lists_page_by_cursor(server).await;
}

fn hooks_wait(c: &mut holdfast_server::config::Config) {
    c.status.allow_private_webhooks = true;
    // Attempts wait long enough for the list to be read page by page.
    c.outbox.retry_min = std::time::Duration::from_secs(60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_page_by_cursor_on_sqlite() {
    deliveries_page_by_cursor(TestServer::start_with(hooks_wait).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_page_by_cursor_on_postgres() {
    let db = TestDb::create().await;
    let server = on_postgres(&db, hooks_wait).await;
    deliveries_page_by_cursor(server).await;
}

/// Missed chats and bans, a page at a time.
async fn missed_chats_and_bans_page_by_cursor(server: TestServer) {
    let shop = server.site().await;
    server.person(&shop, "boss@shop.example", "Boss", Role::Admin).await;
    let (boss, _) = server.login("boss@shop.example", "password123").await;
    let mut visitors = Vec::new();
    for i in 0..5 {
        let (visitor_id, vtoken) = server.visitor(&shop).await;
        let mut v = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
        v.send(json!({"type": "send", "client_id": "m", "body": format!("anyone? {i}")})).await;
        v.wait_for(|f| f["type"] == "ack").await;
        visitors.push((visitor_id, v));
    }
    // Nobody answers: every chat waits out the limit and is missed.
    let started = std::time::Instant::now();
    let missed = loop {
        let (_, next, list) = get(&server, "/api/v1/conversations?status=missed", &boss).await;
        if list.as_array().is_some_and(|l| l.len() == 5) {
            assert_eq!(next, None);
            break list;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{list}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let missed: Vec<String> = missed.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect();
    let (paged, pages) = every_page(&server, "/api/v1/conversations?status=missed&limit=2", &boss, "id").await;
    assert_eq!((paged, pages), (missed, 3));
    let (status, _, body) = get(&server, "/api/v1/conversations?status=missed&cursor=nope", &boss).await;
    assert_eq!(status, 400, "{body}");

    for (visitor_id, _) in &visitors {
        let ban = json!({"visitor_id": visitor_id, "reason": "spam"});
        let (status, body) = server.post("/api/v1/bans", Some(&boss), ban).await;
        assert_eq!(status, 201, "{body}");
    }
    let (_, next, all) = get(&server, "/api/v1/admin/bans", &boss).await;
    assert_eq!(next, None);
    let all: Vec<String> = all.as_array().unwrap().iter().map(|b| b["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(all.len(), 5);
    let (paged, pages) = every_page(&server, "/api/v1/admin/bans?limit=2", &boss, "id").await;
    assert_eq!((paged, pages), (all, 3));
    let other = server.new_site("Other").await;
    server.person(&other, "boss@other.example", "Other boss", Role::Admin).await;
    let (stranger, _) = server.login("boss@other.example", "password123").await;
    let (_, cursor, _) = get(&server, "/api/v1/admin/bans?limit=1", &boss).await;
    let (_, _, theirs) =
        get(&server, &format!("/api/v1/admin/bans?cursor={}", urlencoding(&cursor.unwrap())), &stranger).await;
    assert_eq!(theirs, json!([]));
}

fn quick_misses(c: &mut holdfast_server::config::Config) {
    c.outbox.missed_tick = std::time::Duration::from_millis(100);
    c.outbox.missed_minute = std::time::Duration::from_millis(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_chats_and_bans_page_by_cursor_on_sqlite() {
    missed_chats_and_bans_page_by_cursor(TestServer::start_with(quick_misses).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_chats_and_bans_page_by_cursor_on_postgres() {
    let db = TestDb::create().await;
    let server = on_postgres(&db, quick_misses).await;
    missed_chats_and_bans_page_by_cursor(server).await;
}

fn no_tuning(_: &mut holdfast_server::config::Config) {}

/// A server on the PostgreSQL database `db`, tuned by `tune`.
async fn on_postgres(db: &TestDb, tune: fn(&mut holdfast_server::config::Config)) -> TestServer {
    TestServer::start_with(|c| {
        tune(c);
        c.database_url = Some(db.url.clone());
        c.database_max_connections = 6;
    })
    .await
}
