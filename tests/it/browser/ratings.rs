//! Post-chat rating in browsers: the agent ends the chat from the console,
//! the widget asks how it was, the visitor rates it with a comment, and
//! the console shows the rating live — a hostile comment as plain text.

use super::webdriver::{Driver, screenshot_path};
use super::{LONG, ONE_BROWSER_TEST, W, b_skip_prechat, console_go_online, console_login, host_page, open_widget};
use super::{wait_console_text, widget_say};
use crate::support::TestServer;

const HOSTILE: &str = "<img src=x onerror=\"window.pwned=1\"><b>Best</b> help ever";

#[tokio::test]
async fn the_visitor_rates_a_closed_chat_and_the_agent_sees_it_live() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    server.agent(&site, "rae@example.com", 5).await;
    let page = host_page(&server, &site.widget_key).await;
    let driver = Driver::start().await;
    let console = driver.browser(1280, 900).await;
    let visitor = driver.browser(1280, 900).await;

    console_login(&console, &server, "rae@example.com", "password123").await;
    console_go_online(&console).await;
    visitor.goto(&page.url).await;
    open_widget(&visitor).await;
    b_skip_prechat(&visitor).await;
    widget_say(&visitor, "Can I change my order?").await;
    console.click_on("document.querySelector('#mine button')").await;
    wait_console_text(&console, "Can I change my order?").await;

    // The agent ends the chat: the widget asks for a rating.
    console.click_on("document.querySelector('#close')").await;
    let form = format!("{W}.querySelector('.rate')");
    visitor.wait_for(&format!("return {form} !== null"), LONG).await;
    let comment = visitor.el(&format!("{form}.querySelector('textarea')")).await;
    visitor.type_text(&comment, HOSTILE).await;
    visitor.screenshot(&screenshot_path("widget-rating.png")).await;
    visitor
        .click_on(&format!("[...{form}.querySelectorAll('button')].find(b => b.textContent.includes('Good'))"))
        .await;
    visitor
        .wait_for(
            &format!("return [...{W}.querySelectorAll('.sys')].some(e => e.textContent === 'Thanks for your rating!')"),
            LONG,
        )
        .await;

    // The console, still on the conversation, shows it at once: as text.
    console.wait_for("return document.querySelector('#log .rating') !== null", LONG).await;
    let shown = console
        .exec(
            "const r = document.querySelector('#log .rating'); return {text: r.firstChild.textContent, \
             comment: r.querySelector('.comment').textContent, elements: r.querySelectorAll('img, b, script').length, \
             pwned: window.pwned || 0, ratings: document.querySelectorAll('#log .rating').length}",
            vec![],
        )
        .await;
    assert!(shown["text"].as_str().unwrap().ends_with("rated the chat 👍 good"), "{shown}");
    assert_eq!(shown["comment"], HOSTILE, "{shown}");
    assert_eq!(shown["elements"], 0, "{shown}");
    assert_eq!(shown["pwned"], 0, "{shown}");
    assert_eq!(shown["ratings"], 1, "{shown}");
    console.screenshot(&screenshot_path("console-rating.png")).await;

    // Stored once.
    let conv = server.state.store.conversations(&site.id, Default::default()).await.unwrap().remove(0);
    let events = server.state.store.events_after(&conv.id, 0, 100).await.unwrap();
    let ratings: Vec<_> = events.iter().filter(|e| e.kind == "rating").collect();
    assert_eq!(ratings.len(), 1);
    assert_eq!(ratings[0].data["comment"], HOSTILE);
    console.close().await;
    visitor.close().await;
    server.stop().await;
}
