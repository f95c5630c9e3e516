//! The console's API tokens and Webhooks sections: an admin makes a token
//! and an endpoint (each secret shown once), sees hostile names, URLs and
//! message bodies as text, reads an endpoint's delivery log, sends a
//! delivery again and disables the endpoint.

use std::collections::HashMap;

use holdfast_server::store::Role;
use serde_json::json;

use super::webdriver::{Driver, screenshot_path};
use super::{LONG, ONE_BROWSER_TEST, admin, console_login};
use crate::outbox::free_port;
use crate::support::{Client, TestServer};

const HOSTILE_NAME: &str = "<img src=x onerror=\"window.pwned=11\"> CRM <b>sync</b>";
const HOSTILE_BODY: &str = "<script>window.pwned=12</script> call me";

#[tokio::test]
async fn an_admin_manages_tokens_and_webhooks_and_hostile_text_stays_text() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start_with(|c| {
        c.status.allow_private_webhooks = true;
        c.outbox.retry_min = std::time::Duration::from_millis(500);
        c.outbox.retry_max = std::time::Duration::from_secs(1);
    })
    .await;
    let site = server.site().await;
    admin(&server, &site, "ada@example.com", Role::Admin).await;
    let (ada, _) = server.login("ada@example.com", "password123").await;
    let (status, body) =
        server.post("/api/v1/admin/api-tokens", Some(&ada), json!({"name": HOSTILE_NAME, "scopes": ["read"]})).await;
    assert_eq!(status, 201, "{body}");
    // Nobody listens there: its deliveries wait, with an error to show.
    let hostile_url = format!("http://127.0.0.1:{}/hooks?a=\"><img src=x onerror=window.pwned=13>", free_port());
    let new = json!({"name": HOSTILE_NAME, "url": hostile_url, "events": ["offline_message.created"]});
    let (status, body) = server.post("/api/v1/admin/webhooks", Some(&ada), new).await;
    assert_eq!(status, 201, "{body}");
    let (_, vtoken) = server.visitor(&site).await;
    let mut visitor = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    visitor.send(json!({"type": "leave_message", "client_id": "x1", "body": HOSTILE_BODY})).await;
    visitor.wait_for(|f| f["type"] == "ack").await;

    let driver = Driver::start().await;
    let b = driver.browser(1280, 900).await;
    console_login(&b, &server, "ada@example.com", "password123").await;
    b.click_on("document.querySelector('#admin-tab')").await;
    b.wait_for("return document.querySelectorAll('#api-tokens tr').length === 1", LONG).await;
    b.wait_for("return document.querySelectorAll('#webhooks tr').length === 1", LONG).await;
    let shown = b
        .exec(
            "const t = document.querySelector('#api-tokens tr'), w = document.querySelector('#webhooks tr'); \
             return {token: t.cells[0].textContent, endpoint: w.cells[0].textContent, url: w.cells[1].textContent, \
             markup: document.querySelectorAll('#api-tokens img, #api-tokens b, #webhooks img, #webhooks b').length, \
             pwned: window.pwned || 0}",
            vec![],
        )
        .await;
    assert_eq!((shown["markup"].as_i64(), shown["pwned"].as_i64()), (Some(0), Some(0)), "{shown}");
    assert_eq!(shown["token"], HOSTILE_NAME, "{shown}");
    assert_eq!(shown["endpoint"], HOSTILE_NAME, "{shown}");
    assert!(shown["url"].as_str().unwrap().contains("/hooks?a="), "{shown}");

    // The delivery log: the waiting delivery, its error, the message as text.
    b.click_on("document.querySelector('#webhooks tr').cells[4].querySelectorAll('button')[1]").await;
    b.wait_for(
        "const r = document.querySelector('#webhook-log tr'); return r !== null && r.cells[4].textContent !== '—'",
        LONG,
    )
    .await;
    let log = b
        .exec(
            "const r = document.querySelector('#webhook-log tr'); \
             return {event: r.cells[1].firstChild.textContent, preview: r.cells[1].children[1].textContent, \
             markup: document.querySelectorAll('#webhook-log script, #webhook-log img').length, pwned: window.pwned || 0}",
            vec![],
        )
        .await;
    assert_eq!(log["event"], "offline_message.created", "{log}");
    assert_eq!(log["preview"], HOSTILE_BODY, "{log}");
    assert_eq!((log["markup"].as_i64(), log["pwned"].as_i64()), (Some(0), Some(0)), "{log}");
    b.click_on("document.querySelector('#webhook-log tr').cells[5].querySelector('button')").await;
    b.wait_for(
        "return document.querySelector('#toast') && /send again/i.test(document.querySelector('#toast').textContent)",
        LONG,
    )
    .await;

    // A new endpoint and a new token from the forms: each secret shown once.
    let name = b.el("document.querySelector('#w-name')").await;
    b.type_text(&name, "Slack").await;
    let url = b.el("document.querySelector('#w-url')").await;
    b.type_text(&url, "https://hooks.example/slack").await;
    b.click_on("document.querySelector('#webhook-form button[type=submit]')").await;
    b.wait_for("return document.querySelector('#webhook-secret-value').textContent.startsWith('whsec_')", LONG).await;
    b.wait_for("return document.querySelectorAll('#webhooks tr').length === 2", LONG).await;
    let first = b.exec("return document.querySelector('#webhook-secret-value').textContent", vec![]).await;

    // A new secret for it, shown once; then it is deleted.
    b.exec("window.confirm = (text) => { window.asked = text; return true; }", vec![]).await;
    let slack = "[...document.querySelectorAll('#webhooks tr')].find(r => r.cells[0].textContent === 'Slack')";
    b.click_on(&format!("{slack}.cells[4].querySelectorAll('button')[2]")).await;
    let script = format!(
        "const s = document.querySelector('#webhook-secret-value').textContent; return s.startsWith('whsec_') && s !== {first}"
    );
    b.wait_for(&script, LONG).await;
    let asked = b.exec("return window.asked", vec![]).await;
    assert!(asked.as_str().unwrap().contains("Slack"), "{asked}");
    b.click_on(&format!("{slack}.cells[4].querySelectorAll('button')[3]")).await;
    b.wait_for("return document.querySelectorAll('#webhooks tr').length === 1", LONG).await;
    let (_, list) = server.get("/api/v1/admin/webhooks", Some(&ada)).await;
    assert!(list.as_array().unwrap().iter().all(|w| w["name"] != "Slack"), "{list}");

    let token_name = b.el("document.querySelector('#t-name')").await;
    b.type_text(&token_name, "Reports").await;
    b.click_on("document.querySelector('#token-form button[type=submit]')").await;
    b.wait_for("return document.querySelector('#token-secret-value').textContent.startsWith('hf_')", LONG).await;
    b.wait_for("return document.querySelectorAll('#api-tokens tr').length === 2", LONG).await;

    // Disable the hostile endpoint.
    b.click_on("document.querySelector('#webhooks tr').cells[4].querySelector('button')").await;
    b.wait_for("return document.querySelector('#webhooks tr').cells[3].textContent === 'disabled'", LONG).await;
    let (_, list) = server.get("/api/v1/admin/webhooks", Some(&ada)).await;
    assert_eq!(list[0]["enabled"], false, "{list}");
    b.exec("document.querySelector('#a-tokens').scrollIntoView()", vec![]).await;
    b.screenshot(&screenshot_path("console-integrations.png")).await;
    b.close().await;
}
