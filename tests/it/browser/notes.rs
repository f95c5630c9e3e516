//! Internal notes in the console: an agent switches the composer to
//! "Note" and writes a hostile one; the console draws it apart from the
//! conversation, as text (no element, no script); the widget of the same
//! chat never shows it, and the reply written after it reaches the widget.

use holdfast_server::store::Role;

use super::webdriver::Driver;
use super::{LONG, ONE_BROWSER_TEST, W, admin, wait_widget_text, widget_messages};
use crate::support::TestServer;

const HOSTILE_NOTE: &str = "VIP <img src=x onerror=\"window.pwned=1\"><script>window.pwned=2</script> <b>careful</b>";

#[tokio::test]
async fn a_hostile_note_shows_as_text_to_agents_and_never_in_the_widget() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    admin(&server, &site, "nia@example.com", Role::Agent).await;
    let driver = Driver::start().await;
    let super::ConsoleChat { console, widget, .. } =
        super::console_chat(&driver, &server, "nia@example.com", "Hi, about my order", "Olga").await;

    console.click_on("document.querySelector('#mine button')").await;
    console.wait_for("return !document.querySelector('#composer').hidden", LONG).await;
    console.click_on("document.querySelector('#note-mode')").await;
    console.wait_for("return document.querySelector('#composer').classList.contains('noting')", LONG).await;
    let reply = console.el("document.querySelector('#reply')").await;
    console.type_text(&reply, &format!("{HOSTILE_NOTE}\u{E007}")).await;
    console.wait_for("return !!document.querySelector('#log .msg.note:not(.pending)')", LONG).await;
    let shown = console.exec("return document.querySelector('#log .msg.note').textContent", vec![]).await;
    assert!(shown.as_str().unwrap().contains(HOSTILE_NOTE), "the note as typed: {shown}");
    assert!(shown.as_str().unwrap().starts_with("Internal note"), "{shown}");

    // Back to replying: the visitor gets the reply, never the note.
    console.click_on("document.querySelector('#note-mode')").await;
    console.type_text(&reply, "We are on it\u{E007}").await;
    wait_widget_text(&widget, "We are on it").await;
    let texts = widget_messages(&widget).await;
    assert!(texts.iter().all(|t| !t.contains("VIP")), "{texts:?}");
    let html = widget.exec(&format!("return {W}.innerHTML"), vec![]).await;
    assert!(!html.as_str().unwrap().contains("VIP"), "nothing of the note in the widget");
    // A reload of the console draws the note again, from the history.
    console.goto(&format!("{}/console", server.base)).await;
    console.wait_for("return !!document.querySelector('#mine button')", LONG).await;
    console.click_on("document.querySelector('#mine button')").await;
    console.wait_for("return !!document.querySelector('#log .msg.note')", LONG).await;
    let elements =
        console.exec("return document.querySelectorAll('#log img, #log script, #log b').length", vec![]).await;
    assert_eq!(elements, 0, "nothing of the note became an element");
    for b in [&console, &widget] {
        assert!(b.exec("return window.pwned || null", vec![]).await.is_null(), "no script of the note ran");
    }
    widget.close().await;
    console.close().await;
}
