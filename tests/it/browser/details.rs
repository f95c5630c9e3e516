//! The visitor's details move while the agent watches: the visitor goes to
//! another page of the shop and the console's details show it within
//! seconds, with no reload; a hostile page address stays a link's text.

use holdfast_server::store::Role;

use super::webdriver::Driver;
use super::{
    HostPage, LONG, ONE_BROWSER_TEST, W, admin, b_skip_prechat, console_go_online, console_login, open_widget,
    wait_console_text, widget_say,
};
use crate::support::TestServer;

/// A shop of two pages embedding the widget.
async fn shop(server: &TestServer, widget_key: &str) -> HostPage {
    let page = format!(
        "<!doctype html><html><head><title>Shop</title></head><body><h1>Shop</h1>\
         <script async src=\"{}/widget.js\" data-site=\"{widget_key}\"></script></body></html>",
        server.base
    );
    let other = page.clone();
    let app = axum::Router::new()
        .route("/shoes", axum::routing::get(move || async move { axum::response::Html(page) }))
        .route("/checkout", axum::routing::get(move || async move { axum::response::Html(other) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    HostPage { url: format!("http://localhost:{port}"), _task: task }
}

/// The console's details row `key`, as text.
async fn detail(b: &super::webdriver::Browser, key: &str) -> String {
    let script = format!(
        "const d = [...document.querySelectorAll('#details dd')].find(d => d.dataset.k === '{key}'); return d ? d.textContent : ''"
    );
    b.exec(&script, vec![]).await.as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn the_visitors_page_moves_in_the_console_while_the_agent_watches() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    admin(&server, &site, "ada@example.com", Role::Admin).await;
    let shop = shop(&server, &site.widget_key).await;
    let driver = Driver::start().await;
    let console = driver.browser(1280, 1000).await;
    console_login(&console, &server, "ada@example.com", "password123").await;
    console_go_online(&console).await;

    // A visitor on the shoes page writes; Ada opens the chat.
    let visitor = driver.browser(1280, 900).await;
    visitor.goto(&format!("{}/shoes", shop.url)).await;
    open_widget(&visitor).await;
    b_skip_prechat(&visitor).await;
    widget_say(&visitor, "Do these come in blue?").await;
    console.wait_for("return !!document.querySelector('#mine button')", LONG).await;
    console.click_on("document.querySelector('#mine button')").await;
    wait_console_text(&console, "Do these come in blue?").await;
    console
        .wait_for("return [...document.querySelectorAll('#details dd')].some(d => d.dataset.k === 'Page' && d.textContent.endsWith('/shoes'))", LONG)
        .await;
    let first_seen = detail(&console, "Last seen").await;

    // The visitor goes on to the checkout, with a hostile query: the
    // console shows the new page on its own, as a link's text.
    let hostile = "/checkout?q=%3Cimg%20src%3Dx%20onerror%3D%22window.pwned%3D1%22%3E";
    visitor.goto(&format!("{}{hostile}", shop.url)).await;
    visitor.wait_for(&format!("return !!{W} && !!{W}.querySelector('.launcher')"), LONG).await;
    console
        .wait_for("return [...document.querySelectorAll('#details dd')].some(d => d.dataset.k === 'Page' && d.textContent.includes('/checkout'))", LONG)
        .await;
    let page = detail(&console, "Page").await;
    assert!(page.ends_with(hostile), "{page}");
    let markup =
        console.exec("return [document.querySelectorAll('#details dd img').length, window.pwned || 0]", vec![]).await;
    assert_eq!(markup, serde_json::json!([0, 0]));
    assert!(!first_seen.is_empty() && !detail(&console, "Time on site").await.is_empty());
    visitor.close().await;
    console.close().await;
}
