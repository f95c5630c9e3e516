//! Browser tests: headless Chromium, driven through chromedriver, against
//! a real server. The widget runs on a host page of another origin; the
//! console runs in a second browser with its own cookies and storage.
//! They never skip: without a browser they fail and name `scripts/test`,
//! which installs one.

mod webdriver;

use std::time::Duration;

use holdfast_server::auth::passwords;
use holdfast_server::store::{NewAgent, Role, Site};
use serde_json::json;
use tokio::sync::Mutex;

use crate::support::TestServer;
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
}

// ----- the console ---------------------------------------------------------

async fn console_login(b: &Browser, server: &TestServer, email: &str, password: &str) {
    b.goto(&format!("{}/console", server.base)).await;
    let email_input = b.el("document.querySelector('#login:not([hidden]) #email')").await;
    b.type_text(&email_input, email).await;
    let pw = b.el("document.querySelector('#password')").await;
    b.type_text(&pw, &format!("{password}\u{E007}")).await;
    b.wait_for("return !document.querySelector('#app').hidden && !document.querySelector('#conn').textContent", LONG)
        .await;
}

async fn console_go_online(b: &Browser) {
    let online = b.el("document.querySelector('#availability option[value=online]')").await;
    b.click(&online).await;
}

/// Texts of the console's conversation log (messages without the author line).
async fn console_messages(b: &Browser) -> Vec<String> {
    let v = b
        .exec(
            "return [...document.querySelectorAll('#log .msg')].map(e => [...e.childNodes].slice(1).map(n => n.textContent).join(''))",
            vec![],
        )
        .await;
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

async fn wait_console_text(b: &Browser, text: &str) {
    let script = format!(
        "return [...document.querySelectorAll('#log .msg')].some(e => [...e.childNodes].slice(1).map(n => n.textContent).join('') === {})",
        json!(text)
    );
    b.wait_for(&script, LONG).await;
}

async fn admin(server: &TestServer, site: &Site, email: &str, role: Role) {
    let hash = passwords::hash_now("password123").unwrap();
    server
        .state
        .store
        .create_agent(NewAgent {
            site_id: &site.id,
            email,
            name: "Ada Admin",
            role,
            password_hash: &hash,
            chat_limit: 5,
        })
        .await
        .unwrap();
}

const XSS: &str = "<img src=x onerror=\"window.pwned=1\"> javascript:window.pwned=2 https://example.com/help";

#[tokio::test]
async fn visitor_and_agent_chat_in_browsers_across_a_server_restart() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(tmp.path(), |_| {}).await;
    let site = server.site().await;
    server.agent(&site, "ana@example.com", 5).await;
    server.state.store.create_canned_response(&site.id, "wait", "Thank you for waiting!").await.unwrap();
    let page = host_page(&server, &site.widget_key).await;
    let driver = Driver::start().await;
    let console = driver.browser(1280, 900).await;
    let visitor = driver.phone(360, 740).await;

    console_login(&console, &server, "ana@example.com", "password123").await;
    console_go_online(&console).await;
    visitor.goto(&page.url).await;
    open_widget(&visitor).await;
    b_skip_prechat(&visitor).await;
    widget_say(&visitor, XSS).await;

    // Routed to the only online agent: it shows in "My chats"; open it.
    console.click_on("document.querySelector('#mine button')").await;
    wait_console_text(&console, XSS).await;
    let reply = console.el("document.querySelector('#reply')").await;
    console.type_text(&reply, "Thanks! See https://example.com/docs\u{E007}").await;
    wait_widget_text(&visitor, "Thanks! See https://example.com/docs").await;
    // A canned response by its shortcut: "/wa", Tab completes, Enter sends.
    console.type_text(&reply, "/wa").await;
    console.wait_for("return !document.querySelector('#suggest').hidden", LONG).await;
    console.type_text(&reply, "\u{E004}").await;
    let value = console.exec("return document.querySelector('#reply').value", vec![]).await;
    assert_eq!(value, "Thank you for waiting!");
    console.type_text(&reply, "\u{E007}").await;
    wait_widget_text(&visitor, "Thank you for waiting!").await;

    // Chat text is text on both sides: no element from it, no script ran,
    // only the http(s) link is clickable and it opens with noopener.
    for (b, scope) in
        [(&console, "document.querySelector('#log')".to_owned()), (&visitor, format!("{W}.querySelector('.log')"))]
    {
        let found = b
            .exec(
                &format!(
                    "const s = {scope}; return {{img: s.querySelectorAll('img').length, pwned: window.pwned || 0, \
                     links: [...s.querySelectorAll('a')].map(a => [a.getAttribute('href'), a.rel])}}"
                ),
                vec![],
            )
            .await;
        assert_eq!(found["img"], 0, "{found}");
        assert_eq!(found["pwned"], 0, "{found}");
        for l in found["links"].as_array().unwrap() {
            let href = l[0].as_str().unwrap();
            assert!(href.starts_with("https://example.com/"), "only http(s) links: {found}");
            assert!(l[1].as_str().unwrap().contains("noopener"), "{found}");
        }
        assert!(!found["links"].as_array().unwrap().is_empty(), "the https link is clickable: {found}");
    }
    // The visitor's details are there.
    console.wait_for("return document.querySelector('#details dl') && document.querySelector('#details').textContent.includes('localhost')", LONG).await;
    console.screenshot(&screenshot_path("console.png")).await;
    visitor.screenshot(&screenshot_path("widget-360px.png")).await;

    // The server goes away: both sides say "reconnecting…" quietly.
    let addr = server.state.config.listen;
    server.stop().await;
    console.wait_for("return document.querySelector('#conn').textContent.includes('Reconnecting')", LONG).await;
    visitor.wait_for(&format!("return {W}.querySelector('.sub').textContent.includes('Reconnecting')"), LONG).await;
    // Written while the server is away: kept, and sent once it is back.
    widget_say(&visitor, "Typed while you were away").await;

    // It comes back on the same address and data: both carry on, no login.
    let server = TestServer::start_at(addr, tmp.path(), |_| {}).await;
    console.wait_for("return document.querySelector('#conn').textContent === ''", LONG).await;
    visitor.wait_for(&format!("return {W}.querySelector('.sub').textContent === ''"), LONG).await;
    wait_console_text(&console, "Typed while you were away").await;
    widget_say(&visitor, "Still there?").await;
    wait_console_text(&console, "Still there?").await;
    let reply = console.el("document.querySelector('#reply')").await;
    console.type_text(&reply, "Yes, still here.\u{E007}").await;
    wait_widget_text(&visitor, "Yes, still here.").await;
    let login_shown = console.exec("return !document.querySelector('#login').hidden", vec![]).await;
    assert_eq!(login_shown, false, "the agent was never sent back to the login page");

    // Nothing lost, nothing twice, on either side.
    let expected = [
        XSS,
        "Thanks! See https://example.com/docs",
        "Thank you for waiting!",
        "Typed while you were away",
        "Still there?",
        "Yes, still here.",
    ];
    let seen = console_messages(&console).await;
    assert_eq!(seen, expected, "console transcript");
    let seen: Vec<String> =
        widget_messages(&visitor).await.into_iter().filter(|m| m != "Hi! How can we help?").collect();
    assert_eq!(seen, expected, "widget transcript");
    console.close().await;
    visitor.close().await;
    server.stop().await;
}

/// Skip the (optional) pre-chat form by starting the chat without details.
async fn b_skip_prechat(b: &Browser) {
    let start = b.el(&format!("{W}.querySelector('.prechat button')")).await;
    b.click(&start).await;
}

#[tokio::test]
async fn the_offline_form_reaches_the_agents() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    server.agent(&site, "off@example.com", 5).await;
    let page = host_page(&server, &site.widget_key).await;
    let driver = Driver::start().await;
    let visitor = driver.browser(1280, 900).await;

    // No agent online: the widget offers to leave a message.
    visitor.goto(&page.url).await;
    open_widget(&visitor).await;
    let form = format!("{W}.querySelector('.offline')");
    visitor.wait_for(&format!("return !{form}.hidden && {W}.querySelector('.composer').hidden"), LONG).await;
    let name = visitor.el(&format!("{form}.querySelector('input[name=name]')")).await;
    visitor.type_text(&name, "Olga").await;
    let email = visitor.el(&format!("{form}.querySelector('input[name=email]')")).await;
    visitor.type_text(&email, "olga@example.com").await;
    let body = visitor.el(&format!("{form}.querySelector('textarea')")).await;
    visitor.type_text(&body, "Please call me back about my order").await;
    let submit = visitor.el(&format!("{form}.querySelector('button')")).await;
    visitor.click(&submit).await;
    visitor.wait_for(&format!("return !{W}.querySelector('.thanks').hidden"), LONG).await;
    visitor.screenshot(&screenshot_path("widget-offline.png")).await;

    // An agent logging in later finds it under "Offline messages".
    let console = driver.browser(1280, 900).await;
    console_login(&console, &server, "off@example.com", "password123").await;
    console.click_on("document.querySelector('#offline button')").await;
    wait_console_text(&console, "Please call me back about my order").await;
    console.wait_for("return document.querySelector('#details').textContent.includes('olga@example.com')", LONG).await;
    visitor.close().await;
    console.close().await;
}

/// A hostile site name: markup and a script URL that must stay text.
const HOSTILE_SITE: &str = "<img src=x onerror=\"window.pwned=3\"> Acme & <b>Co</b> javascript:window.pwned=4";

#[tokio::test]
async fn an_operator_creates_an_agent_and_a_site_whose_people_then_log_in() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    admin(&server, &site, "ada@example.com", Role::Operator).await;
    let driver = Driver::start().await;
    let b = driver.browser(1280, 900).await;
    console_login(&b, &server, "ada@example.com", "password123").await;
    let tab = b.el("document.querySelector('#admin-tab')").await;
    b.click(&tab).await;
    b.wait_for("return document.querySelector('#widget-key').textContent.startsWith('wk_')", LONG).await;
    let snippet = b.exec("return document.querySelector('#snippet').value", vec![]).await;
    assert!(snippet.as_str().unwrap().contains(&format!("data-site=\"{}\"", site.widget_key)), "{snippet}");

    for (id, text) in
        [("#n-name", "Bob <b>Builder</b>"), ("#n-email", "bob@example.com"), ("#n-password", "bob-secret-1")]
    {
        let input = b.el(&format!("document.querySelector('{id}')")).await;
        b.type_text(&input, text).await;
    }
    let create = b.el("document.querySelector('#agent-form button')").await;
    b.click(&create).await;
    b.wait_for("return document.querySelector('#agents tr[data-email=\"bob@example.com\"]')", LONG).await;
    // The name is text, not markup.
    let bold = b.exec("return document.querySelectorAll('#agents b').length", vec![]).await;
    assert_eq!(bold, 0);

    // A canned response, then its /shortcut completes in the composer.
    let shortcut = b.el("document.querySelector('#c-shortcut')").await;
    b.type_text(&shortcut, "hours").await;
    let text = b.el("document.querySelector('#c-body')").await;
    b.type_text(&text, "We are open 9 to 5.").await;
    let add = b.el("document.querySelector('#canned-form button')").await;
    b.click(&add).await;
    b.wait_for("return document.querySelector('#canned').textContent.includes('/hours')", LONG).await;

    // The operator's Sites section: a new site with its first admin; the
    // site's name is text however hostile.
    b.wait_for("return !document.querySelector('#sites-section').hidden && document.querySelectorAll('#sites tr').length === 1", LONG).await;
    for (id, text) in [
        ("#site-name", HOSTILE_SITE),
        ("#site-admin-name", "Sally Site"),
        ("#site-admin-email", "sally@example.com"),
        ("#site-admin-password", "sally-secret-1"),
    ] {
        let input = b.el(&format!("document.querySelector('{id}')")).await;
        b.type_text(&input, text).await;
    }
    let create = b.el("document.querySelector('#site-form button')").await;
    b.click(&create).await;
    b.wait_for("return document.querySelectorAll('#sites tr').length === 2", LONG).await;
    let shown = b
        .exec(
            "const s = document.querySelector('#sites'); return {name: s.querySelectorAll('tr')[1].cells[0].textContent,              markup: s.querySelectorAll('img, b, a').length, pwned: window.pwned || 0}",
            vec![],
        )
        .await;
    assert_eq!(shown, json!({"name": HOSTILE_SITE, "markup": 0, "pwned": 0}), "the name is text");
    b.screenshot(&screenshot_path("console-admin.png")).await;

    // Bob logs in with the password the admin set.
    let bob = driver.browser(1280, 900).await;
    console_login(&bob, &server, "bob@example.com", "bob-secret-1").await;
    let me = bob.exec("return document.querySelector('#me').textContent", vec![]).await;
    assert_eq!(me, "Bob <b>Builder</b> (agent)");
    let admin_tab = bob.exec("return document.querySelector('#admin-tab').hidden", vec![]).await;
    assert_eq!(admin_tab, true, "agents get no admin pages");

    // Sally runs her new site, and only it: no Sites section for her.
    let sally = driver.browser(1280, 900).await;
    console_login(&sally, &server, "sally@example.com", "sally-secret-1").await;
    sally.click_on("document.querySelector('#admin-tab')").await;
    sally.wait_for("return document.querySelector('#widget-key').textContent.startsWith('wk_')", LONG).await;
    let sites = sally.exec("return document.querySelector('#sites-section').hidden", vec![]).await;
    assert_eq!(sites, true, "a site's admin gets no Sites section");
    b.close().await;
    bob.close().await;
    sally.close().await;
}
