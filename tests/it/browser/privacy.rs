//! A person's data in browsers: an admin in the chat erases its visitor
//! (hostile name) from the visitor panel after confirming; the open chat
//! then shows tombstones where the words were, and the visitor's details
//! are gone. The admin sets the site's retention in days from the Admin
//! tab, and the value the server stores is the one typed, other settings
//! unchanged.

use holdfast_server::store::Role;

use super::webdriver::Driver;
use super::{LONG, ONE_BROWSER_TEST, admin};
use crate::support::TestServer;

const HOSTILE_NAME: &str = "<img src=x onerror=\"window.pwned=12\"> Zoe <b>bold</b>";

#[tokio::test]
async fn an_admin_erases_a_visitor_from_the_chat_and_sets_retention() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    admin(&server, &site, "ada@example.com", Role::Admin).await;
    let driver = Driver::start().await;

    // Ada, an admin, is online; Zoe writes from the widget.
    let super::ConsoleChat { console, widget, conv, .. } =
        super::console_chat(&driver, &server, "ada@example.com", "call me on 555-0142", HOSTILE_NAME).await;

    // She opens the chat and erases its visitor.
    console.click_on("document.querySelector('#mine button')").await;
    console.wait_for("return !!document.querySelector('#details button.erase')", LONG).await;
    console.wait_for("return document.querySelector('#log').textContent.includes('555-0142')", LONG).await;
    console.exec("window.confirm = () => true", vec![]).await;
    console.click_on("document.querySelector('#details button.erase')").await;
    let visitor = server.state.store.visitor(&conv.visitor_id).await.unwrap().unwrap();
    let start = std::time::Instant::now();
    let mut visitor = visitor;
    while visitor.name.is_some() {
        assert!(start.elapsed() < LONG, "the erase button did nothing");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        visitor = server.state.store.visitor(&conv.visitor_id).await.unwrap().unwrap();
    }
    // The chat, read again, shows the tombstone, not the words.
    console.goto(&format!("{}/console", server.base)).await;
    console.wait_for("return !!document.querySelector('#mine button')", LONG).await;
    console.click_on("document.querySelector('#mine button')").await;
    console.wait_for("return document.querySelector('#log').textContent.includes('(message erased)')", LONG).await;
    let text = console.exec("return document.querySelector('#log').textContent", vec![]).await;
    assert!(!text.as_str().unwrap().contains("555-0142"), "{text}");
    let pwned = console.exec("return window.pwned || null", vec![]).await;
    assert!(pwned.is_null());

    // Retention, set from the Admin tab.
    console.click_on("document.querySelector('#admin-tab')").await;
    console.wait_for("return document.querySelector('#s-retention').value === '0'", LONG).await;
    console.exec("document.querySelector('#s-retention').value = ''", vec![]).await;
    let days = console.el("document.querySelector('#s-retention')").await;
    console.type_text(&days, "30").await;
    console.click_on("document.querySelector('#settings-form button[type=submit]')").await;
    console.wait_for("return document.querySelector('#settings-status').textContent === 'Saved'", LONG).await;
    let stored = server.state.store.site(&site.id).await.unwrap().unwrap().settings;
    assert_eq!(stored["retention_days"], 30, "{stored}");
    assert_eq!(stored["greeting"], "Hi! How can we help?", "the rest as it was: {stored}");
    widget.close().await;
    console.close().await;
}
