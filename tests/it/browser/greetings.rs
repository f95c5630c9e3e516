//! A proactive greeting in a browser: a rule for the pricing page after 2
//! seconds fires there (not sooner) with its agent's name, and not on
//! another page; once shown, a reload does not show it again (once a
//! visit); on a phone it never covers the page (only the launcher's
//! badge). The visitor answers from the bubble: a normal chat, counted as
//! started by the rule in the admin's figures and named in the chat's
//! details, with a hostile rule name and message shown as text.

use std::time::{Duration, Instant};

use holdfast_server::store::Role;
use serde_json::json;

use super::webdriver::{Browser, Driver, screenshot_path};
use super::{HostPage, LONG, ONE_BROWSER_TEST, W, XSS, admin, console_login, widget_say};
use crate::support::TestServer;

/// A shop with a pricing page and an about page, both embedding the widget.
async fn shop(server: &TestServer, widget_key: &str) -> HostPage {
    let page = |title: &str| {
        format!(
            "<!doctype html><html><head><meta name=viewport content='width=device-width'><title>{title}</title></head>\
             <body><h1>{title}</h1><p>Plans and prices.</p>\
             <script async src=\"{}/widget.js\" data-site=\"{widget_key}\"></script></body></html>",
            server.base
        )
    };
    let (pricing, about) = (page("Pricing"), page("About us"));
    let app = axum::Router::new()
        .route("/pricing", axum::routing::get(move || async move { axum::response::Html(pricing) }))
        .route("/about", axum::routing::get(move || async move { axum::response::Html(about) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    HostPage { url: format!("http://localhost:{port}"), _task: task }
}

async fn bubble_shown(b: &Browser) -> bool {
    b.exec(&format!("const x = {W}.querySelector('.bubble'); return !!x && !x.hidden"), vec![]).await == json!(true)
}

async fn loaded(b: &Browser) {
    b.wait_for(&format!("return !!{W} && !!{W}.querySelector('.launcher')"), LONG).await;
}

#[tokio::test]
async fn a_greeting_fires_after_its_seconds_on_a_matching_page_and_not_on_another() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    admin(&server, &site, "ada@example.com", Role::Admin).await;
    let ann = server.person(&site, "ann@example.com", "Ann", Role::Agent).await;
    let (ada, _) = server.login("ada@example.com", "password123").await;
    let rule =
        json!({"name": XSS, "url_pattern": "*/pricing*", "min_seconds": 2, "from_agent_id": ann.id, "message": XSS});
    let (status, rule) = server.post("/api/v1/admin/greetings", Some(&ada), rule).await;
    assert_eq!(status, 201, "{rule}");
    let (mut agent, _) = server.online_agent("ann@example.com").await;
    let shop = shop(&server, &site.widget_key).await;
    let driver = Driver::start().await;

    // Another page: nothing, however long the visitor stays.
    let b = driver.browser(1280, 900).await;
    b.goto(&format!("{}/about", shop.url)).await;
    loaded(&b).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!bubble_shown(&b).await, "a greeting showed on the about page");

    // The pricing page: nothing at first, then the greeting, from Ann.
    let started = Instant::now();
    b.goto(&format!("{}/pricing", shop.url)).await;
    loaded(&b).await;
    assert!(!bubble_shown(&b).await, "the greeting showed before its 2 seconds");
    b.wait_for(&format!("const x = {W}.querySelector('.bubble'); return !!x && !x.hidden"), LONG).await;
    assert!(started.elapsed() >= Duration::from_millis(1900), "shown after {:?}", started.elapsed());
    let shown = b
        .exec(
            &format!(
                "const x = {W}.querySelector('.bubble'); return {{from: x.querySelector('strong').textContent, \
                 text: x.querySelector('div').textContent, badge: {W}.querySelector('.badge').textContent, \
                 markup: {W}.querySelectorAll('img').length, pwned: window.pwned || 0}}"
            ),
            vec![],
        )
        .await;
    assert_eq!(shown["from"], "Ann", "{shown}");
    assert_eq!(shown["text"], XSS, "{shown}");
    assert_eq!(shown["badge"], "1", "{shown}");
    assert_eq!((shown["markup"].as_i64(), shown["pwned"].as_i64()), (Some(0), Some(0)), "{shown}");
    b.screenshot(&screenshot_path("widget-greeting.png")).await;

    // Once a visit: a reload of the pricing page shows it no more.
    b.goto(&format!("{}/pricing", shop.url)).await;
    loaded(&b).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!bubble_shown(&b).await, "the greeting showed twice in one visit");

    // Answering, in a new visit: the bubble opens the panel; the chat reaches Ann.
    b.close().await;
    let b = driver.browser(1280, 900).await;
    b.goto(&format!("{}/pricing", shop.url)).await;
    loaded(&b).await;
    b.wait_for(&format!("const x = {W}.querySelector('.bubble'); return !!x && !x.hidden"), LONG).await;
    b.click_on(&format!("{W}.querySelector('.bubble')")).await;
    b.wait_for(&format!("return !{W}.querySelector('.panel').hidden && {W}.querySelector('.bubble').hidden"), LONG)
        .await;
    b.click_on(&format!("{W}.querySelector('.prechat button')")).await;
    widget_say(&b, "Is there a yearly plan?").await;
    let msg = agent.wait_for(|f| f["type"] == "message").await;
    let conv = msg["conv"].as_str().unwrap();
    let rule_id = rule["id"].as_str().unwrap();
    assert_eq!(server.state.store.greeting_of(conv).await.unwrap().as_deref(), Some(rule_id));
    b.close().await;

    // On a phone the greeting never covers the page: the badge only.
    let phone = driver.phone(390, 800).await;
    phone.goto(&format!("{}/pricing", shop.url)).await;
    loaded(&phone).await;
    phone.wait_for(&format!("return {W}.querySelector('.badge').textContent === '1'"), LONG).await;
    let covered = phone
        .exec(&format!("const x = {W}.querySelector('.bubble'); return getComputedStyle(x).display"), vec![])
        .await;
    assert_eq!(covered, "none");
    phone.close().await;

    // The admin's figures, the rule's hostile name as text.
    let console = driver.browser(1280, 1000).await;
    console_login(&console, &server, "ada@example.com", "password123").await;
    // The chat's details say which greeting started it, as text.
    let in_list = format!("document.querySelector('#all button[data-conv=\"{conv}\"]')");
    console.wait_for(&format!("return !!{in_list}"), LONG).await;
    console.click_on(&in_list).await;
    console
        .wait_for(
            "return [...document.querySelectorAll('#details dt')].some(d => d.textContent === 'Greeted by')",
            LONG,
        )
        .await;
    let details = console
        .exec(
            "const dt = [...document.querySelectorAll('#details dt')].find(d => d.textContent === 'Greeted by'); \
             return {text: dt.nextElementSibling.textContent, markup: document.querySelectorAll('#details img').length, pwned: window.pwned || 0}",
            vec![],
        )
        .await;
    assert_eq!(details["text"], format!("{XSS}: {XSS}"), "{details}");
    assert_eq!((details["markup"].as_i64(), details["pwned"].as_i64()), (Some(0), Some(0)), "{details}");
    console.click_on("document.querySelector('#admin-tab')").await;
    console.wait_for("return document.querySelectorAll('#greetings tr').length === 1", LONG).await;
    let row = console
        .exec(
            "const r = document.querySelector('#greetings tr'); return {name: r.cells[0].textContent, \
             shown: r.cells[4].textContent, started: r.cells[5].textContent, markup: document.querySelectorAll('#greetings img').length, \
             pwned: window.pwned || 0}",
            vec![],
        )
        .await;
    assert_eq!(row["name"], XSS, "{row}");
    assert_eq!((row["shown"].as_str(), row["started"].as_str()), (Some("3"), Some("1")), "{row}");
    assert_eq!((row["markup"].as_i64(), row["pwned"].as_i64()), (Some(0), Some(0)), "{row}");
    // The Reports tab shows the same figures, the name as text.
    console.click_on("document.querySelector('#reports-tab')").await;
    console.wait_for("return document.querySelectorAll('#r-greeting-rows tr').length === 1", LONG).await;
    let report = console
        .exec(
            "const r = document.querySelector('#r-greeting-rows tr'); return {name: r.cells[0].textContent, \
             shown: r.cells[1].textContent, started: r.cells[2].textContent, markup: document.querySelectorAll('#r-greeting-rows img').length, \
             pwned: window.pwned || 0}",
            vec![],
        )
        .await;
    assert_eq!(report["name"], XSS, "{report}");
    assert_eq!((report["shown"].as_str(), report["started"].as_str()), (Some("3"), Some("1")), "{report}");
    assert_eq!((report["markup"].as_i64(), report["pwned"].as_i64()), (Some(0), Some(0)), "{report}");
    console.close().await;
    agent.close().await;
}

/// The text of the greeting bubble, once one shows.
async fn greeting_text(b: &Browser) -> String {
    b.wait_for(&format!("const x = {W}.querySelector('.bubble'); return !!x && !x.hidden"), LONG).await;
    let text = b.exec(&format!("return {W}.querySelector('.bubble div').textContent"), vec![]).await;
    text.as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_first_visit_gets_the_new_visitors_greeting_and_a_later_visit_the_returning_ones() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    admin(&server, &site, "ada@example.com", Role::Admin).await;
    server.person(&site, "ann@example.com", "Ann", Role::Agent).await;
    let (ada, _) = server.login("ada@example.com", "password123").await;
    for (visitor, message) in [("new", "First time here?"), ("returning", "Welcome back!")] {
        let rule = json!({"name": visitor, "url_pattern": "*/about*", "visitor": visitor, "message": message});
        let (status, rule) = server.post("/api/v1/admin/greetings", Some(&ada), rule).await;
        assert_eq!(status, 201, "{rule}");
    }
    let (agent, _) = server.online_agent("ann@example.com").await;
    let shop = shop(&server, &site.widget_key).await;
    let driver = Driver::start().await;
    let b = driver.browser(1280, 900).await;

    // This browser's first visit: the new visitor's greeting.
    b.goto(&format!("{}/about", shop.url)).await;
    loaded(&b).await;
    assert_eq!(greeting_text(&b).await, "First time here?");
    // A later visit (a new tab: this tab's visit forgotten, the browser's
    // memory kept), then another: the returning visitor's, each time.
    for _ in 0..2 {
        b.exec("sessionStorage.clear(); return true", vec![]).await;
        b.goto(&format!("{}/about", shop.url)).await;
        loaded(&b).await;
        assert_eq!(greeting_text(&b).await, "Welcome back!");
    }
    b.close().await;
    // Each showing was counted for its own rule (the widget reports it as
    // it shows the bubble, so the last may still be on its way).
    let expected = [(json!("new"), json!(1)), (json!("returning"), json!(2))];
    let deadline = Instant::now() + LONG;
    loop {
        let (_, rules) = server.get("/api/v1/admin/greetings", Some(&ada)).await;
        let shown: Vec<_> =
            rules.as_array().unwrap().iter().map(|r| (r["visitor"].clone(), r["shown"].clone())).collect();
        if shown == expected {
            break;
        }
        assert!(Instant::now() < deadline, "counted {shown:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.close().await;
}
