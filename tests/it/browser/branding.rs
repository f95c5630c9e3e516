//! The team in the widget: an admin names the team (a hostile name), gives
//! its picture's URL and says how soon it typically replies, in the
//! console's Admin tab; a visitor's widget then shows the name as text,
//! the picture, and the reply line, until an agent joins and the header
//! names them. Settings the widget could be harmed by are refused.

use holdfast_server::store::Role;
use serde_json::json;

use super::webdriver::{Driver, screenshot_path};
use super::{HostPage, LONG, ONE_BROWSER_TEST, W, XSS, admin, b_skip_prechat, console_login, open_widget, widget_say};
use crate::support::TestServer;

/// A one-pixel PNG.
const PNG: &[u8] = &[
    137, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 13, 73, 72, 68, 82, 0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 31, 21, 196,
    137, 0, 0, 0, 13, 73, 68, 65, 84, 120, 218, 99, 100, 248, 207, 80, 15, 0, 3, 134, 1, 128, 90, 52, 125, 107, 0, 0,
    0, 0, 73, 69, 78, 68, 174, 66, 96, 130,
];

/// The shop's page, embedding the widget, and the team's picture beside it.
async fn shop(server: &TestServer, widget_key: &str) -> HostPage {
    let html = format!(
        "<!doctype html><html><head><meta name=viewport content='width=device-width'><title>Shop</title></head>\
         <body><h1>Shop</h1><script async src=\"{}/widget.js\" data-site=\"{widget_key}\"></script></body></html>",
        server.base
    );
    let app = axum::Router::new()
        .route("/", axum::routing::get(move || async move { axum::response::Html(html) }))
        .route("/team.png", axum::routing::get(|| async { ([(axum::http::header::CONTENT_TYPE, "image/png")], PNG) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    HostPage { url: format!("http://localhost:{port}/"), _task: task }
}

#[tokio::test]
async fn the_widget_shows_the_team_its_picture_and_how_soon_it_replies() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    admin(&server, &site, "ada@example.com", Role::Admin).await;
    server.person(&site, "ann@example.com", "Ann", Role::Agent).await;
    let page = shop(&server, &site.widget_key).await;
    let logo = format!("{}team.png", page.url);

    // Bad values are refused with the reason.
    let (ada, _) = server.login("ada@example.com", "password123").await;
    let (_, view) = server.get("/api/v1/admin/site", Some(&ada)).await;
    for (field, bad) in [
        ("logo_url", json!("javascript:alert(1)")),
        ("logo_url", json!("data:image/png;base64,AAAA")),
        ("logo_url", json!("https://user:pw@shop.example/a.png")),
        ("logo_url", json!(format!("https://shop.example/{}", "a".repeat(2048)))),
        ("team_name", json!("a".repeat(61))),
        ("team_name", json!("two\nlines")),
        ("reply_time", json!("soon")),
    ] {
        let mut settings = view["settings"].clone();
        settings[field] = bad.clone();
        let res = server.http.put(format!("{}/api/v1/admin/site/settings", server.base)).bearer_auth(&ada);
        let res = res.json(&settings).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 400, "{field} = {bad}");
    }

    // Ada sets the team from the Admin tab.
    let driver = Driver::start().await;
    let console = driver.browser(1280, 1000).await;
    console_login(&console, &server, "ada@example.com", "password123").await;
    console.click_on("document.querySelector('#admin-tab')").await;
    console.wait_for("return document.querySelector('#s-reply-time').value === 'none'", LONG).await;
    let team = console.el("document.querySelector('#s-team')").await;
    console.type_text(&team, XSS.chars().take(60).collect::<String>().trim()).await;
    let picture = console.el("document.querySelector('#s-logo')").await;
    console.type_text(&picture, &logo).await;
    console.exec("document.querySelector('#s-reply-time').value = 'minutes'", vec![]).await;
    console.click_on("document.querySelector('#settings-form button[type=submit]')").await;
    // The form says how the save went: "Saved", or the server's error.
    let said = console.wait_for("return document.querySelector('#settings-status').textContent || false", LONG).await;
    assert_eq!(said, "Saved", "the settings were not saved");
    let stored = server.state.store.site(&site.id).await.unwrap().unwrap().settings;
    let name: String = XSS.chars().take(60).collect::<String>().trim().to_owned();
    assert_eq!((stored["team_name"].as_str(), stored["logo_url"].as_str()), (Some(name.as_str()), Some(logo.as_str())));
    assert_eq!(stored["reply_time"], "minutes", "{stored}");
    console.close().await;

    // A visitor sees the team, as text, with its picture and reply line.
    let (mut agent, _) = server.online_agent("ann@example.com").await;
    let visitor = driver.browser(1280, 900).await;
    visitor.goto(&page.url).await;
    open_widget(&visitor).await;
    let header = format!(
        "const r = {W}; const img = r.querySelector('header .avatar img'); \
         return {{title: r.querySelector('header .title').textContent, sub: r.querySelector('header .sub').textContent, \
                 src: img && img.src, width: img && img.complete ? img.naturalWidth : 0, \
                 markup: r.querySelectorAll('header b, header script').length, pwned: window.pwned || 0}}"
    );
    let loaded = format!(
        "const img = {W}.querySelector('header .avatar img'); return !!img && img.complete && img.naturalWidth === 1"
    );
    visitor.wait_for(&loaded, LONG).await;
    let shown = visitor.exec(&header, vec![]).await;
    assert_eq!(shown["title"], name.as_str(), "{shown}");
    assert_eq!(shown["sub"], "Typically replies in a few minutes", "{shown}");
    assert_eq!(shown["src"], logo.as_str(), "{shown}");
    assert_eq!((shown["markup"].as_i64(), shown["pwned"].as_i64()), (Some(0), Some(0)), "{shown}");
    visitor.screenshot(&screenshot_path("widget-team.png")).await;

    // Once Ann joins, the header names her.
    b_skip_prechat(&visitor).await;
    widget_say(&visitor, "Hello team").await;
    agent.wait_for(|f| f["type"] == "assigned").await;
    visitor.wait_for(&format!("return {W}.querySelector('header .title').textContent === 'Ann'"), LONG).await;
    let after = visitor.exec(&header, vec![]).await;
    assert_eq!((after["sub"].as_str(), after["src"].as_str()), (Some(""), None), "{after}");
    visitor.close().await;
    agent.close().await;
}
