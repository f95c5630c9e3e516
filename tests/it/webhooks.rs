//! Chat webhooks through the outbox, received by a real HTTP receiver that
//! verifies every delivery with the Python `standardwebhooks` package (the
//! specification's own library, which `scripts/test` installs): every
//! event arrives signed, in order per conversation, none missing, after
//! the receiver was down for a while and after a kill -9 of Holdfast in
//! the middle of deliveries; private addresses are refused unless the
//! operator allows them; admins of one site see none of another's
//! endpoints; an endpoint failing for days is disabled and its admins told.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use holdfast_server::store::webhooks::{EVENTS, Endpoint};
use holdfast_server::store::{Role, Site, new_id, now_ms};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::outbox::{SmtpServer, free_port, python_json_lines, relay};
use crate::services::TestDb;
use crate::support::{Client, TestServer};
use crate::support::{Proc, spawn_serve};

/// A webhook receiver: every request is verified with `standardwebhooks`
/// and printed as a JSON line; a bad signature is answered 400. With a
/// third argument it waits that many seconds before answering (a slow
/// receiver).
const RECEIVER: &str = r#"
import json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from standardwebhooks.webhooks import Webhook

hook = Webhook(sys.argv[2])
lock = threading.Lock()
delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            payload, error = hook.verify(body, headers), None
        except Exception as e:
            payload, error = None, repr(e)
        if delay:
            time.sleep(delay)
        line = json.dumps({"id": headers.get("webhook-id"), "payload": payload, "error": error,
                           "user_agent": headers.get("user-agent")})
        with lock:  # one whole line per request, whatever the threads do
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        self.send_response(400 if error else 204)
        self.end_headers()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print(json.dumps({"ready": True}), flush=True)
server.serve_forever()
"#;

pub(crate) struct Receiver {
    /// Killed when the receiver is dropped.
    _child: Proc,
    pub(crate) hooks: mpsc::UnboundedReceiver<Value>,
}

impl Receiver {
    pub(crate) fn start(port: u16, secret: &str, delay_s: f64) -> Receiver {
        let args = [port.to_string(), secret.to_owned(), delay_s.to_string()];
        let (child, hooks) = python_json_lines("standardwebhooks", RECEIVER, &args);
        Receiver { _child: Proc(child), hooks }
    }

    /// Deliveries until `done` holds of all received, failing after `within`.
    pub(crate) async fn until(&mut self, within: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        while !done(&got) {
            match tokio::time::timeout_at(deadline, self.hooks.recv()).await {
                Ok(Some(h)) => got.push(h),
                _ => panic!("the deliveries never got there; received {}: {got:#?}", got.len()),
            }
        }
        got
    }
}

/// Every delivery verified, as (conversation, type, seq, webhook-id).
fn verified(hooks: &[Value]) -> Vec<(String, String, i64, String)> {
    hooks
        .iter()
        .map(|h| {
            assert!(h["error"].is_null(), "a delivery failed verification: {h:#}");
            let p = &h["payload"];
            let conv = p["data"]["conversation"]["id"].as_str().unwrap().to_owned();
            let seq = p["data"]["event"]["seq"].as_i64().unwrap_or(-1);
            (conv, p["type"].as_str().unwrap().to_owned(), seq, h["id"].as_str().unwrap().to_owned())
        })
        .collect()
}

const ALL: &[&str] = EVENTS;

async fn admin_of(server: &TestServer, site: &Site, email: &str) -> String {
    server.person(site, email, "Boss", Role::Admin).await;
    server.login(email, "password123").await.0
}

async fn endpoint(server: &TestServer, admin: &str, name: &str, url: &str, events: &[&str]) -> (String, String) {
    let (status, made) =
        server.post("/api/v1/admin/webhooks", Some(admin), json!({"name": name, "url": url, "events": events})).await;
    assert_eq!(status, 201, "{made}");
    (made["id"].as_str().unwrap().to_owned(), made["secret"].as_str().unwrap().to_owned())
}

/// A chat from start to rating, and an offline message; returns the
/// chat's and the offline message's conversation ids.
async fn a_day_of_chat(server: &TestServer, site: &Site) -> (String, String) {
    server.agent(site, "agent@shop.example", 5).await;
    let (mut agent, _) = server.online_agent("agent@shop.example").await;
    let (_, vtoken) = server.visitor(site).await;
    let mut visitor = Client::connect(server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    visitor.send(json!({"type": "send", "client_id": "v1", "body": "one"})).await;
    let conv = visitor.wait_for(|f| f["type"] == "ack").await["conv"].as_str().unwrap().to_owned();
    agent.wait_for(|f| f["type"] == "assigned" && f["conv"] == conv.as_str()).await;
    visitor.send(json!({"type": "send", "client_id": "v2", "body": "two"})).await;
    visitor.wait_for(|f| f["type"] == "ack").await;
    agent.send(json!({"type": "send", "conv": conv, "client_id": "a1", "body": "three"})).await;
    agent.wait_for(|f| f["type"] == "ack").await;
    agent.send(json!({"type": "close", "conv": conv})).await;
    visitor.wait_for(|f| f["type"] == "closed").await;
    visitor.send(json!({"type": "rate", "conv": conv, "client_id": "r1", "rating": "good"})).await;
    visitor.wait_for(|f| f["type"] == "ack" && f["client_id"] == "r1").await;

    let (_, other) = server.visitor(site).await;
    let mut offline = Client::connect(server, "/api/v1/visitor/socket", &other, HashMap::new()).await;
    offline.send(json!({"type": "leave_message", "client_id": "o1", "body": "call me", "email": "a@b.example"})).await;
    let off = offline.wait_for(|f| f["type"] == "ack").await["conv"].as_str().unwrap().to_owned();
    (conv, off)
}

/// The chat's webhooks in the order they must arrive.
fn chat_story() -> Vec<(&'static str, i64)> {
    vec![
        ("conversation.created", 1),
        ("message.created", 1),
        ("conversation.assigned", 2),
        ("message.created", 3),
        ("message.created", 4),
        ("conversation.closed", 5),
        ("conversation.rated", 6),
    ]
}

async fn an_outage_loses_nothing_and_keeps_order(server: TestServer) {
    let site = server.site().await;
    let boss = admin_of(&server, &site, "boss@shop.example").await;
    let port = free_port(); // nobody listens yet: the receiver is down
    let url = format!("http://127.0.0.1:{port}/hooks");
    let (id, secret) = endpoint(&server, &boss, "CRM", &url, ALL).await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    let (_, only_closed) = endpoint(&server, &boss, "Closed only", &url, &["conversation.closed"]).await;
    assert_ne!(only_closed, secret, "each endpoint has a secret of its own");

    let (conv, off) = a_day_of_chat(&server, &site).await;

    // Down: every delivery is tried, fails, and waits its turn.
    let started = Instant::now();
    loop {
        let (_, log) = server.get(&format!("/api/v1/admin/webhooks/{id}/deliveries"), Some(&boss)).await;
        let log = log.as_array().unwrap().clone();
        if log.len() == 9 && log.iter().any(|d| d["attempts"].as_i64() >= Some(2)) {
            assert!(log.iter().all(|d| d["status"] == "queued" && d["kind"] == "webhook"), "{log:#?}");
            let tried = log.iter().find(|d| d["attempts"].as_i64() >= Some(1)).unwrap();
            assert!(tried["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{tried:#}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{log:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Back: everything arrives, verified, in order per conversation.
    let mut receiver = Receiver::start(port, &secret, 0.0);
    let arrived = tokio::time::timeout(
        Duration::from_secs(30),
        receiver.until(Duration::from_secs(31), |got| {
            got.iter().filter(|h| h["payload"]["data"]["conversation"]["id"].is_string()).count() >= 9
        }),
    )
    .await;
    let Ok(hooks) = arrived else {
        let (_, log) = server.get(&format!("/api/v1/admin/webhooks/{id}/deliveries"), Some(&boss)).await;
        panic!("not every delivery arrived; the log: {log:#}");
    };
    // The other endpoint's signature is another: the receiver (with this
    // endpoint's secret) refuses its one delivery, which stays queued.
    let (ours, refused): (Vec<Value>, Vec<Value>) = hooks.into_iter().partition(|h| h["error"].is_null());
    assert!(refused.iter().all(|h| h["error"].as_str().unwrap().contains("signature")), "{refused:#?}");
    let hooks = ours;
    let got = verified(&hooks);
    let chat: Vec<(&str, i64)> = got.iter().filter(|g| g.0 == conv).map(|g| (g.1.as_str(), g.2)).collect();
    assert_eq!(chat, chat_story(), "every event of the chat, in order");
    let offline: Vec<&str> = got.iter().filter(|g| g.0 == off).map(|g| g.1.as_str()).collect();
    assert_eq!(offline, ["offline_message.created", "message.created"], "a message is a message, offline too");
    let ids: HashSet<&str> = got.iter().map(|g| g.3.as_str()).collect();
    assert_eq!(ids.len(), got.len(), "one webhook-id each");
    let message = hooks.iter().find(|h| h["payload"]["data"]["event"]["client_id"] == "v1").unwrap();
    assert_eq!(message["payload"]["data"]["event"]["body"], "one", "{message:#}");
    assert_eq!(message["payload"]["data"]["site_id"], site.id.as_str());
    assert!(message["payload"]["timestamp"].as_str().unwrap().ends_with('Z'), "{message:#}");
    assert_eq!(message["user_agent"], "Holdfast-Webhooks/1");

    // The log shows them sent; sending one again delivers it again, with
    // the same webhook-id (at-least-once, de-duplicated by the receiver).
    let started = Instant::now();
    let log = loop {
        // The last outcome is recorded once the receiver has answered.
        let (_, log) = server.get(&format!("/api/v1/admin/webhooks/{id}/deliveries"), Some(&boss)).await;
        let log = log.as_array().unwrap().clone();
        if log.len() == 9 && log.iter().all(|d| d["status"] == "sent") {
            break log;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{log:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let closed = log.iter().find(|d| d["template"] == "conversation.closed").unwrap();
    assert_eq!(closed["conversation_id"], conv.as_str(), "{closed:#}");
    let did = closed["id"].as_str().unwrap();
    let (status, _) = server.post(&format!("/api/v1/admin/deliveries/{did}/retry"), Some(&boss), json!({})).await;
    assert_eq!(status, 202);
    let again = receiver.until(Duration::from_secs(20), |got| got.iter().any(|h| h["id"] == did)).await;
    let again = again.iter().find(|h| h["id"] == did).unwrap();
    assert!(again["error"].is_null() && again["payload"]["type"] == "conversation.closed", "{again:#}");
}

/// A server tuned by `tune` on the PostgreSQL database `db`.
async fn tuned_on(db: &TestDb) -> TestServer {
    TestServer::start_with(|c| {
        tune(c);
        c.database_url = Some(db.url.clone());
        c.database_max_connections = 6;
    })
    .await
}

fn tune(c: &mut holdfast_server::config::Config) {
    c.status.allow_private_webhooks = true;
    c.outbox.retry_min = Duration::from_millis(300);
    c.outbox.retry_max = Duration::from_millis(600);
    c.outbox.tick = Duration::from_millis(100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_nothing_and_keeps_order_on_sqlite() {
    an_outage_loses_nothing_and_keeps_order(TestServer::start_with(tune).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_nothing_and_keeps_order_on_postgres() {
    let db = TestDb::create().await;
    let server = tuned_on(&db).await;
    an_outage_loses_nothing_and_keeps_order(server).await;
}

#[tokio::test]
async fn private_addresses_are_refused_unless_allowed_and_sites_see_only_their_own() {
    let server = TestServer::start().await;
    let site = server.site().await;
    let boss = admin_of(&server, &site, "boss@shop.example").await;
    for url in ["http://127.0.0.1:9/x", "http://10.0.0.1/x", "http://[::1]/x", "http://169.254.169.254/latest"] {
        let (status, body) =
            server.post("/api/v1/admin/webhooks", Some(&boss), json!({"name": "x", "url": url, "events": ALL})).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{url}: {body}");
    }
    for (body, why) in [
        (json!({"name": "x", "url": "ftp://example.com/", "events": ALL}), "scheme"),
        (json!({"name": "x", "url": "https://u:p@example.com/", "events": ALL}), "credentials"),
        (json!({"name": "x", "url": "https://example.com/", "events": []}), "no event"),
        (json!({"name": "x", "url": "https://example.com/", "events": ["conversation.deleted"]}), "unknown event"),
        (json!({"name": "", "url": "https://example.com/", "events": ALL}), "no name"),
        (json!({"name": "x", "url": "https://example.com/", "events": ALL, "secret": "mine"}), "unknown field"),
    ] {
        let (status, answer) = server.post("/api/v1/admin/webhooks", Some(&boss), body).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("bad_request")), "{why}: {answer}");
    }
    let (id, _) = endpoint(&server, &boss, "CRM", "https://crm.example/hooks", ALL).await;
    let (_, list) = server.get("/api/v1/admin/webhooks", Some(&boss)).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("secret").is_none(), "the secret is shown once: {list}");

    // Another site's admin sees, changes and reads the log of none of them.
    let other = server.new_site("Other").await;
    let stranger = admin_of(&server, &other, "boss@other.example").await;
    let (status, theirs) = server.get("/api/v1/admin/webhooks", Some(&stranger)).await;
    assert_eq!((status, theirs), (200, json!([])));
    let res = server
        .http
        .patch(format!("{}/api/v1/admin/webhooks/{id}", server.base))
        .bearer_auth(&stranger)
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
    let (status, _) = server.get(&format!("/api/v1/admin/webhooks/{id}/deliveries"), Some(&stranger)).await;
    assert_eq!(status, 404);
    server.agent(&site, "agent@shop.example", 5).await;
    let (agent, _) = server.login("agent@shop.example", "password123").await;
    let (status, _) = server.get("/api/v1/admin/webhooks", Some(&agent)).await;
    assert_eq!(status, 403, "agents are not admins");

    // The admin disables it by hand, and enables it again; audited.
    let res = server
        .http
        .patch(format!("{}/api/v1/admin/webhooks/{id}", server.base))
        .bearer_auth(&boss)
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    let after: Value = res.json().await.unwrap();
    assert_eq!(after["enabled"], false, "{after}");
    let (_, log) = server.get("/api/v1/admin/audit", Some(&boss)).await;
    let actions: Vec<&str> = log.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"webhook.created") && actions.contains(&"webhook.changed"), "{actions:?}");
    assert!(!log.to_string().contains("whsec_"), "no secret in the audit log");

    // Without the operator's opt-in, a name that resolves to the machine
    // itself is refused at delivery by the guarded resolver, not only a
    // literal when written (this one is stored as an older version would have).
    let port = free_port();
    let mut receiver = Receiver::start(port, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 0.0);
    let me = server.state.store.agent_by_email("boss@shop.example").await.unwrap().unwrap();
    let sneaky = Endpoint {
        id: new_id(),
        site_id: site.id.clone(),
        name: "Sneaky".into(),
        url: format!("http://localhost:{port}/hooks"),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        events: vec!["offline_message.created".into()],
        enabled: true,
        failing_since: None,
        disabled_at: None,
        disabled_reason: None,
        created_by: me.id,
        created_at: now_ms(),
    };
    let id = sneaky.id.clone();
    server.state.store.create_webhook(sneaky).await.unwrap();
    let (_, vtoken) = server.visitor(&site).await;
    let mut v = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    v.send(json!({"type": "leave_message", "client_id": "o1", "body": "hi"})).await;
    v.wait_for(|f| f["type"] == "ack").await;
    let started = Instant::now();
    loop {
        let (_, log) = server.get(&format!("/api/v1/admin/webhooks/{id}/deliveries"), Some(&boss)).await;
        if let Some(err) = log[0]["last_error"].as_str() {
            assert!(log[0]["status"] == "queued" && !err.is_empty(), "{log:#}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{log:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(receiver.hooks.try_recv().is_err(), "nothing reached the machine itself");
}

#[tokio::test]
async fn an_endpoint_failing_for_days_is_disabled_and_its_admins_told() {
    let smtp_port = free_port();
    let mut smtp = SmtpServer::start(smtp_port);
    let server = TestServer::start_with(|c| {
        tune(c);
        c.status.smtp = Some(relay(smtp_port));
        c.outbox.webhook_disable_after = Duration::from_secs(2); // "3 days"
    })
    .await;
    let site = server.site().await;
    let boss = admin_of(&server, &site, "boss@shop.example").await;
    let url = format!("http://127.0.0.1:{}/down", free_port());
    let (id, _) = endpoint(&server, &boss, "Dead <CRM>", &url, &["offline_message.created"]).await;
    let (_, vtoken) = server.visitor(&site).await;
    let mut v = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    v.send(json!({"type": "leave_message", "client_id": "o1", "body": "hi"})).await;
    v.wait_for(|f| f["type"] == "ack").await;

    // Two admins: the offline message's two emails, then two warnings.
    let mail = smtp.receive(4, Duration::from_secs(20)).await;
    let warning = mail.iter().find(|m| crate::outbox::header(m, "Subject")[0].starts_with("Webhook endpoint")).unwrap();
    let subject = &crate::outbox::header(warning, "Subject")[0];
    assert!(subject.contains("Dead <CRM>") && subject.contains("disabled"), "{subject}");
    assert!(warning["text"].as_str().unwrap().contains(&url), "{warning:#}");
    assert!(warning["html"].as_str().unwrap().contains("Dead &lt;CRM&gt;"), "{warning:#}");
    let (_, list) = server.get("/api/v1/admin/webhooks", Some(&boss)).await;
    let e = &list[0];
    assert_eq!((e["id"].as_str(), e["enabled"].as_bool()), (Some(id.as_str()), Some(false)), "{list}");
    assert!(e["disabled_reason"].as_str().is_some_and(|r| !r.is_empty()), "{e}");
    // Its waiting delivery is failed, and can be sent again once it works.
    let started = Instant::now();
    loop {
        let (_, log) = server.get(&format!("/api/v1/admin/webhooks/{id}/deliveries"), Some(&boss)).await;
        if log[0]["status"] == "failed" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{log:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ----- kill -9 ----------------------------------------------------------------

fn spawn_holdfast(dir: &std::path::Path) -> (Proc, String) {
    let retry = ["--outbox-retry-min-secs", "1", "--outbox-retry-max-secs", "1"];
    spawn_serve(dir, &[&retry[..], &["--allow-private-webhooks", "--api-token-rate", "100"]].concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_in_the_middle_of_deliveries_loses_none() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let arrange = TestServer::start_in(tmp.path(), |_| {}).await;
    let site = arrange.site().await;
    let maker = arrange.person(&site, "boss@shop.example", "Boss", Role::Admin).await;
    let hook = Endpoint {
        id: new_id(),
        site_id: site.id.clone(),
        name: "CRM".into(),
        url: format!("http://127.0.0.1:{port}/hooks"),
        secret: secret.into(),
        events: vec!["message.created".into()],
        enabled: true,
        failing_since: None,
        disabled_at: None,
        disabled_reason: None,
        created_by: maker.id.clone(),
        created_at: now_ms(),
    };
    arrange.state.store.create_webhook(hook).await.unwrap();
    arrange.stop().await;

    // A slow receiver: a delivery is in flight when the server dies.
    let mut receiver = Receiver::start(port, secret, 0.15);
    let (proc1, base) = spawn_holdfast(tmp.path());
    let mut convs = Vec::new();
    for v in 0..3 {
        let (mut visitor, _) = crate::support::visitor_at(&base, &site.widget_key).await;
        for i in 0..8 {
            visitor.send(json!({"type": "send", "client_id": format!("m{v}-{i}"), "body": format!("{v}/{i}")})).await;
            let ack = visitor.wait_for(|f| f["type"] == "ack").await;
            if i == 0 {
                convs.push(ack["conv"].as_str().unwrap().to_owned());
            }
        }
    }
    // Some arrived, most did not: kill -9 now.
    let before = receiver.until(Duration::from_secs(20), |got| got.len() >= 4).await;
    let mut p = proc1;
    p.0.kill().unwrap();
    p.0.wait().unwrap();
    let (_proc2, _base2) = spawn_holdfast(tmp.path());

    let after = receiver
        .until(Duration::from_secs(60), |got| {
            let seen: HashSet<&str> =
                before.iter().chain(got).filter_map(|h| h["payload"]["data"]["event"]["body"].as_str()).collect();
            seen.len() >= 24
        })
        .await;
    let hooks: Vec<Value> = before.into_iter().chain(after).collect();
    let got = verified(&hooks);
    // At least once, with a stable id: a repeat carries its original id.
    let mut id_of: HashMap<(String, i64), String> = HashMap::new();
    for (conv, kind, seq, id) in &got {
        assert_eq!(kind, "message.created");
        let first = id_of.entry((conv.clone(), *seq)).or_insert_with(|| id.clone());
        assert_eq!(first, id, "a repeat of ({conv}, {seq}) has its first webhook-id");
    }
    for conv in &convs {
        // In order per conversation (a repeat may follow its original).
        let seqs: Vec<i64> = got.iter().filter(|g| &g.0 == conv).map(|g| g.2).collect();
        assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "{conv}: {seqs:?}");
        let distinct: HashSet<i64> = seqs.iter().copied().collect();
        assert_eq!(distinct, (1..=8).collect::<HashSet<i64>>(), "{conv}: every message");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_chat_is_announced_after_its_message() {
    let server = TestServer::start_with(|c| {
        tune(c);
        // A chat is missed 0.2 s after the visitor's first message.
        c.outbox.missed_tick = Duration::from_millis(100);
        c.outbox.missed_minute = Duration::from_millis(100);
    })
    .await;
    let site = server.site().await;
    let boss = admin_of(&server, &site, "boss@shop.example").await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hooks");
    let (_, secret) = endpoint(&server, &boss, "CRM", &url, &["conversation.missed", "message.created"]).await;
    let mut receiver = Receiver::start(port, &secret, 0.0);

    let (_, vtoken) = server.visitor(&site).await;
    let mut visitor = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    visitor.send(json!({"type": "send", "client_id": "v1", "body": "anyone?"})).await;
    let conv = visitor.wait_for(|f| f["type"] == "ack").await["conv"].as_str().unwrap().to_owned();
    let hooks = receiver.until(Duration::from_secs(20), |got| got.len() >= 2).await;
    let types: Vec<&str> = hooks.iter().map(|h| h["payload"]["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["message.created", "conversation.missed"], "{hooks:#?}");
    let missed = &hooks[1]["payload"]["data"];
    assert_eq!(missed["conversation"]["id"], conv.as_str());
    assert_eq!(missed["missed"]["reason"], "waited", "{missed:#}");
    assert!(missed["missed"]["waited_ms"].as_i64().unwrap() >= 200, "{missed:#}");
}

/// A message an integration sends over REST (`POST …/messages`): a
/// `message.created` like any other.
async fn integration_says(server: &TestServer, token: &str, conv: &str, body: &str) {
    let path = format!("/api/v1/conversations/{conv}/messages");
    let (status, sent) = server.post(&path, Some(token), json!({"body": body})).await;
    assert_eq!(status, 201, "{sent}");
}

/// The integration's message with `body`, as one receiver got it.
async fn arrives(receiver: &mut Receiver, body: &str) -> Value {
    let got = receiver
        .until(Duration::from_secs(20), |got| got.iter().any(|h| h["payload"]["data"]["event"]["body"] == body))
        .await;
    got.into_iter().find(|h| h["payload"]["data"]["event"]["body"] == body).unwrap()
}

async fn a_secret_rotates_and_an_endpoint_is_deleted(server: TestServer) {
    let site = server.site().await;
    let boss = admin_of(&server, &site, "boss@shop.example").await;
    let (status, made) =
        server.post("/api/v1/admin/api-tokens", Some(&boss), json!({"name": "Bot", "scopes": ["write"]})).await;
    assert_eq!(status, 201, "{made}");
    let bot = made["secret"].as_str().unwrap().to_owned();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hooks");
    let (id, old) = endpoint(&server, &boss, "CRM", &url, &["message.created"]).await;
    let (_, vtoken) = server.visitor(&site).await;
    let mut visitor = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    visitor.send(json!({"type": "send", "client_id": "v1", "body": "hello"})).await;
    let conv = visitor.wait_for(|f| f["type"] == "ack").await["conv"].as_str().unwrap().to_owned();

    // An integration's REST message reaches the endpoint, signed.
    let mut receiver = Receiver::start(port, &old, 0.0);
    integration_says(&server, &bot, &conv, "first").await;
    let hook = arrives(&mut receiver, "first").await;
    assert!(hook["error"].is_null(), "{hook:#}");
    assert_eq!(hook["payload"]["data"]["event"]["data"]["integration"], "Bot", "{hook:#}");

    // Rotated: a new secret, shown once (a retry under the same key says
    // so and rotates nothing), signs from now on; the old one no more.
    let rotate = format!("{}/api/v1/admin/webhooks/{id}/rotate-secret", server.base);
    let res = server.http.post(&rotate).bearer_auth(&boss).header("idempotency-key", "rot-1").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let rotated: Value = res.json().await.unwrap();
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert!(new.starts_with("whsec_") && new != old, "{rotated}");
    assert_eq!(rotated["id"], id.as_str());
    let res = server.http.post(&rotate).bearer_auth(&boss).header("idempotency-key", "rot-1").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 409);
    let again: Value = res.json().await.unwrap();
    assert!(!again.to_string().contains("whsec_"), "{again}");
    assert!(again["error"]["message"].as_str().unwrap().contains("secret"), "{again}");
    integration_says(&server, &bot, &conv, "second").await;
    // The old secret verifies nothing more.
    let refused = |h: &Value| h["error"].as_str().is_some_and(|e| e.contains("signature"));
    let got = receiver.until(Duration::from_secs(20), |got| got.iter().any(refused)).await;
    assert!(got.iter().all(|h| h["payload"]["data"]["event"]["body"] != "second"), "{got:#?}");
    drop(receiver);
    let mut receiver = Receiver::start(port, &new, 0.0);
    let hook = arrives(&mut receiver, "second").await; // the refused delivery, retried
    assert!(hook["error"].is_null(), "the new secret verifies: {hook:#}");

    // Another site's admin can neither rotate nor delete it.
    let other = server.new_site("Other").await;
    let stranger = admin_of(&server, &other, "boss@other.example").await;
    let (status, _) =
        server.post(&format!("/api/v1/admin/webhooks/{id}/rotate-secret"), Some(&stranger), json!({})).await;
    assert_eq!(status, 404);
    let (status, body) =
        server.call(reqwest::Method::DELETE, &format!("/api/v1/admin/webhooks/{id}"), &stranger, json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");
    let (status, body) =
        server.call(reqwest::Method::DELETE, "/api/v1/admin/webhooks/nonexistent", &boss, json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");

    // Deleted while a delivery waits for a receiver that is down: the
    // delivery ends as failed, and nothing more is queued for it.
    drop(receiver);
    integration_says(&server, &bot, &conv, "third").await;
    let queued = loop {
        let (_, log) = server.get(&format!("/api/v1/admin/webhooks/{id}/deliveries"), Some(&boss)).await;
        if let Some(d) = log.as_array().unwrap().iter().find(|d| d["status"] == "queued") {
            break d["id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (status, _) =
        server.call(reqwest::Method::DELETE, &format!("/api/v1/admin/webhooks/{id}"), &boss, json!({})).await;
    assert_eq!(status, 204);
    let (_, list) = server.get("/api/v1/admin/webhooks", Some(&boss)).await;
    assert_eq!(list, json!([]));
    let (status, _) = server.get(&format!("/api/v1/admin/webhooks/{id}/deliveries"), Some(&boss)).await;
    assert_eq!(status, 404);
    let (_, log) = server.get("/api/v1/admin/deliveries", Some(&boss)).await;
    let ended = log.as_array().unwrap().iter().find(|d| d["id"] == queued.as_str()).unwrap().clone();
    assert_eq!(
        (ended["status"].as_str(), ended["last_error"].as_str()),
        (Some("failed"), Some("the endpoint was deleted"))
    );
    integration_says(&server, &bot, &conv, "fourth").await;
    let (_, log) = server.get("/api/v1/admin/deliveries?status=queued", Some(&boss)).await;
    assert_eq!(log, json!([]), "nothing queued for a deleted endpoint");
    let (status, _) =
        server.call(reqwest::Method::DELETE, &format!("/api/v1/admin/webhooks/{id}"), &boss, json!({})).await;
    assert_eq!(status, 404, "gone");
    let (_, audit) = server.get("/api/v1/admin/audit", Some(&boss)).await;
    let actions: Vec<&str> = audit.as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"webhook.deleted") && actions.contains(&"webhook.secret_rotated"), "{actions:?}");
    assert!(!audit.to_string().contains(&new[6..]) && !audit.to_string().contains(&old[6..]), "no secret in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_rotates_and_an_endpoint_is_deleted_on_sqlite() {
    a_secret_rotates_and_an_endpoint_is_deleted(TestServer::start_with(tune).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_rotates_and_an_endpoint_is_deleted_on_postgres() {
    let db = TestDb::create().await;
    let server = tuned_on(&db).await;
    a_secret_rotates_and_an_endpoint_is_deleted(server).await;
}
