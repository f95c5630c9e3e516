//! The chat outbox: an offline message is emailed to the site's admins
//! through a real SMTP server (Python's aiosmtpd, which `scripts/test`
//! installs), with both parts, the right headers and hostile input inert;
//! an SMTP outage and a kill -9 lose no email and send none twice; an
//! admin sees only their own site's deliveries; the message and its
//! deliveries commit together on both stores; the status page's
//! notifications go through the same outbox, seen by the operator only.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use holdfast_server::auth::passwords;
use holdfast_server::status::{SmtpConfig, SmtpTls};
use holdfast_server::store::outbox::{
    Attempt, Delivery, DeliveryKind, DeliveryStatus, NewDelivery, OfflineMessage, Scope,
};
use holdfast_server::store::postgres::PostgresStore;
use holdfast_server::store::sqlite::SqliteStore;
use holdfast_server::store::status::SubscriberKind;
use holdfast_server::store::{
    Author, Conversation, ConversationStatus, NewAgent, Role, Site, Store, VisitorUpdate, new_id, now_ms,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::services::{Keep, TestDb, both_stores};
use crate::support::{Client, Proc, TestServer, spawn_serve};

// ----- a real SMTP server ---------------------------------------------------

/// aiosmtpd behind a few lines of Python: every message received becomes a
/// JSON line with its envelope, its headers as sent, its subject decoded,
/// and its decoded parts.
/// Given a second argument, it refuses every recipient with that reply.
const SMTP_SERVER: &str = r#"
import email, email.policy, json, sys, threading
from aiosmtpd.controller import Controller

class Handler:
    def __init__(self, refusal):
        self.refusal = refusal

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refusal:
            return self.refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        plain = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        print(json.dumps({
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": [[k, str(v)] for k, v in msg.raw_items()],
            "subject": str(msg["subject"]) if msg["subject"] is not None else None,
            "content_type": msg.get_content_type(),
            "text": plain.get_content() if plain is not None else None,
            "html": html.get_content() if html is not None else None,
        }), flush=True)
        return "250 OK"

refusal = sys.argv[2] if len(sys.argv) > 2 else None
controller = Controller(Handler(refusal), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print(json.dumps({"ready": True}), flush=True)
threading.Event().wait()
"#;

/// A Python script that needs `module`, run with `args`: it prints a
/// JSON line saying it is ready, then one per thing it heard, which come
/// out of the channel.
pub(crate) fn python_json_lines(
    module: &str,
    script: &str,
    args: &[String],
) -> (Child, mpsc::UnboundedReceiver<Value>) {
    let mut child = Command::new(python_with(module))
        .args(["-c", script])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start the {module} script: {e}"));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().expect("the script says it is ready").unwrap();
    assert!(ready.contains("ready"), "{ready}");
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in lines.map_while(|l| l.ok()) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    (child, rx)
}

/// A Python that can import `module`: on PATH (scripts/test puts its
/// virtualenv first), else that virtualenv itself.
pub(crate) fn python_with(module: &str) -> String {
    let tools = std::env::var("HOLDFAST_TEST_TOOLS_DIR").unwrap_or_else(|_| {
        let cache = std::env::var("XDG_CACHE_HOME")
            .unwrap_or_else(|_| format!("{}/.cache", std::env::var("HOME").unwrap_or_default()));
        format!("{cache}/holdfast/test-tools")
    });
    let candidates = ["python3".to_owned(), "python".to_owned(), format!("{tools}/venv/bin/python")];
    for python in &candidates {
        let ok = Command::new(python)
            .args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return python.clone();
        }
    }
    panic!("no Python with {module} (tried {candidates:?}): run the tests with scripts/test, which installs it")
}

pub(crate) struct SmtpServer {
    child: Child,
    pub(crate) mail: mpsc::UnboundedReceiver<Value>,
}

impl SmtpServer {
    pub(crate) fn start(port: u16) -> SmtpServer {
        SmtpServer::spawn(&[port.to_string()])
    }

    /// A relay that answers every recipient with `reply` (`550 …`).
    pub(crate) fn refusing(port: u16, reply: &str) -> SmtpServer {
        SmtpServer::spawn(&[port.to_string(), reply.to_owned()])
    }

    fn spawn(args: &[String]) -> SmtpServer {
        let (child, mail) = python_json_lines("aiosmtpd", SMTP_SERVER, args);
        SmtpServer { child, mail }
    }

    /// The next `n` messages, failing after `within`.
    pub(crate) async fn receive(&mut self, n: usize, within: Duration) -> Vec<Value> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        while got.len() < n {
            match tokio::time::timeout_at(deadline, self.mail.recv()).await {
                Ok(Some(m)) => got.push(m),
                _ => panic!("{} of {n} messages arrived: {got:#?}", got.len()),
            }
        }
        got
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The relay settings of a test: aiosmtpd on `port`, plain SMTP.
pub(crate) fn relay(port: u16) -> SmtpConfig {
    let mut relay = SmtpConfig::new("127.0.0.1", port, "chat@shop.example");
    relay.tls = SmtpTls::None;
    relay
}

/// A port free on every interface now, for a listener the test starts
/// next. It is taken below the kernel's ephemeral range (32768 and up on
/// Linux), where no `:0` listener or outgoing connection of the busy suite
/// can take it before that listener binds: one did once, and the guide's
/// example exited on "Address already in use".
pub(crate) fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // Each process of the suite starts elsewhere in the span.
    let start = std::process::id().wrapping_mul(7919);
    for _ in 0..SPAN {
        let port = (FIRST + start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN)
}

/// Every value of header `name` (case-insensitive).
pub(crate) fn header(mail: &Value, name: &str) -> Vec<String> {
    mail["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        // Unfolded (RFC 5322 §2.2.3): a long value may span lines.
        .map(|h| h[1].as_str().unwrap().replace("\r\n", "").replace('\n', ""))
        .collect()
}

pub(crate) async fn admin(store: &dyn Store, site: &Site, email: &str) {
    let hash = passwords::hash_now("password123").unwrap();
    store
        .create_agent(NewAgent {
            site_id: &site.id,
            email,
            name: "Boss",
            role: Role::Admin,
            password_hash: &hash,
            chat_limit: 5,
        })
        .await
        .unwrap();
}

const HOSTILE_NAME: &str = "<script>alert(1)</script>\r\nBcc: x@evil.example";
const HOSTILE_BODY: &str = "<img src=x onerror=alert(1)>\r\nBcc: y@evil.example\r\n\r\nPlease call me back";

// ----- end to end -------------------------------------------------------------

#[tokio::test]
async fn an_offline_message_is_emailed_to_the_admins_with_hostile_input_inert() {
    let port = free_port();
    let mut smtp = SmtpServer::start(port);
    let server = TestServer::start_with(|c| {
        c.status.smtp = Some(relay(port));
        c.status.public_url = Some("https://chat.shop.example/".into());
    })
    .await;
    let site = server.site().await;
    admin(server.state.store.as_ref(), &site, "boss@shop.example").await;
    server.agent(&site, "agent@shop.example", 5).await; // an agent is not emailed
    let (_, vtoken) = server.visitor(&site).await;

    let mut visitor = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    visitor
        .send(json!({"type": "leave_message", "client_id": "off-1", "name": HOSTILE_NAME,
                     "email": "ada@example.com", "body": HOSTILE_BODY}))
        .await;
    let ack = visitor.wait_for(|f| f["type"] == "ack").await;
    let conv = ack["conv"].as_str().unwrap().to_owned();

    let mail = smtp.receive(2, Duration::from_secs(15)).await;
    let to: HashSet<&str> = mail.iter().map(|m| m["rcpt_tos"][0].as_str().unwrap()).collect();
    assert_eq!(to, HashSet::from(["admin@holdfast.local", "boss@shop.example"]), "the site's admins, no agent");
    for m in &mail {
        assert_eq!(m["content_type"], "multipart/alternative", "{m:#}");
        assert!(header(m, "Bcc").is_empty(), "no injected header: {m:#}");
        assert_eq!(header(m, "Reply-To"), ["ada@example.com"], "{m:#}");
        let from = header(m, "From");
        assert!(from[0].contains("Demo site") && from[0].contains("<chat@shop.example>"), "{from:?}");
        assert_eq!(header(m, "Date").len(), 1, "{m:#}");
        let id = header(m, "Message-ID");
        assert!(id.len() == 1 && id[0].ends_with("@chat.shop.example>"), "{id:?}");
        let subject = &header(m, "Subject")[0];
        assert!(subject.starts_with("New message from ") && subject.ends_with(" on Demo site"), "{subject}");
        assert!(!subject.contains('\n') && !subject.contains('\r'), "{subject:?}");

        let text = m["text"].as_str().unwrap();
        assert!(text.contains("Please call me back") && text.contains("ada@example.com"), "{text}");
        assert!(text.contains("https://shop.example/p/1"), "the page: {text}");
        let link = format!("https://chat.shop.example/console#conversation={conv}");
        assert!(text.contains(&link), "{text}");

        let html = m["html"].as_str().unwrap();
        assert!(!html.contains("<script") && !html.contains("<img"), "nothing the visitor wrote is markup: {html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"), "{html}");
        // minijinja also escapes `/` (`&#x2f;`), which a browser reads as `/`.
        assert!(html.replace("&#x2f;", "/").contains(&format!("href=\"{link}\"")), "{html}");
    }
    let ids: HashSet<String> = mail.iter().map(|m| header(m, "Message-ID").remove(0)).collect();
    assert_eq!(ids.len(), 2, "one Message-ID per email");

    // The admin sees them, sent; and can send one again.
    let (boss, _) = server.login("boss@shop.example", "password123").await;
    let (status, list) = server.get("/api/v1/admin/deliveries?status=sent", Some(&boss)).await;
    assert_eq!(status, 200, "{list}");
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 2, "{list:#?}");
    assert!(list.iter().all(|d| d["attempts"] == 1 && d["kind"] == "email" && d["last_error"].is_null()));
    assert!(list[0]["subject"].as_str().unwrap().starts_with("New message from"), "{list:#?}");
    assert_eq!(list[0]["conversation_id"], conv.as_str(), "the console can open it");
    assert_eq!(
        list[0]["preview"], "<img src=x onerror=alert(1)> Bcc: y@evil.example Please call me back",
        "the message on one line, as written (the console shows it as text)"
    );
    let (status, queued) = server.get("/api/v1/admin/deliveries?status=queued", Some(&boss)).await;
    assert_eq!((status, queued), (200, json!([])));
    let (status, _) = server.get("/api/v1/admin/deliveries?status=lost", Some(&boss)).await;
    assert_eq!(status, 400);
    let id = list[0]["id"].as_str().unwrap();
    let (status, body) = server.post(&format!("/api/v1/admin/deliveries/{id}/retry"), Some(&boss), json!({})).await;
    assert_eq!(status, 202, "{body}");
    let again = smtp.receive(1, Duration::from_secs(15)).await;
    assert_eq!(again[0]["rcpt_tos"][0], list[0]["recipient"]);

    // /metrics counts them.
    let metrics = server.http.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    let sent =
        metrics.lines().find(|l| l.starts_with("holdfast_outbox_deliveries_total{") && l.contains("result=\"sent\""));
    assert!(sent.is_some(), "{}", metrics.lines().filter(|l| l.contains("outbox")).collect::<Vec<_>>().join("\n"));
}

#[tokio::test]
async fn an_admin_sees_and_retries_only_their_own_sites_deliveries() {
    let port = free_port(); // nobody listens: every delivery stays queued
    let server = TestServer::start_with(|c| {
        c.status.smtp = Some(relay(port));
    })
    .await;
    let shop = server.site().await;
    admin(server.state.store.as_ref(), &shop, "boss@shop.example").await;
    let other = server.new_site("Other").await;
    admin(server.state.store.as_ref(), &other, "boss@other.example").await;
    server.agent(&shop, "agent@shop.example", 5).await;

    let (_, vtoken) = server.visitor(&shop).await;
    let mut visitor = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    visitor.send(json!({"type": "leave_message", "client_id": "o1", "body": "hello"})).await;
    visitor.wait_for(|f| f["type"] == "ack").await;

    let (boss, _) = server.login("boss@shop.example", "password123").await;
    let (_, mine) = server.get("/api/v1/admin/deliveries", Some(&boss)).await;
    assert_eq!(mine.as_array().unwrap().len(), 2, "{mine:#}");
    let id = mine[0]["id"].as_str().unwrap().to_owned();

    let (stranger, _) = server.login("boss@other.example", "password123").await;
    let (status, theirs) = server.get("/api/v1/admin/deliveries", Some(&stranger)).await;
    assert_eq!((status, theirs), (200, json!([])), "another site's admin sees none of them");
    let (status, _) = server.post(&format!("/api/v1/admin/deliveries/{id}/retry"), Some(&stranger), json!({})).await;
    assert_eq!(status, 404, "nor can send one again");

    let (agent, _) = server.login("agent@shop.example", "password123").await;
    let (status, _) = server.get("/api/v1/admin/deliveries", Some(&agent)).await;
    assert_eq!(status, 403, "agents are not admins");
}

// ----- an SMTP outage and a kill -9 -----------------------------------------

/// The real binary on a free port, mailing through 127.0.0.1:`smtp` and
/// retrying every second or two.
fn spawn_holdfast(dir: &std::path::Path, smtp: u16) -> (Proc, String) {
    let smtp = format!("127.0.0.1:{smtp}");
    let args = ["--smtp", &smtp, "--smtp-tls", "none", "--smtp-from", "chat@shop.example"];
    spawn_serve(dir, &[&args[..], &["--outbox-retry-min-secs", "1", "--outbox-retry-max-secs", "2"]].concat())
}

/// `kill -9` of `holdfast`, then the mail server up on `port` and the
/// binary started again on the same data dir.
fn kill_9_and_restart_with_smtp(mut holdfast: Proc, dir: &std::path::Path, port: u16) -> (SmtpServer, Proc, String) {
    holdfast.0.kill().unwrap(); // SIGKILL
    holdfast.0.wait().unwrap();
    let smtp = SmtpServer::start(port);
    let (restarted, base) = spawn_holdfast(dir, port);
    (smtp, restarted, base)
}

async fn deliveries(http: &reqwest::Client, base: &str, token: &str) -> Vec<Value> {
    let res = http.get(format!("{base}/api/v1/admin/deliveries?limit=1000")).bearer_auth(token).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    res.json::<Value>().await.unwrap().as_array().unwrap().clone()
}

/// Poll the deliveries API until `done` holds (10 s at most).
async fn wait_deliveries(http: &reqwest::Client, base: &str, token: &str, done: impl Fn(&[Value]) -> bool) {
    let started = Instant::now();
    loop {
        let list = deliveries(http, base, token).await;
        if done(&list) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "deliveries never got there: {list:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_smtp_outage_and_a_kill_9_lose_no_email_and_send_none_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let arrange = TestServer::start_in(tmp.path(), |_| {}).await;
    let site = arrange.site().await;
    admin(arrange.state.store.as_ref(), &site, "boss@shop.example").await;
    arrange.stop().await;

    let port = free_port(); // the mail server is down
    let (proc1, base) = spawn_holdfast(tmp.path(), port);
    let http = reqwest::Client::new();
    let boss = crate::support::login_at(&base, "boss@shop.example").await;
    let (mut visitor, _) = crate::support::visitor_at(&base, &site.widget_key).await;
    for i in 0..20 {
        visitor
            .send(json!({"type": "leave_message", "client_id": format!("off-{i}"), "body": format!("message {i}")}))
            .await;
        visitor.wait_for(|f| f["type"] == "ack").await;
    }
    // 20 messages, two admins: 40 emails, each tried and refused.
    wait_deliveries(&http, &base, &boss, |list| {
        list.len() == 40 && list.iter().all(|d| d["status"] == "queued" && d["attempts"].as_i64() >= Some(1))
    })
    .await;
    let list = deliveries(&http, &base, &boss).await;
    assert!(list[0]["last_error"].as_str().unwrap().starts_with("SMTP"), "{:#}", list[0]);

    let (mut smtp, _proc2, base2) = kill_9_and_restart_with_smtp(proc1, tmp.path(), port);

    let mail = smtp.receive(40, Duration::from_secs(30)).await;
    wait_deliveries(&http, &base2, &boss, |list| list.iter().all(|d| d["status"] == "sent")).await;
    let ids: HashSet<String> = mail.iter().map(|m| header(m, "Message-ID").remove(0)).collect();
    assert_eq!(ids.len(), 40, "each email once");
    let bodies: HashSet<String> = mail
        .iter()
        .map(|m| m["text"].as_str().unwrap().lines().find(|l| l.starts_with("message ")).unwrap().into())
        .collect();
    assert_eq!(bodies.len(), 20, "every message");
    // Everything is recorded as sent: nothing is left to send twice.
    assert!(smtp.mail.try_recv().is_err(), "no extra email");
}

/// The status page's notifications go through the same outbox: queued in
/// the status store with the incident, relayed, retried through an SMTP
/// outage and a kill -9, each sent once, and listed for the operator (and
/// for no site's admin).
#[tokio::test]
async fn status_notifications_survive_an_smtp_outage_and_a_kill_9_through_the_outbox() {
    let tmp = tempfile::tempdir().unwrap();
    let arrange = TestServer::start_in(tmp.path(), |_| {}).await;
    let site = arrange.site().await;
    admin(arrange.state.store.as_ref(), &site, "boss@shop.example").await;
    arrange.person(&site, "op@shop.example", "Operator", Role::Operator).await;
    let status = &arrange.state.status.store;
    for reader in ["one@readers.example", "two@readers.example"] {
        status.add_subscriber(SubscriberKind::Email, reader, None, true).await.unwrap();
    }
    arrange.stop().await;

    let port = free_port(); // the mail server is down
    let (proc1, base) = spawn_holdfast(tmp.path(), port);
    let http = reqwest::Client::new();
    let op = crate::support::login_at(&base, "op@shop.example").await;
    let boss = crate::support::login_at(&base, "boss@shop.example").await;
    let opened: Value = http
        .post(format!("{base}/api/v1/status/incidents"))
        .bearer_auth(&op)
        .json(&json!({"name": "Widget <b>slow</b>", "components": {"Chat widget": "degraded_performance"},
                      "message": "Looking into it.\r\nBcc: x@evil.example"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let incident = opened["incident"]["id"].as_str().unwrap_or_else(|| panic!("{opened}")).to_owned();
    let res = http
        .post(format!("{base}/api/v1/status/incidents/{incident}/updates"))
        .bearer_auth(&op)
        .json(&json!({"status": "identified", "message": "Found it."}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    // Two notifications, two readers: four emails, each tried and refused.
    let ours =
        |list: &[Value]| -> Vec<Value> { list.iter().filter(|d| d["template"] == "status_email").cloned().collect() };
    wait_deliveries(&http, &base, &op, |list| {
        let mine = ours(list);
        mine.len() == 4 && mine.iter().all(|d| d["status"] == "queued" && d["attempts"].as_i64() >= Some(1))
    })
    .await;
    let list = ours(&deliveries(&http, &base, &op).await);
    for d in &list {
        assert!(d["last_error"].as_str().unwrap().starts_with("SMTP"), "{d:#}");
        assert_eq!(d["site_id"], Value::Null, "the installation's, not a site's: {d:#}");
        assert!(d["subject"].as_str().unwrap().contains("Widget <b>slow</b>"), "{d:#}");
    }
    assert!(ours(&deliveries(&http, &base, &boss).await).is_empty(), "a site's admin sees none of them");
    let id = list[0]["id"].as_str().unwrap();
    let retry = |token: &str| {
        http.post(format!("{base}/api/v1/admin/deliveries/{id}/retry")).bearer_auth(token.to_owned()).send()
    };
    assert_eq!(retry(&boss).await.unwrap().status().as_u16(), 404, "nor sends one again");
    assert_eq!(retry(&op).await.unwrap().status().as_u16(), 202, "the operator does");

    let (mut smtp, _proc2, base2) = kill_9_and_restart_with_smtp(proc1, tmp.path(), port);

    let mail = smtp.receive(4, Duration::from_secs(30)).await;
    wait_deliveries(&http, &base2, &op, |list| ours(list).iter().all(|d| d["status"] == "sent")).await;
    let ids: HashSet<String> = mail.iter().map(|m| header(m, "Message-ID").remove(0)).collect();
    assert_eq!(ids.len(), 4, "each email once");
    let mut to: Vec<String> = mail.iter().map(|m| header(m, "To").remove(0)).collect();
    to.sort();
    assert_eq!(to, ["one@readers.example", "one@readers.example", "two@readers.example", "two@readers.example"]);
    for m in &mail {
        assert!(header(m, "Bcc").is_empty(), "no header injected: {m:#}");
        let text = m["text"].as_str().unwrap();
        let html = m["html"].as_str().unwrap();
        assert!(text.contains("Unsubscribe: ") && text.contains("/status/subscribers/unsubscribe?token="), "{text}");
        assert!(html.contains("Widget &lt;b&gt;slow&lt;") && !html.contains("<b>slow"), "escaped: {html}");
        assert!(header(m, "From").remove(0).contains("chat@shop.example"), "{m:#}");
    }
    // The status store hears the outcome: no subscriber shows an error.
    let subs: Value = http
        .get(format!("{base2}/api/v1/status/subscribers"))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(subs.to_string().contains("one@readers.example"), "{subs}");
    assert!(!subs.to_string().contains("SMTP"), "errors cleared once sent: {subs}");
    assert!(smtp.mail.try_recv().is_err(), "no extra email");
}

// ----- the store, both backends ------------------------------------------------

/// One store of either kind (the invitations' tests use it too).
pub(crate) struct Backend {
    pub(crate) store: Arc<dyn Store>,
    _keep: Keep,
}

pub(crate) async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    Backend { store: Arc::new(SqliteStore::open(dir.path()).await.unwrap()), _keep: Keep::Dir(dir) }
}

pub(crate) async fn postgres() -> Backend {
    let db = TestDb::create().await;
    Backend { store: Arc::new(PostgresStore::connect(&db.url, 4).await.unwrap()), _keep: Keep::Db(db) }
}

both_stores!(
    an_offline_message_and_its_deliveries_commit_together,
    deliveries_are_claimed_once_and_recorded,
    an_email_dropped_while_it_is_being_sent_stays_dropped,
    sending_again_while_it_is_being_sent_stands
);

fn offline(site: &Site, visitor: &str, group: &str, deliveries: Vec<NewDelivery>) -> OfflineMessage {
    OfflineMessage {
        conversation: Conversation {
            id: new_id(),
            site_id: site.id.clone(),
            visitor_id: visitor.into(),
            group_id: group.into(),
            agent_id: None,
            status: ConversationStatus::Offline,
            last_seq: 0,
            created_at: now_ms(),
            assigned_at: None,
            closed_at: None,
        },
        author: Author::visitor(visitor),
        client_id: "c1".into(),
        body: "hello".into(),
        deliveries,
    }
}

fn delivery(site_id: &str, to: &str, key: &str) -> NewDelivery {
    NewDelivery {
        id: new_id(),
        site_id: Some(site_id.into()),
        kind: DeliveryKind::Email,
        template: "offline_message".into(),
        recipient: to.into(),
        payload: r#"{"body":"hello"}"#.into(),
        dedupe_key: key.into(),
        created_at: now_ms(),
        give_up_at: now_ms() + 86_400_000,
    }
}

/// A site's offline message with two emails, both claimed at `now`.
async fn two_claimed(store: &dyn Store) -> (Site, i64, Vec<Delivery>) {
    let (site, visitor, group) = arrange(store).await;
    let emails = vec![delivery(&site.id, "a@example.com", "k1"), delivery(&site.id, "b@example.com", "k2")];
    store.leave_message(offline(&site, &visitor, &group, emails)).await.unwrap();
    let now = now_ms();
    let claimed = store.claim_deliveries(now, now + 60_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    (site, now, claimed)
}

async fn arrange(store: &dyn Store) -> (Site, String, String) {
    let site = store.create_site("Shop").await.unwrap();
    let group = store.create_group(&site.id, "Support", true).await.unwrap();
    let visitor = store.create_visitor(&site.id, VisitorUpdate::default()).await.unwrap();
    (site, visitor.id, group.id)
}

async fn an_offline_message_and_its_deliveries_commit_together(b: Backend) {
    let store = b.store.as_ref();
    let (site, visitor, group) = arrange(store).await;
    let deliveries = vec![
        delivery(&site.id, "a@example.com", "k1"),
        delivery(&site.id, "b@example.com", "k2"),
        delivery(&site.id, "a@example.com", "k1"), // the same key again: stored once
    ];
    let m = offline(&site, &visitor, &group, deliveries);
    let applied = store.leave_message(m.clone()).await.unwrap();
    assert_eq!((applied.event.seq, applied.conversation.last_seq), (1, 1));
    let conv = store.conversation(&m.conversation.id).await.unwrap().unwrap();
    assert_eq!((conv.status, conv.last_seq), (ConversationStatus::Offline, 1));
    assert_eq!(store.events_after(&conv.id, 0, 10).await.unwrap().len(), 1);
    let stored = store.deliveries(Scope::site(&site.id), Some(DeliveryStatus::Queued), 10).await.unwrap();
    assert_eq!(stored.len(), 2, "{stored:#?}");

    // A delivery that cannot be stored (an unknown site) takes the
    // conversation and its message down with it.
    let broken = offline(&site, &visitor, &group, vec![delivery("no-such-site", "c@example.com", "k3")]);
    assert!(store.leave_message(broken.clone()).await.is_err());
    assert!(store.conversation(&broken.conversation.id).await.unwrap().is_none(), "all or nothing");
    assert_eq!(store.deliveries(Scope::site(&site.id), None, 10).await.unwrap().len(), 2);
}

async fn deliveries_are_claimed_once_and_recorded(b: Backend) {
    let store = b.store.as_ref();
    let (site, now, claimed) = two_claimed(store).await;
    assert!(store.claim_deliveries(now, now + 60_000, 10).await.unwrap().is_empty(), "leased: claimed once");
    assert_eq!(store.queued_deliveries().await.unwrap(), 2);

    store.record_attempt(&claimed[0].id, Attempt::Sent { at: now }).await.unwrap();
    let error = "SMTP: connection refused".to_owned();
    store
        .record_attempt(&claimed[1].id, Attempt::Failed { error, next_at: Some(now + 1000), due: claimed[1].next_at })
        .await
        .unwrap();
    assert!(store.claim_deliveries(now, now + 60_000, 10).await.unwrap().is_empty(), "not due yet");
    let due = store.claim_deliveries(now + 1000, now + 61_000, 10).await.unwrap();
    assert_eq!((due.len(), due[0].attempts), (1, 1));
    let error = "SMTP: 550 no such user".to_owned();
    store.record_attempt(&due[0].id, Attempt::Failed { error, next_at: None, due: due[0].next_at }).await.unwrap();
    let failed = store.deliveries(Scope::site(&site.id), Some(DeliveryStatus::Failed), 10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!((failed[0].attempts, failed[0].last_error.as_deref()), (2, Some("SMTP: 550 no such user")));

    // Sending again: only within its own site.
    let other = store.create_site("Other").await.unwrap();
    assert!(!store.retry_delivery(Scope::site(&other.id), &failed[0].id, now, now + 1).await.unwrap());
    assert!(store.retry_delivery(Scope::site(&site.id), &failed[0].id, now + 2000, now + 90_000).await.unwrap());
    let due = store.claim_deliveries(now + 2000, now + 62_000, 10).await.unwrap();
    assert_eq!(due.len(), 1, "queued again and due");

    // A new lead forgets the leases of the one before.
    store.release_delivery_leases().await.unwrap();
    assert_eq!(store.claim_deliveries(now + 2000, now + 62_000, 10).await.unwrap().len(), 1);
}

/// Who gets a lead's email: admins unless they opt out, agents who opt in,
/// and the group's own address; each once. Another site's admin cannot
/// touch the group.
#[tokio::test]
async fn leads_are_emailed_to_who_wants_them_and_to_the_groups_address() {
    let port = free_port();
    let mut smtp = SmtpServer::start(port);
    let server = TestServer::start_with(|c| c.status.smtp = Some(relay(port))).await;
    let site = server.site().await;
    let store = server.state.store.as_ref();
    admin(store, &site, "boss@shop.example").await;
    admin(store, &site, "quiet-boss@shop.example").await;
    server.agent(&site, "keen@shop.example", 5).await;
    server.agent(&site, "busy@shop.example", 5).await;
    let put = async |email: &str, on: bool| -> Value {
        let (token, _) = server.login(email, "password123").await;
        let resp = server
            .http
            .put(format!("{}/api/v1/me/lead-emails", server.base))
            .bearer_auth(&token)
            .json(&json!({"on": on}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    };
    assert_eq!(put("quiet-boss@shop.example", false).await["lead_emails"], false);
    assert_eq!(put("keen@shop.example", true).await["lead_emails"], true);
    let (boss, _) = server.login("boss@shop.example", "password123").await;
    let (_, me) = server.get("/api/v1/me", Some(&boss)).await;
    assert_eq!(me["lead_emails"], true, "an admin's default");

    // The default group's own address, set by the site's admin only.
    let (_, groups) = server.get("/api/v1/admin/groups", Some(&boss)).await;
    let group = groups[0]["id"].as_str().unwrap().to_owned();
    let patch = async |token: &str, body: Value| -> (u16, Value) {
        let req = server.http.patch(format!("{}/api/v1/admin/groups/{group}", server.base)).bearer_auth(token);
        let resp = req.json(&body).send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
    };
    let other = server.new_site("Other shop").await;
    admin(store, &other, "olaf@other.example").await;
    let (olaf, _) = server.login("olaf@other.example", "password123").await;
    assert_eq!(patch(&olaf, json!({"email": "evil@other.example"})).await.0, 404, "not Olaf's group");
    let (keen, _) = server.login("keen@shop.example", "password123").await;
    assert_eq!(patch(&keen, json!({"email": "x@shop.example"})).await.0, 403);
    for bad in [json!({"email": "nope"}), json!({"name": ""}), json!({"colour": "red"})] {
        let (status, err) = patch(&boss, bad.clone()).await;
        assert!(status == 400 || status == 422, "{bad}: {status} {err}");
    }
    let (status, saved) = patch(&boss, json!({"email": "Team@Shop.example", "name": "Front desk"})).await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!((saved["email"].as_str(), saved["name"].as_str()), (Some("team@shop.example"), Some("Front desk")));

    let (_, vtoken) = server.visitor(&site).await;
    let mut visitor = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    visitor.send(json!({"type": "leave_message", "client_id": "l1", "body": "Call me"})).await;
    visitor.wait_for(|f| f["type"] == "ack").await;
    let mail = smtp.receive(4, Duration::from_secs(15)).await;
    let mut to: Vec<String> = mail.iter().map(|m| m["rcpt_tos"][0].as_str().unwrap().to_owned()).collect();
    to.sort();
    assert_eq!(to, ["admin@holdfast.local", "boss@shop.example", "keen@shop.example", "team@shop.example"]);
    let (_, list) = server.get("/api/v1/admin/deliveries", Some(&boss)).await;
    assert_eq!(list.as_array().unwrap().len(), 4, "no one else: {list:#}");

    // Cleared, the group's address gets no more.
    let (status, saved) = patch(&boss, json!({"email": ""})).await;
    assert_eq!((status, saved["email"].clone()), (200, Value::Null));
}

/// An erasure drops a queued email while the deliverer holds it (seen in
/// CI: the attempt's failure then queued it again). The attempt's outcome
/// must not bring it back.
async fn an_email_dropped_while_it_is_being_sent_stays_dropped(b: Backend) {
    let store = b.store.as_ref();
    let site = store.create_site("Shop").await.unwrap();
    let update = VisitorUpdate { email: Some("zoe@example.com".into()), ..Default::default() };
    let zoe = store.create_visitor(&site.id, update).await.unwrap();
    let email = NewDelivery { payload: r#"{"body":"call me"}"#.into(), ..delivery(&site.id, "zoe@example.com", "k1") };
    store.queue_deliveries(vec![email]).await.unwrap();
    let now = now_ms();
    let claimed = store.claim_deliveries(now, now + 60_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    store.erase_visitor(&site.id, &zoe.id).await.unwrap();
    let error = "SMTP: connection refused".to_owned();
    let retry = Attempt::Failed { error, next_at: Some(now + 60_000), due: claimed[0].next_at };
    store.record_attempt(&claimed[0].id, retry).await.unwrap();
    let after = store.deliveries(Scope::site(&site.id), None, 10).await.unwrap().remove(0);
    assert_eq!(after.status, DeliveryStatus::Failed, "{after:#?}");
    assert!(after.last_error.as_deref().unwrap().starts_with("dropped"), "{after:#?}");
    assert_eq!(after.attempts, 1);
    let again = store.retry_delivery(Scope::site(&site.id), &after.id, now + 1, now + 90_000).await.unwrap();
    assert!(!again, "its content is gone: it is not sent again");
}

/// An admin's "send again" while the deliverer holds the delivery (seen in
/// CI: the console said "not found"). It is accepted, the delivery is not
/// claimed twice at once, and the attempt's failure leaves it queued and
/// due at once rather than at its backoff, or given up.
async fn sending_again_while_it_is_being_sent_stands(b: Backend) {
    let store = b.store.as_ref();
    let (site, now, claimed) = two_claimed(store).await;
    for d in &claimed {
        assert!(store.retry_delivery(Scope::site(&site.id), &d.id, now + 5, now + 90_000).await.unwrap());
    }
    assert!(store.claim_deliveries(now + 10, now + 60_000, 10).await.unwrap().is_empty(), "still held");

    // One fails with a backoff, the other for good: both are queued, due now.
    let (error, later) = ("HTTP: connection refused".to_owned(), Some(now + 600_000));
    store
        .record_attempt(&claimed[0].id, Attempt::Failed { error, next_at: later, due: claimed[0].next_at })
        .await
        .unwrap();
    let error = "SMTP: 550 no such user".to_owned();
    store
        .record_attempt(&claimed[1].id, Attempt::Failed { error, next_at: None, due: claimed[1].next_at })
        .await
        .unwrap();
    let due = store.claim_deliveries(now + 10, now + 60_000, 10).await.unwrap();
    assert_eq!(due.len(), 2, "{due:#?}");
    assert!(due.iter().all(|d| d.attempts == 1 && d.next_at <= now + 10 && d.give_up_at == now + 90_000), "{due:#?}");

    // Without a request meanwhile, the outcome is the attempt's own.
    let error = "HTTP: connection refused".to_owned();
    store.record_attempt(&due[0].id, Attempt::Failed { error, next_at: later, due: due[0].next_at }).await.unwrap();
    let error = "SMTP: 550 no such user".to_owned();
    store.record_attempt(&due[1].id, Attempt::Failed { error, next_at: None, due: due[1].next_at }).await.unwrap();
    let all = store.deliveries(Scope::site(&site.id), None, 10).await.unwrap();
    let of = |id: &str| all.iter().find(|d| d.id == id).unwrap();
    assert_eq!((of(&due[0].id).status, of(&due[0].id).next_at), (DeliveryStatus::Queued, now + 600_000));
    assert_eq!(of(&due[1].id).status, DeliveryStatus::Failed);
    assert!(store.claim_deliveries(now + 10, now + 60_000, 10).await.unwrap().is_empty());
}
