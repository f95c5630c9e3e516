//! An integration's message (REST, an API token with a hostile name and a
//! hostile body) in the widget and the console: both say whose it is, by
//! the token's name, and show name and body as text (no element, no
//! script).

use holdfast_server::store::Role;
use serde_json::json;

use super::webdriver::Driver;
use super::{LONG, ONE_BROWSER_TEST, W, admin};
use crate::support::TestServer;

const HOSTILE_NAME: &str = "CRM <img src=x onerror=\"window.pwned=1\">";
const HOSTILE_BODY: &str = "Order <script>window.pwned=2</script><b>shipped</b>";

#[tokio::test]
async fn an_integrations_message_shows_its_name_as_text_in_widget_and_console() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    admin(&server, &site, "nia@example.com", Role::Admin).await;
    let driver = Driver::start().await;
    let super::ConsoleChat { console, widget, conv, .. } =
        super::console_chat(&driver, &server, "nia@example.com", "Where is my order?", "Olga").await;

    console.click_on("document.querySelector('#mine button')").await;
    let (session, _) = server.login("nia@example.com", "password123").await;
    let made = json!({"name": HOSTILE_NAME, "scopes": ["write"]});
    let (status, token) = server.post("/api/v1/admin/api-tokens", Some(&session), made).await;
    assert_eq!(status, 201, "{token}");
    let path = format!("/api/v1/conversations/{}/messages", conv.id);
    let (status, sent) =
        server.post(&path, Some(token["secret"].as_str().unwrap()), json!({"body": HOSTILE_BODY})).await;
    assert_eq!(status, 201, "{sent}");

    // The widget: the token's name above the message, both as text.
    let from = format!("[...{W}.querySelectorAll('.msg .from')]");
    widget.wait_for(&format!("return {from}.some(e => e.textContent === {})", json!(HOSTILE_NAME)), LONG).await;
    let text = widget.exec(&format!("return {from}[0].parentElement.textContent"), vec![]).await;
    assert_eq!(text.as_str().unwrap(), format!("{HOSTILE_NAME}{HOSTILE_BODY}"));
    let elements =
        widget.exec(&format!("return {W}.querySelectorAll('.log img, .log script, .log b').length"), vec![]).await;
    assert_eq!(elements, 0, "nothing of the name or body became an element");

    // The console: "<name> (integration)" as the author, not the agent.
    let who = "[...document.querySelectorAll('#log .msg .who')]";
    let script =
        format!("return {who}.some(e => e.textContent.startsWith({}))", json!(format!("{HOSTILE_NAME} (integration)")));
    console.wait_for(&script, LONG).await;
    let body = console
        .exec(
            &format!("return {who}.find(e => e.textContent.includes('(integration)')).parentElement.textContent"),
            vec![],
        )
        .await;
    assert!(body.as_str().unwrap().ends_with(HOSTILE_BODY), "{body}");
    let elements =
        console.exec("return document.querySelectorAll('#log img, #log script, #log b').length", vec![]).await;
    assert_eq!(elements, 0);
    for b in [&console, &widget] {
        assert!(b.exec("return window.pwned || null", vec![]).await.is_null(), "no script ran");
    }
    widget.close().await;
    console.close().await;
}
