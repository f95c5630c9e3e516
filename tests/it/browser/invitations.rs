//! Invitations in the console: a site's admin invites a person whose
//! typed name is hostile, sees the invitation waiting (as text), and the
//! person opens the emailed link in a browser, chooses a password and
//! lands in the console, logged in.

use std::time::Duration;

use holdfast_server::store::Role;

use super::webdriver::Driver;
use super::{LONG, ONE_BROWSER_TEST, admin, console_login};
use crate::outbox::{SmtpServer, free_port, relay};
use crate::support::TestServer;

const HOSTILE_NAME: &str = "<img src=x onerror=\"window.pwned=9\"> Ivy <b>bold</b>";

#[tokio::test]
async fn an_admin_invites_someone_who_accepts_from_the_emailed_link() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let port = free_port();
    let mut smtp = SmtpServer::start(port);
    let server = TestServer::start_with(|c| c.status.smtp = Some(relay(port))).await;
    let site = server.site().await;
    admin(&server, &site, "ada@example.com", Role::Admin).await;

    let driver = Driver::start().await;
    let b = driver.browser(1280, 900).await;
    console_login(&b, &server, "ada@example.com", "password123").await;
    b.click_on("document.querySelector('#admin-tab')").await;
    b.wait_for("return document.querySelector('#widget-key').textContent.startsWith('wk_')", LONG).await;
    // A site's admin invites: no password field, no note about mail.
    let shown = b
        .exec(
            "return [document.querySelector('#n-password-label').hidden, document.querySelector('#invite-note').hidden]",
            vec![],
        )
        .await;
    assert_eq!(shown, serde_json::json!([true, true]));
    for (id, text) in [("#n-name", HOSTILE_NAME), ("#n-email", "ivy@example.com")] {
        let input = b.el(&format!("document.querySelector('{id}')")).await;
        b.type_text(&input, text).await;
    }
    b.click_on("document.querySelector('#agent-form button')").await;
    b.wait_for("return document.querySelector('#invitations tr[data-invitation=\"ivy@example.com\"]')", LONG).await;
    let row = b.exec("return document.querySelector('#invitations tr').cells[0].textContent", vec![]).await;
    assert_eq!(row.as_str(), Some(HOSTILE_NAME), "the name is text");
    let bold = b.exec("return document.querySelectorAll('#invitations b, #invitations img').length", vec![]).await;
    assert_eq!(bold, 0);

    // The person opens the link from their email in a browser of their own.
    let mail = smtp.receive(1, Duration::from_secs(15)).await.remove(0);
    let text = mail["text"].as_str().unwrap();
    let link = text.lines().find(|l| l.contains("/console#invite=")).expect("a link").trim().to_owned();
    assert!(link.starts_with(&server.base), "{link}");
    let ivy = driver.browser(1280, 900).await;
    ivy.goto(&link).await;
    ivy.wait_for("return !document.querySelector('#accept').hidden", LONG).await;
    let password = ivy.el("document.querySelector('#accept-password')").await;
    ivy.type_text(&password, "ivy-secret-1").await;
    ivy.click_on("document.querySelector('#accept-form button')").await;
    ivy.wait_for("return !document.querySelector('#app').hidden", LONG).await;
    let me = ivy.exec("return document.querySelector('#me').textContent", vec![]).await;
    assert!(me.as_str().unwrap().contains("Ivy"), "{me}");
    let url = ivy.exec("return location.hash", vec![]).await;
    assert_eq!(url.as_str(), Some(""), "the token leaves the address bar");
    let pwned = ivy.exec("return window.pwned || null", vec![]).await;
    assert!(pwned.is_null());

    // The admin's list, read again: the invitation is gone, the agent is there.
    b.click_on("document.querySelector('#chats-tab')").await;
    b.click_on("document.querySelector('#admin-tab')").await;
    b.wait_for("return document.querySelector('#agents tr[data-email=\"ivy@example.com\"]')", LONG).await;
    b.wait_for("return document.querySelector('#invitations-table').hidden", LONG).await;
    let pwned = b.exec("return window.pwned || null", vec![]).await;
    assert!(pwned.is_null());
    ivy.close().await;
    b.close().await;
}
