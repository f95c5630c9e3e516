//! Missed chats through the real server, on SQLite and on PostgreSQL: a
//! visitor who waits out the site's limit, or closes the chat before an
//! agent replies, makes it missed — listed by the API, announced to the
//! consoles, and emailed (through the outbox, to a real SMTP server) to
//! the site's admins, hostile input inert. An answered chat is not missed,
//! and another site's agents see none of it. (Minutes are shortened to
//! half a second here: `OutboxConfig::missed_minute`.)

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use holdfast_server::config::Config;
use holdfast_server::store::VisitorUpdate;
use serde_json::{Value, json};

use crate::outbox::{SmtpServer, admin, free_port, header, relay};
use crate::services::TestDb;
use crate::support::{Client, TestServer};

const HOSTILE_NAME: &str = "<b>Eve</b>\r\nBcc: x@evil.example";
const HOSTILE_BODY: &str = "<script>alert(1)</script> is anyone there?";

fn tune(c: &mut Config, smtp: u16) {
    c.status.smtp = Some(relay(smtp));
    c.outbox.missed_tick = Duration::from_millis(100);
    c.outbox.missed_minute = Duration::from_millis(500);
}

/// Poll `GET /api/v1/conversations?status=missed` until `done` holds.
async fn wait_missed(server: &TestServer, token: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let (status, list) = server.get("/api/v1/conversations?status=missed", Some(token)).await;
        assert_eq!(status, 200, "{list}");
        let list = list.as_array().unwrap().clone();
        if done(&list) {
            return list;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "missed chats never got there: {list:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn missed_chats_are_marked_listed_and_mailed(server: TestServer, smtp: &mut SmtpServer) {
    let site = server.site().await;
    admin(server.state.store.as_ref(), &site, "boss@shop.example").await;
    server.agent(&site, "ann@shop.example", 5).await;
    let other = server.new_site("Other").await;
    server.agent(&other, "olaf@other.example", 5).await;

    // Ann's console is connected but away: nobody takes the chat.
    let (ann, _) = server.login("ann@shop.example", "password123").await;
    let mut console = Client::connect(&server, "/api/v1/agent/socket", &ann, HashMap::new()).await;
    console.send(json!({"type": "set_availability", "availability": "away"})).await;
    console.wait_for(|f| f["type"] == "availability" && f["agent"]["availability"] == "away").await;

    // 1. A visitor writes and waits out the limit (2 "minutes").
    let (eve, vtoken) = server.visitor(&site).await;
    let update =
        VisitorUpdate { name: Some(HOSTILE_NAME.into()), email: Some("eve@example.com".into()), ..Default::default() };
    server.state.store.update_visitor(&eve, update).await.unwrap();
    let mut visitor = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    let asked = Instant::now();
    let ack = visitor.say(None, "m1", HOSTILE_BODY).await;
    let conv = ack["conv"].as_str().unwrap().to_owned();

    let frame = console.wait_for(|f| f["type"] == "missed_chat").await;
    assert!(asked.elapsed() >= Duration::from_millis(1000), "not before the limit: {:?}", asked.elapsed());
    assert_eq!(frame["conversation"]["id"], conv.as_str());
    assert_eq!(frame["conversation"]["missed"]["reason"], "waited");
    let list = wait_missed(&server, &ann, |l| l.len() == 1).await;
    assert_eq!(list[0]["id"], conv.as_str());
    assert_eq!(list[0]["status"], "queued", "a missed chat still waiting stays in the queue");
    assert!(list[0]["missed"]["waited_ms"].as_i64().unwrap() >= 1000, "{list:#?}");

    let mail = smtp.receive(2, Duration::from_secs(15)).await;
    let to: HashSet<&str> = mail.iter().map(|m| m["rcpt_tos"][0].as_str().unwrap()).collect();
    assert_eq!(to, HashSet::from(["admin@holdfast.local", "boss@shop.example"]), "the site's admins");
    for m in &mail {
        assert_eq!(m["content_type"], "multipart/alternative");
        assert!(header(m, "Bcc").is_empty(), "no injected header: {m:#}");
        assert_eq!(header(m, "Reply-To"), ["eve@example.com"]);
        let subject = &header(m, "Subject")[0];
        assert!(
            subject.starts_with("Missed chat from <b>Eve</b> Bcc:") && subject.ends_with("on Demo site"),
            "{subject}"
        );
        let text = m["text"].as_str().unwrap();
        assert!(
            text.contains(HOSTILE_BODY) && text.contains("has waited ") && text.contains(" on Demo site for an agent"),
            "{text}"
        );
        assert!(text.contains(&format!("/console#conversation={conv}")), "{text}");
        let html = m["html"].as_str().unwrap();
        assert!(!html.contains("<script>") && !html.contains("<b>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;"), "{html}");
    }

    // The limit is the site's: 0 and 61 minutes are refused, 60 is kept.
    let (boss, _) = server.login("boss@shop.example", "password123").await;
    let (_, site_view) = server.get("/api/v1/admin/site", Some(&boss)).await;
    assert_eq!(site_view["settings"]["missed_chat_minutes"], 2, "the default");
    let mut settings = site_view["settings"].clone();
    for bad in [0, 61] {
        settings["missed_chat_minutes"] = json!(bad);
        let res = send_put(&server, "/api/v1/admin/site/settings", &boss, &settings).await;
        assert_eq!(res.0, 400, "{bad}: {}", res.1);
        assert!(res.1["error"]["message"].as_str().unwrap().contains("missed_chat_minutes"), "{}", res.1);
    }
    settings["missed_chat_minutes"] = json!(60);
    assert_eq!(send_put(&server, "/api/v1/admin/site/settings", &boss, &settings).await.0, 200);

    // 2. A chat an agent answers is not missed; 3. one whose visitor
    // leaves before a reply is, at once (60 "minutes" are 30 s here).
    console.send(json!({"type": "set_availability", "availability": "online"})).await;
    let (_, v2) = server.visitor(&site).await;
    let mut answered = Client::connect(&server, "/api/v1/visitor/socket", &v2, HashMap::new()).await;
    let ack = answered.say(None, "a1", "quick question").await;
    let answered_conv = ack["conv"].as_str().unwrap().to_owned();
    console.wait_for(|f| f["type"] == "assigned" && f["conv"] == answered_conv.as_str()).await;
    assert_eq!(console.say(Some(&answered_conv), "r1", "Hello!").await["type"], "ack");
    console.send(json!({"type": "set_availability", "availability": "away"})).await;
    console.wait_for(|f| f["type"] == "availability" && f["agent"]["availability"] == "away").await;

    let (_, v3) = server.visitor(&site).await;
    let mut leaving = Client::connect(&server, "/api/v1/visitor/socket", &v3, HashMap::new()).await;
    let ack = leaving.say(None, "l1", "never mind").await;
    let left_conv = ack["conv"].as_str().unwrap().to_owned();
    leaving.send(json!({"type": "close", "conv": left_conv})).await;
    let started = Instant::now();
    let list = wait_missed(&server, &ann, |l| l.len() == 2).await;
    assert!(started.elapsed() < Duration::from_secs(10), "at once, not after the limit");
    assert_eq!(list[0]["id"], left_conv.as_str(), "most recently missed first: {list:#?}");
    assert_eq!((list[0]["missed"]["reason"].as_str(), list[0]["status"].as_str()), (Some("left"), Some("closed")));
    assert!(list.iter().all(|c| c["id"] != answered_conv.as_str()), "the answered chat is not missed");
    let mail = smtp.receive(2, Duration::from_secs(15)).await;
    for m in &mail {
        let text = m["text"].as_str().unwrap();
        assert!(text.contains("left a chat on Demo site after") && text.contains("never mind"), "{text}");
        assert!(header(m, "Reply-To").is_empty(), "no address given, no Reply-To");
    }

    // Another site's agents see none of it; bad filters are refused.
    let (olaf, _) = server.login("olaf@other.example", "password123").await;
    let (status, theirs) = server.get("/api/v1/conversations?status=missed", Some(&olaf)).await;
    assert_eq!((status, theirs), (200, json!([])));
    let (status, body) = server.get("/api/v1/conversations?status=missed&mine=true", Some(&ann)).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = server.get("/api/v1/conversations?status=lost", Some(&ann)).await;
    assert_eq!(status, 400);
    // Each missed chat was mailed once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(smtp.mail.try_recv().is_err(), "no email twice");
    console.close().await;
    visitor.close().await;
    answered.close().await;
    leaving.close().await;
}

async fn send_put(server: &TestServer, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let res = server.http.put(format!("{}{path}", server.base)).bearer_auth(token).json(body).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_chats_on_sqlite() {
    let port = free_port();
    let mut smtp = SmtpServer::start(port);
    let server = TestServer::start_with(|c| tune(c, port)).await;
    missed_chats_are_marked_listed_and_mailed(server, &mut smtp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_chats_on_postgres() {
    let db = TestDb::create().await;
    let port = free_port();
    let mut smtp = SmtpServer::start(port);
    let server = TestServer::start_with(|c| {
        tune(c, port);
        c.database_url = Some(db.url.clone());
        c.database_max_connections = 6;
    })
    .await;
    missed_chats_are_marked_listed_and_mailed(server, &mut smtp).await;
}

/// On PostgreSQL an open chat's row says when an agent first wrote in it
/// (`postgres/0042_first_reply_on_open_chats.sql`), and the scan for
/// missed chats passes over it without reading its events; a row without
/// it (written by a node of an earlier release) is still looked for in its
/// events, so an answered chat is never a candidate either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_an_open_chat_says_when_an_agent_first_wrote() {
    let db = TestDb::create().await;
    let server = TestServer::start_with(|c| {
        c.database_url = Some(db.url.clone());
        c.database_max_connections = 6;
    })
    .await;
    let raw = sqlx::PgPool::connect(&db.url).await.unwrap();
    let site = server.site().await;
    server.agent(&site, "ann@shop.example", 5).await;
    let (mut console, _) = server.online_agent("ann@shop.example").await;
    let (_, token) = server.visitor(&site).await;
    let mut visitor = Client::connect(&server, "/api/v1/visitor/socket", &token, HashMap::new()).await;
    let conv = visitor.say(None, "m1", "hello?").await["conv"].as_str().unwrap().to_owned();
    console.wait_for(|f| f["type"] == "assigned" && f["conv"] == conv.as_str()).await;

    let since = holdfast_server::store::now_ms() - 3_600_000;
    let candidates = || async {
        let waits = server.state.store.missed_candidates(since, 100).await.unwrap();
        waits.into_iter().map(|w| w.conversation.id).collect::<Vec<_>>()
    };
    let row = || async {
        sqlx::query_as::<_, (Option<i64>, Option<i64>)>(
            "SELECT first_agent_at, messages FROM conversations WHERE id = $1",
        )
        .bind(&conv)
        .fetch_one(&raw)
        .await
        .unwrap()
    };
    assert_eq!(candidates().await, std::slice::from_ref(&conv), "unanswered: a candidate");
    assert_eq!(row().await, (None, None));

    assert_eq!(console.say(Some(&conv), "r1", "Hi!").await["type"], "ack");
    assert_eq!(console.say(Some(&conv), "r2", "How can I help?").await["type"], "ack");
    let (first_reply,): (i64,) = sqlx::query_as(
        "SELECT min(created_at) FROM events WHERE conversation_id = $1 AND kind = 'message' AND author_kind = 'agent'",
    )
    .bind(&conv)
    .fetch_one(&raw)
    .await
    .unwrap();
    assert_eq!(row().await, (Some(first_reply), None), "the first reply's time, and still no facts for reports");
    assert!(candidates().await.is_empty(), "answered: not a candidate");

    sqlx::query("UPDATE conversations SET first_agent_at = NULL WHERE id = $1")
        .bind(&conv)
        .execute(&raw)
        .await
        .unwrap();
    assert!(candidates().await.is_empty(), "answered, though the row does not say so: not a candidate");
    raw.close().await;
    console.close().await;
    visitor.close().await;
    server.stop().await;
}
