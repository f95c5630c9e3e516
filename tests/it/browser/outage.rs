//! A node that cannot reach its store answers a widget's resume with
//! `unavailable`. The widget keeps its visitor, its chat and what the
//! visitor wrote meanwhile, tries again, and when the store is back the
//! chat goes on where it was: the same token, each message once.

use std::time::{Duration, Instant};

use holdfast_server::store::FaultMode;

use super::webdriver::Driver;
use super::{LONG, ONE_BROWSER_TEST, W, host_page, open_widget, wait_widget_text, widget_messages, widget_say};
use crate::support::TestServer;

/// The widget's saved visitor token, from the page's storage.
const TOKEN: &str = "return Object.entries(localStorage).filter(([k]) => /^holdfast:[^:]+$/.test(k))\
                     .map(([, v]) => JSON.parse(v).token)[0] || null";

#[tokio::test]
async fn a_widget_turned_away_while_the_store_is_down_keeps_its_visitor_and_chat() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start_with(|c| c.fault_injection = true).await;
    let site = server.site().await;
    server.agent(&site, "wo@example.com", 5).await;
    let (mut agent, _) = server.online_agent("wo@example.com").await;
    let page = host_page(&server, &site.widget_key).await;
    let driver = Driver::start().await;
    let b = driver.browser(1280, 900).await;
    b.goto(&page.url).await;
    open_widget(&b).await;
    b.click_on(&format!("{W}.querySelector('.prechat button')")).await;
    widget_say(&b, "Before the outage").await;
    let msg = agent.wait_for(|f| f["type"] == "message" && f["body"] == "Before the outage").await;
    let conv = msg["conv"].as_str().unwrap().to_owned();
    assert_eq!(agent.say(Some(&conv), "r1", "Looking into it").await["type"], "ack");
    wait_widget_text(&b, "Looking into it").await;
    let token = b.exec(TOKEN, vec![]).await;
    assert!(token.is_string(), "the widget saved its visitor token: {token}");

    // The store goes away and every socket drops: each resume is refused
    // as unavailable until it is back.
    let refused_before = welcomes_refused(&server).await;
    server.state.store.faults().set(FaultMode::Fail);
    agent.cut();
    server.state.chat.hub.cut_all();
    widget_say(&b, "Said while it was down").await;
    let started = Instant::now();
    while welcomes_refused(&server).await < refused_before + 2.0 {
        assert!(started.elapsed() < LONG, "the widget never tried to resume while the store was down");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.state.store.faults().set(FaultMode::Ok);

    // Back: the same visitor, the same chat, each message once.
    let (mut agent, access) = server.online_agent("wo@example.com").await;
    let events = format!("/api/v1/conversations/{conv}/events");
    let started = Instant::now();
    let history = loop {
        let (status, history) = server.get(&events, Some(&access)).await;
        assert_eq!(status, 200, "{history}");
        if history.to_string().contains("Said while it was down") {
            break history;
        }
        assert!(started.elapsed() < LONG, "what the visitor wrote while it was down never arrived: {history}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(history.to_string().matches("Said while it was down").count(), 1, "stored once: {history}");
    assert_eq!(agent.say(Some(&conv), "r2", "Found it").await["type"], "ack");
    wait_widget_text(&b, "Found it").await;
    assert_eq!(b.exec(TOKEN, vec![]).await, token, "the widget kept its visitor");
    let texts = widget_messages(&b).await;
    for text in ["Before the outage", "Looking into it", "Said while it was down", "Found it"] {
        assert_eq!(texts.iter().filter(|t| *t == text).count(), 1, "{text:?} once in {texts:?}");
    }
    b.close().await;
    agent.close().await;
}

/// Sockets this server turned away at their welcome because it was
/// unavailable, from its `/metrics`.
async fn welcomes_refused(server: &TestServer) -> f64 {
    let labels = [r#"reason="welcome failed""#, r#"code="unavailable""#];
    holdfast_storm::server::metric_labelled(&server.http, &server.base, "holdfast_socket_ends_total", &labels)
        .await
        .unwrap()
}
