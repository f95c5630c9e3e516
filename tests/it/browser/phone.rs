//! The console's newer features on a 390 px phone: chat search (the box,
//! its filters and results), internal notes (the Note switch and a note in
//! the log) and deleting a group (Admin → Groups) each leave nothing wider
//! than the screen, keep their controls on it, and use 16 px text in every
//! field (iOS zooms into smaller ones when they are tapped), with a group
//! name long enough to widen the Transfer list. Hostile names and words
//! stay text on the small screen too.

use std::collections::HashMap;

use holdfast_server::store::Role;
use serde_json::json;

use super::webdriver::{Browser, Driver, screenshot_path};
use super::{LONG, ONE_BROWSER_TEST, console_go_online, console_login, wait_console_text};
use crate::support::{Client, TestServer};

const HOSTILE_GROUP: &str = "<img src=x onerror=\"window.pwned=41\"> Returns and refunds for the whole of Europe";
const HOSTILE_WORDS: &str = "Where is my shippinglabelwithaverylongwordthatdoesnotbreak <b>now</b>?";

/// What does not fit: whether the page is wider than the screen (a phone
/// browser then widens its layout viewport, `innerWidth`, to the page's
/// width and zooms out, so the screen's own width is the measure), the
/// visible elements of `selector` that stick out of it (or have no size),
/// and the visible fields with text under 16 px.
async fn misfits(b: &Browser, selector: &str) -> serde_json::Value {
    let script = format!(
        "const shown = (e) => e.offsetParent !== null;
         const name = (e) => e.id || e.getAttribute('aria-label') || e.outerHTML.slice(0, 60);
         const out = [...document.querySelectorAll({sel})].filter(shown).filter((e) => {{
           const r = e.getBoundingClientRect(); return r.width === 0 || r.left < 0 || r.right > screen.width + 0.5; }}).map(name);
         const small = [...document.querySelectorAll('input, select, textarea')].filter(shown)
           .filter((e) => !['checkbox', 'radio', 'file', 'color'].includes(e.type))
           .filter((e) => parseFloat(getComputedStyle(e).fontSize) < 16).map(name);
         return {{wide: innerWidth > screen.width || document.documentElement.scrollWidth > screen.width, out, small}};",
        sel = json!(selector)
    );
    b.exec(&script, vec![]).await
}

fn fits() -> serde_json::Value {
    json!({"wide": false, "out": [], "small": []})
}

#[tokio::test]
async fn on_a_phone_search_notes_and_group_deletion_fit_the_screen() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    server.person(&site, "pia@example.com", "Pia", Role::Admin).await;
    let group = server.state.store.create_group(&site.id, HOSTILE_GROUP, false).await.unwrap();
    let driver = Driver::start().await;
    let console = driver.phone(390, 844).await;
    console_login(&console, &server, "pia@example.com", "password123").await;
    console_go_online(&console).await;
    let (_, token) = server.visitor(&site).await;
    let mut visitor = Client::connect(&server, "/api/v1/visitor/socket", &token, HashMap::new()).await;
    visitor
        .send(json!({"type": "identify", "name": "<img src=y onerror=\"window.pwned=42\"> Yara", "email": null}))
        .await;
    visitor.say(None, "v1", HOSTILE_WORDS).await;
    console.wait_for("return !!document.querySelector('#mine button')", LONG).await;
    console.click_on("document.querySelector('#mine button')").await;
    wait_console_text(&console, HOSTILE_WORDS).await;

    // An internal note: the switch is on screen, the note fits the log.
    assert_eq!(misfits(&console, "#composer, #composer button, #composer label, #reply").await, fits());
    console.click_on("document.querySelector('#note-mode')").await;
    let reply = console.el("document.querySelector('#reply')").await;
    console.type_text(&reply, "Label reprinted; tell her tomorrow.\u{E007}").await;
    console.wait_for("return [...document.querySelectorAll('#log .msg.note')].some(e => e.textContent.includes('Label reprinted'))", LONG).await;
    assert_eq!(misfits(&console, "#log .msg, .conv-head button, .actions > *").await, fits());
    console.screenshot(&screenshot_path("console-phone-note.png")).await;

    // Search: the box, its filters and the result fit; the long word wraps.
    let search = console.el("document.querySelector('#search')").await;
    console.type_text(&search, "shipp\u{E007}").await;
    console.wait_for("return document.querySelectorAll('#results .result').length === 1", LONG).await;
    console.exec("document.querySelector('#search-section').scrollIntoView()", vec![]).await;
    assert_eq!(
        misfits(&console, "#search, #search-section, #search-section select, #search-section input, #results .result")
            .await,
        fits()
    );
    console.screenshot(&screenshot_path("console-phone-search.png")).await;

    // Deleting a group with a long hostile name: its button is on screen.
    // (Back at the top first: an emulated phone's clicks miss after a scroll.)
    console.exec("scrollTo(0, 0)", vec![]).await;
    console.click_on("document.querySelector('#admin-tab')").await;
    let button = "[...document.querySelectorAll('#groups li button')].find(b => b.textContent === 'Delete')";
    console.wait_for(&format!("return !!{button}"), LONG).await;
    console.exec(&format!("{button}.scrollIntoView()"), vec![]).await;
    assert_eq!(misfits(&console, "#groups li, #groups li button, #groups li input").await, fits());
    console.exec("window.confirm = () => true", vec![]).await;
    console.click_on(button).await;
    console.wait_for(&format!("return !{button}"), LONG).await;
    assert!(server.state.store.group(&group.id).await.unwrap().unwrap().deleted_at.is_some());
    assert_eq!(misfits(&console, "#admin-view section").await, fits());

    let elements =
        console.exec("return document.querySelectorAll('img[src=\"x\"], img[src=\"y\"], #log b').length", vec![]).await;
    assert_eq!(elements, 0, "nothing of theirs became an element");
    assert!(console.exec("return window.pwned || null", vec![]).await.is_null(), "no script of theirs ran");
    console.close().await;
}
