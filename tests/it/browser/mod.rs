//! Browser tests: headless Chromium, driven through chromedriver, against
//! a real server. The widget runs on a host page of another origin; the
//! console runs in a second browser with its own cookies and storage.
//! They never skip: without a browser they fail and name `scripts/test`,
//! which installs one.

mod attachments;
mod bans;
mod branding;
mod busy;
mod deliveries;
mod details;
mod greetings;
mod groups;
mod hours;
mod integration_messages;
mod integrations;
mod invitations;
mod languages;
mod notes;
mod outage;
mod phone;
mod photos;
mod privacy;
mod ratings;
mod reports;
mod search;
mod transcript;
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
    serve_page(html).await
}

/// A customer's page whose visitor's browser prefers `language`.
async fn host_page_speaking(server: &TestServer, widget_key: &str, language: &str) -> HostPage {
    let html = format!(
        "<!doctype html><html><head><title>Shop</title>\
         <script>Object.defineProperty(navigator, 'languages', {{get: () => ['{language}', 'en']}});\
         Object.defineProperty(navigator, 'language', {{get: () => '{language}'}});</script></head>\
         <body><h1>Shop</h1><script async src=\"{}/widget.js\" data-site=\"{widget_key}\"></script></body></html>",
        server.base
    );
    serve_page(html).await
}

/// Serve one page at `/` of its own `localhost` origin.
async fn serve_page(html: String) -> HostPage {
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
    // The pre-chat form comes first (name and email are optional by default,
    // and it says so: it can be skipped).
    let labels = prechat_texts(&b).await;
    assert_eq!(
        labels,
        json!([
            "Tell us who you are if you like, or start the chat right away.",
            "Your name (optional)",
            "Your email (optional)"
        ])
    );
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
    b.type_on("document.querySelector('#login:not([hidden]) #email')", email).await;
    b.type_on("document.querySelector('#password')", &format!("{password}\u{E007}")).await;
    b.wait_for("return !document.querySelector('#app').hidden && !document.querySelector('#conn').textContent", LONG)
        .await;
}

async fn console_go_online(b: &Browser) {
    let online = b.el("document.querySelector('#availability option[value=online]')").await;
    b.click(&online).await;
}

/// A chat as the console sees it: the agent `email` is online in one
/// browser, a visitor says `words` from the widget (on the host page) in
/// another, and the visitor's name is then set to `name` (a hostile one).
struct ConsoleChat {
    console: Browser,
    widget: Browser,
    page: HostPage,
    conv: holdfast_server::store::Conversation,
}

async fn console_chat(driver: &Driver, server: &TestServer, email: &str, words: &str, name: &str) -> ConsoleChat {
    let site = server.site().await;
    let page = host_page(server, &site.widget_key).await;
    let console = driver.browser(1280, 900).await;
    console_login(&console, server, email, "password123").await;
    console_go_online(&console).await;
    let widget = driver.browser(1280, 900).await;
    widget.goto(&page.url).await;
    open_widget(&widget).await;
    widget.click_on(&format!("{W}.querySelector('.prechat button')")).await;
    widget_say(&widget, words).await;
    console.wait_for("return !!document.querySelector('#mine button')", LONG).await;
    let conv = console.exec("return document.querySelector('#mine button').dataset.conv", vec![]).await;
    let conv = server.state.store.conversation(conv.as_str().unwrap()).await.unwrap().unwrap();
    let update = holdfast_server::store::VisitorUpdate { name: Some(name.into()), ..Default::default() };
    server.state.store.update_visitor(&conv.visitor_id, update).await.unwrap();
    ConsoleChat { console, widget, page, conv }
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

/// The pre-chat form's intro and its labels, in order.
async fn prechat_texts(b: &Browser) -> serde_json::Value {
    b.exec(
        &format!("return [...{W}.querySelectorAll('.prechat label, .prechat .sys')].map((l) => l.textContent)"),
        vec![],
    )
    .await
}

/// Skip the (optional) pre-chat form by starting the chat without details.
async fn b_skip_prechat(b: &Browser) {
    let start = b.el(&format!("{W}.querySelector('.prechat button')")).await;
    b.click(&start).await;
}

/// With no agent online a visitor leaves a message in the widget: the
/// admins' email arrives with Reply-To the visitor; an agent answers from
/// the console, and the visitor's email arrives (issue 18).
#[tokio::test]
async fn the_offline_form_reaches_the_admins_and_the_answer_reaches_the_visitor_by_email() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let port = crate::outbox::free_port();
    let mut smtp = crate::outbox::SmtpServer::start(port);
    let server = TestServer::start_with(|c| c.status.smtp = Some(crate::outbox::relay(port))).await;
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
    let to_admin = smtp.receive(1, Duration::from_secs(15)).await.remove(0);
    assert_eq!(to_admin["rcpt_tos"], json!(["admin@holdfast.local"]), "the site's admin, not the agent");
    assert_eq!(crate::outbox::header(&to_admin, "Reply-To"), ["olga@example.com"]);
    assert!(to_admin["text"].as_str().unwrap().contains("Please call me back about my order"));

    // An agent logging in later finds it under "Offline messages".
    let console = driver.browser(1280, 900).await;
    console_login(&console, &server, "off@example.com", "password123").await;
    console.click_on("document.querySelector('#offline button')").await;
    wait_console_text(&console, "Please call me back about my order").await;
    console.wait_for("return document.querySelector('#details').textContent.includes('olga@example.com')", LONG).await;

    // The agent answers by email from the conversation.
    console.wait_for("return !document.querySelector('#email-reply').hidden", LONG).await;
    // The composer only takes an internal note here (no reply in the chat).
    let composer = "const n = document.querySelector('#note-mode'); return [document.querySelector('#composer').hidden, n.checked && n.disabled]";
    assert_eq!(console.exec(composer, vec![]).await, json!([false, true]));
    let answer = console.el("document.querySelector('#email-reply-body')").await;
    console.type_text(&answer, "We will call you at 3 pm.").await;
    console.click_on("document.querySelector('#email-reply button')").await;
    wait_console_text(&console, "We will call you at 3 pm.").await;
    console.wait_for("return document.querySelector('#log').textContent.includes('by email')", LONG).await;
    let to_olga = smtp.receive(1, Duration::from_secs(15)).await.remove(0);
    assert_eq!(to_olga["rcpt_tos"], json!(["olga@example.com"]));
    assert_eq!(crate::outbox::header(&to_olga, "Reply-To"), ["off@example.com"], "Olga's answer reaches the agent");
    let text = to_olga["text"].as_str().unwrap();
    assert!(text.contains("We will call you at 3 pm.") && text.contains("Please call me back"), "{text}");
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
    // Edited in place to a hostile text, which stays text.
    b.click_on("document.querySelector('#canned li[data-shortcut=hours] button')").await;
    b.exec("document.querySelector('#canned textarea').value = ''", vec![]).await;
    let body = b.el("document.querySelector('#canned textarea')").await;
    b.type_text(&body, "<img src=x onerror=\"window.pwned=11\"> <b>Open</b> 8 to 6").await;
    b.click_on("document.querySelector('#canned form button[type=submit]')").await;
    b.wait_for("return document.querySelector('#canned').textContent.includes('<b>Open</b> 8 to 6')", LONG).await;
    let markup =
        b.exec("return document.querySelectorAll('#canned b, #canned img').length + (window.pwned || 0)", vec![]).await;
    assert_eq!(markup, 0);
    // Bob leaves the default group: his "×" beside his name.
    b.click_on("document.querySelector('#groups button[aria-label^=\"Remove Bob\"]')").await;
    b.wait_for("return !document.querySelector('#groups button[aria-label^=\"Remove Bob\"]')", LONG).await;

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

/// The element labelled `label` in the console's Status view.
fn labelled(label: &str) -> String {
    format!("document.querySelector('#status-view [aria-label=\"{label}\"]')")
}

#[tokio::test]
async fn an_operator_runs_the_status_page_from_the_console() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    admin(&server, &site, "ops@example.com", Role::Operator).await;
    admin(&server, &site, "adm@example.com", Role::Admin).await;
    let driver = Driver::start().await;
    let b = driver.browser(1280, 900).await;
    console_login(&b, &server, "ops@example.com", "password123").await;
    b.click_on("document.querySelector('#status-tab')").await;
    b.wait_for("return document.querySelectorAll('#s-component-rows tr').length >= 4", LONG).await;
    // Visitors see nothing of the console's actions but the page they change.
    let public = |path: &'static str| {
        let server = &server;
        async move { server.get(path, None).await.1 }
    };

    // An incident, named and described with markup meant to run.
    let name = b.el(&labelled("Incident name")).await;
    b.type_text(&name, HOSTILE_SITE).await;
    let message = b.el(&labelled("What visitors are told")).await;
    b.type_text(&message, XSS).await;
    b.click_on(&labelled("Incident affects Chat widget")).await;
    b.click_on("document.querySelector('#s-incident-form button[type=submit]')").await;
    b.wait_for("return document.querySelectorAll('#s-open li.incident').length === 1", LONG).await;
    let sent = b.exec(&format!("return {}.value", labelled("Incident name")), vec![]).await;
    assert_eq!(sent, "", "the form just sent starts empty");
    let open = public("/api/v2/incidents/unresolved.json").await;
    assert_eq!(open["incidents"][0]["name"], HOSTILE_SITE, "{open}");
    assert_eq!(open["incidents"][0]["status"], "investigating");
    assert_eq!(open["incidents"][0]["incident_updates"][0]["body"], XSS);
    let components = public("/api/v2/components.json").await;
    let widget = components["components"].as_array().unwrap().iter().find(|c| c["name"] == "Chat widget").unwrap();
    assert_eq!(widget["status"], "partial_outage", "{widget}");
    let shown = b
        .exec(
            "const v = document.querySelector('#status-view'); return {name: v.querySelector('li.incident strong').textContent, \
             markup: v.querySelectorAll('img, b').length, pwned: window.pwned || 0}",
            vec![],
        )
        .await;
    assert_eq!(shown, json!({"name": HOSTILE_SITE, "markup": 0, "pwned": 0}), "names and messages are text");

    // An update moves it on; resolving takes it off the page.
    b.exec("document.querySelector('#s-open select').value = 'identified'; return 1", vec![]).await;
    let update = b.el("document.querySelector('#s-open form input')").await;
    b.type_text(&update, "Found it: a bad deploy.\u{E007}").await;
    b.wait_for("return document.querySelector('#s-open .updates').textContent.includes('bad deploy')", LONG).await;
    let open = public("/api/v2/incidents/unresolved.json").await;
    assert_eq!(open["incidents"][0]["status"], "identified", "{open}");
    b.screenshot(&screenshot_path("console-status.png")).await;
    b.click_on("document.querySelector('#s-open li.incident button[type=button]')").await;
    b.wait_for("return !document.querySelector('#s-open')", LONG).await;
    assert_eq!(public("/api/v2/incidents/unresolved.json").await["incidents"], json!([]));
    let components = public("/api/v2/components.json").await;
    let widget = components["components"].as_array().unwrap().iter().find(|c| c["name"] == "Chat widget").unwrap();
    assert_eq!(widget["status"], "operational", "resolving restores the component: {widget}");

    // A component's state set by hand, while a maintenance is half typed:
    // what was typed stays through the page's render after the change.
    let maintenance = b.el(&labelled("Maintenance name")).await;
    b.type_text(&maintenance, "Database ").await;
    b.exec(
        "const s = document.querySelector('#status-view [aria-label=\"State of Website\"]'); \
         s.value = 'degraded_performance'; s.dispatchEvent(new Event('change')); return 1",
        vec![],
    )
    .await;
    b.wait_for(
        "return document.querySelector('#status-view [aria-label=\"State of Website\"]').value === 'degraded_performance' \
         && document.querySelector('#toast').textContent === 'Saved'",
        LONG,
    )
    .await;
    let components = public("/api/v2/components.json").await;
    let website = components["components"].as_array().unwrap().iter().find(|c| c["name"] == "Website").unwrap();
    assert_eq!(website["status"], "degraded_performance", "{website}");
    let kept = b.exec(&format!("return {}.value", labelled("Maintenance name")), vec![]).await;
    assert_eq!(kept, "Database ", "a half-typed field outlives another action");

    // A maintenance, scheduled in the browser's local time.
    let maintenance = b.el(&labelled("Maintenance name")).await;
    b.type_text(&maintenance, "upgrade").await;
    b.exec(
        "document.querySelector('#status-view [aria-label=\"Starts\"]').value = '2031-01-05T10:00'; \
         document.querySelector('#status-view [aria-label=\"Ends\"]').value = '2031-01-05T11:30'; return 1",
        vec![],
    )
    .await;
    let about = b.el(&labelled("What visitors are told about the maintenance")).await;
    b.type_text(&about, "Chat may pause for a minute.").await;
    b.click_on(&labelled("Maintenance affects Agent login")).await;
    b.click_on("document.querySelector('#s-maint-form button[type=submit]')").await;
    b.wait_for("return document.querySelectorAll('#s-upcoming > li').length === 1", LONG).await;
    let sent = b.exec(&format!("return {}.value", labelled("Maintenance name")), vec![]).await;
    assert_eq!(sent, "", "the form just sent starts empty");
    let upcoming = public("/api/v2/scheduled-maintenances/upcoming.json").await;
    let m = &upcoming["scheduled_maintenances"][0];
    assert_eq!(m["name"], "Database upgrade", "{upcoming}");
    assert_eq!(m["components"][0]["name"], "Agent login", "{m}");
    let (from, until) = (m["scheduled_for"].as_str().unwrap(), m["scheduled_until"].as_str().unwrap());
    let span = holdfast_server::status::time::parse_iso8601(until).unwrap()
        - holdfast_server::status::time::parse_iso8601(from).unwrap();
    assert_eq!(span, 90 * 60 * 1000, "{from} to {until}");

    // A monitor added and deleted (after the confirmation).
    let monitor = b.el(&labelled("Monitor name")).await;
    b.type_text(&monitor, "Billing <b>API</b>").await;
    let target = b.el(&labelled("Monitor target")).await;
    b.type_text(&target, "https://billing.example/health").await;
    b.click_on("document.querySelector('#s-monitor-form button[type=submit]')").await;
    b.wait_for("return [...document.querySelectorAll('#s-monitor-rows tr')].some(r => r.cells[0].textContent === 'Billing <b>API</b>')", LONG)
        .await;
    let token = crate::status::operator(&server).await;
    let (_, monitors) = server.get("/api/v1/status/monitors", Some(&token)).await;
    assert!(monitors["monitors"].as_array().unwrap().iter().any(|m| m["name"] == "Billing <b>API</b>"), "{monitors}");
    b.exec("window.confirm = () => true; return 1", vec![]).await;
    b.click_on("document.querySelector('#status-view [aria-label=\"Delete monitor Billing <b>API</b>\"]')").await;
    b.wait_for("return ![...document.querySelectorAll('#s-monitor-rows tr')].some(r => r.cells[0].textContent.includes('Billing'))", LONG)
        .await;
    let (_, monitors) = server.get("/api/v1/status/monitors", Some(&token)).await;
    assert!(!monitors.to_string().contains("Billing"), "{monitors}");
    let pwned = b.exec("return window.pwned || 0", vec![]).await;
    assert_eq!(pwned, 0);

    // A site's admin has no Status tab; the page is the operator's.
    let adm = driver.browser(1280, 900).await;
    console_login(&adm, &server, "adm@example.com", "password123").await;
    let tab = adm.exec("return document.querySelector('#status-tab').hidden", vec![]).await;
    assert_eq!(tab, true, "a site's admin gets no Status tab");
    b.close().await;
    adm.close().await;
}

/// Page script: the contrast ratio (WCAG 2) of an element's text on its background.
const CONTRAST: &str = "const lum = (css) => { const [r, g, b] = css.match(/[\\d.]+/g).slice(0, 3).map(Number).map((v) => v / 255)\
     .map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4)); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };\
     const ratio = (el) => { const s = getComputedStyle(el); const [a, b] = [lum(s.color), lum(s.backgroundColor)].sort((x, y) => y - x);\
     return (a + 0.05) / (b + 0.05); };";

/// Rows the visible children of `selector` sit on (their centres, more
/// than 10 px apart, as a flex row centres its items).
fn rows_of(selector: &str) -> String {
    format!(
        "const mids = [...document.querySelector('{selector}').children].filter((e) => e.offsetParent)\
         .map((e) => {{ const r = e.getBoundingClientRect(); return (r.top + r.bottom) / 2; }}).sort((a, b) => a - b);\
         return mids.filter((m, i) => i === 0 || m - mids[i - 1] > 10).length"
    )
}

#[tokio::test]
async fn on_a_phone_the_widget_fills_the_screen_and_the_console_fits_it() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start_with(|c| c.demo = true).await;
    let site = server.site().await;
    admin(&server, &site, "pia@example.com", Role::Admin).await;
    let (token, _) = server.login("pia@example.com", "password123").await;
    // A yellow that white text cannot be read on (1.3:1).
    let settings = json!({"color": "#fde047", "prechat": {"name": "off", "email": "off"}});
    let put = server.http.put(format!("{}/api/v1/admin/site/settings", server.base)).bearer_auth(&token);
    assert_eq!(put.json(&settings).send().await.unwrap().status().as_u16(), 200);
    let page = host_page(&server, &site.widget_key).await;
    let driver = Driver::start().await;
    let console = driver.phone(390, 844).await;
    console_login(&console, &server, "pia@example.com", "password123").await;
    console_go_online(&console).await;

    let visitor = driver.phone(390, 844).await;
    visitor.goto(&page.url).await;
    visitor
        .wait_for(&format!("return document.querySelector('#holdfast-chat') && {W}.querySelector('.launcher')"), LONG)
        .await;
    // The launcher's text (its icon) contrasts with the colour before it opens.
    let launcher = visitor.exec(&format!("{CONTRAST} return ratio({W}.querySelector('.launcher'))"), vec![]).await;
    assert!(launcher.as_f64().unwrap() >= 4.5, "launcher contrast {launcher}");
    open_widget(&visitor).await;
    let fit = visitor
        .exec(
            &format!(
                "{CONTRAST} const r = {W}.querySelector('.panel').getBoundingClientRect(); \
                 return {{left: r.left, top: r.top, right: r.right === innerWidth, bottom: r.bottom === innerHeight, \
                 launcher: getComputedStyle({W}.querySelector('.launcher')).display, \
                 input: getComputedStyle({W}.querySelector('.composer textarea')).fontSize, \
                 header: ratio({W}.querySelector('header')) >= 4.5}}"
            ),
            vec![],
        )
        .await;
    assert_eq!(
        fit,
        json!({"left": 0, "top": 0, "right": true, "bottom": true, "launcher": "none", "input": "16px", "header": true}),
        "the panel fills the screen, 16 px input, readable header"
    );
    widget_say(&visitor, "Hello from my phone").await;
    let mine = visitor
        .exec(&format!("{CONTRAST} return ratio([...{W}.querySelectorAll('.msg.me')].pop()) >= 4.5"), vec![])
        .await;
    assert_eq!(mine, true, "the visitor's own bubble is readable on yellow");
    visitor.screenshot(&screenshot_path("widget-phone-yellow.png")).await;

    // The console on the same screen: a header of two rows, the chat's
    // actions on screen, nothing wider than the screen.
    console.click_on("document.querySelector('#mine button')").await;
    wait_console_text(&console, "Hello from my phone").await;
    let rows = console.exec(&rows_of(".top"), vec![]).await;
    assert!(rows.as_u64().unwrap() <= 2, "the header takes {rows} rows");
    let layout = console
        .exec(
            "const c = document.querySelector('#close').getBoundingClientRect(); \
             return {close: c.width > 0 && c.left >= 0 && c.right <= innerWidth, \
             wide: document.documentElement.scrollWidth <= innerWidth, \
             reply: getComputedStyle(document.querySelector('#reply')).fontSize}",
            vec![],
        )
        .await;
    assert_eq!(layout, json!({"close": true, "wide": true, "reply": "16px"}));
    console.screenshot(&screenshot_path("console-phone.png")).await;
    console.click_on("document.querySelector('#admin-tab')").await;
    console.wait_for("return document.querySelector('#widget-key').textContent.startsWith('wk_')", LONG).await;
    let wide = console.exec("return document.documentElement.scrollWidth <= innerWidth", vec![]).await;
    assert_eq!(wide, true, "the Admin tab fits the screen");

    // The demo page, too.
    let demo = driver.phone(390, 844).await;
    demo.goto(&format!("{}/demo", server.base)).await;
    demo.wait_for("return document.querySelector('#v-title')", LONG).await;
    let wide = demo.exec("return document.documentElement.scrollWidth <= innerWidth", vec![]).await;
    assert_eq!(wide, true, "/demo fits the screen");
    visitor.close().await;
    console.close().await;
    demo.close().await;
}

/// The widget's unread badge: its number, or 0 when hidden.
async fn widget_badge(b: &Browser) -> u64 {
    let v = b
        .exec(&format!("const e = {W}.querySelector('.badge'); return e.hidden ? 0 : Number(e.textContent)"), vec![])
        .await;
    v.as_u64().unwrap()
}

#[tokio::test]
async fn read_state_survives_reloads_in_the_console_and_the_widget() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    server.agent(&site, "rita@example.com", 5).await;
    server.agent(&site, "carl@example.com", 5).await;
    let page = host_page(&server, &site.widget_key).await;
    let driver = Driver::start().await;
    let console = driver.browser(1280, 900).await;
    console_login(&console, &server, "rita@example.com", "password123").await;
    console_go_online(&console).await;
    let visitor = driver.browser(1280, 900).await;
    visitor.goto(&page.url).await;
    open_widget(&visitor).await;
    b_skip_prechat(&visitor).await;
    widget_say(&visitor, "one").await;

    // Unread in the list and the tab's title until the agent opens it.
    console.wait_for("return document.querySelector('#mine .unread')?.textContent === '1'", LONG).await;
    console.wait_for("return document.title === '(1) Holdfast console'", LONG).await;
    console.click_on("document.querySelector('#mine button')").await;
    wait_console_text(&console, "one").await;
    console
        .wait_for("return document.title === 'Holdfast console' && !document.querySelector('#mine .unread')", LONG)
        .await;
    // Transfers offer colleagues and the site's groups' queues.
    server.state.store.create_group(&site.id, "Billing <i>team</i>", false).await.unwrap();
    console.goto(&format!("{}/console", server.base)).await;
    console.click_on("document.querySelector('#mine button')").await;
    let offered = console
        .wait_for(
            "const o = [...document.querySelectorAll('#transfer option')].map(o => o.parentElement.label + ': ' + o.textContent); \
             return o.length === 4 && o",
            LONG,
        )
        .await;
    assert_eq!(
        offered,
        json!([
            "Agents: Admin (offline)",
            "Agents: carl (offline)",
            "Groups: Back to the General queue",
            "Groups: Billing <i>team</i> queue"
        ]),
    );
    // Every message says when; the agent's reply is theirs, with an emoji
    // from the picker.
    let reply = console.el("document.querySelector('#reply')").await;
    console.type_text(&reply, "Hello there ").await;
    console.click_on("document.querySelector('#emoji-open')").await;
    console.click_on("document.querySelector('#emoji [aria-label=\"Insert 👋\"]')").await;
    let hidden = console.exec("return document.querySelector('#emoji').hidden", vec![]).await;
    assert_eq!(hidden, true, "the picker closes after a pick");
    console.type_text(&reply, "\u{E007}").await;
    wait_widget_text(&visitor, "Hello there 👋").await;
    let times = console.exec("return [...document.querySelectorAll('#log .msg .who time')].filter(t => !isNaN(Date.parse(t.dateTime))).length", vec![]).await;
    assert_eq!(times, 2, "both messages carry their time");

    // Sound off stays off after a reload.
    console.click_on("document.querySelector('#sound')").await;
    // The read receipt is durable: after a reload nothing is unread.
    let conv = console.exec("return document.querySelector('#mine button').dataset.conv", vec![]).await;
    let conv = conv.as_str().unwrap().to_owned();
    crate::status::eventually("the agent's read receipt, stored", || async {
        let events = server.state.store.events_after(&conv, 0, 100).await.unwrap();
        events
            .iter()
            .any(|e| e.kind == "read" && e.author.kind == holdfast_server::store::AuthorKind::Agent)
            .then_some(())
    })
    .await;
    console.goto(&format!("{}/console", server.base)).await;
    console.wait_for("return !!document.querySelector('#mine button')", LONG).await;
    let state =
        console.exec("return [document.title, document.querySelectorAll('#mine .unread').length]", vec![]).await;
    assert_eq!(state, json!(["Holdfast console", 0]), "read before the reload, read after it");
    let sound = console.exec("return document.querySelector('#sound').checked", vec![]).await;
    assert_eq!(sound, false, "sound stays off");

    // A message that arrives while nothing is open stays unread across a reload.
    widget_say(&visitor, "two").await;
    console.wait_for("return document.title === '(1) Holdfast console'", LONG).await;
    console.goto(&format!("{}/console", server.base)).await;
    console.wait_for("return document.querySelector('#mine .unread')?.textContent === '1'", LONG).await;
    assert_eq!(console.exec("return document.title", vec![]).await, "(1) Holdfast console");

    // The widget: an agent's message while the panel is closed shows a badge;
    // opening reads it, and a reload does not bring it back.
    visitor.click_on(&format!("{W}.querySelector('.x')")).await;
    console.click_on("document.querySelector('#mine button')").await;
    let reply = console.el("document.querySelector('#reply')").await;
    console.type_text(&reply, "Are you there?\u{E007}").await;
    visitor
        .wait_for(
            &format!("return {W}.querySelector('.badge').textContent === '1' && !{W}.querySelector('.badge').hidden"),
            LONG,
        )
        .await;
    open_widget(&visitor).await;
    assert_eq!(widget_badge(&visitor).await, 0);
    wait_widget_text(&visitor, "Are you there?").await;
    crate::status::eventually("the visitor's read receipt, stored", || async {
        let events = server.state.store.events_after(&conv, 0, 100).await.unwrap();
        let asked = events.iter().find(|e| e.body.as_deref() == Some("Are you there?"))?.seq;
        events
            .iter()
            .any(|e| {
                e.kind == "read"
                    && e.author.kind == holdfast_server::store::AuthorKind::Visitor
                    && e.data["up_to"] == asked
            })
            .then_some(())
    })
    .await;
    visitor.goto(&page.url).await;
    visitor
        .wait_for(&format!("return document.querySelector('#holdfast-chat') && {W}.querySelector('.launcher')"), LONG)
        .await;
    // The replay has run once the agent's reply shows in the (closed) log.
    visitor
        .wait_for(
            &format!("return [...{W}.querySelectorAll('.msg')].some(e => e.textContent === 'Are you there?')"),
            LONG,
        )
        .await;
    assert_eq!(widget_badge(&visitor).await, 0, "read before the reload, read after it");
    console.type_text(&reply, "Still here?\u{E007}").await;
    visitor
        .wait_for(
            &format!("return {W}.querySelector('.badge').textContent === '1' && !{W}.querySelector('.badge').hidden"),
            LONG,
        )
        .await;
    visitor.goto(&page.url).await;
    visitor
        .wait_for(&format!("return [...{W}.querySelectorAll('.msg')].some(e => e.textContent === 'Still here?')"), LONG)
        .await;
    assert_eq!(widget_badge(&visitor).await, 1, "unread before the reload, unread after it");
    console.close().await;
    visitor.close().await;
}

#[tokio::test]
async fn an_admin_renames_the_site_edits_agents_and_sets_passwords_in_the_console() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    admin(&server, &site, "ada@example.com", Role::Admin).await;
    let bob = server.agent(&site, "bob@example.com", 5).await;
    let driver = Driver::start().await;
    let b = driver.browser(1280, 900).await;
    console_login(&b, &server, "ada@example.com", "password123").await;
    b.click_on("document.querySelector('#admin-tab')").await;
    b.wait_for("return document.querySelector('#site-title').value !== ''", LONG).await;

    // The site's name, however hostile, is text for visitors too.
    b.exec("document.querySelector('#site-title').value = ''; return 1", vec![]).await;
    let title = b.el("document.querySelector('#site-title')").await;
    b.type_text(&title, &format!("{HOSTILE_SITE}\u{E007}")).await;
    crate::status::eventually("the site renamed", || async {
        let name = server.state.store.site(&site.id).await.unwrap().unwrap().name;
        (name == HOSTILE_SITE).then_some(())
    })
    .await;

    // Bob's limit and name, edited in place.
    let row = "document.querySelector('#agents tr[data-email=\"bob@example.com\"]')";
    b.exec(
        &format!("const i = {row}.querySelector('input[type=number]'); i.value = '2'; i.dispatchEvent(new Event('change')); return 1"),
        vec![],
    )
    .await;
    crate::status::eventually("Bob's chat limit", || async {
        (server.state.store.agent(&bob.id).await.unwrap().unwrap().chat_limit == 2).then_some(())
    })
    .await;
    // Deactivating asks first: "no" changes nothing, "yes" does it.
    b.exec("window.confirm = () => false; return 1", vec![]).await;
    b.click_on(&format!("{row}.querySelector('button')")).await;
    // The click's handler ran (synchronously) and asked; nothing was sent.
    assert!(server.state.store.agent(&bob.id).await.unwrap().unwrap().active, "a 'no' leaves Bob active");

    // Bob's password set by the admin: he logs in with it.
    b.exec(&format!("document.querySelector('#reset-agent').value = {}; return 1", json!(bob.id)), vec![]).await;
    let new = b.el("document.querySelector('#reset-password')").await;
    b.type_text(&new, "bob-new-secret\u{E007}").await;
    b.wait_for("return document.querySelector('#toast').textContent.startsWith('Password set')", LONG).await;
    let login = |email: &'static str, password: &'static str| {
        let server = &server;
        async move { server.post("/api/v1/auth/login", None, json!({"email": email, "password": password})).await.0 }
    };
    assert_eq!(login("bob@example.com", "bob-new-secret").await, 200);
    b.exec("window.confirm = () => true; return 1", vec![]).await;
    b.click_on(&format!("{row}.querySelector('button')")).await;
    crate::status::eventually("Bob deactivated", || async {
        (!server.state.store.agent(&bob.id).await.unwrap().unwrap().active).then_some(())
    })
    .await;

    // Ada changes her own password: back to the login page, and in with the new one.
    b.click_on("document.querySelector('#password-open')").await;
    let current = b.el("document.querySelector('#pw-current')").await;
    b.type_text(&current, "password123").await;
    let next = b.el("document.querySelector('#pw-new')").await;
    b.type_text(&next, "ada-new-secret\u{E007}").await;
    b.wait_for("return !document.querySelector('#login').hidden", LONG).await;
    assert_eq!(login("ada@example.com", "password123").await, 401);
    console_login(&b, &server, "ada@example.com", "ada-new-secret").await;
    let pwned = b.exec("return window.pwned || 0", vec![]).await;
    assert_eq!(pwned, 0);
    b.close().await;
}

#[tokio::test]
async fn an_admin_sees_every_chat_follows_one_and_takes_it_over() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    admin(&server, &site, "ada@example.com", Role::Admin).await;
    let bob = server.agent(&site, "bob@example.com", 5).await;
    let page = host_page(&server, &site.widget_key).await;
    let driver = Driver::start().await;
    let bob_console = driver.browser(1280, 900).await;
    console_login(&bob_console, &server, "bob@example.com", "password123").await;
    console_go_online(&bob_console).await;
    let visitor = driver.browser(1280, 900).await;
    visitor.goto(&page.url).await;
    open_widget(&visitor).await;
    b_skip_prechat(&visitor).await;
    widget_say(&visitor, "My order is late").await;
    bob_console.wait_for("return !!document.querySelector('#mine button')", LONG).await;

    // Ada (offline, so routed nothing) finds Bob's chat under All chats.
    let ada = driver.browser(1280, 900).await;
    console_login(&ada, &server, "ada@example.com", "password123").await;
    ada.wait_for("return document.querySelectorAll('#all-agent option').length === 4", LONG).await;
    ada.exec(
        &format!(
            "const s = document.querySelector('#all-agent'); s.value = {}; s.dispatchEvent(new Event('change')); return 1",
            json!(bob.id)
        ),
        vec![],
    )
    .await;
    ada.wait_for("return document.querySelectorAll('#all button').length === 1 && document.querySelector('#all .sub').textContent === 'active · bob'", LONG)
        .await;
    ada.click_on("document.querySelector('#all button')").await;
    wait_console_text(&ada, "My order is late").await;
    // She follows it as it goes on.
    widget_say(&visitor, "Order 1234").await;
    wait_console_text(&ada, "Order 1234").await;
    // She may take it over, or leave a note (the composer takes only
    // notes); nothing else.
    let actions = ada
        .exec(
            "const n = document.querySelector('#note-mode'); \
             return ['claim', 'take-over'].map(id => document.querySelector('#' + id).hidden).concat([n.checked && n.disabled])",
            vec![],
        )
        .await;
    assert_eq!(actions, json!([true, false, true]), "an admin may take it over; nothing else");

    // Taking over: the chat is hers, the visitor hears of it, she replies.
    ada.click_on("document.querySelector('#take-over')").await;
    // The composer shows for notes before the transfer lands; the chat is
    // hers when it offers replies (a reply typed sooner goes as a note).
    ada.wait_for(
        "const n = document.querySelector('#note-mode'); \
         return document.querySelector('#take-over').hidden && !n.disabled && !n.checked",
        LONG,
    )
    .await;
    wait_widget_text(&visitor, "My order is late").await;
    let reply = ada.el("document.querySelector('#reply')").await;
    ada.type_text(&reply, "I have it from here.\u{E007}").await;
    wait_widget_text(&visitor, "I have it from here.").await;
    bob_console.wait_for("return !document.querySelector('#mine button')", LONG).await;
    // Filters that find nothing say so; a group filter keeps to its group.
    ada.exec(
        "const s = document.querySelector('#all-status'); s.value = 'offline'; s.dispatchEvent(new Event('change')); return 1",
        vec![],
    )
    .await;
    ada.wait_for("return document.querySelector('#all').textContent === 'No chats'", LONG).await;
    // An agent has no All chats.
    let hidden = bob_console.exec("return document.querySelector('#all-section').hidden", vec![]).await;
    assert_eq!(hidden, true);
    for b in [bob_console, visitor, ada] {
        b.close().await;
    }
}

/// Issue 27, point 8: a required pre-chat field is marked and holds the
/// chat back until it is filled; the others say they are optional.
#[tokio::test]
async fn the_pre_chat_form_marks_what_is_required() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    admin(&server, &site, "pre@example.com", Role::Admin).await;
    let (token, _) = server.login("pre@example.com", "password123").await;
    let (_, view) = server.get("/api/v1/admin/site", Some(&token)).await;
    let mut settings = view["settings"].clone();
    settings["prechat"] = json!({"name": "optional", "email": "required"});
    let (status, saved) = server.put("/api/v1/admin/site/settings", Some(&token), settings).await;
    assert_eq!(status, 200, "{saved}");
    server.agent(&site, "pre-agent@example.com", 5).await;
    let (_agent, _) = server.online_agent("pre-agent@example.com").await;
    let page = host_page(&server, &site.widget_key).await;
    let driver = Driver::start().await;
    let b = driver.browser(1280, 900).await;
    b.goto(&page.url).await;
    open_widget(&b).await;
    let labels = prechat_texts(&b).await;
    assert_eq!(
        labels,
        json!(["Tell us who you are, then start the chat.", "Your name (optional)", "Your email (required)"])
    );
    // Start without the email: the form holds, the composer stays hidden.
    b.click_on(&format!("{W}.querySelector('.prechat button')")).await;
    let held = b
        .exec(&format!("return [{W}.querySelector('.prechat').hidden, {W}.querySelector('.composer').hidden]"), vec![])
        .await;
    assert_eq!(held, json!([false, true]));
    let email = b.el(&format!("{W}.querySelector('.prechat input[name=email]')")).await;
    b.type_text(&email, "vera@example.com").await;
    b.click_on(&format!("{W}.querySelector('.prechat button')")).await;
    b.wait_for(&format!("return !{W}.querySelector('.composer').hidden"), LONG).await;
    b.close().await;
}
