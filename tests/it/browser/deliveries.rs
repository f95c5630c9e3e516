//! The console's Deliveries section: an admin sees their site's emails
//! (what was queued, sent or failed, attempts, the relay's last answer)
//! with everything a visitor or a relay wrote shown as text, sends a
//! failed one again, and sees none of another site's. The "Missed chats"
//! list shows a hostile name as text too. The operator also sees the
//! status page's notifications there.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use holdfast_server::store::Role;
use holdfast_server::store::status::SubscriberKind;
use serde_json::{Value, json};

use super::webdriver::{Driver, screenshot_path};
use super::{LONG, ONE_BROWSER_TEST, admin, console_login};
use crate::outbox::{SmtpServer, free_port, relay};
use crate::support::{Client, TestServer};

const HOSTILE_NAME: &str = "<img src=x onerror=\"window.pwned=5\"> Mallory <b>bold</b>";
const HOSTILE_BODY: &str = "<script>window.pwned=6</script> javascript:window.pwned=7 call me";
/// A relay's refusal holding markup: the error column must show it as text.
const HOSTILE_REFUSAL: &str = "550 <img src=x onerror=\"window.pwned=8\"> no such user";

/// Poll the deliveries API until `done` holds.
async fn wait_deliveries(server: &TestServer, token: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let (status, list) = server.get("/api/v1/admin/deliveries", Some(token)).await;
        assert_eq!(status, 200, "{list}");
        let list = list.as_array().unwrap().clone();
        if done(&list) {
            return list;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "deliveries never got there: {list:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_admin_sees_failed_deliveries_as_text_and_sends_one_again() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let port = free_port();
    let refusing = SmtpServer::refusing(port, HOSTILE_REFUSAL);
    let server = TestServer::start_with(|c| {
        c.status.smtp = Some(relay(port));
        // A permanent refusal fails the delivery at the first attempt.
        c.outbox.permanent_attempts = 1;
        // A pooled connection to the refusing relay may fail the resend
        // once: the next try comes a second later.
        c.outbox.retry_min = Duration::from_secs(1);
        c.outbox.retry_max = Duration::from_secs(1);
        // A chat is missed 0.2 s after the visitor's first message.
        c.outbox.missed_tick = Duration::from_millis(100);
        c.outbox.missed_minute = Duration::from_millis(100);
    })
    .await;
    let site = server.site().await;
    admin(&server, &site, "ada@example.com", Role::Admin).await;
    let other = server.new_site("Other shop").await;
    admin(&server, &other, "olaf@example.com", Role::Admin).await;

    // A visitor leaves a hostile message while nobody is online.
    let (_, vtoken) = server.visitor(&site).await;
    let mut visitor = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    visitor.send(json!({"type": "leave_message", "client_id": "x1", "name": HOSTILE_NAME, "body": HOSTILE_BODY})).await;
    visitor.wait_for(|f| f["type"] == "ack").await;
    // ... then starts a chat nobody answers: a missed chat.
    assert_eq!(visitor.say(None, "x2", HOSTILE_BODY).await["type"], "ack");
    let (ada, _) = server.login("ada@example.com", "password123").await;
    // Two emails each (to the first-run admin and Ada), all refused.
    wait_deliveries(&server, &ada, |l| l.len() == 4 && l.iter().all(|d| d["status"] == "failed")).await;

    let driver = Driver::start().await;
    let b = driver.browser(1280, 900).await;
    console_login(&b, &server, "ada@example.com", "password123").await;
    b.click_on("document.querySelector('#admin-tab')").await;
    b.wait_for("return document.querySelectorAll('#deliveries tr[data-status=failed]').length === 4", LONG).await;
    let shown = b
        .exec(
            "const t = document.querySelector('#deliveries'); const row = t.querySelector('tr'); \
             return {subject: row.cells[2].firstChild.textContent, preview: row.cells[2].children[1].textContent, \
             error: row.cells[5].textContent, attempts: row.cells[4].textContent, \
             markup: t.querySelectorAll('img, b, script, a').length, pwned: window.pwned || 0}",
            vec![],
        )
        .await;
    assert_eq!(shown["markup"], 0, "nothing a visitor or relay wrote became an element: {shown}");
    assert_eq!(shown["pwned"], 0, "{shown}");
    assert_eq!(shown["attempts"], "1", "{shown}");
    let subject = shown["subject"].as_str().unwrap();
    assert!(subject.contains(HOSTILE_NAME), "the name, as text: {shown}");
    assert!(shown["preview"].as_str().unwrap().contains(HOSTILE_BODY), "the message, as text: {shown}");
    assert!(shown["error"].as_str().unwrap().contains("<img src=x onerror="), "the relay's answer: {shown}");
    let subjects = b
        .exec(
            "return [...document.querySelectorAll('#deliveries tr')].map(r => r.cells[2].firstChild.textContent)",
            vec![],
        )
        .await;
    let subjects: Vec<&str> = subjects.as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert_eq!(subjects.iter().filter(|s| s.starts_with("Missed chat from ")).count(), 2, "{subjects:?}");
    assert_eq!(subjects.iter().filter(|s| s.starts_with("New message from ")).count(), 2, "{subjects:?}");
    b.screenshot(&screenshot_path("console-deliveries.png")).await;

    // The relay is fixed; "Send again" on one row sends that email.
    drop(refusing);
    let mut smtp = SmtpServer::start(port);
    let row = b.exec("return document.querySelector('#deliveries tr').dataset.delivery", vec![]).await;
    let row = row.as_str().unwrap().to_owned();
    b.click_on("document.querySelector('#deliveries tr').cells[6].querySelector('button')").await;
    let mail = smtp.receive(1, Duration::from_secs(20)).await;
    assert_eq!(mail[0]["rcpt_tos"].as_array().unwrap().len(), 1);
    b.wait_for(
        &format!(
            "document.querySelector('#d-reload').click(); \
             const r = document.querySelector('#deliveries tr[data-delivery=\"{row}\"]'); \
             return r !== null && r.dataset.status === 'sent'"
        ),
        LONG,
    )
    .await;
    let failed = b.exec("return document.querySelectorAll('#deliveries tr[data-status=failed]').length", vec![]).await;
    assert_eq!(failed, 3, "only the one sent again left the failed ones");
    // The filter shows only what it names.
    b.exec(
        "const s = document.querySelector('#d-status'); s.value = 'failed'; s.dispatchEvent(new Event('change'))",
        vec![],
    )
    .await;
    b.wait_for(
        "const rows = [...document.querySelectorAll('#deliveries tr')]; \
         return rows.length === 3 && rows.every(r => r.dataset.status === 'failed')",
        LONG,
    )
    .await;

    // The missed chat is listed under "Missed chats", its name as text.
    b.click_on("document.querySelector('#chats-tab')").await;
    let missed = b
        .wait_for("const b = document.querySelector('#missed button'); return b && b.firstChild.textContent", LONG)
        .await;
    assert_eq!(missed, HOSTILE_NAME);
    let found = b
        .exec("return {markup: document.querySelectorAll('nav img, nav b').length, pwned: window.pwned || 0}", vec![])
        .await;
    assert_eq!(found, json!({"markup": 0, "pwned": 0}));

    // Another site's admin sees none of them.
    let olaf = driver.browser(1280, 900).await;
    console_login(&olaf, &server, "olaf@example.com", "password123").await;
    olaf.click_on("document.querySelector('#admin-tab')").await;
    olaf.wait_for("return !document.querySelector('#deliveries-empty').hidden", LONG).await;
    let rows = olaf.exec("return document.querySelectorAll('#deliveries tr').length", vec![]).await;
    assert_eq!(rows, 0);
    b.close().await;
    olaf.close().await;
    visitor.close().await;
}

/// The status page's notifications are in the operator's list (their
/// subjects as text, however hostile the incident's name) and in no site
/// admin's.
#[tokio::test]
async fn the_operator_sees_the_status_pages_notifications_as_text() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let port = free_port(); // nothing listens: the emails stay queued
    let server = TestServer::start_with(|c| {
        c.status.smtp = Some(relay(port));
        c.status.self_probe = false;
    })
    .await;
    let site = server.site().await;
    admin(&server, &site, "olga@example.com", Role::Operator).await;
    admin(&server, &site, "ada@example.com", Role::Admin).await;
    let status = &server.state.status.store;
    status.add_subscriber(SubscriberKind::Email, "reader@example.com", None, true).await.unwrap();
    let (olga, _) = server.login("olga@example.com", "password123").await;
    let incident =
        json!({"name": HOSTILE_NAME, "components": {"Chat widget": "major_outage"}, "message": HOSTILE_BODY});
    let (code, opened) = server.post("/api/v1/status/incidents", Some(&olga), incident).await;
    assert_eq!(code, 201, "{opened}");
    let is_status = |d: &Value| d["template"] == "status_email";
    wait_deliveries(&server, &olga, |l| l.iter().any(|d| is_status(d) && d["attempts"].as_i64() >= Some(1))).await;
    let (ada, _) = server.login("ada@example.com", "password123").await;
    let (_, theirs) = server.get("/api/v1/admin/deliveries", Some(&ada)).await;
    assert!(!theirs.as_array().unwrap().iter().any(is_status), "a site's admin sees none: {theirs}");

    let driver = Driver::start().await;
    let b = driver.browser(1280, 900).await;
    console_login(&b, &server, "olga@example.com", "password123").await;
    b.click_on("document.querySelector('#admin-tab')").await;
    b.wait_for("return document.querySelectorAll('#deliveries tr').length >= 1", LONG).await;
    let shown = b
        .exec(
            "const t = document.querySelector('#deliveries'); \
             return {subjects: [...t.querySelectorAll('tr')].map(r => r.cells[2].firstChild.textContent), \
             recipients: [...t.querySelectorAll('tr')].map(r => r.cells[1].textContent), \
             markup: t.querySelectorAll('img, b, script').length, pwned: window.pwned || 0}",
            vec![],
        )
        .await;
    assert_eq!((shown["markup"].clone(), shown["pwned"].clone()), (json!(0), json!(0)), "{shown}");
    assert!(
        shown["subjects"].as_array().unwrap().iter().any(|s| s.as_str().unwrap().contains(HOSTILE_NAME)),
        "the incident's name, as text: {shown}"
    );
    assert!(shown["recipients"].to_string().contains("reader@example.com"), "{shown}");
    b.close().await;
}
