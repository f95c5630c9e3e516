//! "Email me this conversation": when an agent ends the chat, the widget
//! offers the transcript, prefilled with the pre-chat address; the email
//! that arrives (at a real SMTP server) holds every message.

use std::time::Duration;

use serde_json::json;

use super::webdriver::{Driver, screenshot_path};
use super::{LONG, ONE_BROWSER_TEST, W, host_page, open_widget, wait_widget_text, widget_say};
use crate::outbox::{SmtpServer, free_port, relay};
use crate::support::TestServer;

#[tokio::test]
async fn a_visitor_gets_the_transcript_they_ask_for_when_the_chat_ends() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let port = free_port();
    let mut smtp = SmtpServer::start(port);
    let server = TestServer::start_with(|c| {
        c.status.smtp = Some(relay(port));
    })
    .await;
    let site = server.site().await;
    server.agent(&site, "wa@example.com", 5).await;
    let (mut agent, _) = server.online_agent("wa@example.com").await;
    let page = host_page(&server, &site.widget_key).await;
    let driver = Driver::start().await;
    let b = driver.browser(1280, 900).await;
    b.goto(&page.url).await;
    open_widget(&b).await;
    for (name, text) in [("name", "Vera"), ("email", "vera@example.com")] {
        let input = b.el(&format!("{W}.querySelector('.prechat input[name={name}]')")).await;
        b.type_text(&input, text).await;
    }
    b.click_on(&format!("{W}.querySelector('.prechat button')")).await;
    widget_say(&b, "Hello, where is <my> order?").await;
    let msg = agent.wait_for(|f| f["type"] == "message" && f["body"] == "Hello, where is <my> order?").await;
    let conv = msg["conv"].as_str().unwrap().to_owned();
    assert_eq!(agent.say(Some(&conv), "r1", "It left today & arrives Friday").await["type"], "ack");
    wait_widget_text(&b, "It left today & arrives Friday").await;

    // The agent ends the chat: the widget offers the transcript.
    agent.send(json!({"type": "close", "conv": conv})).await;
    let form = format!("{W}.querySelector('.transcript')");
    b.wait_for(&format!("return {form} !== null"), LONG).await;
    let prefilled = b.exec(&format!("return {form}.querySelector('input').value"), vec![]).await;
    assert_eq!(prefilled, "vera@example.com");
    b.screenshot(&screenshot_path("widget-transcript.png")).await;
    b.click_on(&format!("{form}.querySelector('button')")).await;
    b.wait_for(
        &format!("return [...{W}.querySelectorAll('.sys')].some(e => e.textContent.includes('email this conversation to vera@example.com'))"),
        LONG,
    )
    .await;

    let mail = smtp.receive(1, Duration::from_secs(15)).await;
    assert_eq!(mail[0]["rcpt_tos"][0], "vera@example.com");
    let text = mail[0]["text"].as_str().unwrap();
    for line in ["Vera: Hello, where is <my> order?", "wa: It left today & arrives Friday", "-- The chat ended --"] {
        assert!(text.contains(line), "{line:?} missing from {text}");
    }
    let html = mail[0]["html"].as_str().unwrap();
    assert!(html.contains("where is &lt;my&gt; order?") && !html.contains("<my>"), "{html}");
    b.close().await;
    agent.close().await;
}
