//! Browser tests: headless Chromium, driven through chromedriver, against
//! a real server. The widget runs on a host page of another origin; the
//! console runs in a second browser with its own cookies and storage.
//! They never skip: without a browser they fail and say what to install.

mod webdriver;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::support::{Client, TestServer};
use webdriver::{Browser, Driver, screenshot_path};

/// One Chromium at a time: the machine has two cores.
static ONE_BROWSER_TEST: Mutex<()> = Mutex::const_new(());

const LONG: Duration = Duration::from_secs(30);

/// The widget's shadow root, in page script.
const W: &str = "document.querySelector('#holdfast-chat').shadowRoot";

/// A customer's page on another origin (`localhost` vs the server's
/// `127.0.0.1`) that embeds the widget with the one documented tag.
struct HostPage {
    url: String,
    _task: tokio::task::JoinHandle<()>,
}

async fn host_page(server: &TestServer, widget_key: &str) -> HostPage {
    let html = format!(
        "<!doctype html><html><head><meta name=viewport content='width=device-width'>\
         <title>Acme shop</title><style>button{{background:red!important}} *{{font-family:serif}}</style></head>\
         <body><h1>Acme shop</h1><p>Products and prices.</p>\
         <script async src=\"{}/widget.js\" data-site=\"{widget_key}\"></script></body></html>",
        server.base
    );
    let app = axum::Router::new().route("/", axum::routing::get(move || async move { axum::response::Html(html) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    HostPage { url: format!("http://localhost:{port}/"), _task: task }
}

/// Open the widget on the page and return once the panel shows.
async fn open_widget(b: &Browser) {
    let launcher = b.el(&format!("{W}.querySelector('.launcher')")).await;
    b.click(&launcher).await;
    b.wait_for(&format!("return !{W}.querySelector('.panel').hidden"), LONG).await;
}

/// Type a message in the widget's composer and press Enter.
async fn widget_say(b: &Browser, text: &str) {
    let input = b.el(&format!("{W}.querySelector('.composer textarea')")).await;
    b.type_text(&input, &format!("{text}\u{E007}")).await;
}

/// Texts of the widget's message bubbles.
async fn widget_messages(b: &Browser) -> Vec<String> {
    let v = b.exec(&format!("return [...{W}.querySelectorAll('.msg')].map(e => e.textContent)"), vec![]).await;
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

async fn wait_widget_text(b: &Browser, text: &str) {
    let script = format!("return [...{W}.querySelectorAll('.msg')].some(e => e.textContent === {})", json!(text));
    b.wait_for(&script, LONG).await;
}

#[tokio::test]
async fn a_visitor_chats_from_the_widget_on_another_origin() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    server.agent(&site, "wa@example.com", 5).await;
    let (mut agent, _) = server.online_agent("wa@example.com").await;
    let page = host_page(&server, &site.widget_key).await;
    let driver = Driver::start().await;
    let b = driver.browser(1280, 900).await;
    b.goto(&page.url).await;

    open_widget(&b).await;
    // The pre-chat form comes first (name and email are optional by default).
    let name = b.el(&format!("{W}.querySelector('.prechat input[name=name]')")).await;
    b.type_text(&name, "Vera Visitor").await;
    let start = b.el(&format!("{W}.querySelector('.prechat button')")).await;
    b.click(&start).await;
    widget_say(&b, "Hello from the shop").await;

    let msg = agent.wait_for(|f| f["type"] == "message" && f["body"] == "Hello from the shop").await;
    let conv = msg["conv"].as_str().unwrap().to_owned();
    agent.send(json!({"type": "typing", "conv": conv, "on": true})).await;
    b.wait_for(&format!("return {W}.querySelector('.typing').textContent.includes('typing')"), LONG).await;
    let ack = agent.say(Some(&conv), "r1", "Hi Vera, how can I help?").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    wait_widget_text(&b, "Hi Vera, how can I help?").await;
    let title = b.exec(&format!("return {W}.querySelector('.title').textContent"), vec![]).await;
    assert_eq!(title, "wa", "the header shows the agent's name");

    // The visitor's pre-chat name reached the server.
    let (_, visitor) = server.get(&format!("/api/v1/visitors/{}", msg["author"]["id"].as_str().unwrap()), None).await;
    let _ = visitor;
    let v = server.state.store.visitor(msg["author"]["id"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!(v.name.as_deref(), Some("Vera Visitor"));
    assert!(v.page_url.unwrap().starts_with("http://localhost:"), "the page URL is the host page");

    // The host page's CSS did not leak in: the launcher keeps its colour.
    let bg = b.exec(&format!("return getComputedStyle({W}.querySelector('.send')).backgroundColor"), vec![]).await;
    assert_ne!(bg, "rgb(255, 0, 0)", "host page CSS leaked into the widget");
    // One global at most.
    let globals = b.exec("return Object.keys(window).filter(k => /holdfast/i.test(k))", vec![]).await;
    assert_eq!(globals, json!(["Holdfast"]));
    b.screenshot(&screenshot_path("widget.png")).await;

    // A reload keeps the conversation.
    b.goto(&page.url).await;
    open_widget(&b).await;
    wait_widget_text(&b, "Hi Vera, how can I help?").await;
    let texts = widget_messages(&b).await;
    assert_eq!(texts.iter().filter(|t| *t == "Hello from the shop").count(), 1, "{texts:?}");
    b.close().await;
    agent.close().await;
    let _ = HashMap::<String, i64>::new();
    let _: Option<Client> = None;
    let _ = Value::Null;
}
